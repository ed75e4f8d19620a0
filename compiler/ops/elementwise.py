"""Elementwise ops: unary math and activations, broadcasting binary ops, comparisons, logic,
where, cast and clip. All have kind `elementwise` (fusable into one kernel)."""

from __future__ import annotations

import math

import numpy as np
from tvm import relax, topi

from ..ir import DTYPES, TensorType, is_float
from .base import Attr, OpDef, broadcast_infer, register_op, same_as_first, onnx_op
from ..errors import VerifyError

R = relax.op


def tvm_dtype(name: str) -> str:
    return DTYPES[name].name


def _erf(x: np.ndarray) -> np.ndarray:
    return np.vectorize(math.erf, otypes=[np.float64])(x).astype(x.dtype)


def _float_infer(types, attrs):
    if not is_float(types[0].dtype):
        raise VerifyError(f"expects a float tensor, got {types[0]}")
    return [types[0]]


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
}


def _unary_op(name: str, ref, low, attrs) -> OpDef:
    return OpDef(
        name=name, kind="elementwise", attrs=attrs, infer=_float_infer if name not in ("neg", "abs", "relu") else same_as_first,
        reference=lambda xs, a, ref=ref: ref(xs[0], a),
        lower=lambda ctx, xs, a, out, low=low: low(xs[0], a),
        summary=f"elementwise {name}")


def _onnx_unary(name: str):
    def convert(ctx, node, inputs, attrs):
        return ctx.emit(name, [inputs[0]], attrs)
    return convert


for _name, (_ref, _low, _onnx, _attrs) in UNARY.items():
    register_op(_unary_op(_name, _ref, _low, _attrs))
    if _onnx:
        onnx_op(*_onnx)(_onnx_unary(_name))


# ---- binary (numpy broadcasting) -------------------------------------------------------------

def _same_dtype_broadcast(types, attrs):
    if len({t.dtype for t in types}) != 1:
        raise VerifyError(f"operand dtypes differ: {', '.join(str(t) for t in types)}")
    return broadcast_infer(types, attrs)


def _int_div(a, b):
    # ONNX integer Div truncates toward zero
    return (np.trunc(a.astype(np.float64) / b)).astype(a.dtype) if not is_float_np(a) else a / b


def is_float_np(a: np.ndarray) -> bool:
    return a.dtype.kind == "f"


BINARY: dict[str, tuple] = {
    "add": (np.add, R.add, ["Add"]),
    "sub": (np.subtract, R.subtract, ["Sub"]),
    "mul": (np.multiply, R.multiply, ["Mul"]),
    "div": (lambda a, b: (a / b).astype(a.dtype) if is_float_np(a) else _int_div(a, b), R.divide, ["Div"]),
    "pow": (lambda a, b: np.power(a, b).astype(a.dtype), R.power, []),
    "min": (np.minimum, R.minimum, []),
    "max": (np.maximum, R.maximum, []),
}


def _binary_op(name, ref, low) -> OpDef:
    return OpDef(name=name, kind="elementwise", num_inputs=(2, 2), infer=_same_dtype_broadcast,
                 reference=lambda xs, a, ref=ref: np.asarray(ref(xs[0], xs[1])).astype(xs[0].dtype),
                 lower=lambda ctx, xs, a, out, low=low: low(xs[0], xs[1]),
                 summary=f"broadcasting {name}")


def _onnx_binary(name: str):
    def convert(ctx, node, inputs, attrs):
        return ctx.emit(name, inputs[:2])
    return convert


for _name, (_ref, _low, _onnx) in BINARY.items():
    register_op(_binary_op(_name, _ref, _low))
    if _onnx:
        onnx_op(*_onnx)(_onnx_binary(_name))


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
