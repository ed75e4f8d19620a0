"""ONNX export (edgec.onnx_export): ONNX Runtime on the exported model against edgec's interpreter
on the IR graph (and, for the example models, against ONNX Runtime on the original model).

- the example models (small) after the fusion passes up to fuse-activation;
- every fused activation on conv, dense and matmul;
- a table of ops imported from one ONNX model, exported again;
- a QDQ graph built in IR (int8 per-channel weights, int32 bias, conv and dense) and the
  integer ops (qlinear_conv, qlinear_matmul with and without a bias, per-axis quantize);
- determinism, the round trip through edgec.import_onnx, and the refusals.
"""

import errno
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

import edgec
from edgec.errors import EdgecError, UnsupportedError
from edgec.ir import Graph, TensorType
from edgec.onnx_export import export_onnx, to_onnx
from edgec.ops.elementwise import ACTIVATIONS
from onnx_util import assert_close, multi_node_model, node_model, run_ort

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import make_models  # noqa: E402

# What int8 quantization runs before it exports: -O2 up to fuse-activation, without convert-layout.
PASSES = ("fold-constants,eliminate-noop,simplify-shapes,cse,dce,recognize-layernorm,recognize-gelu,"
          "recognize-silu,recognize-hardswish,fuse-pad,fuse-conv-bn,fuse-matmul-add,fuse-bias,fuse-activation")


def random_feeds(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v.name: rng.standard_normal(v.type.shape).astype(v.type.np_dtype) for v in graph.inputs}


def check_export(graph: Graph, feeds: dict[str, np.ndarray], opset: int = 17) -> onnx.ModelProto:
    """ONNX Runtime on the exported model equals the interpreter on `graph`; returns the model."""
    model = to_onnx(graph, opset)
    onnx.checker.check_model(model, full_check=True)
    assert_close(run_ort(model, feeds), edgec.interpret(graph, feeds), what="exported")
    return model


@pytest.fixture(scope="module")
def fused_models():
    """name -> (original ONNX model, IR graph after PASSES)."""
    out = {}
    for name in make_models.NAMES:
        model = make_models.build(name, small=True)
        out[name] = model, edgec.optimize(edgec.import_onnx(model), passes=PASSES)
    return out


@pytest.mark.parametrize("name", make_models.NAMES)
def test_example_models(fused_models, name):
    original, graph = fused_models[name]
    feeds = random_feeds(graph)
    exported = check_export(graph, feeds)
    assert_close(run_ort(exported, feeds), run_ort(original, feeds), what="original")
    assert [o.name for o in exported.graph.output] == graph.output_names
    assert [i.name for i in exported.graph.input] == [v.name for v in graph.inputs]


def test_fused_ops_are_what_the_models_hold(fused_models):
    """The examples exercise fused activations (relu, clip, gelu), dense, matmul, layer_norm."""
    ops = {(n.op, n.attrs.get("activation", "")) for _, g in fused_models.values() for n in g.nodes}
    assert {("conv", "relu"), ("conv", "clip"), ("conv", ""), ("dense", "relu"), ("dense", "gelu"),
            ("matmul", ""), ("layer_norm", ""), ("softmax", ""), ("max_pool", "")} <= ops


def test_same_graph_same_bytes(fused_models, tmp_path):
    _, graph = fused_models["mobilenetv2"]
    export_onnx(graph, tmp_path / "a.onnx")
    export_onnx(graph.copy(), tmp_path / "b.onnx")
    assert (tmp_path / "a.onnx").read_bytes() == (tmp_path / "b.onnx").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.onnx", "b.onnx"]  # no temporary files left


@pytest.mark.parametrize("name", make_models.NAMES)
def test_round_trip_through_import(fused_models, name, tmp_path):
    _, graph = fused_models[name]
    export_onnx(graph, tmp_path / "m.onnx")
    again = edgec.import_onnx(tmp_path / "m.onnx")
    feeds = random_feeds(graph, seed=1)
    ours, back = edgec.interpret(graph, feeds), edgec.interpret(again, feeds)
    # gelu comes back as its erf formula, conv + activation as two nodes: the same float32 steps
    for out in graph.output_names:
        np.testing.assert_array_equal(back[out], ours[out])


def _activation_graph() -> Graph:
    """conv, dense and matmul with each fused activation, and the standalone activation ops."""
    rng = np.random.default_rng(2)
    g = Graph()
    x = g.add_input("x", TensorType("f32", (1, 3, 6, 6)))
    m = g.add_input("m", TensorType("f32", (2, 5, 8)))
    w = g.const(rng.standard_normal((4, 3, 3, 3)).astype(np.float32))
    wd = g.const(rng.standard_normal((6, 8)).astype(np.float32))
    wm = g.const(rng.standard_normal((6, 8)).astype(np.float32))
    params = {"clip": [-0.5, 1.5], "hard_sigmoid": [0.3, 0.4], "leaky_relu": [0.2]}
    outs, names = [], []
    for act in ACTIVATIONS:
        attrs = {"activation": act, "activation_params": params.get(act, [])}
        outs.append(g.add("conv", [x, w], {"pads": [1, 0, 1, 2], "strides": [1, 2], **attrs}, [f"conv_{act}"]).output)
        outs.append(g.add("dense", [m, wd], attrs, [f"dense_{act}"]).output)
        outs.append(g.add("matmul", [m, wm], {"transpose_b": 1, **attrs}, [f"matmul_{act}"]).output)
        names += [f"conv_{act}", f"dense_{act}", f"matmul_{act}"]
    for op, attrs in [("gelu", {"approximate": "tanh"}), ("gelu", {}), ("silu", {}), ("clip", {"max": 0.5}),
                      ("hard_swish", {}), ("leaky_relu", {"alpha": 0.3})]:
        outs.append(g.add(op, [m], attrs, [f"{op}_node"]).output)
        names.append(f"{op}_{len(names)}")
    g.set_outputs(outs, names)
    return g


def test_every_fused_activation():
    g = _activation_graph()
    feeds = random_feeds(g, seed=3)
    feeds = {k: v * 3 for k, v in feeds.items()}  # reach the clip and hard_swish bounds
    model = check_export(g, feeds)
    names = {n.name for n in model.graph.node}
    assert {"conv_relu/Conv", "conv_relu/Relu", "conv_silu/Sigmoid", "hard_swish_node"} <= names


def _op_cases():
    rng = np.random.default_rng(4)
    f = lambda *s: rng.standard_normal(s).astype(np.float32)  # noqa: E731
    pos = lambda *s: (np.abs(rng.standard_normal(s)) + 0.1).astype(np.float32)  # noqa: E731
    image = f(1, 4, 7, 7)
    bn = {"s": pos(4), "b": f(4), "mean": f(4), "var": pos(4)}
    i8 = np.int8
    cases = [(op, {"a": f(2, 3), "b": f(2, 3)}, {}, {}) for op in ("Add", "Sub", "Mul", "Min", "Max")]
    cases += [("Div", {"a": f(2, 3)}, {"b": pos(3)}, {}), ("Pow", {"a": pos(2, 3)}, {"b": f(2, 3)}, {})]
    cases += [(op, {"a": f(2, 3)}, {}, {}) for op in ("Relu", "Sigmoid", "Tanh", "Exp", "Erf", "Neg", "Abs",
                                                      "Floor", "Ceil", "Round", "Softplus", "HardSwish")]
    cases += [(op, {"a": pos(2, 3)}, {}, {}) for op in ("Log", "Sqrt", "Reciprocal")]
    cases += [("Elu", {"a": f(2, 3)}, {}, {"alpha": 0.7}), ("LeakyRelu", {"a": f(2, 3)}, {}, {"alpha": 0.2}),
              ("HardSigmoid", {"a": f(2, 3)}, {}, {"alpha": 0.3, "beta": 0.4}),
              ("Clip", {"a": f(2, 3)}, {"lo": np.float32(-0.5), "hi": np.float32(0.5)}, {}),
              ("PRelu", {"a": f(2, 3)}, {"slope": f(3)}, {}),
              ("Where", {"c": f(2, 3) > 0, "a": f(2, 3), "b": f(2, 3)}, {}, {}),
              ("Not", {"c": f(2, 3) > 0}, {}, {}), ("And", {"c": f(3) > 0, "d": f(3) > 0}, {}, {}),
              ("Or", {"c": f(3) > 0, "d": f(3) > 0}, {}, {})]
    cases += [(op, {"a": f(2, 3), "b": f(2, 3)}, {}, {}) for op in ("Equal", "Less", "Greater")]
    cases += [("Transpose", {"a": f(2, 3, 4)}, {}, {"perm": [2, 0, 1]}),
              ("Concat", {"a": f(2, 3), "b": f(2, 2)}, {}, {"axis": 1}),
              ("Gather", {"a": f(4, 3)}, {"i": np.array([3, 0, 3], np.int64)}, {"axis": 0}),
              ("Flatten", {"a": f(2, 3, 4)}, {}, {"axis": 2}),
              ("Expand", {"a": f(3, 1)}, {"shape": np.array([2, 3, 4], np.int64)}, {}),
              ("Slice", {"a": f(6, 5)}, {"st": np.array([4, 1], np.int64), "en": np.array([-10, 5], np.int64),
                                         "ax": np.array([0, 1], np.int64), "sp": np.array([-1, 2], np.int64)}, {}),
              ("Pad", {"a": f(2, 3)}, {"p": np.array([1, -1, 0, 2], np.int64), "v": np.float32(2.5)}, {}),
              ("Pad", {"a": f(3, 4)}, {"p": np.array([1, 2, 1, 0], np.int64)}, {"mode": "reflect"}),
              ("Cast", {"a": f(2, 3) * 4}, {}, {"to": onnx.TensorProto.INT32}),
              ("Identity", {"a": f(2, 3)}, {}, {}),
              ("Softmax", {"a": f(2, 3, 4)}, {}, {"axis": 1}), ("LogSoftmax", {"a": f(2, 3)}, {}, {}),
              ("Hardmax", {"a": f(2, 3)}, {}, {"axis": 0}),
              ("ReduceMean", {"a": f(2, 3, 4)}, {}, {"axes": [0, 2], "keepdims": 0}),
              ("ReduceMax", {"a": f(2, 3, 4)}, {}, {"axes": [-1]}), ("ReduceL2", {"a": f(2, 3)}, {}, {}),
              ("ReduceSum", {"a": f(2, 3, 4)}, {"axes": np.array([1], np.int64)}, {}),
              ("ReduceSumSquare", {"a": f(2, 3)}, {}, {"keepdims": 0}),
              ("ReduceMin", {"a": f(2, 3)}, {}, {}), ("ReduceProd", {"a": f(2, 3)}, {}, {"axes": [0]}),
              ("ReduceL1", {"a": f(2, 3)}, {}, {}), ("ReduceLogSum", {"a": pos(2, 3)}, {}, {"axes": [1]}),
              ("ReduceLogSumExp", {"a": f(2, 3)}, {}, {}),
              ("ArgMax", {"a": f(2, 3)}, {}, {"axis": 1, "select_last_index": 1}),
              ("ArgMin", {"a": f(2, 3)}, {}, {"keepdims": 0}),
              ("LayerNormalization", {"a": f(2, 3, 4)}, {"s": f(3, 4), "b": f(3, 4)}, {"axis": 1, "epsilon": 1e-3}),
              ("BatchNormalization", {"a": image}, bn, {"epsilon": 1e-3}),
              ("MaxPool", {"a": image}, {}, {"kernel_shape": [3, 2], "strides": [2, 1], "pads": [1, 0, 1, 1],
                                             "dilations": [1, 2], "ceil_mode": 1}),
              ("AveragePool", {"a": image}, {}, {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1],
                                                 "count_include_pad": 1, "ceil_mode": 1}),
              ("AveragePool", {"a": image}, {}, {"kernel_shape": [2, 2], "pads": [0, 0, 1, 1]}),
              ("GlobalAveragePool", {"a": image}, {}, {}), ("GlobalMaxPool", {"a": image}, {}, {}),
              ("Conv", {"a": image}, {"w": f(6, 2, 3, 3), "b": f(6)},
               {"group": 2, "dilations": [2, 1], "strides": [1, 2], "pads": [2, 1, 0, 1]}),
              ("MatMul", {"a": f(2, 3, 4), "b": f(4, 5)}, {}, {}),
              ("Gemm", {"a": f(3, 4)}, {"w": f(5, 4), "c": f(5)}, {"transB": 1, "alpha": 0.5}),
              ("Gemm", {"a": f(4, 3), "b": f(4, 5)}, {}, {"transA": 1}),
              ("QuantizeLinear", {"a": f(2, 3, 4)}, {"s": pos(3), "z": np.array([1, -2, 3], i8)}, {"axis": 1}),
              ("DequantizeLinear", {"q": rng.integers(0, 255, (2, 3), dtype=np.uint8)},
               {"s": np.float32(0.1), "z": np.uint8(128)}, {}),
              ("DequantizeLinear", {"q": rng.integers(-100, 100, (4, 3), dtype=np.int32)},
               {"s": pos(4)}, {"axis": 0}),
              ("MatMulInteger", {"q": rng.integers(0, 255, (2, 3), dtype=np.uint8)},
               {"w": rng.integers(-127, 127, (3, 4), dtype=np.int8), "z": np.uint8(7),
                "wz": np.array([1, -2, 0, 3], i8)}, {})]
    return cases


@pytest.mark.parametrize("opset", [17, 21])  # reductions take their axes as an input from 18
def test_ops_imported_from_onnx(opset):
    model, feeds = multi_node_model(_op_cases())
    check_export(edgec.import_onnx(model), feeds, opset)
    pieces = np.arange(10, dtype=np.float32).reshape(5, 2)
    split = node_model("Split", {"a": pieces}, {"split": np.array([2, 3], np.int64)}, n_outputs=2, axis=0)
    check_export(edgec.import_onnx(split), {"a": pieces}, opset)
    x = np.random.default_rng(8).standard_normal((2, 3, 4)).astype(np.float32)
    softmax_2d = edgec.import_onnx(node_model("Softmax", {"a": x}, opset=11, axis=1))  # all axes from 1 together
    assert softmax_2d.nodes[0].attrs["coerce_2d"] == 1
    check_export(softmax_2d, {"a": x}, opset)


def _qdq_graph() -> tuple[Graph, list[float]]:
    """QDQ as int8 quantization writes it: activations through quantize_linear -> dequantize_linear,
    int8 weights with per-channel scales (axis 0) and int32 biases dequantized; a conv (with relu)
    and a dense, each quantized at its output. Returns the graph and its outputs' scales."""
    rng = np.random.default_rng(5)
    g = Graph()
    x = g.add_input("x", TensorType("f32", (1, 3, 8, 8)))
    flat = g.add_input("v", TensorType("f32", (2, 16)))

    def qdq(v, scale, zero_point, dtype):
        q = g.add("quantize_linear", [v], {"scale": [scale], "zero_point": [zero_point], "dtype": dtype}).output
        return g.add("dequantize_linear", [q], {"scale": [scale], "zero_point": [zero_point]}).output

    def weight(shape, in_scale):
        w_scale = list(rng.uniform(0.005, 0.02, shape[0]))
        w = g.const(rng.integers(-127, 128, shape).astype(np.int8))
        b = g.const(rng.integers(-2000, 2000, shape[0]).astype(np.int32))
        dq = {"zero_point": [0] * shape[0], "axis": 0}
        b_scale = [in_scale * s for s in w_scale]
        return (g.add("dequantize_linear", [w], {"scale": w_scale, **dq}).output,
                g.add("dequantize_linear", [b], {"scale": b_scale, **dq}).output)

    w, b = weight((4, 3, 3, 3), 0.02)
    conv = g.add("conv", [qdq(x, 0.02, 3, "u8"), w, b], {"pads": [1, 1, 1, 1], "activation": "relu"},
                 ["conv1", "relu1"]).output
    w, b = weight((5, 16), 0.03)
    dense = g.add("dense", [qdq(flat, 0.03, -4, "i8"), w, b], {}, ["fc"]).output
    g.set_outputs([qdq(conv, 0.05, 0, "u8"), qdq(dense, 0.04, 2, "i8")], ["y", "z"])
    return g, [0.05, 0.04]


def run_ort_qdq(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """ORT on a QDQ model, with `session.x64quantprecision` (see edgec.verify.onnxruntime_session):
    ORT fuses DQ -> Conv/Gemm -> Q into u8 x s8 kernels (i8 activations shifted to u8), which on
    x86 without VNNI add pairs of products in saturating int16 unless it is set."""
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.add_session_config_entry("session.x64quantprecision", "1")
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(names, feeds)))


def test_qdq_graph_within_one_quantization_step():
    """ORT fuses DQ -> Conv -> Q (and DQ -> Gemm -> Q) into integer kernels, whose requantization
    may round differently from the float QDQ arithmetic edgec interprets: at most one step apart."""
    g, steps = _qdq_graph()
    feeds = random_feeds(g, seed=6)
    model = to_onnx(g)
    onnx.checker.check_model(model, full_check=True)
    ours, theirs = edgec.interpret(g, feeds), run_ort_qdq(model, feeds)
    for name, step in zip(g.output_names, steps):
        assert np.abs(theirs[name] - ours[name]).max() <= step * (1 + 1e-5), name
        assert np.mean(theirs[name] == ours[name]) > 0.9, name
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("QuantizeLinear") == 4 and ops.count("DequantizeLinear") == 8  # 4 pairs, 2 weights, 2 biases
    w_dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0].startswith("c"))
    zero_point = next(t for t in model.graph.initializer if t.name == w_dq.input[2])
    assert zero_point.data_type == onnx.TensorProto.INT8 and list(zero_point.dims) == [4]
    assert helper.get_attribute_value(w_dq.attribute[0]) == 0  # axis


def test_integer_ops_exactly():
    """qlinear_conv, qlinear_matmul (QLinearMatMul; with a bias: MatMulInteger and a requantize
    written out) and a per-axis quantize_linear: ORT gives edgec's integers exactly."""
    rng = np.random.default_rng(7)
    g = Graph()
    x = g.add_input("x", TensorType("u8", (1, 3, 6, 6)))
    a = g.add_input("a", TensorType("u8", (2, 4, 8)))
    f = g.add_input("f", TensorType("f32", (2, 3, 4)))
    w = g.const(rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8))
    # two weights: ORT's x64quantprecision fails on an s8 weight two integer nodes share
    bmat, bmat2 = (g.const(rng.integers(-127, 128, (8, 5)).astype(np.int8)) for _ in range(2))
    conv = g.add("qlinear_conv", [x, w, g.const(rng.integers(-500, 500, 4).astype(np.int32))], {
        "pads": [1, 1, 1, 1], "x_scale": 0.02, "x_zero_point": 128, "w_scale": [0.01, 0.02, 0.005, 0.03],
        "y_scale": 0.1, "y_zero_point": 100, "dtype": "u8"}, ["qconv"]).output
    q = {"a_scale": 0.03, "a_zero_point": 120, "b_scale": list(rng.uniform(0.005, 0.02, 5)), "y_scale": 0.2}
    # ORT's QLinearMatMul kernels give the dtype of `a`; the biased form, written out, any
    mm = g.add("qlinear_matmul", [a, bmat], {**q, "y_zero_point": 130, "dtype": "u8"}, ["qmm"]).output
    mm_bias = g.add("qlinear_matmul", [a, bmat2, g.const(rng.integers(-900, 900, 5).astype(np.int32))],
                    {**q, "y_zero_point": -3, "dtype": "i8"}, ["qmm_bias"]).output
    per_axis = g.add("quantize_linear", [f], {"scale": [0.1, 0.02, 0.05], "zero_point": [1, 0, -1],
                                              "axis": 1, "dtype": "i8"}).output
    g.set_outputs([conv, mm, mm_bias, per_axis], ["conv", "mm", "mm_bias", "per_axis"])
    feeds = {"x": rng.integers(0, 256, (1, 3, 6, 6), dtype=np.uint8),
             "a": rng.integers(0, 256, (2, 4, 8), dtype=np.uint8),
             "f": rng.standard_normal((2, 3, 4)).astype(np.float32)}
    model = check_export(g, feeds)
    assert [n.op_type for n in model.graph.node] == [
        "QLinearConv", "QLinearMatMul", "MatMulInteger", "Add", "Cast", "Mul", "QuantizeLinear", "QuantizeLinear"]


def test_unsupported_ops_all_at_once():
    g = edgec.parse_ir("""graph @main(%x: f32[2,3]) -> (%y: f32[2,3], %z: bool[2,3], %w: f32[2,3]) {
  %0 = cumsum(%x) {axis=1} : f32[2,3]  @"cs1"
  %1 = cumsum(%0) {axis=0} : f32[2,3]  @"cs2"
  %2 = is_nan(%x) : bool[2,3]  @"nan"
  %3 = fused_elementwise(%1) {body="%1 = relu(%0); %2 = neg(%1)"} : f32[2,3]  @"r","n"
  %4 = relu(%3) : f32[2,3]  @"fine"
  return %1, %2, %4
}""")
    with pytest.raises(UnsupportedError) as e:
        to_onnx(g)
    assert e.value.unsupported == {"cumsum": ["cs1", "cs2"], "is_nan": ["nan"], "fused_elementwise": ["r+n"]}
    message = str(e.value)
    assert message.startswith("the graph uses 3 op type(s) that have no ONNX export: cumsum (nodes: cs1, cs2); "
                              "fused_elementwise (nodes: r+n); is_nan (nodes: nan)")
    assert "before those passes" in message


def test_nhwc_is_refused(fused_models):
    _, graph = fused_models["resnet18"]
    nhwc = edgec.optimize(graph, passes="convert-layout{to=NHWC}")
    first = next(n for n in nhwc.nodes if n.attrs.get("layout") == "NHWC")
    with pytest.raises(UnsupportedError, match="layout NHWC is not supported .*export the graph before "
                                               "convert-layout") as e:
        to_onnx(nhwc)
    assert str(e.value).startswith(f"cannot export {first.describe()} to ONNX")


@pytest.mark.parametrize("op, attrs, opset, message", [
    ("quantize_linear", {"scale": [0.5], "zero_point": [3], "dtype": "i16"}, 21, "i16 quantization"),
    ("avg_pool", {"kernel_shape": [2, 2], "dilations": [2, 1]}, 19, "average pooling with dilations"),
    ("pad", {"pads": [0, 0, 3, 1, 0, 0, 1, 2], "mode": "wrap"}, 19, "pad mode wrap"),
    ("reduce_mean", {"noop_with_empty_axes": 1}, 18, "noop_with_empty_axes")])
def test_what_opset_17_lacks(op, attrs, opset, message):
    """Refused at the default opset with the one that has it named; exported at that one."""
    g = Graph()
    y = g.add(op, [g.add_input("x", TensorType("f32", (1, 2, 4, 5)))], attrs, ["n"]).output
    g.set_outputs([y], ["y"])
    with pytest.raises(UnsupportedError, match=rf"cannot export node '{op}' \(from ONNX node 'n'\) to ONNX: "
                                               f"{message} needs ONNX opset {opset}; export with opset={opset}"):
        to_onnx(g)
    check_export(g, random_feeds(g), opset)


def test_opsets_outside_17_to_21_are_refused():
    g = Graph()
    g.set_outputs([g.add("relu", [g.add_input("x", TensorType("f32", (2,)))]).output], ["y"])
    for opset in (13, 22):
        with pytest.raises(UnsupportedError, match=f"opset {opset} is not supported; choose one of 17 to 21"):
            to_onnx(g, opset)


def test_outputs_that_are_inputs_constants_or_repeated():
    g = Graph()
    x = g.add_input("x", TensorType("f32", (3,)))
    r = g.add("relu", [x], {}, ["r"]).output
    g.set_outputs([x, r, r, g.const(np.arange(3, dtype=np.float32))], ["same", "a", "b", "k"])
    feeds = {"x": np.array([-1, 0, 2], np.float32)}
    model = check_export(g, feeds)
    assert [n.name for n in model.graph.node] == ["r", "same/Identity", "b/Identity", "k/Identity"]
    g.set_outputs([r, r], ["x", "a"])
    with pytest.raises(UnsupportedError, match="'x' names more than one; rename them"):
        to_onnx(g)


def test_bad_paths_fail_cleanly(tmp_path, monkeypatch):
    g, _ = _qdq_graph()
    with pytest.raises(EdgecError, match=f"export_onnx {tmp_path / 'no' / 'm.onnx'}: the directory "
                                         f"{tmp_path / 'no'} does not exist"):
        export_onnx(g, tmp_path / "no" / "m.onnx")
    with pytest.raises(EdgecError, match="is a directory; name a file"):
        export_onnx(g, tmp_path)
    (tmp_path / "m.onnx").write_bytes(b"old")

    def fail(*args):  # the disk fills up, or the directory turns read-only, before the rename
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr("os.replace", fail)
    with pytest.raises(EdgecError, match=r"quantize -o .*m.onnx: cannot write it \(No space left on device\)"):
        export_onnx(g, tmp_path / "m.onnx", what="quantize -o")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.onnx"] and (tmp_path / "m.onnx").read_bytes() == b"old"
