"""The pattern rewriter: matching, checks with reasons, no mutation before a match, the fixed
point driver and its loop guard, origins."""

import pytest

import edgec
from edgec.errors import PassError
from edgec.rewrite import Any, Const, Either, Op, Rule, Var, apply_rules, is_splat, splat

SILU_TEXT = """graph @main(%x: f32[4]) -> (%y: f32[4]) {
  %0 = sigmoid(%x) : f32[4]  @"Sig"
  %1 = mul(%0, %x) : f32[4]  @"Mul"
  return %1
}"""


def silu_rule(check=lambda m: None):
    return Rule("silu", Op("mul", Var("x"), Op("sigmoid", Var("x")), commutative=True),
                lambda g, m: [g.add("silu", [m["x"]], origin=m.origin()).output], check)


def test_commutative_match_binds_the_same_value_and_rewrites_with_union_of_origins():
    g = edgec.parse_ir(SILU_TEXT)
    result = apply_rules(g, [silu_rule()])
    assert result.changed and result.applied == {"silu": 1}
    assert str(g) == str(edgec.parse_ir("""graph @main(%x: f32[4]) -> (%y: f32[4]) {
      %0 = silu(%x) : f32[4]  @"Sig","Mul"
      return %0
    }"""))


def test_var_must_bind_one_value():
    g = edgec.parse_ir("""graph @main(%x: f32[4], %z: f32[4]) -> (%y: f32[4]) {
      %0 = sigmoid(%z) : f32[4]
      %1 = mul(%0, %x) : f32[4]
      return %1
    }""")
    text = str(g)
    assert not apply_rules(g, [silu_rule()]).changed
    assert str(g) == text


def test_refusing_check_reports_its_reason_and_changes_nothing():
    g = edgec.parse_ir(SILU_TEXT)
    text = str(g)
    counts = {}
    result = apply_rules(g, [silu_rule(lambda m: "not today")],
                         count=lambda k, n: counts.__setitem__(k, counts.get(k, 0) + n))
    assert not result.changed
    assert [(r.rule, r.node.op, r.reason) for r in result.refusals] == [("silu", "mul", "not today")]
    assert counts == {"refused-silu": 1}
    assert str(g) == text


def test_shared_intermediate_is_refused_with_reason():
    g = edgec.parse_ir("""graph @main(%x: f32[4]) -> (%y: f32[4], %s: f32[4]) {
      %0 = sigmoid(%x) : f32[4]
      %1 = mul(%x, %0) : f32[4]
      return %1, %0
    }""")
    result = apply_rules(g, [silu_rule()])
    assert not result.changed
    assert result.refusals[0].reason == "the result of 'sigmoid' inside the pattern is a graph output"


def test_shared_intermediate_used_by_another_node():
    g = edgec.parse_ir("""graph @main(%x: f32[4]) -> (%y: f32[4]) {
      %0 = sigmoid(%x) : f32[4]
      %1 = mul(%x, %0) : f32[4]
      %2 = add(%1, %0) : f32[4]
      return %2
    }""")
    result = apply_rules(g, [silu_rule()])
    assert result.refusals[0].reason == "the result of 'sigmoid' inside the pattern is also used by 'add'"


def test_either_const_any_and_attrs():
    g = edgec.parse_ir("""graph @main(%x: f32[4]) -> (%y: f32[4]) {
      %c0 = const f32[] [2.0]
      %0 = leaky_relu(%x) {alpha=0.5} : f32[4]
      %1 = mul(%0, %c0) : f32[4]
      return %1
    }""")
    pattern = Op("mul", Either(Op("relu", Any()), Op("leaky_relu", Var("x"), attrs={"alpha": 0.5}, name="act")),
                 Const("c"))
    seen = []
    rule = Rule("probe", pattern, lambda g, m: [m.root.output], lambda m: seen.append(m) or "probe only")
    apply_rules(g, [rule])
    (m,) = seen
    assert m.node("act").op == "leaky_relu" and splat(m["c"]) == 2.0 and is_splat(m["c"], 2.0)
    assert [n.op for n in m.nodes] == ["mul", "leaky_relu"]
    # attrs that differ: no match, so no check and no refusal
    other = Rule("probe", Op("mul", Op("leaky_relu", Var("x"), attrs={"alpha": 0.1}), Const("c")),
                 lambda g, m: [m.root.output], lambda m: "never")
    assert apply_rules(g, [other]).refusals == []


def test_rules_run_to_a_fixed_point():
    # neg(neg(x)) -> x, applied repeatedly on neg^4
    g = edgec.parse_ir("""graph @main(%x: f32[3]) -> (%y: f32[3]) {
      %0 = neg(%x) : f32[3]
      %1 = neg(%0) : f32[3]
      %2 = neg(%1) : f32[3]
      %3 = neg(%2) : f32[3]
      %4 = relu(%3) : f32[3]
      return %4
    }""")
    rule = Rule("double-neg", Op("neg", Op("neg", Var("x"))), lambda g, m: [m["x"]])
    result = apply_rules(g, [rule])
    assert result.applied == {"double-neg": 2}
    assert [n.op for n in g.nodes] == ["relu"]


def test_loop_guard_stops_a_rule_that_never_settles():
    g = edgec.parse_ir("""graph @main(%x: f32[3]) -> (%y: f32[3]) {
      %0 = relu(%x) : f32[3]
      return %0
    }""")
    # relu(x) -> relu(x): always applies, never converges
    rule = Rule("again", Op("relu", Var("x")), lambda g, m: [g.add("relu", [m["x"]]).output])
    with pytest.raises(PassError, match="did not reach a fixed point"):
        apply_rules(g, [rule], max_sweeps=5)


def test_rewrite_returning_wrong_number_of_values_is_an_error():
    g = edgec.parse_ir(SILU_TEXT)
    rule = Rule("bad", Op("mul", Any(), Any()), lambda g, m: [])
    with pytest.raises(PassError, match="returned 0 values for 1 results"):
        apply_rules(g, [rule])


def test_splat_helpers():
    g = edgec.Graph()
    assert splat(g.const([[1.5, 1.5]])) == 1.5
    assert splat(g.const([1.0, 2.0])) is None
    assert not is_splat(g.const([1.0, 2.0]), 1.0)
    assert is_splat(g.const(0.50001), 0.5, rel=1e-4)
    assert not is_splat(g.const(1e-5), 0.0) and not is_splat(g.const(1.00001), 1.0)  # exact for 0 and 1
    assert is_splat(g.const(0.70710677), 0.7071067811865476)  # a rounded irrational constant
