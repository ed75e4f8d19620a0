"""The text format: deterministic, re-parseable, constants by hash or in full."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import edgec
from edgec.errors import VerifyError
from edgec.ir import Graph, TensorType
from edgec.text import INLINE_LIMIT

UNARY = ["relu", "neg", "abs", "sigmoid", "tanh"]
BINARY = ["add", "sub", "mul", "max"]
NAMES = ["x", "input.1", "c0", "0", "my input", 'quote"d', "_y2"]


@st.composite
def graphs(draw):
    """Random chains of elementwise ops over inputs and constants of one shape (with broadcast)."""
    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    g = Graph(draw(st.sampled_from(["main", "net_1"])))
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    values = [g.add_input(n, TensorType("f32", shape)) for n in names]
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    for i in range(draw(st.integers(1, 8))):
        origin = draw(st.lists(st.sampled_from(["Conv_0", "n/1", 'we"ird', "Relu_3"]), max_size=2))
        if draw(st.booleans()):
            op = draw(st.sampled_from(UNARY))
            values.append(g.add(op, [draw(st.sampled_from(values))], origin=origin).output)
        else:
            op = draw(st.sampled_from(BINARY))
            a = draw(st.sampled_from(values))
            if draw(st.booleans()):
                cshape = draw(st.sampled_from([shape, shape[-1:], (1,)]))
                b = g.const(rng.standard_normal(cshape).astype(np.float32))
            else:
                b = draw(st.sampled_from(values))
            values.append(g.add(op, [a, b], origin=origin).output)
    outs = draw(st.lists(st.sampled_from(values[len(names):]), min_size=1, max_size=2, unique_by=id))
    g.set_outputs(outs, [f"out{i}" for i in range(len(outs))])
    return g


@given(graphs())
def test_print_parse_print_is_identity(g):
    text = str(g)
    assert str(edgec.parse_ir(text)) == text


@given(graphs())
def test_full_constants_round_trip_and_run_the_same(g):
    full = edgec.print_ir(g, full_constants=True)
    parsed = edgec.parse_ir(full)
    assert edgec.print_ir(parsed, full_constants=True) == full
    assert str(parsed) == str(g)
    feeds = {v.name: np.random.default_rng(1).standard_normal(v.type.shape).astype(np.float32) for v in g.inputs}
    expected, actual = edgec.interpret(g, feeds), edgec.interpret(parsed, feeds)
    for k in expected:
        np.testing.assert_array_equal(actual[k], expected[k])


def test_large_constant_is_a_placeholder_that_prints_the_same_and_refuses_to_run():
    g = Graph()
    x = g.add_input("x", TensorType("f32", (16,)))
    w = g.const(np.arange(16, dtype=np.float32))
    g.set_outputs([g.add("add", [x, w]).output], ["y"])
    text = str(g)
    assert "#" in text and "b64" not in text
    parsed = edgec.parse_ir(text)
    assert str(parsed) == text
    with pytest.raises(VerifyError, match="only its hash"):
        edgec.interpret(parsed, {"x": np.zeros(16, np.float32)})


def test_small_constants_are_written_out_and_hash_depends_on_content():
    g = Graph()
    x = g.add_input("x", TensorType("f32", (INLINE_LIMIT + 1,)))
    a = g.add("add", [x, g.const(np.full(INLINE_LIMIT + 1, 1, np.float32))]).output
    b = g.add("mul", [a, g.const(np.float32(2.5))]).output
    g.set_outputs([b], ["y"])
    text = str(g)
    assert "const f32[] [2.5]" in text
    h = g.copy()
    h.nodes[0].set_input(1, h.const(np.full(INLINE_LIMIT + 1, 2, np.float32)))
    assert str(h) != text


def test_printing_is_independent_of_object_identity():
    def build():
        g = Graph()
        x = g.add_input("x", TensorType("f32", (2,)))
        g.set_outputs([g.add("relu", [g.add("neg", [x]).output]).output], ["y"])
        return g
    assert str(build()) == str(build())


def test_attributes_are_sorted_and_origins_kept():
    g = Graph()
    x = g.add_input("x", TensorType("f32", (2,)))
    g.set_outputs([g.add("hard_sigmoid", [x], {"beta": 0.25, "alpha": 0.5}, origin=["HS_1", "B"]).output], ["y"])
    assert '%0 = hard_sigmoid(%x) {alpha=0.5, beta=0.25} : f32[2]  @"HS_1","B"' in str(g)


@pytest.mark.parametrize("text,message", [
    ("", "empty"),
    ("graph @g(%x: f32[2]) -> (%y: f32[2]) {\n  return %z\n}\n", "used before it is defined"),
    ("graph @g(%x: f32[2]) -> (%y: f32[2]) {\n  %0 = relu(%x) : f32[2]\n  return %0\n", "closing"),
    ("graph @g(%x: q9[2]) -> (%y: f32[2]) {\n}\n", "unknown dtype"),
    ("graph @g(%x: f32[2]) -> (%y: f32[3]) {\n  %0 = relu(%x) : f32[3]\n  return %0\n}\n", "inferred"),
    ("graph @g(%x: f32[2]) -> (%y: f32[2]) {\n  %0 = relu(%x) {k=1} : f32[2]\n  return %0\n}\n", "no attribute k"),
    ("graph @g(%x: f32[2]) -> (%y: f32[2]) {\n  %0 = relu(%x) : f32[2] $\n  return %0\n}\n", "line 2"),
])
def test_parse_errors_say_what_and_where(text, message):
    with pytest.raises(edgec.EdgecError, match=message):
        edgec.parse_ir(text)


def test_a_fingerprint_rebuilds_the_graph_it_was_taken_of():
    from edgec.text import fingerprint, from_fingerprint
    g = edgec.parse_ir("""graph @main(%x: f32[2,3]) -> (%y: f32[3,2], %z: f32[2,3]) {
      %c0 = const f32[3] [1,2,3]
      %c1 = const f32[2,3] #0123456789abcdef
      %0 = transpose(%x) {perm=[1,0]} : f32[3,2]  @"T"
      %1 = add(%x, %c0) : f32[2,3]  @"A","B"
      %2 = leaky_relu(%1) {alpha=0.25} : f32[2,3]
      %3 = mul(%2, %c1) : f32[2,3]
      return %0, %3
    }""")
    payloads: list = []
    fp = fingerprint(g, payloads)
    rebuilt = from_fingerprint(fp, payloads)
    assert edgec.print_ir(rebuilt) == edgec.print_ir(g) and fingerprint(rebuilt) == fp
    g.nodes[2].attrs["alpha"] = 0.5
    assert fingerprint(g) != fp
