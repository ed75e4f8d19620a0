"""convert-precision: which nodes become f16 and which keep f32, the casts at the boundaries,
constants converted at compile time, idempotence; equivalence with the fp32 graph within 2e-2 on
random graphs and the example models (interpreter, and the host-compiled module); the pipelines
of --precision; and a CUDA build for jetson-orin with half kernels."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import edgec
from edgec.errors import EdgecError
from edgec.passmanager import PassManager, resolve_pipeline
from edgec.testing import graph_and_inputs
from edgec.verify import compare, output_scale

from pass_helpers import run_pass

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tools"))
import make_models  # noqa: E402

RTOL = 2e-2  # of each output's scale (max |fp32 output|)


def assert_within(got: dict, expected: dict, rtol: float = RTOL, what: str = "") -> float:
    """Every output of `got` within `rtol` of the scale of the `expected` one; the worst ratio."""
    assert list(got) == list(expected)
    worst = 0.0
    for name in expected:
        assert got[name].dtype == expected[name].dtype, (what, name, got[name].dtype)
        err = compare(got[name], expected[name])
        scale = max(output_scale(expected[name]), 1e-3)
        assert err.abs <= rtol * scale, f"{what} {name}: max abs error {err.abs:.3g}, scale {scale:.3g}"
        worst = max(worst, err.abs / scale)
    return worst


def check(text: str, pipeline: str, expected: str, seed: int = 0, outputs: bool = True):
    """The pipeline turns `text` into `expected` and (`outputs`) keeps the outputs within RTOL."""
    before, after, pm = run_pass(text, pipeline)
    want = str(edgec.parse_ir(expected))
    assert str(after) == want, f"\n--- got ---\n{after}\n--- expected ---\n{want}"
    if outputs:
        feeds = edgec.testing.random_inputs(before, seed)
        assert_within(edgec.interpret(after, feeds), edgec.interpret(before, feeds), what=pipeline)
    assert not changes(after, pipeline), "a second run changed the graph"
    return pm.records[0].stats


def changes(graph, pipeline: str) -> bool:
    """Whether the one-pass `pipeline` changes `graph` (run on it)."""
    pm = PassManager(pipeline)
    pm.run(graph)
    return pm.records[0].changed


MLP = """graph @main(%x: f32[2,4]) -> (%y: f32[2,3]) {
  %c0 = const f32[3,4] [1.0, 2.0, 3.0, 4.0, 0.5, 0.25, -1.0, -2.0, 1.5, -0.5, 0.0, 2.0]
  %c1 = const f32[3] [0.5, -0.5, 1.0]
  %0 = dense(%x, %c0, %c1) {activation="relu"} : f32[2,3]  @"fc"
  %1 = softmax(%0) : f32[2,3]  @"sm"
  %2 = mul(%1, %0) : f32[2,3]  @"scale"
  return %2
}"""


def test_fp16_converts_the_dense_and_the_mul_and_keeps_softmax_in_f32():
    stats = check(MLP, "convert-precision{to=fp16}", """graph @main(%x: f32[2,4]) -> (%y: f32[2,3]) {
      %c0 = const f16[3,4] [1.0, 2.0, 3.0, 4.0, 0.5, 0.25, -1.0, -2.0, 1.5, -0.5, 0.0, 2.0]
      %c1 = const f16[3] [0.5, -0.5, 1.0]
      %0 = cast(%x) {to="f16"} : f16[2,4]  @"fc"
      %1 = dense(%0, %c0, %c1) {activation="relu"} : f16[2,3]  @"fc"
      %2 = cast(%1) {to="f32"} : f32[2,3]  @"fc"
      %3 = softmax(%2) : f32[2,3]  @"sm"
      %4 = cast(%3) {to="f16"} : f16[2,3]  @"sm"
      %5 = mul(%4, %1) : f16[2,3]  @"scale"
      %6 = cast(%5) {to="f32"} : f32[2,3]  @"scale"
      return %6
    }""")
    assert stats == {"converted-dense": 1, "converted-mul": 1, "kept-f32-softmax": 1, "casts-to-f16": 2,
                     "casts-to-f32": 2, "constants-converted": 2}


def test_mixed_converts_only_the_multiply_accumulate_ops():
    stats = check(MLP, "convert-precision{to=mixed}", """graph @main(%x: f32[2,4]) -> (%y: f32[2,3]) {
      %c0 = const f16[3,4] [1.0, 2.0, 3.0, 4.0, 0.5, 0.25, -1.0, -2.0, 1.5, -0.5, 0.0, 2.0]
      %c1 = const f16[3] [0.5, -0.5, 1.0]
      %0 = cast(%x) {to="f16"} : f16[2,4]  @"fc"
      %1 = dense(%0, %c0, %c1) {activation="relu"} : f16[2,3]  @"fc"
      %2 = cast(%1) {to="f32"} : f32[2,3]  @"fc"
      %3 = softmax(%2) : f32[2,3]  @"sm"
      %4 = mul(%3, %2) : f32[2,3]  @"scale"
      return %4
    }""")
    assert stats["converted-dense"] == 1 and stats["kept-f32-softmax"] == 1 and stats["kept-f32-mul"] == 1


def test_the_normalizations_and_summing_reductions_keep_f32_but_max_does_not():
    text = """graph @main(%x: f32[2,8]) -> (%a: f32[2,8], %b: f32[2,1], %c: f32[2,1], %d: f32[2,8]) {
      %c0 = const f32[8] [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
      %c1 = const f32[8] [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
      %0 = layer_norm(%x, %c0, %c1) : f32[2,8]  @"ln"
      %1 = reduce_sum(%x) {axes=[1], keepdims=1} : f32[2,1]  @"sum"
      %2 = reduce_max(%x) {axes=[1], keepdims=1} : f32[2,1]  @"max"
      %3 = log_softmax(%x) : f32[2,8]  @"lsm"
      return %0, %1, %2, %3
    }"""
    stats = check(text, "convert-precision{to=fp16}", """graph @main(%x: f32[2,8]) -> (%a: f32[2,8], %b: f32[2,1], %c: f32[2,1], %d: f32[2,8]) {
      %c0 = const f32[8] [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0]
      %c1 = const f32[8] [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]
      %0 = layer_norm(%x, %c0, %c1) : f32[2,8]  @"ln"
      %1 = reduce_sum(%x) {axes=[1], keepdims=1} : f32[2,1]  @"sum"
      %2 = cast(%x) {to="f16"} : f16[2,8]  @"max"
      %3 = reduce_max(%2) {axes=[1], keepdims=1} : f16[2,1]  @"max"
      %4 = cast(%3) {to="f32"} : f32[2,1]  @"max"
      %5 = log_softmax(%x) : f32[2,8]  @"lsm"
      return %0, %1, %4, %5
    }""")
    assert stats["kept-f32-layer_norm"] == stats["kept-f32-reduce_sum"] == stats["kept-f32-log_softmax"] == 1


def test_constants_are_clamped_to_the_f16_range_and_an_f32_reader_keeps_its_copy():
    text = """graph @main(%x: f32[3]) -> (%y: f32[3], %z: f32[1]) {
      %c0 = const f32[3] [-1e9, 1e-9, 0.0]
      %0 = add(%x, %c0) : f32[3]  @"mask"
      %1 = reduce_sum(%c0) {axes=[0], keepdims=1} : f32[1]  @"sum"
      return %0, %1
    }"""
    stats = check(text, "convert-precision{to=fp16}", f"""graph @main(%x: f32[3]) -> (%y: f32[3], %z: f32[1]) {{
      %c0 = const f16[3] [-65504.0, {float(np.float16(2.0 ** -24))}, 0.0]
      %c1 = const f32[3] [-1e9, 1e-9, 0.0]
      %0 = cast(%x) {{to="f16"}} : f16[3]  @"mask"
      %1 = add(%0, %c0) : f16[3]  @"mask"
      %2 = cast(%1) {{to="f32"}} : f32[3]  @"mask"
      %3 = reduce_sum(%c1) {{axes=[0], keepdims=1}} : f32[1]  @"sum"
      return %2, %3
    }}""", outputs=False)  # -1e9 + x is -65504 + x now: the point of clamping, where a mask must stay finite
    assert stats["constants-clamped"] == 1 and stats["constants-converted"] == 1


def test_an_integer_cast_to_f32_becomes_one_to_f16_and_float_casts_stay():
    text = """graph @main(%i: i64[4], %h: f16[4]) -> (%y: f32[4], %b: bool[4]) {
      %0 = cast(%i) {to="f32"} : f32[4]  @"tofloat"
      %1 = cast(%h) {to="f32"} : f32[4]  @"widen"
      %2 = add(%0, %1) : f32[4]  @"add"
      %3 = less(%2, %0) : bool[4]  @"less"
      return %2, %3
    }"""
    check(text, "convert-precision{to=fp16}", """graph @main(%i: i64[4], %h: f16[4]) -> (%y: f32[4], %b: bool[4]) {
      %0 = cast(%i) {to="f16"} : f16[4]  @"tofloat"
      %1 = cast(%h) {to="f32"} : f32[4]  @"widen"
      %2 = cast(%1) {to="f16"} : f16[4]  @"widen"
      %3 = add(%0, %2) : f16[4]  @"add"
      %4 = cast(%3) {to="f32"} : f32[4]  @"add"
      %5 = less(%3, %0) : bool[4]  @"less"
      return %4, %5
    }""")


def test_graphs_without_f32_computation_are_unchanged():
    for text in ["""graph @main(%x: f64[4]) -> (%y: f64[4]) {
                      %0 = relu(%x) : f64[4]  @"r"
                      return %0
                    }""",
                 """graph @main(%x: i64[4]) -> (%y: i64[4]) {
                      %0 = add(%x, %x) : i64[4]  @"a"
                      return %0
                    }""",
                 """graph @main(%x: f32[2,4]) -> (%y: f32[2,4]) {
                      %0 = softmax(%x) : f32[2,4]  @"s"
                      return %0
                    }"""]:
        before, after, pm = run_pass(text, "convert-precision{to=fp16}")
        assert str(after) == str(before) and not pm.records[0].changed


# ---- equivalence ---------------------------------------------------------------------------------

RELAXED = settings(suppress_health_check=[HealthCheck.filter_too_much, HealthCheck.too_slow], deadline=None,
                   max_examples=60)


@pytest.mark.parametrize("to", ["fp16", "mixed"])
@RELAXED
@given(data=st.data())
def test_random_graphs_keep_their_outputs_within_2e_2(to, data):
    """Every output within 2e-2 of its scale, inputs and outputs keep their dtypes, the verifier
    accepts the result, a second run changes nothing, and under fp16 every node that computes on
    f32 is one the pass keeps in f32."""
    from edgec.passes.convert_precision import F32_MATH
    graph, feeds, expected = data.draw(graph_and_inputs(focus=()))
    work = graph.copy()
    PassManager(f"convert-precision{{to={to}}}").run(work)
    assert [v.type for v in work.inputs] == [v.type for v in graph.inputs]
    assert [v.type for v in work.outputs] == [v.type for v in graph.outputs]
    assert_within(edgec.interpret(work, feeds), expected, what=to)
    text = str(work)
    assert not changes(work, f"convert-precision{{to={to}}}") and str(work) == text
    if to == "fp16":
        for node in work.nodes:
            if any(v.type.dtype == "f32" for v in node.outputs) and node.op != "cast":
                assert node.op in F32_MATH, node.describe()


@pytest.fixture(scope="module")
def models():
    return {name: make_models.build(name, small=True) for name in ("mlp", "mobilenetv2", "transformer", "resnet18")}


@pytest.mark.parametrize("precision", ["fp16", "mixed"])
@pytest.mark.parametrize("name", ["mlp", "mobilenetv2", "transformer", "resnet18"])
def test_example_models_within_2e_2_of_fp32(models, name, precision):
    graph = edgec.import_onnx(models[name])
    feeds = edgec.verify.random_inputs(graph, 0)
    fp32 = edgec.optimize(graph, target="jetson-orin", level=2)
    half = edgec.optimize(graph, target="jetson-orin", level=2, precision=precision)
    assert any(v.type.dtype == "f16" for n in half.nodes for v in n.outputs)
    assert_within(edgec.interpret(half, feeds), edgec.interpret(fp32, feeds), what=f"{name} {precision}")


@pytest.mark.parametrize("name,precision", [("mlp", "fp16"), ("mobilenetv2", "fp16"), ("transformer", "fp16"),
                                            ("resnet18", "fp16"), ("transformer", "mixed")])
def test_host_compiled_f16_kernels_within_2e_2_of_fp32(models, name, precision, tmp_path):
    """The host runs float16 code too (slowly): the level-2 pipeline with convert-precision,
    compiled for the host, against the fp32 graph in the interpreter."""
    graph = edgec.import_onnx(models[name])
    feeds = edgec.verify.random_inputs(graph, 0)
    pipeline = resolve_pipeline("host", 2).replace("convert-layout{to=NHWC}",
                                                   f"convert-layout{{to=NHWC}},convert-precision{{to={precision}}}")
    assert "convert-precision" in pipeline
    art = edgec.compile(graph, target="host", output=tmp_path / "out", passes=pipeline).artifact
    assert "f16" in (tmp_path / "out" / "model.eir").read_text()
    fp32 = edgec.optimize(graph, target="host", level=2)
    assert_within(art.run(feeds), edgec.interpret(fp32, feeds), what=f"{name} {precision} compiled")


# ---- --precision: pipelines, refusals, CLI -------------------------------------------------------

def test_precision_goes_after_convert_layout_in_the_level_pipeline():
    plain = resolve_pipeline("jetson-orin", 2)
    fp16 = resolve_pipeline("jetson-orin", 2, precision="fp16")
    assert fp16 == plain.replace("convert-layout{to=NCHW}", "convert-layout{to=NCHW},convert-precision{to=fp16}")
    assert resolve_pipeline("jetson-xavier", 0, precision="mixed") == "convert-precision{to=mixed}"
    assert resolve_pipeline("jetson-nano", 1, precision="fp16") == resolve_pipeline("jetson-nano", 1) + \
        ",convert-precision{to=fp16}"


@pytest.mark.parametrize("target", ["host", "arm-a72", "arm-a76"])
def test_precision_is_refused_for_cpu_targets(target):
    with pytest.raises(EdgecError, match=f"target '{target}' computes in float32 only.*jetson-orin"):
        resolve_pipeline(target, 2, precision="fp16")


def test_precision_with_explicit_passes_is_refused():
    with pytest.raises(EdgecError, match=r"put convert-precision\{to=mixed\} into it"):
        resolve_pipeline("jetson-orin", passes="dce", precision="mixed")


def _edgec(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgec", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_cli_opt_and_compile_take_precision(models, tmp_path):
    path = tmp_path / "mlp.onnx"
    path.write_bytes(models["mlp"].SerializeToString())
    r = _edgec("opt", path, "--target", "jetson-orin", "--precision", "fp16")
    assert r.returncode == 0, r.stderr
    assert "dense(%0" in r.stdout and ": f16[1,128]" in r.stdout and "%0 = cast(%input) {to=\"f16\"}" in r.stdout
    r = _edgec("compile", path, "--target", "arm-a72", "--precision", "fp16", "-o", tmp_path / "out")
    assert r.returncode == 2 and "computes in float32 only" in r.stderr and not (tmp_path / "out").exists()
    r = _edgec("compile", path, "--target", "jetson-orin", "--precision", "half", "-o", tmp_path / "out")
    assert r.returncode == 2 and "invalid choice: 'half'" in r.stderr


# ---- the CUDA build ---------------------------------------------------------------------------

def _cuda_compiler() -> str | None:
    from edgec.errors import ToolError
    from edgec.targets import get_target
    from edgec.targets.cuda import cuda_compiler
    try:
        return cuda_compiler(get_target("jetson-orin"))
    except ToolError:
        return None


ATTENTION = """graph @main(%x: f32[16,64]) -> (%y: f32[16,64]) {
  %c0 = const f32[64,64] #0
  %c1 = const f32[64] #1
  %0 = dense(%x, %c0, %c1) : f32[16,64]  @"proj"
  %1 = softmax(%0) : f32[16,64]  @"softmax"
  %2 = matmul(%1, %0) {transpose_b=1} : f32[16,16]  @"scores"
  %3 = matmul(%2, %x) : f32[16,64]  @"mix"
  %4 = layer_norm(%3, %c1, %c1) : f32[16,64]  @"norm"
  return %4
}"""


@pytest.mark.skipif(_cuda_compiler() is None, reason="needs nvcc (CUDA 12/13) or NVRTC (pip install 'edgec[cuda]') "
                    "to build CUDA kernels")
def test_jetson_orin_fp16_build_makes_half_kernels(monkeypatch):
    """The CUDA code of an fp16 build computes on half tensors: the dense and matmul kernels
    read half and accumulate in float, softmax and layer norm stay float."""
    from tvm.support import nvcc
    sources = []
    compile_cuda = nvcc.compile_cuda

    def recording(code, *args, **kwargs):
        sources.append(code)
        return compile_cuda(code, *args, **kwargs)

    monkeypatch.setattr(nvcc, "compile_cuda", recording)
    rng = np.random.default_rng(0)
    graph = edgec.parse_ir(ATTENTION.replace("#0", "[" + ", ".join(map(str, rng.normal(0, 0.1, 64 * 64))) + "]")
                           .replace("#1", "[" + ", ".join(map(str, rng.normal(1, 0.1, 64))) + "]"))
    from edgec.driver import build
    result = build(graph, "jetson-orin", precision="fp16")
    assert [v.type.dtype for v in result.graph.outputs] == ["f32"]
    code = "\n".join(sources)
    # kernel name -> (parameters, body up to the next kernel)
    found = re.findall(r'__global__ void (?:__launch_bounds__\(\d+\) )?(k\w+)_kernel\(([^)]*)\) \{(.*?)(?=extern "C"|\Z)',
                       code, re.S)
    kernels = {name: (params, body) for name, params, body in found}
    assert set(kernels) == set(result.kernels)
    params, body = kernels["k1_dense"]
    assert params.count("half*") == 4 and re.search(r"\bfloat2? \w*matmul\w*local", body)  # half in, float sums
    assert "half2" in body  # loads two halves at a time
    for name in ("k3_softmax", "k7_layer_norm"):
        assert "half" not in kernels[name][0]  # float tensors in and out
    assert kernels["k6_matmul_cast"][0].startswith("float*")  # the matmul whose result goes to the layer norm
    assert set(result.schedules) == set(result.kernels)


def test_verify_and_bisect_compare_at_f16_tolerance_with_precision(models):
    """With --precision the float32 outputs are held to float16's tolerance (1e-2 of their scale):
    the fp16 graph passes; the same pipeline given as --passes is held to float32's (1e-4) and
    bisect names convert-precision as the pass whose outputs diverge."""
    from edgec.verify import bisect, verify_model
    model = models["transformer"]
    report = verify_model(model, target="jetson-orin", precision="fp16", compiled=False)
    assert "convert-precision{to=fp16}" in report.pipeline and report.ok
    (out,) = report.outputs
    assert out.bound == pytest.approx(1e-2 * out.scale) and 1e-4 * out.scale < out.interpreter.abs <= out.bound
    assert bisect(model, target="jetson-orin", precision="fp16").culprit is None
    strict = bisect(model, target="jetson-orin", passes=resolve_pipeline("jetson-orin", 2, precision="fp16"))
    assert strict.culprit == "convert-precision{to=fp16}"


# ---- every op ---------------------------------------------------------------------------------
# The examples of test_layout_every_op (each op after convs of its own), in its batches.

def _every_op():
    from test_layout_every_op import OP_BATCHES, _feeds, batch_graph
    return OP_BATCHES, batch_graph, _feeds


def test_every_op_under_fp16_keeps_its_float_outputs_within_2e_2():
    """The float outputs of every op's example within 2e-2 after the fp16 pipeline (interpreter).
    Integer outputs made from floats (a quantize_linear of a conv's output, a cast to int) may
    round the other way now that the conv computes in float16, so they are not compared."""
    batches, batch_graph, feeds_of = _every_op()
    for ops in batches:
        graph = batch_graph(ops)
        feeds = feeds_of(graph)
        expected = edgec.interpret(graph, feeds)
        half = edgec.optimize(graph, target="jetson-orin", level=2, precision="fp16")
        assert any(v.type.dtype == "f16" for n in half.nodes for v in n.outputs)
        floats = [k for k, v in expected.items() if v.dtype.kind == "f"]
        got = edgec.interpret(half, feeds)
        assert_within({k: got[k] for k in floats}, {k: expected[k] for k in floats}, what=f"{ops[0]}..{ops[-1]}")


@pytest.mark.skipif(_cuda_compiler() is None, reason="needs nvcc (CUDA 12/13) or NVRTC (pip install 'edgec[cuda]') "
                    "to build CUDA kernels")
def test_every_elementwise_op_under_fp16_builds_for_jetson_orin(monkeypatch):
    """The example of every elementwise op (and grid_sample), on the graph input rather than after
    a conv, compiled for jetson-orin after the fp16 pipeline, nvcc included: this found the
    float16 functions TVM's CUDA code lacks (asin, acos, ..., atan and erf: `hatan`, `herf`
    undefined; pow; float mod) and grid_sample's float32 arithmetic."""
    from tvm.support import nvcc
    from edgec.driver import build
    from edgec.ir import Graph, TensorType
    from edgec.ops import OPS
    from test_layout_every_op import EXAMPLES, SHAPE, Example

    class OnInput(Example):
        def x(self):
            return self.input

    graph = Graph()
    e = OnInput(graph, graph.add_input("x", TensorType("f32", SHAPE)), seed=0)
    ops = sorted(op for op in EXAMPLES if OPS[op].kind == "elementwise") + ["grid_sample"]
    outs = [v for op in ops for v in EXAMPLES[op](e)]
    graph.set_outputs(outs, [f"out{i}" for i in range(len(outs))])
    sources = []
    compile_cuda = nvcc.compile_cuda
    monkeypatch.setattr(nvcc, "compile_cuda", lambda code, *a, **k: sources.append(code) or compile_cuda(code, *a, **k))
    result = build(graph, "jetson-orin", level=2, precision="fp16")
    (stats,) = [r.stats for r in result.pass_manager.records if r.name.startswith("convert-precision")]
    assert all(stats.get(f"converted-{op}") for op in ("asin", "atan", "erf", "pow", "mod", "round", "grid_sample"))
    assert len(sources) == 1 and "half" in sources[0]
