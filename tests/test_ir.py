"""IR mutation helpers: uses stay in sync, removal refuses live nodes, insertion points."""

import numpy as np
import pytest

from edgec.errors import VerifyError
from edgec.ir import Graph, TensorType
from edgec.verifier import verify

F4 = TensorType("f32", (4,))


def small_graph():
    g = Graph()
    x = g.add_input("x", F4)
    a = g.add("relu", [x], origin=["Relu_0"]).output
    b = g.add("neg", [a], origin=["Neg_1"]).output
    g.set_outputs([b], ["y"])
    return g, x, a, b


def test_uses_follow_set_input():
    g, x, a, b = small_graph()
    neg = b.producer()
    assert a.uses() == [(neg, 0)]
    neg.set_input(0, x)
    assert a.uses() == [] and (neg, 0) in x.uses()
    verify(g)


def test_replace_all_uses_with_reports_nodes_and_outputs():
    g, x, a, b = small_graph()
    c = g.add("abs", [x]).output
    touched = g.replace_all_uses_with(b, c)
    assert touched == [(None, 0)] and g.outputs == [c]
    touched = g.replace_all_uses_with(a, x)
    assert touched == [(b.producer(), 0)]


def test_replace_with_other_type_is_refused():
    g, x, a, b = small_graph()
    other = g.const(np.zeros(3, np.float32))
    with pytest.raises(VerifyError, match="cannot replace"):
        g.replace_all_uses_with(a, other)


def test_remove_refuses_a_node_still_in_use():
    g, x, a, b = small_graph()
    with pytest.raises(VerifyError, match="still used"):
        g.remove(a.producer())
    with pytest.raises(VerifyError, match="still used"):
        g.remove(b.producer())  # a graph output


def test_inserting_before_keeps_topological_order():
    g, x, a, b = small_graph()
    with g.inserting_before(b.producer()):
        s = g.add("sigmoid", [a]).output
        t = g.add("tanh", [s]).output
    b.producer().set_input(0, t)
    assert [n.op for n in g.nodes] == ["relu", "sigmoid", "tanh", "neg"]
    verify(g)


def test_topo_sort_repairs_order_and_detects_nothing_wrong():
    g, x, a, b = small_graph()
    g.nodes = g.nodes[::-1]
    with pytest.raises(VerifyError, match="not defined before"):
        verify(g)
    g.topo_sort()
    assert [n.op for n in g.nodes] == ["relu", "neg"]
    verify(g)


def test_copy_is_deep_and_prints_the_same():
    g, x, a, b = small_graph()
    h = g.copy()
    assert str(h) == str(g)
    h.nodes[0].origin = ("changed",)
    assert str(h) != str(g)


def test_types_are_inferred_by_the_registry():
    g = Graph()
    x = g.add_input("x", TensorType("f32", (2, 1, 3)))
    y = g.add("add", [x, g.const(np.ones((4, 1), np.float32))]).output
    assert y.type == TensorType("f32", (2, 4, 3))


def test_nodes_is_a_snapshot_and_assigning_it_reorders():
    g, x, a, b = small_graph()
    before = g.nodes
    g.remove(g.add("abs", [x]))
    assert isinstance(before, tuple) and g.nodes == before  # the snapshot did not change
    g.nodes = list(reversed(g.nodes))
    assert [n.op for n in g.nodes] == ["neg", "relu"]


def test_order_keys_follow_the_node_order_through_many_insertions():
    g, x, a, b = small_graph()
    relu = a.producer()
    for i in range(40):  # each one right after relu: the gap between keys halves until renumbered
        with g.inserting_after(relu):
            g.add("sigmoid", [a], origin=[f"S{i}"])
    with g.inserting_before(relu):
        g.add("tanh", [x], origin=["T"])
    assert [n.origin[0] for n in g.nodes] == ["T", "Relu_0", *[f"S{i}" for i in reversed(range(40))], "Neg_1"]
    keys = [Graph.order_key(n) for n in g.nodes]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    verify(g)


def test_removal_frees_the_uses_and_refuses_a_node_of_another_graph():
    g, x, a, b = small_graph()
    extra = g.add("abs", [x])
    assert len(x.uses()) == 2
    g.remove(extra)
    assert x.uses() == [(a.producer(), 0)] and extra.graph is None
    with pytest.raises(VerifyError, match="not in this graph"):
        g.remove(extra)
