"""int8 dot-product kernels for ARM cores with the dot-product extension (`sdot`).

For targets with `dotprod=True` and a constant weight, the quantized matmul / conv lowering
(compiler/ops/quant.py) asks the target for its accumulator (`Target.int8_accumulator`, which
calls `accumulator` below) and gets one of the kernels below: an int8 x int8 -> int32 product
whose inner 4 x 4 step is exactly what one `sdot v.4s, v.16b, v.4b` computes (four int32 lanes,
each the dot product of four int8 pairs). The rule `dot_product` schedules it with that
instruction (`tensorize`); on any other target, or when the rule is not applied, the same
kernel still computes the same values with plain arithmetic.

Layouts (all int8, K and the lane axis padded to multiples of 4 with zero weights):

- matmul: A8[..., M, K4] (the activation, packed at run time by the kernel's first stage),
  weight W[N4 / 4, K4 / 4, 4, 4] with W[no, ko, ni, ki] = B[ko*4 + ki, no*4 + ni];
  out[..., M, N4] = sum_k A8[..., m, k] * B[k, n] (int32).
- conv (2-D, group 1): X8[N, Hp, Wp, C4] (the NHWC input as it is, or an NCHW one transposed,
  spatially padded with a value the caller chooses, channels padded), weight
  W[O4 / 4, KH, KW, C4 / 4, 4, 4] with W[oo, kh, kw, co, oi, ci] = w[oo*4 + oi, co*4 + ci, kh, kw]
  (OIHW; an OHWI weight is transposed to it at compile time); out[N, OH, OW, O4] (NHWC, int32),
  which the NHWC conv keeps and the NCHW one transposes back.

The schedule (`dot_product`): the lane axis (N4 or O4) is split into 4-wide sdot lanes and
blocks of up to 4 of them; the row axis (M, or the output width) into up to 4 register rows;
the accumulator tile (rows x blocks x 4 int32) lives in registers; the reduction runs around the
tile with the 4 x 4 step tensorized to `llvm.aarch64.neon.sdot`; the outer loops are fused and
run in parallel. Elementwise epilogues fused into the kernel (zero-point corrections,
requantization) are inlined into the tile's write-back; the packing stage runs as a parallel,
vectorized stage of its own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import tvm
from tvm import relax, s_tir, te, tirx
from tvm.relax import op as R
from tvm.script import tirx as T

from edgec.ops.quant import pad_last, shifted_int32

from . import rules

DOT_BLOCK = "edgec_sdot"  # name of the product block (the schedule rule looks for it)
PACK_BLOCK = "edgec_sdot_pack"
SDOT_INTRIN = "edgec.arm_sdot_4x4_i8i8i32"

# Register tile: up to 8 rows x 4 lane blocks, at most 24 int32x4 accumulators (NEON has 32
# vector registers; the tile's weight vectors and a broadcast row value need the rest).
MAX_ROWS = 8
MAX_BLOCKS = 4
MAX_ACCUMULATORS = 24


# ---- the tensor intrinsic -------------------------------------------------------------------

def _register_intrin() -> None:
    """Register the sdot tensor intrinsic (once; its TVMScript is parsed only here, on the first
    dot-product kernel: parsing costs about half a second a function)."""
    if s_tir.TensorIntrin.get(SDOT_INTRIN, allow_missing=True) is not None:
        return

    @T.prim_func(s_tir=True)
    def _sdot_desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (4,), "int8", offset_factor=1)
        B = T.match_buffer(b, (4, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (4,), "int32", offset_factor=1, scope="global")
        with T.sblock("root"):
            T.reads(C[0:4], A[0:4], B[0:4, 0:4])
            T.writes(C[0:4])
            for i in T.serial(0, 4):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def _sdot_impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (4,), "int8", offset_factor=1)
        B = T.match_buffer(b, (4, 4), "int8", offset_factor=1)
        C = T.match_buffer(c, (4,), "int32", offset_factor=1, scope="global")
        with T.sblock("root"):
            T.reads(C[0:4], A[0:4], B[0:4, 0:4])
            T.writes(C[0:4])
            # One expression, no named temporaries: each would become a buffer allocated per call
            # (TVMBackendAllocWorkspace in the parallel loop body).
            C[T.ramp(T.int32(0), 1, 4)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.aarch64.neon.sdot.v4i32.v16i8"),
                C.vload([0], dtype="int32x4"),
                T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "int8x4"), dtype="int32"), 4), dtype="int8x16"),
                B.vload([0, 0], dtype="int8x16"),
                dtype="int32x4")

    s_tir.TensorIntrin.register(SDOT_INTRIN, _sdot_desc, _sdot_impl)


# ---- compile-time weight packing (numpy) -----------------------------------------------------

def round_up4(n: int) -> int:
    return (n + 3) // 4 * 4


def pack_matmul_weight(b: np.ndarray) -> np.ndarray:
    """int8 B[K, N] -> W[N4 / 4, K4 / 4, 4, 4] (zero padded), W[no, ko, ni, ki] = B[ko*4 + ki, no*4 + ni]."""
    k, n = b.shape
    padded = np.zeros((round_up4(k), round_up4(n)), np.int8)
    padded[:k, :n] = b
    k4, n4 = padded.shape
    return np.ascontiguousarray(padded.reshape(k4 // 4, 4, n4 // 4, 4).transpose(2, 0, 3, 1))


def pack_conv_weight(w: np.ndarray) -> np.ndarray:
    """int8 w[O, C, KH, KW] -> W[O4 / 4, KH, KW, C4 / 4, 4, 4] (zero padded),
    W[oo, kh, kw, co, oi, ci] = w[oo*4 + oi, co*4 + ci, kh, kw]."""
    o, c, kh, kw = w.shape
    padded = np.zeros((round_up4(o), round_up4(c), kh, kw), np.int8)
    padded[:o, :c] = w
    o4, c4 = padded.shape[:2]
    blocked = padded.reshape(o4 // 4, 4, c4 // 4, 4, kh, kw)  # oo, oi, co, ci, kh, kw
    return np.ascontiguousarray(blocked.transpose(0, 4, 5, 2, 1, 3))


# ---- the kernels (TE) ------------------------------------------------------------------------

def _to_int8(value, dtype: str):
    """An int8 or uint8 element as int8: uint8 x becomes x - 128 (x ^ 0x80)."""
    if dtype == "int8":
        return value
    return (value.astype("int32") - 128).astype("int8")


def matmul_te(a: te.Tensor, w: te.Tensor) -> te.Tensor:
    """int32 out[..., M, N4] = A8 @ B for a u8/i8 activation a[..., M, K] and a packed weight `w`
    (`pack_matmul_weight`). The first stage packs `a` to int8 with K padded to K4."""
    *lead, k = (int(s) for s in a.shape)
    n4, k4 = int(w.shape[0]) * 4, int(w.shape[1]) * 4
    dtype = str(a.dtype)
    if dtype == "int8" and k == k4:
        a8 = a
    else:
        def pack(*idx):
            inside = idx[-1] < k
            value = _to_int8(a[(*idx[:-1], tirx.min(idx[-1], k - 1))], dtype)
            return tirx.if_then_else(inside, value, tirx.const(0, "int8"))
        a8 = te.compute((*lead, k4), pack, name=PACK_BLOCK)
    ko = te.reduce_axis((0, k4 // 4), "ko")
    ki = te.reduce_axis((0, 4), "ki")

    def dot(*idx):
        n = idx[-1]
        return te.sum(a8[(*idx[:-1], ko * 4 + ki)].astype("int32") * w[n // 4, ko, n % 4, ki].astype("int32"),
                      axis=[ko, ki])
    return te.compute((*lead, n4), dot, name=DOT_BLOCK)


def conv_te(x: te.Tensor, w: te.Tensor, pad_value: int, strides, pads, dilations, layout: str) -> te.Tensor:
    """int32 out[N, OH, OW, O4] (NHWC) = conv2d of the u8/i8 input x (`layout` "NHWC": [N, H, W, C];
    "NCHW": [N, C, H, W]), taken as int8 and padded with `pad_value` (an int8 value), and the packed
    weight `w` (`pack_conv_weight`). The first stage converts and pads `x` (and transposes an
    NCHW one)."""
    last = layout == "NHWC"
    if last:
        n, h, wd, c = (int(s) for s in x.shape)
    else:
        n, c, h, wd = (int(s) for s in x.shape)
    o4, kh, kw, c4 = int(w.shape[0]) * 4, int(w.shape[1]), int(w.shape[2]), int(w.shape[3]) * 4
    sh, sw = strides
    dh, dw = dilations
    top, left, bottom, right = pads
    hp, wp = h + top + bottom, wd + left + right
    oh = (hp - dh * (kh - 1) - 1) // sh + 1
    ow = (wp - dw * (kw - 1) - 1) // sw + 1
    dtype = str(x.dtype)

    def pack(b, i, j, ch):
        inside = tirx.all(i >= top, i < h + top, j >= left, j < wd + left, ch < c)
        row = tirx.max(tirx.min(i - top, h - 1), 0)
        col = tirx.max(tirx.min(j - left, wd - 1), 0)
        chan = tirx.min(ch, c - 1)
        value = _to_int8(x[b, row, col, chan] if last else x[b, chan, row, col], dtype)
        return tirx.if_then_else(inside, value, tirx.const(pad_value, "int8"))
    x8 = te.compute((n, hp, wp, c4), pack, name=PACK_BLOCK)
    rh = te.reduce_axis((0, kh), "kh")
    rw = te.reduce_axis((0, kw), "kw")
    co = te.reduce_axis((0, c4 // 4), "co")
    ci = te.reduce_axis((0, 4), "ci")

    def dot(b, i, j, o):
        xv = x8[b, i * sh + rh * dh, j * sw + rw * dw, co * 4 + ci].astype("int32")
        return te.sum(xv * w[o // 4, rh, rw, co, o % 4, ci].astype("int32"), axis=[rh, rw, co, ci])
    return te.compute((n, oh, ow, o4), dot, name=DOT_BLOCK)


# ---- the schedule rule -----------------------------------------------------------------------

@dataclass(frozen=True)
class DotKernel:
    """What `schedule_dot` needs to know of a product kernel built like the ones below: the names
    of its product and packing blocks, the tensor intrinsic that computes `lanes` int32 lanes over
    `k_step` reduction steps (the product's lane axis and innermost reduction have these extents),
    the function that registers it, the register tile's limits, and the storage scope of the
    accumulator tile (the intrinsic's output buffer must have it): "local" is a workspace
    allocated per tile, "global" (a tile under 1024 bytes) a stack buffer kept in registers."""
    block: str
    pack_block: str
    lanes: int
    k_step: int
    intrin: str
    register: Callable[[], None]
    max_rows: int
    max_blocks: int
    max_accumulators: int
    acc_scope: str = "local"


# The tile on the stack: as a "local" workspace it was allocated per tile, 16M of MobileNetV2's
# 109M guest instructions per int8 inference on arm-a76 (edgec profile: outside the kernels).
SDOT = DotKernel(DOT_BLOCK, PACK_BLOCK, 4, 4, SDOT_INTRIN, _register_intrin, MAX_ROWS, MAX_BLOCKS, MAX_ACCUMULATORS,
                 acc_scope="global")


def register_tile(rows: int, blocks: int, kernel: DotKernel = SDOT) -> tuple[int, int]:
    """(rows, lane blocks) of the accumulator tile: divisors of the row extent and of the number
    of lane blocks, at most the kernel's max_rows x max_blocks and max_accumulators registers,
    with the most products per loaded register (r * b / (r + b): each step loads b weight vectors
    and r row values); the wider tile on a tie. sdot, 16 rows x 8 blocks: 4 x 4; 7 rows (a
    7-wide conv output): 7 x 2 rather than 1 x 4."""
    best = (0.0, 0, 1, 1)
    for r in range(1, min(rows, kernel.max_rows) + 1):
        for b in range(1, min(blocks, kernel.max_blocks) + 1):
            if rows % r or blocks % b or r * b > kernel.max_accumulators:
                continue
            best = max(best, (r * b / (r + b), b, r, b))
    return best[2], best[3]


def _find_dot_block(sch: s_tir.Schedule, kernel: DotKernel):
    for block in rules.root_blocks(sch):
        name = sch.get(block).name_hint
        if name == kernel.block or (name.startswith(kernel.block + "_") and not name.startswith(kernel.pack_block)):
            return block
    return None


def dot_product(func: tirx.PrimFunc, target) -> s_tir.Schedule | None:
    """The sdot schedule (module doc) for a kernel holding a `DOT_BLOCK` product, on edgec
    targets with the dot-product extension (`target.dotprod`); None otherwise."""
    if not target.dotprod:
        return None
    return schedule_dot(func, SDOT)


def schedule_dot(func: tirx.PrimFunc, kernel: DotKernel) -> s_tir.Schedule | None:
    """The schedule of the module doc for a kernel holding `kernel`'s product block, its lane
    axis split into `kernel.lanes`-wide instructions and its innermost `kernel.k_step`
    reduction steps tensorized to `kernel.intrin`; None when the kernel has no such block."""
    sch = s_tir.Schedule(func)
    main = _find_dot_block(sch, kernel)
    if main is None or not rules._loops_match_iters(sch, main):  # noqa: SLF001 - shared helper
        return None
    kinds = rules._kinds(sch, main)  # noqa: SLF001
    ns = 0
    while ns < len(kinds) and kinds[ns] == rules.DATA_PAR:
        ns += 1
    loops = sch.get_loops(main)
    extents = [rules._extent(sch, lp) for lp in loops]  # noqa: SLF001
    if (ns < 2 or ns == len(kinds) or extents[-1] != kernel.k_step or extents[ns - 1] is None
            or extents[ns - 1] % kernel.lanes):
        return None
    kernel.register()

    blocks = rules.root_blocks(sch)
    names = [sch.get(b).name_hint for b in blocks]
    main_name = sch.get(main).name_hint
    producers = set(names[:names.index(main_name)])
    outputs = {sch.get(b).name_hint for b in sch.get_output_blocks(sch.get_sblock("root"))}

    def keep(block) -> bool:
        name = sch.get(block).name_hint
        return name in producers or name in outputs or name == main_name

    rules._inline_intermediates(sch, keep)  # noqa: SLF001
    others = {sch.get(b).name_hint for b in rules.root_blocks(sch)} - {main_name}

    # Accumulate in a tile (kernel.acc_scope); epilogue blocks are inlined into its write-back. Only blocks
    # that write a buffer of the accumulator's shape: reverse_compute_inline of a slice (the
    # padded lanes cut off) would keep the write-back's domain and write past the output's end.
    out_shape = [int(d) for d in sch.get(main).writes[0].source.shape]
    writeback = sch.cache_write(main, 0, kernel.acc_scope)
    wb_name = sch.get(writeback).name_hint
    for block in rules.root_blocks(sch):
        name = sch.get(block).name_hint
        written = [int(d) for d in sch.get(block).writes[0].source.shape]
        if name not in producers and name not in (main_name, wb_name) and written == out_shape:
            try:
                sch.reverse_compute_inline(block)
            except Exception:  # noqa: BLE001 - a primitive refused: the block stays a stage of its own
                pass

    loops = sch.get_loops(main)
    spatial, reduction = loops[:ns], loops[ns:]
    lane_blocks, lanes = sch.split(spatial[-1], [None, kernel.lanes])
    rows_per_tile, blocks_per_tile = register_tile(extents[ns - 2], extents[ns - 1] // kernel.lanes, kernel)
    b_outer, b_inner = sch.split(lane_blocks, [None, blocks_per_tile])
    r_outer, r_inner = sch.split(spatial[-2], [None, rows_per_tile])
    outer = [b_outer, *spatial[:-2], r_outer]
    sch.reorder(*outer, *reduction[:-1], r_inner, b_inner, lanes, reduction[-1])
    fused = sch.fuse(*outer)
    sch.reverse_compute_at(writeback, fused, preserve_unit_loops=True)
    sch.parallel(fused)
    init = sch.decompose_reduction(main, reduction[0])
    init_loops = sch.get_loops(init)
    sch.vectorize(init_loops[-1])
    sch.tensorize(lanes, kernel.intrin)
    sch.unroll(r_inner)
    sch.unroll(b_inner)
    wb_loops = sch.get_loops(writeback)
    wb_inner = rules._extent(sch, wb_loops[-1])  # noqa: SLF001
    if wb_inner is not None and wb_inner % kernel.lanes == 0:
        _, vec = sch.split(wb_loops[-1], [None, kernel.lanes])
        sch.vectorize(vec)

    for block in rules.root_blocks(sch):
        name = sch.get(block).name_hint
        if name in others and rules._is_spatial(sch, block):  # noqa: SLF001
            try:
                rules.schedule_spatial_block(sch, block, 16)
            except Exception:  # noqa: BLE001 - a primitive refused: leave the stage as it is
                pass
    return sch


# ---- lowering: the int8 accumulator of an integer matmul / conv (Target.int8_accumulator) --------

def accumulator(ctx, kind: str, x, w, x_zero_points: list[int], w_zero_points: list[int], attrs=None):
    """`Target.int8_accumulator` for dot-product targets: with a constant weight, the int32
    accumulator of `kind` ("matmul", "conv") as the kernels above plus zero-point corrections,
    padded on its last axis: (acc, padded size); None where this path does not apply."""
    if not isinstance(w, tvm.ir.expr.Constant):
        return None
    if kind == "matmul":
        return _matmul_acc(ctx, x, w, x_zero_points, w_zero_points)
    return _conv_acc(ctx, x, w, x_zero_points[0], w_zero_points, attrs)


def _wrap_int32(values: np.ndarray) -> np.ndarray:
    """int64 values reduced modulo 2**32 into int32 (what int32 arithmetic would give)."""
    return ((values.astype(np.int64) + 2**31) % 2**32 - 2**31).astype(np.int32)


def _as_int8(values: np.ndarray, zero_points: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """(int8 values, int64 zero points) with x - zp unchanged: uint8 x becomes x - 128."""
    zps = np.asarray(zero_points, np.int64)
    if values.dtype == np.uint8:
        return (values.astype(np.int16) - 128).astype(np.int8), zps - 128
    return values.astype(np.int8), zps


def _shift8(x, zero_points: list[int]) -> np.ndarray:
    """The zero points of operand `x` (a Relax u8/i8 tensor) after its conversion to int8."""
    zps = np.asarray(zero_points, np.int64)
    return zps - 128 if str(x.ty.dtype) == "uint8" else zps


def _matmul_acc(ctx, a, b, azp: list[int], bzp: list[int]):
    """int32 (a - azp) @ (b - bzp) padded to [..., M, N4] with sdot-shaped int8 arithmetic, or None
    when this path does not apply (b not 2-D). Returns (acc, N4)."""
    bdata = b.value.numpy()
    if bdata.ndim != 2:
        return None
    k, n = bdata.shape
    b8, bzp8 = _as_int8(bdata, bzp)
    azp8 = _shift8(a, azp)
    packed = pack_matmul_weight(b8)
    n4 = packed.shape[0] * 4
    acc = ctx.bb.emit_te(matmul_te, a, relax.const(packed), primfunc_name_hint="edgec_sdot_matmul")
    # - azp * colsum(b): a constant, [1 or M, N4]
    colsum = pad_last(b8.astype(np.int64).sum(axis=0), n4, 0)
    bias = -azp8.reshape(-1, 1) * colsum.reshape(1, -1)
    if np.any(bias):
        acc = ctx.bb.emit(R.add(acc, relax.const(_wrap_int32(bias))))
    # - bzp * rowsum(a - azp): only for nonzero (converted) weight zero points
    if np.any(bzp8):
        rows = ctx.bb.emit(R.sum(shifted_int32(a, azp, [-1, 1]), axis=[-1], keepdims=True))
        neg_bzp = pad_last(-bzp8.reshape(1, -1), n4, 0)
        acc = ctx.bb.emit(R.add(acc, R.multiply(rows, relax.const(_wrap_int32(neg_bzp)))))
    return acc, n4


def _conv_acc(ctx, x, w, xzp: int, wzp: list[int], attrs):
    """int32 conv2d of (x - xzp) and (w - wzp) as NHWC [N, OH, OW, O4] with sdot-shaped int8
    arithmetic, for an NCHW conv (OIHW weight) or an NHWC one (OHWI weight), or None when this
    path does not apply (group > 1). Returns (acc, O4)."""
    if attrs["group"] != 1:
        return None
    last = attrs["layout"] == "NHWC"
    wdata = w.value.numpy()
    if last:
        wdata = wdata.transpose(0, 3, 1, 2)  # OHWI -> OIHW
    w8, wzp8 = _as_int8(wdata, wzp)
    xzp8 = int(_shift8(x, [xzp])[0])
    packed = pack_conv_weight(w8)
    o4 = packed.shape[0] * 4
    geometry = (attrs["strides"], attrs["pads"], attrs["dilations"], attrs["layout"])
    acc = ctx.bb.emit_te(lambda xt, wt: conv_te(xt, wt, xzp8, *geometry), x, relax.const(packed),
                         primfunc_name_hint="edgec_sdot_conv2d")
    # - xzp * sum(w) per output channel: a constant
    wsum = pad_last(w8.astype(np.int64).sum(axis=(1, 2, 3)), o4, 0)
    bias = -xzp8 * wsum
    if np.any(bias):
        acc = ctx.bb.emit(R.add(acc, relax.const(_wrap_int32(bias))))
    # - wzp * (window sum of x - xzp, zero padded): only for nonzero (converted) weight zero points
    if np.any(wzp8):
        channels = ctx.bb.emit(R.sum(shifted_int32(x, [xzp], [1]), axis=[3 if last else 1], keepdims=True))
        kernel = wdata.shape[2:]
        ones = relax.const(np.ones((*kernel, 1, 1) if last else (1, 1, *kernel), np.int32))
        window = ctx.bb.emit(R.nn.conv2d(channels, ones, strides=attrs["strides"], padding=attrs["pads"],
                                         dilation=attrs["dilations"], data_layout="NHWC" if last else "NCHW",
                                         kernel_layout="HWIO" if last else "OIHW", out_dtype="int32"))
        if not last:
            window = ctx.bb.emit(R.permute_dims(window, [0, 2, 3, 1]))
        neg_wzp = pad_last(-wzp8.reshape(-1), o4, 0)
        acc = ctx.bb.emit(R.add(acc, R.multiply(window, relax.const(_wrap_int32(neg_wzp)))))
    return acc, o4
