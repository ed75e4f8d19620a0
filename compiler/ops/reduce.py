"""Reductions and argmax/argmin (kind `reduction`).

reduce_sum, reduce_mean, reduce_max, reduce_min, reduce_prod, reduce_l1, reduce_l2, reduce_log_sum,
reduce_log_sum_exp and reduce_sum_square take
- `axes`: the reduced axes, normalised (non-negative) and sorted by the importer; empty means all
  axes, unless `noop_with_empty_axes` is 1: then nothing is reduced and only the elementwise part
  applies (reduce_l1 gives |x|, reduce_sum_square x*x, ...), as ONNX Runtime does;
- `keepdims`: 1 keeps reduced axes as size 1.
Integer reduce_mean truncates toward zero (ONNX Runtime); integer sums wrap.
reduce_log_sum_exp subtracts the maximum first, so it does not overflow.

argmax and argmin take `axis`, `keepdims` and `select_last_index` (the last of equal extremes
instead of the first) and give i64 indices.

ONNX importers: Reduce* with `axes` as an attribute (ReduceSum before opset 13, the others before
opset 18) or as a constant second input (later opsets; a missing one means empty), ArgMax, ArgMin.
"""

from __future__ import annotations

import numpy as np

from ..errors import VerifyError
from ..lazy import LazyModule
from ..ir import TensorType
from .base import Attr, OpDef, normalize_axis, onnx_op, register_op
from .elementwise import BOOL, FLOATS, NUMERIC, check_dtypes

relax = LazyModule("tvm.relax")
te = LazyModule("tvm.te")
tirx = LazyModule("tvm.tirx")
topi = LazyModule("tvm.topi")
R = LazyModule("tvm.relax.op")

INT32_64 = ("i32", "i64")

REDUCE_ATTRS = {"axes": Attr("ints", []), "keepdims": Attr("int", 1), "noop_with_empty_axes": Attr("int", 0)}


def reduced_axes(attrs: dict, rank: int) -> list[int]:
    """The axes a reduction reduces: normalised and sorted; all for empty axes unless noop."""
    axes = attrs["axes"]
    if not axes:
        return [] if attrs["noop_with_empty_axes"] else list(range(rank))
    norm = sorted(normalize_axis(a, rank) for a in axes)
    if len(set(norm)) != len(norm):
        raise VerifyError(f"axes {axes} repeat an axis")
    return norm


def _out_shape(shape: tuple[int, ...], axes: list[int], keepdims: int) -> tuple[int, ...]:
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(shape))
    return tuple(d for i, d in enumerate(shape) if i not in axes)


def _reduce_infer(name: str, allowed: tuple[str, ...]):
    def infer(types, attrs):
        check_dtypes(name, types[:1], allowed)
        if attrs["keepdims"] not in (0, 1):
            raise VerifyError(f"{name}: keepdims must be 0 or 1, got {attrs['keepdims']}")
        t = types[0]
        axes = reduced_axes(attrs, t.rank)
        return [TensorType(t.dtype, _out_shape(t.shape, axes, attrs["keepdims"]))]
    return infer


# ---- numpy references -------------------------------------------------------------------------

def _np_mean(x, axes, keep):
    if x.dtype.kind == "f":
        return np.mean(x, axis=axes, keepdims=keep, dtype=x.dtype)
    count = int(np.prod([x.shape[a] for a in axes], dtype=np.int64))
    total = np.sum(x, axis=axes, keepdims=keep, dtype=np.int64)
    quotient = np.abs(total) // count  # truncation toward zero
    return (np.sign(total) * quotient).astype(x.dtype)


def _np_log_sum_exp(x, axes, keep):
    if not axes:
        return x
    m = np.max(x, axis=axes, keepdims=True)
    s = np.log(np.sum(np.exp(x - m), axis=axes, keepdims=True)) + m
    return s if keep else np.squeeze(s, axis=tuple(axes))


# ---- relax lowerings --------------------------------------------------------------------------
# fn(ctx, x, axes (non-empty), keepdims) -> expr; an empty `axes` (noop) only applies `elementwise`.

def _relax_mean(ctx, x, axes, keep):
    if str(x.ty.dtype).startswith("float"):
        return R.mean(x, axes, keep)
    count = int(np.prod([int(x.ty.shape[a]) for a in axes]))
    return R.divide(R.sum(x, axes, keep), relax.const(count, x.ty.dtype))  # TVM int divide truncates


def _relax_log_sum_exp(ctx, x, axes, keep):
    m = ctx.bb.emit(R.max(x, axes, True))
    s = R.add(R.log(R.sum(R.exp(R.subtract(x, m)), axes, True)), m)
    return s if keep else R.squeeze(s, axes)


def _square(x):
    return R.multiply(x, x)


def _relax_extreme(is_max: bool):
    """max / min over `axes`. Floats reduce from -inf / +inf (TVM's own max and min start from the
    largest finite value, so a slice of all -inf would give -3.4e38 instead of -inf)."""
    def lower(ctx, x, axes, keep):
        dtype = str(x.ty.dtype)
        if dtype == "bool":  # max = any, min = all (ReduceMax/Min-20 take bool)
            wide = ctx.bb.emit((R.max if is_max else R.min)(R.astype(x, "uint8"), axes, keep))
            return R.astype(wide, "bool")
        if not dtype.startswith("float"):
            return (R.max if is_max else R.min)(x, axes, keep)

        def te_extreme(data):
            combine = tirx.max if is_max else tirx.min
            identity = float("-inf") if is_max else float("inf")
            reducer = te.comm_reducer(lambda a, b: combine(a, b), lambda t: tirx.const(identity, t),
                                      name="max" if is_max else "min")
            shape = list(data.shape)
            red = {a: te.reduce_axis((0, shape[a]), name=f"k{a}") for a in axes}

            def body(*index):
                it = iter(index)
                full = []
                for d in range(len(shape)):
                    if d in red:
                        full.append(red[d].var)
                        if keep:
                            next(it)
                    else:
                        full.append(next(it))
                return reducer(data[tuple(full)], axis=[red[a] for a in sorted(red)])

            out_shape = [1 if d in red else n for d, n in enumerate(shape)] if keep else \
                [n for d, n in enumerate(shape) if d not in red]
            return te.compute(out_shape, body, name="reduce_max" if is_max else "reduce_min")

        return ctx.bb.emit_te(te_extreme, x, primfunc_name_hint="reduce_max" if is_max else "reduce_min")
    return lower


# name: (ONNX op type, operand dtypes, numpy fn(x, axes tuple, keepdims), relax fn, elementwise part for
#        numpy, elementwise part for relax, opset from which axes is an input)
REDUCE: dict[str, tuple] = {
    "reduce_sum": ("ReduceSum", NUMERIC,
                   lambda x, ax, k: np.sum(x, axis=ax, keepdims=k, dtype=x.dtype),
                   lambda ctx, x, ax, k: R.sum(x, ax, k), None, None, 13),
    "reduce_mean": ("ReduceMean", FLOATS + INT32_64, _np_mean, _relax_mean, None, None, 18),
    "reduce_max": ("ReduceMax", NUMERIC + BOOL, lambda x, ax, k: np.max(x, axis=ax, keepdims=k),
                   _relax_extreme(True), None, None, 18),
    "reduce_min": ("ReduceMin", NUMERIC + BOOL, lambda x, ax, k: np.min(x, axis=ax, keepdims=k),
                   _relax_extreme(False), None, None, 18),
    "reduce_prod": ("ReduceProd", FLOATS + INT32_64,
                    lambda x, ax, k: np.prod(x, axis=ax, keepdims=k, dtype=x.dtype),
                    lambda ctx, x, ax, k: R.prod(x, ax, k), None, None, 18),
    "reduce_l1": ("ReduceL1", FLOATS + INT32_64,
                  lambda x, ax, k: np.sum(np.abs(x), axis=ax, keepdims=k, dtype=x.dtype),
                  lambda ctx, x, ax, k: R.sum(R.abs(x), ax, k), np.abs, lambda x: R.abs(x), 18),
    "reduce_l2": ("ReduceL2", FLOATS,
                  lambda x, ax, k: np.sqrt(np.sum(x * x, axis=ax, keepdims=k, dtype=x.dtype)),
                  lambda ctx, x, ax, k: R.sqrt(R.sum(_square(x), ax, k)), np.abs, lambda x: R.abs(x), 18),
    "reduce_log_sum": ("ReduceLogSum", FLOATS,
                       lambda x, ax, k: np.log(np.sum(x, axis=ax, keepdims=k, dtype=x.dtype)),
                       lambda ctx, x, ax, k: R.log(R.sum(x, ax, k)), np.log, lambda x: R.log(x), 18),
    "reduce_log_sum_exp": ("ReduceLogSumExp", FLOATS, _np_log_sum_exp, _relax_log_sum_exp, None, None, 18),
    "reduce_sum_square": ("ReduceSumSquare", FLOATS + INT32_64,
                          lambda x, ax, k: np.sum(x * x, axis=ax, keepdims=k, dtype=x.dtype),
                          lambda ctx, x, ax, k: R.sum(_square(x), ax, k), np.square, _square, 18),
}


def _reduce_reference(np_fn, np_elementwise):
    def reference(xs, attrs):
        x = xs[0]
        axes = reduced_axes(attrs, x.ndim)
        with np.errstate(all="ignore"):
            if not axes:
                return x if np_elementwise is None else np_elementwise(x)
            return np_fn(x, tuple(axes), bool(attrs["keepdims"]))
    return reference


def _reduce_lower(relax_fn, relax_elementwise):
    def lower(ctx, xs, attrs, out_types):
        x = xs[0]
        axes = reduced_axes(attrs, len(x.ty.shape))
        if not axes:
            return R.astype(x, x.ty.dtype) if relax_elementwise is None else relax_elementwise(x)
        return relax_fn(ctx, x, axes, bool(attrs["keepdims"]))
    return lower


def _onnx_reduce(name: str, axes_input_opset: int):
    def convert(ctx, node, inputs, attrs):
        x = inputs[0]
        if ctx.opset >= axes_input_opset:
            if "axes" in attrs:
                raise ctx.fail(f"from opset {axes_input_opset} axes is an input, not an attribute")
            axes = inputs[1] if len(inputs) > 1 else None
            axes = [] if axes is None else ctx.constant_of(axes, "axes").reshape(-1).tolist()
            noop = attrs.get("noop_with_empty_axes", 0)
        else:
            axes = list(attrs.get("axes", []))
            noop = 0
        try:
            norm = sorted(normalize_axis(int(a), x.type.rank) for a in axes)
        except VerifyError as e:
            raise ctx.fail(str(e)) from None
        if len(set(norm)) != len(norm):
            raise ctx.fail(f"axes {axes} repeat an axis")
        return ctx.emit(name, [x], {"axes": norm, "keepdims": attrs.get("keepdims", 1),
                                    "noop_with_empty_axes": noop})
    return convert


for _name, (_onnx, _allowed, _np_fn, _relax_fn, _np_ew, _relax_ew, _opset) in REDUCE.items():
    register_op(OpDef(name=_name, kind="reduction", attrs=dict(REDUCE_ATTRS),
                      infer=_reduce_infer(_name, _allowed),
                      reference=_reduce_reference(_np_fn, _np_ew),
                      lower=_reduce_lower(_relax_fn, _relax_ew),
                      summary=f"{_onnx} over `axes` (empty: all, unless noop_with_empty_axes)"))
    onnx_op(_onnx)(_onnx_reduce(_name, _opset))


# ---- argmax / argmin --------------------------------------------------------------------------

ARG_ATTRS = {"axis": Attr("int", 0), "keepdims": Attr("int", 1), "select_last_index": Attr("int", 0)}


def _arg_infer(name: str):
    def infer(types, attrs):
        check_dtypes(name, types[:1], NUMERIC)
        t = types[0]
        if t.rank == 0:
            raise VerifyError(f"{name} needs a tensor of rank 1 or more, got {t}")
        axis = normalize_axis(attrs["axis"], t.rank)
        if t.shape[axis] == 0:
            raise VerifyError(f"{name} over an empty axis {axis} of {t}")
        return [TensorType("i64", _out_shape(t.shape, [axis], attrs["keepdims"]))]
    return infer


def _arg_reference(np_fn):
    def reference(xs, attrs):
        x = xs[0]
        axis = normalize_axis(attrs["axis"], x.ndim)
        if attrs["select_last_index"]:
            flipped = np_fn(np.flip(x, axis=axis), axis=axis, keepdims=bool(attrs["keepdims"]))
            return (x.shape[axis] - 1 - flipped).astype(np.int64)
        return np_fn(x, axis=axis, keepdims=bool(attrs["keepdims"])).astype(np.int64)
    return reference


def _arg_lower(topi_op: str):
    def lower(ctx, xs, attrs, out_types):
        x = xs[0]
        axis = normalize_axis(attrs["axis"], len(x.ty.shape))
        result = ctx.bb.emit_te(getattr(topi, topi_op), x, axis, bool(attrs["keepdims"]), bool(attrs["select_last_index"]))
        return result if str(result.ty.dtype) == "int64" else R.astype(result, "int64")
    return lower


def _onnx_arg(name: str):
    def convert(ctx, node, inputs, attrs):
        x = inputs[0]
        try:
            axis = normalize_axis(int(attrs.get("axis", 0)), x.type.rank)
        except VerifyError as e:
            raise ctx.fail(str(e)) from None
        return ctx.emit(name, [x], {"axis": axis, "keepdims": attrs.get("keepdims", 1),
                                    "select_last_index": attrs.get("select_last_index", 0)})
    return convert


for _name, _np_fn, _onnx in (("argmax", np.argmax, "ArgMax"), ("argmin", np.argmin, "ArgMin")):
    register_op(OpDef(name=_name, kind="reduction", attrs=dict(ARG_ATTRS), infer=_arg_infer(_name),
                      reference=_arg_reference(_np_fn), lower=_arg_lower(_name),
                      summary=f"index (i64) of the {'largest' if _name == 'argmax' else 'smallest'} "
                              "element along `axis`"))
    onnx_op(_onnx)(_onnx_arg(_name))
