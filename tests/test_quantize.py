"""int8 post-training quantization (compiler/quantization.py) and `edgec quantize`.

Cases: calibration data as .npz, a directory of .npy or .npz files, or feed dicts, and its errors;
each calibration method's ranges against the data's own extremes (numpy, not the code under
test); symmetric per-channel weights; which nodes are quantized (--exclude, --op-types, reasons
for the rest); the QDQ graph runs as integer kernels after fuse-qdq and stays close to fp32; the
report's numbers recomputed from the graphs; the command line and its errors. The real-data
accuracy checks are in tests/test_digits.py.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest

import edgec
from edgec.errors import EdgecError, InputError
from edgec.quantization import calibrate, fit_budget, format_report, load_samples, report, sqnr, weight_params

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import make_models  # noqa: E402


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    """(model path, graph, 12 calibration samples) of the small example MLP (64 -> 128 -> 128 -> 10)."""
    path = tmp_path_factory.mktemp("mlp") / "mlp.onnx"
    onnx.save(make_models.build("mlp", small=True), path)
    rng = np.random.default_rng(0)
    samples = [{"input": rng.standard_normal((1, 64)).astype(np.float32)} for _ in range(12)]
    return path, edgec.import_onnx(path), samples


# ---- calibration data ---------------------------------------------------------------------------

def test_samples_from_npz_directory_and_feeds(mlp, tmp_path):
    _, g, samples = mlp
    stacked = np.stack([s["input"] for s in samples])
    np.savez(tmp_path / "cal.npz", input=stacked)
    (tmp_path / "npy").mkdir()
    (tmp_path / "npz").mkdir()
    for i, s in enumerate(samples):
        np.save(tmp_path / "npy" / f"{i:02d}.npy", s["input"])
        np.savez(tmp_path / "npz" / f"{i:02d}.npz", input=s["input"])
    for source in (tmp_path / "cal.npz", tmp_path / "npy", tmp_path / "npz", iter(samples)):
        got = load_samples(source, g)
        assert len(got) == 12
        np.testing.assert_array_equal(np.stack([s["input"] for s in got]), stacked)


def test_bad_calibration_data_is_named(mlp, tmp_path):
    _, g, _ = mlp
    np.savez(tmp_path / "wrong_name.npz", x=np.zeros((2, 1, 64), np.float32))
    np.savez(tmp_path / "wrong_shape.npz", input=np.zeros((2, 1, 63), np.float32))
    (tmp_path / "empty").mkdir()
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    cases = {tmp_path / "wrong_name.npz": "no array for input(s) input",
             tmp_path / "wrong_shape.npz": "calibration sample 0: input 'input' is float32[1, 63]",
             tmp_path / "empty": "has no .npy or .npz files",
             tmp_path / "bad.npz": "bad.npz: cannot read it as a .npz file",
             tmp_path / "missing.npz": "expected a .npz file or a directory"}
    for source, message in cases.items():
        with pytest.raises(InputError) as e:
            load_samples(source, g)
        assert message in str(e.value)
    with pytest.raises(InputError, match="no samples"):
        load_samples([], g)


# ---- ranges and weights ------------------------------------------------------------------------

def test_minmax_is_the_data_extremes_and_the_other_methods_lie_inside(mlp):
    _, g, samples = mlp
    data = np.stack([s["input"] for s in samples])
    key = ("input", "input")
    ranges = {m: calibrate(g, samples, method=m).ranges[key] for m in ("minmax", "percentile", "entropy", "mse")}
    assert ranges["minmax"] == (float(data.min()), float(data.max()))
    for m in ("percentile", "entropy", "mse"):
        lo, hi = ranges[m]
        assert data.min() - 1e-6 <= lo < 0 < hi <= data.max() + 1e-6, (m, ranges[m])


def test_percentile_clips_an_outlier():
    g = edgec.parse_ir("""graph @main(%x: f32[1,1000]) -> (%y: f32[1,4]) {
      %c0 = const f32[4,1000] """ + "[" + ", ".join(["0.01"] * 4000) + """]
      %0 = dense(%x, %c0) : f32[1,4]
      return %0
    }""")
    x = np.random.default_rng(1).uniform(-1, 1, (1, 1000)).astype(np.float32)
    x[0, 0] = 50.0  # 4 outliers (50, 45, 40, 35) in 4000 values: above the 99.5th percentile
    samples = [{"x": x * s} for s in (1.0, 0.9, 0.8, 0.7)]
    lo, hi = calibrate(g, samples, method="percentile", percentile=99.5).ranges[("input", "x")]
    assert hi < 1.1 and lo > -1.1  # the range of the other 3996 values, not 50
    assert calibrate(g, samples).ranges[("input", "x")][1] == 50.0


def test_weights_are_symmetric_per_output_channel():
    w = np.random.default_rng(2).standard_normal((5, 3, 3, 3)).astype(np.float32) * np.arange(1, 6).reshape(5, 1, 1, 1)
    q, scales = weight_params(w, 0)
    assert q.dtype == np.int8 and len(scales) == 5
    amax = np.abs(w).reshape(5, -1).max(1)
    np.testing.assert_allclose(scales, amax / 127, rtol=1e-6)
    assert (np.abs(q).reshape(5, -1).max(1) == 127).all()
    err = np.abs(q * np.asarray(scales, np.float32).reshape(5, 1, 1, 1) - w)
    assert (err <= np.asarray(scales).reshape(5, 1, 1, 1) / 2 + 1e-7).all()
    q1, s1 = weight_params(w, None)
    assert len(s1) == 1 and np.isclose(s1[0], np.abs(w).max() / 127)


# ---- the quantized graph -----------------------------------------------------------------------

def test_quantized_mlp_runs_integer_kernels_close_to_fp32(mlp):
    _, g, samples = mlp
    q = edgec.quantize(g, samples)
    assert [n.op for n in q.nodes].count("quantize_linear") == 4  # the input and the 3 dense results
    fused = edgec.optimize(q, level=2)
    assert sorted({n.op for n in fused.nodes}) == ["dequantize_linear", "qlinear_matmul", "quantize_linear"]
    x = {"input": np.random.default_rng(5).standard_normal((1, 64)).astype(np.float32)}
    ref, fake, integer = (edgec.interpret(h, x)["output"] for h in (g, q, fused))
    np.testing.assert_array_equal(integer, fake)
    assert sqnr(ref, integer) > 25  # measured 33-35 dB on this model


def test_small_resnet_is_integer_end_to_end_with_add_and_relu_together(tmp_path):
    """ResNet's add + relu is quantized as one node (the relu's range), so -O2 leaves no float
    conv, add or relu; the integer graph stays within an output step of the fake-quant one."""
    path = tmp_path / "resnet18.onnx"
    onnx.save(make_models.build("resnet18", small=True), path)
    g = edgec.import_onnx(path)
    rng = np.random.default_rng(3)
    shape = g.inputs[0].type.shape
    samples = [{"input": rng.standard_normal(shape).astype(np.float32)} for _ in range(3)]
    cal = calibrate(g, samples)
    assert cal.skipped == {} and len(cal.absorbed) == 8
    q = cal.quantize()
    fused = edgec.optimize(q, target="host", level=2)
    ops = {n.op for n in fused.nodes}
    assert not ops & {"conv", "add", "relu", "dense", "matmul", "global_avg_pool"}, ops
    assert {"qlinear_conv", "qlinear_add"} <= ops
    x = {"input": rng.standard_normal(shape).astype(np.float32)}
    ref, fake, integer = (edgec.interpret(h, x)["output"] for h in (g, q, fused))
    step = [n for n in q.nodes if n.op == "dequantize_linear"][-1].attrs["scale"][0]
    assert np.abs(integer - fake).max() <= step  # measured: equal; a tie rounded differently would move a step
    assert sqnr(ref, integer) > 20


def test_exclude_and_op_types_choose_the_nodes(mlp):
    _, g, samples = mlp
    cal = calibrate(g, samples, exclude=["fc2.matmul"])
    assert len(cal.nodes) == 2
    assert [why for why in cal.skipped.values()] == ["excluded"]
    assert calibrate(g, samples, exclude=["dense"]).nodes == []
    assert len(calibrate(g, samples, op_types=["dense"]).nodes) == 3
    with pytest.raises(EdgecError, match="does not quantize softmax"):
        calibrate(g, samples, op_types=["softmax"])
    with pytest.raises(EdgecError, match="unknown calibration method 'kl'"):
        calibrate(g, samples, method="kl")


def test_unquantized_nodes_say_why():
    g = edgec.parse_ir("""graph @main(%x: f32[1,2,4,4]) -> (%y: f32[1,2,4,4]) {
      %c0 = const f32[2,2,1,1] [1.0, 0.5, -0.5, 1.0]
      %0 = conv(%x, %c0) {activation="sigmoid"} : f32[1,2,4,4]  @"conv"
      %1 = softmax(%0) {axis=1} : f32[1,2,4,4]  @"softmax"
      return %1
    }""")
    cal = calibrate(g, [{"x": np.ones((1, 2, 4, 4), np.float32)}])
    assert cal.nodes == []
    assert sorted(cal.skipped.values()) == ["edgec does not quantize 'softmax'",
                                             "its fused activation 'sigmoid' is not quantized (only relu and clip)"]


def test_report_numbers_are_recomputed_from_the_graphs(mlp):
    _, g, samples = mlp
    cal = calibrate(g, samples)
    rep = report(cal, samples[:4])
    assert [r.origin for r in rep["rows"]] == [("fc1.matmul", "fc1.add", "relu1"), ("fc2.matmul", "fc2.add", "relu2"),
                                               ("fc3.matmul", "fc3.add")]
    prepared = cal.graph
    ref = np.concatenate([edgec.interpret(prepared, s)["output"].reshape(-1) for s in samples[:4]])
    full = np.concatenate([edgec.interpret(cal.quantize(), s)["output"].reshape(-1) for s in samples[:4]])
    assert rep["model_sqnr"] == pytest.approx(sqnr(ref, full))
    # only fc3 quantized: its own output is the model's output
    only3 = cal.quantize(keep_float=cal.nodes[:2])
    alone = np.concatenate([edgec.interpret(only3, s)["output"].reshape(-1) for s in samples[:4]])
    assert rep["rows"][2].alone_sqnr == pytest.approx(sqnr(ref, alone))
    assert rep["rows"][2].output_sqnr == pytest.approx(rep["model_sqnr"])
    md, js = format_report(rep, ".md"), json.loads(format_report(rep, ".json"))
    assert "| dense | fc3.matmul, fc3.add |" in md
    worst = min(rep["rows"], key=lambda r: r.alone_sqnr)
    assert js["nodes"][0]["origin"] == list(worst.origin)  # from the most damaging node
    assert sorted(tuple(n["origin"]) for n in js["nodes"]) == sorted(r.origin for r in rep["rows"])
    assert js["model_sqnr_db"] == pytest.approx(rep["model_sqnr"])


# ---- accuracy budget ---------------------------------------------------------------------------

def test_budget_reverts_the_most_damaging_nodes_until_it_holds(mlp):
    _, g, samples = mlp
    cal = calibrate(g, samples)
    loose = fit_budget(cal, samples, 1.0, "sqnr")
    assert loose.reverted == [] and loose.impact == {} and loose.final == loose.int8 < 0
    tight = fit_budget(cal, samples, -loose.int8 / 2, "sqnr")  # half the noise of the full int8 model
    assert tight.reverted and tight.reverted[0] == max(tight.impact, key=tight.impact.get)
    assert tight.drop <= -loose.int8 / 2 < loose.drop
    q = cal.quantize(keep_float=tight.reverted)
    weights = [n.inputs[1] for n in q.nodes if n.op == "dense"]
    assert sum(w.const is not None for w in weights) == len(tight.reverted)  # those kept float weights
    exact = fit_budget(cal, samples, 0.0, "sqnr")
    assert sorted(exact.reverted) == cal.nodes and exact.final == exact.fp32 == 0.0


def test_budget_metrics_top1_with_labels_and_a_python_file(mlp, tmp_path):
    _, g, samples = mlp
    cal = calibrate(g, samples)
    fp32 = [edgec.interpret(cal.graph, s)["output"].argmax() for s in samples]
    labels = np.array(fp32)
    labels[:3] = (labels[:3] + 1) % 10  # 3 of 12 wrong: fp32 scores 75%
    b = fit_budget(cal, samples, 100.0, "top1", labels)
    assert b.fp32 == 75.0 and b.metric == "top-1 accuracy (%)"
    (tmp_path / "metric.py").write_text("def score(outputs, labels):\n    return -sum(float(abs(o['output']).sum()) for o in outputs)\n")
    b = fit_budget(cal, samples, 1e9, str(tmp_path / "metric.py"))
    assert b.fp32 == pytest.approx(-sum(float(abs(edgec.interpret(cal.graph, s)["output"]).sum()) for s in samples))
    (tmp_path / "bad.py").write_text("x = 1\n")
    with pytest.raises(EdgecError, match="defines no function score"):
        fit_budget(cal, samples, 1.0, str(tmp_path / "bad.py"))
    with pytest.raises(EdgecError, match="use top1, sqnr or a Python file"):
        fit_budget(cal, samples, 1.0, "accuracy")


# ---- command line -----------------------------------------------------------------------------

def edgec_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "edgec", *map(str, args)], capture_output=True, text=True, cwd=cwd)


def test_cli_quantize_to_eir_and_onnx_then_compile(mlp, tmp_path):
    path, g, samples = mlp
    np.savez(tmp_path / "cal.npz", input=np.stack([s["input"] for s in samples]))
    r = edgec_cli("quantize", path, "--calibration", tmp_path / "cal.npz", "-o", tmp_path / "q.eir",
                  "--report", tmp_path / "r.json", "--eval-samples", 3, "--method", "mse")
    assert r.returncode == 0, r.stderr
    assert "quantized 3 of 3 computing nodes (mse, 12 calibration samples)" in r.stdout
    assert json.loads((tmp_path / "r.json").read_text())["samples"] == 3
    r = edgec_cli("quantize", path, "--calibration", tmp_path / "cal.npz", "-o", tmp_path / "q.onnx")
    assert r.returncode == 0, r.stderr
    x = {"input": samples[0]["input"]}
    from onnx_util import run_ort
    from_eir = edgec.interpret(edgec.parse_ir((tmp_path / "q.eir").read_text()), x)["output"]
    np.testing.assert_allclose(run_ort(onnx.load(tmp_path / "q.onnx"), x)["output"],
                               edgec.interpret(edgec.quantize(g, samples), x)["output"], atol=1e-6)
    assert from_eir.shape == (1, 10)
    r = edgec_cli("compile", tmp_path / "q.eir", "--target", "host", "-o", tmp_path / "art")
    assert r.returncode == 0, r.stderr
    r = edgec_cli("quantize", path, "--calibration", tmp_path / "cal.npz", "-o", tmp_path / "b.eir",
                  "--max-drop", "0", "--metric", "sqnr", "--eval-samples", 4)
    assert r.returncode == 0, r.stderr
    assert "after reverting 3 node(s) to float" in r.stdout and "quantized 0 of 3" in r.stdout, r.stdout
    r = edgec_cli("compile", path, "--target", "host", "--quantize", "int8", "--calibration", tmp_path / "cal.npz",
                  "-o", tmp_path / "art2")
    assert r.returncode == 0, r.stderr
    kernels = [k["op"] for k in json.loads((tmp_path / "art2" / "manifest.json").read_text())["kernels"]]
    assert kernels.count("qlinear_matmul") == 3


@pytest.mark.parametrize("args, message", [
    (["-o", "q.txt", "--calibration", "cal.npz"], "name an .eir (edgec IR) or .onnx (QDQ ONNX) file"),
    (["-o", "q.eir"], "needs calibration inputs: --calibration DATA"),
    (["-o", "q.eir", "--calibration", "nothere.npz"], "expected a .npz file or a directory"),
    (["-o", "q.eir", "--calibration", "cal.npz", "--report", "r.txt"], "name a .md or .json file"),
])
def test_cli_errors(mlp, tmp_path, args, message):
    path, _, samples = mlp
    np.savez(tmp_path / "cal.npz", input=np.stack([s["input"] for s in samples]))
    r = edgec_cli("quantize", path, *args, cwd=tmp_path)
    assert r.returncode == 2 and message in r.stderr and "Traceback" not in r.stderr, r.stderr
    assert not (tmp_path / "q.eir").exists()


def test_cli_calibration_without_quantize_is_refused(mlp, tmp_path):
    path, _, samples = mlp
    np.savez(tmp_path / "cal.npz", input=np.stack([s["input"] for s in samples]))
    r = edgec_cli("compile", path, "--calibration", tmp_path / "cal.npz", "-o", tmp_path / "art")
    assert r.returncode == 2 and "--calibration needs --quantize int8" in r.stderr
    r = edgec_cli("compile", path, "--quantize", "int8", "-o", tmp_path / "art")
    assert r.returncode == 2 and "needs calibration inputs" in r.stderr
    assert not (tmp_path / "art").exists()


def test_quantized_ir_is_deterministic(mlp):
    _, g, samples = mlp
    first = edgec.print_ir(edgec.quantize(g, samples, method="entropy"), full_constants=True)
    second = edgec.print_ir(edgec.quantize(g.copy(), list(samples), method="entropy"), full_constants=True)
    assert first == second
