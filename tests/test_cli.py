"""The command line: exit codes, one clear message with no traceback, no half-written artifacts,
deterministic dumps, custom passes."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

ROOT = Path(__file__).resolve().parents[1]


def edgec(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgec", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=300)


def save_model(path, nodes, inputs, inits=(), opset=17):
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, None)
    model = helper.make_model(helper.make_graph(nodes, "g", inputs, [y], list(inits)),
                              opset_imports=[helper.make_opsetid("", opset)])
    onnx.save(model, path)
    return path


@pytest.fixture
def model(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])
    b = numpy_helper.from_array(np.arange(8, dtype=np.float32).reshape(2, 4), "b")
    nodes = [helper.make_node("Add", ["x", "b"], ["t"], name="add0"),
             helper.make_node("Relu", ["t"], ["u"], name="relu0"),
             helper.make_node("Neg", ["u"], ["y"], name="neg0")]
    return save_model(tmp_path / "m.onnx", nodes, [x], [b])


def assert_clean_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("edgec: error: "), result.stderr
    for f in fragments:
        assert f in result.stderr, result.stderr


def test_compile_run_and_outputs(model, tmp_path):
    r = edgec("compile", model, "--target", "host", "-o", tmp_path / "art", "--input-shape", "x=2,4", "--timing")
    assert r.returncode == 0, r.stderr
    assert "| fold-constants |" in r.stderr and "kernels in the built module: 1" in r.stderr  # reports: stderr
    assert "| fold-constants |" not in r.stdout
    assert sorted(p.name for p in (tmp_path / "art").iterdir()) == ["manifest.json", "model.eir", "model.so"]
    x = np.linspace(-5, 5, 8, dtype=np.float32).reshape(2, 4)
    np.save(tmp_path / "x.npy", x)
    r = edgec("run", tmp_path / "art", "--input", f"x={tmp_path / 'x.npy'}", "-o", tmp_path / "res")
    assert r.returncode == 0, r.stderr
    expected = -np.maximum(x + np.arange(8, dtype=np.float32).reshape(2, 4), 0)
    np.testing.assert_allclose(np.load(tmp_path / "res" / "y.npy"), expected, rtol=1e-6)


def test_compile_of_gather_and_resize_prints_no_tvm_warning(tmp_path):
    """TVM's take logs "Fast mode segfaults when there are out-of-bounds indices" for every
    Gather (runtime or constant indices) and every tap of a Resize; edgec's compile prints nothing
    of it, and the kernels still compute what ONNX Runtime does."""
    from onnx_util import make_model, run_ort
    rng = np.random.default_rng(0)
    feeds = {"x": rng.standard_normal((1, 3, 4, 4)).astype(np.float32), "idx": np.array([2, -3, 1], np.int64)}
    nodes = [helper.make_node("Gather", ["x", "idx"], ["g"], axis=1),
             helper.make_node("Gather", ["g", "rows"], ["h"], axis=2),
             helper.make_node("Resize", ["h", "", "scales"], ["y"], mode="cubic")]
    inits = {"rows": np.array([3, 0, -1], np.int64), "scales": np.array([1, 1, 1.5, 2], np.float32)}
    model = make_model(nodes, feeds, ["y"], inits)
    onnx.save(model, tmp_path / "m.onnx")
    r = edgec("compile", tmp_path / "m.onnx", "--target", "host", "-o", tmp_path / "art")
    assert r.returncode == 0, r.stderr
    assert "Warning" not in r.stderr and "segfault" not in r.stderr, r.stderr
    for name, a in feeds.items():
        np.save(tmp_path / f"{name}.npy", a)
    r = edgec("run", tmp_path / "art", "--input", f"x={tmp_path / 'x.npy'}", "--input", f"idx={tmp_path / 'idx.npy'}",
              "-o", tmp_path / "res")
    assert r.returncode == 0, r.stderr
    np.testing.assert_allclose(np.load(tmp_path / "res" / "y.npy"), run_ort(model, feeds)["y"], rtol=1e-5, atol=1e-5)


def test_dynamic_dim_without_value(model, tmp_path):
    r = edgec("compile", model, "--target", "host", "-o", tmp_path / "art")
    assert_clean_error(r, "input 'x' has a dynamic dimension 'N'", "--input-shape x=")
    assert not (tmp_path / "art").exists()


def test_unsupported_ops_are_listed_at_once(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    nodes = [helper.make_node("Foo", ["x"], ["a"], name="f1"), helper.make_node("Bar", ["a"], ["b"], name="b1"),
             helper.make_node("Foo", ["b"], ["y"], name="f2")]
    path = save_model(tmp_path / "u.onnx", nodes, [x])
    r = edgec("compile", path, "--target", "host", "-o", tmp_path / "art")
    assert_clean_error(r, "2 op type(s)", "Bar (nodes: b1)", "Foo (nodes: f1, f2)")
    assert not (tmp_path / "art").exists()
    r = edgec("inspect", path)
    assert r.returncode == 0 and "unsupported ops: Bar (nodes: b1); Foo (nodes: f1, f2)" in r.stdout


def test_inspect_reports_a_model_or_refuses_it(model, tmp_path):
    """inspect reports what it can (the --input-shape a dynamic dim needs) and refuses, exit 2,
    a malformed model or --input-shape value."""
    r = edgec("inspect", model)
    assert r.returncode == 0 and "edgec nodes and MACs after import: need --input-shape x=D0,4" in r.stdout
    r = edgec("inspect", model, "--input-shape", "x=2,4")
    assert r.returncode == 0 and "edgec nodes after import: 3" in r.stdout, r.stderr
    assert_clean_error(edgec("inspect", model, "--input-shape", "x=1,,4"), "dim 1 is empty", "NAME=D0,D1,...")
    assert_clean_error(edgec("inspect", model, "--input-shape", "x=3,5"), "dim 1 of input 'x' is 4")
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])
    cycle = save_model(tmp_path / "cycle.onnx", [helper.make_node("Add", ["x", "y"], ["a"], name="add"),
                                                 helper.make_node("Relu", ["a"], ["y"], name="relu")], [x])
    assert_clean_error(edgec("inspect", cycle), "ONNX node 'add' (Add) uses 'y'", "a cycle")


@pytest.mark.parametrize("content", [b"", b"\x08\x07garbage\xff\xff", None])
def test_malformed_or_truncated_file(model, tmp_path, content):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(model.read_bytes()[:40] if content is None else content)
    r = edgec("compile", bad, "--target", "host", "-o", tmp_path / "art")
    assert_clean_error(r, str(bad))
    assert not (tmp_path / "art").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.onnx", "m.onnx"]


def test_missing_model_file(tmp_path):
    assert_clean_error(edgec("compile", tmp_path / "nope.onnx", "--target", "host", "-o", tmp_path / "a"),
                       "no such model file")


def test_run_with_wrong_inputs(model, tmp_path):
    assert edgec("compile", model, "--target", "host", "-o", tmp_path / "art", "--input-shape", "x=2,4").returncode == 0
    np.save(tmp_path / "bad_shape.npy", np.zeros((3, 4), np.float32))
    np.save(tmp_path / "bad_dtype.npy", np.zeros((2, 4), np.float64))
    assert_clean_error(edgec("run", tmp_path / "art", "--input", f"x={tmp_path / 'bad_shape.npy'}"),
                       "input 'x' is float32[3, 4]; the model expects float32[2, 4]")
    assert_clean_error(edgec("run", tmp_path / "art", "--input", f"x={tmp_path / 'bad_dtype.npy'}"),
                       "float64")
    assert_clean_error(edgec("run", tmp_path / "art", "--input", f"z={tmp_path / 'bad_dtype.npy'}"),
                       "missing 'x'", "unknown 'z'")
    assert_clean_error(edgec("run", tmp_path / "art"), "missing 'x'")


def test_compile_twice_gives_byte_identical_dumps(model, tmp_path):
    for i in (1, 2):
        r = edgec("compile", model, "--target", "host", "-o", tmp_path / f"a{i}", "--input-shape", "x=2,4",
                  "--dump-ir", tmp_path / f"d{i}")
        assert r.returncode == 0, r.stderr
    d1, d2 = sorted((tmp_path / "d1").iterdir()), sorted((tmp_path / "d2").iterdir())
    assert [p.name for p in d1] == [p.name for p in d2] and len(d1) >= 2
    for a, b in zip(d1, d2):
        assert a.read_bytes() == b.read_bytes()
    assert (tmp_path / "a1" / "model.eir").read_bytes() == (tmp_path / "a2" / "model.eir").read_bytes()
    assert (tmp_path / "a1" / "manifest.json").read_bytes() == (tmp_path / "a2" / "manifest.json").read_bytes()


def test_opt_round_trips_through_eir_files(model, tmp_path):
    r = edgec("opt", model, "--input-shape", "x=2,4", "--passes", "fold-constants,dce", "--full-constants",
              "-o", tmp_path / "m.eir")
    assert r.returncode == 0, r.stderr
    r2 = edgec("opt", tmp_path / "m.eir", "--passes", "dce", "--full-constants")
    assert r2.returncode == 0 and r2.stdout == (tmp_path / "m.eir").read_text()


def test_bad_pipeline_and_level(model, tmp_path):
    assert_clean_error(edgec("opt", model, "--input-shape", "x=2,4", "--passes", "nope"), "unknown pass 'nope'")
    r = edgec("opt", model, "-O", "9")
    assert r.returncode == 2 and "Traceback" not in r.stderr


def test_readme_custom_pass_loads_and_runs(model, tmp_path):
    readme = (ROOT / "README.md").read_text()
    blocks = re.findall(r"```python\n(.*?)```", readme, re.S)
    code = next(b for b in blocks if "@register_pass" in b)
    (tmp_path / "my_pass.py").write_text(code)
    name = re.search(r'name = "([a-z-]+)"', code).group(1)
    r = edgec("passes", "--load-pass", tmp_path / "my_pass.py")
    assert r.returncode == 0 and name in r.stdout
    r = edgec("opt", model, "--input-shape", "x=2,4", "--load-pass", tmp_path / "my_pass.py",
              "--passes", f"{name},dce", "--timing")
    assert r.returncode == 0, r.stderr
    assert f"| {name} |" in r.stderr


def test_internal_errors_are_not_tracebacks_unless_debug(tmp_path):
    (tmp_path / "boom.py").write_text("raise RuntimeError('boom')\n")
    r = edgec("passes", "--load-pass", tmp_path / "boom.py")
    assert_clean_error(r, "boom")
    r = edgec("--debug", "passes", "--load-pass", tmp_path / "boom.py")
    assert r.returncode != 0 and "Traceback" in r.stderr


def test_threads_size_the_runtime_pool(model, tmp_path):
    """`threads` (default: every core) sizes TVM's thread pool; TVM's own x86 default is half the
    cores, and its plain `config_threadpool(1, n)` cannot go above that."""
    art = tmp_path / "art"
    assert edgec("compile", model, "--target", "host", "-o", art, "--input-shape", "x=2,4").returncode == 0
    script = ("import os, sys, numpy as np, tvm, edgec\n"
              "a = edgec.load(sys.argv[1], threads=int(sys.argv[2]) or None)\n"
              "a.run({'x': np.ones((2, 4), np.float32)})\n"
              "print(tvm.get_global_func('runtime.NumThreads')(), len(os.sched_getaffinity(0)))\n")
    counts = {}
    for threads in (1, 0):
        r = subprocess.run([sys.executable, "-c", script, str(art), str(threads)], capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stderr
        counts[threads] = tuple(map(int, r.stdout.split()))
    assert counts[1][0] == 1
    assert counts[0][0] == counts[0][1]  # every core this process may use
    np.save(tmp_path / "x.npy", np.ones((2, 4), np.float32))
    assert_clean_error(edgec("run", art, "--input", f"x={tmp_path / 'x.npy'}", "--threads", "0"), "at least 1")
