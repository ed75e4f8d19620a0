"""edgec.compare and `edgec compare`: node-by-node, the optimized graph against the unoptimized one.

Cases: a deliberately wrong pass (registered below: relu becomes leaky_relu) is found at the node
it changed, with that node's op and ONNX origin, and `--bisect` names the pass; the small example
models at -O2 (convert-layout's NHWC values included, some with H == W == C, so only the layout
tells how to compare them) and a quantized (QDQ) ResNet at -O2 are within tolerance at every
matched node; the JSON keys; inputs from a .npz, and a name that is not a graph input;
`--compiled`: the compiled module's values for host (each node's own result: one perturbed
output diverges at that node only) and for arm-a72 under qemu.
"""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper

import edgec
from edgec.compare import compare_model
from edgec.driver import Artifact
from edgec.errors import InputError
from edgec.quantization import calibrate
from onnx_util import make_model
from toolchain import needs_arm_run

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import make_models  # noqa: E402

rng = np.random.default_rng(2)
X = rng.standard_normal((2, 8)).astype(np.float32)
W = rng.standard_normal((2, 8)).astype(np.float32)


def tiny_model():
    """y = tanh(relu(x * w) + x)."""
    nodes = [
        helper.make_node("Mul", ["x", "w"], ["m"], name="mul_w"),
        helper.make_node("Relu", ["m"], ["r"], name="the_relu"),
        helper.make_node("Add", ["r", "x"], ["a"], name="add_x"),
        helper.make_node("Tanh", ["a"], ["y"], name="tanh"),
    ]
    return make_model(nodes, {"x": X}, ["y"], {"w": W})


# Wrong on purpose: relu becomes leaky_relu with alpha 0.5. A file, so the CLI can --load-pass it.
WRONG_PASS = '''
from edgec.passmanager import PASSES, Pass, register_pass


class ReluToLeaky(Pass):
    name = "test-compare-relu-to-leaky"
    summary = "a broken pass for tests: relu -> leaky_relu(0.5)"

    def run(self, graph):
        relus = [n for n in graph.nodes if n.op == "relu"]
        for node in relus:
            with graph.inserting_before(node):
                new = graph.add("leaky_relu", [node.inputs[0]], {"alpha": 0.5}, origin=node.origin)
            graph.replace_node(node, [new.output])
        return bool(relus)


if PASSES.get(ReluToLeaky.name) is None:
    register_pass(ReluToLeaky)
'''
exec(WRONG_PASS)


def edgec_cli(*args):
    return subprocess.run([sys.executable, "-m", "edgec", *map(str, args)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = tmp_path_factory.mktemp("tiny") / "tiny.onnx"
    onnx.save(tiny_model(), path)
    return path


def test_a_wrong_pass_is_found_at_the_node_it_changed(tiny):
    report = compare_model(tiny, passes="cse,test-compare-relu-to-leaky,dce", inputs={"x": X})
    assert not report.ok
    first = report.first
    assert (first.op, first.origins) == ("leaky_relu", ["the_relu"])
    # mul_w before it matches; the add and tanh after it diverge too (they read it)
    assert [(n.op, n.within) for n in report.nodes] == [("mul", True), ("leaky_relu", False),
                                                        ("add", False), ("tanh", False)]
    assert report.as_json()["first_divergence"] == first.node
    m = X * W
    assert first.max_abs == pytest.approx(float(np.max(np.abs(np.minimum(m, 0) * 0.5))), rel=1e-6)
    assert "from ONNX node the_relu" in report.format()


def test_bisect_names_the_wrong_pass(tiny):
    report = compare_model(tiny, passes="cse,test-compare-relu-to-leaky,fuse-elementwise,dce", bisect=True)
    assert not report.ok
    assert report.first.passname == "test-compare-relu-to-leaky"
    assert "diverges after pass test-compare-relu-to-leaky" in report.format()


def test_wrong_pass_on_the_command_line_exits_1_with_json(tiny, tmp_path):
    (tmp_path / "wrong.py").write_text(WRONG_PASS)
    r = edgec_cli("compare", tiny, "--passes", "test-compare-relu-to-leaky", "--json", "--bisect",
                  "--load-pass", tmp_path / "wrong.py")
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    assert set(data) == {"model", "target", "pipeline", "tolerance", "first_divergence", "nodes"}
    assert data["pipeline"] == "test-compare-relu-to-leaky"
    for row in data["nodes"]:
        assert set(row) == {"node", "op", "origins", "reference", "max_abs", "max_rel", "sqnr_db", "within", "pass"}
    first = next(row for row in data["nodes"] if row["node"] == data["first_divergence"])
    assert (first["op"], first["origins"], first["within"]) == ("leaky_relu", ["the_relu"], False)
    assert first["pass"] == "test-compare-relu-to-leaky" and first["reference"] == "%1"


@pytest.mark.parametrize("name", ["mlp", "mobilenetv2", "resnet18", "transformer"])
def test_example_models_at_o2_are_within_tolerance(name):
    report = compare_model(make_models.build(name, small=True), level=2)
    assert report.ok, report.format()
    matched = [n for n in report.nodes if n.reference is not None]
    # everything but the odd transpose convert-layout or import adds is matched
    assert len(matched) >= len(report.nodes) - 2, report.format()
    assert all(n.max_abs is not None and n.max_abs <= 1e-4 for n in matched)


def test_quantized_resnet_at_o2_within_one_step():
    g = edgec.import_onnx(make_models.build("resnet18", small=True))
    shape = g.inputs[0].type.shape
    samples = [{"input": rng.standard_normal(shape).astype(np.float32)} for _ in range(3)]
    q = calibrate(g, samples).quantize()
    report = compare_model(q, level=2)
    assert report.ok, report.format()
    ops = {n.op for n in report.nodes if n.reference is not None}
    assert {"qlinear_conv", "qlinear_add", "max_pool"} <= ops  # integer nodes are compared too
    assert sum(n.reference is not None for n in report.nodes) >= 30


def test_inputs_from_npz_and_a_wrong_name(tiny, tmp_path):
    good = tmp_path / "good.npz"
    np.savez(good, x=np.full((2, 8), -1.0, np.float32))
    r = edgec_cli("compare", tiny, "--inputs", good, "-O", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "OK: all" in r.stdout
    bad = tmp_path / "bad.npz"
    np.savez(bad, nope=X)
    r = edgec_cli("compare", tiny, "--inputs", bad)
    assert r.returncode == 2
    assert r.stderr.startswith("edgec: error: ") and "'nope' is not an input" in r.stderr and "Traceback" not in r.stderr
    with pytest.raises(InputError, match="'nope' is not an input of the model"):
        compare_model(tiny, inputs={"x": X, "nope": X})


def test_compiled_values_are_the_compiled_modules(tiny, monkeypatch):
    report = compare_model(tiny, passes="cse", inputs={"x": X}, compiled=True)
    assert report.ok, report.format()
    assert [n.op for n in report.nodes] == ["mul", "relu", "add", "tanh"]
    assert "optimized values: compiled for host" in report.format()
    assert "optimized values: interpreter" in compare_model(tiny, passes="cse").format()
    relu = report.nodes[1].node
    run = Artifact.run

    def perturbed(self, feeds):  # the relu's result, as the module returns it, off by 0.5
        got = run(self, feeds)
        got[relu] = got[relu] + 0.5
        return got

    monkeypatch.setattr(Artifact, "run", perturbed)
    report = compare_model(tiny, passes="cse", inputs={"x": X}, compiled=True)
    assert [n.within for n in report.nodes] == [True, False, True, True]  # the add read the true relu
    assert report.first.max_abs == pytest.approx(0.5)


def test_compiled_on_the_command_line(tiny):
    r = edgec_cli("compare", tiny, "--compiled", "--target", "host", "-O", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "optimized values: compiled for host" in r.stdout and "OK: all 1 matched nodes" in r.stdout


@needs_arm_run
def test_compiled_for_arm_under_qemu(tiny, monkeypatch):
    from edgec.targets import runners
    ran = []
    run_artifact = runners.run_artifact
    monkeypatch.setattr(runners, "run_artifact", lambda art, arrays: ran.append(art.manifest["target"])
                        or run_artifact(art, arrays))
    report = compare_model(tiny, target="arm-a72", passes="cse", inputs={"x": X}, compiled=True)
    assert ran == ["arm-a72"]
    assert report.ok, report.format()
    assert len(report.nodes) == 4 and all(n.reference is not None for n in report.nodes)
    assert "optimized values: compiled for arm-a72" in report.format()
