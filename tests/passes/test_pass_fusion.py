"""Golden and negative tests of the fusion passes, and kernel counts of fused graphs."""

import pytest

import edgec
from edgec.targets import get_target
from edgec.targets.build import build_graph

from pass_helpers import golden, unchanged

BN = """%c1 = const f32[2] [2.0, 3.0]
      %c2 = const f32[2] [0.5, 1.0]
      %c3 = const f32[2] [1.0, 2.0]
      %c4 = const f32[2] [4.0, 1.0]"""


# ---- fuse-conv-bn: s = scale / sqrt(var) = [1, 3]; w' = w * s; b' = (b - mean) * s + beta ----

def test_conv_bn_folds_into_weights_and_bias():
    golden(f"""graph @main(%x: f32[1,1,3,3]) -> (%y: f32[1,2,3,3]) {{
      %c0 = const f32[2,1,1,1] [1.0, 2.0]
      {BN}
      %0 = conv(%x, %c0) : f32[1,2,3,3]  @"conv"
      %1 = batch_norm(%0, %c1, %c2, %c3, %c4) {{epsilon=0.0}} : f32[1,2,3,3]  @"bn"
      return %1
    }}""", "fuse-conv-bn", """graph @main(%x: f32[1,1,3,3]) -> (%y: f32[1,2,3,3]) {
      %c0 = const f32[2,1,1,1] [1.0, 6.0]
      %c1 = const f32[2] [-0.5, -5.0]
      %0 = conv(%x, %c0, %c1) : f32[1,2,3,3]  @"conv","bn"
      return %0
    }""")


def test_conv_bn_with_existing_bias_and_nhwc():
    golden(f"""graph @main(%x: f32[1,3,3,1]) -> (%y: f32[1,3,3,2]) {{
      %c0 = const f32[2,1,1,1] [1.0, 2.0]
      %c5 = const f32[2] [1.0, 1.0]
      {BN}
      %0 = conv(%x, %c0, %c5) {{layout="NHWC"}} : f32[1,3,3,2]  @"conv"
      %1 = batch_norm(%0, %c1, %c2, %c3, %c4) {{epsilon=0.0, layout="NHWC"}} : f32[1,3,3,2]  @"bn"
      return %1
    }}""", "fuse-conv-bn", """graph @main(%x: f32[1,3,3,1]) -> (%y: f32[1,3,3,2]) {
      %c0 = const f32[2,1,1,1] [1.0, 6.0]
      %c1 = const f32[2] [0.5, -2.0]
      %0 = conv(%x, %c0, %c1) {layout="NHWC"} : f32[1,3,3,2]  @"conv","bn"
      return %0
    }""")


def test_dense_and_matmul_bn_become_dense():
    golden(f"""graph @main(%x: f32[3,2]) -> (%a: f32[3,2], %b: f32[3,2]) {{
      %c0 = const f32[2,2] [1.0, 0.0, 0.0, 1.0]
      %c5 = const f32[2,2] [1.0, 2.0, 3.0, 4.0]
      {BN}
      %0 = dense(%x, %c0) : f32[3,2]  @"dense"
      %1 = batch_norm(%0, %c1, %c2, %c3, %c4) {{epsilon=0.0}} : f32[3,2]  @"bn1"
      %2 = matmul(%x, %c5) : f32[3,2]  @"mm"
      %3 = batch_norm(%2, %c1, %c2, %c3, %c4) {{epsilon=0.0}} : f32[3,2]  @"bn2"
      return %1, %3
    }}""", "fuse-conv-bn", """graph @main(%x: f32[3,2]) -> (%a: f32[3,2], %b: f32[3,2]) {
      %c0 = const f32[2,2] [1.0, 0.0, 0.0, 3.0]
      %c1 = const f32[2] [-0.5, -5.0]
      %c2 = const f32[2,2] [1.0, 3.0, 6.0, 12.0]
      %c3 = const f32[2] [-0.5, -5.0]
      %0 = dense(%x, %c0, %c1) : f32[3,2]  @"dense","bn1"
      %1 = dense(%x, %c2, %c3) : f32[3,2]  @"mm","bn2"
      return %0, %1
    }""")


def test_conv_bn_refusals():
    reasons = unchanged(f"""graph @main(%x: f32[1,1,3,3], %w: f32[2,1,1,1], %v: f32[1,2,2]) -> (%a: f32[1,2,3,3], %b: f32[1,2,3,3], %c: f32[1,2,3,3], %d: f32[1,2,2]) {{
      %c0 = const f32[2,1,1,1] [1.0, 2.0]
      %c6 = const f32[3] [1.0, 1.0, 1.0]
      %c7 = const f32[2,2] [1.0, 0.0, 0.0, 1.0]
      {BN}
      %0 = conv(%x, %c0) {{activation="relu"}} : f32[1,2,3,3]
      %1 = batch_norm(%0, %c1, %c2, %c3, %c4) : f32[1,2,3,3]
      %2 = conv(%x, %w) : f32[1,2,3,3]
      %3 = batch_norm(%2, %c1, %c2, %c3, %c4) : f32[1,2,3,3]
      %4 = conv(%x, %c0) : f32[1,2,3,3]
      %5 = batch_norm(%4, %c6, %c6, %c6, %c6) {{layout="NHWC"}} : f32[1,2,3,3]
      %6 = dense(%v, %c7) : f32[1,2,2]
      %7 = batch_norm(%6, %c1, %c2, %c3, %c4) : f32[1,2,2]
      return %1, %3, %5, %7
    }}""", "fuse-conv-bn")
    assert sorted(reasons) == sorted([
        "the conv already has the fused activation 'relu'",
        "the conv weight is not a constant",
        "the batch_norm layout NHWC differs from the conv layout NCHW",
        "the batch_norm normalizes axis 1 of the dense result f32[1,2,2], not its features (the last axis)",
    ])


# ---- fuse-bias / fuse-matmul-add -------------------------------------------------------------

def test_bias_into_conv_dense_and_matmul():
    golden("""graph @main(%x: f32[1,1,2,2], %v: f32[3,2]) -> (%a: f32[1,2,2,2], %b: f32[3,2], %c: f32[3,2]) {
      %c0 = const f32[2,1,1,1] [1.0, 2.0]
      %c1 = const f32[2] [1.0, 1.0]
      %c2 = const f32[2,1,1] [0.5, -1.0]
      %c3 = const f32[2,2] [1.0, 0.0, 0.0, 1.0]
      %c4 = const f32[1,2] [3.0, 4.0]
      %c5 = const f32[2,2] [1.0, 2.0, 3.0, 4.0]
      %0 = conv(%x, %c0, %c1) : f32[1,2,2,2]  @"conv"
      %1 = add(%c2, %0) : f32[1,2,2,2]  @"add"
      %2 = dense(%v, %c3) : f32[3,2]  @"dense"
      %3 = add(%2, %c4) : f32[3,2]  @"add2"
      %4 = matmul(%v, %c5) : f32[3,2]  @"mm"
      %5 = add(%4, %c4) : f32[3,2]  @"add3"
      return %1, %3, %5
    }""", "fuse-bias", """graph @main(%x: f32[1,1,2,2], %v: f32[3,2]) -> (%a: f32[1,2,2,2], %b: f32[3,2], %c: f32[3,2]) {
      %c0 = const f32[2,1,1,1] [1.0, 2.0]
      %c1 = const f32[2] [1.5, 0.0]
      %c2 = const f32[2,2] [1.0, 0.0, 0.0, 1.0]
      %c3 = const f32[2] [3.0, 4.0]
      %c4 = const f32[2,2] [1.0, 3.0, 2.0, 4.0]
      %c5 = const f32[2] [3.0, 4.0]
      %0 = conv(%x, %c0, %c1) : f32[1,2,2,2]  @"conv","add"
      %1 = dense(%v, %c2, %c3) : f32[3,2]  @"dense","add2"
      %2 = dense(%v, %c4, %c5) : f32[3,2]  @"mm","add3"
      return %0, %1, %2
    }""")


def test_bias_refusals():
    reasons = unchanged("""graph @main(%x: f32[1,1,2,3], %v: f32[3,2], %w: f32[2,2]) -> (%a: f32[1,2,2,3], %b: f32[3,2], %c: f32[2,1,2,3]) {
      %c0 = const f32[2,1,1,1] [1.0, 2.0]
      %c1 = const f32[1,1,1,3] [1.0, 2.0, 3.0]
      %c3 = const f32[2] [1.0, 2.0]
      %c4 = const f32[2,1,1,1] [1.0, 2.0]
      %0 = conv(%x, %c0) : f32[1,2,2,3]
      %1 = add(%0, %c1) : f32[1,2,2,3]
      %2 = matmul(%v, %w) : f32[3,2]
      %3 = add(%2, %c3) : f32[3,2]
      %4 = conv(%x, %c0) : f32[1,2,2,3]
      %5 = add(%4, %c4) : f32[2,2,2,3]
      %6 = reshape(%5) {shape=[2,1,2,6]} : f32[2,1,2,6]
      %7 = slice(%6) {axes=[3], ends=[3], starts=[0], steps=[1]} : f32[2,1,2,3]
      return %1, %3, %7
    }""", "fuse-bias")
    assert sorted(reasons) == sorted([
        "the addend f32[1,1,1,3] is not constant per output channel (axis 1)",
        "the matmul weight is not a constant",
        "the add broadcasts the conv result f32[1,2,2,3] to f32[2,2,2,3]",
    ])


def test_matmul_add_becomes_dense():
    golden("""graph @main(%x: f32[2,3]) -> (%a: f32[2,2], %b: f32[2,2]) {
      %c0 = const f32[3,2] [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
      %c1 = const f32[2] [0.5, -0.5]
      %c2 = const f32[2,3] [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]
      %0 = matmul(%x, %c0) : f32[2,2]  @"mm"
      %1 = add(%0, %c1) : f32[2,2]  @"add"
      %2 = matmul(%x, %c2) {transpose_b=1} : f32[2,2]  @"mm2"
      %3 = add(%c1, %2) : f32[2,2]  @"add2"
      return %1, %3
    }""", "fuse-matmul-add", """graph @main(%x: f32[2,3]) -> (%a: f32[2,2], %b: f32[2,2]) {
      %c0 = const f32[2,3] [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]
      %c1 = const f32[2] [0.5, -0.5]
      %c2 = const f32[2,3] [1.0, 3.0, 5.0, 2.0, 4.0, 6.0]
      %c3 = const f32[2] [0.5, -0.5]
      %0 = dense(%x, %c0, %c1) : f32[2,2]  @"mm","add"
      %1 = dense(%x, %c2, %c3) : f32[2,2]  @"mm2","add2"
      return %0, %1
    }""")


def test_matmul_add_refusals():
    reasons = unchanged("""graph @main(%x: f32[2,3], %t: f32[3,2]) -> (%a: f32[2,2], %b: f32[1,2,2], %c: f32[2,2]) {
      %c0 = const f32[3,2] [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
      %c1 = const f32[2] [0.5, -0.5]
      %c2 = const f32[1,3,2] [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
      %c3 = const f32[2,1] [1.0, 2.0]
      %c4 = const f32[3,2] [1.0, 2.0, 3.0, 4.0, 5.0, 6.0]
      %0 = matmul(%t, %c4) {transpose_a=1} : f32[2,2]
      %1 = add(%0, %c1) : f32[2,2]
      %2 = matmul(%x, %c2) : f32[1,2,2]
      %3 = add(%2, %c1) : f32[1,2,2]
      %4 = matmul(%x, %c0) : f32[2,2]
      %5 = add(%4, %c3) : f32[2,2]
      return %1, %3, %5
    }""", "fuse-matmul-add")
    assert sorted(reasons) == sorted([
        "the matmul transposes its first operand",
        "the matmul weight is f32[1,3,2], not a 2-D matrix",
        "the addend f32[2,1] is not constant per output feature",
    ])


# ---- fuse-activation ---------------------------------------------------------------------------

def test_activations_fuse_into_linear_ops():
    golden("""graph @main(%x: f32[1,1,2,2], %v: f32[2,2]) -> (%a: f32[1,2,2,2], %b: f32[2,2], %c: f32[2,2], %d: f32[2,2]) {
      %c0 = const f32[2,1,1,1] [1.0, -2.0]
      %c1 = const f32[2,2] [1.0, 0.0, 0.0, 1.0]
      %0 = conv(%x, %c0) : f32[1,2,2,2]  @"conv"
      %1 = relu(%0) : f32[1,2,2,2]  @"relu"
      %2 = dense(%v, %c1) : f32[2,2]  @"dense"
      %3 = clip(%2) {max=6.0, min=0.0} : f32[2,2]  @"relu6"
      %4 = matmul(%v, %c1) : f32[2,2]  @"mm"
      %5 = gelu(%4) {approximate="tanh"} : f32[2,2]  @"gelu"
      %6 = matmul(%v, %v) : f32[2,2]  @"mm2"
      %7 = leaky_relu(%6) {alpha=0.25} : f32[2,2]  @"leaky"
      return %1, %3, %5, %7
    }""", "fuse-activation", """graph @main(%x: f32[1,1,2,2], %v: f32[2,2]) -> (%a: f32[1,2,2,2], %b: f32[2,2], %c: f32[2,2], %d: f32[2,2]) {
      %c0 = const f32[2,1,1,1] [1.0, -2.0]
      %c1 = const f32[2,2] [1.0, 0.0, 0.0, 1.0]
      %0 = conv(%x, %c0) {activation="relu"} : f32[1,2,2,2]  @"conv","relu"
      %1 = dense(%v, %c1) {activation="clip", activation_params=[0.0, 6.0]} : f32[2,2]  @"dense","relu6"
      %2 = matmul(%v, %c1) {activation="gelu_tanh"} : f32[2,2]  @"mm","gelu"
      %3 = matmul(%v, %v) {activation="leaky_relu", activation_params=[0.25]} : f32[2,2]  @"mm2","leaky"
      return %0, %1, %2, %3
    }""")


def test_activation_refusals():
    reasons = unchanged("""graph @main(%v: f32[2,2]) -> (%a: f32[2,2], %b: f32[2,2], %c: f32[2,2], %d: f32[2,2]) {
      %0 = matmul(%v, %v) {activation="relu"} : f32[2,2]
      %1 = sigmoid(%0) : f32[2,2]
      %2 = matmul(%v, %v) : f32[2,2]
      %3 = clip(%2) {min=0.0} : f32[2,2]
      %4 = matmul(%v, %v) {transpose_b=1} : f32[2,2]
      %5 = relu(%4) : f32[2,2]
      return %1, %3, %5, %4
    }""", "fuse-activation")
    assert sorted(reasons) == sorted([
        "the matmul already has the fused activation 'relu'",
        "the clip bounds [0.0, inf] are not both finite",
        "the result of 'matmul' inside the pattern is a graph output",
    ])


# ---- fuse-elementwise --------------------------------------------------------------------------

CHAIN = """graph @main(%x: f32[2,3], %y: f32[3]) -> (%a: f32[2,3]{extra_type}) {{
  %c0 = const f32[] [2.0]
  %0 = mul(%x, %c0) : f32[2,3]  @"m"
  %1 = add(%0, %y) : f32[2,3]  @"a"
  %2 = relu(%1) : f32[2,3]  @"r"
  %3 = sigmoid(%2) : f32[2,3]  @"s"
  %4 = tanh(%2) : f32[2,3]  @"t"
  %5 = sub(%3, %4) : f32[2,3]  @"d"
  return %5{extra}
}}"""


def test_fuse_elementwise_one_group_with_a_value_used_twice_inside():
    golden(CHAIN.format(extra_type="", extra=""), "fuse-elementwise", r"""graph @main(%x: f32[2,3], %y: f32[3]) -> (%a: f32[2,3]) {
      %c0 = const f32[] [2.0]
      %0 = fused_elementwise(%x, %c0, %y) {body="%3 = mul(%0, %1); %4 = add(%3, %2); %5 = relu(%4); %6 = sigmoid(%5); %7 = tanh(%5); %8 = sub(%6, %7)"} : f32[2,3]  @"m","a","r","s","t","d"
      return %0
    }""")


def test_fuse_elementwise_stops_at_values_used_outside_and_is_idempotent():
    expected = r"""graph @main(%x: f32[2,3], %y: f32[3]) -> (%a: f32[2,3], %b: f32[2,3]) {
      %c0 = const f32[] [2.0]
      %0 = fused_elementwise(%x, %c0, %y) {body="%3 = mul(%0, %1); %4 = add(%3, %2); %5 = relu(%4)"} : f32[2,3]  @"m","a","r"
      %1 = fused_elementwise(%0) {body="%1 = sigmoid(%0); %2 = tanh(%0); %3 = sub(%1, %2)"} : f32[2,3]  @"s","t","d"
      return %1, %0
    }"""
    text = CHAIN.format(extra_type=", %b: f32[2,3]", extra=", %2")
    golden(text, "fuse-elementwise", expected)
    golden(text, "fuse-elementwise,fuse-elementwise", expected)


def test_fused_bodies_are_inlined_not_nested():
    golden(r"""graph @main(%x: f32[4]) -> (%y: f32[4]) {
      %0 = fused_elementwise(%x) {body="%1 = neg(%0); %2 = exp(%1)"} : f32[4]  @"f"
      %1 = relu(%0) : f32[4]  @"r"
      return %1
    }""", "fuse-elementwise", r"""graph @main(%x: f32[4]) -> (%y: f32[4]) {
      %0 = fused_elementwise(%x) {body="%1 = neg(%0); %2 = exp(%1); %3 = relu(%2)"} : f32[4]  @"f","r"
      return %0
    }""")


def test_fuse_elementwise_leaves_single_ops_and_integer_chains():
    assert unchanged("""graph @main(%x: f32[4], %i: i64[4]) -> (%y: f32[4], %z: i64[4]) {
      %0 = relu(%x) : f32[4]
      %1 = add(%i, %i) : i64[4]
      %2 = mul(%1, %i) : i64[4]
      return %0, %2
    }""", "fuse-elementwise") == []


def test_bad_body_is_a_verify_error():
    with pytest.raises(edgec.EdgecError, match="not defined before it"):
        edgec.parse_ir(r"""graph @main(%x: f32[4]) -> (%y: f32[4]) {
          %0 = fused_elementwise(%x) {body="%1 = neg(%3)"} : f32[4]
          return %0
        }""")


# ---- kernels in the built module ---------------------------------------------------------------

def test_a_fused_node_is_one_kernel():
    g = edgec.parse_ir(CHAIN.format(extra_type="", extra=""))
    fused = edgec.optimize(g, passes="fuse-elementwise")
    assert [n.op for n in fused.nodes] == ["fused_elementwise"]
    assert len(build_graph(fused, get_target("host")).kernels) == 1


def test_conv_bn_relu_and_residual_add_build_to_one_kernel_per_conv():
    g = edgec.parse_ir(f"""graph @main(%x: f32[1,2,4,4]) -> (%y: f32[1,2,4,4]) {{
      %c0 = const f32[2,2,1,1] [1.0, 2.0, 3.0, 4.0]
      {BN}
      %0 = conv(%x, %c0) : f32[1,2,4,4]
      %1 = batch_norm(%0, %c1, %c2, %c3, %c4) : f32[1,2,4,4]
      %2 = relu(%1) : f32[1,2,4,4]
      %3 = conv(%2, %c0) : f32[1,2,4,4]
      %4 = batch_norm(%3, %c1, %c2, %c3, %c4) : f32[1,2,4,4]
      %5 = add(%4, %x) : f32[1,2,4,4]
      %6 = relu(%5) : f32[1,2,4,4]
      return %6
    }}""")
    optimized = edgec.optimize(g, level=2)
    assert [n.op for n in optimized.nodes] == ["conv", "conv", "fused_elementwise"]
    assert optimized.nodes[0].attrs["activation"] == "relu"
    # the host pipeline may add layout transposes at the graph boundary; the rest is one
    # kernel per conv, the residual add and relu inside the second
    kernels = [k for k in build_graph(optimized, get_target("host")).kernels if not k.startswith("transpose")]
    assert len(kernels) == 2, kernels
