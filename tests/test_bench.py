"""tools/bench.py end to end on the reduced MLP: every runner is built, agrees with ONNX Runtime, and
has a timing, a ratio and a peak memory figure. No speed is asserted here (that is the benchmark's
job, on a quiet machine)."""

import json
import subprocess
import sys
from pathlib import Path

TOOLS = Path(__file__).resolve().parents[1] / "tools"


def test_bench_small_mlp(tmp_path):
    proc = subprocess.run([sys.executable, str(TOOLS / "bench.py"), "--small", "--models", "mlp",
                           "--repeat", "2", "--levels", "0,2", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    results = json.loads((tmp_path / "bench.json").read_text())["results"]["mlp"]
    assert set(results) == {"ort-1t", next(r for r in results if r.startswith("ort-all(")), "tvm",
                            "edgec-O0", "edgec-O2"}
    for name, r in results.items():
        assert "failed" not in r, (name, r)
        assert r["n"] == 2 and 0 < r["min_ms"] <= r["median_ms"] <= r["max_ms"], (name, r)
        assert r["max_abs_diff_vs_ort"] < 1e-4, (name, r)
        assert r["peak_mb"] is not None and r["peak_mb"] >= 0, (name, r)
    assert results["ort-1t"]["ratio_vs_ort_1t"] == 1.0
    table = (tmp_path / "bench.md").read_text()
    assert "| mlp | edgec-O2 |" in table and "| mlp | edgec speed-up over tvm |" in table


def test_bench_loads_the_exported_models_by_name(tmp_path):
    sys.path.insert(0, str(TOOLS))
    import bench
    import onnx
    paths = bench.load_models(["crnn", "vad"], small=False, work=tmp_path)
    assert list(paths) == ["crnn", "vad"]
    ops = {name: {n.op_type for n in onnx.load(str(p)).graph.node} for name, p in paths.items()}
    assert "LSTM" in ops["crnn"] and "GRU" in ops["vad"], ops
