"""The verifier's messages name the node, its ONNX origin and what is wrong."""

import numpy as np
import pytest

from edgec.errors import VerifyError
from edgec.ir import Graph, Node, TensorType
from edgec.verifier import verify

F4 = TensorType("f32", (4,))


def graph_with(node_factory):
    g = Graph()
    x = g.add_input("x", F4)
    node = node_factory(g, x)
    node.graph = g
    g.nodes = [*g.nodes, node]
    g.set_outputs([node.outputs[0]], ["y"])
    return g


def test_wrong_result_type_names_node_and_origin():
    g = graph_with(lambda g, x: Node("relu", [x], {}, [TensorType("f32", (5,))], ["Relu_7"]))
    with pytest.raises(VerifyError, match=r"node 'relu' \(from ONNX node 'Relu_7'\).*f32\[5\].*inferred f32\[4\]"):
        verify(g)


def test_unknown_op():
    g = graph_with(lambda g, x: Node("frobnicate", [x], {}, [F4], ["F_1"]))
    with pytest.raises(VerifyError, match="'frobnicate'.*not registered"):
        verify(g)


def test_wrong_input_count():
    g = graph_with(lambda g, x: Node("add", [x], {}, [F4], ["Add_3"]))
    with pytest.raises(VerifyError, match=r"Add_3.*has 1 inputs, 'add' takes 2"):
        verify(g)


def test_bad_attribute_kind_and_unknown_attribute():
    g = graph_with(lambda g, x: Node("leaky_relu", [x], {"alpha": "big"}, [F4], ["L"]))
    with pytest.raises(VerifyError, match="alpha='big' is not of kind float"):
        verify(g)
    g = graph_with(lambda g, x: Node("relu", [x], {"slope": 1}, [F4], ["R"]))
    with pytest.raises(VerifyError, match="no attribute slope"):
        verify(g)


def test_missing_default_attribute_is_reported():
    g = graph_with(lambda g, x: Node("leaky_relu", [x], {}, [F4], ["L"]))
    with pytest.raises(VerifyError, match="attributes alpha are not set"):
        verify(g)


def test_use_before_definition():
    g = Graph()
    x = g.add_input("x", F4)
    a = g.add("relu", [x], origin=["A"]).output
    g.add("neg", [a], origin=["B"])
    g.nodes = g.nodes[::-1]
    g.set_outputs([a], ["y"])
    with pytest.raises(VerifyError, match=r"'B'.*not defined before this node"):
        verify(g)


def test_broadcast_mismatch_is_a_type_inference_failure():
    g = graph_with(lambda g, x: Node("add", [x, Graph.const(np.ones(3, np.float32))], {}, [F4], ["Add_9"]))
    with pytest.raises(VerifyError, match=r"Add_9.*type inference fails.*do not broadcast"):
        verify(g)


def test_duplicate_output_names():
    g = Graph()
    x = g.add_input("x", F4)
    a = g.add("relu", [x]).output
    g.set_outputs([a, a], ["y", "y"])
    with pytest.raises(VerifyError, match="duplicate names"):
        verify(g)
