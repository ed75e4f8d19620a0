"""fuse-qdq: QDQ patterns become integer ops (passes/fuse_qdq.py states the cases).

Each case checks what the pass made and that the interpreter's outputs agree with the QDQ graph's
(fake quantization, the reference): equal up to one step of the output's quantization, which is
what float rounding of the two computations can change. A property test does the same on random
float graphs quantized by `edgec.quantize`, and a model quantized by ONNX Runtime's
`quantize_static` runs as integer kernels that equal ONNX Runtime's own (in its exact mode).
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import edgec
from edgec.passmanager import PassManager

from pass_helpers import run_pass, unchanged
import edgec.testing as S
from edgec.testing import graph_and_inputs

RNG = np.random.default_rng(7)


def arr(a) -> str:
    a = np.asarray(a)
    return "[" + ", ".join(str(v) for v in a.reshape(-1).tolist()) + "]"


def ops(graph) -> list[str]:
    return [n.op for n in graph.nodes]


def agree(before, after, step: float, seed: int = 0):
    """The outputs of the two graphs on random inputs, within one output step."""
    x = {v.name: np.random.default_rng(seed).standard_normal(v.type.shape).astype(np.float32) * 2
         for v in before.inputs}
    want, got = edgec.interpret(before, x), edgec.interpret(after, x)
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=0, atol=step * 1.001, err_msg=k)
    return want, got


W = RNG.integers(-127, 128, (3, 2, 3, 3))
B = RNG.integers(-300, 300, 3)
W_SCALE = [0.02, 0.03, 0.015]
B_SCALE = [0.05 * s for s in W_SCALE]  # x_scale * w_scale: as ONNX Runtime writes it


def conv_qdq(activation="", act_params="[]", y_scale=0.1, y_zp=0, bias=True, w_axis=0) -> str:
    bias_in = ", %1" if bias else ""
    return f"""graph @main(%x: f32[1,2,5,5]) -> (%y: f32[1,3,5,5]) {{
      %cw = const i8[3,2,3,3] {arr(W)}
      %cb = const i32[3] {arr(B)}
      %q = quantize_linear(%x) {{scale=[0.05], zero_point=[128], dtype="u8"}} : u8[1,2,5,5]  @"x_q"
      %dq = dequantize_linear(%q) {{scale=[0.05], zero_point=[128]}} : f32[1,2,5,5]  @"x_dq"
      %0 = dequantize_linear(%cw) {{axis={w_axis}, scale={arr(W_SCALE)}, zero_point=[0,0,0]}} : f32[3,2,3,3]  @"w_dq"
      %1 = dequantize_linear(%cb) {{axis=0, scale={arr(B_SCALE)}, zero_point=[0,0,0]}} : f32[3]  @"b_dq"
      %2 = conv(%dq, %0{bias_in}) {{pads=[1,1,1,1], activation="{activation}", activation_params={act_params}}} : f32[1,3,5,5]  @"conv"
      %3 = quantize_linear(%2) {{scale=[{y_scale}], zero_point=[{y_zp}], dtype="u8"}} : u8[1,3,5,5]  @"y_q"
      %4 = dequantize_linear(%3) {{scale=[{y_scale}], zero_point=[{y_zp}]}} : f32[1,3,5,5]  @"y_dq"
      return %4
    }}"""


def test_conv_with_int32_bias_and_implied_relu_becomes_qlinear_conv():
    before, after, pm = run_pass(conv_qdq("relu"), "fuse-qdq,dce")
    assert ops(after) == ["quantize_linear", "qlinear_conv", "dequantize_linear"]
    qc = after.nodes[1]
    a = qc.attrs
    assert (a["x_scale"], a["x_zero_point"], a["y_scale"], a["y_zero_point"], a["dtype"]) == (0.05, 128, 0.1, 0, "u8")
    assert a["w_scale"] == W_SCALE and a["pads"] == [1, 1, 1, 1]
    np.testing.assert_array_equal(qc.inputs[1].const_value(), W)
    np.testing.assert_array_equal(qc.inputs[2].const_value(), B)  # already in x_scale * w_scale units
    assert qc.origin == ("w_dq", "b_dq", "conv", "y_q")  # not the input's dequantize: it is x's
    assert pm.records[0].stats.get("conv") == 1
    agree(before, after, 0.1)


def test_conv_without_bias_and_with_clip_inside_its_range():
    # u8 with zero point 0 and scale 6/255: the quantized range is exactly [0, 6]
    before, after, _ = run_pass(conv_qdq("clip", "[0.0,6.0]", y_scale=6 / 255, bias=False), "fuse-qdq,dce")
    assert ops(after) == ["quantize_linear", "qlinear_conv", "dequantize_linear"]
    assert len(after.nodes[1].inputs) == 2
    agree(before, after, 6 / 255)


@pytest.mark.parametrize("act, attrs, y_scale", [("relu", "", 0.1), ("clip", " {min=0.0, max=6.0}", 6 / 255)])
def test_activation_node_between_conv_and_quantize_is_folded_when_implied(act, attrs, y_scale):
    text = conv_qdq(y_scale=y_scale).replace(
        '%3 = quantize_linear(%2)', f'%r = {act}(%2){attrs} : f32[1,3,5,5]  @"act"\n      %3 = quantize_linear(%r)')
    before, after, _ = run_pass(text, "fuse-qdq,dce")
    assert ops(after) == ["quantize_linear", "qlinear_conv", "dequantize_linear"]
    assert "act" in after.nodes[1].origin
    agree(before, after, y_scale)
    reasons = unchanged(text.replace("zero_point=[0]", "zero_point=[9]"), "fuse-qdq")  # relu/clip not implied
    assert any(f"'{act}' is not implied" in r for r in reasons), reasons


def test_activation_the_range_does_not_imply_is_refused():
    reasons = unchanged(conv_qdq("relu", y_zp=100), "fuse-qdq")
    assert any("'relu' is not implied" in r for r in reasons), reasons
    reasons = unchanged(conv_qdq("clip", "[0.0,1.0]", y_scale=0.1), "fuse-qdq")  # range [0, 25.5]
    assert any("'clip' is not implied" in r for r in reasons), reasons
    reasons = unchanged(conv_qdq("sigmoid"), "fuse-qdq")
    assert any("'sigmoid' is not implied" in r for r in reasons), reasons


def test_weight_quantized_along_another_axis_is_refused():
    text = conv_qdq().replace("%cw = const i8[3,2,3,3]", "%cw = const i8[3,2,3,3]")
    # per-axis along the input channels needs 2 scales
    text = text.replace(f"{{axis=0, scale={arr(W_SCALE)}, zero_point=[0,0,0]}} : f32[3,2,3,3]",
                        "{axis=1, scale=[0.02,0.03], zero_point=[0,0]} : f32[3,2,3,3]")
    reasons = unchanged(text, "fuse-qdq")
    assert any("quantized along axis 1" in r for r in reasons), reasons


def test_float_bias_is_rescaled_to_int32():
    text = conv_qdq().replace("%1 = dequantize_linear(%cb) {axis=0, scale=" + arr(B_SCALE)
                              + ", zero_point=[0,0,0]} : f32[3]  @\"b_dq\"",
                              "%1 = add(%cf, %cf) : f32[3]")
    text = text.replace("%cb = const i32[3]", "%cf = const f32[3] [0.25, -0.5, 1.0]\n      %cb = const i32[3]")
    text = text.replace("%1 = add(%cf, %cf) : f32[3]", "")
    text = text.replace("%2 = conv(%dq, %0, %1)", "%2 = conv(%dq, %0, %cf)")
    before, after, _ = run_pass(text, "fuse-qdq,dce")
    qc = [n for n in after.nodes if n.op == "qlinear_conv"][0]
    unit = np.float32(0.05) * np.asarray(W_SCALE, np.float32)
    np.testing.assert_array_equal(qc.inputs[2].const_value(), np.rint(np.array([0.25, -0.5, 1.0]) / unit))
    agree(before, after, 0.1)


def test_shared_input_dequantize_feeds_two_convs():
    text = conv_qdq().replace("return %4", """%5 = conv(%dq, %0, %1) {pads=[1,1,1,1]} : f32[1,3,5,5]  @"conv2"
      %6 = quantize_linear(%5) {scale=[0.1], zero_point=[0], dtype="u8"} : u8[1,3,5,5]  @"y2_q"
      %7 = dequantize_linear(%6) {scale=[0.1], zero_point=[0]} : f32[1,3,5,5]  @"y2_dq"
      return %4, %7""").replace("-> (%y: f32[1,3,5,5])", "-> (%y: f32[1,3,5,5], %z: f32[1,3,5,5])")
    before, after, _ = run_pass(text, "fuse-qdq,dce")
    assert ops(after).count("qlinear_conv") == 2 and "conv" not in ops(after)
    assert ops(after).count("dequantize_linear") == 2  # the outputs' only
    agree(before, after, 0.1)


DENSE_W = RNG.integers(-127, 128, (4, 6))  # [N, K]


def dense_qdq(kind: str) -> str:
    body = {
        "dense": '%2 = dense(%dq, %0, %1) : f32[2,4]  @"fc"',
        "gemm": '%m = matmul(%dq, %0) {transpose_b=1} : f32[2,4]  @"fc"\n      %2 = add(%m, %1) : f32[2,4]  @"fc_add"',
    }[kind]
    return f"""graph @main(%x: f32[2,6]) -> (%y: f32[2,4]) {{
      %cw = const i8[4,6] {arr(DENSE_W)}
      %cb = const i32[4] [100, -200, 300, 0]
      %q = quantize_linear(%x) {{scale=[0.04], zero_point=[120], dtype="u8"}} : u8[2,6]
      %dq = dequantize_linear(%q) {{scale=[0.04], zero_point=[120]}} : f32[2,6]
      %0 = dequantize_linear(%cw) {{axis=0, scale=[0.01,0.02,0.03,0.04], zero_point=[0,0,0,0]}} : f32[4,6]
      %1 = dequantize_linear(%cb) {{axis=0, scale=[0.0004,0.0008,0.0012,0.0016], zero_point=[0,0,0,0]}} : f32[4]
      {body}
      %3 = quantize_linear(%2) {{scale=[0.05], zero_point=[128], dtype="u8"}} : u8[2,4]
      %4 = dequantize_linear(%3) {{scale=[0.05], zero_point=[128]}} : f32[2,4]
      return %4
    }}"""


@pytest.mark.parametrize("kind", ["dense", "gemm"])
def test_dense_and_gemm_become_qlinear_matmul_with_the_weight_as_k_by_n(kind):
    before, after, _ = run_pass(dense_qdq(kind), "fuse-qdq,dce")
    assert ops(after) == ["quantize_linear", "qlinear_matmul", "dequantize_linear"]
    qm = after.nodes[1]
    np.testing.assert_array_equal(qm.inputs[1].const_value(), DENSE_W.T)
    assert qm.attrs["b_scale"] == [0.01, 0.02, 0.03, 0.04]
    agree(before, after, 0.05)


MOVE = """graph @main(%x: f32[1,2,4,4]) -> (%y: f32[1,8]) {{
      %q = quantize_linear(%x) {{scale=[0.05], zero_point=[128], dtype="u8"}} : u8[1,2,4,4]
      %dq = dequantize_linear(%q) {{scale=[0.05], zero_point=[128]}} : f32[1,2,4,4]
      %0 = max_pool(%dq) {{kernel_shape=[2,2], strides=[2,2]}} : f32[1,2,2,2]
      %1 = quantize_linear(%0) {{scale=[{s}], zero_point=[128], dtype="u8"}} : u8[1,2,2,2]
      %2 = dequantize_linear(%1) {{scale=[{s}], zero_point=[128]}} : f32[1,2,2,2]
      %3 = reshape(%2) {{shape=[1,8]}} : f32[1,8]
      %4 = quantize_linear(%3) {{scale=[{s}], zero_point=[128], dtype="u8"}} : u8[1,8]
      %5 = dequantize_linear(%4) {{scale=[{s}], zero_point=[128]}} : f32[1,8]
      return %5
    }}"""


def test_max_pool_and_reshape_run_on_the_integers():
    before, after, pm = run_pass(MOVE.format(s=0.05), "fuse-qdq,dce")
    assert ops(after) == ["quantize_linear", "max_pool", "reshape", "dequantize_linear"]
    assert after.nodes[1].output.type.dtype == "u8"
    assert pm.records[0].stats.get("move") == 2
    want, got = agree(before, after, 0.0)
    np.testing.assert_array_equal(got["y"], want["y"])  # data movement and max: exact


def test_different_parameters_keep_the_float_op():
    text = MOVE.format(s=0.05).replace(
        "%1 = quantize_linear(%0) {scale=[0.05]", "%1 = quantize_linear(%0) {scale=[0.07]").replace(
        "%2 = dequantize_linear(%1) {scale=[0.05]", "%2 = dequantize_linear(%1) {scale=[0.07]").replace(
        "%4 = quantize_linear(%3) {scale=[0.05]", "%4 = quantize_linear(%3) {scale=[0.07]").replace(
        "%5 = dequantize_linear(%4) {scale=[0.05]", "%5 = dequantize_linear(%4) {scale=[0.07]")
    before, after, pm = run_pass(text, "fuse-qdq,dce")
    pool = after.nodes[ops(after).index("max_pool")]
    assert pool.output.type.dtype == "f32"  # requantized from 0.05 to 0.07: stays in float
    assert pm.records[0].stats.get("refused-move") == 1 and pm.records[0].stats.get("move") == 1  # the reshape
    agree(before, after, 0.0)


def test_quantize_of_its_own_dequantize_is_the_integer_value():
    text = """graph @main(%x: u8[4]) -> (%y: u8[4]) {
      %0 = dequantize_linear(%x) {scale=[0.5], zero_point=[3]} : f32[4]
      %1 = quantize_linear(%0) {scale=[0.5], zero_point=[3], dtype="u8"} : u8[4]
      return %1
    }"""
    _, after, _ = run_pass(text, "fuse-qdq,dce")
    assert ops(after) == [] and after.outputs[0] is after.inputs[0]


def test_pass_is_in_every_pipeline_from_O1_before_folding():
    from edgec.targets import get_target
    for level in (1, 2, 3):
        assert get_target("arm-a72").pipeline(level).startswith("fuse-qdq,fold-constants")


# ---- property: random float graphs quantized by edgec.quantize ---------------------------------

@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow])
@given(data=graph_and_inputs(family=["cnn", "mlp"], focus=(S.gen_conv, S.gen_linear, S.gen_pool)))
def test_fused_graph_equals_the_qdq_graph_within_one_step(data):
    graph, feeds, _ = data
    samples = [feeds] + [{k: (v * 0.5 + 0.1).astype(v.dtype) for k, v in feeds.items()}]
    if any(v.type.dtype != "f32" for v in graph.inputs):
        return
    qdq = edgec.quantize(graph, samples)
    fused = PassManager("fuse-qdq,dce").run(qdq.copy())
    want, got = edgec.interpret(qdq, feeds), edgec.interpret(fused, feeds)
    steps = {v: n.attrs["scale"][0] for v, n in ((id(o), o.producer()) for o in qdq.outputs)
             if n is not None and n.op == "dequantize_linear"}
    for name, o in zip(qdq.output_names, qdq.outputs):
        step = steps.get(id(o), 0.0)
        np.testing.assert_allclose(got[name], want[name], rtol=1e-5, atol=step * 1.001 + 1e-6, err_msg=name)


def test_add_and_global_average_pool_of_quantized_tensors_become_qlinear_ops():
    text = """graph @main(%x: f32[1,3,4,4], %z: f32[1,3,4,4]) -> (%y: f32[1,3,1,1]) {
      %qa = quantize_linear(%x) {scale=[0.05], zero_point=[128], dtype="u8"} : u8[1,3,4,4]
      %a = dequantize_linear(%qa) {scale=[0.05], zero_point=[128]} : f32[1,3,4,4]
      %qb = quantize_linear(%z) {scale=[0.03], zero_point=[100], dtype="u8"} : u8[1,3,4,4]
      %b = dequantize_linear(%qb) {scale=[0.03], zero_point=[100]} : f32[1,3,4,4]
      %0 = add(%a, %b) : f32[1,3,4,4]  @"add"
      %1 = quantize_linear(%0) {scale=[0.08], zero_point=[120], dtype="u8"} : u8[1,3,4,4]  @"add_q"
      %2 = dequantize_linear(%1) {scale=[0.08], zero_point=[120]} : f32[1,3,4,4]
      %3 = global_avg_pool(%2) : f32[1,3,1,1]  @"gap"
      %4 = quantize_linear(%3) {scale=[0.02], zero_point=[128], dtype="u8"} : u8[1,3,1,1]  @"gap_q"
      %5 = dequantize_linear(%4) {scale=[0.02], zero_point=[128]} : f32[1,3,1,1]
      return %5
    }"""
    before, after, pm = run_pass(text, "fuse-qdq,dce")
    assert ops(after) == ["quantize_linear", "quantize_linear", "qlinear_add", "qlinear_global_avg_pool",
                          "dequantize_linear"]
    add = after.nodes[2]
    assert (add.attrs["a_scale"], add.attrs["b_zero_point"], add.attrs["y_scale"]) == (0.05, 100, 0.08)
    assert add.origin == ("add", "add_q")
    assert pm.records[0].stats.get("add") == 1 and pm.records[0].stats.get("global-avg-pool") == 1
    agree(before, after, 0.02)


def test_sigmoid_leaky_relu_avg_pool_and_concat_become_qlinear_ops():
    text = """graph @main(%x: f32[1,2,4,4]) -> (%y: f32[1,4,2,2]) {
      %q = quantize_linear(%x) {scale=[0.05], zero_point=[128], dtype="u8"} : u8[1,2,4,4]
      %d = dequantize_linear(%q) {scale=[0.05], zero_point=[128]} : f32[1,2,4,4]
      %0 = sigmoid(%d) : f32[1,2,4,4]  @"sig"
      %1 = quantize_linear(%0) {scale=[0.004], zero_point=[0], dtype="u8"} : u8[1,2,4,4]
      %2 = dequantize_linear(%1) {scale=[0.004], zero_point=[0]} : f32[1,2,4,4]
      %3 = leaky_relu(%d) {alpha=0.1} : f32[1,2,4,4]  @"leaky"
      %4 = quantize_linear(%3) {scale=[0.03], zero_point=[20], dtype="u8"} : u8[1,2,4,4]
      %5 = dequantize_linear(%4) {scale=[0.03], zero_point=[20]} : f32[1,2,4,4]
      %6 = avg_pool(%2) {kernel_shape=[2,2], strides=[2,2]} : f32[1,2,2,2]  @"pool"
      %7 = quantize_linear(%6) {scale=[0.004], zero_point=[0], dtype="u8"} : u8[1,2,2,2]
      %8 = dequantize_linear(%7) {scale=[0.004], zero_point=[0]} : f32[1,2,2,2]
      %m = max_pool(%5) {kernel_shape=[2,2], strides=[2,2]} : f32[1,2,2,2]
      %mq = quantize_linear(%m) {scale=[0.03], zero_point=[20], dtype="u8"} : u8[1,2,2,2]
      %9 = dequantize_linear(%mq) {scale=[0.03], zero_point=[20]} : f32[1,2,2,2]
      %10 = concat(%8, %9) {axis=1} : f32[1,4,2,2]  @"cat"
      %11 = quantize_linear(%10) {scale=[0.03], zero_point=[10], dtype="u8"} : u8[1,4,2,2]
      %12 = dequantize_linear(%11) {scale=[0.03], zero_point=[10]} : f32[1,4,2,2]
      return %12
    }"""
    before, after, pm = run_pass(text, "fuse-qdq,dce")
    assert sorted(ops(after)) == sorted(["quantize_linear", "qlinear_sigmoid", "qlinear_leaky_relu", "qlinear_avg_pool",
                                         "qlinear_concat", "max_pool", "dequantize_linear"])
    cat = after.nodes[ops(after).index("qlinear_concat")]
    assert cat.attrs["scales"] == [0.004, 0.03] and cat.attrs["zero_points"] == [0, 20]
    assert after.nodes[ops(after).index("qlinear_leaky_relu")].attrs["alpha"] == pytest.approx(0.1)
    agree(before, after, 0.03)
