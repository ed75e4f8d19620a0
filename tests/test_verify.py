"""edgec.verify: verify_model against ONNX Runtime, mismatch reporting, and pass bisection.

The models here use elementwise ops only. A deliberately wrong pass (registered below) changes the
numbers of one node; verify_model must report the mismatch and bisect must name that pass and node.
"""

import builtins

import numpy as np
import pytest
from onnx import helper

from edgec.errors import InputError, ToolError
from edgec.ir import Graph
from edgec.passmanager import PASSES, Pass, register_pass
from edgec.verify import bisect, compare, random_inputs, verify_model
from onnx_util import make_model
from toolchain import needs_arm_run

rng = np.random.default_rng(1)
X = rng.standard_normal((2, 8)).astype(np.float32)
W = rng.standard_normal((2, 8)).astype(np.float32)
B = rng.standard_normal((8,)).astype(np.float32)


def small_model():
    """y = tanh(x * w + b) - relu(x), z = y / 3: five nodes, two outputs."""
    nodes = [
        helper.make_node("Mul", ["x", "w"], ["m"], name="mul_w"),
        helper.make_node("Add", ["m", "b"], ["a"], name="add_b"),
        helper.make_node("Tanh", ["a"], ["t"], name="tanh"),
        helper.make_node("Relu", ["x"], ["r"], name="relu"),
        helper.make_node("Sub", ["t", "r"], ["y"], name="sub"),
        helper.make_node("Div", ["y", "three"], ["z"], name="div3"),
    ]
    return make_model(nodes, {"x": X}, ["y", "z"], {"w": W, "b": B, "three": np.float32(3.0)})


class PerturbAddConstant(Pass):
    """Wrong on purpose: adds 0.5 to the constant operand of every `add` node."""
    name = "test-perturb-add-constant"
    summary = "a broken pass for tests: shifts add constants by 0.5"

    def run(self, graph: Graph) -> bool:
        changed = False
        for node in graph.nodes:
            if node.op == "add":
                for i, v in enumerate(node.inputs):
                    if v.is_const:
                        node.set_input(i, graph.const(v.const_value() + np.float32(0.5)))
                        changed = True
        return changed


class RenameNothing(Pass):
    """Harmless: changes nothing."""
    name = "test-noop"
    summary = "a pass for tests that changes nothing"

    def run(self, graph: Graph) -> bool:
        return False


for _cls in (PerturbAddConstant, RenameNothing):
    if PASSES.get(_cls.name) is None:
        register_pass(_cls)


def test_verify_small_model_ok_at_o0_and_o2():
    for level in (0, 2):
        report = verify_model(small_model(), level=level)
        assert report.ok, report.format()
        assert [o.name for o in report.outputs] == ["y", "z"]
        for o in report.outputs:
            assert o.compiled is not None
            assert o.interpreter.abs <= 1e-5 and o.compiled.abs <= 1e-5
            assert o.scale > 0 and o.bound == pytest.approx(1e-4 * max(1.0, o.scale))
        assert "OK" in report.format() and "y" in report.format()


def test_verify_given_inputs_are_used():
    x = np.full((2, 8), 2.0, np.float32)
    report = verify_model(small_model(), inputs={"x": x}, level=0, compiled=False)
    assert report.ok
    np.testing.assert_array_equal(report.inputs["x"], x)
    expected_y = np.tanh(x * W + B) - np.maximum(x, 0)
    assert report.outputs[0].scale == pytest.approx(float(np.max(np.abs(expected_y))), rel=1e-6)


def test_verify_reports_a_wrong_pass():
    report = verify_model(small_model(), passes="test-noop,test-perturb-add-constant,dce")
    assert not report.ok
    text = report.format()
    assert "MISMATCH" in text and "FAILED" in text
    for o in report.outputs:
        # tanh(a + 0.5) differs from tanh(a) by well above the 1e-4 tolerance for these inputs
        assert o.interpreter.abs > 1e-2 and o.compiled.abs > 1e-2
        assert o.interpreter.rel == pytest.approx(o.interpreter.abs / o.scale)


def test_tolerances_by_dtype():
    loose = verify_model(small_model(), passes="test-perturb-add-constant", compiled=False,
                         rtol={"f32": 1.0}, atol={"f32": 1.0})
    assert loose.ok and loose.outputs[0].bound == pytest.approx(max(1.0, loose.outputs[0].scale))
    strict = verify_model(small_model(), level=0, compiled=False, rtol=0.0, atol=0.0)
    assert strict.outputs[0].bound == 0.0


def test_bisect_names_the_wrong_pass_and_node():
    report = bisect(small_model(), passes="fold-constants,test-noop,test-perturb-add-constant,dce")
    assert not report.ok
    assert report.culprit == "test-perturb-add-constant" and report.step == 3
    assert report.passes_before == "fold-constants,test-noop"
    assert report.changed_origins == ["add_b"]
    assert report.first_divergence is not None
    assert report.first_divergence.origin == ("add_b",)
    assert report.first_divergence.error.abs == pytest.approx(0.5, rel=1e-6)
    assert set(report.outputs) == {"y", "z"}
    text = report.format()
    assert "test-perturb-add-constant" in text and "add_b" in text


def test_bisect_clean_pipeline():
    report = bisect(small_model(), level=2)
    assert report.ok and report.culprit is None
    assert "no divergence" in report.format()


def test_bisect_reports_a_pass_that_raises():
    class Explodes(Pass):
        name = "test-explodes"
        summary = "raises"

        def run(self, graph):
            raise RuntimeError("boom")

    if PASSES.get(Explodes.name) is None:
        register_pass(Explodes)
    report = bisect(small_model(), passes="dce,test-explodes")
    assert report.culprit == "test-explodes" and report.step == 2
    assert "boom" in report.error


def test_compare_handles_nan_shape_and_infinity():
    a = np.array([1.0, np.nan, np.inf], np.float32)
    assert compare(a, a).abs == 0.0
    assert compare(np.array([1.0, 2.0, np.inf], np.float32), a).abs == float("inf")
    assert "shape" in compare(np.zeros(3), np.zeros(4)).note
    e = compare(np.array([1.0, 2.5]), np.array([1.0, 2.0]))
    assert e.abs == pytest.approx(0.5) and e.rel == pytest.approx(0.25)


def test_integer_outputs_must_match_exactly():
    i = np.arange(6, dtype=np.int64).reshape(2, 3)
    model = make_model([helper.make_node("Add", ["i", "one"], ["o"], name="add1")], {"i": i}, ["o"],
                       {"one": np.int64(1)})
    report = verify_model(model, inputs={"i": i}, level=2)
    assert report.ok and report.outputs[0].bound == 0.0


def test_missing_onnxruntime_is_a_tool_error(monkeypatch):
    real_import = builtins.__import__

    def no_ort(name, *args, **kwargs):
        if name == "onnxruntime":
            raise ImportError("no onnxruntime")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_ort)
    with pytest.raises(ToolError, match="pip install onnxruntime"):
        verify_model(small_model(), compiled=False)


def test_wrong_input_names_are_an_input_error():
    with pytest.raises(InputError, match="missing 'x'"):
        verify_model(small_model(), inputs={"nope": X}, compiled=False)


def test_model_from_a_file(tmp_path):
    path = tmp_path / "m.onnx"
    path.write_bytes(small_model().SerializeToString())
    report = verify_model(str(path), level=2)
    assert report.ok and report.model == str(path)


@needs_arm_run
def test_verify_an_arm_target_through_its_runner():
    report = verify_model(small_model(), target="arm-a72", level=2)
    assert report.ok, report.format()
    assert report.target == "arm-a72" and all(o.compiled is not None for o in report.outputs)
    bad = verify_model(small_model(), target="arm-a72", passes="test-perturb-add-constant")
    assert not bad.ok and all(o.compiled.abs > 1e-2 for o in bad.outputs)


def test_quantized_outputs_are_allowed_one_quantization_step():
    """A dequantized output may differ by its scale, a quantized one by 1; float ones keep 1e-4."""
    import onnx
    from onnx import helper, numpy_helper
    from edgec.verify import verify_model
    inits = [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(128, np.uint8), "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"]),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["dq"]),
             helper.make_node("Relu", ["x"], ["r"])]
    g = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [4])],
                          [helper.make_tensor_value_info(n, t, [4]) for n, t in
                           (("q", onnx.TensorProto.UINT8), ("dq", onnx.TensorProto.FLOAT), ("r", onnx.TensorProto.FLOAT))],
                          inits)
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    report = verify_model(model, compiled=False)
    bounds = {r.name: r.bound for r in report.outputs}
    assert bounds["q"] == 1.0 and bounds["dq"] == pytest.approx(0.1, rel=1e-5) and bounds["r"] <= 1e-3
    assert report.ok


def tiny_output_model():
    """y = x * 1e-6: standard normal x makes an output far below the 1e-4 tolerance."""
    return make_model([helper.make_node("Mul", ["x", "k"], ["y"])], {"x": X}, ["y"], {"k": np.float32(1e-6)})


def test_an_output_smaller_than_its_tolerance_is_reported_vacuous():
    report = verify_model(tiny_output_model(), compiled=False)
    (out,) = report.outputs
    assert out.ok and out.vacuous and out.scale < 1e-5
    text = report.format()
    assert "ok (vacuous)" in text
    assert "warning: output 'y'" in text and "--inputs FILE.npz" in text
    large = verify_model(tiny_output_model(), inputs={"x": X * 1000}, compiled=False)
    assert not large.outputs[0].vacuous and "warning" not in large.format()
    assert not any(o.vacuous for o in verify_model(small_model(), compiled=False).outputs)


def test_generated_inputs_are_in_a_typical_range():
    """Images (4-D, 1 or 3 channels first or last) uniform in [0, 1]; other floats standard normal."""
    from edgec.ir import Graph, TensorType
    g = Graph()
    for name, shape in [("nchw", (1, 3, 8, 8)), ("nhwc", (2, 8, 8, 3)), ("gray", (1, 1, 16, 16)),
                        ("features", (1, 4, 8, 8)), ("tokens", (2, 64))]:
        g.add_input(name, TensorType("f32", shape))
    feeds = random_inputs(g, 0)
    for name in ("nchw", "nhwc", "gray"):
        assert feeds[name].min() >= 0 and feeds[name].max() <= 1 and feeds[name].std() > 0.2, name
    for name in ("features", "tokens"):
        assert feeds[name].min() < -1 and feeds[name].max() > 1, name


def test_cli_verify_reads_inputs_from_an_npz(tmp_path):
    """`edgec verify --inputs FILE.npz` uses its arrays (a large x: the check is not vacuous); a
    file naming no model input is refused with one message; --input and --inputs exclude each other."""
    import subprocess
    import sys
    model = tmp_path / "tiny.onnx"
    model.write_bytes(tiny_output_model().SerializeToString())

    def verify(*args):
        return subprocess.run([sys.executable, "-m", "edgec", "verify", str(model), "--target", "host", "-O0", *args],
                              capture_output=True, text=True, timeout=300)

    generated = verify()
    assert generated.returncode == 0 and "warning: output 'y'" in generated.stdout, generated.stdout
    np.savez(tmp_path / "big.npz", x=X * 1000)
    given = verify("--inputs", tmp_path / "big.npz")
    assert given.returncode == 0 and "ok" in given.stdout and "warning" not in given.stdout, given.stdout
    np.savez(tmp_path / "wrong.npz", image=X)
    wrong = verify("--inputs", tmp_path / "wrong.npz")
    assert wrong.returncode == 2 and wrong.stderr.startswith("edgec: error:") and "Traceback" not in wrong.stderr
    assert "missing 'x'" in wrong.stderr, wrong.stderr
    np.save(tmp_path / "x.npy", X)
    both = verify("--inputs", tmp_path / "big.npz", "--input", f"x={tmp_path / 'x.npy'}")
    assert both.returncode == 2 and "not allowed with" in both.stderr, both.stderr
