"""Elementwise ops against ONNX Runtime: reference interpreter and compiled host module."""

import tempfile

import numpy as np
import pytest

import edgec
from onnx import helper
from onnx_util import check_model, make_model, node_model

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



# ---- more ops: many cases per model (one compile each) -------------------------------------------
# A mismatch names the output `<OnnxOp>_<case index>`.
from onnx_util import multi_node_model  # noqa: E402

HALVES = np.array([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5, -0.49, 0.51, 2.4999, -7.0], dtype=np.float32)
UNIT = np.clip(X / 3, -0.95, 0.95).astype(np.float32)  # inside (-1, 1)
WIDE = (X * 12).astype(np.float32)                       # large |x|, for overflow-safe formulas
SPECIAL = np.array([1.0, np.nan, np.inf, -np.inf, -0.0], np.float32)


def check_against_onnx_reference(model, feeds):
    """For opsets ONNX Runtime lacks: the onnx package's reference implementation is the oracle;
    float results must match bit for bit, signed zeros included."""
    from onnx.reference import ReferenceEvaluator
    with np.errstate(all="ignore"):  # nan results are expected
        expected = dict(zip([o.name for o in model.graph.output], ReferenceEvaluator(model).run(None, feeds)))
    results = {"interpreter": edgec.interpret(edgec.import_onnx(model), feeds)}
    with tempfile.TemporaryDirectory() as d:
        results["compiled"] = edgec.compile(model, target="host", output=f"{d}/out").artifact.run(feeds)
    for what, actual in results.items():
        assert set(actual) == set(expected)
        for name, e in expected.items():
            np.testing.assert_array_equal(actual[name], e, err_msg=f"{what} {name}")
            if e.dtype.kind == "f":
                np.testing.assert_array_equal(np.signbit(actual[name]), np.signbit(e), err_msg=f"{what} {name} sign")


def check_cases(cases, opset=17):
    model, feeds = multi_node_model(cases, opset)
    return check_model(model, feeds)


def test_more_unary_float():
    check_cases([
        ("Floor", {"x": X * 3}, {}, {}), ("Ceil", {"x": X * 3}, {}, {}),
        ("Round", {"x": HALVES}, {}, {}), ("Round", {"x": X * 3}, {}, {}),
        ("Sign", {"x": np.array([-2.0, 0.0, 3.5, -0.0], np.float32)}, {}, {}),
        ("Softplus", {"x": WIDE}, {}, {}), ("Softsign", {"x": X}, {}, {}),
        ("Elu", {"x": X}, {}, {}), ("Elu", {"x": X}, {}, {"alpha": 0.5}), ("Selu", {"x": X}, {}, {}),
        ("Selu", {"x": X}, {}, {"alpha": 2.0, "gamma": 0.5}), ("Celu", {"x": X}, {}, {"alpha": 2.0}),
        ("Celu", {"x": X}, {}, {}),
        ("Mish", {"x": WIDE}, {}, {}),
        ("ThresholdedRelu", {"x": X * 2}, {}, {}), ("ThresholdedRelu", {"x": X}, {}, {"alpha": 0.3}),
        ("Shrink", {"x": X}, {}, {}), ("Shrink", {"x": X}, {}, {"bias": 0.3, "lambd": 0.7}),
        ("Sin", {"x": X}, {}, {}), ("Cos", {"x": X}, {}, {}), ("Tan", {"x": UNIT}, {}, {}),
        ("Asin", {"x": UNIT}, {}, {}), ("Acos", {"x": UNIT}, {}, {}), ("Atan", {"x": X}, {}, {}),
        ("Sinh", {"x": X}, {}, {}), ("Cosh", {"x": X}, {}, {}), ("Asinh", {"x": X}, {}, {}),
        ("Acosh", {"x": POS + 1}, {}, {}), ("Atanh", {"x": UNIT}, {}, {}),
        ("IsNaN", {"x": SPECIAL}, {}, {}), ("IsInf", {"x": SPECIAL}, {}, {}),
        ("IsInf", {"x": SPECIAL}, {}, {"detect_negative": 0}), ("IsInf", {"x": SPECIAL}, {}, {"detect_positive": 0}),
        ("IsInf", {"x": SPECIAL}, {}, {"detect_positive": 0, "detect_negative": 0}),
        ("Not", {"x": X > 0}, {}, {}),
    ], opset=18)


def test_celu_opset12():
    check_cases([("Celu", {"x": X}, {}, {"alpha": 0.7}), ("Softplus", {"x": X}, {}, {})], opset=12)


def test_round_is_half_to_even():
    # independent of ONNX Runtime: the defining property
    out = check_cases([("Round", {"x": HALVES}, {}, {})])["Round_0"]
    assert out[:8].tolist() == [-4.0, -2.0, -2.0, -0.0, 0.0, 2.0, 2.0, 4.0]


def test_unary_integers():
    check_cases([
        ("Relu", {"x": np.array([-3, 0, 7, -128, 127], np.int8)}, {}, {}),
        ("Relu", {"x": np.array([-3, 0, 7], np.int32)}, {}, {}),
        ("Neg", {"x": np.array([-3, 0, 7], np.int32)}, {}, {}),
        ("Abs", {"x": np.array([-3, 0, 7], np.int64)}, {}, {}),
        ("Abs", {"x": np.array([3, 0, 255], np.uint8)}, {}, {}),
        ("Sign", {"x": np.array([-3, 0, 7], np.int32)}, {}, {}),
        ("Sign", {"x": np.array([-3, 0, 7], np.int8)}, {}, {}),
        ("Sign", {"x": np.array([3, 0, 255], np.uint8)}, {}, {}),
        ("Abs", {"x": np.array([-128, -1, 127], np.int8)}, {}, {}),  # -128 wraps to -128
        ("Neg", {"x": np.array([-128, -1, 127], np.int8)}, {}, {}),
    ])


def _untyped_model(op_type, x, opset=17, **attrs):
    """A model that ONNX shape inference would refuse (so make_model cannot build it)."""
    from onnx import helper
    from onnx_util import NP_TO_ONNX
    node = helper.make_node(op_type, ["x"], ["y"], name="bad_node", **attrs)
    graph = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", NP_TO_ONNX[x.dtype], x.shape)],
                              [helper.make_tensor_value_info("y", NP_TO_ONNX[x.dtype], x.shape)])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


@pytest.mark.parametrize("op", ["Sigmoid", "Exp", "Floor", "Round", "Sin", "Softplus", "Elu", "IsNaN", "Gelu"])
def test_float_ops_refuse_integers(op):
    import edgec
    from edgec.errors import EdgecError
    x = np.array([1, 2, 3], np.int32)
    with pytest.raises(EdgecError, match="bad_node.*float tensors"):
        edgec.import_onnx(_untyped_model(op, x, opset=20))


# ---- binary ops on integers, n-ary ops, comparisons, logic ------------------------------------

INT_A = np.array([[7, -7, 0, 100], [-100, 3, -1, 2]])
INT_B = np.array([[2, 2, 5, -3], [7, -2, 1, -2]])


def test_integer_binary():
    cases = []
    for dtype in [np.int32, np.int64]:
        a, b = INT_A.astype(dtype), INT_B.astype(dtype)
        for op in ["Add", "Sub", "Mul", "Div", "Min", "Max"]:
            cases.append((op, {"a": a, "b": b}, {}, {}))
            cases.append((op, {"a": a}, {"b": b[1].copy()}, {}))  # broadcasting a constant row
    a8, b8 = np.array([1, 200, 30, 4], np.uint8), np.array([3, 5, 7, 11], np.uint8)
    cases += [(op, {"a": a8, "b": b8}, {}, {}) for op in ["Add", "Mul", "Sub", "Div", "Min", "Max"]]
    i8a, i8b = np.array([1, -100, 30, -7], np.int8), np.array([3, 5, -7, 2], np.int8)
    cases += [(op, {"a": i8a, "b": i8b}, {}, {}) for op in ["Add", "Sub", "Div", "Max"]]
    check_cases(cases)


def test_nary():
    a = rng.standard_normal((2, 3, 4)).astype(np.float32)
    b = rng.standard_normal((3, 1)).astype(np.float32)
    c = rng.standard_normal((4,)).astype(np.float32)
    cases = []
    for op in ["Min", "Max", "Sum", "Mean"]:
        cases += [(op, {"a": a, "b": b, "c": c}, {}, {}), (op, {"a": a}, {}, {}), (op, {"a": a, "c": c}, {}, {})]
    ia, ib = INT_A.astype(np.int32), INT_B.astype(np.int32)
    cases += [(op, {"a": ia, "b": ib}, {"c": np.array([5, -5, 0, 1], np.int32)}, {}) for op in ["Min", "Max"]]
    check_cases(cases)


def test_compare_and_logic():
    cases = []
    for dtype in [np.float32, np.int64, np.int32, np.uint8, np.int8]:
        a = np.array([[1, 2, 3], [3, 2, 1]], dtype)
        b = np.array([2, 2, 2], dtype)
        cases += [(op, {"a": a, "b": b}, {}, {}) for op in
                  ["Equal", "Less", "LessOrEqual", "Greater", "GreaterOrEqual"]]
    ba = np.array([[True, False, True, False]] * 2)
    bb = np.array([[True], [False]])
    cases += [(op, {"a": ba, "b": bb}, {}, {}) for op in ["Equal", "And", "Or", "Xor"]]
    check_cases(cases)


def test_bitwise():
    cases = []
    for dtype in [np.int32, np.int64, np.uint8, np.int8, np.uint16]:
        info = np.iinfo(dtype)
        a = np.array([[0, 1, 5, info.max], [info.min, 12, 7, 3]], dtype)
        b = np.array([info.max, 6, 3, 1], dtype)
        cases += [(op, {"a": a, "b": b}, {}, {}) for op in ["BitwiseAnd", "BitwiseOr", "BitwiseXor"]]
        cases.append(("BitwiseNot", {"a": a}, {}, {}))
    check_cases(cases, opset=18)
    # a chain through the -O2 pipeline (TVM fuses it into one kernel)
    a, b = np.arange(12, dtype=np.int32).reshape(3, 4) * 37, np.array([5, -1, 255, 1 << 20], np.int32)
    model = make_model([helper.make_node("BitwiseAnd", ["a", "b"], ["t"]), helper.make_node("BitwiseNot", ["t"], ["u"]),
                        helper.make_node("BitwiseXor", ["u", "a"], ["y"])], {"a": a}, ["y"], {"b": b}, opset=18)
    check_model(model, {"a": a}, level=2)


# ---- mod, pow, bitshift ----------------------------------------------------------------------------

def test_mod():
    cases = []
    for dtype in [np.int32, np.int64, np.int8]:
        a = np.array([7, -7, 7, -7, 0, 5, -6], dtype)
        b = np.array([3, 3, -3, -3, 4, 5, 4], dtype)
        cases += [("Mod", {"a": a, "b": b}, {}, {"fmod": fmod}) for fmod in (0, 1)]
    au, bu = np.array([7, 200, 0, 255], np.uint8), np.array([3, 7, 4, 16], np.uint8)
    cases += [("Mod", {"a": au, "b": bu}, {}, {"fmod": fmod}) for fmod in (0, 1)]
    a = np.array([7.5, -7.5, 7.5, -7.5, 0.25], np.float32)
    b = np.array([2.0, 2.0, -2.0, -2.0, 0.5], np.float32)
    cases.append(("Mod", {"a": a, "b": b}, {}, {"fmod": 1}))
    check_cases(cases)


def test_mod_float_fmod0_opset28():
    """Opset 28 allows fmod=0 on floats (Python's %, with special cases); ONNX Runtime refuses it,
    so the onnx package's reference implementation is the oracle."""
    inf, nan = np.inf, np.nan
    a = np.array([7.5, -7.5, 7.5, -7.5, 0.0, -0.0, 0.0, -5, 5, -5, inf, 3, nan, 1e30, 2.5], np.float32)
    b = np.array([2.0, 2.0, -2.0, -2.0, -3, 3, 3, inf, inf, -inf, 2, 0, 1, 3, nan], np.float32)
    model, feeds = multi_node_model([("Mod", {"a": a, "b": b}, {}, {"fmod": 0}),
                                     ("Mod", {"a": a, "b": b}, {}, {"fmod": 1})], 28)
    check_against_onnx_reference(model, feeds)


def test_pow():
    y = rng.uniform(-2, 2, (3, 4)).astype(np.float32)
    cases = [("Pow", {"x": POS, "y": y}, {}, {})]
    for ydtype in [np.int64, np.int32, np.float32]:
        cases.append(("Pow", {"x": X}, {"y": np.array(2, ydtype)}, {}))
        cases.append(("Pow", {"x": X, "y": np.array([3, 2, 1, 0], ydtype)}, {}, {}))
    xi = np.array([[1, -2, 3], [4, 5, -7]], np.int32)
    cases.append(("Pow", {"x": xi, "y": np.array([[2, 3, 0], [1, 2, 3]], np.int32)}, {}, {}))
    cases.append(("Pow", {"x": xi, "y": np.array([[2.5, 1.0, 1.0], [0.5, 2.0, -1.0]], np.float32)}, {}, {}))
    cases.append(("Pow", {"x": xi.astype(np.int64)}, {"y": np.array(3, np.int64)}, {}))
    check_cases(cases)


def test_bitshift():
    cases = []
    for dtype in [np.uint8, np.uint32, np.uint64]:
        x = np.array([1, 16, 255, 7], dtype)
        s = np.array([1, 3, 2, 0], dtype)
        cases += [("BitShift", {"x": x, "s": s}, {}, {"direction": d}) for d in ("LEFT", "RIGHT")]
    check_cases(cases)


# ---- clip --------------------------------------------------------------------------------------------

def _clip_case(x, lo, hi, as_inputs=False):
    consts = {}
    names = ["x", "", ""]
    for i, (name, v) in enumerate((("lo", lo), ("hi", hi))):
        if v is not None:
            consts[name], names[i + 1] = v, name
    while names[-1] == "":
        names.pop()
    if as_inputs:
        return ("Clip", {"x": x, **consts}, {}, {}, names)
    return ("Clip", {"x": x}, consts, {}, names)


@pytest.mark.parametrize("opset", [11, 13])
def test_clip(opset):
    f = lambda v: None if v is None else np.array(v, np.float32)  # noqa: E731
    cases = [_clip_case(X, f(lo), f(hi)) for lo, hi in
             [(-0.5, 0.5), (-0.5, None), (None, 0.5), (None, None), (0.5, -0.5)]]
    if opset >= 12:  # integer Clip
        for dtype in [np.int32, np.int64, np.int8]:
            x = np.array([[-100, -3, 0, 3, 100]], dtype)
            lo, hi = np.array(-3, dtype), np.array(50, dtype)
            cases += [_clip_case(x, lo, hi), _clip_case(x, None, hi), _clip_case(x, lo, None)]
        xu = np.array([[0, 3, 9, 200, 255]], np.uint8)
        cases += [_clip_case(xu, np.array(3, np.uint8), np.array(200, np.uint8)),
                  _clip_case(xu, None, np.array(9, np.uint8))]
        # a bound a float cannot hold exactly becomes a min op
        cases.append(_clip_case(np.array([-2**62, 0, 2**62 + 1], np.int64),
                                np.array(-2**63, np.int64), np.array(2**62 - 1, np.int64)))
    # bounds that are graph inputs, not constants; the last has min > max: the result is max
    lo, hi = np.array(-0.3, np.float32), np.array(0.6, np.float32)
    cases += [_clip_case(X, lo, hi, as_inputs=True), _clip_case(X, hi, lo, as_inputs=True),
              ("Clip", {"x": X, "lo": lo}, {"hi": hi}, {}, ["x", "lo", "hi"]),
              ("Clip", {"x": X, "lo": hi}, {"hi": lo}, {}, ["x", "lo", "hi"])]
    check_cases(cases, opset=opset)


def test_bitshift_signed_and_out_of_range():
    """Opset 28: signed types (arithmetic right shift); shifts by >= the bit width give the sign fill."""
    cases = []
    for dtype in [np.int8, np.int32, np.int64]:
        x = np.array([1, -16, 127, -1, -128, 5, -7], dtype)
        s = np.array([1, 2, 3, 0, 7, 64, 100], dtype)
        cases += [("BitShift", {"x": x, "s": s}, {}, {"direction": d}) for d in ("LEFT", "RIGHT")]
    xu = np.array([1, 255, 7, 9], np.uint8)
    cases += [("BitShift", {"x": xu, "s": np.array([8, 9, 255, 1], np.uint8)}, {}, {"direction": d})
              for d in ("LEFT", "RIGHT")]
    model, feeds = multi_node_model(cases, 28)
    check_against_onnx_reference(model, feeds)


def test_softplus_mish_relative_precision():
    """Very negative inputs: small results that float32 formulas lose (1 + exp(x) rounds to 1, tanh
    near 0); compared with float64 math in relative terms."""
    x = np.concatenate([np.linspace(-40, 30, 2000), [-100.0, 0.0, 1e-6, -1e-6, 60.0]]).astype(np.float32)
    xf = x.astype(np.float64)
    expected = {"Softplus_0": np.logaddexp(0, xf), "Mish_1": xf * np.tanh(np.logaddexp(0, xf))}
    model, feeds = multi_node_model([("Softplus", {"x": x}, {}, {}), ("Mish", {"x": x}, {}, {})], 18)
    check_model(model, feeds)
    with tempfile.TemporaryDirectory() as d:
        got = edgec.compile(model, target="host", output=f"{d}/out").artifact.run(feeds)
    for name, e in expected.items():
        np.testing.assert_allclose(got[name], e, rtol=2e-6, atol=1e-37, err_msg=name)
