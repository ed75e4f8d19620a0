"""NegativeLogLikelihoodLoss and SoftmaxCrossEntropyLoss against ONNX Runtime: the reference
interpreter over reductions, weights, ignore_index and ranks, and one host build at -O2."""

import numpy as np
import pytest
import onnx
from onnx import TensorProto, helper, numpy_helper

import edgec
from edgec.errors import EdgecError
from onnx_util import check_model, make_model, node_model

rng = np.random.default_rng(5)
C = 5
WEIGHT = rng.uniform(0.2, 1.0, C).astype(np.float32)


def _inputs(shape, target_dtype=np.int64, ignored=None):
    """Scores [N, C, d...] and targets [N, d...] in [0, C); `ignored` is written at two places."""
    x = rng.standard_normal(shape).astype(np.float32)
    target = rng.integers(0, C, (shape[0], *shape[2:])).astype(target_dtype)
    if ignored is not None:
        target.flat[[0, target.size - 1]] = ignored
    return x, target


@pytest.mark.parametrize("op", ["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
@pytest.mark.parametrize("ignore_index", [None, 2, -1, 7])
@pytest.mark.parametrize("weighted", [False, True])
def test_loss(op, reduction, ignore_index, weighted):
    x, target = _inputs((3, C, 2, 2), ignored=ignore_index)
    attrs = {"reduction": reduction}
    if ignore_index is not None:
        attrs["ignore_index"] = ignore_index
    outputs = 2 if op == "SoftmaxCrossEntropyLoss" else 1  # with log_prob
    m = node_model(op, {"x": x, "t": target}, {"w": WEIGHT} if weighted else {}, n_outputs=outputs, **attrs)
    check_model(m, {"x": x, "t": target}, compiled=False)


@pytest.mark.parametrize("op", ["NegativeLogLikelihoodLoss", "SoftmaxCrossEntropyLoss"])
@pytest.mark.parametrize("shape", [(4, C), (2, C, 3), (2, C, 2, 1, 3, 2)])
def test_loss_ranks_and_int32_targets(op, shape):
    x, target = _inputs(shape, np.int32)
    m = node_model(op, {"x": x, "t": target}, {"w": WEIGHT}, reduction="mean")
    check_model(m, {"x": x, "t": target}, compiled=False)


def test_all_targets_ignored_gives_nan_as_ort():
    x, target = _inputs((2, C, 3))
    target[:] = 1
    m = node_model("NegativeLogLikelihoodLoss", {"x": x, "t": target}, ignore_index=1)
    assert np.isnan(check_model(m, {"x": x, "t": target}, compiled=False)["out0"])


def test_losses_compiled_at_O2():
    x, target = _inputs((3, C, 4), ignored=2)
    nodes = [helper.make_node("NegativeLogLikelihoodLoss", ["x", "t", "w"], ["nll"], ignore_index=2),
             helper.make_node("SoftmaxCrossEntropyLoss", ["x", "t"], ["sce", "log_prob"], reduction="none"),
             helper.make_node("SoftmaxCrossEntropyLoss", ["x", "t", "w"], ["sce_sum"], reduction="sum")]
    m = make_model(nodes, {"x": x, "t": target}, ["nll", "sce", "log_prob", "sce_sum"], {"w": WEIGHT})
    check_model(m, {"x": x, "t": target}, level=2)


@pytest.mark.parametrize("target_shape,weight_shape,attrs,message", [
    ((3, 2), None, {}, "the target must have the input's shape without its class axis"),
    ((3, 4), (C + 1,), {}, f"the weight must have one value per class, shape [{C}], got f32[{C + 1}]"),
    ((3, 4), None, {"reduction": "max"}, "reduction 'max' is not one of none, sum, mean"),
])
def test_bad_losses_are_refused(target_shape, weight_shape, attrs, message):
    """Built without ONNX's shape inference, which would refuse the first model itself."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, (3, C, 4))
    inits = [numpy_helper.from_array(np.zeros(target_shape, np.int64), "t")]
    if weight_shape:
        inits.append(numpy_helper.from_array(np.ones(weight_shape, np.float32), "w"))
    node = helper.make_node("NegativeLogLikelihoodLoss", ["x", "t"] + ["w"] * bool(weight_shape), ["y"],
                            name="NegativeLogLikelihoodLoss_node", **attrs)
    graph = helper.make_graph([node], "bad", [x], [onnx.ValueInfoProto(name="y")], inits)
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(EdgecError, match="NegativeLogLikelihoodLoss_node") as info:
        edgec.import_onnx(m)
    assert message in str(info.value)
