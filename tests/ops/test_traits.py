"""Op traits live on OpDef (commutative, activation, anchor, layout_sensitive, macs); passes and
tools read them there. Each trait is checked against what it claims about the op."""

from __future__ import annotations

import numpy as np
import pytest

from edgec.ir import Graph, TensorType
from edgec.ops import OPS, ops_with
from edgec.ops.elementwise import ACTIVATION_ATTRS, ACTIVATIONS
from edgec.inspect import node_macs

rng = np.random.default_rng(0)


@pytest.mark.parametrize("name", ops_with("commutative"))
def test_commutative_ops_give_the_same_result_both_ways(name):
    a, b = rng.standard_normal((3, 4)).astype(np.float32), rng.standard_normal((1, 4)).astype(np.float32)
    np.testing.assert_array_equal(OPS[name].run([a, b], {})[0], OPS[name].run([b, a], {})[0])


def test_sub_div_and_pow_are_not_commutative():
    assert not any(OPS[n].commutative for n in ("sub", "div", "pow"))


def test_layout_sensitive_ops_are_those_with_a_layout_attribute():
    assert set(ops_with("layout_sensitive")) == {n for n, op in OPS.items() if "layout" in op.attrs}


def test_anchors_take_a_fused_activation_and_activations_can_be_fused():
    for name in ops_with("anchor"):
        assert set(ACTIVATION_ATTRS) <= set(OPS[name].attrs), name
    assert set(ops_with("activation")) <= set(ACTIVATIONS)


def test_macs_count_the_products():
    """conv: every output sums Cin/group * kh * kw products; matmul: K per output."""
    g = Graph("m")
    x = g.add_input("x", TensorType("f32", (1, 8, 6, 6)))
    w = Graph.const(rng.standard_normal((4, 2, 3, 3)).astype(np.float32))
    conv = g.add("conv", [x, w], {"group": 4, "pads": [1, 1, 1, 1]})
    a = g.add_input("a", TensorType("f32", (2, 5, 7)))
    b = Graph.const(rng.standard_normal((7, 3)).astype(np.float32))
    mm = g.add("matmul", [a, b])
    assert node_macs(conv) == (1 * 4 * 6 * 6) * (2 * 3 * 3)
    assert node_macs(mm) == (2 * 5 * 3) * 7
    assert node_macs(g.add("relu", [mm.output])) == 0
