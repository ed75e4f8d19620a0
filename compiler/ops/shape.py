"""Shape and indexing ops: data movement whose shapes are known at compile time.

Every compile-time operand (a target shape, axes, pads, starts/ends, repeats, k, ...) is an
attribute; the ONNX importers read the constant inputs with `ctx.constant_of` and resolve the
ONNX conventions (0/-1 in a Reshape shape, negative axes, Slice clamping, Expand's bidirectional
broadcast, ...) so that an op's attributes always say exactly what it does.

| op | attributes | ONNX |
|---|---|---|
| `reshape` | shape (final, static) | Reshape, Flatten, Squeeze, Unsqueeze |
| `transpose` | perm | Transpose |
| `concat` | axis | Concat |
| `split` | axis, sizes (one output per size) | Split (opset 11 attr, 13 input, 18 num_outputs) |
| `slice` | starts, ends, axes, steps (normalised) | Slice |
| `gather` | axis | Gather |
| `gather_elements` | axis | GatherElements |
| `gather_nd` | batch_dims | GatherND |
| `scatter_nd` | reduction | ScatterND |
| `scatter_elements` | axis, reduction | ScatterElements, Scatter |
| `pad` | pads, mode, value | Pad (opset 11 input form, opset 18 axes) |
| `expand` | shape (the output shape) | Expand |
| `tile` | repeats | Tile |
| `identity` | | Identity, Dropout (inference) |
| `cast` | to (an edgec dtype name) | Cast, CastLike |
| `bitcast` | to (same size) | BitCast |
| `where` | | Where |
| `trilu` | upper, k | Trilu |
| `one_hot` | depth, axis, off_value, on_value, dtype | OneHot |
| `cumsum`, `cumprod` | axis, exclusive, reverse | CumSum, CumProd |
| `topk` | k, axis, largest, sorted (values and i64 indices) | TopK |
| `einsum` | equation | Einsum |

Importers that produce constants directly: Constant, ConstantOfShape, EyeLike, Shape, Size, Range,
HannWindow, HammingWindow, BlackmanWindow, MelWeightMatrix, and NonZero, Unique and NonMaxSuppression
of constants (their output shapes depend on values). Compress (constant condition) and
ReverseSequence (constant lengths) import to a gather of constant indices; Dropout's mask is a
constant. Integer results of constant inputs fold at import (`ctx.emit`), so every
reference here also works on integer tensors.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import VerifyError
from ..lazy import LazyModule
from ..ir import DTYPES, TensorType, dtype_name, is_float
from .base import (MAX_FAN_IN, Attr, OpDef, balanced_tree, broadcast_shapes, normalize_axis, onnx_op,
                   register_op, same_as_first)

tvm = LazyModule("tvm")
relax = LazyModule("tvm.relax")
topi = LazyModule("tvm.topi")
te = LazyModule("tvm.te")
tirx = LazyModule("tvm.tirx")
R = LazyModule("tvm.relax.op")
INDEX_DTYPES = ("i32", "i64")

# Why an op whose output shape depends on its input values needs that input constant:
DATA_DEPENDENT = "the output shape depends on its values, and edgec compiles static shapes only"


def tvm_dtype(name: str) -> str:
    return DTYPES[name].name


def _prod(shape) -> int:
    return int(np.prod(shape, dtype=np.int64))


def _axes(axes, rank: int, what: str = "axes") -> list[int]:
    """Axes made non-negative; refuses duplicates and out-of-range axes."""
    out = [normalize_axis(a, rank) for a in axes]
    if len(set(out)) != len(out):
        raise VerifyError(f"{what} {list(axes)} repeat an axis")
    return out


def _onnx_axis(ctx, axis: int, rank: int) -> int:
    try:
        return normalize_axis(axis, rank)
    except VerifyError as e:
        raise ctx.fail(str(e)) from None


def _onnx_axes_list(ctx, axes, rank: int) -> list[int]:
    try:
        return _axes(axes, rank)
    except VerifyError as e:
        raise ctx.fail(str(e)) from None


def _check_index_dtype(t: TensorType, what: str = "indices") -> None:
    if t.dtype not in INDEX_DTYPES:
        raise VerifyError(f"{what} must be i32 or i64, got {t}")


def _wrap_negative(ctx, indices, extent):
    """Relax indices with negative entries mapped to index + extent (extent: int or int array
    broadcasting against indices). Constant indices are wrapped at compile time."""
    dtype = str(indices.ty.dtype)
    if isinstance(indices, tvm.ir.GenericConst):
        arr = indices.value.numpy()
        return relax.const(np.where(arr < 0, arr + np.asarray(extent, arr.dtype), arr).astype(arr.dtype), dtype)
    extent = relax.const(np.asarray(extent, dtype=dtype), dtype)
    return ctx.bb.emit(R.where(R.less(indices, relax.const(0, dtype)), R.add(indices, extent), indices))


def check_const_indices(ctx, indices, extent, what: str = "indices") -> None:
    """Constant `indices` must lie in [-extent, extent - 1], the ONNX rule (extent: an int, or an
    int array broadcasting against indices); out of range is an error naming the node, since the
    compiled code would read or write outside the tensor. Negative ones are wrapped at lowering."""
    if indices is None or not indices.is_const:
        return
    arr = indices.const_value().astype(np.int64)
    ext = np.broadcast_to(np.asarray(extent, np.int64), arr.shape)
    bad = np.argwhere((arr < -ext) | (arr >= ext))
    if len(bad):
        at = tuple(int(i) for i in bad[0])
        raise ctx.fail(f"{what} holds {int(arr[at])} at position {list(at)}, outside [-{int(ext[at])}, "
                       f"{int(ext[at]) - 1}] for an axis of size {int(ext[at])} "
                       f"({len(bad)} index(es) out of range in all)")


def emit_nonempty(ctx, op: str, inputs, attrs):
    """ctx.emit, refusing a computed (not folded) result with no elements: the TVM build does not
    handle empty tensors. Empty constants from folded shape arithmetic are fine."""
    outs = ctx.emit(op, inputs, attrs)
    for v in outs:
        if not v.is_const and v.type.size == 0:
            raise ctx.fail(f"the result {v.type} is empty, which edgec does not support")
    return outs


def _wrap_negative_np(indices: np.ndarray, extent) -> np.ndarray:
    return np.where(indices < 0, indices + np.asarray(extent, indices.dtype), indices)


# ---- reshape ---------------------------------------------------------------------------------

def _reshape_infer(types, attrs):
    shape = tuple(attrs["shape"])
    if any(d < 0 for d in shape) or _prod(shape) != types[0].size:
        raise VerifyError(f"cannot reshape {types[0]} to {list(shape)}")
    return [TensorType(types[0].dtype, shape)]


register_op(OpDef(
    name="reshape", kind="injective", attrs={"shape": Attr("ints")}, infer=_reshape_infer,
    reference=lambda xs, a: xs[0].reshape(a["shape"]),
    lower=lambda ctx, xs, a, out: R.reshape(xs[0], a["shape"]),
    summary="the same elements in a new static shape"))


def _onnx_shape_operand(ctx, value, what: str) -> list[int]:
    arr = ctx.constant_of(value, what)
    if arr.ndim > 1 or arr.dtype.kind not in "iu":
        raise ctx.fail(f"input '{what}' must be a 1-D integer tensor, got {arr.dtype}{list(arr.shape)}")
    return [int(v) for v in arr.reshape(-1)]


def resolve_reshape(ctx, in_shape: tuple[int, ...], target: list[int], allowzero: bool) -> list[int]:
    """ONNX Reshape's shape: 0 copies the input dim (unless allowzero), one -1 is inferred."""
    out = []
    for i, d in enumerate(target):
        if d == 0 and not allowzero:
            if i >= len(in_shape):
                raise ctx.fail(f"shape {target} copies dim {i} (a 0), but the input has rank {len(in_shape)}")
            d = in_shape[i]
        elif d < -1:
            raise ctx.fail(f"shape {target} holds {d}, which is not a dimension")
        out.append(d)
    if out.count(-1) > 1:
        raise ctx.fail(f"shape {target} has more than one -1")
    size = _prod(in_shape)
    if -1 in out:
        known = _prod([d for d in out if d != -1])
        if known == 0 or size % known:
            raise ctx.fail(f"cannot reshape {list(in_shape)} to {target}")
        out[out.index(-1)] = size // known
    if _prod(out) != size:
        raise ctx.fail(f"cannot reshape {list(in_shape)} ({size} elements) to {target} ({_prod(out)})")
    return out


@onnx_op("Reshape")
def _onnx_reshape(ctx, node, inputs, attrs):
    target = _onnx_shape_operand(ctx, inputs[1], "shape")
    shape = resolve_reshape(ctx, inputs[0].type.shape, target, bool(attrs.get("allowzero", 0)))
    return emit_nonempty(ctx, "reshape", [inputs[0]], {"shape": shape})


@onnx_op("Flatten")
def _onnx_flatten(ctx, node, inputs, attrs):
    shape = inputs[0].type.shape
    axis = attrs.get("axis", 1)
    if not -len(shape) <= axis <= len(shape):
        raise ctx.fail(f"axis {axis} is out of range for rank {len(shape)}")
    if axis < 0:
        axis += len(shape)
    return ctx.emit("reshape", [inputs[0]], {"shape": [_prod(shape[:axis]), _prod(shape[axis:])]})


def _onnx_axes(ctx, node, inputs, attrs) -> list[int] | None:
    """Squeeze/Unsqueeze axes: an attribute before opset 13, an (optional) input after."""
    if ctx.opset < 13:
        return attrs.get("axes")
    if len(inputs) > 1 and inputs[1] is not None:
        return _onnx_shape_operand(ctx, inputs[1], "axes")
    return None


@onnx_op("Squeeze")
def _onnx_squeeze(ctx, node, inputs, attrs):
    """Squeeze -> reshape: named axes (which must have size 1) or every size-1 axis."""
    shape = inputs[0].type.shape
    axes = _onnx_axes(ctx, node, inputs, attrs)
    if axes is None:
        drop = {i for i, d in enumerate(shape) if d == 1}
    else:
        drop = set(_onnx_axes_list(ctx, axes, len(shape)))
        bad = [a for a in sorted(drop) if shape[a] != 1]
        if bad:
            raise ctx.fail(f"cannot squeeze axes {bad} of shape {list(shape)}: their size is not 1")
    return ctx.emit("reshape", [inputs[0]], {"shape": [d for i, d in enumerate(shape) if i not in drop]})


@onnx_op("Unsqueeze")
def _onnx_unsqueeze(ctx, node, inputs, attrs):
    """Unsqueeze -> reshape: axes count in the output's rank."""
    shape = inputs[0].type.shape
    axes = _onnx_axes(ctx, node, inputs, attrs)
    if axes is None:
        raise ctx.fail("Unsqueeze needs axes")
    rank = len(shape) + len(axes)
    new = set(_onnx_axes_list(ctx, axes, rank))
    rest = iter(shape)
    return ctx.emit("reshape", [inputs[0]], {"shape": [1 if i in new else next(rest) for i in range(rank)]})


# ---- transpose -------------------------------------------------------------------------------

def _transpose_infer(types, attrs):
    perm, shape = attrs["perm"], types[0].shape
    if sorted(perm) != list(range(len(shape))):
        raise VerifyError(f"perm {perm} is not a permutation of the {len(shape)} axes")
    return [TensorType(types[0].dtype, tuple(shape[p] for p in perm))]


register_op(OpDef(
    name="transpose", kind="injective", attrs={"perm": Attr("ints")}, infer=_transpose_infer,
    reference=lambda xs, a: np.transpose(xs[0], a["perm"]),
    lower=lambda ctx, xs, a, out: R.permute_dims(xs[0], a["perm"]),
    summary="permute axes"))


@onnx_op("Transpose")
def _onnx_transpose(ctx, node, inputs, attrs):
    rank = inputs[0].type.rank
    perm = attrs.get("perm", list(range(rank))[::-1])
    perm = [_onnx_axis(ctx, p, rank) for p in perm]
    return ctx.emit("transpose", [inputs[0]], {"perm": perm})


# ---- concat / split --------------------------------------------------------------------------

def _concat_infer(types, attrs):
    first = types[0]
    axis = normalize_axis(attrs["axis"], first.rank)
    for t in types[1:]:
        if t.dtype != first.dtype or t.rank != first.rank or any(
                a != b for i, (a, b) in enumerate(zip(t.shape, first.shape)) if i != axis):
            raise VerifyError(f"cannot concatenate {', '.join(map(str, types))} on axis {axis}")
    shape = list(first.shape)
    shape[axis] = sum(t.shape[axis] for t in types)
    return [TensorType(first.dtype, tuple(shape))]


OPAQUE = 8  # TVM's OpPatternKind kOpaque: FuseOps fuses nothing into or out of such a kernel


def _fused_width(ctx, x) -> int:
    """The inputs TVM's fusion would bring along with `x`: those of the concat that computes
    it (an R.concat; an opaque one fuses nothing), else just `x`."""
    bound = ctx.bb.lookup_binding(x) if isinstance(x, relax.Var) else None
    if isinstance(bound, relax.Call) and isinstance(bound.op, tvm.ir.Op) and bound.op.name == "relax.concat":
        return len(bound.args[0].fields)
    return 1


def _concat_lower(ctx, xs, a, out):
    """R.concat; a concat whose inputs, with those of the concats computing them, number more
    than MAX_FAN_IN (a level of the tree that a wide ONNX Concat imports as) is its own kernel,
    marked opaque: TVM's fusion bounds the ops in a kernel, not its inputs, and would merge the
    tree back into one kernel of all of them (a kernel concatenating 3,000 inputs took TVM
    600 s to schedule, and then crashed it). A chain of small concats (DenseNet's) fuses as before."""
    axis = normalize_axis(a["axis"], len(out[0].shape))
    if sum(_fused_width(ctx, x) for x in xs) > MAX_FAN_IN:
        return ctx.bb.call_te(topi.concatenate, xs, axis, primfunc_name_hint="concatenate",
                              primfunc_attrs={"op_pattern": OPAQUE})
    return R.concat(xs, axis=axis)


register_op(OpDef(
    name="concat", kind="injective", attrs={"axis": Attr("int")}, num_inputs=(1, MAX_FAN_IN), infer=_concat_infer,
    reference=lambda xs, a: np.concatenate(xs, axis=a["axis"]),
    lower=_concat_lower,
    summary=f"join up to {MAX_FAN_IN} tensors along an axis (a wider ONNX Concat imports as a tree of them)"))


@onnx_op("Concat")
def _onnx_concat(ctx, node, inputs, attrs):
    """More than MAX_FAN_IN inputs: a balanced tree of concats on the same axis."""
    if "axis" not in attrs:
        raise ctx.fail("Concat needs an axis")
    axis = _onnx_axis(ctx, attrs["axis"], inputs[0].type.rank)
    values = [v for v in inputs if v is not None]
    return [balanced_tree(values, MAX_FAN_IN, lambda group: ctx.emit1("concat", group, {"axis": axis}))
            if len(values) > 1 else ctx.emit1("concat", values, {"axis": axis})]


def _split_infer(types, attrs):
    t = types[0]
    axis = normalize_axis(attrs["axis"], t.rank)
    sizes = attrs["sizes"]
    if not sizes or any(s < 0 for s in sizes) or sum(sizes) != t.shape[axis]:
        raise VerifyError(f"split sizes {sizes} do not add up to dim {axis} of {t}")
    outs = []
    for s in sizes:
        shape = list(t.shape)
        shape[axis] = s
        outs.append(TensorType(t.dtype, tuple(shape)))
    return outs


def _split_ref(xs, a):
    return np.split(xs[0], np.cumsum(a["sizes"])[:-1], axis=a["axis"])


def _split_lower(ctx, xs, a, out):
    if len(a["sizes"]) == 1:
        return [xs[0]]
    axis = normalize_axis(a["axis"], len(out[0].shape))
    return R.split(xs[0], [int(i) for i in np.cumsum(a["sizes"])[:-1]], axis=axis)


register_op(OpDef(
    name="split", kind="injective", attrs={"axis": Attr("int"), "sizes": Attr("ints")}, infer=_split_infer,
    reference=_split_ref, lower=_split_lower, summary="cut a tensor into pieces along an axis"))


@onnx_op("Split")
def _onnx_split(ctx, node, inputs, attrs):
    """Sizes from the `split` attribute (opset < 13), the `split` input (13+), `num_outputs`
    (18+, the last piece smaller) or an equal split into as many pieces as outputs."""
    x = inputs[0]
    axis = _onnx_axis(ctx, attrs.get("axis", 0), x.type.rank)
    dim = x.type.shape[axis]
    n = len(node.output)
    if ctx.opset < 13 and "split" in attrs:
        sizes = list(attrs["split"])
    elif ctx.opset >= 13 and len(inputs) > 1 and inputs[1] is not None:
        sizes = _onnx_shape_operand(ctx, inputs[1], "split")
    elif "num_outputs" in attrs:
        n = attrs["num_outputs"]
        chunk = -(-dim // n)
        sizes = [chunk] * (n - 1) + [dim - chunk * (n - 1)]
        if sizes[-1] < 0:
            raise ctx.fail(f"cannot split dim {dim} into {n} pieces")
    else:
        if dim % n:
            raise ctx.fail(f"cannot split dim {dim} equally into {n} outputs")
        sizes = [dim // n] * n
    if len(sizes) != len(node.output):
        raise ctx.fail(f"{len(sizes)} split sizes {sizes} for {len(node.output)} outputs")
    if sum(sizes) != dim:
        raise ctx.fail(f"split sizes {sizes} do not add up to {dim}")
    return emit_nonempty(ctx, "split", [x], {"axis": axis, "sizes": sizes})


# ---- slice -----------------------------------------------------------------------------------

def _slice_len(start: int, end: int, step: int) -> int:
    return len(range(start, end, step))


def _slice_infer(types, attrs):
    t = types[0]
    starts, ends, axes, steps = attrs["starts"], attrs["ends"], attrs["axes"], attrs["steps"]
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise VerifyError("slice starts, ends, axes and steps differ in length")
    if any(a < 0 for a in axes):
        raise VerifyError(f"slice axes {axes} are not normalised (non-negative)")
    axes = _axes(axes, t.rank)
    shape = list(t.shape)
    for a, b, e, s in zip(axes, starts, ends, steps):
        d = t.shape[a]
        low = 0 if s > 0 else -1
        high = d if s > 0 else d - 1
        if s == 0 or not (low <= b <= high and low <= e <= high):
            raise VerifyError(f"slice of axis {a} (size {d}): start {b}, end {e}, step {s} are not "
                              "normalised (clamped, non-negative except an end of -1 for negative steps)")
        shape[a] = _slice_len(b, e, s)
    return [TensorType(t.dtype, tuple(shape))]


def _slice_ref(xs, a):
    index = [slice(None)] * xs[0].ndim
    for ax, b, e, s in zip(a["axes"], a["starts"], a["ends"], a["steps"]):
        index[ax] = slice(b, e if e >= 0 else None, s)
    return xs[0][tuple(index)]


def _slice_lower(ctx, xs, a, out):
    shape = [int(d) for d in xs[0].ty.shape]
    # TVM adds the dim to a negative end; -(dim + 1) is "before index 0" for a negative step.
    ends = [e if e >= 0 else -(shape[ax] + 1) for ax, e in zip(a["axes"], a["ends"])]
    return R.strided_slice(xs[0], a["axes"], a["starts"], ends, a["steps"])


register_op(OpDef(
    name="slice", kind="injective", infer=_slice_infer, reference=_slice_ref, lower=_slice_lower,
    attrs={"starts": Attr("ints"), "ends": Attr("ints"), "axes": Attr("ints"), "steps": Attr("ints")},
    summary="strided slice; attributes are normalised: 0 <= start, end <= dim for positive steps, "
            "-1 <= start, end <= dim-1 for negative steps (end -1: through index 0)"))


def normalize_slice(dim: int, start: int, end: int, step: int) -> tuple[int, int]:
    """ONNX Slice rules for one axis: negative start/end count from the end, then clamp to
    [0, dim] for positive steps, start to [0, dim-1] and end to [-1, dim-1] for negative ones."""
    if start < 0:
        start += dim
    if end < 0:
        end += dim
    if step > 0:
        start = min(max(start, 0), dim)
        end = min(max(end, 0), dim)
    else:
        start = min(max(start, 0), dim - 1)
        end = min(max(end, -1), dim - 1)
    return start, end


@onnx_op("Slice")
def _onnx_slice(ctx, node, inputs, attrs):
    x = inputs[0]
    shape = x.type.shape
    starts = _onnx_shape_operand(ctx, inputs[1], "starts")
    ends = _onnx_shape_operand(ctx, inputs[2], "ends")
    given = len(inputs) > 3 and inputs[3] is not None
    axes = _onnx_shape_operand(ctx, inputs[3], "axes") if given else list(range(len(starts)))
    given = len(inputs) > 4 and inputs[4] is not None
    steps = _onnx_shape_operand(ctx, inputs[4], "steps") if given else [1] * len(starts)
    if not len(starts) == len(ends) == len(axes) == len(steps):
        raise ctx.fail(f"starts {starts}, ends {ends}, axes {axes} and steps {steps} differ in length")
    if 0 in steps:
        raise ctx.fail(f"steps {steps} hold a 0")
    axes = _onnx_axes_list(ctx, axes, len(shape))
    norm = [normalize_slice(shape[a], b, e, s) for a, b, e, s in zip(axes, starts, ends, steps)]
    return emit_nonempty(ctx, "slice", [x], {"starts": [b for b, _ in norm], "ends": [e for _, e in norm],
                                   "axes": axes, "steps": steps})


# ---- gather family ---------------------------------------------------------------------------

def _gather_infer(types, attrs):
    data, idx = types
    _check_index_dtype(idx)
    axis = normalize_axis(attrs["axis"], data.rank)
    return [TensorType(data.dtype, data.shape[:axis] + idx.shape + data.shape[axis + 1:])]


def _gather_ref(xs, a):
    data, idx = xs
    axis = normalize_axis(a["axis"], data.ndim)
    return np.take(data, _wrap_negative_np(idx, data.shape[axis]), axis=axis)


def _gather_lower(ctx, xs, a, out):
    data, idx = xs
    axis = normalize_axis(a["axis"], len(data.ty.shape))
    return R.take(data, _wrap_negative(ctx, idx, int(data.ty.shape[axis])), axis=axis)


register_op(OpDef(
    name="gather", kind="injective", attrs={"axis": Attr("int", 0)}, num_inputs=(2, 2),
    infer=_gather_infer, reference=_gather_ref, lower=_gather_lower,
    summary="take slices along an axis at the given indices (negative indices count from the end)"))


def _gather_elements_infer(types, attrs):
    data, idx = types
    _check_index_dtype(idx)
    normalize_axis(attrs["axis"], data.rank)
    if idx.rank != data.rank:
        raise VerifyError(f"indices {idx} and data {data} differ in rank")
    return [TensorType(data.dtype, idx.shape)]


def _gather_elements_ref(xs, a):
    data, idx = xs
    axis = normalize_axis(a["axis"], data.ndim)
    return np.take_along_axis(data, _wrap_negative_np(idx, data.shape[axis]), axis=axis)


def _gather_elements_lower(ctx, xs, a, out):
    data, idx = xs
    axis = normalize_axis(a["axis"], len(data.ty.shape))
    return R.gather_elements(data, _wrap_negative(ctx, idx, int(data.ty.shape[axis])), axis=axis)


register_op(OpDef(
    name="gather_elements", kind="injective", attrs={"axis": Attr("int", 0)}, num_inputs=(2, 2),
    infer=_gather_elements_infer, reference=_gather_elements_ref, lower=_gather_elements_lower,
    summary="out[i][j][k] = data[idx[i][j][k]][j][k] (for axis 0)"))


def _gather_nd_infer(types, attrs):
    data, idx = types
    _check_index_dtype(idx)
    b = attrs["batch_dims"]
    if idx.rank < 1 or not 0 <= b < min(data.rank, idx.rank) or data.shape[:b] != idx.shape[:b]:
        raise VerifyError(f"gather_nd of {data} at {idx} with batch_dims {b}: shapes do not fit")
    k = idx.shape[-1]
    if b + k > data.rank:
        raise VerifyError(f"gather_nd indices {idx} index {k} axes of {data} after {b} batch dims")
    return [TensorType(data.dtype, idx.shape[:-1] + data.shape[b + k:])]


def _gather_nd_ref(xs, a):
    data, idx = xs
    b, k = a["batch_dims"], idx.shape[-1]
    nb = _prod(data.shape[:b])
    flat_data = data.reshape((nb,) + data.shape[b:])
    flat_idx = _wrap_negative_np(idx.reshape((nb, -1, k)), np.array(data.shape[b:b + k]))
    parts = [flat_data[i][tuple(flat_idx[i].T)] for i in range(nb)]
    return np.stack(parts).reshape(idx.shape[:-1] + data.shape[b + k:])


def _gather_nd_lower(ctx, xs, a, out):
    data, idx = xs
    b, k = a["batch_dims"], int(idx.ty.shape[-1])
    extents = np.array([int(d) for d in data.ty.shape][b:b + k])
    return R.gather_nd(data, _wrap_negative(ctx, idx, extents), a["batch_dims"])


register_op(OpDef(
    name="gather_nd", kind="injective", attrs={"batch_dims": Attr("int", 0)}, num_inputs=(2, 2),
    infer=_gather_nd_infer, reference=_gather_nd_ref, lower=_gather_nd_lower,
    summary="gather slices addressed by the last axis of indices (ONNX GatherND)"))


SCATTER_REDUCTIONS = {"none": "update", "add": "add", "mul": "mul", "max": "max", "min": "min"}


def _scatter_nd_infer(types, attrs):
    data, idx, upd = types
    _check_index_dtype(idx)
    if attrs["reduction"] not in SCATTER_REDUCTIONS:
        raise VerifyError(f"scatter_nd reduction '{attrs['reduction']}' is not one of {', '.join(SCATTER_REDUCTIONS)}")
    k = idx.shape[-1] if idx.rank else 0
    if idx.rank < 1 or k > data.rank or upd.shape != idx.shape[:-1] + data.shape[k:] or upd.dtype != data.dtype:
        raise VerifyError(f"scatter_nd into {data} at {idx} with updates {upd}: shapes do not fit")
    return [data]


def _scatter_np(data, where, values, reduction: str):
    """A copy of `data` with `values` stored at index tuple `where`, or combined with what is there."""
    out = data.copy()
    if reduction == "none":
        out[where] = values
    else:
        {"add": np.add, "mul": np.multiply, "max": np.maximum, "min": np.minimum}[reduction].at(out, where, values)
    return out


def _scatter_nd_ref(xs, a):
    data, idx, upd = xs
    k = idx.shape[-1]
    where = tuple(_wrap_negative_np(idx.reshape(-1, k), np.array(data.shape[:k])).T)
    return _scatter_np(data, where, upd.reshape((-1,) + data.shape[k:]), a["reduction"])


def _scatter_nd_lower(ctx, xs, a, out):
    data, idx, upd = xs
    k = int(idx.ty.shape[-1])
    extents = np.array([int(d) for d in data.ty.shape][:k])
    return R.scatter_nd(data, _wrap_negative(ctx, idx, extents), upd, SCATTER_REDUCTIONS[a["reduction"]])


register_op(OpDef(
    name="scatter_nd", kind="opaque", attrs={"reduction": Attr("str", "none")}, num_inputs=(3, 3),
    infer=_scatter_nd_infer, reference=_scatter_nd_ref, lower=_scatter_nd_lower,
    summary="copy of data with slices at indices replaced (or combined: add/mul/max/min) by updates"))


def _scatter_elements_infer(types, attrs):
    data, idx, upd = types
    _check_index_dtype(idx)
    if attrs["reduction"] not in SCATTER_REDUCTIONS:
        raise VerifyError(f"scatter_elements reduction '{attrs['reduction']}' is not one of "
                          f"{', '.join(SCATTER_REDUCTIONS)}")
    axis = normalize_axis(attrs["axis"], data.rank)
    if idx.rank != data.rank or upd.shape != idx.shape or upd.dtype != data.dtype or any(
            i > d for a, (i, d) in enumerate(zip(idx.shape, data.shape)) if a != axis):
        raise VerifyError(f"scatter_elements into {data} at {idx} with updates {upd}: shapes do not fit")
    return [data]


def _scatter_elements_ref(xs, a):
    data, idx, upd = xs
    axis = normalize_axis(a["axis"], data.ndim)
    where = list(np.indices(idx.shape, sparse=True))
    where[axis] = _wrap_negative_np(idx, data.shape[axis])
    return _scatter_np(data, tuple(np.broadcast_arrays(*where)), upd, a["reduction"])


def _scatter_elements_lower(ctx, xs, a, out):
    data, idx, upd = xs
    axis = normalize_axis(a["axis"], len(data.ty.shape))
    idx = _wrap_negative(ctx, idx, int(data.ty.shape[axis]))
    return R.scatter_elements(data, idx, upd, axis=axis, reduction=SCATTER_REDUCTIONS[a["reduction"]])


register_op(OpDef(
    name="scatter_elements", kind="opaque", attrs={"axis": Attr("int", 0), "reduction": Attr("str", "none")},
    num_inputs=(3, 3), infer=_scatter_elements_infer, reference=_scatter_elements_ref, lower=_scatter_elements_lower,
    summary="copy of data with the elements at indices (along axis) replaced or combined with updates"))


def _check_nd_indices(ctx, data, indices, batch_dims: int) -> None:
    """GatherND/ScatterND: the last axis of constant indices addresses the axes after batch_dims."""
    if indices is None or not indices.is_const or indices.type.rank < 1:
        return
    k = indices.type.shape[-1]
    extents = data.type.shape[batch_dims:batch_dims + k]
    if len(extents) == k:  # otherwise the shape check names the mismatch
        check_const_indices(ctx, indices, np.array(extents, np.int64))


@onnx_op("Gather")
def _onnx_gather(ctx, node, inputs, attrs):
    axis = _onnx_axis(ctx, attrs.get("axis", 0), inputs[0].type.rank)
    check_const_indices(ctx, inputs[1], inputs[0].type.shape[axis])
    return emit_nonempty(ctx, "gather", inputs[:2], {"axis": axis})


@onnx_op("GatherElements")
def _onnx_gather_elements(ctx, node, inputs, attrs):
    axis = _onnx_axis(ctx, attrs.get("axis", 0), inputs[0].type.rank)
    check_const_indices(ctx, inputs[1], inputs[0].type.shape[axis])
    return ctx.emit("gather_elements", inputs[:2], {"axis": axis})


@onnx_op("GatherND")
def _onnx_gather_nd(ctx, node, inputs, attrs):
    _check_nd_indices(ctx, inputs[0], inputs[1], attrs.get("batch_dims", 0))
    return emit_nonempty(ctx, "gather_nd", inputs[:2], {"batch_dims": attrs.get("batch_dims", 0)})


@onnx_op("ScatterElements", "Scatter")
def _onnx_scatter_elements(ctx, node, inputs, attrs):
    """ScatterElements, and the deprecated Scatter (opsets 9-10, the same op without reduction)."""
    reduction = attrs.get("reduction", "none")
    if reduction not in SCATTER_REDUCTIONS:
        raise ctx.fail(f"reduction '{reduction}' is not supported")
    axis = _onnx_axis(ctx, attrs.get("axis", 0), inputs[0].type.rank)
    check_const_indices(ctx, inputs[1], inputs[0].type.shape[axis])
    return ctx.emit("scatter_elements", inputs[:3], {"axis": axis, "reduction": reduction})


@onnx_op("ScatterND")
def _onnx_scatter_nd(ctx, node, inputs, attrs):
    reduction = attrs.get("reduction", "none")
    if reduction not in SCATTER_REDUCTIONS:
        raise ctx.fail(f"reduction '{reduction}' is not supported")
    _check_nd_indices(ctx, inputs[0], inputs[1], 0)
    return ctx.emit("scatter_nd", inputs[:3], {"reduction": reduction})


# ---- pad -------------------------------------------------------------------------------------

PAD_MODES = ("constant", "reflect", "edge", "wrap")


def _pad_infer(types, attrs):
    t = types[0]
    pads = attrs["pads"]
    if len(pads) != 2 * t.rank:
        raise VerifyError(f"pad of {t} needs {2 * t.rank} pads (begins then ends), got {len(pads)}")
    if attrs["mode"] not in PAD_MODES:
        raise VerifyError(f"pad mode '{attrs['mode']}' is not one of {', '.join(PAD_MODES)}")
    shape = tuple(d + b + e for d, b, e in zip(t.shape, pads[:t.rank], pads[t.rank:]))
    if any(d < 0 for d in shape):
        raise VerifyError(f"pads {pads} crop {t} below zero size")
    if attrs["mode"] == "reflect" and any(
            p > d - 1 for d, p in zip(t.shape * 2, pads)):
        raise VerifyError(f"reflect pads {pads} must be smaller than the dims of {t}")
    if attrs["mode"] != "constant" and any(p < 0 for p in pads):
        raise VerifyError(f"negative pads {pads} are supported in constant mode only")
    return [TensorType(t.dtype, shape)]


def _pad_ref(xs, a):
    x, pads = xs[0], a["pads"]
    r = x.ndim
    grow = [(max(b, 0), max(e, 0)) for b, e in zip(pads[:r], pads[r:])]
    if a["mode"] == "constant":
        y = np.pad(x, grow, mode="constant", constant_values=np.asarray(a["value"]).astype(x.dtype))
    else:
        y = np.pad(x, grow, mode=a["mode"])
    crop = tuple(slice(-min(b, 0), y.shape[i] + min(e, 0)) for i, (b, e) in enumerate(zip(pads[:r], pads[r:])))
    return y[crop]


def _pad_lower(ctx, xs, a, out):
    x, pads = xs[0], a["pads"]
    r = len(x.ty.shape)
    before = [max(p, 0) for p in pads[:r]]
    after = [max(p, 0) for p in pads[r:]]
    if a["mode"] == "constant":
        value = a["value"]
        if not is_float(out[0].dtype):
            value = int(value) if out[0].dtype != "bool" else bool(value)
        y = ctx.bb.emit_te(topi.nn.pad, x, before, after, tvm.tirx.const(value, str(x.ty.dtype)))
    elif a["mode"] == "reflect":
        y = ctx.bb.emit_te(topi.nn.mirror_pad, x, before, after, "REFLECT")
    elif a["mode"] == "edge":
        y = ctx.bb.emit_te(topi.nn.replicate_pad, x, before, after)
    else:
        y = _wrap_pad(ctx, x, before, after)
    if all(p >= 0 for p in pads):
        return y
    shape = [int(d) for d in y.ty.shape]
    return R.strided_slice(y, list(range(r)), [-min(p, 0) for p in pads[:r]],
                           [d + min(p, 0) for d, p in zip(shape, pads[r:])])


def _wrap_pad(ctx, x, before, after):
    """Wrap padding, one axis at a time: tile the axis enough times, then cut the window."""
    for axis, (b, e) in enumerate(zip(before, after)):
        if b == 0 and e == 0:
            continue
        d = int(x.ty.shape[axis])
        copies_before, copies_after = -(-b // d), -(-e // d)
        reps = [1] * len(before)
        reps[axis] = 1 + copies_before + copies_after
        tiled = ctx.bb.emit(R.tile(x, reps))
        start = copies_before * d - b
        x = ctx.bb.emit(R.strided_slice(tiled, [axis], [start], [start + b + d + e]))
    return x


register_op(OpDef(
    name="pad", kind="injective", infer=_pad_infer, reference=_pad_ref, lower=_pad_lower,
    attrs={"pads": Attr("ints"), "mode": Attr("str", "constant"), "value": Attr("float", 0.0)},
    summary="pad in mode constant, reflect, edge or wrap (ONNX layout: all begins then all ends; "
            "negative pads crop, constant mode only)"))


@onnx_op("CenterCropPad")
def _onnx_center_crop_pad(ctx, node, inputs, attrs):
    """Crop or zero-pad each of `axes` to `shape`, centred (an odd difference puts the extra
    element at the end): one `pad` whose negative pads crop."""
    x = inputs[0]
    rank = x.type.rank
    shape = ctx.constant_of(inputs[1], "shape").reshape(-1).tolist()
    axes = [_onnx_axis(ctx, a, rank) for a in attrs.get("axes", range(rank))]
    if len(shape) != len(axes) or any(d < 1 for d in shape):
        raise ctx.fail(f"shape {shape} must hold one positive size per axis of {axes}")
    begins, ends = [0] * rank, [0] * rank
    for a, size in zip(axes, shape):
        diff = int(size) - x.type.shape[a]
        begins[a] = diff // 2 if diff >= 0 else -((-diff) // 2)
        ends[a] = diff - begins[a]
    return ctx.emit("pad", [x], {"pads": begins + ends, "mode": "constant", "value": 0.0})


@onnx_op("Pad")
def _onnx_pad(ctx, node, inputs, attrs):
    """Pad from opset 11: pads (and constant_value, axes from opset 18) are inputs; mode wrap
    from opset 19."""
    x = inputs[0]
    r = x.type.rank
    mode = attrs.get("mode", "constant")
    if mode not in PAD_MODES:
        raise ctx.fail(f"pad mode '{mode}' is not supported (supported: {', '.join(PAD_MODES)})")
    pads = _onnx_shape_operand(ctx, inputs[1], "pads")
    value = 0.0
    if len(inputs) > 2 and inputs[2] is not None:
        arr = ctx.constant_of(inputs[2], "constant_value")
        if arr.size != 1:
            raise ctx.fail(f"constant_value must hold one value, got shape {list(arr.shape)}")
        value = float(arr.reshape(-1)[0])
    if len(inputs) > 3 and inputs[3] is not None:
        axes = _onnx_axes_list(ctx, _onnx_shape_operand(ctx, inputs[3], "axes"), r)
        if len(pads) != 2 * len(axes):
            raise ctx.fail(f"{len(pads)} pads for {len(axes)} axes")
        full = [0] * (2 * r)
        for i, ax in enumerate(axes):
            full[ax], full[r + ax] = pads[i], pads[len(axes) + i]
        pads = full
    if len(pads) != 2 * r:
        raise ctx.fail(f"{len(pads)} pads for an input of rank {r}")
    return emit_nonempty(ctx, "pad", [x], {"pads": pads, "mode": mode, "value": value})


# ---- expand / tile ---------------------------------------------------------------------------

def _expand_infer(types, attrs):
    t, shape = types[0], tuple(attrs["shape"])
    if broadcast_shapes(t.shape, shape) != shape:
        raise VerifyError(f"{t} does not broadcast to {list(shape)}")
    return [TensorType(t.dtype, shape)]


register_op(OpDef(
    name="expand", kind="injective", attrs={"shape": Attr("ints")}, infer=_expand_infer,
    reference=lambda xs, a: np.broadcast_to(xs[0], a["shape"]).copy(),
    lower=lambda ctx, xs, a, out: R.broadcast_to(xs[0], a["shape"]),
    summary="broadcast to the given output shape"))


@onnx_op("Expand")
def _onnx_expand(ctx, node, inputs, attrs):
    """ONNX Expand broadcasts both ways: the output is broadcast(input shape, shape)."""
    target = _onnx_shape_operand(ctx, inputs[1], "shape")
    try:
        shape = list(broadcast_shapes(inputs[0].type.shape, tuple(target)))
    except VerifyError as e:
        raise ctx.fail(str(e)) from None
    return emit_nonempty(ctx, "expand", [inputs[0]], {"shape": shape})


def _tile_infer(types, attrs):
    t, reps = types[0], attrs["repeats"]
    if len(reps) != t.rank or any(r < 0 for r in reps):
        raise VerifyError(f"tile repeats {reps} do not fit {t}")
    return [TensorType(t.dtype, tuple(d * r for d, r in zip(t.shape, reps)))]


register_op(OpDef(
    name="tile", kind="injective", attrs={"repeats": Attr("ints")}, infer=_tile_infer,
    reference=lambda xs, a: np.tile(xs[0], a["repeats"]),
    lower=lambda ctx, xs, a, out: R.tile(xs[0], a["repeats"]),
    summary="repeat the tensor along each axis"))


@onnx_op("Tile")
def _onnx_tile(ctx, node, inputs, attrs):
    return emit_nonempty(ctx, "tile", [inputs[0]], {"repeats": _onnx_shape_operand(ctx, inputs[1], "repeats")})


# ---- identity / cast / where -----------------------------------------------------------------

register_op(OpDef(
    name="identity", kind="injective", infer=same_as_first,
    reference=lambda xs, a: xs[0].copy(),
    lower=lambda ctx, xs, a, out: xs[0],
    summary="the input unchanged (ONNX Identity, inference Dropout); removed by a later pass"))


@onnx_op("Identity")
def _onnx_identity(ctx, node, inputs, attrs):
    return ctx.emit("identity", [inputs[0]])


@onnx_op("Dropout")
def _onnx_dropout(ctx, node, inputs, attrs):
    """Inference-mode Dropout is the identity, and so is training mode with a constant ratio of 0;
    the mask output is then all true (a constant). Training mode with another ratio (random) is
    refused."""
    if len(inputs) > 2 and inputs[2] is not None:
        mode = ctx.constant_of(inputs[2], "training_mode")
        ratio = ctx.constant_of(inputs[1], "ratio") if len(inputs) > 1 and inputs[1] is not None else 0.5
        if mode.reshape(-1).any() and float(np.asarray(ratio).reshape(-1)[0]) != 0:
            raise ctx.fail("Dropout in training mode with a ratio other than 0 (random) is not supported")
    y = ctx.emit1("identity", [inputs[0]])
    if len(node.output) < 2 or not node.output[1]:
        return [y]
    ctx.check_size(inputs[0].type.shape, "bool")
    return [y, ctx.const(np.ones(inputs[0].type.shape, bool))]


def _cast_infer(types, attrs):
    if attrs["to"] not in DTYPES:
        raise VerifyError(f"cast to unknown dtype '{attrs['to']}'")
    return [TensorType(attrs["to"], types[0].shape)]


def _cast_ref(xs, a):
    x = xs[0]
    if a["to"] == "bool" or not (x.dtype.kind == "f" and DTYPES[a["to"]].kind in "iu"):
        return x.astype(DTYPES[a["to"]])
    return np.trunc(x).astype(DTYPES[a["to"]])


register_op(OpDef(
    name="cast", kind="elementwise", attrs={"to": Attr("str")}, infer=_cast_infer, reference=_cast_ref,
    lower=lambda ctx, xs, a, out: R.astype(xs[0], tvm_dtype(a["to"])),
    summary="convert to another dtype (float to integer truncates toward zero)"))


def _emit_cast(ctx, x, to: str):
    """A cast; a cast of a small constant is computed at import, also to a float dtype, because
    shape arithmetic often goes through float (Shape -> Cast -> ... -> Cast -> Reshape)."""
    from ..onnx_import import FOLD_LIMIT  # (import here: onnx_import imports the registry)
    if x.is_const and x.type.size <= FOLD_LIMIT:
        return [ctx.const(_cast_ref([x.const_value()], {"to": to}), to)]
    return ctx.emit("cast", [x], {"to": to})


@onnx_op("Cast")
def _onnx_cast(ctx, node, inputs, attrs):
    from ..onnx_import import ONNX_DTYPES
    to = attrs.get("to")
    if to not in ONNX_DTYPES:
        raise ctx.fail(f"Cast to ONNX data type {to} is not supported")
    return _emit_cast(ctx, inputs[0], ONNX_DTYPES[to])


@onnx_op("CastLike")
def _onnx_cast_like(ctx, node, inputs, attrs):
    return _emit_cast(ctx, inputs[0], inputs[1].type.dtype)


def _bitcast_infer(types, attrs):
    to, x = attrs["to"], types[0]
    if to not in DTYPES or "bool" in (to, x.dtype) or DTYPES[to].itemsize != DTYPES[x.dtype].itemsize:
        raise VerifyError(f"bitcast of {x} to '{to}': both dtypes must be numeric and of the same size")
    return [TensorType(to, x.shape)]


def _bitcast_lower(ctx, xs, a, out):
    to = tvm_dtype(a["to"])
    return ctx.bb.call_te(lambda t: te.compute(t.shape, lambda *i: tirx.reinterpret(to, t(*i)), name="bitcast"), xs[0])


register_op(OpDef(
    name="bitcast", kind="elementwise", attrs={"to": Attr("str")}, infer=_bitcast_infer,
    reference=lambda xs, a: xs[0].view(DTYPES[a["to"]]), lower=_bitcast_lower,
    summary="the same bits read as another dtype of the same size"))


@onnx_op("BitCast")
def _onnx_bitcast(ctx, node, inputs, attrs):
    """BitCast (opset 26) between numeric types of the same size."""
    from ..onnx_import import ONNX_DTYPES
    to = attrs.get("to")
    if to not in ONNX_DTYPES:
        raise ctx.fail(f"BitCast to ONNX data type {to} is not supported")
    return ctx.emit("bitcast", [inputs[0]], {"to": ONNX_DTYPES[to]})


def _where_infer(types, attrs):
    cond, x, y = types
    if cond.dtype != "bool":
        raise VerifyError(f"where's condition must be bool, got {cond}")
    if x.dtype != y.dtype:
        raise VerifyError(f"where's branches differ in dtype: {x}, {y}")
    return [TensorType(x.dtype, broadcast_shapes(cond.shape, x.shape, y.shape))]


register_op(OpDef(
    name="where", kind="elementwise", num_inputs=(3, 3), infer=_where_infer,
    reference=lambda xs, a: np.where(xs[0], xs[1], xs[2]),
    lower=lambda ctx, xs, a, out: R.where(xs[0], xs[1], xs[2]),
    summary="select x where the condition holds, else y (broadcasting)"))


@onnx_op("Where")
def _onnx_where(ctx, node, inputs, attrs):
    return ctx.emit("where", inputs[:3])


# ---- trilu / one_hot / cumsum / topk / einsum -------------------------------------------------

def _trilu_infer(types, attrs):
    if types[0].rank < 2:
        raise VerifyError(f"trilu needs a tensor of rank 2 or more, got {types[0]}")
    return [types[0]]


def _trilu_ref(xs, a):
    x, k = xs[0], a["k"]
    rows, cols = x.shape[-2:]
    keep = np.triu(np.ones((rows, cols), bool), k) if a["upper"] else np.tril(np.ones((rows, cols), bool), k)
    return np.where(keep, x, np.zeros((), x.dtype))


register_op(OpDef(
    name="trilu", kind="injective", attrs={"upper": Attr("int", 1), "k": Attr("int", 0)},
    infer=_trilu_infer, reference=_trilu_ref,
    lower=lambda ctx, xs, a, out: (R.triu if a["upper"] else R.tril)(xs[0], a["k"]),
    summary="keep the upper (or lower) triangle of the last two axes, from diagonal k"))


@onnx_op("Trilu")
def _onnx_trilu(ctx, node, inputs, attrs):
    k = 0
    if len(inputs) > 1 and inputs[1] is not None:
        arr = ctx.constant_of(inputs[1], "k")
        if arr.size != 1:
            raise ctx.fail(f"k must hold one value, got shape {list(arr.shape)}")
        k = int(arr.reshape(-1)[0])
    return ctx.emit("trilu", [inputs[0]], {"upper": int(attrs.get("upper", 1)), "k": k})


def _one_hot_infer(types, attrs):
    t = types[0]
    _check_index_dtype(t)
    if attrs["dtype"] not in DTYPES or attrs["depth"] < 1:
        raise VerifyError(f"one_hot needs depth >= 1 and a known dtype, got {attrs['depth']}, {attrs['dtype']}")
    axis = normalize_axis(attrs["axis"], t.rank + 1)
    shape = t.shape[:axis] + (attrs["depth"],) + t.shape[axis:]
    return [TensorType(attrs["dtype"], shape)]


def _one_hot_ref(xs, a):
    idx, depth = xs[0], a["depth"]
    axis = normalize_axis(a["axis"], idx.ndim + 1)
    idx = _wrap_negative_np(idx, depth)
    hot = np.expand_dims(idx, axis) == np.arange(depth).reshape([-1 if i == axis else 1 for i in range(idx.ndim + 1)])
    dtype = DTYPES[a["dtype"]]
    return np.where(hot, np.asarray(a["on_value"]).astype(dtype), np.asarray(a["off_value"]).astype(dtype))


def _one_hot_lower(ctx, xs, a, out):
    dtype = tvm_dtype(a["dtype"])
    on, off = a["on_value"], a["off_value"]
    if not is_float(a["dtype"]):
        on, off = int(on), int(off)
    idx = _wrap_negative(ctx, xs[0], a["depth"])
    return R.one_hot(idx, relax.prim_value(tvm.tirx.const(on, dtype)), relax.prim_value(tvm.tirx.const(off, dtype)),
                     a["depth"], normalize_axis(a["axis"], len(out[0].shape)))


register_op(OpDef(
    name="one_hot", kind="injective", infer=_one_hot_infer, reference=_one_hot_ref, lower=_one_hot_lower,
    attrs={"depth": Attr("int"), "axis": Attr("int", -1), "off_value": Attr("float", 0.0),
           "on_value": Attr("float", 1.0), "dtype": Attr("str", "f32")},
    summary="one-hot encoding along a new axis (negative indices count from depth)"))


@onnx_op("OneHot")
def _onnx_one_hot(ctx, node, inputs, attrs):
    indices = inputs[0]
    depth = ctx.constant_of(inputs[1], "depth")
    values = ctx.constant_of(inputs[2], "values")
    if depth.size != 1 or values.size != 2:
        raise ctx.fail(f"depth must hold one value and values two, got {list(depth.shape)}, {list(values.shape)}")
    if indices.type.dtype not in INDEX_DTYPES:  # ONNX allows any numeric type: cast to i64
        indices = ctx.emit1("cast", [indices], {"to": "i64"})
    off, on = values.reshape(-1).tolist()
    return ctx.emit("one_hot", [indices], {
        "depth": int(depth.reshape(-1)[0]), "axis": _onnx_axis(ctx, attrs.get("axis", -1), indices.type.rank + 1),
        "off_value": float(off), "on_value": float(on), "dtype": dtype_name(values.dtype)})


def _cumulative_ref(np_fn, identity):
    def ref(xs, a):
        x = xs[0]
        axis = normalize_axis(a["axis"], x.ndim)
        if a["reverse"]:
            x = np.flip(x, axis)
        with np.errstate(all="ignore"):  # integer overflow wraps, as in ONNX Runtime
            y = np_fn(x, axis=axis, dtype=x.dtype)
        if a["exclusive"]:  # shift by one along the axis, starting from the identity
            first = np.full_like(np.take(y, [0], axis=axis), identity)
            y = np.concatenate([first, np.delete(y, -1, axis=axis)], axis=axis) if x.shape[axis] else y
        if a["reverse"]:
            y = np.flip(y, axis)
        return y
    return ref


def _cumulative_lower(relax_op: str):
    def lower(ctx, xs, a, out):
        x = xs[0]
        axis = normalize_axis(a["axis"], len(out[0].shape))
        if a["reverse"]:
            x = ctx.bb.emit(R.flip(x, axis))
        y = getattr(R, relax_op)(x, axis, dtype=str(x.ty.dtype), exclusive=bool(a["exclusive"]))
        if a["reverse"]:
            y = R.flip(ctx.bb.emit(y), axis)
        return y
    return lower


def _onnx_cumulative(op: str):
    def convert(ctx, node, inputs, attrs):
        axis = ctx.constant_of(inputs[1], "axis")
        if axis.size != 1:
            raise ctx.fail(f"axis must hold one value, got shape {list(axis.shape)}")
        axis = _onnx_axis(ctx, int(axis.reshape(-1)[0]), inputs[0].type.rank)
        return ctx.emit(op, [inputs[0]], {"axis": axis, "exclusive": int(attrs.get("exclusive", 0)),
                                          "reverse": int(attrs.get("reverse", 0))})
    return convert


for _name, _np_fn, _identity, _onnx, _what in (
        ("cumsum", np.cumsum, 0, "CumSum", "sum"), ("cumprod", np.cumprod, 1, "CumProd", "product")):
    register_op(OpDef(
        name=_name, kind="opaque", infer=same_as_first, reference=_cumulative_ref(_np_fn, _identity),
        lower=_cumulative_lower(_name),
        attrs={"axis": Attr("int"), "exclusive": Attr("int", 0), "reverse": Attr("int", 0)},
        summary=f"cumulative {_what} along an axis (optionally exclusive and/or reversed)"))
    onnx_op(_onnx)(_onnx_cumulative(_name))


def _topk_infer(types, attrs):
    t = types[0]
    axis = normalize_axis(attrs["axis"], t.rank)
    if not 0 <= attrs["k"] <= t.shape[axis]:
        raise VerifyError(f"topk k={attrs['k']} is out of range for dim {axis} of {t}")
    shape = list(t.shape)
    shape[axis] = attrs["k"]
    return [TensorType(t.dtype, tuple(shape)), TensorType("i64", tuple(shape))]


def _topk_ref(xs, a):
    """Sorted results; ties keep the lower index first (as ONNX Runtime does)."""
    x = xs[0]
    axis = normalize_axis(a["axis"], x.ndim)
    key = x.astype(np.float64) if x.dtype.kind in "iub" else x
    order = np.argsort(-key if a["largest"] else key, axis=axis, kind="stable")
    idx = np.take(order, np.arange(a["k"]), axis=axis)
    return [np.take_along_axis(x, idx, axis=axis), idx.astype(np.int64)]


def _topk_lower(ctx, xs, a, out):
    axis = normalize_axis(a["axis"], len(out[0].shape))
    return R.topk(xs[0], a["k"], axis, ret_type="both", largest=bool(a["largest"]), dtype="int64")


register_op(OpDef(
    name="topk", kind="opaque", infer=_topk_infer, reference=_topk_ref, lower=_topk_lower,
    attrs={"k": Attr("int"), "axis": Attr("int", -1), "largest": Attr("int", 1), "sorted": Attr("int", 1)},
    summary="the k largest (or smallest) values and their i64 indices, always sorted"))


@onnx_op("TopK")
def _onnx_topk(ctx, node, inputs, attrs):
    k = ctx.constant_of(inputs[1], "K")
    if k.size != 1:
        raise ctx.fail(f"K must hold one value, got shape {list(k.shape)}")
    axis = _onnx_axis(ctx, attrs.get("axis", -1), inputs[0].type.rank)
    return emit_nonempty(ctx, "topk", [inputs[0]], {"k": int(k.reshape(-1)[0]), "axis": axis,
                                          "largest": int(attrs.get("largest", 1)),
                                          "sorted": int(attrs.get("sorted", 1))})


def parse_einsum(equation: str, shapes: list[tuple[int, ...]]) -> tuple[int, ...]:
    """The output shape of an einsum equation: explicit (`->`) or implicit (the letters seen
    once, sorted), with at most one `...` per term (broadcast across terms)."""
    eq = equation.replace(" ", "")
    lhs, arrow, rhs = eq.partition("->")
    terms = lhs.split(",")
    if len(terms) != len(shapes):
        raise VerifyError(f"einsum '{equation}' names {len(terms)} operands, got {len(shapes)}")
    dims: dict[str, int] = {}
    counts: dict[str, int] = {}
    ellipsis: tuple[int, ...] = ()
    for term, shape in zip(terms, shapes):
        head, dots, tail = term.partition("...")
        n_ell = len(shape) - len(head) - len(tail)
        if "..." in tail or (dots and n_ell < 0) or (not dots and n_ell != 0):
            raise VerifyError(f"einsum '{equation}': term '{term}' does not fit shape {list(shape)}")
        if dots:
            ellipsis = broadcast_shapes(ellipsis, shape[len(head):len(head) + n_ell])
        named = list(zip(head, shape[:len(head)])) + list(zip(tail, shape[len(head) + n_ell:]))
        for c, d in named:
            if not c.isalpha():
                raise VerifyError(f"einsum '{equation}': '{c}' is not a letter")
            if c in dims and dims[c] != d:
                if 1 not in (d, dims[c]):
                    raise VerifyError(f"einsum '{equation}': '{c}' is both {dims[c]} and {d}")
                d = max(d, dims[c])
            dims[c] = d
            counts[c] = counts.get(c, 0) + 1
    if not arrow:
        rhs = ("..." if any("..." in t for t in terms) else "") + "".join(
            sorted(c for c, n in counts.items() if n == 1))
    head, dots, tail = rhs.partition("...")
    for c in head + tail:
        if c not in dims:
            raise VerifyError(f"einsum '{equation}': output letter '{c}' names no input axis")
    return tuple([dims[c] for c in head] + (list(ellipsis) if dots else []) + [dims[c] for c in tail])


def _einsum_infer(types, attrs):
    dtypes = {t.dtype for t in types}
    if len(dtypes) != 1:
        raise VerifyError(f"einsum operands differ in dtype: {', '.join(map(str, types))}")
    return [TensorType(types[0].dtype, parse_einsum(attrs["equation"], [t.shape for t in types]))]


register_op(OpDef(
    name="einsum", kind="complex", attrs={"equation": Attr("str")}, num_inputs=(1, -1),
    infer=_einsum_infer, reference=lambda xs, a: np.einsum(a["equation"], *xs),
    lower=lambda ctx, xs, a, out: R.einsum(xs, a["equation"]),
    summary="Einstein summation"))


@onnx_op("Einsum")
def _onnx_einsum(ctx, node, inputs, attrs):
    return ctx.emit("einsum", inputs, {"equation": attrs["equation"].replace(" ", "")})


# ---- importers that make constants -----------------------------------------------------------

@onnx_op("Constant")
def _onnx_constant(ctx, node, inputs, attrs):
    if "value" in attrs:
        return [ctx.const(attrs["value"])]
    if "value_float" in attrs:
        return [ctx.const(np.float32(attrs["value_float"]), "f32")]
    if "value_floats" in attrs:
        return [ctx.const(np.asarray(attrs["value_floats"], np.float32))]
    if "value_int" in attrs:
        return [ctx.const(np.int64(attrs["value_int"]), "i64")]
    if "value_ints" in attrs:
        return [ctx.const(np.asarray(attrs["value_ints"], np.int64))]
    raise ctx.fail(f"Constant with {', '.join(attrs) or 'no value'} is not supported (strings, sparse)")


@onnx_op("ConstantOfShape")
def _onnx_constant_of_shape(ctx, node, inputs, attrs):
    shape = _onnx_shape_operand(ctx, inputs[0], "input")
    value = attrs.get("value", np.zeros(1, np.float32))
    if value.size != 1:
        raise ctx.fail(f"value must hold one element, got shape {list(value.shape)}")
    if any(d < 0 for d in shape):
        raise ctx.fail(f"shape {shape} has a negative dim")
    # An expand of the one value: ctx.emit checks the size before anything is allocated, and
    # folds the result into a constant when it is small.
    scalar = ctx.const(np.asarray(value.reshape(-1)[0], dtype=value.dtype).reshape([1] * len(shape)))
    return emit_nonempty(ctx, "expand", [scalar], {"shape": list(shape)})


@onnx_op("EyeLike")
def _onnx_eye_like(ctx, node, inputs, attrs):
    """A 2-D constant with ones on diagonal k, of the input's shape; dtype from `dtype` or the input."""
    from ..ir import DTYPES
    from ..onnx_import import ONNX_DTYPES
    x = inputs[0]
    if x.type.rank != 2:
        raise ctx.fail(f"EyeLike takes a 2-D input, got {x.type}")
    dtype = x.type.dtype
    if "dtype" in attrs:
        if attrs["dtype"] not in ONNX_DTYPES:
            raise ctx.fail(f"dtype {attrs['dtype']} is not supported")
        dtype = ONNX_DTYPES[attrs["dtype"]]
    rows, cols = x.type.shape
    ctx.check_size((rows, cols), dtype)
    return [ctx.const(np.eye(rows, cols, attrs.get("k", 0), dtype=DTYPES[dtype]), dtype)]


@onnx_op("Shape")
def _onnx_shape(ctx, node, inputs, attrs):
    """The static shape as an i64 constant; start/end (opset 15) slice it like Python."""
    shape = inputs[0].type.shape
    start, end = attrs.get("start", 0), attrs.get("end", len(shape))
    return [ctx.const(np.array(shape[start:end], dtype=np.int64))]


@onnx_op("Size")
def _onnx_size(ctx, node, inputs, attrs):
    return [ctx.const(np.int64(inputs[0].type.size), "i64")]


@onnx_op("Range")
def _onnx_range(ctx, node, inputs, attrs):
    """Range of constants folds into a constant; its length must be known at compile time. The
    length (exact for integers) is checked before anything is allocated; a delta of 0 and
    non-finite floats are refused."""
    start, limit, delta = (ctx.constant_of(v, what) for v, what in zip(inputs, ("start", "limit", "delta")))
    if any(v.size != 1 for v in (start, limit, delta)):
        raise ctx.fail(f"start, limit and delta must be scalars, got shapes "
                       f"{[list(v.shape) for v in (start, limit, delta)]}")
    if float(delta) == 0:
        raise ctx.fail("delta is 0")
    dtype = start.dtype
    if dtype.kind in "iu":
        s, d = int(start), int(delta)
        n = -((s - int(limit)) // d)  # ceil((limit - start) / delta), exactly
    elif all(np.isfinite(v).all() for v in (start, limit, delta)):
        s, d = float(start), float(delta)
        n = math.ceil((float(limit) - s) / d)
    else:
        raise ctx.fail(f"start {start}, limit {limit} and delta {delta} must be finite")
    n = max(n, 0)
    ctx.check_size([n], dtype_name(dtype))
    values = np.arange(n, dtype=np.int64 if dtype.kind in "iu" else np.float64)
    values *= d
    values += s
    return [ctx.const(values.astype(dtype))]


@onnx_op("NonZero")
def _onnx_non_zero(ctx, node, inputs, attrs):
    x = ctx.constant_of(inputs[0], "X", DATA_DEPENDENT)
    return [ctx.const(np.array(np.nonzero(x), dtype=np.int64).reshape(x.ndim, -1))]


# ---- importers that compute their outputs at import ----------------------------------------------
# Windows and the mel matrix depend on constant sizes only. Unique, NonMaxSuppression, Compress
# and ReverseSequence have outputs (or gather indices) that depend on the values of an input,
# which must then be a constant: edgec compiles static shapes only.

def _window(ctx, node, inputs, attrs, terms):
    """sum_k terms[k] * cos(2 pi k n / N) for n in [0, size): N = size (periodic, default) or size - 1."""
    from ..onnx_import import ONNX_DTYPES
    size = int(ctx.constant_of(inputs[0], "size").reshape(-1)[0])
    dtype = ONNX_DTYPES.get(attrs.get("output_datatype", 1))
    if dtype is None:
        raise ctx.fail(f"output_datatype {attrs.get('output_datatype')} is not supported")
    ctx.check_size([size], dtype)
    n = np.arange(size, dtype=np.float64)
    period = size if attrs.get("periodic", 1) else size - 1
    window = sum(c * np.cos(2 * np.pi * k * n / period) for k, c in enumerate(terms))
    return [ctx.const(window.astype(DTYPES[dtype]), dtype)]


onnx_op("HannWindow")(lambda ctx, node, inputs, attrs: _window(ctx, node, inputs, attrs, [0.5, -0.5]))
onnx_op("HammingWindow")(lambda ctx, node, inputs, attrs: _window(ctx, node, inputs, attrs, [25 / 46, -21 / 46]))
onnx_op("BlackmanWindow")(lambda ctx, node, inputs, attrs: _window(ctx, node, inputs, attrs, [0.42, -0.5, 0.08]))


@onnx_op("MelWeightMatrix")
def _onnx_mel_weight_matrix(ctx, node, inputs, attrs):
    """[dft_length // 2 + 1, num_mel_bins] triangular filters, as ONNX's reference computes them
    (bin edges equally spaced in mel, rounded down to spectrogram bins)."""
    from ..onnx_import import ONNX_DTYPES
    names = ("num_mel_bins", "dft_length", "sample_rate", "lower_edge_hertz", "upper_edge_hertz")
    bins, dft, rate, low, high = (ctx.constant_of(v, w).reshape(-1)[0] for v, w in zip(inputs, names))
    dtype = ONNX_DTYPES.get(attrs.get("output_datatype", 1))
    if dtype is None:
        raise ctx.fail(f"output_datatype {attrs.get('output_datatype')} is not supported")
    bins, dft = int(bins), int(dft)
    ctx.check_size([dft // 2 + 1, bins], dtype)
    low_mel, high_mel = (2595 * np.log1p(f / 700) / np.log(10) for f in (low, high))
    mels = np.arange(bins + 2) * ((high_mel - low_mel) / (bins + 2)) + low_mel
    edges = (((dft + 1) * (700 * np.expm1(mels / 2595 * np.log(10)))) // rate).astype(np.int64)
    out = np.zeros((dft // 2 + 1, bins))
    for i in range(bins):
        left, center, right = edges[i:i + 3]
        if center == left:
            out[center, i] = 1
        else:
            out[left:center + 1, i] = (np.arange(left, center + 1) - left) / (center - left)
        if right > center:
            out[center:right, i] = (right - np.arange(center, right)) / (right - center)
    return [ctx.const(out.astype(DTYPES[dtype]), dtype)]


@onnx_op("Unique")
def _onnx_unique(ctx, node, inputs, attrs):
    """Unique of a constant: (values, first indices, inverse indices, counts), sorted or in order
    of first occurrence, flattened or along `axis`. A non-constant input is refused (its output
    shape depends on its values)."""
    x = ctx.constant_of(inputs[0], "X", DATA_DEPENDENT)
    axis = attrs.get("axis")
    if axis is not None:
        axis = normalize_axis(axis, x.ndim)
    y, first, inverse, counts = np.unique(x, return_index=True, return_inverse=True, return_counts=True,
                                          axis=axis)
    inverse = inverse.reshape(-1)
    if not attrs.get("sorted", 1):
        order = np.argsort(first, kind="stable")
        rank = np.empty_like(order)
        rank[order] = np.arange(len(order))
        y, first, inverse, counts = np.take(y, order, axis=axis or 0), first[order], rank[inverse], counts[order]
    if axis is None:
        y = y.reshape(-1)
    return [ctx.const(np.ascontiguousarray(y))] + [ctx.const(a.astype(np.int64)) for a in (first, inverse, counts)]


@onnx_op("Compress")
def _onnx_compress(ctx, node, inputs, attrs):
    """The slices of x (along `axis`, or of x flattened) where a constant condition is true: a
    gather of constant indices. A non-constant condition is refused (data-dependent shape)."""
    x = inputs[0]
    cond = ctx.constant_of(inputs[1], "condition", DATA_DEPENDENT).reshape(-1).astype(bool)
    axis = attrs.get("axis")
    if axis is None:
        x, axis = ctx.emit1("reshape", [x], {"shape": [x.type.size]}), 0
    axis = normalize_axis(axis, x.type.rank)
    keep = np.nonzero(cond[:x.type.shape[axis]])[0].astype(np.int64)
    return emit_nonempty(ctx, "gather", [x, ctx.const(keep)], {"axis": axis})


@onnx_op("ReverseSequence")
def _onnx_reverse_sequence(ctx, node, inputs, attrs):
    """Reverse the first sequence_lens[b] steps along time_axis of each batch entry b: a
    gather_elements with constant indices, so sequence_lens must be a constant."""
    x = inputs[0]
    lens = ctx.constant_of(inputs[1], "sequence_lens").reshape(-1).astype(np.int64)
    batch, time = attrs.get("batch_axis", 1), attrs.get("time_axis", 0)
    if x.type.rank < 2 or {batch, time} != {0, 1} or len(lens) != x.type.shape[batch]:
        raise ctx.fail(f"expects batch_axis and time_axis 0 and 1 and one length per batch entry, "
                       f"got {attrs} for {x.type} and {len(lens)} lengths")
    steps = x.type.shape[time]
    index = np.tile(np.arange(steps), (len(lens), 1))  # [batch, time]
    for b, n in enumerate(lens):
        index[b, :n] = np.arange(n)[::-1]
    if time == 0:
        index = index.T
    ctx.check_size(x.type.shape, "i64")
    index = np.broadcast_to(index.reshape(index.shape + (1,) * (x.type.rank - 2)), x.type.shape)
    return ctx.emit("gather_elements", [x, ctx.const(np.ascontiguousarray(index))], {"axis": time})


def _box_corners(boxes: np.ndarray, center_point_box: int) -> np.ndarray:
    """[..., 4] boxes as (y_min, x_min, y_max, x_max): from corners in either order, or from
    (x_center, y_center, width, height) when center_point_box is 1."""
    if center_point_box:
        x, y, w, h = np.moveaxis(boxes, -1, 0)
        return np.stack([y - h / 2, x - w / 2, y + h / 2, x + w / 2], -1)
    y1, x1, y2, x2 = np.moveaxis(boxes, -1, 0)
    return np.stack([np.minimum(y1, y2), np.minimum(x1, x2), np.maximum(y1, y2), np.maximum(x1, x2)], -1)


def non_max_suppression(boxes, scores, max_per_class: int, iou_threshold: float, score_threshold,
                        center_point_box: int) -> np.ndarray:
    """ONNX NonMaxSuppression: per batch and class, boxes by descending score (ties: lower index
    first) above score_threshold (None: all), each kept unless its IoU with a kept one exceeds
    iou_threshold, at most max_per_class; [k, 3] (batch, class, box) indices."""
    corners = _box_corners(boxes, center_point_box)
    selected = []
    for b in range(scores.shape[0]):
        area = (corners[b, :, 2] - corners[b, :, 0]) * (corners[b, :, 3] - corners[b, :, 1])
        for c in range(scores.shape[1]):
            kept: list[int] = []
            for i in sorted(range(scores.shape[2]), key=lambda i: (-scores[b, c, i], i)):
                if len(kept) >= max_per_class:
                    break
                if score_threshold is not None and not scores[b, c, i] > score_threshold:
                    continue
                lo = np.maximum(corners[b, i, :2], corners[b, kept, :2])
                hi = np.minimum(corners[b, i, 2:], corners[b, kept, 2:])
                inter = np.prod(np.clip(hi - lo, 0, None), axis=-1)
                union = area[i] + area[kept] - inter
                iou = np.where((inter > 0) & (area[i] > 0) & (area[kept] > 0) & (union > 0),
                               inter / np.where(union > 0, union, 1), 0)
                if not (iou > iou_threshold).any():
                    kept.append(i)
                    selected.append((b, c, i))
    return np.array(selected, dtype=np.int64).reshape(-1, 3)


@onnx_op("NonMaxSuppression")
def _onnx_non_max_suppression(ctx, node, inputs, attrs):
    """NonMaxSuppression of constant boxes and scores, computed at import (the number of boxes
    kept depends on their values, and edgec compiles static shapes only)."""
    names = ("boxes", "scores", "max_output_boxes_per_class", "iou_threshold", "score_threshold")
    values = [ctx.constant_of(v, w, DATA_DEPENDENT) if v is not None else None
              for v, w in zip(inputs, names)]
    values += [None] * (5 - len(values))
    boxes, scores, limit, iou, score = values
    if boxes.ndim != 3 or boxes.shape[2] != 4 or scores.ndim != 3 or scores.shape[::2] != boxes.shape[:2]:
        raise ctx.fail(f"expects boxes [batch, boxes, 4] and scores [batch, classes, boxes], got "
                       f"{list(boxes.shape)} and {list(scores.shape)}")
    limit = max(int(limit.reshape(-1)[0]), 0) if limit is not None and limit.size else 0
    iou = float(iou.reshape(-1)[0]) if iou is not None and iou.size else 0.0
    score = float(score.reshape(-1)[0]) if score is not None and score.size else None
    return [ctx.const(non_max_suppression(boxes, scores, limit, iou, score, attrs.get("center_point_box", 0)))]
