"""Golden and negative tests of the fusion passes, and kernel counts of fused graphs."""

import numpy as np
import pytest

import edgec
from edgec.ops.fused import parse_body
from edgec.targets import get_target, level_pipelines
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


# ---- fuse-epilogue -------------------------------------------------------------------------------

def test_residual_add_and_relu_join_the_conv():
    golden(r"""graph @main(%x: f32[1,2,4,4]) -> (%y: f32[1,2,4,4]) {
      %c0 = const f32[2,2,1,1] [1.0, 2.0, 3.0, 4.0]
      %0 = conv(%x, %c0) : f32[1,2,4,4]  @"conv"
      %1 = fused_elementwise(%0, %x) {body="%2 = add(%0, %1); %3 = relu(%2)"} : f32[1,2,4,4]  @"add","relu"
      return %1
    }""", "fuse-epilogue", r"""graph @main(%x: f32[1,2,4,4]) -> (%y: f32[1,2,4,4]) {
      %c0 = const f32[2,2,1,1] [1.0, 2.0, 3.0, 4.0]
      %0 = fused(%x, %c0) {body="%2 = conv(%0, %1) {activation=\"\", activation_params=[], dilations=[], group=1, layout=\"NCHW\", pads=[], strides=[]}; %3 = add(%2, %0); %4 = relu(%3)"} : f32[1,2,4,4]  @"conv","add","relu"
      return %0
    }""")


def test_dense_and_matmul_take_the_op_after_them():
    golden(r"""graph @main(%x: f32[2,3], %r: f32[2,4], %a: f32[2,4,5], %b: f32[2,5,3]) -> (%y: f32[2,4], %z: f32[2,4,3]) {
      %c0 = const f32[4,3] [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]
      %c1 = const f32[] [8.0]
      %0 = dense(%x, %c0) {activation="relu"} : f32[2,4]  @"d"
      %1 = add(%r, %0) : f32[2,4]  @"res"
      %2 = matmul(%a, %b) : f32[2,4,3]  @"mm"
      %3 = div(%2, %c1) : f32[2,4,3]  @"scale"
      return %1, %3
    }""", "fuse-epilogue", r"""graph @main(%x: f32[2,3], %r: f32[2,4], %a: f32[2,4,5], %b: f32[2,5,3]) -> (%y: f32[2,4], %z: f32[2,4,3]) {
      %c0 = const f32[4,3] [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]
      %c1 = const f32[] [8.0]
      %0 = fused(%x, %c0, %r) {body="%3 = dense(%0, %1) {activation=\"relu\", activation_params=[]}; %4 = add(%2, %3)"} : f32[2,4]  @"d","res"
      %1 = fused(%a, %b, %c1) {body="%3 = matmul(%0, %1) {activation=\"\", activation_params=[], transpose_a=0, transpose_b=0}; %4 = div(%3, %2)"} : f32[2,4,3]  @"mm","scale"
      return %0, %1
    }""")


def test_fuse_epilogue_refusals():
    """A linear result used twice or returned, an epilogue that broadcasts to a larger shape, an
    integer result, and a second epilogue after a fused node stay as they are."""
    assert unchanged(r"""graph @main(%x: f32[2,3], %r: f32[5,2,4], %i: i32[2,3], %j: i32[3,4]) -> (%a: f32[2,4], %b: f32[2,4], %c: f32[2,4], %d: f32[2,4], %e: f32[5,2,4], %f: i32[2,4], %g: f32[2,4]) {
      %c0 = const f32[4,3] [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 12.0]
      %0 = dense(%x, %c0) : f32[2,4]
      %1 = relu(%0) : f32[2,4]
      %2 = neg(%0) : f32[2,4]
      %3 = dense(%x, %c0) : f32[2,4]
      %4 = sigmoid(%3) : f32[2,4]
      %5 = dense(%x, %c0) : f32[2,4]
      %6 = add(%r, %5) : f32[5,2,4]
      %7 = matmul(%i, %j) : i32[2,4]
      %8 = abs(%7) : i32[2,4]
      %9 = fused(%x, %c0) {body="%2 = dense(%0, %1); %3 = neg(%2)"} : f32[2,4]
      %10 = exp(%9) : f32[2,4]
      return %1, %2, %4, %3, %6, %8, %10
    }""", "fuse-epilogue") == []


def test_a_fused_body_must_start_with_a_linear_op():
    with pytest.raises(edgec.EdgecError, match="the first step must be one of conv, dense, matmul"):
        edgec.parse_ir(r"""graph @main(%x: f32[4]) -> (%y: f32[4]) {
          %0 = fused(%x) {body="%1 = neg(%0); %2 = exp(%1)"} : f32[4]
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
    optimized = edgec.optimize(g, passes=level_pipelines("NCHW")[2])
    assert [n.op for n in optimized.nodes] == ["conv", "fused"]
    assert optimized.nodes[0].attrs["activation"] == "relu"
    assert [op for op, _, _ in parse_body(optimized.nodes[1].attrs["body"], 4, True)] == ["conv", "add", "relu"]
    # one kernel per node: the residual add and relu inside the second conv's
    assert build_graph(optimized, get_target("host")).kernels == ["k0_conv_relu", "k1_conv_add_relu"]


# ---- fuse-pad: a zero pad of the spatial axes becomes the conv's pads ------------------------------

def test_pad_folds_into_conv_pads_nchw_and_nhwc():
    golden("""graph @main(%x: f32[1,1,3,3]) -> (%y: f32[1,1,5,4]) {
      %c0 = const f32[1,1,1,1] [2.0]
      %0 = pad(%x) {pads=[0,0,1,0,0,0,1,1]} : f32[1,1,5,4]  @"pad"
      %1 = conv(%0, %c0) : f32[1,1,5,4]  @"conv"
      return %1
    }""", "fuse-pad", """graph @main(%x: f32[1,1,3,3]) -> (%y: f32[1,1,5,4]) {
      %c0 = const f32[1,1,1,1] [2.0]
      %0 = conv(%x, %c0) {pads=[1,0,1,1]} : f32[1,1,5,4]  @"pad","conv"
      return %0
    }""")
    golden("""graph @main(%x: f32[1,3,3,1]) -> (%y: f32[1,3,3,1]) {
      %c0 = const f32[1,3,3,1] [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
      %0 = pad(%x) {pads=[0,1,0,0,0,0,1,0]} : f32[1,4,4,1]  @"pad"
      %1 = conv(%0, %c0) {layout="NHWC", pads=[1,0,0,1]} : f32[1,3,3,1]  @"conv"
      return %1
    }""", "fuse-pad", """graph @main(%x: f32[1,3,3,1]) -> (%y: f32[1,3,3,1]) {
      %c0 = const f32[1,3,3,1] [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0]
      %0 = conv(%x, %c0) {layout="NHWC", pads=[2,0,0,2]} : f32[1,3,3,1]  @"pad","conv"
      return %0
    }""")


@pytest.mark.parametrize("attrs,reason", [
    ({"pads": [0, 0, 1, 1, 0, 0, 1, 1], "mode": "edge"}, "not zeros"),
    ({"pads": [0, 0, 1, 1, 0, 0, 1, 1], "value": 1.0}, "not zeros"),
    ({"pads": [0, 1, 1, 1, 0, 0, 1, 1]}, "batch or channel"),
    ({"pads": [0, 0, 1, -1, 0, 0, 1, 1]}, "crops"),
])
def test_pad_refusals(attrs, reason):
    from edgec.ir import Graph, TensorType
    g = Graph("g")
    x = g.add_input("x", TensorType("f32", (1, 1, 3, 3)))
    padded = g.add("pad", [x], attrs).output
    y = g.add("conv", [padded, Graph.const(np.ones((1, padded.type.shape[1], 1, 1), np.float32))]).output
    g.set_outputs([y], ["y"])
    reasons = unchanged(str(g), "fuse-pad")
    assert any(reason in r for r in reasons), reasons


def test_a_pad_with_other_uses_stays():
    reasons = unchanged("""graph @main(%x: f32[1,1,3,3]) -> (%y: f32[1,1,5,5], %p: f32[1,1,5,5]) {
      %c0 = const f32[1,1,1,1] [2.0]
      %0 = pad(%x) {pads=[0,0,1,1,0,0,1,1]} : f32[1,1,5,5]
      %1 = conv(%0, %c0) : f32[1,1,5,5]
      return %1, %0
    }""", "fuse-pad")
    assert any("other uses" in r for r in reasons), reasons
