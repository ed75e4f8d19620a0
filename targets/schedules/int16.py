"""int8 matmuls and convs on x86 CPUs with AVX2, as exact int16 products (`vpmaddwd`).

AVX2 has no fast 32-bit integer multiply, and its u8 x s8 instruction (`vpmaddubsw`) saturates
to int16; `vpmaddwd` (`llvm.x86.avx2.pmadd.wd`) multiplies 16 int16 pairs and adds neighbouring
products into 8 int32 lanes, exactly. Both operands are taken with their zero points already
subtracted: x - xzp and w - wzp lie in [-255, 255] for u8 and i8 alike, a product within
255 * 255 and a pair sum within int32, so the int32 accumulator needs no zero-point corrections
and wraps like ONNX Runtime's. For hosts with `target.avx2` and a constant weight, the quantized
lowering (compiler/ops/quant.py) gets its accumulator here (`Target.int8_accumulator`, which
calls `accumulator`); the rule `madd_product` schedules it with the schedule of the sdot kernels
(`int8.schedule_dot`: register tile of rows x 8-lane blocks, reduction around it, the 8 x 2 step
tensorized to one vpmaddwd and one vpaddd, write-back with the requantization inlined, outer
loops fused and parallel).

Layouts (int16; K, the input channels, padded to even with zeros, the lane axis to 8 with zero
weights):

- matmul: A16[..., M, K2] = a - azp (azp per tensor or per row; the kernel's first stage),
  weight W[N8 / 8, K2 / 2, 8, 2] with W[no, ko, ni, ki] = B[ko*2 + ki, no*8 + ni] - bzp[n];
  out[..., M, N8] (int32).
- conv (2-D, group 1): X16[N, Hp, Wp, C2] = x - xzp (the NHWC input, or an NCHW one transposed,
  with the spatial padding 0: the zero point, shifted), weight W[O8 / 8, KH, KW, C2 / 2, 8, 2]
  with W[oo, kh, kw, co, oi, ci] = w[oo*8 + oi, co*2 + ci, kh, kw] - wzp[o] (OIHW; an OHWI weight
  is transposed at compile time); out[N, OH, OW, O8] (NHWC, int32).

Cases left to the generic lowering (`accumulator` returns None): a weight given at run time, a
batched (not 2-D) matmul weight, grouped and depthwise convs, convs with fewer than
MIN_CONV_CHANNELS input channels (an RGB input).
"""

from __future__ import annotations

import numpy as np
import tvm
from tvm import relax, s_tir, te, tirx
from tvm.script import tirx as T

from . import int8

MADD_BLOCK = "edgec_madd"  # name of the product block (the schedule rule looks for it)
PACK_BLOCK = "edgec_madd_pack"
MADD_INTRIN = "edgec.x86_pmaddwd_8x2_i16i16i32"
LANES = 8  # int32 lanes of one vpmaddwd (256 bits)
# Convs with fewer input channels keep the generic lowering: measured on a Zen 3 core, one thread,
# a 3x3/2 conv of an RGB 224x224 input to 32 channels took 1.09 ms here against 0.68 generic;
# with 8 channels (112x112, 3x3, 32 out) the two were within 8% (1.05 against 0.97 ms). An odd
# channel count wastes a pair slot of every step: 3 channels are packed as 4.
MIN_CONV_CHANNELS = 4


def _register_intrin() -> None:
    """Register the vpmaddwd tensor intrinsic (once; parsing TVMScript is slow)."""
    if s_tir.TensorIntrin.get(MADD_INTRIN, allow_missing=True) is not None:
        return

    @T.prim_func(s_tir=True)
    def _madd_desc(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (2,), "int16", offset_factor=1)
        B = T.match_buffer(b, (8, 2), "int16", offset_factor=1)
        C = T.match_buffer(c, (8,), "int32", offset_factor=1, scope="global")
        with T.sblock("root"):
            T.reads(C[0:8], A[0:2], B[0:8, 0:2])
            T.writes(C[0:8])
            for i in T.serial(0, 8):
                for k in T.serial(0, 2):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def _madd_impl(a: T.handle, b: T.handle, c: T.handle) -> None:
        A = T.match_buffer(a, (2,), "int16", offset_factor=1)
        B = T.match_buffer(b, (8, 2), "int16", offset_factor=1)
        C = T.match_buffer(c, (8,), "int32", offset_factor=1, scope="global")
        with T.sblock("root"):
            T.reads(C[0:8], A[0:2], B[0:8, 0:2])
            T.writes(C[0:8])
            # One expression (no named temporaries: each would be a buffer allocated per call).
            C[T.ramp(T.int32(0), 1, 8)] = C.vload([0], dtype="int32x8") + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"),
                T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "int16x2"), dtype="int32"), 8), dtype="int16x16"),
                B.vload([0, 0], dtype="int16x16"),
                dtype="int32x8")

    s_tir.TensorIntrin.register(MADD_INTRIN, _madd_desc, _madd_impl)


# Register tile: AVX2 has 16 ymm registers; up to 12 accumulators (6 rows x 2 blocks, 4 x 3) leave
# one register per lane block for its weights and one for the broadcast row value. The tile (at
# most 384 bytes) is a stack buffer ("global"), not a workspace allocated per tile ("local").
MADD = int8.DotKernel(MADD_BLOCK, PACK_BLOCK, LANES, 2, MADD_INTRIN, _register_intrin,
                      max_rows=6, max_blocks=3, max_accumulators=12, acc_scope="global")


# ---- compile-time weight packing (numpy) -----------------------------------------------------

def _round_up(n: int, m: int) -> int:
    return (n + m - 1) // m * m


def pack_matmul_weight(b: np.ndarray) -> np.ndarray:
    """int16 B[K, N] (zero points subtracted) -> W[N8 / 8, K2 / 2, 8, 2] (zero padded),
    W[no, ko, ni, ki] = B[ko*2 + ki, no*8 + ni]."""
    k, n = b.shape
    padded = np.zeros((_round_up(k, 2), _round_up(n, LANES)), np.int16)
    padded[:k, :n] = b
    k2, n8 = padded.shape
    return np.ascontiguousarray(padded.reshape(k2 // 2, 2, n8 // LANES, LANES).transpose(2, 0, 3, 1))


def pack_conv_weight(w: np.ndarray) -> np.ndarray:
    """int16 w[O, C, KH, KW] (zero points subtracted) -> W[O8 / 8, KH, KW, C2 / 2, 8, 2] (zero
    padded), W[oo, kh, kw, co, oi, ci] = w[oo*8 + oi, co*2 + ci, kh, kw]."""
    o, c, kh, kw = w.shape
    padded = np.zeros((_round_up(o, LANES), _round_up(c, 2), kh, kw), np.int16)
    padded[:o, :c] = w
    o8, c2 = padded.shape[:2]
    blocked = padded.reshape(o8 // LANES, LANES, c2 // 2, 2, kh, kw)  # oo, oi, co, ci, kh, kw
    return np.ascontiguousarray(blocked.transpose(0, 4, 5, 2, 1, 3))


# ---- the kernels (TE) ------------------------------------------------------------------------

def matmul_te(a: te.Tensor, zp: te.Tensor, w: te.Tensor) -> te.Tensor:
    """int32 out[..., M, N8] = (a - zp) @ B for a u8/i8 activation a[..., M, K], its int16 zero
    points zp (shape [1], or [M]: one per row) and a packed weight `w` (`pack_matmul_weight`).
    The first stage makes A16 = a - zp as int16, K padded to K2 with zeros."""
    *lead, m, k = (int(s) for s in a.shape)
    n8, k2 = int(w.shape[0]) * LANES, int(w.shape[1]) * 2
    per_row = int(zp.shape[0]) > 1

    def pack(*idx):
        value = a[(*idx[:-1], tirx.min(idx[-1], k - 1))].astype("int16") - zp[idx[-2] if per_row else 0]
        return tirx.if_then_else(idx[-1] < k, value, tirx.const(0, "int16"))
    a16 = te.compute((*lead, m, k2), pack, name=PACK_BLOCK)
    ko = te.reduce_axis((0, k2 // 2), "ko")
    ki = te.reduce_axis((0, 2), "ki")

    def dot(*idx):
        n = idx[-1]
        return te.sum(a16[(*idx[:-1], ko * 2 + ki)].astype("int32")
                      * w[n // LANES, ko, n % LANES, ki].astype("int32"), axis=[ko, ki])
    return te.compute((*lead, m, n8), dot, name=MADD_BLOCK)


def conv_te(x: te.Tensor, w: te.Tensor, zero_point: int, strides, pads, dilations, layout: str) -> te.Tensor:
    """int32 out[N, OH, OW, O8] (NHWC) = conv2d of (x - zero_point) for the u8/i8 input x
    (`layout` "NHWC": [N, H, W, C]; "NCHW": [N, C, H, W]) and the packed weight `w`
    (`pack_conv_weight`). The first stage makes X16 = x - zero_point as int16, padded with 0
    spatially and on the channels (and transposes an NCHW input)."""
    last = layout == "NHWC"
    if last:
        n, h, wd, c = (int(s) for s in x.shape)
    else:
        n, c, h, wd = (int(s) for s in x.shape)
    o8, kh, kw, c2 = int(w.shape[0]) * LANES, int(w.shape[1]), int(w.shape[2]), int(w.shape[3]) * 2
    sh, sw = strides
    dh, dw = dilations
    top, left, bottom, right = pads
    hp, wp = h + top + bottom, wd + left + right
    oh = (hp - dh * (kh - 1) - 1) // sh + 1
    ow = (wp - dw * (kw - 1) - 1) // sw + 1

    def pack(b, i, j, ch):
        inside = tirx.all(i >= top, i < h + top, j >= left, j < wd + left, ch < c)
        row = tirx.max(tirx.min(i - top, h - 1), 0)
        col = tirx.max(tirx.min(j - left, wd - 1), 0)
        chan = tirx.min(ch, c - 1)
        value = (x[b, row, col, chan] if last else x[b, chan, row, col]).astype("int16")
        return tirx.if_then_else(inside, value - tirx.const(zero_point, "int16"), tirx.const(0, "int16"))
    x16 = te.compute((n, hp, wp, c2), pack, name=PACK_BLOCK)
    rh = te.reduce_axis((0, kh), "kh")
    rw = te.reduce_axis((0, kw), "kw")
    co = te.reduce_axis((0, c2 // 2), "co")
    ci = te.reduce_axis((0, 2), "ci")

    def dot(b, i, j, o):
        xv = x16[b, i * sh + rh * dh, j * sw + rw * dw, co * 2 + ci].astype("int32")
        return te.sum(xv * w[o // LANES, rh, rw, co, o % LANES, ci].astype("int32"), axis=[rh, rw, co, ci])
    return te.compute((n, oh, ow, o8), dot, name=MADD_BLOCK)


# ---- the schedule rule -----------------------------------------------------------------------

def madd_product(func: tirx.PrimFunc, target) -> s_tir.Schedule | None:
    """The vpmaddwd schedule (module doc) for a kernel holding a `MADD_BLOCK` product, on edgec
    targets with AVX2 (`target.avx2`); None otherwise."""
    if not target.avx2:
        return None
    return int8.schedule_dot(func, MADD)


# ---- lowering: the accumulator of an integer matmul / conv (Target.int8_accumulator) ----------

def accumulator(ctx, kind: str, x, w, x_zero_points: list[int], w_zero_points: list[int], attrs=None):
    """`Target.int8_accumulator` for AVX2 hosts: with a constant weight, the int32 accumulator of
    `kind` ("matmul": a 2-D weight; "conv": group 1) as the kernels above, padded on its last
    axis: (acc, padded size); None where this path does not apply (module doc)."""
    if not isinstance(w, tvm.ir.expr.Constant):
        return None
    if kind == "matmul":
        return _matmul_acc(ctx, x, w, x_zero_points, w_zero_points)
    channels = int(w.ty.shape[-1 if attrs["layout"] == "NHWC" else 1])
    if attrs["group"] != 1 or channels < MIN_CONV_CHANNELS:
        return None
    return _conv_acc(ctx, x, w, x_zero_points[0], w_zero_points, attrs)


def _matmul_acc(ctx, a, b, azp: list[int], bzp: list[int]):
    """int32 (a - azp) @ (b - bzp) as [..., M, N8], or None when b is not 2-D. Returns (acc, N8)."""
    bdata = b.value.numpy()
    if bdata.ndim != 2:
        return None
    shifted = bdata.astype(np.int16) - np.asarray(bzp, np.int16).reshape(1, -1)
    packed = pack_matmul_weight(shifted)
    zp = relax.const(np.asarray(azp, np.int16).reshape(-1))
    acc = ctx.bb.emit_te(matmul_te, a, zp, relax.const(packed), primfunc_name_hint="edgec_madd_matmul")
    return acc, packed.shape[0] * LANES


def _conv_acc(ctx, x, w, xzp: int, wzp: list[int], attrs):
    """int32 conv2d of (x - xzp) and (w - wzp) as NHWC [N, OH, OW, O8], for an NCHW conv (OIHW
    weight) or an NHWC one (OHWI weight). Returns (acc, O8)."""
    wdata = w.value.numpy()
    if attrs["layout"] == "NHWC":
        wdata = wdata.transpose(0, 3, 1, 2)  # OHWI -> OIHW
    shifted = wdata.astype(np.int16) - np.asarray(wzp, np.int16).reshape(-1, 1, 1, 1)
    packed = pack_conv_weight(shifted)
    geometry = (attrs["strides"], attrs["pads"], attrs["dilations"], attrs["layout"])
    acc = ctx.bb.emit_te(lambda xt, wt: conv_te(xt, wt, xzp, *geometry), x, relax.const(packed),
                         primfunc_name_hint="edgec_madd_conv2d")
    return acc, packed.shape[0] * LANES
