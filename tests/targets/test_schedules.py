"""edgec's default CPU schedules (targets/schedules): results against ONNX Runtime, and the kernels
really scheduled (parallel and vectorized loops in the TIR).

Each case builds an ONNX model, imports and lowers it with edgec, runs the CPU Relax pipeline
(NHWC layouts + edgec's schedule rules), checks the scheduled TIR of the heavy kernel, builds,
runs the module and compares with ONNX Runtime. No timing here: speed is tools/bench.py's job.
"""

from __future__ import annotations

import numpy as np
import pytest
import tvm
from onnx import helper
from tvm import relax

import edgec
from edgec.targets import get_target
from edgec.targets.build import relax_pipeline
from edgec.targets.lower import lower_graph
from edgec.targets.schedules import rules, schedule_func
from onnx_util import assert_close, make_model, node_model, run_ort

rng = np.random.default_rng(7)


def rand(*shape, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def scheduled_module(model):
    """edgec's import and lowering, then the host CPU pipeline: the module with scheduled kernels."""
    target = get_target("host")
    mod = lower_graph(edgec.import_onnx(model), target)
    with target.tvm_target():
        return relax_pipeline(target)(mod)


def kernels(mod) -> dict[str, str]:
    return {gv.name_hint: f.script() for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}


def run_module(mod, feeds):
    ex = relax.build(mod, get_target("host").tvm_target(), relax_pipeline=None)
    vm = relax.VirtualMachine(ex, tvm.cpu())
    out = vm["main"](*[tvm.runtime.tensor(a) for a in feeds.values()])
    return [o.numpy() for o in out]


def check(model, feeds, heavy: str, rtol=1e-4, atol=1e-5):
    """Scheduled module == ONNX Runtime; the kernel whose name contains `heavy` is parallel and
    vectorized."""
    mod = scheduled_module(model)
    texts = kernels(mod)
    heavy_kernels = [name for name in texts if heavy in name]
    assert heavy_kernels, f"no kernel named like {heavy!r} in {sorted(texts)}"
    for name in heavy_kernels:
        assert "T.parallel" in texts[name], f"{name} has no parallel loop:\n{texts[name]}"
        assert "T.vectorized" in texts[name], f"{name} has no vectorized loop:\n{texts[name]}"
    expected = run_ort(model, feeds)
    got = run_module(mod, feeds)
    assert_close(dict(zip(expected, got)), expected, rtol, atol, "scheduled")
    return texts


def conv_model(x, k, kernel, stride=1, pads=(0, 0, 0, 0), group=1, dilation=1, relu=True, bias=True):
    c = x.shape[1]
    w = rand(k, c // group, kernel, kernel, scale=0.2)
    inits = {"w": w}
    if bias:
        inits["b"] = rand(k)
    nodes = [helper.make_node("Conv", ["x", *inits], ["y"], strides=[stride, stride], pads=list(pads),
                              group=group, dilations=[dilation, dilation])]
    if relu:
        nodes.append(helper.make_node("Relu", ["y"], ["z"]))
    return make_model(nodes, {"x": x}, ["z" if relu else "y"], inits)


CONV_CASES = {
    "3x3_same": (rand(1, 8, 10, 10), 16, 3, 1, (1, 1, 1, 1), 1, 1),
    "3x3_stride2": (rand(1, 8, 11, 9), 16, 3, 2, (1, 1, 1, 1), 1, 1),
    "asym_pads_groups3": (rand(1, 6, 9, 9), 12, 3, 1, (0, 1, 2, 1), 3, 1),
    "depthwise": (rand(1, 16, 12, 12), 16, 3, 1, (1, 1, 1, 1), 16, 1),
    "depthwise_stride2": (rand(1, 24, 13, 13), 24, 3, 2, (1, 1, 1, 1), 24, 1),
    "pointwise": (rand(1, 32, 7, 7), 40, 1, 1, (0, 0, 0, 0), 1, 1),
    "stem_7x7_s2": (rand(1, 3, 19, 19), 16, 7, 2, (3, 3, 3, 3), 1, 1),
    "dilated_batch2": (rand(2, 8, 12, 12), 8, 3, 1, (2, 2, 2, 2), 1, 2),
    "odd_channels": (rand(1, 5, 8, 8), 7, 3, 1, (1, 1, 1, 1), 1, 1),
}


@pytest.mark.parametrize("case", list(CONV_CASES))
def test_conv(case):
    x, k, kernel, stride, pads, group, dilation = CONV_CASES[case]
    model = conv_model(x, k, kernel, stride, pads, group, dilation)
    check(model, {"x": x}, "conv2d", rtol=1e-4, atol=1e-4)


def test_conv_without_bias_or_relu():
    x = rand(1, 16, 9, 9)
    check(conv_model(x, 32, 3, 1, (1, 1, 1, 1), relu=False, bias=False), {"x": x}, "conv2d", atol=1e-4)


def test_residual_block():
    """conv -> relu -> conv -> add(input) -> relu: the residual add is part of the epilogue."""
    x = rand(1, 16, 8, 8)
    w1, w2 = rand(16, 16, 3, 3, scale=0.2), rand(16, 16, 3, 3, scale=0.2)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Conv", ["b", "w2"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "x"], ["d"]),
             helper.make_node("Relu", ["d"], ["e"])]
    check(make_model(nodes, {"x": x}, ["e"], {"w1": w1, "w2": w2}), {"x": x}, "conv2d", atol=1e-4)


@pytest.mark.parametrize("m", [1, 5, 32])
def test_gemm_dense(m):
    x = rand(m, 48)
    model = node_model("Gemm", {"x": x}, {"w": rand(40, 48, scale=0.2), "b": rand(40)}, transB=1)
    check(model, {"x": x}, "matmul")


def test_matmul_2d_odd_sizes():
    a = rand(17, 33)
    check(node_model("MatMul", {"a": a}, {"b": rand(33, 40)}), {"a": a}, "matmul")


def test_batch_matmul_two_inputs():
    a, b = rand(2, 5, 24), rand(2, 24, 16)
    check(node_model("MatMul", {"a": a, "b": b}), {"a": a, "b": b}, "matmul")


def test_matmul_3d_by_2d_with_epilogue():
    a = rand(2, 6, 32)
    nodes = [helper.make_node("MatMul", ["a", "w"], ["y"]), helper.make_node("Add", ["y", "bias"], ["z"]),
             helper.make_node("Relu", ["z"], ["o"])]
    model = make_model(nodes, {"a": a}, ["o"], {"w": rand(32, 48, scale=0.2), "bias": rand(48)})
    check(model, {"a": a}, "matmul")


POOL_CASES = {
    "maxpool_3x3_s2": ("MaxPool", rand(1, 16, 11, 11), {"kernel_shape": [3, 3], "strides": [2, 2], "pads": [1, 1, 1, 1]}),
    "avgpool_2x2": ("AveragePool", rand(1, 32, 8, 8), {"kernel_shape": [2, 2], "strides": [2, 2]}),
    "avgpool_excl_pad": ("AveragePool", rand(1, 16, 7, 7),
                         {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1], "count_include_pad": 0}),
}


@pytest.mark.parametrize("case", list(POOL_CASES))
def test_pool(case):
    op, x, attrs = POOL_CASES[case]
    check(node_model(op, {"x": x}, **attrs), {"x": x}, "pool")


def test_global_average_pool_after_conv_is_vectorized_over_channels():
    """After an NHWC conv, GlobalAveragePool is a mean over H and W with channels innermost."""
    x = rand(1, 8, 7, 7)
    nodes = [helper.make_node("Conv", ["x", "w"], ["y"], pads=[1, 1, 1, 1]),
             helper.make_node("GlobalAveragePool", ["y"], ["z"])]
    texts = check(make_model(nodes, {"x": x}, ["z"], {"w": rand(64, 8, 3, 3, scale=0.2)}), {"x": x}, "mean")
    assert any('scope="local"' in t for name, t in texts.items() if "mean" in name)


def test_global_average_pool_nchw_row_reduction():
    """Alone (NCHW), it reduces the innermost axes: a parallel row reduction, not vectorized."""
    x = rand(1, 64, 7, 7)
    model = node_model("GlobalAveragePool", {"x": x})
    mod = scheduled_module(model)
    assert all("T.parallel" in t for t in kernels(mod).values())
    expected = run_ort(model, {"x": x})
    assert_close(dict(zip(expected, run_module(mod, {"x": x}))), expected, what="scheduled")


def test_relu6_chain_stays_nhwc_with_packed_weights():
    """conv -> Clip(0, 6) -> conv: the clip is rewritten to min/max so the whole chain stays NHWC
    (one transpose in, one out), and the conv weights are repacked into vector blocks (5-D)."""
    x = rand(1, 8, 9, 9)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["a", "lo", "hi"], ["b"]),
             helper.make_node("Conv", ["b", "w2"], ["c"], pads=[1, 1, 1, 1], group=16)]
    inits = {"w1": rand(16, 8, 3, 3, scale=0.5), "w2": rand(16, 1, 3, 3, scale=0.5),
             "lo": np.array(0, np.float32), "hi": np.array(0.5, np.float32)}
    model = make_model(nodes, {"x": x}, ["c"], inits)
    texts = check(model, {"x": x}, "conv2d", atol=1e-4)
    assert len([n for n in texts if "transpose" in n]) == 2, sorted(texts)
    assert not any("clip" in n for n in texts), sorted(texts)
    convs = [(gv.name_hint, f) for gv, f in scheduled_module(model).functions_items()
             if isinstance(f, tvm.tirx.PrimFunc) and "conv2d" in gv.name_hint]
    assert len(convs) == 2
    for name, func in convs:
        assert 'scope="local"' in texts[name]
        # The weight parameter is 5-D: [out channel blocks, kh, kw, in channels, vector].
        assert any(len(p.shape) == 5 for p in func.params), (name, [p.shape for p in func.params])


@pytest.mark.parametrize("what", ["conv", "matmul"])
def test_same_results_as_the_unscheduled_build(what):
    """The schedules change loop order and storage, not the arithmetic of each output element:
    scheduled and unscheduled builds agree to float rounding."""
    from edgec.targets.schedules import cpu_pipeline
    if what == "conv":
        x = rand(1, 16, 12, 12)
        model, feeds = conv_model(x, 32, 3, 1, (1, 1, 1, 1)), {"x": x}
    else:
        x = rand(9, 64)
        model, feeds = node_model("MatMul", {"x": x}, {"w": rand(64, 48)}), {"x": x}
    target = get_target("host")
    outs = []
    for schedule in (True, False):
        mod = lower_graph(edgec.import_onnx(model), target)
        with target.tvm_target():
            mod = cpu_pipeline(target.tvm_target(), target.vector_bits, schedule=schedule)(mod)
        outs.append(run_module(mod, feeds))
    for a, b in zip(*outs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(4, 7, 33), (1, 1000)])
def test_softmax_last_axis(shape):
    """(1, 1000) is a classifier's softmax: one long row (dlight's rule was quadratic and racy here)."""
    x = rand(*shape)
    check(node_model("Softmax", {"x": x}, axis=-1), {"x": x}, "softmax")


def test_matmul_gelu_fast_erf():
    """GELU is legalized with fast_erf (vectorizable); results stay within float tolerance."""
    x = rand(6, 32, scale=2.0)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Gelu", ["y"], ["z"])]
    model = make_model(nodes, {"x": x}, ["z"], {"w": rand(32, 64)}, opset=20)
    texts = check(model, {"x": x}, "matmul")
    assert not any("T.erf" in t for t in texts.values()), "erf should be the fast polynomial"


def test_softmax_extreme_values():
    """fast_exp based softmax: large, tiny and equal logits."""
    x = np.array([[80.0, -80.0, 0.0, 1.0], [-100.0, -100.0, -100.0, -100.0], [3.0, 3.0, -3.0, 88.0]],
                 np.float32)
    check(node_model("Softmax", {"x": x}, axis=-1), {"x": x}, "softmax", atol=1e-6)


def test_layer_norm():
    x = rand(3, 10, 64)
    model = node_model("LayerNormalization", {"x": x}, {"g": rand(64), "b": rand(64)}, axis=-1)
    check(model, {"x": x}, "layer_norm", atol=1e-4)


def test_elementwise_broadcast_chain():
    x = rand(2, 3, 5, 7)
    nodes = [helper.make_node("Add", ["x", "b"], ["y"]), helper.make_node("Relu", ["y"], ["z"]),
             helper.make_node("Mul", ["z", "x"], ["o"])]
    model = make_model(nodes, {"x": x}, ["o"], {"b": rand(3, 1, 1)})
    mod = scheduled_module(model)
    texts = kernels(mod)
    assert texts and all("T.parallel" in t for t in texts.values()), texts
    expected = run_ort(model, {"x": x})
    assert_close(dict(zip(expected, run_module(mod, {"x": x}))), expected, what="scheduled")


def test_compile_end_to_end():
    """edgec.compile at each level with the schedules in the build, against ONNX Runtime."""
    x = rand(1, 8, 10, 10)
    model = conv_model(x, 16, 3, 1, (1, 1, 1, 1))
    expected = run_ort(model, {"x": x})
    for level in (0, 1, 2):
        art = edgec.compile(model, target="host", output=None, level=level)
        assert art.kernels
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        art = edgec.compile(model, target="host", output=f"{d}/out", level=2).artifact
        assert_close(art.run({"x": x}), expected, 1e-4, 1e-4, "compiled")


def test_vector_factor():
    assert rules.vector_factor(64, 16) == 32
    assert rules.vector_factor(48, 16) == 16
    assert rules.vector_factor(56, 16) == 14
    assert rules.vector_factor(7, 16) == 7
    assert rules.vector_factor(13, 8) == 1


def test_register_tile():
    assert rules.register_tile(64, 56, 16, 24) == (32, 8)    # 16 accumulators
    assert rules.register_tile(256, 13, 16, 24) == (16, 13)  # 13 rows rather than 32 x 1
    assert rules.register_tile(512, 7, 16, 24) == (32, 7)
    assert rules.register_tile(48, 1, 16, 24) == (16, 1)    # 48 columns: one register wide


def test_schedule_func_on_a_hand_written_kernel():
    """schedule_func works on any PrimFunc, not only the pipeline's: a copy gets the injective rule."""
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def copy(a: T.Buffer((4,), "float32"), b: T.Buffer((4,), "float32")):
        for i in range(4):
            with T.sblock("b"):
                vi = T.axis.spatial(4, i)
                b[vi] = a[vi]

    target = get_target("host")
    func, rule = schedule_func(copy, target.tvm_target(), target.vector_bits)
    assert rule == "injective"
    assert "T.vectorized" in func.script()


def test_tuning_database_is_applied_and_the_rest_falls_back(tmp_path):
    """One MetaSchedule trial on a matmul model, then a matmul + softmax model compiled with that
    database: the matmul kernel comes from the database ("tuned"), the softmax (missing from it)
    gets the default rules, and the results match ORT."""
    from edgec.targets.build import build_graph
    from edgec.targets.schedules.tuning import tune_graph
    x = rand(8, 32)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"]), helper.make_node("Softmax", ["y"], ["z"], axis=-1)]
    model = make_model(nodes, {"x": x}, ["z"], {"w": rand(32, 16)})
    target = get_target("host")
    graph = edgec.import_onnx(model)
    lines = []
    matmul_only = edgec.import_onnx(node_model("MatMul", {"x": x}, {"w": rand(32, 16)}))
    tune_graph(matmul_only, target, tmp_path / "db", trials=1, progress=lines.append)
    assert lines and "trials" in lines[-1]
    assert (tmp_path / "db" / "database_tuning_record.json").stat().st_size > 0
    report: dict = {}
    built = build_graph(graph, target, tuning_db=str(tmp_path / "db"), report=report)
    assert report == {"matmul": "tuned", "softmax": "rowwise"}, report
    vm = relax.VirtualMachine(built.executable, tvm.cpu())
    got = vm["main"](tvm.runtime.tensor(x))[0].numpy()
    expected = run_ort(model, {"x": x})
    assert_close({"z": got}, expected, what="tuned")
