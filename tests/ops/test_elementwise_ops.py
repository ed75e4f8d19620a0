"""Elementwise ops against ONNX Runtime: reference interpreter and compiled host module."""

import numpy as np
import pytest

from onnx_util import check_model, node_model

rng = np.random.default_rng(0)
X = rng.standard_normal((2, 3, 4)).astype(np.float32)
POS = (np.abs(X) + 0.1).astype(np.float32)

UNARY_CASES = [
    ("Relu", X, {}), ("Sigmoid", X, {}), ("Tanh", X, {}), ("Exp", X, {}), ("Log", POS, {}),
    ("Sqrt", POS, {}), ("Erf", X, {}), ("Neg", X, {}), ("Abs", X, {}), ("Reciprocal", POS, {}),
    ("LeakyRelu", X, {"alpha": 0.2}), ("HardSigmoid", X, {"alpha": 0.3, "beta": 0.4}),
    ("HardSwish", X * 4, {}),
]


@pytest.mark.parametrize("op,x,attrs", UNARY_CASES, ids=[c[0] for c in UNARY_CASES])
def test_unary(op, x, attrs):
    check_model(node_model(op, {"x": x}, **attrs), {"x": x})


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_gelu(approximate):
    check_model(node_model("Gelu", {"x": X}, opset=20, approximate=approximate), {"x": X})


@pytest.mark.parametrize("op", ["Add", "Sub", "Mul", "Div"])
def test_binary_broadcast(op):
    b = (rng.standard_normal((3, 1)) + 3).astype(np.float32)
    check_model(node_model(op, {"x": X}, {"b": b}), {"x": X})


def test_integer_div_truncates_toward_zero():
    a = np.array([7, -7, 7, -7], dtype=np.int64)
    b = np.array([2, 2, -2, -2], dtype=np.int64)
    check_model(node_model("Div", {"a": a, "b": b}), {"a": a, "b": b})
