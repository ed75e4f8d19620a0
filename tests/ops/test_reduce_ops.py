"""Reductions and argmax/argmin against ONNX Runtime: reference interpreter and compiled host module.

Many cases share one model (one compile); a mismatch names the output `<OnnxOp>_<case index>`."""

import numpy as np
import pytest

import edgec
from edgec.errors import EdgecError
from onnx_util import check_model, multi_node_model, node_model

rng = np.random.default_rng(1)
X = rng.standard_normal((2, 3, 4)).astype(np.float32)
POS = (np.abs(X) + 0.5).astype(np.float32)
XI = rng.integers(-20, 20, (2, 3, 4)).astype(np.int32)

ALL = ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
       "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare"]
AXES_INPUT_OPSET = {op: (13 if op == "ReduceSum" else 18) for op in ALL}

# axes, keepdims
AXES_CASES = [([1], 1), ([1], 0), ([-1], 0), ([0, 2], 1), ([2, 0], 0), ([-3, -1], 0), (None, 1), (None, 0),
              ([0, 1, 2], 0)]


def _data(op):
    return POS if op == "ReduceLogSum" else X


def check_cases(cases, opset):
    model, feeds = multi_node_model(cases, opset)
    return check_model(model, feeds)


@pytest.mark.parametrize("opset", [11, 13, 17, 18, 21])
def test_reduce_float(opset):
    """Every axes case at opset 18; a few at the others (axes attribute vs input)."""
    cases = []
    for op in ALL:
        axes_as_input = opset >= AXES_INPUT_OPSET[op]
        for axes, keepdims in (AXES_CASES if opset == 18 else [([-1], 0), ([0, 2], 1)]):
            attrs = {"keepdims": keepdims}
            inits, names = {}, ["x"]
            if axes is not None:
                if axes_as_input:
                    inits["axes"], names = np.array(axes, np.int64), ["x", "axes"]
                else:
                    attrs["axes"] = axes
            cases.append((op, {"x": _data(op)}, inits, attrs, names))
    check_cases(cases, opset)


@pytest.mark.parametrize("opset", [13, 18])
def test_reduce_noop_with_empty_axes(opset):
    """Empty axes: all axes, unless noop_with_empty_axes=1 (then only the elementwise part)."""
    cases = []
    for op in ALL:
        if opset < AXES_INPUT_OPSET[op]:
            continue
        for noop in (0, 1):
            cases.append((op, {"x": _data(op)}, {}, {"noop_with_empty_axes": noop, "keepdims": 0}))
            cases.append((op, {"x": _data(op)}, {"axes": np.array([], np.int64)}, {"noop_with_empty_axes": noop}))
            cases.append((op, {"x": _data(op)}, {"axes": np.array([1], np.int64)}, {"noop_with_empty_axes": noop}))
    check_cases(cases, opset)


def test_reduce_int():
    cases = []
    small = (XI % 4 + 1).astype(np.int32)  # no overflow in products
    for dtype in (np.int32, np.int64):
        for op in ["ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceSumSquare"]:
            x = (small if op == "ReduceProd" else XI).astype(dtype)
            for axes, keepdims in [([1], 1), ([0, 2], 0), (None, 0)]:
                attrs, inits = {"keepdims": keepdims}, {}
                if axes is not None and op == "ReduceSum":  # axes is an input from opset 13
                    inits["axes"] = np.array(axes, np.int64)
                elif axes is not None:
                    attrs["axes"] = axes
                cases.append((op, {"x": x}, inits, attrs))
    # integer mean truncates toward zero, also for negative sums
    cases.append(("ReduceMean", {"x": np.array([[5, 5, 6], [-5, -5, -6]], np.int32)}, {}, {"axes": [1]}))
    for dtype in (np.int8, np.uint8):
        x = (XI + 20).astype(dtype)
        cases += [(op, {"x": x}, {}, {"axes": [2]}) for op in ("ReduceMax", "ReduceMin")]
    check_cases(cases, 17)


def test_reduce_log_sum_exp_large_values():
    x = (X * 100).astype(np.float32)  # exp overflows without the max shift
    check_cases([("ReduceLogSumExp", {"x": x}, {}, {"axes": [2]}),
                 ("ReduceLogSumExp", {"x": x}, {}, {"keepdims": 0})], 17)


def test_reduce_axes_repeat_refused():
    with pytest.raises(EdgecError, match="repeat"):
        edgec.import_onnx(node_model("ReduceSum", {"x": X}, {"axes": np.array([1, -2], np.int64)}, opset=13))


def test_reduce_axes_must_be_constant():
    axes = np.array([1], np.int64)
    with pytest.raises(EdgecError, match="axes.*constant"):
        edgec.import_onnx(node_model("ReduceSum", {"x": X, "axes": axes}, opset=13))


# ---- argmax / argmin --------------------------------------------------------------------------

def test_arg():
    ties = np.array([[1, 3, 3, 2], [5, 5, 0, 5], [0, 0, 0, 0]], np.float32)
    cases = []
    for op in ("ArgMax", "ArgMin"):
        for axis, keepdims in [(0, 1), (1, 0), (-1, 1), (2, 0), (-3, 0)]:
            cases.append((op, {"x": X}, {}, {"axis": axis, "keepdims": keepdims}))
        cases.append((op, {"x": X}, {}, {}))
        for last in (0, 1):
            for axis in (0, 1):
                cases.append((op, {"x": ties}, {}, {"axis": axis, "select_last_index": last}))
                cases.append((op, {"x": ties.astype(np.int32)}, {}, {"axis": axis, "select_last_index": last, "keepdims": 0}))
        cases.append((op, {"x": XI.astype(np.int64)}, {}, {"axis": 1}))
    check_cases(cases, 13)
    check_cases([("ArgMax", {"x": X}, {}, {"axis": 1}), ("ArgMin", {"x": X}, {}, {"axis": -1, "keepdims": 0})], 11)


def test_reduce_ir_attrs_normalised():
    g = edgec.import_onnx(node_model("ReduceMean", {"x": X}, {"axes": np.array([-1, 0], np.int64)}, opset=18))
    (node,) = g.nodes
    assert node.op == "reduce_mean" and node.attrs["axes"] == [0, 2]


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
@pytest.mark.parametrize("keepdims", [0, 1])
def test_reduce_max_min_of_infinite_slices(op, keepdims):
    """A slice of only -inf (max) or +inf (min) reduces to that infinity, not to the largest
    finite float (the identity TVM's own max/min start from)."""
    inf = np.float32(np.inf) if op == "ReduceMin" else np.float32(-np.inf)
    x = np.array([[inf, inf, inf], [1.0, 2.0, inf], [3.0, inf, -4.0]], np.float32)
    m = node_model(op, {"x": x}, {"axes": np.array([1], np.int64)}, keepdims=keepdims, opset=18)
    expected = check_model(m, {"x": x})
    assert np.isinf(next(iter(expected.values()))).any()  # the case this test is about is present
    m = node_model(op, {"x": x}, {"axes": np.array([0, 1], np.int64)}, keepdims=keepdims, opset=18)
    check_model(m, {"x": x})


@pytest.mark.parametrize("op", ["ReduceMax", "ReduceMin"])
def test_reduce_max_min_bool(op):
    """ReduceMax/Min-20 take bool: max is any, min is all."""
    x = np.array([[True, False, True], [False, False, False], [True, True, True]])
    for keepdims in (0, 1):
        m = node_model(op, {"x": x}, {"axes": np.array([1], np.int64)}, keepdims=keepdims, opset=20)
        check_model(m, {"x": x})
