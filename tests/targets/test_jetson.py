"""The Jetson targets and the GPU schedules: what each target names, dlight's rules with the
fallback when one raises, GEMV kept off outputs it would overrun, and kernels no rule schedules
refused by name. Building SASS and checking the kernels' numbers are in test_cuda_build.py and
test_cuda_cpu.py."""

import numpy as np
import pytest
from onnx import helper

from edgec import import_onnx
from edgec.errors import EdgecError
from edgec.targets import get_target
from edgec.targets.jetson import JETSON_TARGETS
from onnx_util import make_model, node_model

EXPECTED = {  # name: (sm, host CPU, int8 dp4a) - NVIDIA's published compute capabilities
    "jetson-orin": (87, "cortex-a78ae", True),
    "jetson-xavier": (72, "carmel", True),
    "jetson-nano": (53, "cortex-a57", False),
    "jetson-tx2": (62, "cortex-a57", True),
    "jetson-thor": (110, "neoverse-v3ae", True),
}


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_target_fields(name):
    t = get_target(name)
    sm, host, dp4a = EXPECTED[name]
    assert (t.kind, t.arch, t.sm, t.cuda_arch, t.host_cpu, t.dotprod) == ("cuda", "aarch64", sm, f"sm_{sm}", host, dp4a)
    assert t.fp16 and t.jetpack.startswith("JetPack")
    tvm_target = t.tvm_target()  # TVM accepts the dict, with the host given explicitly
    assert str(tvm_target.kind) == "cuda" and str(tvm_target.attrs["arch"]) == f"sm_{sm}"
    assert str(tvm_target.host.attrs["mcpu"]) == host
    assert str(tvm_target.host.attrs["mtriple"]) == "aarch64-linux-gnu"
    assert t.pipeline(2)  # a default pipeline at each level


def test_aliases():
    assert {a: get_target(a).name for a in ("orin", "orin-nano", "agx-orin", "xavier")} == {
        "orin": "jetson-orin", "orin-nano": "jetson-orin", "agx-orin": "jetson-orin", "xavier": "jetson-xavier"}
    assert sorted(t.name for t in JETSON_TARGETS) == sorted(EXPECTED)


def test_targets_command_lists_them(capsys):
    from edgec.cli import main
    assert main(["targets"]) == 0
    out = capsys.readouterr().out
    for name, (sm, host, _) in EXPECTED.items():
        line = next(i for i, text in enumerate(out.splitlines()) if text.startswith(name))
        detail = out.splitlines()[line + 1]
        assert f"CUDA sm_{sm}" in detail and f"host {host}" in detail, detail


def _gpu_kernels(model, target="jetson-orin"):
    """{kernel: rule} of the model's kernels as the GPU pipeline schedules them (no build)."""
    import tvm
    from edgec import optimize
    from edgec.targets.lower import lower_graph
    from edgec.targets.schedules.gpu import gpu_pipeline
    t = get_target(target)
    graph = optimize(import_onnx(model), level=1)
    report = {}
    with t.tvm_target():
        mod = gpu_pipeline(t, report=report)(lower_graph(graph, t))
    prims = [gv.name_hint for gv, f in mod.functions_items() if isinstance(f, tvm.tirx.PrimFunc)]
    return report, prims


def test_rule_that_raises_falls_through_to_the_next():
    # A padded 3x3 depthwise conv with a 1x1 output: dlight's GEMV rule asserts on it (DESIGN.md
    # section 4).
    rng = np.random.default_rng(0)
    model = node_model("Conv", {"x": rng.standard_normal((1, 32, 1, 1), dtype=np.float32)},
                       {"w": rng.standard_normal((32, 1, 3, 3), dtype=np.float32)}, group=32, pads=[1, 1, 1, 1])
    report, _ = _gpu_kernels(model)
    (rule,) = report.values()
    assert rule.startswith("dlight.") and "GEMV raised" in rule, rule


@pytest.mark.parametrize("n, gemv", [(48, True), (40, False)])
def test_gemv_only_for_outputs_a_multiple_of_16(n, gemv):
    # A matrix-vector product, the 1x1 conv on a 1x1 image of MobileNetV2's last blocks: 144 -> n
    # channels. TVM 0.27's GEMV writes past the end of an output whose size is not a multiple of
    # 16, so another rule must schedule that one.
    rng = np.random.default_rng(0)
    model = node_model("Conv", {"x": rng.standard_normal((1, 144, 1, 1), dtype=np.float32)},
                       {"w": rng.standard_normal((n, 144, 1, 1), dtype=np.float32)})
    report, _ = _gpu_kernels(model)
    (rule,) = report.values()
    assert rule.startswith("dlight.GEMV") == gemv, rule
    assert rule.startswith("dlight."), rule


def test_every_kernel_scheduled_or_build_refused(tmp_path):
    # An LSTM's recurrence is a loop nest no GPU rule schedules: the build stops and names it.
    rng = np.random.default_rng(0)
    h = 8
    nodes = [helper.make_node("LSTM", ["x", "W", "R"], ["y"], hidden_size=h, name="lstm")]
    model = make_model(nodes, {"x": rng.standard_normal((5, 1, 4), dtype=np.float32)}, ["y"],
                       {"W": rng.standard_normal((1, 4 * h, 4), dtype=np.float32),
                        "R": rng.standard_normal((1, 4 * h, h), dtype=np.float32)})
    out = tmp_path / "out"
    from edgec import compile as edgec_compile
    with pytest.raises(EdgecError, match=r"no GPU schedule for 1 kernel\(s\): k\d+_recurrence \(node %\d+"):
        edgec_compile(model, target="jetson-orin", output=out)
    assert not out.exists() and list(tmp_path.iterdir()) == []  # nothing half-written


def test_all_example_kernels_scheduled():
    # Every PrimFunc of the MLP gets a dlight rule; none is left for TVM to run on the host.
    rng = np.random.default_rng(0)
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
             helper.make_node("MatMul", ["b", "w2"], ["y"]), helper.make_node("Softmax", ["y"], ["z"])]
    model = make_model(nodes, {"x": rng.standard_normal((4, 64), dtype=np.float32)}, ["z"],
                       {"w1": rng.standard_normal((64, 32), dtype=np.float32),
                        "w2": rng.standard_normal((32, 10), dtype=np.float32)})
    report, prims = _gpu_kernels(model)
    assert sorted(report) == sorted(prims) and len(prims) >= 3
    assert all(rule.startswith("dlight.") for rule in report.values()), report


def test_int8_model_gets_integer_gpu_kernels():
    # A QDQ model keeps its integer nodes on the GPU (the quantized IR, generic integer lowering:
    # no dp4a kernels yet); the ARM sdot kernels, which `dotprod` selects on CPU targets, are not
    # used for a GPU whose `dotprod` means dp4a.
    from onnx_util import qlinear_conv_chain
    model, _ = qlinear_conv_chain()
    report, prims = _gpu_kernels(model)
    assert any("qlinear_conv" in k for k in prims)
    assert sorted(report) == sorted(prims) and all(r.startswith("dlight.") for r in report.values()), report


def test_no_cuda_compiler_is_one_clear_error(monkeypatch, tmp_path, capsys):
    from edgec.cli import main
    from edgec.targets import cuda
    monkeypatch.setattr(cuda, "nvcc_path", lambda: None)
    monkeypatch.setattr(cuda, "nvrtc_problem", lambda sm: "NVRTC is not installed")
    rng = np.random.default_rng(0)
    model = node_model("Relu", {"x": rng.standard_normal((4, 4), dtype=np.float32)})
    path = tmp_path / "relu.onnx"
    path.write_bytes(model.SerializeToString())
    assert main(["compile", str(path), "--target", "jetson-nano", "-o", str(tmp_path / "out")]) != 0
    err = capsys.readouterr().err
    assert "cannot build CUDA kernels for jetson-nano (sm_53)" in err and cuda.INSTALL_NVRTC in err, err
    assert "Traceback" not in err and not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["relu.onnx"]


def _can_build_cuda() -> bool:
    from edgec.errors import ToolError
    from edgec.targets import cuda
    try:
        cuda.cuda_compiler(get_target("jetson-orin"))
        return True
    except ToolError:
        return False


@pytest.mark.skipif(not _can_build_cuda(), reason="needs nvcc (CUDA toolkit) or NVRTC (pip install 'edgec[cuda]')")
def test_gpu_artifact_is_not_run_or_profiled_on_the_cpu(tmp_path, capsys):
    from toolchain import can_build_arm
    if not can_build_arm():
        pytest.skip("needs an aarch64 cross compiler")
    from edgec.cli import main
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 4), dtype=np.float32)
    (tmp_path / "relu.onnx").write_bytes(node_model("Relu", {"x": x}).SerializeToString())
    np.save(tmp_path / "x.npy", x)
    out = tmp_path / "out"
    assert main(["compile", str(tmp_path / "relu.onnx"), "--target", "jetson-orin", "-o", str(out)]) == 0
    capsys.readouterr()
    for command in (["run", str(out), "--input", f"x={tmp_path / 'x.npy'}"], ["profile", str(out)]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert "built for the GPU of jetson-orin (sm_87)" in err and "edgec verify MODEL --target jetson-orin" in err
        assert "Traceback" not in err


@pytest.mark.parametrize("version, sm, builds", [
    ((13, 0), 87, True), ((13, 0), 110, True), ((13, 0), 72, False), ((13, 0), 53, False),
    ((12, 6), 53, True), ((12, 6), 87, True), ((12, 6), 110, False), ((11, 4), 72, False)])
def test_which_nvcc_builds_which_sm(version, sm, builds):
    # NVIDIA's release notes: CUDA 13 dropped Maxwell, Pascal and Volta; sm_110 is CUDA 13's name.
    from edgec.targets.cuda import nvcc_supports
    assert nvcc_supports(version, sm) == builds
