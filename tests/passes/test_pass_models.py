"""The pipelines on the model builders of tools/ (small variants): what each level leaves, and
the outputs unchanged against -O0 (the interpreter; ONNX Runtime checks live in tests/test_models.py)."""

import sys
from collections import Counter
from pathlib import Path

import pytest

import edgec
from edgec.ops.fused import parse_body
from edgec.targets import level_pipelines

from onnx_util import assert_close
from edgec.testing import random_inputs

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import make_models  # noqa: E402

_GRAPHS = {}


def imported(name):
    if name not in _GRAPHS:
        g = edgec.import_onnx(make_models.build(name, small=True))
        feeds = random_inputs(g, 0)
        _GRAPHS[name] = (g, feeds, edgec.interpret(g, feeds))
    return _GRAPHS[name]


def optimized(name, level, layout="NCHW"):
    graph, feeds, expected = imported(name)
    out = edgec.optimize(graph, passes=level_pipelines(layout)[level]) if level else graph
    assert_close(edgec.interpret(out, feeds), expected, what=f"{name} -O{level}")
    return out, Counter(n.op for n in out.nodes)


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2", "transformer", "mlp"])
def test_each_level_keeps_outputs_and_never_grows_the_graph(name):
    counts = [len(optimized(name, level)[0].nodes) for level in range(4)]
    assert counts[1] <= counts[0] and counts[2] < counts[1] and counts[3] <= counts[2], counts


def test_resnet_convs_absorb_batch_norm_and_relu():
    graph, ops = optimized("resnet18", 2)
    assert ops["batch_norm"] == 0 and ops["relu"] == 0
    convs = [n for n in graph.nodes if n.op == "conv"]
    assert len(convs) == 12 and all(len(n.inputs) == 3 for n in convs)
    assert sum(n.attrs["activation"] == "relu" for n in convs) == 9  # the 3 others: downsampling
    # the last conv of each of the 8 blocks, with the residual add and relu after it (fuse-epilogue)
    fused = [n for n in graph.nodes if n.op == "fused"]
    assert ops["fused_elementwise"] == 0 and len(fused) == 8
    assert all([op for op, _, _ in parse_body(n.attrs["body"], len(n.inputs), True)] == ["conv", "add", "relu"]
               for n in fused)


def test_mobilenet_relu6_becomes_a_conv_activation():
    graph, ops = optimized("mobilenetv2", 2)
    assert ops["batch_norm"] == 0 and ops["clip"] == 0
    assert all(n.attrs["activation"] in ("", "clip") for n in graph.nodes if n.op == "conv")
    assert any(n.attrs["activation_params"] == [0.0, 6.0] for n in graph.nodes if n.op == "conv")


def test_transformer_layer_norm_gelu_and_dense():
    graph, ops = optimized("transformer", 2)
    assert ops["layer_norm"] == 4 and ops["reduce_mean"] == 0 and ops["erf"] == 0
    assert all(not n.inputs[1].is_const for n in graph.nodes if n.op == "matmul")  # only activations x activations
    assert sum(n.attrs.get("activation") == "gelu" for n in graph.nodes if n.op == "dense") == 2


def test_nhwc_level_3_keeps_one_transpose_at_the_input():
    for name in ("resnet18", "mobilenetv2"):
        graph, ops = optimized(name, 3, "NHWC")
        assert ops["transpose"] == 1
