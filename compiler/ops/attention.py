"""Attention and rotary embeddings: ONNX importers that decompose into existing edgec ops.

No op of its own: each importer emits matmul, mul, add, softmax, where, reshape, transpose,
slice, concat, gather, ..., the form that `fuse-epilogue` (the scale and mask after the score
matmul) and `fuse-elementwise` then compile into few kernels. `attend` is the shared core:

    scores = (q @ k^T) * scale                      matmul {transpose_b=1}, mul
    scores = softcap * tanh(scores / softcap)       only with softcap > 0
    scores = scores + bias                          only with a mask (additive: 0 or -inf/fill)
    probs  = softmax(scores)                        in `softmax_dtype` when given (cast and back)
    probs  = where(fully masked row, 0, probs)      only when some row can be fully -inf masked
    y      = probs @ v

For float16, q and k are each scaled by sqrt(scale) before the matmul instead (q @ k^T could
overflow float16, as the ONNX spec warns), and the softmax runs in float32 unless
softmax_precision says otherwise (with a float16 softmax, three of the backend's float16 cases
miss the reference by an ulp). The shapes are
q [B, Hq, Sq, D], k [B, Hkv, Skv, D], v [B, Hkv, Skv, Dv] with Hq a multiple of Hkv (grouped
query attention: query head h uses key/value head h // (Hq / Hkv), by reshaping q to
[B, Hkv, Hq/Hkv, Sq, D] against k and v as [B, Hkv, 1, Skv, .]; nothing is repeated).

ONNX importers:
- Attention (opsets 23, 24, 25): Q, K, V 4-D [B, H, S, D], or 3-D [B, S, H*D] with q_num_heads
  and kv_num_heads; attn_mask bool (False: masked) or float (added), broadcasting to
  [B, Hq, Sq, Skv], padded with masked columns when shorter than Skv; past_key/past_value
  (concatenated before K/V: present_key/present_value); is_causal (bottom-right aligned: query i
  attends key j iff j <= i + offset, offset = past length, or nonpad_kv_seqlen[b] - Sq); scale
  (default 1/sqrt(D)); softcap; nonpad_kv_seqlen (opset 24: keys from nonpad_kv_seqlen[b] on are
  masked); left_window_size / right_window_size (opset 25); qk_matmul_output_mode 0 (scaled
  scores), 1 (after softcap), 2 (plus mask), 3 (probabilities); softmax_precision float, float16
  or double. A fully masked row gives zeros (the spec's guard), decided on the mask. Refused:
  bfloat16, softmax_precision bfloat16.
- RotaryEmbedding (opset 23): X 4-D [B, H, S, D] or 3-D [B, S, H*D] with num_heads; cos_cache and
  sin_cache [B, S, R/2], or [max_position, R/2] indexed by position_ids [B, S]; interleaved;
  rotary_embedding_dim R (default D, the rest of each head is passed through).
- com.microsoft Attention: input [B, S, hidden], weights [hidden, Dq + Dk + Dv] packed Q, K, V
  (equal thirds, or the qkv_hidden_sizes [Dq, Dk, Dv] with Dq = Dk), bias [Dq + Dk + Dv] optional;
  num_heads; mask_index absent, 2-D [B, S] key padding mask (0: masked), 1-D [B] key lengths
  (keys from mask_index[b] on are masked) or 3-D [B, S, S] per query; unidirectional (causal);
  scale (default 1/sqrt(head size)); mask_filter_value (default -10000: what a padding-masked
  score becomes, a causally masked one becomes the float32 lowest, as in ONNX Runtime); the
  optional present output [2, B, H, S, head size]. A constant weight becomes three `dense`.
- com.microsoft MultiHeadAttention: query [B, Sq, D], key [B, Skv, D], value [B, Skv, Dv] (3-D,
  separate); bias [D + D + Dv] optional; key_padding_mask as Attention's mask_index; num_heads,
  unidirectional, scale, mask_filter_value; the optional present_key/present_value outputs
  [B, H, Skv, head size] (the key and value heads).
  Refused, with an error naming the node and the input or attribute: past, attention_bias,
  past_sequence_length, past_key, past_value, cache_indirection, a [2 * B] or 4-D mask_index,
  packed or 4-D key/value, do_rotary, past_present_share_buffer, rotary_embedding_dim.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import DTYPES
from .base import onnx_op
from .nn import _importer

MS = "com.microsoft"
SOFTMAX_PRECISION = {1: "f32", 10: "f16", 11: "f64"}  # ONNX data types softmax_precision may name


def _const(ctx, value, dtype: str):
    return ctx.const(np.asarray(value, dtype=DTYPES[dtype]))


def _reshape(ctx, x, shape):
    shape = [int(d) for d in shape]
    return x if list(x.type.shape) == shape else ctx.emit1("reshape", [x], {"shape": shape})


def split_heads(ctx, x, heads: int, what: str):
    """[B, S, H*D] -> [B, H, S, D]."""
    b, s, hidden = x.type.shape
    if heads < 1 or hidden % heads:
        raise ctx.fail(f"{what} has hidden size {hidden}, which {heads} heads do not divide")
    return ctx.emit1("transpose", [_reshape(ctx, x, [b, s, heads, hidden // heads])], {"perm": [0, 2, 1, 3]})


def merge_heads(ctx, x):
    """[B, H, S, D] -> [B, S, H*D]."""
    b, h, s, d = x.type.shape
    return _reshape(ctx, ctx.emit1("transpose", [x], {"perm": [0, 2, 1, 3]}), [b, s, h * d])


def _grouped(ctx, x, groups: int):
    """[B, Hq, S, E] -> [B, Hkv, Hq/Hkv, S, E] (the query side) when heads are grouped."""
    b, h, s, e = x.type.shape
    return x if groups == 1 else _reshape(ctx, x, [b, h // groups, groups, s, e])


def _key_side(ctx, x, groups: int):
    """[B, Hkv, S, E] -> [B, Hkv, 1, S, E] (broadcast over a group of query heads) when grouped."""
    b, h, s, e = x.type.shape
    return x if groups == 1 else _reshape(ctx, x, [b, h, 1, s, e])


def _fully_masked_rows(ctx, bias):
    """bool [..., Sq, 1]: the rows of `bias` that are -inf throughout, or None when none can be
    (a constant bias is checked here)."""
    if bias.is_const:
        rows = np.isneginf(bias.const_value().max(axis=-1, keepdims=True))
        return ctx.const(rows) if rows.any() else None
    top = ctx.emit1("reduce_max", [bias], {"axes": [bias.type.rank - 1], "keepdims": 1})
    return ctx.emit1("equal", [top, _const(ctx, -np.inf, bias.type.dtype)])


def attend(ctx, q, k, v, bias=None, scale: float | None = None, softcap: float = 0.0,
           softmax_dtype: str | None = None, guard: bool = True):
    """Scaled dot-product attention over 4-D q, k, v (see the module docstring); `bias` broadcasts
    to the scores [B, Hq, Sq, Skv]. With `guard`, a row whose bias is -inf throughout gives zeros
    (checked at import for a constant bias). Returns (y [B, Hq, Sq, Dv], {mode: scores}) with the
    scores of qk_matmul_output_mode 0 to 3."""
    dtype = q.type.dtype
    b, hq, sq, d = q.type.shape
    hkv, skv = k.type.shape[1], k.type.shape[2]
    if hq % hkv or v.type.shape[1] != hkv:
        raise ctx.fail(f"{hq} query heads cannot share {hkv} key and {v.type.shape[1]} value heads")
    groups = hq // hkv
    scale = 1 / math.sqrt(d) if scale is None else scale
    if dtype == "f16":  # q and k each scaled by sqrt(scale) first, as the spec says: q @ k^T may overflow
        root = _const(ctx, math.sqrt(scale), dtype)
        q, k = ctx.emit1("mul", [q, root]), ctx.emit1("mul", [k, root])
    scores = ctx.emit1("matmul", [_grouped(ctx, q, groups), _key_side(ctx, k, groups)], {"transpose_b": 1})
    scores = _reshape(ctx, scores, [b, hq, sq, skv])
    if dtype != "f16":
        scores = ctx.emit1("mul", [scores, _const(ctx, scale, dtype)])
    modes = {0: scores}
    if softcap > 0:
        capped = ctx.emit1("tanh", [ctx.emit1("div", [scores, _const(ctx, softcap, dtype)])])
        scores = ctx.emit1("mul", [capped, _const(ctx, softcap, dtype)])
    modes[1] = scores
    if bias is not None:
        scores = ctx.emit1("add", [scores, bias])
    modes[2] = scores
    softmax_dtype = softmax_dtype or ("f32" if dtype == "f16" else None)  # float16 scores: float32 softmax
    if softmax_dtype not in (None, dtype):
        scores = ctx.emit1("cast", [scores], {"to": softmax_dtype})
    probs = ctx.emit1("softmax", [scores], {"axis": -1})
    masked = _fully_masked_rows(ctx, bias) if guard and bias is not None else None
    if masked is not None:
        probs = ctx.emit1("where", [masked, _const(ctx, 0, probs.type.dtype), probs])
    if probs.type.dtype != dtype:
        probs = ctx.emit1("cast", [probs], {"to": dtype})
    modes[3] = probs
    y = ctx.emit1("matmul", [_grouped(ctx, probs, groups), _key_side(ctx, v, groups)])
    return _reshape(ctx, y, [b, hq, sq, v.type.shape[3]]), modes


def _add(ctx, a, b):
    """a + b, computed here when both are constants (a mask and a causal bias)."""
    if a is None or b is None:
        return a if b is None else b
    if a.is_const and b.is_const:
        return ctx.const(a.const_value() + b.const_value())
    return ctx.emit1("add", [a, b])


def additive(ctx, allowed, dtype: str, fill: float = -np.inf):
    """A bool Value (True: attend) as an additive bias of `dtype`: 0 where allowed, else `fill`."""
    if allowed.is_const:
        return ctx.const(np.where(allowed.const_value(), 0, fill).astype(DTYPES[dtype]))
    return ctx.emit1("where", [allowed, _const(ctx, 0, dtype), _const(ctx, fill, dtype)])


def _positions(ctx, sq: int, skv: int, offset, causal: bool, left: int, right: int, nonpad):
    """bool [Sq, Skv] (or [B, 1, Sq, Skv] with nonpad_kv_seqlen): query i, at absolute position
    i + offset, may attend key j (causal: j <= i + offset; windows: -left <= j - (i + offset) <=
    right for the bounds that are not -1; nonpad_kv_seqlen: j < nonpad[b], offset nonpad[b] - Sq);
    None when every key may be attended."""
    i = np.arange(sq).reshape(sq, 1)
    j = np.arange(skv).reshape(1, skv)
    conds = []
    if nonpad is not None:
        if nonpad.type.dtype != "i64":
            nonpad = ctx.emit1("cast", [nonpad], {"to": "i64"})
        nonpad = _reshape(ctx, nonpad, [nonpad.type.size, 1, 1, 1])
        # distance i + offset - j with offset = nonpad - Sq
        distance = ctx.emit1("add", [ctx.const((i - j - sq).astype(np.int64)), nonpad])
        conds.append(ctx.emit1("less", [ctx.const(j.astype(np.int64)), nonpad]))
    else:
        distance = ctx.const((i - j + offset).astype(np.int64))
    zero = ctx.const(np.int64(0))
    if causal:
        conds.append(ctx.emit1("greater_equal", [distance, zero]))
    if left >= 0:
        conds.append(ctx.emit1("less_equal", [distance, ctx.const(np.int64(left))]))
    if right >= 0:
        conds.append(ctx.emit1("greater_equal", [distance, ctx.const(np.int64(-right))]))
    allowed = None
    for c in conds:
        allowed = c if allowed is None else ctx.emit1("and", [allowed, c])
    if allowed is not None and allowed.is_const and allowed.const_value().all():
        return None
    return allowed


def _mask_bias(ctx, mask, dtype: str, skv: int):
    """attn_mask as an additive bias: a bool mask True -> 0, False -> -inf; a float one as it is;
    a last axis shorter than Skv is extended with masked columns."""
    short = skv - mask.type.shape[-1]
    if short < 0:
        raise ctx.fail(f"attn_mask {mask.type} has more columns than the {skv} keys")
    if short:
        fill = np.zeros((*mask.type.shape[:-1], short), DTYPES[mask.type.dtype])
        fill[...] = False if mask.type.dtype == "bool" else -np.inf
        mask = ctx.emit1("concat", [mask, ctx.const(fill)], {"axis": mask.type.rank - 1})
    if mask.type.dtype == "bool":
        return additive(ctx, mask, dtype)
    if mask.type.dtype != dtype:
        raise ctx.fail(f"attn_mask is {mask.type.dtype}, Q is {dtype}; a float mask must have Q's type")
    return mask


@_importer("Attention")
def _import_attention(ctx, node, inputs, attrs):
    """ONNX Attention (opsets 23 to 25), decomposed (see the module docstring)."""
    q, k, v, mask, past_k, past_v, nonpad = (list(inputs) + [None] * 7)[:7]
    dtype = q.type.dtype
    if dtype not in ("f16", "f32", "f64"):
        raise ctx.fail(f"Q is {q.type}; Attention takes float16, float32 or float64")
    if q.type.rank not in (3, 4) or k.type.rank != q.type.rank or v.type.rank != q.type.rank:
        raise ctx.fail(f"Q, K and V must all be 3-D or all 4-D, got {q.type}, {k.type}, {v.type}")
    if (past_k is None) != (past_v is None):
        raise ctx.fail("past_key and past_value must be given together")
    if nonpad is not None and past_k is not None:
        raise ctx.fail("nonpad_kv_seqlen cannot be combined with past_key/past_value")
    three_d = q.type.rank == 3
    if three_d:
        if "q_num_heads" not in attrs or "kv_num_heads" not in attrs:
            raise ctx.fail("3-D Q, K, V need the q_num_heads and kv_num_heads attributes")
        q = split_heads(ctx, q, attrs["q_num_heads"], "Q")
        k = split_heads(ctx, k, attrs["kv_num_heads"], "K")
        v = split_heads(ctx, v, attrs["kv_num_heads"], "V")
    past = 0
    if past_k is not None:
        past = past_k.type.shape[2]
        k = ctx.emit1("concat", [past_k, k], {"axis": 2})
        v = ctx.emit1("concat", [past_v, v], {"axis": 2})
    present_k, present_v = k, v
    precision = attrs.get("softmax_precision")
    if precision is not None and precision not in SOFTMAX_PRECISION:
        raise ctx.fail(f"softmax_precision {precision} is not supported (1: float, 10: float16, 11: double)")
    mode = attrs.get("qk_matmul_output_mode", 0)
    if mode not in (0, 1, 2, 3):
        raise ctx.fail(f"qk_matmul_output_mode {mode} is not one of 0, 1, 2, 3")

    sq, skv = q.type.shape[2], k.type.shape[2]
    bias = None if mask is None else _mask_bias(ctx, mask, dtype, skv)
    allowed = _positions(ctx, sq, skv, past, bool(attrs.get("is_causal", 0)), attrs.get("left_window_size", -1),
                         attrs.get("right_window_size", -1), nonpad)
    if allowed is not None:
        bias = _add(ctx, bias, additive(ctx, allowed, dtype))
    y, scores = attend(ctx, q, k, v, bias, attrs.get("scale"), attrs.get("softcap", 0.0),
                       SOFTMAX_PRECISION.get(precision))
    if three_d:
        y = merge_heads(ctx, y)
    return [y, present_k, present_v, scores[mode]][:len(node.output)]


@_importer("RotaryEmbedding")
def _import_rotary_embedding(ctx, node, inputs, attrs):
    """ONNX RotaryEmbedding (opset 23), decomposed (see the module docstring)."""
    x, cos, sin, position_ids = (list(inputs) + [None] * 4)[:4]
    shape = x.type.shape
    if x.type.rank == 3:
        heads = attrs.get("num_heads", 0)
        if heads < 1 or shape[2] % heads:
            raise ctx.fail(f"3-D X {x.type} needs num_heads that divides its hidden size, got {heads}")
        work = _reshape(ctx, x, [shape[0], shape[1], heads, shape[2] // heads])  # [B, S, H, D]
        batch, seq = shape[0], shape[1]
        cache_dims = [batch, seq, 1]  # the caches broadcast over the heads
    elif x.type.rank == 4:
        work = x  # [B, H, S, D]
        batch, seq = shape[0], shape[2]
        cache_dims = [batch, 1, seq]
    else:
        raise ctx.fail(f"X must be 3-D or 4-D, got {x.type}")
    head = work.type.shape[3]
    rot = attrs.get("rotary_embedding_dim", 0) or head
    if rot > head or rot % 2:
        raise ctx.fail(f"rotary_embedding_dim {rot} must be even and at most the head size {head}")
    half = rot // 2
    if position_ids is not None:
        cos = ctx.emit1("gather", [cos, position_ids], {"axis": 0})
        sin = ctx.emit1("gather", [sin, position_ids], {"axis": 0})
    for name, c in (("cos_cache", cos), ("sin_cache", sin)):
        if c.type.shape[-1] != half or c.type.size != batch * seq * half:
            raise ctx.fail(f"{name} (indexed by position_ids, if given) is {c.type}; it must be "
                           f"[{batch}, {seq}, {half}] for rotary_embedding_dim {rot}")
    cos, sin = _reshape(ctx, cos, [*cache_dims, half]), _reshape(ctx, sin, [*cache_dims, half])

    def part(start, end, step=1):
        return ctx.emit1("slice", [work], {"starts": [start], "ends": [end], "axes": [3], "steps": [step]})

    interleaved = attrs.get("interleaved", 0)
    x1, x2 = (part(0, rot, 2), part(1, rot, 2)) if interleaved else (part(0, half), part(half, rot))
    real = ctx.emit1("sub", [ctx.emit1("mul", [cos, x1]), ctx.emit1("mul", [sin, x2])])
    imag = ctx.emit1("add", [ctx.emit1("mul", [sin, x1]), ctx.emit1("mul", [cos, x2])])
    if interleaved:
        pairs = [_reshape(ctx, t, [*t.type.shape, 1]) for t in (real, imag)]
        rotated = _reshape(ctx, ctx.emit1("concat", pairs, {"axis": 4}), [*real.type.shape[:3], rot])
    else:
        rotated = ctx.emit1("concat", [real, imag], {"axis": 3})
    if rot < head:
        rotated = ctx.emit1("concat", [rotated, part(rot, head)], {"axis": 3})
    return [_reshape(ctx, rotated, shape)]


# ---- com.microsoft Attention and MultiHeadAttention ---------------------------------------------

LOWEST = float(np.finfo(np.float32).min)  # what ONNX Runtime sets causally masked scores to


def _refuse_set(ctx, attrs, names) -> None:
    for name in names:
        if attrs.get(name, 0):
            raise ctx.fail(f"attribute {name}={attrs[name]!r} is not supported (only 0)")


def _refuse_inputs(ctx, inputs, named: dict[int, str]) -> None:
    for index, name in named.items():
        if index < len(inputs) and inputs[index] is not None:
            raise ctx.fail(f"input '{name}' is not supported")


def _key_padding_bias(ctx, mask, batch: int, sq: int, skv: int, causal: bool, fill: float, dtype: str):
    """ONNX Runtime's mask of its Attention and MultiHeadAttention: a key padding mask (2-D
    [B, Skv]: 0 masks; 1-D [B]: keys from mask[b] on are masked; 3-D [B, Sq, Skv] per query) gives
    `fill`, a causally masked key the float32 lowest; as an additive bias [B, 1, Sq, Skv] or None."""
    bias = None
    if mask is not None:
        shape = mask.type.shape
        if mask.type.dtype not in ("i32", "i64"):
            raise ctx.fail(f"mask_index is {mask.type}; it must be int32")
        if shape == (batch,):
            keep = ctx.emit1("less", [ctx.const(np.arange(skv, dtype=DTYPES[mask.type.dtype])),
                                      _reshape(ctx, mask, [batch, 1])])
        elif shape in ((batch, skv), (batch, sq, skv)):
            keep = ctx.emit1("greater", [mask, ctx.const(np.zeros((), DTYPES[mask.type.dtype]))])
        else:
            raise ctx.fail(f"mask_index {mask.type} is not supported (only [{batch}], [{batch}, {skv}] "
                           f"or [{batch}, {sq}, {skv}])")
        rows = keep.type.size // (batch * skv)  # 1, or Sq for a 3-D mask
        bias = additive(ctx, _reshape(ctx, keep, [batch, 1, rows, skv]), dtype, fill)
    if causal:
        allowed = ctx.const(np.tril(np.ones((sq, skv), bool)))
        if bias is None:
            return additive(ctx, allowed, dtype, LOWEST)
        bias = ctx.emit1("where", [allowed, bias, _const(ctx, LOWEST, dtype)])
    return bias


def _ms_attend(ctx, attrs, q, k, v, mask):
    """q [B, Sq, Dq], k [B, Skv, Dq], v [B, Skv, Dv] with num_heads: the attention output
    [B, Sq, Dv] and the heads k, v [B, H, Skv, .]."""
    heads = attrs.get("num_heads", 0)
    if heads < 1:
        raise ctx.fail("attribute num_heads is required (a positive number of heads)")
    q, k, v = (split_heads(ctx, t, heads, what) for t, what in ((q, "the query"), (k, "the key"), (v, "the value")))
    batch, _, sq, head = q.type.shape
    bias = _key_padding_bias(ctx, mask, batch, sq, k.type.shape[2], bool(attrs.get("unidirectional", 0)),
                             attrs.get("mask_filter_value", -10000.0), q.type.dtype)
    y, _ = attend(ctx, q, k, v, bias, attrs.get("scale", 0.0) or None, guard=False)
    return merge_heads(ctx, y), k, v


def _projection(ctx, x, weights, bias, start: int, end: int):
    """x @ weights[:, start:end] + bias[start:end]: a dense of a constant slice of the weights."""
    if weights.is_const and (bias is None or bias.is_const):
        w = ctx.const(np.ascontiguousarray(weights.const_value()[:, start:end].T))
        ins = [x, w] if bias is None else [x, w, ctx.const(bias.const_value()[start:end])]
        return ctx.emit1("dense", ins)
    cols = {"starts": [start], "ends": [end], "axes": [1], "steps": [1]}
    y = ctx.emit1("matmul", [x, ctx.emit1("slice", [weights], cols)])
    if bias is None:
        return y
    return ctx.emit1("add", [y, ctx.emit1("slice", [bias], {**cols, "axes": [0]})])


@onnx_op("Attention", domain=MS)
def _import_ms_attention(ctx, node, inputs, attrs):
    """com.microsoft Attention with packed Q, K, V weights (see the module docstring)."""
    from .qlinear import _arity
    x, weights, bias, mask = _arity(ctx, inputs, 2, 7)[:4]
    _refuse_inputs(ctx, inputs, {4: "past", 5: "attention_bias", 6: "past_sequence_length"})
    _refuse_set(ctx, attrs, ("do_rotary", "past_present_share_buffer", "rotary_embedding_dim"))
    if x is None or weights is None or x.type.rank != 3 or weights.type.rank != 2:
        raise ctx.fail("inputs 'input' [B, S, hidden] and 'weights' [hidden, 3 * hidden] are required")
    total = weights.type.shape[1]
    sizes = attrs.get("qkv_hidden_sizes") or [total // 3] * 3
    if len(sizes) != 3 or sizes[0] != sizes[1] or sum(sizes) != total:
        raise ctx.fail(f"attribute qkv_hidden_sizes={sizes} does not split the {total} weight columns "
                       "into Q, K and V with Q and K of one size")
    if bias is not None and bias.type.shape != (total,):
        raise ctx.fail(f"bias {bias.type} must have the {total} values of the weights' columns")
    ends = np.cumsum(sizes).tolist()
    q, k, v = (_projection(ctx, x, weights, bias, end - size, end) for size, end in zip(sizes, ends))
    y, k, v = _ms_attend(ctx, attrs, q, k, v, mask)
    if len(node.output) < 2 or not node.output[1]:
        return [y]
    present = ctx.emit1("concat", [_reshape(ctx, t, [1, *t.type.shape]) for t in (k, v)], {"axis": 0})
    return [y, present]


@onnx_op("MultiHeadAttention", domain=MS)
def _import_ms_multi_head_attention(ctx, node, inputs, attrs):
    """com.microsoft MultiHeadAttention with separate 3-D query, key and value (see the module
    docstring)."""
    from .qlinear import _arity
    q, k, v, bias, mask = _arity(ctx, inputs, 1, 10)[:5]
    _refuse_inputs(ctx, inputs, {5: "attention_bias", 6: "past_key", 7: "past_value",
                                 8: "past_sequence_length", 9: "cache_indirection"})
    _refuse_set(ctx, attrs, ("past_present_share_buffer",))
    if k is None or v is None or any(t.type.rank != 3 for t in (q, k, v)):
        raise ctx.fail("only separate 3-D query, key and value are supported (packed or 4-D key/value are not)")
    dq, dv = q.type.shape[2], v.type.shape[2]
    if bias is not None:
        if bias.type.shape != (2 * dq + dv,):
            raise ctx.fail(f"bias {bias.type} must have {2 * dq + dv} values (query, key and value)")
        q, k, v = (ctx.emit1("add", [t, ctx.emit1("slice", [bias], {"starts": [s], "ends": [e], "axes": [0],
                                                                     "steps": [1]})])
                   for t, s, e in ((q, 0, dq), (k, dq, 2 * dq), (v, 2 * dq, 2 * dq + dv)))
    y, k, v = _ms_attend(ctx, attrs, q, k, v, mask)
    return [y, k, v][:max(1, len(node.output))]
