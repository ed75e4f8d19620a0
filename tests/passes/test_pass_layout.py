"""convert-layout: golden conversion, refusals, and CNNs converted end to end."""

import sys
from pathlib import Path

import numpy as np
import pytest

import edgec
from edgec.targets import level_pipelines

from pass_helpers import golden, run_pass, unchanged
from edgec.testing import random_inputs
from onnx_util import assert_close, qlinear_conv_chain, run_ort

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import make_models  # noqa: E402

CNN = """graph @main(%x: f32[1,2,3,3]) -> (%y: f32[1,2]) {
  %c0 = const f32[2,2,1,1] [1.0, 2.0, 3.0, 4.0]
  %c1 = const f32[2,1,1] [0.5, -0.5]
  %0 = conv(%x, %c0) : f32[1,2,3,3]  @"conv1"
  %1 = add(%0, %c1) : f32[1,2,3,3]  @"add"
  %2 = relu(%1) : f32[1,2,3,3]  @"relu"
  %3 = conv(%2, %c0) : f32[1,2,3,3]  @"conv2"
  %4 = max_pool(%3) {kernel_shape=[3,3]} : f32[1,2,1,1]  @"pool"
  %5 = reshape(%4) {shape=[1,2]} : f32[1,2]  @"flat"
  return %5
}"""


def test_convert_to_nhwc_sinks_and_cancels_transposes():
    pm = golden(CNN, "convert-layout{to=NHWC}", """graph @main(%x: f32[1,2,3,3]) -> (%y: f32[1,2]) {
      %c0 = const f32[2,1,1,2] [1.0, 2.0, 3.0, 4.0]
      %c1 = const f32[1,1,1,2] [0.5, -0.5]
      %c2 = const f32[2,1,1,2] [1.0, 2.0, 3.0, 4.0]
      %0 = transpose(%x) {perm=[0,2,3,1]} : f32[1,3,3,2]  @"conv1"
      %1 = conv(%0, %c0) {layout="NHWC"} : f32[1,3,3,2]  @"conv1"
      %2 = add(%1, %c1) : f32[1,3,3,2]  @"add"
      %3 = relu(%2) : f32[1,3,3,2]  @"relu"
      %4 = conv(%3, %c2) {layout="NHWC"} : f32[1,3,3,2]  @"conv2"
      %5 = max_pool(%4) {kernel_shape=[3,3], layout="NHWC"} : f32[1,1,1,2]  @"pool"
      %6 = reshape(%5) {shape=[1,2]} : f32[1,2]  @"pool","flat"
      return %6
    }""")
    stats = pm.records[0].stats
    assert (stats["transposes-before"], stats["transposes-inserted"], stats["transposes-removed"],
            stats["transposes-left"]) == (0, 6, 5, 1)
    assert stats["weights-transformed"] == 2


def test_round_trip_back_to_nchw_keeps_values():
    before, after, _ = run_pass(CNN, "convert-layout{to=NHWC},convert-layout{to=NCHW},dce")
    assert all(n.attrs.get("layout", "NCHW") == "NCHW" for n in after.nodes)
    feeds = random_inputs(before, 3)
    assert_close(edgec.interpret(after, feeds), edgec.interpret(before, feeds))


def test_convert_to_the_layout_a_graph_has_changes_nothing():
    assert unchanged(CNN, "convert-layout{to=NCHW}") == []


def test_non_constant_weights_get_a_transpose_node():
    _, after, pm = run_pass("""graph @main(%x: f32[1,2,3,3], %w: f32[2,2,2,2]) -> (%y: f32[1,2,2,2]) {
      %0 = conv(%x, %w) : f32[1,2,2,2]
      return %0
    }""", "convert-layout")
    assert [n.op for n in after.nodes] == ["transpose", "transpose", "conv", "transpose"]
    assert pm.records[0].stats["transposes-inserted"] == 3


def test_sinking_refusals():
    reasons = unchanged("""graph @main(%a: f32[2,3,4], %b: f32[4,3,2], %c: f32[4,2,3]) -> (%x: f32[4,2,3], %y: f32[4,2,3], %z: f32[4,2,3], %t: f32[4,2,3]) {
      %0 = transpose(%a) {perm=[2,0,1]} : f32[4,2,3]
      %1 = transpose(%b) {perm=[0,2,1]} : f32[4,2,3]
      %2 = add(%0, %1) : f32[4,2,3]
      %3 = transpose(%a) {perm=[2,0,1]} : f32[4,2,3]
      %4 = mul(%3, %c) : f32[4,2,3]
      %5 = transpose(%a) {perm=[2,0,1]} : f32[4,2,3]
      %6 = relu(%5) : f32[4,2,3]
      return %2, %4, %6, %5
    }""", "convert-layout")
    assert sorted(reasons) == sorted([
        "its operands are transposed by different permutations",
        "an operand is neither a constant nor transposed alike",
        "a transposed operand has other uses",
    ])


def test_unknown_layout_is_an_error():
    with pytest.raises(edgec.EdgecError, match="must be one of NHWC, NCHW"):
        run_pass(CNN, "convert-layout{to=NCWH}")


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2"])
def test_cnn_converted_end_to_end_keeps_transposes_only_at_the_boundary(name):
    graph = edgec.import_onnx(make_models.build(name, small=True))
    feeds = random_inputs(graph, 0)
    expected = edgec.interpret(graph, feeds)
    optimized = edgec.optimize(graph, passes=level_pipelines("NHWC")[3])
    transposes = [n for n in optimized.nodes if n.op == "transpose"]
    # the one transpose left reads the graph input
    assert len(transposes) == 1 and transposes[0].inputs[0] is optimized.inputs[0]
    assert all(n.attrs.get("layout") == "NHWC" for n in optimized.nodes if "layout" in n.attrs)
    assert_close(edgec.interpret(optimized, feeds), expected)


def test_transposes_sink_through_resize_and_concat():
    golden("""graph @main(%x: f32[1,2,2,2]) -> (%y: f32[1,4,4,4]) {
      %c0 = const f32[2,2,1,1] [1.0, 0.0, 0.0, 1.0]
      %0 = conv(%x, %c0) : f32[1,2,2,2]  @"conv"
      %1 = resize(%0) {scales=[1.0,1.0,2.0,2.0], sizes=[1,2,4,4]} : f32[1,2,4,4]  @"up"
      %2 = conv(%1, %c0) : f32[1,2,4,4]  @"conv2"
      %3 = concat(%1, %2) {axis=1} : f32[1,4,4,4]  @"cat"
      return %3
    }""", "convert-layout{to=NHWC}", """graph @main(%x: f32[1,2,2,2]) -> (%y: f32[1,4,4,4]) {
      %c0 = const f32[2,1,1,2] [1.0, 0.0, 0.0, 1.0]
      %c1 = const f32[2,1,1,2] [1.0, 0.0, 0.0, 1.0]
      %0 = transpose(%x) {perm=[0,2,3,1]} : f32[1,2,2,2]  @"conv"
      %1 = conv(%0, %c0) {layout="NHWC"} : f32[1,2,2,2]  @"conv"
      %2 = resize(%1) {scales=[1.0,2.0,2.0,1.0], sizes=[1,4,4,2]} : f32[1,4,4,2]  @"up"
      %3 = conv(%2, %c1) {layout="NHWC"} : f32[1,4,4,2]  @"conv2"
      %4 = concat(%2, %3) {axis=3} : f32[1,4,4,4]  @"cat"
      %5 = transpose(%4) {perm=[0,3,1,2]} : f32[1,4,4,4]  @"cat"
      return %5
    }""")


def _conv_then(tail: str, out_type: str) -> str:
    return f"""graph @main(%x: f32[1,2,3,4]) -> (%y: {out_type}) {{
  %c0 = const f32[3,2,1,1] [1.0, 2.0, 3.0, 4.0, -1.0, 0.5]
  %0 = conv(%x, %c0) : f32[1,3,3,4]  @"conv"
  %1 = {tail} : {out_type}  @"tail"
  return %1
}}"""


@pytest.mark.parametrize("tail,out_type,ops_after", [
    # spatial mean without keepdims: NHWC axes [1,2], the channels stay last: no transpose after
    ("reduce_mean(%0) {axes=[2,3], keepdims=0}", "f32[1,3]", ["transpose", "conv", "reduce_mean"]),
    ("reduce_max(%0) {axes=[-1], keepdims=1}", "f32[1,3,3,1]", ["transpose", "conv", "reduce_max", "transpose"]),
    ("reduce_sum(%0) {axes=[1], keepdims=0}", "f32[1,3,4]", ["transpose", "conv", "reduce_sum"]),
    ("softmax(%0) {axis=1}", "f32[1,3,3,4]", ["transpose", "conv", "softmax", "transpose"]),
    ("slice(%0) {starts=[1], ends=[3], axes=[1], steps=[1]}", "f32[1,2,3,4]",
     ["transpose", "conv", "slice", "transpose"]),
])
def test_transposes_sink_through_reductions_softmax_and_slice(tail, out_type, ops_after):
    before, after, pm = run_pass(_conv_then(tail, out_type), "convert-layout{to=NHWC},dce")
    assert [n.op for n in after.nodes] == ops_after
    feeds = random_inputs(before, 5)
    assert_close(edgec.interpret(after, feeds), edgec.interpret(before, feeds))


def test_softmax_over_a_run_of_axes_is_not_sunk():
    text = _conv_then("softmax(%0) {axis=1, coerce_2d=1}", "f32[1,3,3,4]")
    _, after, _ = run_pass(text, "convert-layout{to=NHWC},dce")
    assert [n.op for n in after.nodes] == ["transpose", "conv", "transpose", "softmax"]


def test_quantized_conv_chain_keeps_transposes_only_at_the_boundary():
    """QuantizeLinear -> QLinearConv 3x3, 3x3/2, a u8 MaxPool, depthwise 3x3, 1x1 -> DequantizeLinear:
    in NHWC, one transpose after the quantize, one after the dequantize, none in between, and the
    interpreter still equals ONNX Runtime exactly."""
    model, feeds = qlinear_conv_chain()
    optimized = edgec.optimize(edgec.import_onnx(model), passes="convert-layout{to=NHWC},dce")
    assert [n.op for n in optimized.nodes] == ["quantize_linear", "transpose", "qlinear_conv", "qlinear_conv",
                                               "max_pool", "qlinear_conv", "qlinear_conv", "dequantize_linear",
                                               "transpose"]
    assert all(n.attrs["layout"] == "NHWC" for n in optimized.nodes if "layout" in n.attrs)
    np.testing.assert_array_equal(edgec.interpret(optimized, feeds)["y"], run_ort(model, feeds)["y"])


def test_conv_integer_weights_are_transformed_and_stay_per_channel():
    pm = golden("""graph @main(%x: u8[1,2,3,3]) -> (%y: i32[1,3,2,3]) {
      %c0 = const u8[3,2,2,1] [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]
      %0 = conv_integer(%x, %c0) {x_zero_point=7, w_zero_point=[1, 2, 3]} : i32[1,3,2,3]  @"conv"
      return %0
    }""", "convert-layout{to=NHWC}", """graph @main(%x: u8[1,2,3,3]) -> (%y: i32[1,3,2,3]) {
      %c0 = const u8[3,2,1,2] [1, 3, 2, 4, 5, 7, 6, 8, 9, 11, 10, 12]
      %0 = transpose(%x) {perm=[0,2,3,1]} : u8[1,3,3,2]  @"conv"
      %1 = conv_integer(%0, %c0) {layout="NHWC", x_zero_point=7, w_zero_point=[1, 2, 3]} : i32[1,2,3,3]  @"conv"
      %2 = transpose(%1) {perm=[0,3,1,2]} : i32[1,3,2,3]  @"conv"
      return %2
    }""")
    assert pm.records[0].stats["weights-transformed"] == 1


def test_transposes_sink_through_quantize_and_dequantize():
    """Per axis (a negative axis too): the axis follows the permutation; per tensor: unchanged."""
    golden("""graph @main(%x: f32[1,2,3,3]) -> (%y: f32[1,2,3,3]) {
      %c0 = const f32[2,2,1,1] [1.0, 2.0, 3.0, 4.0]
      %0 = conv(%x, %c0) : f32[1,2,3,3]  @"conv"
      %1 = quantize_linear(%0) {scale=[0.1, 0.25], zero_point=[0, 3], axis=-3, dtype="i8"} : i8[1,2,3,3]  @"q"
      %2 = dequantize_linear(%1) {scale=[0.5]} : f32[1,2,3,3]  @"dq"
      return %2
    }""", "convert-layout{to=NHWC}", """graph @main(%x: f32[1,2,3,3]) -> (%y: f32[1,2,3,3]) {
      %c0 = const f32[2,1,1,2] [1.0, 2.0, 3.0, 4.0]
      %0 = transpose(%x) {perm=[0,2,3,1]} : f32[1,3,3,2]  @"conv"
      %1 = conv(%0, %c0) {layout="NHWC"} : f32[1,3,3,2]  @"conv"
      %2 = quantize_linear(%1) {scale=[0.1, 0.25], zero_point=[0, 3], axis=3, dtype="i8"} : i8[1,3,3,2]  @"q"
      %3 = dequantize_linear(%2) {scale=[0.5]} : f32[1,3,3,2]  @"dq"
      %4 = transpose(%3) {perm=[0,3,1,2]} : f32[1,2,3,3]  @"dq"
      return %4
    }""")
