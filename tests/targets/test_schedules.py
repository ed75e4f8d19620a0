"""edgec's default CPU schedules (targets/schedules): results against ONNX Runtime, and the kernels
really scheduled (parallel and vectorized loops in the TIR).

Each case builds an ONNX model, imports, optimizes (the host's -O2: NHWC layouts, fusion) and
lowers it with edgec, runs the CPU Relax pipeline (a kernel per node, edgec's schedule rules),
checks the scheduled TIR of the heavy kernel (named after its node: `k3_conv_relu`), builds, runs
the module and compares with ONNX Runtime. No timing here: speed is tools/bench.py's job.
"""

from __future__ import annotations

import dataclasses
import re

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


def optimized(model):
    """edgec's import and the host's -O2 pipeline."""
    return edgec.optimize(edgec.import_onnx(model), target="host", level=2)


# The ops whose kernels a heavy name may belong to (a MatMul with a constant weight is a dense).
HEAVY = {"matmul": ("matmul", "dense")}


def is_heavy(name: str, heavy: str) -> bool:
    return any(h in name for h in HEAVY.get(heavy, (heavy,)))


def scheduled_module(model):
    """edgec's import, -O2 and lowering, then the host CPU pipeline: the module with scheduled kernels."""
    target = get_target("host")
    mod = lower_graph(optimized(model), target)
    with target.tvm_target():
        return relax_pipeline(target)(mod)


def kernels(mod) -> dict[str, str]:
    return {gv.name_hint: f.script() for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)}


def has_register_tile(text: str) -> bool:
    """Whether a scheduled kernel accumulates in a tile buffer (the tiled rule's cache_write:
    "<name>_global" on the stack for small tiles, "<name>_local" otherwise)."""
    return re.search(r"\w+_(global|local) = T\.sblock_alloc_buffer", text) is not None


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
    heavy_kernels = [name for name in texts if is_heavy(name, heavy)]
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
    check(model, {"x": x}, "conv", rtol=1e-4, atol=1e-4)


def test_conv_without_bias_or_relu():
    x = rand(1, 16, 9, 9)
    check(conv_model(x, 32, 3, 1, (1, 1, 1, 1), relu=False, bias=False), {"x": x}, "conv", atol=1e-4)


def test_residual_block():
    """conv -> relu -> conv -> add(input) -> relu: the residual add is part of the epilogue."""
    x = rand(1, 16, 8, 8)
    w1, w2 = rand(16, 16, 3, 3, scale=0.2), rand(16, 16, 3, 3, scale=0.2)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("Conv", ["b", "w2"], ["c"], pads=[1, 1, 1, 1]),
             helper.make_node("Add", ["c", "x"], ["d"]),
             helper.make_node("Relu", ["d"], ["e"])]
    check(make_model(nodes, {"x": x}, ["e"], {"w1": w1, "w2": w2}), {"x": x}, "conv", atol=1e-4)


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


@pytest.mark.parametrize("op,axis,start,end", [("MatMul", 1, 0, 16), ("MatMul", 1, 5, 60), ("MatMul", 0, 8, 40),
                                                ("Conv", 1, 3, 30), ("Conv", 3, 0, 5)])
def test_slice_after_the_reduction(op, axis, start, end):
    """A slice fused after a matmul or conv writes fewer elements than the accumulator tile: it
    stays a stage of its own (inlined into the write-back, it would store past its end)."""
    if op == "MatMul":
        x, w = rand(64, 48), rand(48, 64)
        node = helper.make_node("MatMul", ["x", "w"], ["c"])
    else:
        x, w = rand(1, 8, 10, 10), rand(32, 8, 3, 3, scale=0.2)
        node = helper.make_node("Conv", ["x", "w"], ["c"], pads=[1, 1, 1, 1])
    consts = {"w": w, "s": np.array([start], np.int64), "e": np.array([end], np.int64), "a": np.array([axis], np.int64)}
    model = make_model([node, helper.make_node("Slice", ["c", "s", "e", "a"], ["y"])], {"x": x}, ["y"], consts)
    check(model, {"x": x}, "conv" if op == "Conv" else "matmul", atol=1e-4)


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
    texts = check(make_model(nodes, {"x": x}, ["z"], {"w": rand(64, 8, 3, 3, scale=0.2)}), {"x": x},
                  "global_avg_pool")
    assert any(has_register_tile(t) for name, t in texts.items() if "global_avg_pool" in name)


def test_global_average_pool_nchw_row_reduction():
    """Alone (NCHW), it reduces the innermost axes: a parallel row reduction, not vectorized."""
    x = rand(1, 64, 7, 7)
    model = node_model("GlobalAveragePool", {"x": x})
    mod = scheduled_module(model)
    assert all("T.parallel" in t for t in kernels(mod).values())
    expected = run_ort(model, {"x": x})
    assert_close(dict(zip(expected, run_module(mod, {"x": x}))), expected, what="scheduled")


def test_relu6_chain_stays_nhwc_with_packed_weights():
    """conv -> Clip(0, 0.5) -> conv: the clip is the first conv's activation, the whole chain
    stays NHWC (one transpose in, one out), and the conv weights are repacked into vector
    blocks (5-D)."""
    x = rand(1, 8, 9, 9)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1]),
             helper.make_node("Clip", ["a", "lo", "hi"], ["b"]),
             helper.make_node("Conv", ["b", "w2"], ["c"], pads=[1, 1, 1, 1], group=16)]
    inits = {"w1": rand(16, 8, 3, 3, scale=0.5), "w2": rand(16, 1, 3, 3, scale=0.5),
             "lo": np.array(0, np.float32), "hi": np.array(0.5, np.float32)}
    model = make_model(nodes, {"x": x}, ["c"], inits)
    texts = check(model, {"x": x}, "conv", atol=1e-4)
    assert sorted(texts) == ["k0_transpose", "k1_conv_clip", "k2_conv", "k3_transpose"]
    convs = [(gv.name_hint, f) for gv, f in scheduled_module(model).functions_items()
             if isinstance(f, tvm.tirx.PrimFunc) and "conv" in gv.name_hint]
    assert len(convs) == 2
    for name, func in convs:
        assert has_register_tile(texts[name])
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
            mod = cpu_pipeline(target, schedule=schedule)(mod)
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


# ---- long rows: softmax, log-softmax and layer norm over 10^4-10^5 elements -----------------------

def long_row_case(op: str, n: int):
    """(model, x, float64 result) for 4 rows of n elements. Softmax and log-softmax: a CTC
    recognizer's peaked logits (noise, and the blank class, the first, 15 ahead: the row's sum is
    one term near 1 followed by many small ones, which a serial float32 sum rounds off); layer
    norm: values around 30."""
    r = np.random.default_rng(n)
    if op == "LayerNormalization":
        x = (r.standard_normal((4, n)) + 30).astype(np.float32)
        xd = x.astype(np.float64)
        centered = xd - xd.mean(-1, keepdims=True)
        expected = centered / np.sqrt((centered**2).mean(-1, keepdims=True) + 1e-5)
        return node_model(op, {"x": x}, {"g": np.ones(n, np.float32)}, axis=-1), x, expected
    x = r.standard_normal((4, n)) * 2
    x[:, 0] += 15
    x = x.astype(np.float32)
    shifted = x.astype(np.float64) - x.max(-1, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(-1, keepdims=True))
    expected = shifted - log_sum if op == "LogSoftmax" else np.exp(shifted - log_sum)
    return node_model(op, {"x": x}, axis=-1), x, expected


# Max abs error against float64 (with serial row sums: 6e-5 to 7e-4; blocked: at most 8e-6).
LONG_ROW_ATOL = {"Softmax": 1e-5, "LogSoftmax": 1e-5, "LayerNormalization": 2e-5}


@pytest.mark.parametrize("rules_of", ["host", "neon"])
@pytest.mark.parametrize("n", [18385, 100000])
@pytest.mark.parametrize("op", list(LONG_ROW_ATOL))
def test_long_rows_against_float64(op, n, rules_of):
    """Row sums of 18,385 (an OCR recognizer's classes: a shorter last chunk, no whole vectors) and
    100,000 elements are added up in chunks, not one element after another: the results stay
    within a few float32 roundings of float64, with the host's rules and the NEON ones."""
    model, x, expected = long_row_case(op, n)
    mod = neon_module(model) if rules_of == "neon" else scheduled_module(model)
    (got,) = run_module(mod, {"x": x})
    err = float(np.max(np.abs(got - expected)))
    assert err <= LONG_ROW_ATOL[op], f"{op} over rows of {n}: max abs error {err:.3g} against float64"


@pytest.mark.parametrize("rules_of", ["host", "neon"])
@pytest.mark.parametrize("op", ["ArgMax", "ArgMin"])
def test_long_row_argmax_with_ties(op, rules_of):
    """argmax and argmin (a reduction to a value and an index) over rows longer than a chunk and
    not a whole number of them build, and pick the first of equal values as ONNX Runtime does."""
    x = np.random.default_rng(1).integers(0, 5, (3, 1003)).astype(np.float32)
    model = node_model(op, {"x": x}, axis=-1, keepdims=0)
    mod = neon_module(model) if rules_of == "neon" else scheduled_module(model)
    (expected,) = run_ort(model, {"x": x}).values()
    np.testing.assert_array_equal(run_module(mod, {"x": x})[0], expected)


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
    # AVX2 (8 lanes), a 13-wide output: 13 rows of one vector, not 1 row of two (SqueezeNet)
    assert rules.register_tile(256, 13, 8, rules.ACCUMULATORS[256]) == (8, 13)
    assert rules.register_tile(1000, 13, 8, rules.ACCUMULATORS[256]) == (8, 13)


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
    func, rule = schedule_func(copy, target)
    assert rule == "injective"
    assert "T.vectorized" in func.script()


# ---- 128-bit NEON schedules (vector_bits 128), built and run on the host ----------------------

def neon_module(model):
    """edgec's lowering and CPU pipeline with the rules of a 128-bit (NEON) target, compiled for
    the host: the ARM schedules' arithmetic checked without qemu."""
    from edgec.targets.schedules import cpu_pipeline
    target = get_target("host")
    mod = lower_graph(optimized(model), target)
    with target.tvm_target():
        return cpu_pipeline(dataclasses.replace(target, vector_bits=128))(mod)


NEON_CASES = {
    "matmul_relu": lambda: (make_model([helper.make_node("MatMul", ["x", "w"], ["y"]),
                                        helper.make_node("Relu", ["y"], ["z"])],
                                       {"x": rand(16, 64)}, ["z"], {"w": rand(64, 32, scale=0.2)}), "matmul"),
    "matvec_wide": lambda: (node_model("Gemm", {"x": rand(1, 96)}, {"w": rand(128, 96, scale=0.2), "b": rand(128)},
                                       transB=1), "matmul"),
    "batch_matmul": lambda: (node_model("MatMul", {"a": rand(2, 8, 12), "b": rand(2, 12, 16)}), "matmul"),
    "conv3x3": lambda: (conv_model(rand(1, 8, 10, 10), 16, 3, 1, (1, 1, 1, 1)), "conv"),
    "conv_stride2_odd": lambda: (conv_model(rand(1, 12, 11, 9), 8, 3, 2, (1, 1, 1, 1)), "conv"),
    "stem_3_channels": lambda: (conv_model(rand(1, 3, 15, 15), 16, 7, 2, (3, 3, 3, 3)), "conv"),
    "depthwise": lambda: (conv_model(rand(1, 16, 12, 12), 16, 3, 1, (1, 1, 1, 1), 16), "conv"),
    "pointwise": lambda: (conv_model(rand(1, 32, 7, 7), 24, 1, 1, (0, 0, 0, 0), relu=False), "conv"),
    "groups_asym_pads": lambda: (conv_model(rand(1, 16, 9, 9), 16, 3, 1, (0, 1, 2, 1), 2), "conv"),
    "dilated_batch2": lambda: (conv_model(rand(2, 8, 12, 12), 8, 3, 1, (2, 2, 2, 2), 1, 2), "conv"),
    "softmax": lambda: (node_model("Softmax", {"x": rand(4, 7, 32, scale=3.0)}, axis=-1), "softmax"),
    "softmax_odd_row": lambda: (node_model("Softmax", {"x": rand(3, 33)}, axis=-1), "softmax"),
    "layer_norm": lambda: (node_model("LayerNormalization", {"x": rand(3, 10, 64)}, {"g": rand(64), "b": rand(64)},
                                      axis=-1), "layer_norm"),
}


@pytest.mark.parametrize("case", list(NEON_CASES))
def test_neon_schedules_match_onnxruntime(case):
    """The 128-bit rules (reduction unrolled by 4, broadcast operand cached as vectors for fmla
    by lane, tile on the stack, wide matrix-vector blocks) against ONNX Runtime."""
    model, heavy = NEON_CASES[case]()
    feeds = {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
             for i in model.graph.input}
    mod = neon_module(model)
    texts = kernels(mod)
    names = [n for n in texts if is_heavy(n, heavy)]
    assert names, sorted(texts)
    for name in names:
        assert "T.parallel" in texts[name] and "T.vectorized" in texts[name], texts[name]
    expected = run_ort(model, feeds)
    assert_close(dict(zip(expected, run_module(mod, feeds))), expected, 1e-4, 1e-4, "scheduled for NEON")


def test_neon_matmul_tile_structure():
    """For a 128-bit target the matmul kernel has the k loop split by 4 and unrolled, A's 4
    consecutive k values copied as one 4-lane vector per tile row (the lane operand), and the
    accumulator tile in a stack buffer (no "local" workspace)."""
    model, _ = NEON_CASES["matmul_relu"]()
    text = next(t for n, t in kernels(neon_module(model)).items() if is_heavy(n, "matmul"))
    four = r"\((?:T\.int64\()?4\)?\)"
    assert re.search(r"for \w+ in T\.unroll" + four + ":", text), text
    assert re.search(r"for \w+ in T\.vectorized" + four + r":\n\s+with T\.sblock\(\"p0_global\"\)", text), text
    assert 'scope="local"' not in text, text


@pytest.mark.parametrize("case", ["softmax", "layer_norm"])
def test_neon_row_reductions_are_vectorized(case):
    """Row reductions over the innermost axis (softmax's max and sum, layer norm's statistics)
    keep 4 partial results per row in a vector (an rfactor block with a vectorized 4-lane loop)."""
    model, heavy = NEON_CASES[case]()
    text = next(t for n, t in kernels(neon_module(model)).items() if is_heavy(n, heavy))
    rf_blocks = re.findall(r"for \w+ in T\.vectorized\((?:T\.int64\()?4\)?\):\n\s+with T\.sblock\(\"(\w+_rf_update)\"\)",
                           text)
    assert rf_blocks, text


def test_default_tile_knobs():
    neon = rules.default_tile(1024, 128, 4, 128, 256)
    assert neon == {"vf": 8, "rf": 8, "ku": 4, "lane": 1, "order": 0, "pad": 0}
    # Loop order and padding: rows first on x86 for small conv weights (padding read in place
    # for depthwise convs, padded rows per output row otherwise); never on 128-bit NEON.
    small, large = 3 * 3 * 96 * 4, 3 * 3 * 512 * 512 * 4
    assert rules.default_tile(96, 56, 16, 512, 1, small)[("order")] == 1
    assert (rules.default_tile(96, 56, 16, 512, 1, small)["pad"]) == 2
    assert (rules.default_tile(64, 56, 16, 512, 64, 3 * 3 * 64 * 64 * 4)["pad"]) == 1
    assert {k: rules.default_tile(512, 7, 16, 512, 512, large)[k] for k in ("order", "pad")} == {"order": 0, "pad": 0}
    assert {k: rules.default_tile(96, 56, 4, 128, 1, small)[k] for k in ("order", "pad")} == {"order": 0, "pad": 0}
    assert {k: rules.default_tile(96, 56, 16, 512, 1)[k] for k in ("order", "pad")} == {"order": 0, "pad": 0}
    one_row = rules.default_tile(1024, 1, 4, 128, 512)
    assert (one_row["vf"], one_row["ku"], one_row["lane"]) == (32, 8, 1)  # 8 registers wide, 2 of A
    assert rules.default_tile(1024, 128, 4, 128, 3)["ku"] == 3   # RGB stem: unroll the 3 channels, no lanes
    assert rules.default_tile(1024, 128, 4, 128, 3)["lane"] == 0
    x86 = rules.default_tile(1024, 128, 16, 512, 256)
    assert (x86["ku"], x86["lane"]) == (4, 0)  # unrolled; AVX-512 broadcasts from memory, no lanes
    assert rules.default_tile(1024, 128, 16, 512, 33)["ku"] == 3
    assert (x86["vf"], x86["rf"]) == rules.register_tile(1024, 128, 16, rules.ACCUMULATORS[512])


def test_tiled_reduction_space_with_unroll_knobs():
    """The space starts with the default, includes the not-unrolled variants, every entry
    schedules, and knobs without "ku"/"lane" (older databases) take the defaults."""
    from tvm import te
    a, b = te.placeholder((8, 32), name="A"), te.placeholder((32, 16), name="B")
    k = te.reduce_axis((0, 32), name="k")
    c = te.compute((8, 16), lambda i, j: te.sum(a[i, k] * b[k, j], axis=k), name="C")
    func = te.create_prim_func([a, b, c])
    space = rules.tiled_reduction_space(func, 128)
    assert space[0] == rules.default_tile(16, 8, 4, 128, 32)
    assert {(s["ku"], s["lane"]) for s in space} == {(4, 1), (1, 0)}
    for knobs in space[:4] + [{"vf": 4, "rf": 2}]:
        assert rules.tiled_reduction(func, 128, knobs=knobs) is not None, knobs


def _have_aarch64_tools() -> bool:
    import shutil
    from edgec.errors import ToolError
    from edgec.targets import crosslink
    try:
        crosslink.find_toolchain()
    except ToolError:
        return False
    return shutil.which("aarch64-linux-gnu-objdump") is not None or shutil.which("llvm-objdump") is not None


@pytest.mark.skipif(not _have_aarch64_tools(), reason="needs an aarch64 cross compiler and objdump")
def test_a72_matmul_uses_fmla_by_lane_without_workspace(tmp_path):
    """The arm-a72 code of a matmul kernel multiplies by lane (`fmla vD.4s, vN.4s, vM.s[i]`,
    all four lanes used) and allocates no per-tile workspace."""
    import shutil
    import subprocess
    model, _ = NEON_CASES["matmul_relu"]()
    art = edgec.compile(model, target="arm-a72", output=tmp_path / "art").artifact
    tool = shutil.which("aarch64-linux-gnu-objdump") or shutil.which("llvm-objdump")
    asm = subprocess.run([tool, "-d", str(art.path / "model.so")], capture_output=True, text=True, check=True).stdout
    lanes = set(re.findall(r"fmla\s+v\d+\.4s, v\d+\.4s, v\d+\.s\[(\d)\]", asm))
    assert lanes == {"0", "1", "2", "3"}, lanes
    assert "TVMBackendAllocWorkspace" not in asm


def test_host_reduction_loop_unrolled_without_lane_cache():
    """On the host (x86) the matmul's k loop is unrolled by 4 too, but A is not copied into a
    lane buffer (x86 fma broadcasts its scalar from memory)."""
    model, _ = NEON_CASES["matmul_relu"]()
    text = next(t for n, t in kernels(scheduled_module(model)).items() if is_heavy(n, "matmul"))
    assert re.search(r"for \w+ in T\.unroll\((?:T\.int64\()?4\)?\):", text), text
    assert 'T.sblock("p0_global")' not in text, text


def _host_kernels(model):
    from edgec.targets.schedules import tuning
    target = get_target("host")
    mod = lower_graph(optimized(model), target)
    return tuning.extract_kernels(mod, target)


def _run_alone(func, arrays):
    lib = tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}),
                      target=get_target("host").tvm_target())
    tensors = [tvm.runtime.tensor(a.copy()) for a in arrays]
    lib["main"](*tensors)
    return [t.numpy() for t in tensors]


ORDER_CASES = {
    "depthwise_s2": lambda: conv_model(rand(1, 32, 9, 9), 32, 3, 2, (1, 1, 1, 1), 32),
    "conv_3x3": lambda: conv_model(rand(1, 16, 6, 6), 32, 3, 1, (1, 1, 1, 1)),
    "stem_rgb_asym": lambda: conv_model(rand(1, 3, 9, 9), 16, 3, 2, (0, 1, 2, 1)),
    "maxpool": lambda: node_model("MaxPool", {"x": rand(1, 16, 9, 9)}, kernel_shape=[3, 3], strides=[2, 2],
                                   pads=[1, 1, 1, 1]),
}


@pytest.mark.parametrize("case", list(ORDER_CASES))
def test_loop_order_and_padding_knobs_match_the_unscheduled_kernel(case):
    """Every loop order / padding setting ("order", "pad") of an NHWC conv or pool's space, with
    each register tile the space lists for it, computes what the unscheduled kernel computes
    (TVM's plain build of the same PrimFunc); all three (order, pad) pairs are tried when the
    kernel has a padding stage."""
    from edgec.targets.schedules import tuning
    target = get_target("host")
    tunable = [k for k in _host_kernels(ORDER_CASES[case]()) if k.space]
    assert tunable
    for k in tunable:
        pairs = {(kn["order"], kn["pad"]) for kn in k.space}
        assert pairs == {(0, 0), (1, 1), (1, 2)}, (k.name, pairs)
        args = tuning._random_args(k.func, seed=5)  # noqa: SLF001 - the tuner's own inputs
        expected = _run_alone(k.func, args)
        seen = set()
        for knobs in k.space:
            key = (knobs["order"], knobs["pad"], knobs["ku"])
            if key in seen and knobs["rf"] not in (1, k.space[0]["rf"]):
                continue  # one tile per setting beyond the first and single-row ones: keeps it fast
            seen.add(key)
            packs: list = []
            func, rule = schedule_func(k.func, target, k.constant_params, packs, knobs)
            assert rule == "tiled_reduction", (k.name, knobs)
            packed = list(args)
            for index, vf in packs:
                packed[index] = rules.repack(args[index], vf)
            got = _run_alone(func, packed)
            out = len(args) - 1
            np.testing.assert_allclose(got[out], expected[out], rtol=1e-4, atol=1e-4, err_msg=f"{k.name} {knobs}")


def test_depthwise_reads_padding_in_place_and_conv_pads_per_row():
    """Host defaults: a depthwise conv with small weights has no padded copy (the padding is
    inlined into its loads), a 3x3 conv with small weights pads rows inside its parallel row
    loop; a conv with large weights keeps the vector block outermost and a padded stage.
    Results equal ONNX Runtime."""
    x = rand(1, 32, 10, 10)
    nodes = [helper.make_node("Conv", ["x", "w1"], ["a"], pads=[1, 1, 1, 1], group=32),
             helper.make_node("Conv", ["a", "w2"], ["b"], pads=[1, 1, 1, 1]),
             helper.make_node("Conv", ["b", "w3"], ["c"], pads=[1, 1, 1, 1])]
    inits = {"w1": rand(32, 1, 3, 3, scale=0.5), "w2": rand(64, 32, 3, 3, scale=0.2),
             "w3": rand(256, 64, 3, 3, scale=0.1)}  # w3: 576 KiB, above ROWS_FIRST_BYTES
    model = make_model(nodes, {"x": x}, ["c"], inits)
    texts = check(model, {"x": x}, "conv", atol=1e-3)
    convs = sorted((n for n in texts if "conv" in n), key=lambda n: int(re.match(r"k(\d+)_", n).group(1)))
    assert len(convs) == 3, sorted(texts)
    depthwise, small, large = (texts[n] for n in convs)
    assert 'T.sblock("pad_temp")' not in depthwise, depthwise
    # The padded rows are made inside the conv's parallel row loop (one loop nest holds both
    # blocks); with large weights the padding is a loop nest of its own.
    assert any({"pad_temp", "conv2d_nhwc"} <= nest for nest in _root_nests(small)), small
    assert 'T.sblock("pad_temp")' in large
    assert not any("pad_temp" in nest and len(nest) > 1 for nest in _root_nests(large)), large


def _root_nests(text: str) -> list[set]:
    """The block names of each root-level loop nest of a printed PrimFunc."""
    lines = text.splitlines()
    fors = [len(ln) - len(ln.lstrip()) for ln in lines if ln.lstrip().startswith("for ")]
    top = min(fors)
    nests: list[set] = []
    for ln in lines:
        indent = len(ln) - len(ln.lstrip())
        if ln.lstrip().startswith("for ") and indent == top:
            nests.append(set())
        elif nests and indent <= top and ln.strip():
            nests.append(set())  # a statement at the root ends the nest
        m = re.search(r'T\.sblock\("(\w+?)(?:_init|_update)?"\)', ln)
        if m and nests:
            nests[-1].add(m.group(1))
    return [n for n in nests if n]


def test_batched_matmul_4d_keeps_the_vector_block_order():
    """A 4-D batched matmul (b, heads, i, j; one reduction axis) is not a conv: its space and
    default keep "order" 0, "pad" 0 on the host, and it still matches ONNX Runtime."""
    a, b = rand(1, 2, 8, 12), rand(1, 2, 12, 32)
    model = node_model("MatMul", {"a": a, "b": b})
    tunable = [k for k in _host_kernels(model) if k.space]
    assert tunable
    for k in tunable:
        assert {(kn["order"], kn["pad"]) for kn in k.space} == {(0, 0)}, k.name
    check(model, {"a": a, "b": b}, "matmul")


def _unrolled_copies(text: str) -> int:
    """The most copies of one statement that a printed PrimFunc's nested `T.unroll` loops make
    (the product of the unrolled extents around it, deepest nest)."""
    stack: list[tuple[int, int]] = []  # (indent, unrolled extent or 1) of the enclosing loops
    most = 1
    for ln in text.splitlines():
        if not ln.strip():
            continue
        indent = len(ln) - len(ln.lstrip())
        while stack and stack[-1][0] >= indent:
            stack.pop()
        m = re.match(r"\s*for \w+ in T\.(\w+)\((?:T\.int64\()?(\d+)", ln)
        if m:
            stack.append((indent, int(m.group(2)) if m.group(1) == "unroll" else 1))
            most = max(most, int(np.prod([e for _, e in stack])))
    return most


def test_many_channel_depthwise_unrolls_only_the_register_tile():
    """A depthwise 3x3 conv + relu6 with many channels (1x14x14x384 NHWC, MobileNetV2's), rows
    first on the host: only the register tile's rows are unrolled, never the loop over a row's
    tiles (96 of them here: that copied the kernel body 96 times, ~1 min of LLVM per kernel).
    Every setting of its space, each still parallel and vectorized."""
    x = rand(1, 384, 14, 14)
    inits = {"w": rand(384, 1, 3, 3, scale=0.5), "b": rand(384),
             "lo": np.array(0, np.float32), "hi": np.array(6, np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], pads=[1, 1, 1, 1], group=384),
             helper.make_node("Clip", ["y", "lo", "hi"], ["z"])]
    target = get_target("host")
    tunable = [k for k in _host_kernels(make_model(nodes, {"x": x}, ["z"], inits)) if k.space]
    assert len(tunable) == 1
    k = tunable[0]
    assert k.space[0]["order"] == 1, k.space[0]
    for knobs in k.space:
        func, rule = schedule_func(k.func, target, k.constant_params, [], knobs)
        assert rule == "tiled_reduction", knobs
        text = func.script()
        assert "T.parallel" in text and "T.vectorized" in text, (knobs, text)
        assert _unrolled_copies(text) <= knobs["rf"] * knobs["ku"] <= 32, (knobs, text)
