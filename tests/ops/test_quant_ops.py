"""Quantization ops against ONNX Runtime (bit-exact): reference interpreter and compiled host module.

Many cases share one model (one compile); a mismatch names the output `<OnnxOp>_<case index>`."""

import numpy as np
import pytest
from onnx import TensorProto, helper

import edgec
from edgec.errors import EdgecError
from onnx_util import check_model, make_model, multi_node_model

rng = np.random.default_rng(2)
F = np.float32


def check_cases(cases, opset, level: int = 0):
    model, feeds = multi_node_model(cases, opset)
    return check_model(model, feeds, level=level)


def _halves_and_extremes(scale: float, zp: int, shape=(2, 3, 4)) -> np.ndarray:
    """Values landing exactly on .5 after division by a power-of-two scale, plus values far outside
    the quantized range (saturation) and random values."""
    k = rng.integers(-300, 300, shape).astype(F)
    x = ((k + 0.5) * F(scale)).astype(F)
    x.flat[:4] = [1e6, -1e6, (127.5 - zp) * scale, (-128.5 - zp) * scale]
    x.flat[-6:] = rng.standard_normal(6).astype(F) * 20
    return x


# ---- quantize / dequantize -----------------------------------------------------------------------

def test_quantize_per_tensor():
    cases = []
    for scale, zp, dtype in [(0.25, 128, np.uint8), (0.5, 0, np.uint8), (0.25, -3, np.int8), (0.125, 0, np.int8),
                             (0.0371, 17, np.uint8), (0.0371, 5, np.int8)]:
        x = _halves_and_extremes(scale, zp)
        cases.append(("QuantizeLinear", {"x": x}, {"s": np.array(scale, F), "z": np.array(zp, dtype)}, {}))
    x = _halves_and_extremes(0.25, 0)
    cases.append(("QuantizeLinear", {"x": x}, {"s": np.array(0.25, F)}, {}))  # no zero point: u8
    x1 = _halves_and_extremes(0.5, 3, shape=(20,))  # 1-D: the default axis 1 does not exist, unused
    cases.append(("QuantizeLinear", {"x": x1}, {"s": np.array(0.5, F), "z": np.array(3, np.int8)}, {}))
    cases.append(("DequantizeLinear", {"x": _i8((20,))}, {"s": np.array(0.5, F), "z": np.array(3, np.int8)}, {}))
    check_cases(cases, 13)


@pytest.mark.parametrize("opset", [13, 19, 21])
def test_quantize_per_axis(opset):
    x = rng.standard_normal((2, 3, 4)).astype(F) * 30
    s1 = np.array([0.25, 0.1, 0.5], F)
    cases = [
        ("QuantizeLinear", {"x": x}, {"s": s1, "z": np.array([0, 10, 250], np.uint8)}, {"axis": 1}),
        ("QuantizeLinear", {"x": x}, {"s": s1, "z": np.array([0, -10, 100], np.int8)}, {"axis": -2}),
        ("QuantizeLinear", {"x": x}, {"s": np.array([0.3, 0.7, 0.2, 0.5], F), "z": np.array([1, 2, 3, -4], np.int8)},
         {"axis": 2}),
        ("QuantizeLinear", {"x": x}, {"s": np.array([0.2, 0.9], F), "z": np.array([100, 7], np.uint8)}, {"axis": 0}),
    ]
    if opset >= 21:  # no zero point: output_dtype picks the type
        cases.append(("QuantizeLinear", {"x": x}, {"s": np.array(0.25, F)}, {"output_dtype": 3}))  # int8
    check_cases(cases, opset)


def test_dequantize():
    xu = rng.integers(0, 256, (2, 3, 4)).astype(np.uint8)
    xi = rng.integers(-128, 128, (2, 3, 4)).astype(np.int8)
    x32 = rng.integers(-2**20, 2**20, (2, 3, 4)).astype(np.int32)
    xu.flat[:2], xi.flat[:2] = [0, 255], [-128, 127]
    cases = [
        ("DequantizeLinear", {"x": xu}, {"s": np.array(0.0371, F), "z": np.array(128, np.uint8)}, {}),
        ("DequantizeLinear", {"x": xu}, {"s": np.array(0.5, F)}, {}),
        ("DequantizeLinear", {"x": xi}, {"s": np.array(0.02, F), "z": np.array(-5, np.int8)}, {}),
        ("DequantizeLinear", {"x": x32}, {"s": np.array(0.001, F)}, {}),
        ("DequantizeLinear", {"x": xu}, {"s": np.array([0.1, 0.2, 0.3], F), "z": np.array([0, 128, 255], np.uint8)},
         {"axis": 1}),
        ("DequantizeLinear", {"x": xi}, {"s": np.array([0.1, 0.2, 0.3, 0.4], F), "z": np.array([0, 1, -2, 3], np.int8)},
         {"axis": -1}),
    ]
    check_cases(cases, 13)


def test_quantize_dequantize_ir():
    x = rng.standard_normal((1, 3, 2, 2)).astype(F)
    model, _ = multi_node_model([("QuantizeLinear", {"x": x}, {"s": np.array([0.1, 0.2, 0.3], F),
                                                             "z": np.array([1, 2, 3], np.int8)}, {"axis": -3})], 13)
    (node,) = edgec.import_onnx(model).nodes
    assert node.op == "quantize_linear" and node.attrs["dtype"] == "i8" and node.attrs["zero_point"] == [1, 2, 3]
    assert np.allclose(node.attrs["scale"], [0.1, 0.2, 0.3]) and node.attrs["axis"] == -3


def test_a_non_constant_scale_must_be_per_tensor():
    x = rng.standard_normal((2, 3)).astype(F)
    model, _ = multi_node_model([("QuantizeLinear", {"x": x, "s": np.full(3, 0.1, F)}, {}, {"axis": 1})], 13)
    with pytest.raises(EdgecError, match="QuantizeLinear_node0.*must be per-tensor"):
        edgec.import_onnx(model)


# ---- integer matmul / conv --------------------------------------------------------------------------

def _u8(shape, lo=0, hi=256):
    return rng.integers(lo, hi, shape).astype(np.uint8)


def _i8(shape, lo=-128, hi=128):
    return rng.integers(lo, hi, shape).astype(np.int8)


def test_matmul_integer():
    a = _u8((3, 5, 8))
    b = _u8((8, 6))
    bi = _i8((8, 6), -64, 64)  # u8 x s8 stays clear of 16-bit saturation in ORT's AVX2 kernel
    cases = [
        ("MatMulInteger", {"a": a, "b": b}, {}, {}),
        ("MatMulInteger", {"a": a, "b": b}, {"az": np.array(7, np.uint8), "bz": np.array(200, np.uint8)}, {}),
        ("MatMulInteger", {"a": a}, {"b": bi, "az": np.array(128, np.uint8), "bz": np.array(3, np.int8)}, {}),
        ("MatMulInteger", {"a": a, "b": b}, {"bz": np.arange(6).astype(np.uint8)}, {}, ["a", "b", "", "bz"]),
        ("MatMulInteger", {"a": _i8((4, 8)), "b": _i8((2, 8, 3))}, {"az": np.array(-3, np.int8)}, {}),
    ]
    check_cases(cases, 13)


def test_qlinear_matmul():
    a, b = _u8((2, 5, 8)), _u8((8, 6))
    cases = []
    for (a_s, a_z, b_s, b_z, y_s, y_z) in [
            (0.02, 128, 0.03, 100, 0.05, 120), (0.1, 0, 0.2, 0, 20.0, 0), (0.013, 3, 0.007, 250, 0.1, 200)]:
        cases.append(("QLinearMatMul", {"a": a, "b": b}, {
            "as": np.array(a_s, F), "az": np.array(a_z, np.uint8), "bs": np.array(b_s, F),
            "bz": np.array(b_z, np.uint8), "ys": np.array(y_s, F), "yz": np.array(y_z, np.uint8)}, {},
            ["a", "as", "az", "b", "bs", "bz", "ys", "yz"]))
    # s8 x s8 -> s8, and u8 x s8 -> u8 with a per-column b scale
    ai, bi = _i8((4, 8)), _i8((8, 5), -64, 64)
    cases.append(("QLinearMatMul", {"a": ai}, {
        "as": np.array(0.05, F), "az": np.array(-2, np.int8), "b": bi, "bs": np.array(0.04, F),
        "bz": np.array(0, np.int8), "ys": np.array(0.3, F), "yz": np.array(5, np.int8)}, {},
        ["a", "as", "az", "b", "bs", "bz", "ys", "yz"]))
    cases.append(("QLinearMatMul", {"a": _u8((4, 8))}, {
        "as": np.array(0.05, F), "az": np.array(120, np.uint8), "b": bi,
        "bs": np.array([0.01, 0.02, 0.03, 0.04, 0.05], F), "bz": np.zeros(5, np.int8),
        "ys": np.array(0.5, F), "yz": np.array(128, np.uint8)}, {},
        ["a", "as", "az", "b", "bs", "bz", "ys", "yz"]))
    # multiplier 0.5 on odd products: exact halves, rounded to even
    cases.append(("QLinearMatMul", {"a": _u8((4, 8), 0, 4)}, {
        "as": np.array(0.5, F), "az": np.array(0, np.uint8), "b": _u8((8, 5), 0, 4), "bs": np.array(1.0, F),
        "bz": np.array(1, np.uint8), "ys": np.array(1.0, F), "yz": np.array(100, np.uint8)}, {},
        ["a", "as", "az", "b", "bs", "bz", "ys", "yz"]))
    check_cases(cases, 13)


def test_qlinear_matmul_float16_scales():
    """Opset 21 allows float16 scales."""
    H = np.float16
    cases = [("QLinearMatMul", {"a": _u8((2, 5, 8)), "b": _u8((8, 6))}, {
        "as": np.array(0.02, H), "az": np.array(128, np.uint8), "bs": np.array(0.03, H),
        "bz": np.array(100, np.uint8), "ys": np.array(0.05, H), "yz": np.array(120, np.uint8)}, {},
        ["a", "as", "az", "b", "bs", "bz", "ys", "yz"])]
    check_cases(cases, 21)


@pytest.mark.parametrize("level", [0, 2])  # -O2: compiled in NHWC (convert-layout)
def test_conv_integer(level):
    x = _u8((1, 4, 7, 6))
    w = _u8((6, 4, 3, 3))
    wd = _u8((4, 1, 3, 3))
    cases = [
        ("ConvInteger", {"x": x, "w": w}, {}, {}),
        ("ConvInteger", {"x": x}, {"w": w, "xz": np.array(100, np.uint8), "wz": np.array(7, np.uint8)},
         {"pads": [1, 2, 0, 1], "strides": [2, 1]}),
        ("ConvInteger", {"x": x}, {"w": wd, "xz": np.array(3, np.uint8)}, {"group": 4, "auto_pad": "SAME_UPPER"}),
        ("ConvInteger", {"x": x, "w": w}, {}, {"dilations": [2, 1], "pads": [2, 0, 1, 1]}),
    ]
    check_cases(cases, 13, level)


def _qconv_case(x, w, xs, xz, ws, wz, ys, yz, bias=None, **attrs):
    inits = {"xs": np.array(xs, F), "xz": np.array(xz, x.dtype), "w": w, "ws": np.asarray(ws, F),
             "wz": np.asarray(wz, w.dtype), "ys": np.array(ys, F), "yz": np.array(yz, x.dtype)}
    names = ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"]
    if bias is not None:
        inits["b"], names = bias, names + ["b"]
    return ("QLinearConv", {"x": x}, inits, attrs, names)


@pytest.mark.parametrize("level", [0, 2])  # -O2: compiled in NHWC (convert-layout)
def test_qlinear_conv(level):
    x = _u8((1, 8, 9, 9))
    w = _i8((16, 8, 3, 3), -64, 64)
    per_ch = (rng.uniform(0.002, 0.02, 16)).astype(F)
    bias = rng.integers(-5000, 5000, 16).astype(np.int32)
    cases = [
        _qconv_case(x, w, 0.02, 128, 0.01, 0, 0.1, 120),
        _qconv_case(x, w, 0.02, 100, per_ch, np.zeros(16, np.int8), 0.05, 128, bias, pads=[1, 1, 1, 1]),
        _qconv_case(x, w, 0.017, 3, 0.009, 0, 0.02, 5, bias, strides=[2, 2], pads=[0, 1, 2, 1]),
        _qconv_case(x, _i8((8, 1, 3, 3), -64, 64), 0.02, 128, 0.01, 0, 0.03, 128, group=8, pads=[1, 1, 1, 1]),
        _qconv_case(x, _i8((16, 4, 3, 3), -64, 64), 0.02, 128, 0.01, 0, 0.08, 128, group=2, dilations=[2, 2]),
        # tiny output scale: most values saturate at 0 and 255
        _qconv_case(x, w, 0.02, 128, 0.01, 0, 0.0005, 128, bias, auto_pad="SAME_UPPER"),
    ]
    # s8 activations, s8 output; u8 weights with a zero point
    xi = _i8((1, 8, 6, 6))
    cases.append(_qconv_case(xi, _i8((4, 8, 3, 3), -64, 64), 0.05, -3, 0.02, 0, 0.2, 4, bias[:4], pads=[1, 1, 1, 1]))
    cases.append(_qconv_case(xi, _i8((4, 8, 3, 3), -64, 64), 0.05, 0, 0.02, 0, 0.001, -1))  # saturates at +-127/-128
    cases.append(_qconv_case(x, _u8((4, 8, 1, 1)), 0.02, 128, 0.01, 120, 0.1, 120))
    check_cases(cases, 13, level)


def test_qlinear_conv_ir_is_direct():
    """QLinearConv imports as one qlinear_conv node (no float dequantize/conv/quantize detour)."""
    x = _u8((1, 2, 4, 4))
    model, _ = multi_node_model([_qconv_case(x, _i8((3, 2, 3, 3)), 0.1, 1, 0.2, 0, 0.3, 2)], 13)
    assert [n.op for n in edgec.import_onnx(model).nodes] == ["qlinear_conv"]


def test_refusals_name_the_node():
    x1 = _u8((1, 2, 8))  # a 1-D convolution
    model, _ = multi_node_model([("QLinearConv", {"x": x1}, {
        "xs": np.array(0.1, F), "xz": np.array(0, np.uint8), "w": _i8((3, 2, 3)), "ws": np.array(0.1, F),
        "wz": np.array(0, np.int8), "ys": np.array(0.1, F), "yz": np.array(0, np.uint8)}, {},
        ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"])], 13)
    with pytest.raises(EdgecError, match="QLinearConv_node0.*2-D"):
        edgec.import_onnx(model)
    x = rng.standard_normal((2, 4)).astype(F)
    model, _ = multi_node_model([("QuantizeLinear", {"x": x}, {"s": np.full((2, 2), 0.1, F)}, {"block_size": 2})], 21)
    with pytest.raises(EdgecError, match="QuantizeLinear_node0.*block"):
        edgec.import_onnx(model)


def test_quantized_conv_layout_must_be_known():
    with pytest.raises(EdgecError, match="layout must be one of NCHW, NHWC, got 'NCWH'"):
        edgec.parse_ir("""graph @main(%x: u8[1,2,3,3]) -> (%y: i32[1,3,3,3]) {
          %c0 = const u8[3,2,1,1] [1, 2, 3, 4, 5, 6]
          %0 = conv_integer(%x, %c0) {layout="NCWH"} : i32[1,3,3,3]
          return %0
        }""")


@pytest.mark.parametrize("zero_point", ["computed", "constant", "none"])
def test_quantize_linear_with_a_computed_scale(zero_point):
    """A per-tensor scale (and zero point) computed from x in the graph, as in
    DynamicQuantizeLinear's expansion: elementwise ops instead of quantize_linear."""
    x = np.random.default_rng(5).normal(size=(3, 7)).astype(F) * 4
    nodes = [helper.make_node("ReduceMax", ["x"], ["hi"], keepdims=0),
             helper.make_node("ReduceMin", ["x"], ["lo"], keepdims=0),
             helper.make_node("Sub", ["hi", "lo"], ["range"]),
             helper.make_node("Div", ["range", "q"], ["scale"])]
    names = ["x", "scale"]
    inits = {"q": np.array(255, F)}
    if zero_point == "computed":
        nodes += [helper.make_node("Div", ["lo", "scale"], ["lo_q"]), helper.make_node("Neg", ["lo_q"], ["zp_f"]),
                  helper.make_node("Round", ["zp_f"], ["zp_r"]),
                  helper.make_node("Cast", ["zp_r"], ["zp"], to=TensorProto.UINT8)]
        names.append("zp")
    elif zero_point == "constant":
        inits["zp"] = np.array(100, np.uint8)
        names.append("zp")
    nodes.append(helper.make_node("QuantizeLinear", names, ["y"]))
    model = make_model(nodes, {"x": x}, ["y"], inits, opset=13)
    assert "quantize_linear" not in {n.op for n in edgec.import_onnx(model).nodes}
    check_model(model, {"x": x}, atol=0)
