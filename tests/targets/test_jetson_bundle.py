"""The Jetson bundle (`edgec compile MODEL --target jetson-orin --bundle -o DIR`) and its load test.

There is no GPU here, so the bundle's edgec-run runs under qemu-aarch64 with the CUDA 13 runtime
the bundle carries (PyPI's aarch64 nvidia-cuda-runtime) and a stub libcuda.so.1 built with the
aarch64 cross compiler (targets/cuda.py, `build_stub_libcuda`) that reports an old driver (CUDA
12.0): the runner must load TVM's CUDA runtime, model.so and its VM executable, all from the
bundle, and then stop at the CUDA device initialization with cudaErrorInsufficientDriver (35),
not at a missing library or symbol. What the GPU path does after that (copies, kernel launches)
needs a Jetson.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

import edgec
from edgec.errors import EdgecError, ToolError
from edgec.targets import bundle, crosslink, cuda, get_target, runners
from onnx_util import make_model
from toolchain import needs_arm_run

TARGET = "jetson-orin"
INSUFFICIENT = ("CUDA device init failed: cudaErrorInsufficientDriver (35): the board's driver is older than "
                "CUDA 13; this bundle needs JetPack 7")
LIBS = ["libtvm_runtime.so", "libtvm_ffi.so", "libtvm_runtime_cuda.so", "libcudart.so.13"]


def _cuda_build_problem() -> str | None:
    try:
        cuda.cuda_compiler(get_target(TARGET))
    except ToolError as e:
        return str(e)
    return None


needs_cuda_build = pytest.mark.skipif(_cuda_build_problem() is not None,
                                      reason=f"no CUDA compiler for {TARGET}: {_cuda_build_problem()}")


def mlp_model() -> onnx.ModelProto:
    rng = np.random.default_rng(3)
    inits = {"w1": rng.standard_normal((16, 32)).astype(np.float32), "b1": rng.standard_normal(32).astype(np.float32),
             "w2": rng.standard_normal((32, 16)).astype(np.float32)}
    nodes = [helper.make_node("MatMul", ["x", "w1"], ["h"]), helper.make_node("Add", ["h", "b1"], ["hb"]),
             helper.make_node("Relu", ["hb"], ["r"]), helper.make_node("MatMul", ["r", "w2"], ["y"])]
    return make_model(nodes, {"x": np.zeros((1, 16), np.float32)}, ["y"], inits)


@pytest.fixture(scope="module")
def jetson_bundle(tmp_path_factory):
    """A Jetson bundle made by the command line, as a user makes one."""
    tmp = tmp_path_factory.mktemp("jetson")
    onnx.save(mlp_model(), tmp / "mlp.onnx")
    out = tmp / "mlp-orin"
    r = subprocess.run([sys.executable, "-m", "edgec", "compile", str(tmp / "mlp.onnx"), "--target", TARGET,
                        "--bundle", "-o", str(out)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return out


@pytest.fixture(scope="module")
def stub_driver(tmp_path_factory):
    """Directories each holding an aarch64 stub libcuda.so.1: `old` reports a CUDA 12.0 driver,
    `new` a CUDA 13.0 one."""
    tc = crosslink.find_toolchain()
    tmp = tmp_path_factory.mktemp("stub-libcuda")
    dirs = {}
    for name, version in (("old", 12000), ("new", 13000)):
        lib = cuda.build_stub_libcuda(tc.cc, tmp / name / "libcuda.so.1", driver_version=version)
        assert crosslink.elf_machine(lib) == "aarch64"
        dirs[name] = lib.parent
    return dirs


def run_on_qemu(bundle_dir: Path, tmp_path: Path, driver_dir: Path | None) -> subprocess.CompletedProcess:
    """edgec-run --random of the bundle under qemu-aarch64 with the loader's log (LD_DEBUG=libs),
    the stub driver's directory as LD_LIBRARY_PATH, and nothing from this machine's environment."""
    env = ["-E", "LD_DEBUG=libs"] + (["-E", f"LD_LIBRARY_PATH={driver_dir}"] if driver_dir else [])
    cmd = [*runners.qemu_command(TARGET), *env, str(bundle_dir / "edgec-run"), "--random", "-n", "1"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                          env={"PATH": "/usr/bin:/bin"})


def runner_messages(stderr: str) -> list[str]:
    """edgec-run's own lines in stderr (the rest is the loader's log, including the symbols that
    libcudart looks up in the stub and does not find)."""
    return [line for line in stderr.splitlines() if line.startswith("edgec-run:")]


def initialized(stderr: str) -> list[str]:
    """The libraries whose initializers the dynamic loader ran, in LD_DEBUG=libs output."""
    return re.findall(r"calling init: (\S+)", stderr)


@needs_arm_run
@needs_cuda_build
def test_bundle_holds_the_cuda_runtime_and_says_which_jetpack(jetson_bundle):
    for f in ["model.so", "manifest.json", "edgec-run", "README.txt", *LIBS]:
        assert (jetson_bundle / f).is_file(), f
    for f in ["model.so", "edgec-run", *LIBS]:
        assert crosslink.elf_machine(jetson_bundle / f) == "aarch64", f
    manifest = edgec.load(jetson_bundle).manifest
    assert set(LIBS) <= set(manifest["files"]), manifest["files"]
    readme = (jetson_bundle / "README.txt").read_text()
    assert "JetPack 7 (L4T R38, CUDA 13) as shipped" in readme
    assert "libcudart.so.13, CUDA 13.0" in readme  # carried, so the board needs only its driver
    assert "JetPack 5 and 6" in readme and "cudaErrorInsufficientDriver (35)" in readme
    assert "scp -r mlp-orin " in readme  # the directory's own name, not the compile's temporary one


@needs_arm_run
@needs_cuda_build
def test_loads_under_qemu_and_stops_at_the_old_driver(jetson_bundle, stub_driver, tmp_path):
    """With a CUDA 12.0 driver, the bundle loads everything from itself and fails only at device
    initialization, with cudaErrorInsufficientDriver."""
    proc = run_on_qemu(jetson_bundle, tmp_path, stub_driver["old"])
    assert proc.returncode == 1, (proc.stdout, proc.stderr[-3000:])
    assert f"loaded {jetson_bundle}/model.so for cuda" in proc.stdout  # model.so and its VM executable
    # the runner's one message (a library or symbol missing would be another: see the tests below)
    assert runner_messages(proc.stderr) == [f"edgec-run: {INSUFFICIENT} (see README.txt)"], proc.stderr[-3000:]
    assert "error while loading shared libraries" not in proc.stderr
    loaded = initialized(proc.stderr)
    for lib in [*LIBS, "model.so"]:
        assert str(jetson_bundle / lib) in loaded, (lib, loaded)
    assert str(stub_driver["old"] / "libcuda.so.1") in loaded, loaded
    assert "run 1:" not in proc.stdout  # nothing ran


@needs_arm_run
@needs_cuda_build
def test_a_cuda_13_driver_passes_the_version_check(jetson_bundle, stub_driver, tmp_path):
    """The insufficient-driver message comes from the version the driver reports: a stub that says
    CUDA 13.0 gets past it (and fails later, being a stub)."""
    proc = run_on_qemu(jetson_bundle, tmp_path, stub_driver["new"])
    assert proc.returncode == 1
    assert f"loaded {jetson_bundle}/model.so for cuda" in proc.stdout
    messages = runner_messages(proc.stderr)
    assert len(messages) == 1 and messages[0].startswith("edgec-run: CUDA device init failed: cudaError"), messages
    assert "InsufficientDriver" not in messages[0]


@needs_arm_run
@needs_cuda_build
def test_no_driver_is_a_missing_library_error(jetson_bundle, tmp_path):
    proc = run_on_qemu(jetson_bundle, tmp_path, None)
    assert proc.returncode == 1
    messages = runner_messages(proc.stderr)
    assert len(messages) == 1 and messages[0].startswith(
        "edgec-run: cannot load TVM's CUDA runtime: libcuda.so.1: cannot open shared object file"), messages
    assert "loaded" not in proc.stdout


@needs_arm_run
@needs_cuda_build
def test_qemu_runs_refuse_cuda_artifacts(jetson_bundle):
    art = edgec.load(jetson_bundle)
    with pytest.raises(EdgecError, match=r"built for the GPU of jetson-orin \(sm_87\), which qemu cannot emulate"):
        art.run({"x": np.zeros((1, 16), np.float32)})


@pytest.mark.parametrize("target", ["jetson-xavier", "jetson-nano"])
def test_bundle_refused_where_no_jetpack_has_cuda_13(target, tmp_path):
    """Before anything is compiled: these boards have no CUDA 13 driver for the bundle's runtime."""
    with pytest.raises(EdgecError, match=f"--bundle for {target}: .* needs a CUDA 13 driver"):
        edgec.compile(mlp_model(), target=target, output=tmp_path / "art", bundle=True)
    assert not (tmp_path / "art").exists()


def test_bundle_check_names_the_targets():
    with pytest.raises(EdgecError, match=r"needs an ARM target \(--target arm-a72, ...\) or a Jetson one"):
        bundle.check_bundle_target(get_target("host", detect=False))
    bundle.check_bundle_target(get_target("jetson-thor"))  # JetPack 7
    bundle.check_bundle_target(get_target("arm-a72"))
