"""edgec's default CPU schedule rules, written with `tvm.s_tir` schedule primitives.

Each rule takes a legalized and fused PrimFunc and returns a scheduled `tvm.s_tir.Schedule`, or
None when the kernel does not have the shape the rule handles. Every primitive the rules use
(split, reorder, fuse, parallel, vectorize, unroll, cache_write, reverse_compute_at,
decompose_reduction, compute_inline) keeps the computation the same; only loop order, storage
and instruction selection change.

Rules, tried in this order by `schedule_func`:

- `tiled_reduction`: one reduction block whose iterations are spatial axes then reduction axes
  (conv2d and depthwise conv2d in NHWC, dense, matmul, batch_matmul, pooling in NHWC, sums over
  outer axes). Register tiling: the last spatial axis (the output's contiguous dimension: output
  channels for NHWC convs and pools, columns for matmul) is split into a vector block, the
  second-to-last spatial axis (output width, matmul rows) into an unrolled register block; the
  accumulator tile lives in a local buffer (registers); the reduction loops run around the tile;
  the remaining outer loops are fused and run in parallel. On targets wider than 128 bits, NHWC
  convs and pools with small weights run output rows outermost instead, with their padding made
  per output row or read in place (knobs "order" and "pad"). Elementwise epilogues fused into the
  kernel (bias, relu, residual add, ...) are inlined into the tile's write-back, and producers
  (padding) become a parallel, vectorized stage of their own. A tile under 1024 bytes is a stack
  buffer (LLVM keeps it in registers), a larger one a workspace. The innermost reduction loop is
  unrolled by up to 4. On 128-bit NEON the broadcast operand (matmul's A, a conv's input) is
  also loaded 4 reduction steps at a time as one vector, so that each fmla takes its scalar by
  lane (`fmla v.4s, v.4s, v.s[i]`), and a single-row tile (matrix-vector) is up to 8 registers
  wide.
- `injective`: kernels made only of spatial blocks (elementwise, broadcast, transpose, reshape,
  padding, concat, ...): intermediates inlined, the innermost loop split into a vector block, the
  rest fused and run in parallel.
- `rowwise`: anything else (softmax, layer norm, reductions over the innermost axes): each
  root-level block on its own, spatial blocks parallel and vectorized, reduction blocks parallel
  over their leading spatial loops; a reduction over the innermost axis adds up a long row in
  chunks of `ROW_CHUNK` elements and keeps a vector of partial results per row or chunk when the
  row is a multiple of the lanes (`_blocked_row_reduction`). (dlight's CPU `Reduction` rule is
  not used: for a softmax over a [1, N] tensor it parallelizes the N output elements around the
  whole row reduction, which is quadratic and races on the shared row maximum.)
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import tvm
from tvm import s_tir, tirx

DATA_PAR = tirx.IterVar.DataPar
COMM_REDUCE = tirx.IterVar.CommReduce

# Accumulator registers the register tile may use (AVX-512 and NEON have 32 vector registers,
# AVX2 16; a few are needed for the operands). AVX2: 13, so that a 13-wide output (SqueezeNet's
# 13x13 maps, 13 a prime) gets 13 rows of one vector rather than 1 row of two: measured on a Zen 3
# core, one thread, its 3x3 and 1x1 convs ran 1.6-4.2x faster (512 -> 1000 channels: 13.8 -> 3.3 ms).
ACCUMULATORS = {512: 24, 256: 13, 128: 24}


def _int(x) -> int | None:
    return int(x) if isinstance(x, (int, tirx.IntImm)) else None


def _extent(sch: s_tir.Schedule, loop) -> int | None:
    return _int(sch.get(loop).extent)


def _largest_divisor(n: int, limit: int, multiple_of: int = 1) -> int:
    """The largest divisor of n that is at most `limit` and a multiple of `multiple_of` (1 if none)."""
    for d in range(min(n, limit), 0, -1):
        if n % d == 0 and d % multiple_of == 0:
            return d
    return 1


def vector_factor(extent: int, lanes: int) -> int:
    """How many elements of a loop of `extent` to compute as one vector: up to two registers,
    whole registers when the extent allows, else the largest divisor that fits."""
    for limit in (2 * lanes, lanes):
        if extent % lanes == 0:
            return _largest_divisor(extent, limit, lanes)
    return _largest_divisor(extent, lanes)


def register_tile(vec_extent: int, reg_extent: int, lanes: int, budget: int) -> tuple[int, int]:
    """(vector block, register rows) for the accumulator tile: one or two whole registers wide
    when the extent allows, rows a divisor of `reg_extent`; the pair that keeps the most
    accumulators (at most `budget`) busy, the wider one on a tie. For 13 output columns and
    16 lanes: 16 x 13 (13 accumulators) rather than 32 x 1 (2)."""
    widths = [w for w in (2 * lanes, lanes) if vec_extent % w == 0] or [vector_factor(vec_extent, lanes)]
    best = None
    for vf in widths:
        vectors = max(1, vf // lanes)
        rf = _largest_divisor(reg_extent, max(1, budget // vectors))
        score = (rf * vectors, vf)
        if best is None or score > best[0]:
            best = (score, vf, rf)
    return best[1], best[2]


def root_blocks(sch: s_tir.Schedule) -> list:
    root = sch.get_sblock("root")
    return list(sch.get_child_blocks(root))


def _kinds(sch: s_tir.Schedule, block) -> list[int]:
    return [int(iv.iter_type) for iv in sch.get(block).iter_vars]


def _is_spatial(sch: s_tir.Schedule, block) -> bool:
    return all(k == DATA_PAR for k in _kinds(sch, block))


def _loops_match_iters(sch: s_tir.Schedule, block) -> bool:
    """Whether the block's loops bind its iteration variables one to one, in order, from 0."""
    loops = sch.get_loops(block)
    blk = sch.get(block)
    if len(loops) != len(blk.iter_vars):
        return False
    # The binding values are on the SBlockRealize; read them from the parent loop's body.
    loop_vars = [sch.get(lp).loop_var for lp in loops]
    body = sch.get(loops[-1]).body
    while isinstance(body, tirx.SeqStmt):
        body = body[0]
    if not isinstance(body, s_tir.SBlockRealize):
        return False
    for value, var, lp, iv in zip(body.iter_values, loop_vars, loops, blk.iter_vars):
        if not (isinstance(value, tirx.Var) and value.same_as(var)):
            return False
        if _int(sch.get(lp).min) != 0 or _int(sch.get(lp).extent) is None:
            return False
    return True


def _inline_intermediates(sch: s_tir.Schedule, keep: Callable[[object], bool]) -> None:
    """Inline every spatial block that `keep` does not protect, as long as TVM allows it."""
    changed = True
    while changed:
        changed = False
        for block in root_blocks(sch):
            if keep(block) or not _is_spatial(sch, block):
                continue
            try:
                sch.compute_inline(block)
                changed = True
                break
            except Exception:  # noqa: BLE001 - a primitive refused: try the next option
                continue


def schedule_spatial_block(sch: s_tir.Schedule, block, lanes: int) -> None:
    """Parallel outer loops and a vectorized innermost block for one spatial block at the root."""
    loops = sch.get_loops(block)
    if not loops:
        return
    inner = _extent(sch, loops[-1])
    if inner is not None and inner > 1:
        factor = vector_factor(inner, lanes)
        if factor > 1:
            outer, vec = sch.split(loops[-1], [None, factor])
            sch.vectorize(vec)
            loops = [*loops[:-1], outer]
    if len(loops) > 1:
        fused = sch.fuse(*loops)
    else:
        fused = loops[0]
    sch.parallel(fused)


def _parallel_leading_spatial(sch: s_tir.Schedule, block) -> None:
    """Run the leading spatial loops of a root-level block in parallel."""
    loops = sch.get_loops(block)
    if not loops or not _loops_match_iters(sch, block):
        return
    kinds = _kinds(sch, block)
    n = 0
    while n < len(kinds) and kinds[n] == DATA_PAR:
        n += 1
    if n == 0:
        return
    lead = loops[:n]
    fused = sch.fuse(*lead) if len(lead) > 1 else lead[0]
    sch.parallel(fused)


def _reduction_shape(sch: s_tir.Schedule, block) -> tuple[int, int] | None:
    """(number of spatial axes, number of reduction axes) for a block of the form S..S R..R."""
    kinds = _kinds(sch, block)
    ns = 0
    while ns < len(kinds) and kinds[ns] == DATA_PAR:
        ns += 1
    nr = len(kinds) - ns
    if ns == 0 or nr == 0 or any(k != COMM_REDUCE for k in kinds[ns:]):
        return None
    return ns, nr


def pack_weights(sch: s_tir.Schedule, main, ns: int, vf: int, constant_params, packs: list) -> None:
    """Repack constant weights read by the reduction block so that each vector block is
    contiguous: W[..., n] -> W[n // vf, ..., n % vf] (for an NHWC conv, HWIO -> O'HWIo: the
    weights one output tile needs are one contiguous stream). Only parameters whose last index is
    the vectorized output axis, and that are constants at every call site, are repacked; each
    becomes `(param index, vf)` in `packs`, for the caller to repack the constants the same way."""
    func = sch.mod["main"]
    block = sch.get(main)
    vec_var = block.iter_vars[ns - 1].var
    for i, region in enumerate(block.reads):
        buf = region.source
        index = next((j for j, p in enumerate(func.params) if p.same_as(buf)), None)
        if index is None or index not in constant_params or len(buf.shape) < 2:
            continue
        last = region.region[-1]
        n = _int(buf.shape[-1])
        if not (isinstance(last.min, tirx.Var) and last.min.same_as(vec_var)) or n is None or n % vf:
            continue
        if any(_uses_var(r.min, vec_var) for r in region.region[:-1]):
            continue
        sch.transform_layout(main, ("read", i), lambda *idx: (idx[-1] // vf, *idx[:-1], idx[-1] % vf))
        packs.append((index, vf))


def a_lane_operand(sch: s_tir.Schedule, main, ns: int) -> int | None:
    """The read index of the reduction block's broadcast operand whose last index is the innermost
    reduction variable alone (matmul's A[i, k], an NHWC conv's input[n, h, w, ci]), that does
    not depend on the vectorized output axis and has the accumulator's float type (fmla by lane;
    int8 kernels keep their own shape); None when there is none."""
    block = sch.get(main)
    vec_var = block.iter_vars[ns - 1].var
    k_var = block.iter_vars[-1].var
    out_dtype = str(block.writes[0].source.dtype)
    if not out_dtype.startswith("float"):
        return None
    for i, region in enumerate(block.reads):
        if len(region.region) < 2 or region.source.same_as(block.writes[0].source):
            continue
        if str(region.source.dtype) != out_dtype:
            continue
        last = region.region[-1]
        if not (isinstance(last.min, tirx.Var) and last.min.same_as(k_var)) or _int(last.extent) != 1:
            continue
        if any(_uses_var(r.min, vec_var) or _uses_var(r.min, k_var) for r in region.region[:-1]):
            continue
        return i
    return None


def _buffer_size(buf) -> int | None:
    """Number of elements of a buffer of static shape (None if a dim is not a constant)."""
    dims = [_int(d) for d in buf.shape]
    return None if any(d is None for d in dims) else int(np.prod(dims, dtype=np.int64))


def _uses_var(expr, var) -> bool:
    return any(v.same_as(var) for v in tirx.analysis.undefined_vars(expr))


def repack(array, vf: int):
    """The numpy side of `pack_weights`: W[..., n] -> W[n // vf, ..., n % vf]."""
    import numpy as np
    n = array.shape[-1]
    blocked = array.reshape(*array.shape[:-1], n // vf, vf)
    return np.ascontiguousarray(np.moveaxis(blocked, -2, 0))


def _tiled_reduction_main(sch: s_tir.Schedule):
    """(the reduction block, its number of spatial axes, the bits of its output dtype, its loop
    extents) when `sch` has the one-reduction shape `tiled_reduction` handles, else None."""
    blocks = root_blocks(sch)
    reductions = [b for b in blocks if not _is_spatial(sch, b)]
    if len(reductions) != 1:
        return None
    main = reductions[0]
    shape = _reduction_shape(sch, main)
    if shape is None or not _loops_match_iters(sch, main):
        return None
    dtype_bits = tvm.DataType(str(sch.get(main).writes[0].source.dtype)).bits
    extents = [_extent(sch, lp) for lp in sch.get_loops(main)]
    return main, shape[0], dtype_bits, extents


def reduction_unroll(red_extent: int | None) -> int:
    """How many iterations of the innermost reduction loop `tiled_reduction` unrolls by default:
    the largest divisor of its extent up to 4 (fewer loop-control instructions per fma; on
    128-bit NEON also one q register of the broadcast operand, see `a_lane_operand`)."""
    if not red_extent:
        return 1
    return _largest_divisor(red_extent, 4)


# NHWC convs and pools whose weights are at most this many bytes compute output rows first by
# default on targets wider than 128 bits ("order" 1, with "pad" 1 or 2, see `default_tile`);
# larger weights keep the vector block outermost. Measured (x86, AVX-512, one thread): all of
# ResNet-18's convs rows first: 36.6 ms against 29.1; thresholds 16 KiB to 256 KiB within noise.
ROWS_FIRST_BYTES = 256 * 1024


def default_tile(vec_extent: int, reg_extent: int, lanes: int, vector_bits: int,
                 red_extent: int | None = None, weight_bytes: int | None = None) -> dict:
    """The knobs `tiled_reduction` uses when none are given: {"vf": vector block, "rf": register
    rows} from `register_tile` (on 128-bit targets, a single row gets up to 8 registers wide),
    "ku": the innermost reduction loop's unroll factor (`reduction_unroll`, from `red_extent`,
    that loop's extent; a single row on a 128-bit target: 8 when it divides) and "lane": 1 to
    load the broadcast operand `ku` elements at a time into vectors and use them lane by lane
    (when `ku` is whole vectors on a 128-bit target: NEON's fmla by element), else 0.
    "order" and "pad" (NHWC convs and pools, `weight_bytes` given): on targets wider than 128
    bits, weights of at most ROWS_FIRST_BYTES get "order" 1 (output rows outermost, see
    `tiled_reduction`) with "pad" 2 (padding read in place) when the innermost reduction has at
    most 4 steps (depthwise convs, RGB input), else "pad" 1 (padded input rows made per output
    row); larger weights and 128-bit targets keep "order" 0, "pad" 0 (vector block outermost,
    a padded copy of the whole input). Measured on the x86 host (AVX-512, one thread,
    MobileNetV2-like model): 9.5 ms with "order"/"pad" 0 everywhere, 7.2 ms with these defaults."""
    vf, rf = register_tile(vec_extent, reg_extent, lanes, ACCUMULATORS.get(vector_bits, 16))
    if vector_bits == 128 and rf == 1:
        # One row (a matrix-vector product): a wider block of contiguous columns, loaded with
        # ldp (two registers per instruction) and fewer loop-control instructions per fmla.
        vf = next((w for w in (8 * lanes, 4 * lanes) if w > vf and vec_extent % w == 0), vf)
    ku = reduction_unroll(red_extent)
    if vector_bits == 128 and rf == 1 and red_extent and red_extent % (2 * lanes) == 0:
        ku = 2 * lanes  # one row: registers to spare, two q registers of the broadcast operand
    rows_first = int(vector_bits > 128 and weight_bytes is not None and weight_bytes <= ROWS_FIRST_BYTES)
    # Few input channels per reduction step (depthwise convs: 1, a first conv on RGB: 3): the
    # padding is read in place ("pad" 2); otherwise padded rows are made per output row.
    pad = (2 if red_extent is not None and red_extent <= 4 else 1) if rows_first else 0
    return {"vf": vf, "rf": rf, "ku": ku, "lane": int(vector_bits == 128 and ku % lanes == 0),
            "order": rows_first, "pad": pad}


def _conv_shape(ns: int, extents: list) -> bool:
    """Whether a kernel has the loops of an NHWC conv or pool: four spatial axes (n, h, w, c)
    and at least two reduction axes (kh, kw[, ci]); a 4-D batched matmul has one."""
    return ns == 4 and len(extents) - ns >= 2


def _weight_bytes(ns: int, dtype_bits: int, extents: list) -> int | None:
    """Bytes of a conv's weights (reduction extents times output channels) when the kernel has
    the shape of an NHWC conv or pool (n, h, w, c, reductions...) with static extents, else None."""
    if not _conv_shape(ns, extents) or any(e is None for e in extents):
        return None
    return int(np.prod(extents[ns - 1:], dtype=np.int64)) * dtype_bits // 8


def tiled_reduction_space(func: tirx.PrimFunc, vector_bits: int) -> list[dict]:
    """The knob settings `tiled_reduction` accepts for `func`, the default first ([] when the rule
    does not apply). Knobs: "vf", the output's contiguous axis block computed as vectors (a divisor
    of that axis, whole registers when possible); "rf", the register rows (a divisor of the
    second-to-last spatial axis), with at most 32 accumulator registers in the tile; "ku", the
    innermost reduction loop's unroll factor (1 or the default); "lane" (see `default_tile`), on
    with the default "ku" when the default has it on; "order" and "pad" (see `tiled_reduction`):
    NHWC convs and pools on targets wider than 128 bits try (0, 0), (1, 1) and (1, 2) when the
    kernel has a padding stage, both orders with "pad" 0 (or the default's) when it has none,
    the other orders with the default "ku" only; elsewhere only the default's."""
    sch = s_tir.Schedule(func)
    found = _tiled_reduction_main(sch)
    if found is None:
        return []
    main, ns, dtype_bits, extents = found
    lanes = max(1, vector_bits // dtype_bits)
    vec_extent, reg_extent = extents[ns - 1], (extents[ns - 2] if ns >= 2 else 1)
    has_producer = not sch.get(root_blocks(sch)[0]).same_as(sch.get(main))
    default = default_tile(vec_extent, reg_extent, lanes, vector_bits, extents[-1],
                           _weight_bytes(ns, dtype_bits, extents))
    if default["vf"] < min(4, lanes):
        return []
    widths = [w for w in (lanes, 2 * lanes, 4 * lanes) if vec_extent % w == 0] or [default["vf"]]
    unrolls = [(default["ku"], default["lane"])] + ([(1, 0)] if default["ku"] > 1 else [])
    # Loop orders (convs on targets wider than 128 bits): (order, pad) as in `default_tile`.
    orders = [(default["order"], default["pad"])]
    if _conv_shape(ns, extents) and vector_bits > 128:
        if has_producer:
            orders += [o for o in ((0, 0), (1, 1), (1, 2)) if o not in orders]
        else:
            orders.append((1 - default["order"], 0))  # no padding stage: "pad" changes nothing
    space = [default]
    for order, pad in orders:
        # Other loop orders: with the default unrolling only (a smaller space).
        for ku, lane in (unrolls if (order, pad) == orders[0] else unrolls[:1]):
            for vf in widths:
                vectors = max(1, vf // lanes)
                for rf in range(1, reg_extent + 1):
                    knobs = {"vf": vf, "rf": rf, "ku": ku, "lane": lane, "order": order, "pad": pad}
                    if reg_extent % rf == 0 and rf * vectors <= 32 and knobs != default:
                        space.append(knobs)
    return space


def tiled_reduction(func: tirx.PrimFunc, vector_bits: int, constant_params=frozenset(),
                    packs: list | None = None, knobs: dict | None = None) -> s_tir.Schedule | None:
    """Register-tiled schedule for a kernel with one reduction block (see the module doc).
    Constant weights among `constant_params` are repacked (see `pack_weights`, `packs`).
    `knobs`: one entry of `tiled_reduction_space` (None: the default tile); a missing knob
    takes its default. Beyond the register tile ("vf", "rf", "ku", "lane"), for NHWC convs and
    pools (four spatial axes): "order" 0 puts the vector block's loop outermost (its weights
    stay in cache while every output row uses them), "order" 1 the output rows (n, h), run in
    parallel, with the tiles of a row and their vector blocks inside (the input rows stay in
    cache: small weights); "pad" 0 keeps producers (padding) as a whole stage of their own,
    "pad" 1 (with "order" 1) computes, inside each output row, the padded input rows it reads,
    "pad" 2 inlines the padding into the conv's loads."""
    sch = s_tir.Schedule(func)
    found = _tiled_reduction_main(sch)
    if found is None:
        return None
    main, ns, dtype_bits, extents = found
    blocks = root_blocks(sch)
    lanes = max(1, vector_bits // dtype_bits)
    vec_extent = extents[ns - 1]
    reg_extent = extents[ns - 2] if ns >= 2 else 1
    red_extent = extents[-1]
    default = default_tile(vec_extent, reg_extent, lanes, vector_bits, red_extent,
                           _weight_bytes(ns, dtype_bits, extents))
    knobs = {**default, **(knobs or {})}  # a missing knob takes its default
    vf, rf, ku, lane = int(knobs["vf"]), int(knobs["rf"]), int(knobs["ku"]), int(knobs["lane"])
    order, pad = int(knobs.get("order", 0)), int(knobs.get("pad", 0))
    if not _conv_shape(ns, extents):
        order = pad = 0  # rows first, padding per row or in place: NHWC convs and pools only
    if not order and pad == 1:
        pad = 0  # per-row producers need the rows-first order
    if vf < min(4, lanes):
        return None  # the contiguous output axis is too short to vectorize: a row reduction
    if vec_extent % vf or reg_extent % rf or red_extent is None or red_extent % ku:
        return None

    # Epilogue: inline elementwise blocks after the reduction into each other; producers
    # (padding) stay as stages of their own.
    block_names = [sch.get(b).name_hint for b in blocks]
    main_index = block_names.index(sch.get(main).name_hint)
    producers = set(block_names[:main_index])
    output_names = {sch.get(b).name_hint for b in sch.get_output_blocks(sch.get_sblock("root"))}

    def keep(block) -> bool:
        name = sch.get(block).name_hint
        return name in producers or name in output_names or name == block_names[main_index]

    _inline_intermediates(sch, keep)
    others = {sch.get(b).name_hint for b in root_blocks(sch)} - {block_names[main_index]}

    if pad == 2:
        # "pad" 2: the producers (padding) are inlined: the conv reads its input in place, with
        # the bounds test in its loads (depthwise convs: no padded copy at all).
        for block in root_blocks(sch):
            if sch.get(block).name_hint in producers and _is_spatial(sch, block):
                try:
                    sch.compute_inline(block)
                except Exception:  # noqa: BLE001 - a primitive refused: the producer stays a stage
                    pass
    if packs is not None:
        pack_weights(sch, main, ns, vf, constant_params, packs)

    # Accumulate the tile in registers: the reduction block writes a tile buffer and a
    # write-back block copies the finished tile out. A small tile goes on the stack ("global" scope below TVM's 1024-byte stack limit), where
    # LLVM keeps it in registers; a "local" buffer is a TVMBackendAllocWorkspace call per tile.
    tile_bytes = vf * rf * dtype_bits // 8
    writeback = sch.cache_write(main, 0, "global" if tile_bytes < 1024 else "local")
    consumers = [b for b in root_blocks(sch)
                 if sch.get(b).name_hint not in producers
                 and sch.get(b).name_hint not in (sch.get(main).name_hint, sch.get(writeback).name_hint)]
    out_size = _buffer_size(sch.get(writeback).writes[0].source)
    for block in consumers:
        # Only epilogues that write as many elements as the reduction: TVM also inlines a slice
        # (fewer elements) and its write-back then stores the whole tile past the slice's end.
        if _buffer_size(sch.get(block).writes[0].source) != out_size:
            continue
        try:
            sch.reverse_compute_inline(block)
        except Exception:  # noqa: BLE001 - a primitive refused: try the next option
            pass

    loops = sch.get_loops(main)
    spatial, reduction = loops[:ns], loops[ns:]
    k_inner = None
    if ku > 1:
        k_outer, k_inner = sch.split(reduction[-1], [None, ku])
        reduction = [*reduction[:-1], k_outer, k_inner]
    v_outer, v_inner = sch.split(spatial[-1], [None, vf])
    rows = None
    if ns >= 2:
        r_outer, r_inner = sch.split(spatial[-2], [None, rf])
        tile = [r_inner, v_inner]
        if order:
            # Rows first ("order" 1, convs): each output row's tiles, every vector block of
            # one tile in turn; the input rows one output row needs stay in cache. The row loops
            # run in parallel, the tile loops inside them.
            outer = [*spatial[:-2], r_outer, v_outer]
        else:
            # The vector block's outer loop goes first: one block of weights (convs) or of B's
            # columns (matmul) stays in cache while every output row uses it.
            outer = [v_outer, *spatial[:-2], r_outer]
    else:
        outer = [v_outer]
        tile = [v_inner]
    sch.reorder(*outer, *reduction, *tile)
    if order:
        rows = sch.fuse(*spatial[:-2])
        fused = sch.fuse(r_outer, v_outer)
    else:
        fused = sch.fuse(*outer) if len(outer) > 1 else outer[0]

    sch.reverse_compute_at(writeback, fused, preserve_unit_loops=True)
    sch.vectorize(tile[-1])
    if len(tile) == 2 and rf > 1:
        sch.unroll(tile[0])
    sch.parallel(rows if rows is not None else fused)
    if k_inner is not None:
        sch.unroll(k_inner)
        lane_index = a_lane_operand(sch, main, ns) if lane and ku % lanes == 0 else None
        if lane_index is not None:
            # The broadcast operand's `ku` consecutive reduction elements of each tile row, one
            # vector load per row per `ku` steps, kept in a small stack buffer that LLVM turns into
            # registers: each fma then takes its scalar as a lane (NEON `fmla v.4s, v.4s, v.s[i]`).
            cached = sch.cache_read(main, lane_index, "global")
            sch.compute_at(cached, reduction[-2])
            k_outer_stmt = sch.get(reduction[-2])
            depth = 1 + next(i for i, lp in enumerate(sch.get_loops(main)) if sch.get(lp).same_as(k_outer_stmt))
            c_loops = sch.get_loops(cached)[depth:]
            if c_loops:
                sch.vectorize(c_loops[-1])
                for lp in c_loops[:-1]:
                    sch.unroll(lp)
    sch.decompose_reduction(main, reduction[0])
    wb_loops = sch.get_loops(writeback)
    sch.vectorize(wb_loops[-1])
    # Only the loops below the fused tile loop: constant tile indices (registers). With rows
    # first ("order" 1) the fused loop is not the outermost one (the row loop is): unrolling it
    # too copied the whole tile body once per tile of a row (a 14x14x384 depthwise conv: 96
    # copies, about a minute of LLVM per kernel).
    fused_stmt = sch.get(fused)
    below = 1 + next(i for i, lp in enumerate(wb_loops) if sch.get(lp).same_as(fused_stmt))
    for lp in wb_loops[below:-1]:
        sch.unroll(lp)

    if pad == 1:
        # "pad" 1: the producers (padding) compute, for each output row, the input rows it
        # reads, just before it (in cache), instead of a padded copy of the whole input.
        for block in root_blocks(sch):
            name = sch.get(block).name_hint
            if name not in producers or not _is_spatial(sch, block):
                continue
            try:
                sch.compute_at(block, rows)
            except Exception:  # noqa: BLE001 - a primitive refused: the producer stays a stage
                continue
            p_loops = sch.get_loops(block)[1:]
            inner = _extent(sch, p_loops[-1]) if p_loops else None
            factor = vector_factor(inner, lanes) if inner else 1
            if factor > 1:
                try:
                    _, vec = sch.split(p_loops[-1], [None, factor])
                    sch.vectorize(vec)
                except Exception:  # noqa: BLE001 - a primitive refused: a scalar copy loop
                    pass
    # Producers (padding) and epilogue blocks that could not be inlined: stages of their own.
    for block in root_blocks(sch):
        name = sch.get(block).name_hint
        if name in others and _is_spatial(sch, block):
            try:
                schedule_spatial_block(sch, block, lanes)
            except Exception:  # noqa: BLE001 - a primitive refused: leave the stage as it is
                pass
    return sch


def injective(func: tirx.PrimFunc, vector_bits: int) -> s_tir.Schedule | None:
    """Parallel + vectorized schedule for kernels whose blocks are all spatial."""
    sch = s_tir.Schedule(func)
    blocks = root_blocks(sch)
    if not blocks or not all(_is_spatial(sch, b) for b in blocks):
        return None
    output_names = {sch.get(b).name_hint for b in sch.get_output_blocks(sch.get_sblock("root"))}
    _inline_intermediates(sch, lambda b: sch.get(b).name_hint in output_names)
    for block in root_blocks(sch):
        dtype_bits = tvm.DataType(str(sch.get(block).writes[0].source.dtype)).bits
        lanes = max(1, vector_bits // max(8, dtype_bits))
        schedule_spatial_block(sch, block, lanes)
    return sch


def rowwise(func: tirx.PrimFunc, vector_bits: int) -> s_tir.Schedule | None:
    """Every other kernel (reductions over the innermost axes: softmax, layer norm, means over
    the last axes; kernels with several reductions): each root-level block on its own. Spatial
    blocks get parallel outer loops and a vectorized innermost loop; reduction blocks run their
    leading spatial loops in parallel and keep their reduction loops serial, except a
    reduction over the innermost axis, which is added up in chunks and vector lanes
    (`_blocked_row_reduction`). Nothing is inlined or moved, so no value is computed twice."""
    sch = s_tir.Schedule(func)
    for block in root_blocks(sch):
        try:
            if _is_spatial(sch, block):
                dtype_bits = tvm.DataType(str(sch.get(block).writes[0].source.dtype)).bits
                schedule_spatial_block(sch, block, max(1, vector_bits // max(8, dtype_bits)))
            elif not _blocked_row_reduction(sch, block, vector_bits):
                _parallel_leading_spatial(sch, block)
        except Exception:  # noqa: BLE001 - a primitive refused: leave this block as it is
            pass
    return sch


# Elements of a row that one partial result of a long row reduction adds up serially
# (`_blocked_row_reduction`).
ROW_CHUNK = 256


def _blocked_row_reduction(sch: s_tir.Schedule, block, vector_bits: int) -> bool:
    """A reduction over the innermost axis (softmax's max and sum, log-softmax's sum, layer
    norm's mean and variance) computed as partial results, so that no float32 accumulator adds up
    a long row one element at a time (a serial sum over 18,385 peaked softmax terms erred by 1e-4):
    - a row longer than `ROW_CHUNK` is cut into chunks of `ROW_CHUNK` contiguous elements, each
      summed into a [rows..., chunks] buffer (rfactor), in parallel over rows and chunks; the
      chunk sums are then added up per row. A shorter last chunk gets a loop of its own (so the
      others check no bound), and the rows alone run in parallel;
    - when the row's length is a multiple of the vector's lanes (and at least two vectors), each
      row or chunk keeps `lanes` partial results in a vector (a second rfactor, its loop
      vectorized), combined at the end.
    A reduction to several buffers (argmax's value and index: exact in any order) is not chunked.
    True when applied; the schedule is left unchanged when the block does not fit (several
    reduction axes, loops that do not bind the block's iterations) or is neither chunked nor a
    multiple of the lanes."""
    shape = _reduction_shape(sch, block)
    if shape is None or shape[1] != 1 or not _loops_match_iters(sch, block):
        return False
    dtype_bits = tvm.DataType(str(sch.get(block).writes[0].source.dtype)).bits
    lanes = max(1, vector_bits // dtype_bits)
    loops = sch.get_loops(block)
    extent = _extent(sch, loops[-1])
    if extent is None:
        return False
    if lanes < 2 or extent % lanes or extent < 2 * lanes:
        lanes = 1
    # argmax's chunks fail to build ("Trying to update var ... with a different value") once the
    # last one is partitioned off.
    chunked = extent > ROW_CHUNK and len(sch.get(block).writes) == 1
    if not chunked and lanes == 1:
        return False
    rows = shape[0]
    k = loops[-1]
    if lanes > 1:
        k = sch.split(k, [None, lanes])[0]
    if chunked:
        # [chunk, k, lane]: the last chunk's bound does not depend on the lane.
        chunk = sch.split(k, [None, ROW_CHUNK // lanes])[0]
        block = sch.rfactor(chunk, factor_axis=rows)  # its loops: [rows..., chunk, k(, lane)]
    if lanes > 1:
        block = sch.rfactor(sch.get_loops(block)[-1], factor_axis=rows + chunked)  # [rows..., (chunk,) k, lane]
    loops = sch.get_loops(block)
    if lanes > 1:
        sch.vectorize(loops[-1])
    lead = loops[:rows + chunked]
    if chunked and extent % ROW_CHUNK:
        # The init stays in the block: decompose_reduction does not take partitioned loops.
        lead = loops[:rows]
        sch.loop_partition(loops[rows], [extent // ROW_CHUNK, None])
    else:
        sch.decompose_reduction(block, loops[-2 if lanes > 1 else -1])  # at the k loop; after vectorize
    sch.parallel(sch.fuse(*lead) if len(lead) > 1 else lead[0])
    return True
