"""Golden and negative tests of the recognition passes."""

import math

from pass_helpers import golden, unchanged

SQRT2 = math.sqrt(2)


def test_silu_either_order():
    golden("""graph @main(%x: f32[2,3]) -> (%a: f32[2,3], %b: f32[2,3]) {
      %0 = sigmoid(%x) : f32[2,3]  @"s1"
      %1 = mul(%x, %0) : f32[2,3]  @"m1"
      %2 = neg(%x) : f32[2,3]  @"n"
      %3 = sigmoid(%2) : f32[2,3]  @"s2"
      %4 = mul(%3, %2) : f32[2,3]  @"m2"
      return %1, %4
    }""", "recognize-silu", """graph @main(%x: f32[2,3]) -> (%a: f32[2,3], %b: f32[2,3]) {
      %0 = silu(%x) : f32[2,3]  @"s1","m1"
      %1 = neg(%x) : f32[2,3]  @"n"
      %2 = silu(%1) : f32[2,3]  @"s2","m2"
      return %0, %2
    }""")


def test_silu_refuses_shared_sigmoid():
    reasons = unchanged("""graph @main(%x: f32[3]) -> (%a: f32[3], %b: f32[3]) {
      %0 = sigmoid(%x) : f32[3]
      %1 = mul(%x, %0) : f32[3]
      return %1, %0
    }""", "recognize-silu")
    assert reasons == ["the result of 'sigmoid' inside the pattern is a graph output"]


def test_gelu_erf_form_as_pytorch_exports_it():
    golden(f"""graph @main(%x: f32[2,4]) -> (%y: f32[2,4]) {{
      %c0 = const f32[] [{SQRT2}]
      %c1 = const f32[] [1.0]
      %c2 = const f32[] [0.5]
      %0 = div(%x, %c0) : f32[2,4]  @"Div"
      %1 = erf(%0) : f32[2,4]  @"Erf"
      %2 = add(%1, %c1) : f32[2,4]  @"Add"
      %3 = mul(%x, %2) : f32[2,4]  @"Mul"
      %4 = mul(%3, %c2) : f32[2,4]  @"Mul_1"
      return %4
    }}""", "recognize-gelu", """graph @main(%x: f32[2,4]) -> (%y: f32[2,4]) {
      %0 = gelu(%x) : f32[2,4]  @"Div","Erf","Add","Mul","Mul_1"
      return %0
    }""")


def test_gelu_erf_form_with_half_first_and_inverse_sqrt2():
    golden(f"""graph @main(%x: f32[5]) -> (%y: f32[5]) {{
      %c0 = const f32[] [{1 / SQRT2}]
      %c1 = const f32[] [1.0]
      %c2 = const f32[] [0.5]
      %0 = mul(%c2, %x) : f32[5]  @"half"
      %1 = mul(%x, %c0) : f32[5]  @"scale"
      %2 = erf(%1) : f32[5]  @"erf"
      %3 = add(%c1, %2) : f32[5]  @"one"
      %4 = mul(%3, %0) : f32[5]  @"prod"
      return %4
    }}""", "recognize-gelu", """graph @main(%x: f32[5]) -> (%y: f32[5]) {
      %0 = gelu(%x) : f32[5]  @"half","scale","erf","one","prod"
      return %0
    }""")


def test_gelu_tanh_form():
    golden(f"""graph @main(%x: f32[6]) -> (%y: f32[6]) {{
      %c0 = const f32[] [3.0]
      %c1 = const f32[] [0.044715]
      %c2 = const f32[] [{math.sqrt(2 / math.pi)}]
      %c3 = const f32[] [1.0]
      %c4 = const f32[] [0.5]
      %0 = pow(%x, %c0) : f32[6]  @"pow"
      %1 = mul(%0, %c1) : f32[6]  @"k"
      %2 = add(%x, %1) : f32[6]  @"poly"
      %3 = mul(%2, %c2) : f32[6]  @"c"
      %4 = tanh(%3) : f32[6]  @"tanh"
      %5 = add(%4, %c3) : f32[6]  @"one"
      %6 = mul(%x, %5) : f32[6]  @"x"
      %7 = mul(%6, %c4) : f32[6]  @"half"
      return %7
    }}""", "recognize-gelu", """graph @main(%x: f32[6]) -> (%y: f32[6]) {
      %0 = gelu(%x) {approximate="tanh"} : f32[6]  @"pow","k","poly","c","tanh","one","x","half"
      return %0
    }""")


def test_gelu_refuses_wrong_constant():
    reasons = unchanged(f"""graph @main(%x: f32[4]) -> (%y: f32[4]) {{
      %c0 = const f32[] [{SQRT2}]
      %c1 = const f32[] [1.0]
      %c2 = const f32[] [0.6]
      %0 = div(%x, %c0) : f32[4]
      %1 = erf(%0) : f32[4]
      %2 = add(%1, %c1) : f32[4]
      %3 = mul(%x, %2) : f32[4]
      %4 = mul(%3, %c2) : f32[4]
      return %4
    }}""", "recognize-gelu")
    assert reasons == ["the constant 0.6 where the formula needs 0.5"]


def test_hardswish_forms():
    golden("""graph @main(%x: f32[4]) -> (%a: f32[4], %b: f32[4], %c: f32[4]) {
      %c0 = const f32[] [3.0]
      %c1 = const f32[] [6.0]
      %c2 = const f32[] [0.0]
      %0 = add(%x, %c0) : f32[4]  @"add"
      %1 = clip(%0) {max=6.0, min=0.0} : f32[4]  @"clip"
      %2 = mul(%x, %1) : f32[4]  @"mul"
      %3 = div(%2, %c1) : f32[4]  @"div"
      %4 = hard_sigmoid(%x) {alpha=0.16666666666666666, beta=0.5} : f32[4]  @"hs"
      %5 = mul(%4, %x) : f32[4]  @"mul2"
      %6 = add(%c0, %x) : f32[4]  @"add3"
      %7 = max(%6, %c2) : f32[4]  @"max"
      %8 = min(%7, %c1) : f32[4]  @"min"
      %9 = div(%8, %c1) : f32[4]  @"div3"
      %10 = mul(%x, %9) : f32[4]  @"mul3"
      return %3, %5, %10
    }""", "recognize-hardswish", """graph @main(%x: f32[4]) -> (%a: f32[4], %b: f32[4], %c: f32[4]) {
      %0 = hard_swish(%x) : f32[4]  @"add","clip","mul","div"
      %1 = hard_swish(%x) : f32[4]  @"hs","mul2"
      %2 = hard_swish(%x) : f32[4]  @"add3","max","min","div3","mul3"
      return %0, %1, %2
    }""")


def test_hardswish_refuses_onnx_default_hard_sigmoid_and_wrong_clip():
    reasons = unchanged("""graph @main(%x: f32[4]) -> (%a: f32[4], %b: f32[4]) {
      %c0 = const f32[] [3.0]
      %c1 = const f32[] [6.0]
      %0 = hard_sigmoid(%x) {alpha=0.2, beta=0.5} : f32[4]
      %1 = mul(%x, %0) : f32[4]
      %2 = add(%x, %c0) : f32[4]
      %3 = clip(%2) {max=4.0, min=0.0} : f32[4]
      %4 = mul(%x, %3) : f32[4]
      %5 = div(%4, %c1) : f32[4]
      return %1, %5
    }""", "recognize-hardswish")
    assert sorted(reasons) == ["clip bounds 0.0, 4.0 are not 0, 6", "hard_sigmoid alpha=0.2, beta=0.5 are not 1/6, 0.5"]


LAYERNORM = """graph @main(%x: f32[2,4]) -> (%y: f32[2,4]) {{
  %c0 = const f32[] [2.0]
  %c1 = const f32[] [1e-05]
  %c2 = const f32[4] [1.0, 2.0, 3.0, 4.0]
  %c3 = const f32[4] [0.5, 0.5, 0.5, 0.5]
  %0 = reduce_mean(%x) {{axes=[{axes}], keepdims=1}} : f32[{mean}]  @"m1"
  %1 = sub(%x, %0) : f32[2,4]  @"sub"
  %2 = pow(%1, %c0) : f32[2,4]  @"pow"
  %3 = reduce_mean(%2) {{axes=[{axes}], keepdims=1}} : f32[{mean}]  @"m2"
  %4 = add(%3, %c1) : f32[{mean}]  @"add"
  %5 = sqrt(%4) : f32[{mean}]  @"sqrt"
  %6 = div(%1, %5) : f32[2,4]  @"div"
  %7 = mul(%6, %c2) : f32[2,4]  @"mul"
  %8 = add(%7, %c3) : f32[2,4]  @"add2"
  return %8
}}"""


def test_layernorm_with_scale_and_bias():
    golden(LAYERNORM.format(axes="-1", mean="2,1"), "recognize-layernorm", """graph @main(%x: f32[2,4]) -> (%y: f32[2,4]) {
      %c0 = const f32[4] [1.0, 2.0, 3.0, 4.0]
      %c1 = const f32[4] [0.5, 0.5, 0.5, 0.5]
      %0 = layer_norm(%x, %c0, %c1) {axis=1, epsilon=1e-05} : f32[2,4]  @"m1","sub","pow","m2","add","sqrt","div","mul","add2"
      return %0
    }""")


def test_layernorm_without_epsilon_or_affine_and_with_d_times_d():
    golden("""graph @main(%x: f32[3,2,5]) -> (%y: f32[3,2,5]) {
      %0 = reduce_mean(%x) {axes=[1,2], keepdims=1} : f32[3,1,1]  @"m1"
      %1 = sub(%x, %0) : f32[3,2,5]  @"sub"
      %2 = mul(%1, %1) : f32[3,2,5]  @"sq"
      %3 = reduce_mean(%2) {axes=[-2,-1], keepdims=1} : f32[3,1,1]  @"m2"
      %4 = sqrt(%3) : f32[3,1,1]  @"sqrt"
      %5 = div(%1, %4) : f32[3,2,5]  @"div"
      return %5
    }""", "recognize-layernorm", """graph @main(%x: f32[3,2,5]) -> (%y: f32[3,2,5]) {
      %c0 = const f32[2,5] #00
      %c1 = const f32[2,5] #00
      %0 = layer_norm(%x, %c0, %c1) {axis=1, epsilon=0.0} : f32[3,2,5]  @"m1","sub","sq","m2","sqrt","div"
      return %0
    }""".replace("#00", "[1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0,1.0]", 1).replace("#00", "[0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0,0.0]"))


def test_layernorm_refuses_leading_axes():
    reasons = unchanged(LAYERNORM.format(axes="0", mean="1,4"), "recognize-layernorm")
    assert reasons == ["the reductions over axes [0] are not over the trailing axes"]
