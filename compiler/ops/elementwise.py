"""Elementwise ops: unary math and activations, broadcasting binary ops, comparisons, logic,
pow, mod, bitshift and clip. All have kind `elementwise` (fusable into one kernel).

Dtypes follow ONNX: float-only math (sigmoid, exp, floor, sin, ...) refuses integer tensors with a
message naming the op; add/sub/mul/div/min/max/mod/clip also take integer tensors (integer div
truncates toward zero like ONNX Runtime); comparisons give bool; and/or/xor/not take bool;
bitwise_and/or/xor/not take integers.

ONNX importers here: the unary ops, Add/Sub/Mul/Div, Pow (exponent of another dtype), n-ary
Min/Max/Sum/Mean (balanced trees of binary ops, Mean divides at the end), Equal/Less/LessOrEqual/Greater/
GreaterOrEqual, And/Or/Xor/Not, BitwiseAnd/Or/Xor/Not, Mod (fmod 0/1; fmod=0 on floats as in opset 28), BitShift
(unsigned; signed as in opset 28), IsNaN, IsInf, Clip (opset < 11 attributes; opset 11+ optional
min/max inputs: constants become attributes, other tensors become max/min ops) and Shrink.
SiLU has no ONNX op (a pass recognizes x * sigmoid(x)).

Numerics that differ from the obvious TVM lowering, each checked against ONNX Runtime:
round uses nearbyint (half to even on every target); sinh/cosh are written with exp (edgec's
CPU pipeline leaves TVM's intrinsics unlowered); softplus runs in float64 and mish uses
x * n / (n + 2), n = e^x (e^x + 2), keeping relative precision for very negative inputs; equal on
bool is not(xor) (TVM's equal on bool miscompiles); clip is min(max(x, lo), hi), so min > max
gives max as in ONNX Runtime.
"""

from __future__ import annotations

import math

import numpy as np

from ..ir import DTYPES, TensorType, is_float
from .base import Attr, OpDef, balanced_tree, broadcast_infer, register_op, onnx_op
from ..errors import VerifyError
from ..lazy import LazyModule

relax = LazyModule("tvm.relax")
te = LazyModule("tvm.te")
tirx = LazyModule("tvm.tirx")
R = LazyModule("tvm.relax.op")

FLOATS = ("f16", "f32", "f64")
SIGNED = ("i8", "i16", "i32", "i64")
UNSIGNED = ("u8", "u16", "u32", "u64")
INTS = SIGNED + UNSIGNED
NUMERIC = FLOATS + INTS
BOOL = ("bool",)


def tvm_dtype(name: str) -> str:
    return DTYPES[name].name


def check_dtypes(op: str, types: list[TensorType], allowed: tuple[str, ...]) -> None:
    """Raise a VerifyError naming `op` when an operand's dtype is not in `allowed`."""
    names = {FLOATS: "float", BOOL: "bool", NUMERIC: "numeric", INTS: "integer", UNSIGNED: "unsigned integer"}
    for t in types:
        if t.dtype not in allowed:
            what = f"{names[allowed]} tensors ({', '.join(allowed)})" if allowed in names else \
                f"{', '.join(allowed)} tensors"
            raise VerifyError(f"op '{op}' takes {what}, got {t}; ONNX does not define it for this dtype")


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x).astype(x.dtype)


def _float_infer(types, attrs):
    check_dtypes("a float op", types[:1], FLOATS)
    return [types[0]]


def _c(value, dtype: str) -> relax.Expr:
    """A scalar Relax constant of a TVM dtype name (`float32`)."""
    return relax.const(value, dtype)


def _f64(x: np.ndarray) -> np.ndarray:
    return x.astype(np.float64)


# ---- numpy references and relax lowerings of the longer unary ops -------------------------------

def _softplus_np(x):
    return np.logaddexp(0, _f64(x)).astype(x.dtype)


def _softplus_relax(x, a):
    """max(x, 0) + log(1 + exp(-|x|)) in float64, and exp(x) below -20: no overflow for large |x|
    and no loss of relative precision for very negative x, where 1 + exp(x) rounds to 1 (TVM has
    no log1p op, and its simplifier undoes the usual log1p trick)."""
    dt = str(x.ty.dtype)
    xf = x if dt == "float64" else R.astype(x, "float64")
    y = R.add(R.maximum(xf, _c(0, "float64")),
              R.log(R.add(_c(1, "float64"), R.exp(R.negative(R.abs(xf))))))
    y = R.where(R.less(xf, _c(-20, "float64")), R.exp(xf), y)
    return y if dt == "float64" else R.astype(y, dt)


def _elu_np(x, a):
    return np.where(x < 0, a["alpha"] * np.expm1(_f64(x)), x).astype(x.dtype)


def _elu_relax(x, a):
    dt = x.ty.dtype
    return R.where(R.less(x, _c(0, dt)),
                   R.multiply(_c(a["alpha"], dt), R.subtract(R.exp(x), _c(1, dt))), x)


def _selu_np(x, a):
    return (a["gamma"] * np.where(x > 0, _f64(x), a["alpha"] * np.expm1(_f64(x)))).astype(x.dtype)


def _selu_relax(x, a):
    dt = x.ty.dtype
    neg = R.multiply(_c(a["alpha"], dt), R.subtract(R.exp(x), _c(1, dt)))
    return R.multiply(_c(a["gamma"], dt), R.where(R.greater(x, _c(0, dt)), x, neg))


def _celu_np(x, a):
    xf = _f64(x)
    return (np.maximum(xf, 0) + np.minimum(0, a["alpha"] * np.expm1(xf / a["alpha"]))).astype(x.dtype)


def _celu_relax(x, a):
    dt = x.ty.dtype
    alpha = _c(a["alpha"], dt)
    neg = R.multiply(alpha, R.subtract(R.exp(R.divide(x, alpha)), _c(1, dt)))
    return R.add(R.maximum(x, _c(0, dt)), R.minimum(neg, _c(0, dt)))


def _mish_np(x, a):
    return (x * np.tanh(np.logaddexp(0, _f64(x)))).astype(x.dtype)


def _mish_relax(x, a):
    """x * tanh(softplus(x)) = x * n / (n + 2) with n = e^x (e^x + 2): no cancellation near 0, where
    TVM's tanh loses relative precision; above a threshold (before n overflows) the result is x."""
    dt = x.ty.dtype
    e = R.exp(R.minimum(x, _c(20, dt)))
    n = R.multiply(e, R.add(e, _c(2, dt)))
    limit = 5 if str(dt) == "float16" else 20
    return R.where(R.greater(x, _c(limit, dt)), x, R.multiply(x, R.divide(n, R.add(n, _c(2, dt)))))


def _sign_relax(x):
    dt = str(x.ty.dtype)
    if dt.startswith("uint"):  # TVM's sign builds a -1 of the unsigned type and fails
        return R.astype(R.greater(x, _c(0, dt)), dt)
    return R.sign(x)


def _shrink_np(x, a):
    xf = _f64(x)
    return np.where(xf < -a["lambd"], xf + a["bias"],
                    np.where(xf > a["lambd"], xf - a["bias"], 0)).astype(x.dtype)


def _shrink_relax(x, a):
    dt = x.ty.dtype
    lambd, bias = a["lambd"], a["bias"]
    return R.where(R.less(x, _c(-lambd, dt)), R.add(x, _c(bias, dt)),
                   R.where(R.greater(x, _c(lambd, dt)), R.subtract(x, _c(bias, dt)), _c(0, dt)))


def _exp_pair(x, combine):
    """(exp(x) -/+ exp(-x)) / 2: sinh and cosh written out, because edgec's CPU pipeline leaves
    TVM's tirx.sinh/tirx.cosh intrinsics unlowered (LLVM codegen then refuses them)."""
    dt = x.ty.dtype
    return R.multiply(combine(R.exp(x), R.exp(R.negative(x))), _c(0.5, dt))


# ---- unary ---------------------------------------------------------------------------------
# name: (numpy reference, relax lowering, ONNX op types, attributes)
UNARY: dict[str, tuple] = {
    "relu": (lambda x, a: np.maximum(x, 0).astype(x.dtype), lambda x, a: R.nn.relu(x), ["Relu"], {}),
    "sigmoid": (lambda x, a: (1 / (1 + np.exp(-x.astype(np.float64)))).astype(x.dtype),
                lambda x, a: R.sigmoid(x), ["Sigmoid"], {}),
    "tanh": (lambda x, a: np.tanh(x), lambda x, a: R.tanh(x), ["Tanh"], {}),
    "exp": (lambda x, a: np.exp(x), lambda x, a: R.exp(x), ["Exp"], {}),
    "log": (lambda x, a: np.log(x), lambda x, a: R.log(x), ["Log"], {}),
    "sqrt": (lambda x, a: np.sqrt(x), lambda x, a: R.sqrt(x), ["Sqrt"], {}),
    "erf": (lambda x, a: _erf(x), lambda x, a: R.erf(x), ["Erf"], {}),
    "neg": (lambda x, a: np.negative(x), lambda x, a: R.negative(x), ["Neg"], {}),
    "abs": (lambda x, a: np.abs(x), lambda x, a: R.abs(x), ["Abs"], {}),
    "reciprocal": (lambda x, a: (1 / x).astype(x.dtype), lambda x, a: R.divide(relax.const(1, x.ty.dtype), x),
                   ["Reciprocal"], {}),
    "leaky_relu": (lambda x, a: np.where(x >= 0, x, x * np.asarray(a["alpha"], x.dtype)).astype(x.dtype),
                   lambda x, a: R.nn.leakyrelu(x, a["alpha"]), ["LeakyRelu"], {"alpha": Attr("float", 0.01)}),
    "hard_sigmoid": (lambda x, a: np.clip(x * np.asarray(a["alpha"], x.dtype) + np.asarray(a["beta"], x.dtype), 0, 1).astype(x.dtype),
                     lambda x, a: R.clip(R.add(R.multiply(x, relax.const(a["alpha"], x.ty.dtype)),
                                               relax.const(a["beta"], x.ty.dtype)), 0, 1),
                     ["HardSigmoid"], {"alpha": Attr("float", 0.2), "beta": Attr("float", 0.5)}),
    "hard_swish": (lambda x, a: (x * np.clip(x / np.asarray(6, x.dtype) + np.asarray(0.5, x.dtype), 0, 1)).astype(x.dtype),
                   lambda x, a: R.multiply(x, R.clip(R.add(R.divide(x, relax.const(6, x.ty.dtype)),
                                                           relax.const(0.5, x.ty.dtype)), 0, 1)),
                   ["HardSwish"], {}),
    "gelu": (lambda x, a: (0.5 * x * (1 + _erf(x / np.asarray(math.sqrt(2), x.dtype)))).astype(x.dtype)
             if a["approximate"] == "none" else
             (0.5 * x * (1 + np.tanh(np.asarray(math.sqrt(2 / math.pi), x.dtype) * (x + np.asarray(0.044715, x.dtype) * x ** 3)))).astype(x.dtype),
             lambda x, a: R.nn.gelu(x) if a["approximate"] == "none" else R.nn.gelu_tanh(x),
             ["Gelu"], {"approximate": Attr("str", "none")}),
    "silu": (lambda x, a: (x / (1 + np.exp(-x.astype(np.float64)))).astype(x.dtype), lambda x, a: R.nn.silu(x), [], {}),
    "floor": (lambda x, a: np.floor(x), lambda x, a: R.floor(x), ["Floor"], {}),
    "ceil": (lambda x, a: np.ceil(x), lambda x, a: R.ceil(x), ["Ceil"], {}),
    "sign": (lambda x, a: np.sign(x), lambda x, a: _sign_relax(x), ["Sign"], {}),
    "not": (lambda x, a: np.logical_not(x), lambda x, a: R.logical_not(x), ["Not"], {}),
    "bitwise_not": (lambda x, a: np.bitwise_not(x), lambda x, a: R.bitwise_not(x), ["BitwiseNot"], {}),
    "softplus": (lambda x, a: _softplus_np(x), _softplus_relax, ["Softplus"], {}),
    "softsign": (lambda x, a: (x / (1 + np.abs(x))).astype(x.dtype),
                 lambda x, a: R.divide(x, R.add(_c(1, x.ty.dtype), R.abs(x))), ["Softsign"], {}),
    "elu": (_elu_np, _elu_relax, ["Elu"], {"alpha": Attr("float", 1.0)}),
    "selu": (_selu_np, _selu_relax, ["Selu"],
             {"alpha": Attr("float", 1.67326319217681884765625), "gamma": Attr("float", 1.05070102214813232421875)}),
    "celu": (_celu_np, _celu_relax, ["Celu"], {"alpha": Attr("float", 1.0)}),
    "mish": (_mish_np, _mish_relax, ["Mish"], {}),
    "thresholded_relu": (lambda x, a: np.where(x > a["alpha"], x, 0).astype(x.dtype),
                         lambda x, a: R.where(R.greater(x, _c(a["alpha"], x.ty.dtype)), x, _c(0, x.ty.dtype)),
                         ["ThresholdedRelu"], {"alpha": Attr("float", 1.0)}),
    "shrink": (_shrink_np, _shrink_relax, ["Shrink"], {"bias": Attr("float", 0.0), "lambd": Attr("float", 0.5)}),
    "sin": (lambda x, a: np.sin(x), lambda x, a: R.sin(x), ["Sin"], {}),
    "cos": (lambda x, a: np.cos(x), lambda x, a: R.cos(x), ["Cos"], {}),
    "tan": (lambda x, a: np.tan(x), lambda x, a: R.tan(x), ["Tan"], {}),
    "asin": (lambda x, a: np.arcsin(x), lambda x, a: R.asin(x), ["Asin"], {}),
    "acos": (lambda x, a: np.arccos(x), lambda x, a: R.acos(x), ["Acos"], {}),
    "atan": (lambda x, a: np.arctan(x), lambda x, a: R.atan(x), ["Atan"], {}),
    "sinh": (lambda x, a: np.sinh(x), lambda x, a: _exp_pair(x, R.subtract), ["Sinh"], {}),
    "cosh": (lambda x, a: np.cosh(x), lambda x, a: _exp_pair(x, R.add), ["Cosh"], {}),
    "asinh": (lambda x, a: np.arcsinh(x), lambda x, a: R.asinh(x), ["Asinh"], {}),
    "acosh": (lambda x, a: np.arccosh(x), lambda x, a: R.acosh(x), ["Acosh"], {}),
    "atanh": (lambda x, a: np.arctanh(x), lambda x, a: R.atanh(x), ["Atanh"], {}),
}

# Dtypes each unary op takes (ONNX's type constraints); ops not listed take floats only.
UNARY_DTYPES: dict[str, tuple[str, ...]] = {
    "relu": FLOATS + SIGNED, "neg": FLOATS + SIGNED, "abs": NUMERIC, "sign": NUMERIC, "not": BOOL,
    "bitwise_not": INTS,
}


def _unary_infer(name: str):
    allowed = UNARY_DTYPES.get(name, FLOATS)

    def infer(types, attrs):
        check_dtypes(name, types[:1], allowed)
        return [types[0]]
    return infer


def _unary_reference(ref):
    def reference(xs, a):
        with np.errstate(all="ignore"):  # log(-1), arcsin(2), ... give nan like ONNX Runtime
            return ref(xs[0], a)
    return reference


# Functions TVM 0.27's CUDA code has no float16 version of (TVM: "Unresolved call tirx.asin"; nvcc:
# "identifier hatan is undefined"): on float16 operands they are computed in float32 in the kernel
# (as CUDA's own half math does for most functions). `pow`, `mod` and `round` (no `hnearbyint`) do the same.
VIA_FLOAT32 = ("acos", "acosh", "asin", "asinh", "atan", "atanh", "erf")


def via_float32(fn, xs):
    """`fn(*xs)` for Relax operands; float16 ones computed in float32, the result back in float16."""
    if str(xs[0].ty.dtype) != "float16":
        return fn(*xs)
    return R.astype(fn(*(R.astype(x, "float32") for x in xs)), "float16")


def _unary_op(name: str, ref, low, attrs) -> OpDef:
    if name in VIA_FLOAT32:
        lower = lambda ctx, xs, a, out, low=low: via_float32(lambda x: low(x, a), xs)  # noqa: E731
    else:
        lower = lambda ctx, xs, a, out, low=low: low(xs[0], a)  # noqa: E731
    return OpDef(
        name=name, kind="elementwise", attrs=attrs, infer=_unary_infer(name),
        activation=name in ("relu", "sigmoid", "hard_sigmoid", "hard_swish", "silu", "leaky_relu", "gelu", "tanh"),
        reference=_unary_reference(ref),
        lower=lower,
        summary=f"elementwise {name}")


def _onnx_unary(name: str):
    def convert(ctx, node, inputs, attrs):
        return ctx.emit(name, [inputs[0]], attrs)
    return convert


for _name, (_ref, _low, _onnx, _attrs) in UNARY.items():
    register_op(_unary_op(_name, _ref, _low, _attrs))
    if _onnx:
        onnx_op(*_onnx)(_onnx_unary(_name))


# ---- round (half to even, as ONNX), is_nan, is_inf ------------------------------------------

def nearbyint_te(ctx, x: relax.Expr) -> relax.Expr:
    """Round half to even, explicitly (`tirx.nearbyint`): TVM's `round` is half-to-even on LLVM
    targets but C `round` (half away from zero) on CUDA."""
    if str(x.ty.dtype) == "float16":  # CUDA has no half nearbyint
        return R.astype(nearbyint_te(ctx, ctx.bb.emit(R.astype(x, "float32"))), "float16")
    return ctx.bb.call_te(lambda t: te.compute(t.shape, lambda *i: tirx.nearbyint(t(*i)), name="nearbyint"), x)


register_op(OpDef(
    name="round", kind="elementwise", infer=_unary_infer("round"),
    reference=lambda xs, a: np.round(xs[0]),  # numpy rounds half to even
    lower=lambda ctx, xs, a, out: nearbyint_te(ctx, xs[0]),
    summary="round to the nearest integer, halves to even"))
onnx_op("Round")(_onnx_unary("round"))


def _to_bool_infer(name: str):
    def infer(types, attrs):
        check_dtypes(name, types[:1], FLOATS)
        return [TensorType("bool", types[0].shape)]
    return infer


register_op(OpDef(
    name="is_nan", kind="elementwise", infer=_to_bool_infer("is_nan"),
    reference=lambda xs, a: np.isnan(xs[0]), lower=lambda ctx, xs, a, out: R.isnan(xs[0]),
    summary="true where the input is NaN"))
onnx_op("IsNaN")(_onnx_unary("is_nan"))


def _is_inf_np(xs, a):
    x = xs[0]
    return np.isinf(x) & (((x > 0) & bool(a["detect_positive"])) | ((x < 0) & bool(a["detect_negative"])))


def _is_inf_relax(ctx, xs, a, out):
    x = xs[0]
    zero = _c(0, x.ty.dtype)
    pos, neg = a["detect_positive"], a["detect_negative"]
    if pos and neg:
        return R.isinf(x)
    if pos:
        return R.logical_and(R.isinf(x), R.greater(x, zero))
    if neg:
        return R.logical_and(R.isinf(x), R.less(x, zero))
    return R.less(x, x)  # all false (nan < nan is false too)


register_op(OpDef(
    name="is_inf", kind="elementwise", infer=_to_bool_infer("is_inf"), reference=_is_inf_np, lower=_is_inf_relax,
    attrs={"detect_negative": Attr("int", 1), "detect_positive": Attr("int", 1)},
    summary="true where the input is +inf and/or -inf"))
onnx_op("IsInf")(_onnx_unary("is_inf"))


# ---- binary (numpy broadcasting) -------------------------------------------------------------

def _same_dtype_broadcast(types, attrs):
    if len({t.dtype for t in types}) != 1:
        raise VerifyError(f"operand dtypes differ: {', '.join(str(t) for t in types)}")
    return broadcast_infer(types, attrs)


def is_float_np(a: np.ndarray) -> bool:
    return a.dtype.kind == "f"


def _int_div(a, b):
    """ONNX integer Div truncates toward zero (exact for all of int64; x / 0 gives 0 here)."""
    with np.errstate(all="ignore"):
        q = np.floor_divide(a, b)
        inexact = (np.remainder(a, b) != 0) & ((a < 0) != (b < 0))
    return np.where(inexact, q + 1, q).astype(a.dtype)


def _div_np(a, b):
    if is_float_np(a):
        with np.errstate(all="ignore"):
            return (a / b).astype(a.dtype)
    return _int_div(a, b)


# name: (numpy fn, relax fn, ONNX op types (two inputs), operand dtypes)
BINARY: dict[str, tuple] = {
    "add": (np.add, lambda a, b: R.add(a, b), ["Add"], NUMERIC),
    "sub": (np.subtract, lambda a, b: R.subtract(a, b), ["Sub"], NUMERIC),
    "mul": (np.multiply, lambda a, b: R.multiply(a, b), ["Mul"], NUMERIC),
    "div": (_div_np, lambda a, b: R.divide(a, b), ["Div"], NUMERIC),
    "min": (np.minimum, lambda a, b: R.minimum(a, b), [], NUMERIC),  # ONNX Min/Max are n-ary: imported below
    "max": (np.maximum, lambda a, b: R.maximum(a, b), [], NUMERIC),
    "and": (np.logical_and, lambda a, b: R.logical_and(a, b), ["And"], BOOL),
    "or": (np.logical_or, lambda a, b: R.logical_or(a, b), ["Or"], BOOL),
    "xor": (np.logical_xor, lambda a, b: R.logical_xor(a, b), ["Xor"], BOOL),
    "bitwise_and": (np.bitwise_and, lambda a, b: R.bitwise_and(a, b), ["BitwiseAnd"], INTS),
    "bitwise_or": (np.bitwise_or, lambda a, b: R.bitwise_or(a, b), ["BitwiseOr"], INTS),
    "bitwise_xor": (np.bitwise_xor, lambda a, b: R.bitwise_xor(a, b), ["BitwiseXor"], INTS),
}


def _binary_infer(name: str, allowed: tuple[str, ...]):
    def infer(types, attrs):
        check_dtypes(name, types, allowed)
        return _same_dtype_broadcast(types, attrs)
    return infer


def _binary_op(name, ref, low, allowed) -> OpDef:
    def reference(xs, a, ref=ref):
        with np.errstate(all="ignore"):  # integer overflow wraps, as in ONNX Runtime
            return np.asarray(ref(xs[0], xs[1])).astype(xs[0].dtype)
    return OpDef(name=name, kind="elementwise", num_inputs=(2, 2), infer=_binary_infer(name, allowed),
                 reference=reference, commutative=name in ("add", "mul", "min", "max"),
                 lower=lambda ctx, xs, a, out, low=low: low(xs[0], xs[1]),
                 summary=f"broadcasting {name}")


def _onnx_binary(name: str):
    def convert(ctx, node, inputs, attrs):
        return ctx.emit(name, inputs[:2])
    return convert


for _name, (_ref, _low, _onnx, _allowed) in BINARY.items():
    register_op(_binary_op(_name, _ref, _low, _allowed))
    if _onnx:
        onnx_op(*_onnx)(_onnx_binary(_name))


# ---- comparisons: bool results -------------------------------------------------------------------
# name: (numpy fn, relax fn, ONNX op type, operand dtypes)
def _equal_relax(a, b):
    if str(a.ty.dtype) == "bool":  # TVM's equal on bool miscompiles (a float compare of i1)
        return R.logical_not(R.logical_xor(a, b))
    return R.equal(a, b)


COMPARE: dict[str, tuple] = {
    "equal": (np.equal, _equal_relax, "Equal", NUMERIC + BOOL),
    "less": (np.less, lambda a, b: R.less(a, b), "Less", NUMERIC),
    "less_equal": (np.less_equal, lambda a, b: R.less_equal(a, b), "LessOrEqual", NUMERIC),
    "greater": (np.greater, lambda a, b: R.greater(a, b), "Greater", NUMERIC),
    "greater_equal": (np.greater_equal, lambda a, b: R.greater_equal(a, b), "GreaterOrEqual", NUMERIC),
}


def _compare_infer(name: str, allowed: tuple[str, ...]):
    def infer(types, attrs):
        check_dtypes(name, types, allowed)
        out = _same_dtype_broadcast(types, attrs)[0]
        return [TensorType("bool", out.shape)]
    return infer


for _name, (_ref, _low, _onnx_type, _allowed) in COMPARE.items():
    register_op(OpDef(name=_name, kind="elementwise", num_inputs=(2, 2), infer=_compare_infer(_name, _allowed),
                      reference=lambda xs, a, ref=_ref: ref(xs[0], xs[1]),
                      lower=lambda ctx, xs, a, out, low=_low: low(xs[0], xs[1]),
                      summary=f"broadcasting {_name}, bool result"))
    onnx_op(_onnx_type)(_onnx_binary(_name))


# ---- n-ary ONNX Min / Max / Sum / Mean: balanced trees of binary ops ---------------------------

def _onnx_nary(name: str, mean: bool = False):
    """A balanced tree of binary ops (depth log2 of the input count, so 10,000 inputs are 14
    levels, not a chain of 10,000); a single input is the result itself."""
    def convert(ctx, node, inputs, attrs):
        values = [v for v in inputs if v is not None]
        if not values:
            raise ctx.fail("needs at least one input")
        if mean and not is_float(values[0].type.dtype):
            raise ctx.fail(f"Mean takes float tensors, got {values[0].type}")
        result = balanced_tree(values, 2, lambda pair: ctx.emit1(name, pair))
        if mean and len(values) > 1:
            result = ctx.emit1("div", [result, ctx.const(np.asarray(len(values), result.type.np_dtype))])
        return [result]
    return convert


onnx_op("Min")(_onnx_nary("min"))
onnx_op("Max")(_onnx_nary("max"))
onnx_op("Sum")(_onnx_nary("add"))
onnx_op("Mean")(_onnx_nary("add", mean=True))


# ---- pow: the exponent may have another dtype --------------------------------------------------

def _pow_infer(types, attrs):
    check_dtypes("pow", types, NUMERIC)
    return [TensorType(types[0].dtype, broadcast_infer(types, attrs)[0].shape)]


def _pow_np(xs, a):
    x, y = xs
    with np.errstate(all="ignore"):
        if is_float_np(x):
            return np.power(x, y.astype(x.dtype)).astype(x.dtype)
        # ONNX Runtime: integer bases are raised in double precision, then truncated
        r = np.power(_f64(x), _f64(y))
        return np.where(np.isfinite(r), np.trunc(r), 0).astype(x.dtype)


def _pow_relax(ctx, xs, a, out):
    x, y = xs
    dt, ydt = str(x.ty.dtype), str(y.ty.dtype)
    if dt == "float16":  # CUDA has no half pow (`hpow`): computed in float32
        return R.astype(R.power(R.astype(x, "float32"), R.astype(y, "float32")), dt)
    if dt.startswith("float"):
        return R.power(x, y if ydt == dt else R.astype(y, dt))
    xf = x if dt == "float64" else R.astype(x, "float64")
    yf = y if ydt == "float64" else R.astype(y, "float64")
    return R.astype(R.power(xf, yf), dt)


register_op(OpDef(name="pow", kind="elementwise", num_inputs=(2, 2), infer=_pow_infer, reference=_pow_np,
                  lower=_pow_relax, summary="x ** y broadcasting; the result has x's dtype (y is cast)"))


@onnx_op("Pow")
def _onnx_pow(ctx, node, inputs, attrs):
    x, y = inputs[0], inputs[1]
    if y.is_const and y.type.dtype != x.type.dtype and is_float(x.type.dtype):
        y = ctx.const(y.const_value().astype(x.type.np_dtype))  # e.g. a float base, an i64 exponent 2
    return ctx.emit("pow", [x, y])


# ---- mod -----------------------------------------------------------------------------------------
# fmod=0: the result takes the divisor's sign (Python's %): integers, and floats from opset 28 (with
# its special cases: x % +-inf is x or the infinity, a zero result takes the divisor's sign).
# fmod=1: C fmod, the dividend's sign.

def _mod_infer(types, attrs):
    check_dtypes("mod", types, NUMERIC)
    if attrs["fmod"] not in (0, 1):
        raise VerifyError(f"mod: fmod must be 0 or 1, got {attrs['fmod']}")
    return _same_dtype_broadcast(types, attrs)


def _mod_np(xs, a):
    x, y = xs
    with np.errstate(all="ignore"):
        return (np.fmod(x, y) if a["fmod"] else np.mod(x, y)).astype(x.dtype)


def _mod_relax(ctx, xs, a, out):
    x, y = xs
    dt = str(x.ty.dtype)
    if dt == "float16":  # TVM's Mod takes 32- and 64-bit floats only
        return R.astype(ctx.bb.emit(_mod_relax(ctx, [ctx.bb.emit(R.astype(v, "float32")) for v in xs], a, out)), dt)
    if a["fmod"]:
        return R.mod(x, y)  # C fmod for floats, truncated remainder for integers
    if not dt.startswith("float"):
        return R.floor_mod(x, y)
    zero = _c(0, dt)
    r = ctx.bb.emit(R.mod(x, y))
    r = ctx.bb.emit(R.where(R.logical_and(R.not_equal(r, zero), R.logical_xor(R.less(r, zero), R.less(y, zero))),
                            R.add(r, y), r))
    return R.where(R.equal(r, zero), R.where(R.less(y, zero), _c(-0.0, dt), zero), r)


register_op(OpDef(name="mod", kind="elementwise", num_inputs=(2, 2), infer=_mod_infer, reference=_mod_np,
                  lower=_mod_relax, attrs={"fmod": Attr("int", 0)},
                  summary="remainder: fmod=0 takes the divisor's sign, fmod=1 the dividend's (C fmod)"))


@onnx_op("Mod")
def _onnx_mod(ctx, node, inputs, attrs):
    return ctx.emit("mod", inputs[:2], {"fmod": attrs.get("fmod", 0)})


# ---- bitshift ------------------------------------------------------------------------------------
# Unsigned integers (opset 11) and signed ones (opset 28: the right shift is arithmetic). A shift
# by a negative amount or by the bit width or more gives what the sign fill alone gives: -1 for a
# right shift of a negative value, else 0 (explicit, since LLVM leaves such shifts undefined).

def _bitshift_infer(types, attrs):
    check_dtypes("bitshift", types, INTS)
    if attrs["direction"] not in ("LEFT", "RIGHT"):
        raise VerifyError(f"bitshift: direction must be LEFT or RIGHT, got {attrs['direction']!r}")
    return _same_dtype_broadcast(types, attrs)


def _bitshift_np(xs, a):
    x, y = xs
    bits = x.dtype.itemsize * 8
    out_of_range = (y < 0) | (y >= bits)
    safe = np.where(out_of_range, 0, y).astype(x.dtype)
    if a["direction"] == "LEFT":
        return np.where(out_of_range, 0, np.left_shift(x, safe)).astype(x.dtype)
    fill = np.where(x < 0, -1, 0) if x.dtype.kind == "i" else 0
    return np.where(out_of_range, fill, np.right_shift(x, safe)).astype(x.dtype)


def _bitshift_relax(ctx, xs, a, out):
    x, y = xs
    dt = str(x.ty.dtype)
    bits = int(np.dtype(dt).itemsize * 8)
    zero = _c(0, dt)
    out_of_range = R.greater_equal(y, _c(bits, dt))
    if dt.startswith("int"):
        out_of_range = R.logical_or(out_of_range, R.less(y, zero))
    out_of_range = ctx.bb.emit(out_of_range)
    safe = R.where(out_of_range, zero, y)
    if a["direction"] == "LEFT":
        return R.where(out_of_range, zero, R.left_shift(x, safe))
    fill = R.where(R.less(x, zero), _c(-1, dt), zero) if dt.startswith("int") else zero
    return R.where(out_of_range, fill, R.right_shift(x, safe))


register_op(OpDef(
    name="bitshift", kind="elementwise", num_inputs=(2, 2), infer=_bitshift_infer,
    reference=_bitshift_np, lower=_bitshift_relax,
    attrs={"direction": Attr("str", "LEFT")},
    summary="integer shift left or right (arithmetic right shift for signed types)"))


@onnx_op("BitShift")
def _onnx_bitshift(ctx, node, inputs, attrs):
    if "direction" not in attrs:
        raise ctx.fail("needs the 'direction' attribute")
    return ctx.emit("bitshift", inputs[:2], {"direction": attrs["direction"]})


# ---- clip -----------------------------------------------------------------------------------------

def _clip_bounds(dtype: str, lo: float, hi: float):
    """The bounds as numpy scalars of `dtype`; integer bounds saturate to the dtype's range."""
    dt = DTYPES[dtype]
    if dt.kind == "f":
        return dt.type(lo), dt.type(hi)
    info = np.iinfo(dt)

    def to_int(v, ceil):
        if math.isnan(v):
            raise VerifyError("clip: a NaN bound on an integer tensor")
        if v <= info.min:
            return dt.type(info.min)
        if v >= info.max:
            return dt.type(info.max)
        return dt.type(math.ceil(v) if ceil else math.floor(v))
    return to_int(lo, True), to_int(hi, False)


def _clip_infer(types, attrs):
    check_dtypes("clip", types[:1], NUMERIC)
    return [types[0]]


def _clip_np(xs, a):
    x = xs[0]
    lo, hi = _clip_bounds(TensorType.of(x).dtype, a["min"], a["max"])
    return np.minimum(np.maximum(x, lo), hi)  # min > max gives max, like ONNX Runtime


def _clip_relax(ctx, xs, a, out):
    x = xs[0]
    lo, hi = _clip_bounds(out[0].dtype, a["min"], a["max"])
    dt = x.ty.dtype
    return R.minimum(R.maximum(x, _c(lo.item(), dt)), _c(hi.item(), dt))


register_op(OpDef(name="clip", kind="elementwise", activation=True, infer=_clip_infer, reference=_clip_np, lower=_clip_relax,
                  attrs={"min": Attr("float", -math.inf), "max": Attr("float", math.inf)},
                  summary="min(max(x, min), max); integer tensors too (bounds saturate to the dtype)"))


@onnx_op("Clip")
def _onnx_clip(ctx, node, inputs, attrs):
    """opset < 11: `min`/`max` attributes. opset 11+: optional scalar inputs. Constant bounds become
    attributes (when a float holds them exactly); a bound that is another tensor becomes a max/min
    op, applied in ONNX Runtime's order (max with min first, then min with max)."""
    x = inputs[0]
    if ctx.opset < 11:
        return ctx.emit("clip", [x], {"min": attrs.get("min", -3.4028234663852886e38),
                                      "max": attrs.get("max", 3.4028234663852886e38)})
    bounds = {}
    for i, name in ((1, "min"), (2, "max")):
        v = inputs[i] if len(inputs) > i else None
        if v is None:
            continue
        if v.type.size != 1:
            raise ctx.fail(f"'{name}' must be a scalar, got {v.type}")
        if v.type.dtype != x.type.dtype:
            raise ctx.fail(f"'{name}' is {v.type}, the input is {x.type}")
        value = v.const_value().reshape(()).item() if v.is_const else None
        bounds[name] = float(value) if value is not None and float(value) == value else v
    if all(isinstance(b, float) for b in bounds.values()):
        return ctx.emit("clip", [x], bounds)
    result = x
    for name, b in bounds.items():
        if isinstance(b, float):
            result = ctx.emit1("clip", [result], {name: b})
        else:
            result = ctx.emit1("max" if name == "min" else "min", [result, b])
    return [result]


# ---- activations that fusion attaches to conv / matmul / dense ------------------------------
# A fused node carries `activation` (a name below, "" for none) and `activation_params`.
# name: (numpy fn(x, params), relax fn(x, params), number of params)
ACTIVATIONS: dict[str, tuple] = {
    "relu": (lambda x, p: np.maximum(x, 0).astype(x.dtype), lambda x, p: R.nn.relu(x), 0),
    "clip": (lambda x, p: np.clip(x, p[0], p[1]).astype(x.dtype), lambda x, p: R.clip(x, p[0], p[1]), 2),
    "sigmoid": (lambda x, p: UNARY["sigmoid"][0](x, {}), lambda x, p: R.sigmoid(x), 0),
    "hard_sigmoid": (lambda x, p: UNARY["hard_sigmoid"][0](x, {"alpha": p[0], "beta": p[1]}),
                     lambda x, p: UNARY["hard_sigmoid"][1](x, {"alpha": p[0], "beta": p[1]}), 2),
    "hard_swish": (lambda x, p: UNARY["hard_swish"][0](x, {}), lambda x, p: UNARY["hard_swish"][1](x, {}), 0),
    "silu": (lambda x, p: UNARY["silu"][0](x, {}), lambda x, p: R.nn.silu(x), 0),
    "leaky_relu": (lambda x, p: UNARY["leaky_relu"][0](x, {"alpha": p[0]}), lambda x, p: R.nn.leakyrelu(x, p[0]), 1),
    "gelu": (lambda x, p: UNARY["gelu"][0](x, {"approximate": "none"}), lambda x, p: R.nn.gelu(x), 0),
    "gelu_tanh": (lambda x, p: UNARY["gelu"][0](x, {"approximate": "tanh"}), lambda x, p: R.nn.gelu_tanh(x), 0),
    "tanh": (lambda x, p: np.tanh(x), lambda x, p: R.tanh(x), 0),
}
ACTIVATION_ATTRS = {"activation": Attr("str", ""), "activation_params": Attr("floats", [])}


def check_activation(attrs: dict) -> None:
    name, params = attrs.get("activation", ""), attrs.get("activation_params", [])
    if name == "":
        if params:
            raise VerifyError("activation_params given without an activation")
        return
    if name not in ACTIVATIONS:
        raise VerifyError(f"unknown fused activation '{name}' (known: {', '.join(ACTIVATIONS)})")
    if len(params) != ACTIVATIONS[name][2]:
        raise VerifyError(f"activation '{name}' takes {ACTIVATIONS[name][2]} params, got {len(params)}")


def apply_activation_np(x: np.ndarray, attrs: dict) -> np.ndarray:
    name = attrs.get("activation", "")
    return x if name == "" else ACTIVATIONS[name][0](x, attrs["activation_params"])


def apply_activation_relax(x, attrs: dict):
    """Wraps a relax expr (unemitted) with the fused activation, if any."""
    name = attrs.get("activation", "")
    return x if name == "" else ACTIVATIONS[name][1](x, attrs["activation_params"])


@onnx_op("Swish")
def _onnx_swish(ctx, node, inputs, attrs):
    """Swish (opset 24): x * sigmoid(alpha * x); silu when alpha is 1."""
    x, alpha = inputs[0], attrs.get("alpha", 1.0)
    if alpha == 1.0:
        return ctx.emit("silu", [x])
    scaled = ctx.emit1("mul", [x, ctx.const(np.asarray(alpha, x.type.np_dtype))])
    return ctx.emit("mul", [x, ctx.emit1("sigmoid", [scaled])])

