"""ONNX Runtime's float contrib ops (com.microsoft FusedConv, FusedGemm, FusedMatMul, Gelu, FastGelu, BiasGelu,
QuickGelu, BiasAdd, SkipLayerNormalization, SkipSimplifiedLayerNormalization) and its ONNX-domain
SimplifiedLayerNormalization and pre-opset-17 LayerNormalization against ONNX Runtime: the reference
interpreter for every variant, one host build at -O2 of a model with each op, the -O2 graph they
become (the decompositions fuse back into one kernel each) and that chain on arm-a72 under qemu, and
small models as ORT's own fusions write them."""

import sys
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

import edgec
from edgec.errors import EdgecError
from edgec.verify import verify_model
from onnx_util import check_model, make_model, multi_node_model, node_model, run_ort, assert_close
from toolchain import needs_arm_run

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import make_models  # noqa: E402

MS = "com.microsoft"
rng = np.random.default_rng(3)


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def ms_model(op_type, inputs, initializers, names=None, outputs=1, **attrs):
    """A one-node com.microsoft model; `outputs` is a count or a list of output names ("" omitted)."""
    counted = isinstance(outputs, int)
    return node_model(f"{MS}.{op_type}", inputs, initializers, n_outputs=outputs if counted else 1, input_names=names,
                      output_names=None if counted else outputs, **attrs)


X4, W4, B4 = randn(1, 3, 7, 7), randn(4, 3, 3, 3), randn(4)
CONV = {"pads": [1, 1, 1, 1]}
# (op, inputs, initializers, attrs[, input names])
FUSED_CONV = [
    ("FusedConv", {"x": X4}, {"w": W4, "b": B4}, {**CONV, "activation": "Relu"}),
    ("FusedConv", {"x": X4}, {"w": W4, "b": B4}, {"strides": [2, 2], "activation": "Tanh"}),
    ("FusedConv", {"x": X4}, {"w": W4}, {**CONV, "activation": "Sigmoid"}),
    ("FusedConv", {"x": X4}, {"w": W4, "b": B4}, {**CONV, "activation": "LeakyRelu", "activation_params": [0.2]}),
    ("FusedConv", {"x": X4}, {"w": W4, "b": B4}, {**CONV, "activation": "Clip", "activation_params": [-0.5, 1.5]}),
    ("FusedConv", {"x": X4}, {"w": W4}, {"activation": "HardSigmoid", "activation_params": [0.3, 0.6]}),
    ("FusedConv", {"x": X4, "z": randn(1, 4, 7, 7)}, {"w": W4, "b": B4}, {**CONV, "activation": "Relu"},
     ["x", "w", "b", "z"]),
    ("FusedConv", {"x": X4, "z": randn(1, 4, 7, 7)}, {"w": W4}, {**CONV, "activation": "Relu"}, ["x", "w", "", "z"]),
    ("FusedConv", {"x": X4}, {"w": W4, "b": B4}, {"auto_pad": "SAME_UPPER", "strides": [2, 2]}),  # no activation
    ("FusedConv", {"x": randn(2, 3, 9)}, {"w": randn(5, 3, 2), "b": randn(5)},
     {"group": 1, "dilations": [2], "activation": "LeakyRelu", "activation_params": [0.05]}),
]
A, B, C = randn(4, 6), randn(6, 5), randn(5)
FUSED_GEMM = [
    ("FusedGemm", {"a": A}, {"b": B, "c": C}, {"activation": "Relu"}),
    ("FusedGemm", {"a": A}, {"b": B.T.copy(), "c": C}, {"activation": "Sigmoid", "transB": 1, "alpha": 0.5}),
    ("FusedGemm", {"a": A.T.copy(), "b": B}, {"c": C}, {"activation": "Tanh", "transA": 1, "beta": 2.0}),
    ("FusedGemm", {"a": A}, {"b": B}, {"activation": "Softplus"}),
    ("FusedGemm", {"a": A}, {"b": B, "c": C}, {"activation": "Softsign"}),
    ("FusedGemm", {"a": A}, {"b": B, "c": C}, {"activation": "LeakyRelu", "activation_alpha": 0.1}),
    ("FusedGemm", {"a": A}, {"b": B, "c": C}, {"activation": "Elu", "activation_alpha": 0.7}),
    ("FusedGemm", {"a": A}, {"b": B, "c": C}, {"activation": "Celu", "activation_alpha": 1.3}),
    ("FusedGemm", {"a": A}, {"b": B, "c": C}, {"activation": "ThresholdedRelu", "activation_alpha": 0.4}),
    ("FusedGemm", {"a": A}, {"b": B, "c": C},
     {"activation": "HardSigmoid", "activation_alpha": 0.3, "activation_beta": 0.4}),
    ("FusedGemm", {"a": A}, {"b": B, "c": C}, {"activation": "Selu", "activation_alpha": 1.5, "activation_gamma": 0.9}),
    ("FusedGemm", {"a": A, "b": B}, {"c": C},
     {"activation": "ParametricSoftplus", "activation_alpha": 0.3, "activation_beta": 2.0}),
    ("FusedGemm", {"a": A}, {"b": B, "c": C}, {"activation": "ScaledTanh", "activation_alpha": 1.5, "activation_beta": 0.5}),
]
FUSED_MATMUL = [
    ("FusedMatMul", {"a": randn(2, 3, 4, 6)}, {"b": randn(5, 6)}, {"transB": 1, "alpha": 0.125}),
    ("FusedMatMul", {"a": randn(3, 6, 4), "b": randn(3, 6, 5)}, {}, {"transA": 1}),
    ("FusedMatMul", {"a": randn(4, 6), "b": randn(2, 6, 5)}, {}, {}),
]
H = 16
XS, SKIP, G, BETA, BIAS = randn(2, 3, H) * 3, randn(2, 3, H), randn(H), randn(H), randn(H)
GELU = [
    ("Gelu", {"x": XS}, {}, {}),
    ("FastGelu", {"x": XS}, {}, {}),
    ("FastGelu", {"x": XS}, {"bias": BIAS}, {}),
    ("BiasGelu", {"x": XS}, {"bias": BIAS}, {}),
    ("QuickGelu", {"x": XS}, {}, {}),
    ("QuickGelu", {"x": XS}, {}, {"alpha": 1.0}),
]
SKIP_NORM = [
    ("SkipLayerNormalization", {"x": XS, "skip": SKIP}, {"gamma": G}, {}),
    ("SkipLayerNormalization", {"x": XS, "skip": SKIP}, {"gamma": G, "beta": BETA}, {"epsilon": 1e-5}),
    ("SkipLayerNormalization", {"x": XS, "skip": SKIP[0]}, {"gamma": G, "beta": BETA, "bias": BIAS}, {}),
    ("SkipLayerNormalization", {"x": XS[0], "skip": SKIP[0]}, {"gamma": G, "bias": BIAS}, {},
     ["x", "skip", "gamma", "", "bias"]),
    ("SkipSimplifiedLayerNormalization", {"x": XS, "skip": SKIP}, {"gamma": G}, {}),
    ("SkipSimplifiedLayerNormalization", {"x": XS, "skip": SKIP[:1]}, {"gamma": G, "bias": BIAS}, {"epsilon": 1e-3}),
]
CASES = FUSED_CONV + FUSED_GEMM + FUSED_MATMUL + GELU + SKIP_NORM


def _case_id(case):
    return f"{case[0]}-{case[3].get('activation', '') or len(case[1]) + len(case[2])}"


@pytest.mark.parametrize("case", CASES, ids=[f"{_case_id(c)}-{i}" for i, c in enumerate(CASES)])
def test_contrib_op_interpreted(case):
    op_type, inputs, inits, attrs = case[:4]
    model = ms_model(op_type, inputs, inits, case[4] if len(case) > 4 else None, **attrs)
    check_model(model, inputs, compiled=False)


def test_contrib_ops_compiled_at_O2():
    """One case of each op in one model, built for the host at -O2 (one compile)."""
    picked = [FUSED_CONV[6], FUSED_CONV[3], FUSED_GEMM[5], FUSED_MATMUL[0], GELU[0], GELU[2], GELU[3], GELU[4], SKIP_NORM[2],
              SKIP_NORM[5]]
    cases = [(f"{MS}.{c[0]}", *c[1:]) for c in picked]
    model, feeds = multi_node_model(cases)
    check_model(model, feeds, level=2)


def test_skip_layer_norm_extra_outputs():
    """mean, inv_std_var (last axis kept as 1) and input_skip_bias_sum; the simplified form has no
    mean (ORT leaves it uncomputed), but inv_std_var and the sum."""
    feeds = {"x": XS, "skip": SKIP}
    inits = {"gamma": G, "beta": BETA, "bias": BIAS}
    check_model(ms_model("SkipLayerNormalization", feeds, inits, outputs=4), feeds)
    check_model(ms_model("SkipLayerNormalization", feeds, inits, outputs=["y", "", "", "sum"]), feeds, compiled=False)
    check_model(ms_model("SkipSimplifiedLayerNormalization", feeds, {"gamma": G, "bias": BIAS},
                         outputs=["y", "", "inv_std", "sum"]), feeds)


def _fused_block():
    """FusedConv (Relu) -> Flatten -> FusedGemm (LeakyRelu) -> MatMul -> FastGelu(bias) ->
    SkipLayerNormalization, as ONNX Runtime's fusions leave such a chain."""
    nodes = [helper.make_node("FusedConv", ["x", "w", "b"], ["c"], domain=MS, pads=[1, 1, 1, 1], activation="Relu"),
             helper.make_node("Flatten", ["c"], ["f"]),
             helper.make_node("FusedGemm", ["f", "gw", "gb"], ["g"], domain=MS, activation="LeakyRelu",
                              activation_alpha=0.1),
             helper.make_node("MatMul", ["g", "mw"], ["m"]),
             helper.make_node("FastGelu", ["m", "mb"], ["fg"], domain=MS),
             helper.make_node("SkipLayerNormalization", ["fg", "g", "lg", "lb"], ["y"], domain=MS)]
    inits = {"w": W4, "b": B4, "gw": randn(196, H), "gb": randn(H), "mw": randn(H, H), "mb": randn(H),
             "lg": G, "lb": BETA}
    return make_model(nodes, {"x": X4}, ["y"], inits)


def test_contrib_ops_fuse_into_one_kernel_each_at_O2():
    """The decompositions are what the fusion passes compile: a FusedConv with Relu is one conv
    with the activation, FusedGemm one dense with its activation, MatMul + FastGelu(bias) one dense
    with gelu_tanh, into which SkipLayerNormalization's add of the skip fuses (one kernel), then
    the layer_norm."""
    graph = edgec.optimize(edgec.import_onnx(_fused_block()), level=2)
    computing = [n for n in graph.nodes if n.op not in ("transpose", "reshape")]
    assert [(n.op, n.attrs.get("activation", "")) for n in computing] == [
        ("conv", "relu"), ("dense", "leaky_relu"), ("fused", ""), ("layer_norm", "")], graph
    body = computing[2].attrs["body"]
    assert 'dense(%0, %1, %2) {activation="gelu_tanh"' in body and "add(" in body, body


@needs_arm_run
def test_fused_block_on_arm():
    """The same chain built for arm-a72 at -O2 and run under qemu, against ORT."""
    report = verify_model(_fused_block(), target="arm-a72", level=2)
    assert report.ok and all(o.compiled is not None for o in report.outputs), report.format()


@pytest.mark.parametrize("name,contrib_ops", [("mlp", {"FusedGemm"}), ("mobilenetv2", {"FusedConv"}),
                                              ("transformer", {"SkipLayerNormalization", "Gelu", "FusedMatMul"})])
def test_models_onnx_runtime_optimized(name, contrib_ops, tmp_path):
    """tools/make_models.py's small models as ONNX Runtime writes them after its own fusions
    (ORT_ENABLE_EXTENDED, saved with optimized_model_filepath): edgec's interpreter on that model
    against ORT's run of it."""
    import onnx
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
    options.optimized_model_filepath = str(tmp_path / "optimized.onnx")
    ort.InferenceSession(make_models.build(name, small=True).SerializeToString(), options,
                         providers=["CPUExecutionProvider"])
    model = onnx.load(options.optimized_model_filepath)
    assert contrib_ops <= {n.op_type for n in model.graph.node if n.domain == MS}  # else the test proves nothing
    graph = edgec.import_onnx(model)
    shape = [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim]
    feeds = {model.graph.input[0].name: rng.standard_normal(shape).astype(np.float32)}
    assert_close(edgec.interpret(graph, feeds), run_ort(model, feeds), what=name)


def test_ops_without_an_ort_cpu_kernel_match_their_onnx_form():
    """BiasAdd (ORT has CUDA kernels only) and FusedConv's Silu (newer ORT than 1.32): edgec on
    the contrib op against ORT on the ONNX ops it stands for."""
    x, bias, skip = randn(2, 9, 4), randn(4), randn(2, 9, 4)
    feeds = {"x": x, "skip": skip}
    ours = edgec.interpret(edgec.import_onnx(ms_model("BiasAdd", feeds, {"bias": bias}, ["x", "bias", "skip"])), feeds)
    onnx_form = make_model([helper.make_node("Add", ["x", "bias"], ["t"]), helper.make_node("Add", ["t", "skip"], ["out0"])],
                           feeds, ["out0"], {"bias": bias})
    assert_close(ours, run_ort(onnx_form, feeds))
    feeds = {"x": X4}
    ours = edgec.interpret(edgec.import_onnx(ms_model("FusedConv", feeds, {"w": W4, "b": B4}, activation="Silu",
                                                      **CONV)), feeds)
    onnx_form = make_model([helper.make_node("Conv", ["x", "w", "b"], ["c"], **CONV), helper.make_node("Sigmoid", ["c"], ["s"]),
                            helper.make_node("Mul", ["c", "s"], ["out0"])], feeds, ["out0"], {"w": W4, "b": B4})
    assert_close(ours, run_ort(onnx_form, feeds))


@pytest.mark.parametrize("opset,axis,outputs", [(13, -1, 2), (17, 1, 1), (17, -1, 2)])
def test_simplified_layer_normalization(opset, axis, outputs):
    """ONNX Runtime's SimplifiedLayerNormalization (its ONNX-domain op): RMS normalization, with
    the optional inv_std_var output."""
    x = XS + 1.0
    m = node_model("SimplifiedLayerNormalization", {"x": x}, {"scale": randn(*x.shape[axis:])}, n_outputs=outputs,
                   opset=opset, axis=axis, epsilon=1e-3)
    check_model(m, {"x": x})


def test_layer_normalization_before_opset_17():
    """ONNX Runtime's LayerNormalization of the ONNX domain (version 1), which models exported for
    opsets below 17 carry: the same op as ONNX's LayerNormalization-17, its extra outputs too."""
    x = XS * 2 + 1
    m = node_model("LayerNormalization", {"x": x}, {"scale": G, "bias": BETA}, n_outputs=3, opset=13, epsilon=1e-3)
    check_model(m, {"x": x})


@pytest.mark.parametrize("model,message", [
    (lambda: ms_model("FusedGemm", {"a": A}, {"b": B}, activation="LeakyRelu"),
     "activation LeakyRelu needs the attribute(s) activation_alpha"),
    (lambda: ms_model("FusedGemm", {"a": A}, {"b": B}), "activation '' is not one com.microsoft.FusedGemm defines"),
    (lambda: ms_model("FusedConv", {"x": X4}, {"w": W4}, activation="Gelu"),
     "activation 'Gelu' is not one com.microsoft.FusedConv defines"),
    (lambda: ms_model("FusedConv", {"x": X4}, {"w": W4}, activation="Clip", activation_params=[0.0]),
     "activation Clip takes 2 activation_params, got 1"),
    (lambda: ms_model("FusedMatMul", {"a": A}, {"b": B}, transBatchA=1),
     "transBatchA other than 0 is not supported"),
    (lambda: ms_model("BiasGelu", {"x": XS}, {}), "has 1 inputs; com.microsoft.BiasGelu takes 2 to 2"),
    (lambda: ms_model("SkipSimplifiedLayerNormalization", {"x": XS, "skip": SKIP}, {"gamma": G}, outputs=2),
     "does not compute the mean output of SkipSimplifiedLayerNormalization"),
    (lambda: ms_model("SkipLayerNormalization", {"x": XS.astype(np.float16), "skip": SKIP.astype(np.float16)},
                      {"gamma": G.astype(np.float16)}, outputs=3),
     "the mean and inv_std_var outputs are supported for float32 input, got f16[2,3,16]"),
    (lambda: node_model("SimplifiedLayerNormalization", {"x": XS}, {"scale": G, "b": G}, opset=17),
     "has 3 inputs; ONNX Runtime's SimplifiedLayerNormalization-1 takes 2 to 2"),
])
def test_bad_contrib_nodes_are_refused(model, message):
    with pytest.raises(EdgecError, match="_node") as info:
        edgec.import_onnx(model())
    assert message in str(info.value)
