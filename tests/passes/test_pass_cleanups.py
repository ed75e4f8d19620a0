"""Golden and negative tests of the clean-up passes: cse, eliminate-noop, simplify-shapes,
fold-constants, dce."""

import edgec
from edgec.passmanager import get_pass

from pass_helpers import golden, run_pass, unchanged


# ---- cse ---------------------------------------------------------------------------------------

def test_cse_merges_commutative_operands_equal_constants_and_cascades():
    golden("""graph @main(%x: f32[4], %y: f32[4]) -> (%a: f32[4], %b: f32[4]) {
      %c0 = const f32[] [2.0]
      %c1 = const f32[] [2.0]
      %0 = add(%x, %y) : f32[4]  @"A"
      %1 = add(%y, %x) : f32[4]  @"B"
      %2 = mul(%0, %c0) : f32[4]  @"C"
      %3 = mul(%1, %c1) : f32[4]  @"D"
      %4 = sub(%2, %3) : f32[4]  @"E"
      %5 = sub(%3, %2) : f32[4]  @"F"
      return %4, %5
    }""", "cse", """graph @main(%x: f32[4], %y: f32[4]) -> (%a: f32[4], %b: f32[4]) {
      %c0 = const f32[] [2.0]
      %0 = add(%x, %y) : f32[4]  @"A","B"
      %1 = mul(%0, %c0) : f32[4]  @"C","D"
      %2 = sub(%1, %1) : f32[4]  @"E","F"
      return %2, %2
    }""")


def test_cse_keeps_different_attributes_and_operand_order_of_non_commutative_ops():
    reasons = unchanged("""graph @main(%x: f32[4], %y: f32[4]) -> (%a: f32[4], %b: f32[4], %c: f32[4], %d: f32[4]) {
      %c0 = const f32[] [2.0]
      %c1 = const f32[] [3.0]
      %0 = div(%x, %y) : f32[4]
      %1 = div(%y, %x) : f32[4]
      %2 = leaky_relu(%x) {alpha=0.1} : f32[4]
      %3 = leaky_relu(%x) {alpha=0.2} : f32[4]
      return %0, %1, %2, %3
    }""", "cse")
    assert reasons == []


def test_cse_counts_merges():
    _, _, pm = run_pass("""graph @main(%x: f32[4]) -> (%a: f32[4], %b: f32[4]) {
      %0 = relu(%x) : f32[4]
      %1 = relu(%x) : f32[4]
      return %0, %1
    }""", "cse")
    assert pm.records[0].stats == {"merged": 1}


# ---- eliminate-noop ----------------------------------------------------------------------------

def test_eliminate_noop_removes_every_kind_of_noop():
    golden("""graph @main(%x: f32[2,3]) -> (%y: f32[2,3]) {
      %c0 = const f32[] [1.0]
      %c1 = const f32[3] [0.0, 0.0, 0.0]
      %c2 = const f32[1,1] [1.0]
      %c3 = const f32[] [0.0]
      %c4 = const f32[] [1.0]
      %0 = mul(%c0, %x) : f32[2,3]  @"m"
      %1 = add(%0, %c1) : f32[2,3]  @"a"
      %2 = identity(%1) : f32[2,3]  @"i"
      %3 = reshape(%2) {shape=[2,3]} : f32[2,3]  @"r"
      %4 = transpose(%3) {perm=[0,1]} : f32[2,3]  @"t"
      %5 = div(%4, %c2) : f32[2,3]  @"d"
      %6 = pad(%5) {pads=[0,0,0,0]} : f32[2,3]  @"p"
      %7 = slice(%6) {axes=[0], ends=[2], starts=[0], steps=[1]} : f32[2,3]  @"s"
      %8 = cast(%7) {to="f32"} : f32[2,3]  @"c"
      %9 = expand(%8) {shape=[2,3]} : f32[2,3]  @"e"
      %10 = sub(%9, %c3) : f32[2,3]  @"sub"
      %11 = pow(%10, %c4) : f32[2,3]  @"pow"
      %12 = relu(%11) : f32[2,3]  @"relu"
      return %12
    }""", "eliminate-noop", """graph @main(%x: f32[2,3]) -> (%y: f32[2,3]) {
      %0 = relu(%x) : f32[2,3]  @"relu"
      return %0
    }""")


def test_eliminate_noop_output_may_become_an_input():
    golden("""graph @main(%x: f32[3]) -> (%y: f32[3]) {
      %0 = identity(%x) : f32[3]
      return %0
    }""", "eliminate-noop", """graph @main(%x: f32[3]) -> (%y: f32[3]) {
      return %x
    }""")


def test_eliminate_noop_refuses_what_changes_type_or_values():
    reasons = unchanged("""graph @main(%x: f32[3], %s: f32[2,2]) -> (%a: f32[2,3], %b: f32[3], %c: f32[2,2], %d: f16[3], %e: f32[3], %f: f32[3], %g: f32[3]) {
      %c0 = const f32[2,3] [1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
      %c1 = const f32[] [0.5]
      %c2 = const f32[3] [1.0, 2.0, 1.0]
      %0 = mul(%x, %c0) : f32[2,3]
      %1 = add(%x, %c1) : f32[3]
      %2 = transpose(%s) {perm=[1,0]} : f32[2,2]
      %3 = cast(%x) {to="f16"} : f16[3]
      %4 = slice(%x) {axes=[0], ends=[-1], starts=[2], steps=[-1]} : f32[3]
      %5 = mul(%x, %c2) : f32[3]
      %6 = pad(%x) {pads=[1,-1]} : f32[3]
      return %0, %1, %2, %3, %4, %5, %6
    }""", "eliminate-noop")
    assert sorted(reasons) == sorted([
        "the result f32[2,3] differs from the input f32[3]",
        "the constant is 0.5, not 0",
        "transpose is not a no-op: the permutation is not the identity",
        "the result f16[3] differs from the input f32[3]",
        "slice is not a no-op: it drops or reorders elements",
        "the constant f32[3] is not filled with 1",
        "pad is not a no-op: some pads are not zero",
    ])


# ---- simplify-shapes ---------------------------------------------------------------------------

def test_simplify_shapes_merges_reshapes_and_cancels_transposes():
    golden("""graph @main(%x: f32[2,3,4]) -> (%y: f32[4,6], %z: f32[2,3,4]) {
      %0 = reshape(%x) {shape=[6,4]} : f32[6,4]  @"r1"
      %1 = reshape(%0) {shape=[24]} : f32[24]  @"r2"
      %2 = reshape(%1) {shape=[4,6]} : f32[4,6]  @"r3"
      %3 = transpose(%x) {perm=[1,2,0]} : f32[3,4,2]  @"t1"
      %4 = transpose(%3) {perm=[2,0,1]} : f32[2,3,4]  @"t2"
      %5 = relu(%4) : f32[2,3,4]  @"relu"
      return %2, %5
    }""", "simplify-shapes", """graph @main(%x: f32[2,3,4]) -> (%y: f32[4,6], %z: f32[2,3,4]) {
      %0 = reshape(%x) {shape=[4,6]} : f32[4,6]  @"r1","r2","r3"
      %1 = relu(%x) : f32[2,3,4]  @"relu"
      return %0, %1
    }""")


def test_simplify_shapes_composes_transposes_unit_axes_and_single_concat():
    golden("""graph @main(%x: f32[1,3,1,4], %w: f32[2,3,4]) -> (%y: f32[1,1,3,4], %z: f32[3,4,2], %u: f32[1,3,1,4]) {
      %0 = transpose(%x) {perm=[0,2,1,3]} : f32[1,1,3,4]  @"unit"
      %1 = transpose(%w) {perm=[1,0,2]} : f32[3,2,4]  @"t1"
      %2 = transpose(%1) {perm=[0,2,1]} : f32[3,4,2]  @"t2"
      %3 = concat(%x) {axis=1} : f32[1,3,1,4]  @"cat"
      return %0, %2, %3
    }""", "simplify-shapes", """graph @main(%x: f32[1,3,1,4], %w: f32[2,3,4]) -> (%y: f32[1,1,3,4], %z: f32[3,4,2], %u: f32[1,3,1,4]) {
      %0 = reshape(%x) {shape=[1,1,3,4]} : f32[1,1,3,4]  @"unit"
      %1 = transpose(%w) {perm=[1,2,0]} : f32[3,4,2]  @"t1","t2"
      return %0, %1, %x
    }""")


def test_simplify_shapes_leaves_real_transposes():
    assert unchanged("""graph @main(%x: f32[2,3]) -> (%y: f32[3,2]) {
      %0 = transpose(%x) {perm=[1,0]} : f32[3,2]
      return %0
    }""", "simplify-shapes") == []


# ---- fold-constants and dce --------------------------------------------------------------------

def test_fold_constants_cascades_and_dce_removes_dead_nodes():
    golden("""graph @main(%x: f32[2]) -> (%y: f32[2]) {
      %c0 = const f32[2] [1.0, 2.0]
      %c1 = const f32[2] [3.0, 4.0]
      %0 = add(%c0, %c1) : f32[2]
      %1 = mul(%0, %0) : f32[2]
      %2 = add(%x, %1) : f32[2]  @"keep"
      %3 = relu(%x) : f32[2]  @"dead"
      return %2
    }""", "fold-constants,dce", """graph @main(%x: f32[2]) -> (%y: f32[2]) {
      %c0 = const f32[2] [16.0, 36.0]
      %0 = add(%x, %c0) : f32[2]  @"keep"
      return %0
    }""")


def test_fold_constants_refuses_results_over_max_size():
    text = """graph @main(%x: f32[4]) -> (%y: f32[4]) {
      %c0 = const f32[4] [1.0, 2.0, 3.0, 4.0]
      %0 = neg(%c0) : f32[4]
      %1 = add(%x, %0) : f32[4]
      return %1
    }"""
    g = edgec.parse_ir(text)
    p = get_pass("fold-constants")(**{"max-size": 3})
    assert p.run(g) is False and str(g) == str(edgec.parse_ir(text))
    assert p.stats == {"skipped-large": 1}
