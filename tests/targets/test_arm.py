"""ARM Cortex-A targets: registry, cross-linked aarch64 libraries, NEON code, runs under qemu
(compared with ONNX Runtime on x86), the self-contained bundle, and the errors for missing tools.

Tests that need the aarch64 cross toolchain (Debian g++-aarch64-linux-gnu or PyPI ziglang) or
qemu-user skip with the reason when it is missing; CI installs both (see .ci/run).
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from onnx import helper

import edgec
from edgec.errors import EdgecError, ToolError
from edgec.targets import DEFAULT_TARGET, crosslink, get_target, runners
from onnx_util import assert_close, make_model, run_ort

ARM_NAMES = ["arm-a72", "arm-a53", "arm-a55", "arm-a57", "arm-a76", "arm-a78", "arm-neoverse-n1"]
DOTPROD = {"arm-a55", "arm-a76", "arm-a78", "arm-neoverse-n1"}


def _have_toolchain() -> bool:
    try:
        crosslink.find_toolchain(need_cxx=True)
        return True
    except ToolError:
        return False


def _have_qemu() -> bool:
    try:
        runners.qemu_path()
        return True
    except ToolError:
        return False


needs_toolchain = pytest.mark.skipif(not _have_toolchain(), reason="no aarch64 cross compiler "
                                     "(pip install ziglang, or apt-get install g++-aarch64-linux-gnu)")
needs_qemu = pytest.mark.skipif(not (_have_toolchain() and _have_qemu()), reason="needs qemu-user, the aarch64 "
                                "libc in /usr/aarch64-linux-gnu and a cross compiler (apt-get install qemu-user "
                                "g++-aarch64-linux-gnu)")


def _objdump() -> str | None:
    return shutil.which("aarch64-linux-gnu-objdump") or shutil.which("llvm-objdump")


def conv_model():
    """Conv (3x3, pad 1) + bias + Relu, then a MatMul on the last axis and an Add: NEON-heavy f32."""
    rng = np.random.default_rng(7)
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    inits = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
             "b": rng.standard_normal(4).astype(np.float32),
             "m": rng.standard_normal((8, 16)).astype(np.float32),
             "c": rng.standard_normal(16).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["conv"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
             helper.make_node("MatMul", ["relu", "m"], ["mm"], name="matmul"),
             helper.make_node("Add", ["mm", "c"], ["out"], name="add")]
    return make_model(nodes, {"x": x}, ["out"], inits), {"x": x}


def elf_machine_of(path: Path) -> int:
    """e_machine of an ELF file, read here independently of crosslink.elf_machine."""
    data = path.read_bytes()
    assert data[:4] == b"\x7fELF", f"{path} is not an ELF file"
    assert data[4] == 2, "not a 64-bit ELF"
    return int.from_bytes(data[18:20], "little")


@pytest.fixture(scope="module")
def a72_artifact(tmp_path_factory):
    if not _have_toolchain():
        pytest.skip("no aarch64 cross compiler")
    model, feeds = conv_model()
    out = tmp_path_factory.mktemp("a72") / "art"
    return edgec.compile(model, target="arm-a72", output=out).artifact, model, feeds


# ---- registry ---------------------------------------------------------------------------------

def test_targets_registered_with_properties():
    import tvm
    from tvm.target import codegen
    assert DEFAULT_TARGET == "arm-a72"
    assert get_target("rpi4") is get_target("arm-a72")
    assert get_target("rpi5") is get_target("arm-a76")
    for name in ARM_NAMES:
        t = get_target(name)
        assert (t.arch, t.layout, t.vector_bits, t.kind) == ("aarch64", "NHWC", 128, "cpu"), name
        assert t.dotprod == (name in DOTPROD), name
        assert t.tvm["mtriple"] == "aarch64-linux-gnu" and "+neon" in t.tvm["mattr"]
        # LLVM's own CPU table (without our mattr) must agree on dot-product support.
        cpu_only = tvm.target.Target({"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": t.tvm["mcpu"]})
        assert ("dotprod" in codegen.llvm_get_cpu_features(cpu_only)) == t.dotprod, name
        assert bool(t.tvm_target().attrs["feature.has_dotprod"]) == t.dotprod, name


def test_unknown_target_lists_arm_targets():
    with pytest.raises(EdgecError, match="arm-a72"):
        get_target("arm-a99")


def test_qemu_cpu_choice_is_a_known_core():
    if not _have_qemu():
        pytest.skip("no qemu-user")
    for name in ARM_NAMES:
        cpu = runners.qemu_cpu(name)
        assert cpu in runners.qemu_cpu_models()
    assert runners.qemu_cpu("arm-a72") == "cortex-a72"
    assert runners.qemu_cpu("arm-a76") == "cortex-a76"


# ---- cross-linked library and code checks -------------------------------------------------------

@needs_toolchain
def test_library_is_aarch64_elf(a72_artifact):
    art, _, _ = a72_artifact
    lib = art.path / "model.so"
    assert elf_machine_of(lib) == 0xB7  # EM_AARCH64
    assert crosslink.elf_machine(lib) == "aarch64"
    assert art.manifest["arch"] == "aarch64" and art.manifest["target"] == "arm-a72"


@needs_toolchain
def test_a72_code_uses_neon_fmla(a72_artifact):
    tool = _objdump()
    if tool is None:
        pytest.skip("no aarch64 objdump (apt-get install binutils-aarch64-linux-gnu or llvm)")
    art, _, _ = a72_artifact
    asm = subprocess.run([tool, "-d", str(art.path / "model.so")], stdout=subprocess.PIPE, text=True,
                         check=True).stdout
    fmla = re.findall(r"\bfmla\s+v\d+\.4s", asm)
    assert fmla, "no NEON fmla v*.4s in the a72 library"
    # a72 has no dot-product or half-precision arithmetic; the compiler must not emit them.
    assert not re.search(r"\b[su]dot\s", asm)
    assert not re.search(r"\bf\w+\s+v\d+\.[48]h", asm)


def test_missing_linker_is_tool_error(monkeypatch):
    monkeypatch.setattr(crosslink, "gnu_toolchain", lambda: None)
    monkeypatch.setattr(crosslink, "zig_toolchain", lambda: None)
    with pytest.raises(ToolError, match="pip install ziglang.*g\\+\\+-aarch64-linux-gnu"):
        crosslink.find_toolchain()


def test_missing_linker_when_writing_artifact(monkeypatch, tmp_path):
    monkeypatch.setattr(crosslink, "gnu_toolchain", lambda: None)
    monkeypatch.setattr(crosslink, "zig_toolchain", lambda: None)
    model, _ = conv_model()
    with pytest.raises(ToolError, match="pip install ziglang"):
        edgec.compile(model, target="arm-a72", output=tmp_path / "art")
    assert not (tmp_path / "art").exists()  # a failed compile leaves nothing behind


# ---- running under qemu -------------------------------------------------------------------------

@needs_qemu
@pytest.mark.parametrize("target", ["arm-a72", "arm-a76"])
def test_runs_under_qemu_and_matches_onnxruntime(target, tmp_path):
    model, feeds = conv_model()
    art = edgec.compile(model, target=target, output=tmp_path / "art").artifact
    got = art.run(feeds)  # Artifact.run -> runners.run_artifact -> qemu-aarch64 -cpu <core>
    assert_close(got, run_ort(model, feeds), rtol=1e-4, atol=1e-4, what=target)


@needs_qemu
def test_run_bundle_reports_latencies(a72_artifact):
    art, model, feeds = a72_artifact
    res = runners.run_bundle(art, art.check_inputs(feeds), runs=3, warmup=1)
    assert len(res.latencies_ms) == 3 and all(t > 0 for t in res.latencies_ms)
    assert "median" in res.stdout
    assert_close(res.outputs, run_ort(model, feeds), rtol=1e-4, atol=1e-4)


def test_missing_qemu_is_tool_error(monkeypatch, tmp_path):
    monkeypatch.setattr(runners.shutil, "which", lambda name: None)
    with pytest.raises(ToolError, match="apt-get install qemu-user"):
        runners.qemu_path()


# ---- the bundle ---------------------------------------------------------------------------------

@needs_qemu
def test_bundle_runs_in_empty_root(tmp_path):
    """The bundle copied to a directory of its own runs with edgec-run under qemu with nothing but
    the aarch64 libc/libstdc++ of /usr/aarch64-linux-gnu, and loads TVM from the bundle itself."""
    from edgec.targets import bundle
    model, feeds = conv_model()
    art = edgec.compile(model, target="arm-a72", output=tmp_path / "build").artifact
    bundle.make_bundle(art)
    for f in ["model.so", "manifest.json", "libtvm_runtime.so", "libtvm_ffi.so", "edgec-run", "README.txt"]:
        assert (art.path / f).is_file(), f
    for f in ["model.so", "libtvm_runtime.so", "libtvm_ffi.so", "edgec-run"]:
        assert elf_machine_of(art.path / f) == 0xB7, f

    # An "empty root": only the board's C and C++ libraries, and the copied bundle.
    root = tmp_path / "root"
    (root / "home" / "pi").mkdir(parents=True)
    (root / "lib").symlink_to(runners.SYSROOT / "lib")
    board = root / "home" / "pi" / "model"
    shutil.copytree(art.path, board)
    np.save(tmp_path / "x.npy", feeds["x"])
    out = tmp_path / "out"
    out.mkdir()
    cmd = [runners.qemu_path(), "-cpu", "cortex-a72", "-L", str(root), "-E", "LD_DEBUG=libs",
           str(board / "edgec-run"), "-n", "2", "-o", str(out), f"x={tmp_path / 'x.npy'}"]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120,
                          cwd=tmp_path, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    loaded = re.findall(r"calling init: (\S+)", proc.stderr)
    for lib in ["libtvm_runtime.so", "libtvm_ffi.so", "model.so"]:
        assert str(board / lib) in loaded, (lib, loaded)
    assert all(p.startswith("/lib/") or p.startswith(str(board)) for p in loaded), loaded
    assert len(re.findall(r"^run \d+: [\d.]+ ms$", proc.stdout, re.M)) == 2, proc.stdout
    assert re.search(r"latency: median [\d.]+ ms, min [\d.]+ ms, max [\d.]+ ms over 2 runs", proc.stdout)
    assert_close({"out": np.load(out / "out.npy")}, run_ort(model, feeds), rtol=1e-4, atol=1e-4)


@needs_qemu
def test_edgec_run_checks_inputs_against_manifest(tmp_path):
    from edgec.targets import bundle
    model, feeds = conv_model()
    art = edgec.compile(model, target="arm-a72", output=tmp_path / "b").artifact
    bundle.make_bundle(art)
    qemu = [runners.qemu_path(), "-cpu", "cortex-a72", "-L", str(runners.SYSROOT), str(art.path / "edgec-run")]

    def run(*args):
        return subprocess.run([*qemu, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=120)

    np.save(tmp_path / "bad_shape.npy", np.zeros((1, 3, 4, 4), np.float32))
    np.save(tmp_path / "bad_dtype.npy", np.zeros((1, 3, 8, 8), np.float64))
    r = run(f"x={tmp_path / 'bad_shape.npy'}")
    assert r.returncode == 2 and "input 'x' is f32[1, 3, 4, 4]; the model expects f32[1, 3, 8, 8]" in r.stderr
    r = run(f"x={tmp_path / 'bad_dtype.npy'}")
    assert r.returncode == 2 and "f64" in r.stderr
    r = run(f"y={tmp_path / 'bad_shape.npy'}")
    assert r.returncode == 2 and "unknown input 'y'" in r.stderr
    r = run()
    assert r.returncode == 2 and "missing input 'x'" in r.stderr
    r = run("--random", "-n", "1")
    assert r.returncode == 0 and "output out: f32[1, 4, 8, 16]" in r.stdout


def test_bundle_needs_an_arm_artifact(tmp_path):
    from edgec.targets import bundle
    model, _ = conv_model()
    art = edgec.compile(model, target="host", output=tmp_path / "host").artifact
    with pytest.raises(EdgecError, match="ARM target"):
        bundle.make_bundle(art)


# ---- instruction counts (tools/arm_bench.py, targets/qemu/) -----------------------------------

def _arm_bench():
    import importlib.util
    path = Path(__file__).resolve().parents[2] / "tools" / "arm_bench.py"
    spec = importlib.util.spec_from_file_location("arm_bench", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@needs_qemu
def test_instruction_counts_edgec_and_onnxruntime(tmp_path):
    """The qemu plugin counts guest instructions; per-inference counts for edgec and for ONNX
    Runtime's aarch64 wheel (under unshare with a Cortex-A72 /proc/cpuinfo) are positive, and a
    count is reproducible."""
    import os
    if shutil.which("cc") is None:
        pytest.skip("no host C compiler for the qemu plugin")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("ONNX Runtime under qemu needs root for unshare -m and a bind-mounted /proc/cpuinfo")
    bench = _arm_bench()
    model, _ = conv_model()
    import onnx
    onnx.save(model, tmp_path / "conv.onnx")
    plugin = bench.build_plugin()
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(bench.CPUINFO_A72)
    r = bench.bench_model(tmp_path / "conv.onnx", "arm-a72", 2, tmp_path, plugin, bench.ort_library(tmp_path),
                          bench.build_ort_run(tmp_path), cpuinfo)
    # ONNX Runtime's start-up varies by ~10-30M guest instructions between runs (seen here), so its
    # per-inference figure for this tiny model is noise; the bench reports it for real models only.
    # Here it must at least have run under qemu and been counted.
    assert r["edgec_insns"] > 1000 and r["onnxruntime_insns"] != 0, r
    # 4x8x8 outputs of a 27-tap conv plus a 4x8x8x16 matmul: at least ~10k multiply-adds,
    # so a per-inference count far below that means the counting is wrong.
    assert r["edgec_insns"] > 3000, r
    run = [str(tmp_path / "conv-arm-a72" / "edgec-run"), "--random", "-n", "1"]
    a = bench.count(run, plugin, "cortex-a72", {"TVM_NUM_THREADS": "1"})
    b = bench.count(run, plugin, "cortex-a72", {"TVM_NUM_THREADS": "1"})
    assert abs(a - b) < 0.001 * a, (a, b)


@needs_qemu
def test_long_softmax_rows_under_qemu(tmp_path):
    """A recognizer's softmax over 18,385 classes (peaked: the first class 15 ahead) on arm-a72
    stays within 1e-5 of float64 (a serial float32 row sum erred by 8e-5)."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 18385)) * 2
    x[:, 0] += 15
    feeds = {"x": x.astype(np.float32)}
    model = make_model([helper.make_node("Softmax", ["x"], ["y"], axis=-1)], feeds, ["y"])
    got = edgec.compile(model, target="arm-a72", output=tmp_path / "art").artifact.run(feeds)["y"]
    shifted = feeds["x"].astype(np.float64) - feeds["x"].max(-1, keepdims=True)
    expected = np.exp(shifted) / np.exp(shifted).sum(-1, keepdims=True)
    err = float(np.max(np.abs(got - expected)))
    assert err <= 1e-5, f"max abs error {err:.3g} against float64"


# ---- dtypes and several outputs through edgec-run ------------------------------------------------

@needs_qemu
def test_int64_input_and_several_outputs_under_qemu(tmp_path):
    """Gather with an int64 index input; outputs f32 (Relu) and int64 (ArgMax), read back by name."""
    rng = np.random.default_rng(5)
    feeds = {"x": rng.standard_normal((6, 5)).astype(np.float32), "idx": np.array([[0, 5], [2, 2]], np.int64)}
    nodes = [helper.make_node("Gather", ["x", "idx"], ["g"], axis=0),
             helper.make_node("Relu", ["g"], ["relu"]),
             helper.make_node("ArgMax", ["x"], ["amax"], axis=1, keepdims=0)]
    model = make_model(nodes, feeds, ["relu", "amax"])
    art = edgec.compile(model, target="arm-a53", output=tmp_path / "art").artifact
    got = art.run(feeds)
    assert got["amax"].dtype == np.int64
    assert_close(got, run_ort(model, feeds))


@needs_qemu
@pytest.mark.parametrize("target", ["arm-a76", "arm-a55"])
def test_int8_matmul_on_dotprod_cores_under_qemu(target, tmp_path):
    rng = np.random.default_rng(1)
    feeds = {"a": rng.integers(-128, 128, (8, 64)).astype(np.int8)}
    model = make_model([helper.make_node("MatMulInteger", ["a", "b"], ["out"])], feeds, ["out"],
                       {"b": rng.integers(-128, 128, (64, 32)).astype(np.int8)})
    art = edgec.compile(model, target=target, output=tmp_path / "art").artifact
    assert_close(art.run(feeds), run_ort(model, feeds))


def _int8_models():
    """A MatMulInteger and a QLinearConv (u8 input, i8 weight, 3x3, pad 1) with constant weights."""
    rng = np.random.default_rng(1)
    feeds = {"a": rng.integers(-128, 128, (8, 64)).astype(np.int8)}
    matmul = make_model([helper.make_node("MatMulInteger", ["a", "b"], ["out"])], feeds, ["out"],
                        {"b": rng.integers(-128, 128, (64, 32)).astype(np.int8)})
    x = {"x": rng.integers(0, 256, (1, 8, 6, 6)).astype(np.uint8)}
    inits = {"xs": np.array(0.02, np.float32), "xz": np.array(128, np.uint8),
             "w": rng.integers(-128, 128, (16, 8, 3, 3)).astype(np.int8), "ws": np.array(0.01, np.float32),
             "wz": np.array(0, np.int8), "ys": np.array(0.5, np.float32), "yz": np.array(128, np.uint8)}
    conv = make_model([helper.make_node("QLinearConv", ["x", "xs", "xz", "w", "ws", "wz", "ys", "yz"], ["y"],
                                        pads=[1, 1, 1, 1])], x, ["y"], inits)
    return {"matmul": matmul, "conv": conv}


@needs_toolchain
@pytest.mark.parametrize("model_name", ["matmul", "conv"])
def test_int8_code_for_a76_uses_sdot(model_name, tmp_path):
    tool = _objdump()
    if tool is None:
        pytest.skip("no aarch64 objdump")
    model = _int8_models()[model_name]
    art = edgec.compile(model, target="arm-a76", output=tmp_path / "art").artifact
    asm = subprocess.run([tool, "-d", str(art.path / "model.so")], stdout=subprocess.PIPE, text=True).stdout
    assert re.search(r"\b[su]dot\s+v\d+\.4s", asm)
