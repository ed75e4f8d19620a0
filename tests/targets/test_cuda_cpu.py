"""The CUDA kernels of a Jetson build checked on the CPU (targets/cuda_cpu.py): TVM's CUDA C for
every kernel, compiled with g++ against edgec's fiber shim, run with the grid and block sizes it
was lowered with.

- for the small models of tools/make_models.py on jetson-orin: every kernel within 1e-5
  (relative to its output's scale) of the unscheduled kernel built for LLVM, with no write outside
  its buffers, and the whole model within verify's f32 tolerance of ONNX Runtime;
- negative controls, showing the check can fail: a kernel without its __syncthreads() barriers,
  a kernel launched with fewer threads than it was lowered for, and a GEMV kernel on an output
  of 40 rows (TVM 0.27's cross-thread reduction stores past its end: the reason gpu.py keeps
  GEMV off such kernels), caught by the guard zones;
- `edgec verify --target jetson-orin` says it checked the GPU kernels on the CPU.

Needs only g++ (no nvcc, no GPU).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from edgec.onnx_import import import_onnx
from edgec.passmanager import optimize
from edgec.targets import get_target
from edgec.verify import compare, error_bound, random_inputs, run_onnxruntime
from onnx import helper
from onnx_util import make_model, node_model, run_ort

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CPU check of CUDA kernels needs g++ "
                                                                     "(apt-get install g++)")

ROOT = Path(__file__).resolve().parents[2]
MODELS = ["mlp", "mobilenetv2", "transformer", "resnet18"]
TARGET = "jetson-orin"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_models.py"), "--out", str(out), "--small", *MODELS],
                   check=True, capture_output=True, timeout=300)
    return out


def _prepared(path, **options):
    from edgec.targets.cuda_cpu import CudaOnCpu
    graph = optimize(import_onnx(path), target=TARGET)
    return graph, CudaOnCpu(graph, get_target(TARGET), **options)


@pytest.fixture(scope="module")
def checked(models):
    """{model: (CpuCheckReport, ONNX Runtime's outputs, seconds)}, each model run once."""
    done = {}

    def get(name):
        if name not in done:
            start = time.perf_counter()
            graph, cpu = _prepared(models / f"{name}.onnx")
            feeds = random_inputs(graph)
            report = cpu.run(feeds)
            done[name] = (report, run_onnxruntime(models / f"{name}.onnx", feeds), cpu,
                          time.perf_counter() - start)
            print(f"{name}: {report.summary()} ({done[name][3]:.1f} s: {report.seconds})")
        return done[name]
    return get


@pytest.mark.parametrize("name", MODELS)
def test_every_kernel_matches_its_unscheduled_version_and_the_model_onnxruntime(checked, name):
    """One test per model, so that pytest-xdist prepares each model once."""
    report, expected, cpu, _ = checked(name)
    assert sorted(k.name for k in report.kernels) == sorted(cpu.kernels)  # each kernel ran, once
    assert len(report.kernels) >= 3
    for k in report.kernels:
        assert k.launches and all(launch.block != (1, 1, 1) for launch in k.launches), k.describe()
        assert not k.problems, k.describe()
        assert k.rel_error <= 1e-5, k.describe()
    assert report.ok
    assert set(report.outputs) == set(expected)
    for out, want in expected.items():
        err = compare(report.outputs[out], want)
        scale = float(np.abs(want).max())
        assert scale > 1e-3  # not a vacuous comparison
        assert err.abs <= error_bound("f32", scale), (out, err)


def _without_barriers(kernel: str):
    from edgec.targets.cuda_cpu import split_source

    def edit(source: str) -> str:
        text = split_source(source)[1][kernel]
        assert "__syncthreads();" in text
        return source.replace(text, text.replace("__syncthreads();", ""))
    return edit


def test_a_deleted_barrier_is_caught(checked, models):
    report, _, cpu, _ = checked("mlp")
    name = report.kernels[-1].name  # the last dense layer: a shared-memory tree reduction over its rows
    launch = cpu.kernels[name].launches[0].name
    graph, broken = _prepared(models / "mlp.onnx", edit_source=_without_barriers(launch))
    got = {k.name: k for k in broken.run(random_inputs(graph)).kernels}
    assert not got[name].ok and got[name].rel_error > 1e-3, got[name].describe()
    assert all(k.ok for n, k in got.items() if n != name)  # the kernels before it keep their barriers


def test_fewer_threads_than_the_kernel_was_lowered_for_are_caught(checked, models):
    report, _, cpu, _ = checked("mlp")
    kernel = cpu.kernels[report.kernels[-1].name]
    launch = kernel.launches[0]
    x, y, z = launch.block
    graph, shrunk = _prepared(models / "mlp.onnx", blocks={launch.name: (x, max(1, y // 2), z)})
    got = {k.name: k for k in shrunk.run(random_inputs(graph)).kernels}
    assert not got[kernel.name].ok, got[kernel.name].describe()


def test_the_guard_zones_catch_tvms_gemv_store_past_the_output():
    """A 1x1 conv 144 -> 40 (as in MobileNetV2) scheduled by dlight's GEMV rule: 40 rows is not a
    multiple of 16 and TVM 0.27 stores past the end of the output. edgec's own schedule (gpu.py)
    leaves GEMV off that kernel and is clean."""
    from tvm.s_tir import dlight as dl
    rng = np.random.default_rng(0)
    model = node_model("Conv", {"x": rng.standard_normal((1, 144, 1, 1)).astype(np.float32)},
                       {"w": rng.standard_normal((40, 144, 1, 1)).astype(np.float32)})

    def gemv(func, tvm_target):
        sch = dl.gpu.GEMV().apply(func, tvm_target, False)
        assert sch is not None
        return sch.mod["main"].with_attr("tirx.is_scheduled", True), "dlight.GEMV (forced)"

    from edgec.targets.cuda_cpu import CudaOnCpu
    graph = optimize(import_onnx(model), target=TARGET)
    feeds = random_inputs(graph)
    forced = CudaOnCpu(graph, get_target(TARGET), schedule=gemv).run(feeds)
    assert [k.rule for k in forced.kernels] == ["dlight.GEMV (forced)"]
    assert any("out-of-bounds write" in p for p in forced.kernels[0].problems), forced.format()
    assert not forced.ok
    clean = CudaOnCpu(graph, get_target(TARGET)).run(feeds)
    assert clean.ok and "GEMV" not in clean.kernels[0].rule, clean.format()


def test_edgec_verify_checks_the_gpu_kernels_on_the_cpu(models):
    r = subprocess.run([sys.executable, "-m", "edgec", "verify", str(models / "mlp.onnx"), "--target", TARGET],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    line = re.search(r"GPU kernels checked on the CPU \((.*?)\): (\d+) kernels, worst relative error (\S+)", r.stdout)
    assert line, r.stdout
    assert int(line.group(2)) == 3 and float(line.group(3)) <= 1e-5
    assert "OK: every output matches ONNX Runtime" in r.stdout


def test_float16_kernels():
    """A float16 matmul and softmax (half storage, TVM's half helpers on the shim's _Float16):
    each kernel within KERNEL_RTOL["float16"] of its unscheduled version, the model within
    verify's f16 tolerance of ONNX Runtime."""
    from edgec.targets.cuda_cpu import KERNEL_RTOL, CudaOnCpu
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 64)).astype(np.float16)
    w = (rng.standard_normal((64, 32)) * 0.1).astype(np.float16)
    nodes = [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm"),
             helper.make_node("Softmax", ["y"], ["z"], name="sm", axis=-1)]
    model = make_model(nodes, {"x": x}, ["z"], {"w": w})
    graph = optimize(import_onnx(model), target=TARGET)
    feeds = random_inputs(graph)
    report = CudaOnCpu(graph, get_target(TARGET)).run(feeds)
    assert [k.dtype for k in report.kernels] == ["float16", "float16"], report.format()
    assert report.ok and all(k.rel_error <= KERNEL_RTOL["float16"] for k in report.kernels), report.format()
    want = run_ort(model, feeds)["z"]
    assert report.outputs["z"].dtype == np.float16
    assert compare(report.outputs["z"], want).abs <= error_bound("f16", float(np.abs(want).max()))


def test_source_is_read_after_a_cuda_build_in_the_same_process(tmp_path):
    """Once a CUDA build has loaded TVM's CUDA runtime library and its compile callback (as any
    earlier test of the worker may have), reading the kernels' source must still compile
    nothing: in CI, TVM's own callback ran NVRTC there and failed looking for headers."""
    import tvm.support.nvcc  # noqa: F401 - registers TVM's callback
    from edgec.errors import ToolError
    from edgec.targets.cuda import load_cuda_runtime
    try:
        load_cuda_runtime()
    except ToolError as e:
        pytest.skip(str(e))
    rng = np.random.default_rng(0)
    path = tmp_path / "relu.onnx"
    path.write_bytes(node_model("Relu", {"x": rng.standard_normal((4, 32), dtype=np.float32)}).SerializeToString())
    graph, cpu = _prepared(path)
    assert "__global__" in cpu.source
    report = cpu.run(random_inputs(graph))
    assert report.ok, report.summary()
