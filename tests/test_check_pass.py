"""edgec.testing and `edgec check-pass`: random graphs through a user's pass, compared with the
unoptimized graph; a wrong pass is caught with a small, replayable reproducer."""

import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import edgec
from edgec.errors import EdgecError
from edgec.testing import assert_equivalent, check_pass, replay

ROOT = Path(__file__).resolve().parents[1]

# The x*1 -> x rule applied to any constant: wrong for x*2.
MUL_BY_ANY_CONSTANT = '''
from edgec import Pass, register_pass


@register_pass
class RemoveMulByConstant(Pass):
    name = "remove-mul-one"
    summary = "mul(x, c) -> x for any constant c (wrong: only c = 1 may go)"

    def run(self, graph):
        changed = False
        for node in list(graph.nodes):
            if node.op == "mul" and node.inputs[1].is_const and node.inputs[0].type == node.output.type:
                graph.replace_all_uses_with(node.output, node.inputs[0])
                changed = True
        return changed
'''


def edgec_cli(*args):
    return subprocess.run([sys.executable, "-m", "edgec", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def test_check_pass_passes_the_readme_pass(tmp_path):
    readme = (ROOT / "README.md").read_text()
    code = next(b for b in re.findall(r"```python\n(.*?)```", readme, re.S) if "@register_pass" in b)
    (tmp_path / "my_pass.py").write_text(code)
    name = re.search(r'name = "([a-z-]+)"', code).group(1)
    r = edgec_cli("check-pass", tmp_path / "my_pass.py", "--pass", name, "--examples", 30, "--out", tmp_path / "out")
    assert r.returncode == 0, r.stdout + r.stderr
    assert r.stdout == f"{name}: 30 graphs, all equivalent\n"
    assert not (tmp_path / "out").exists()  # nothing written unless a graph fails


def test_check_pass_catches_a_wrong_pass_with_a_small_reproducer(tmp_path):
    (tmp_path / "bad_pass.py").write_text(MUL_BY_ANY_CONSTANT)
    out = tmp_path / "out"
    r = edgec_cli("check-pass", tmp_path / "bad_pass.py", "--pass", "remove-mul-one", "--examples", 30, "--out", out)
    assert r.returncode == 1, r.stdout + r.stderr
    repro = out / "remove-mul-one-repro.eir"
    assert f"reproducer: {repro}" in r.stdout
    assert f"edgec check-pass {tmp_path / 'bad_pass.py'} --pass 'remove-mul-one' --replay {repro}" in r.stdout
    assert f"edgec opt {repro} --load-pass {tmp_path / 'bad_pass.py'} --passes 'remove-mul-one'" in r.stdout
    graph = edgec.parse_ir(repro.read_text())
    assert 1 <= len(graph.nodes) <= 4 and "mul" in [n.op for n in graph.nodes]
    assert f"NOT equivalent on a graph of {len(graph.nodes)} node" in r.stdout
    feeds = dict(np.load(repro.with_suffix(".npz")))
    assert set(feeds) == {v.name for v in graph.inputs}

    replay = edgec_cli("check-pass", tmp_path / "bad_pass.py", "--pass", "remove-mul-one", "--replay", repro)
    assert replay.returncode == 1, replay.stdout + replay.stderr
    assert "is NOT equivalent: output out0: max abs error" in replay.stdout
    # the reproducer runs through `edgec opt`, and the pass drops its mul (dce then removes it)
    opt = edgec_cli("opt", repro, "--load-pass", tmp_path / "bad_pass.py", "--passes", "remove-mul-one,dce")
    assert opt.returncode == 0, opt.stderr
    assert opt.stdout.count("mul(") == str(graph).count("mul(") - 1


def _unregistered(source: str, name: str) -> type:
    """The pass class that `source` defines, not registered (as a user's own class is)."""
    namespace: dict = {}
    exec(source.replace("@register_pass\n", ""), namespace)
    cls = next(v for v in namespace.values() if isinstance(v, type) and issubclass(v, edgec.Pass) and v is not edgec.Pass)
    return type(cls.__name__, (cls,), {"name": name})


MulByAnyConstant = _unregistered(MUL_BY_ANY_CONSTANT, "test-mul-by-any-constant")


def test_assert_equivalent_accepts_cse():
    assert_equivalent("cse", examples=30)
    assert_equivalent("cse,dce", family="transformer", examples=30)


def test_assert_equivalent_reports_a_wrong_pass_class_the_same_way_every_run(tmp_path):
    messages = []
    for out in (tmp_path / "a", tmp_path / "a"):
        with pytest.raises(AssertionError) as e:
            assert_equivalent(MulByAnyConstant, family="elementwise", examples=30, out=out)
        messages.append(str(e.value))
    assert messages[0] == messages[1]  # derandomized: the same graphs and the same shrunk one
    repro = tmp_path / "a" / "test-mul-by-any-constant-repro.eir"
    assert f"reproducer: {repro}" in messages[0]
    assert f"--pass 'test-mul-by-any-constant' --replay {repro}" in messages[0]
    assert len(edgec.parse_ir(repro.read_text()).nodes) <= 4


def test_a_pass_that_breaks_the_ir_is_a_failure_too():
    class ChangesButSaysNot(edgec.Pass):
        name = "test-returns-false-after-changing"
        summary = "changes the graph but says it did not"

        def run(self, graph):
            graph.nodes[0].attrs["bogus"] = 1
            return False

    result = check_pass(ChangesButSaysNot, family="elementwise", examples=5, out=None)
    assert not result.ok and "returned False" in result.reason
    assert result.reproducer.is_file() and len(result.graph.nodes) == 1


def test_bad_arguments_are_clean_errors(tmp_path):
    with pytest.raises(EdgecError, match="unknown graph family 'rnn'"):
        check_pass("cse", family="rnn")
    with pytest.raises(EdgecError, match="unknown pass 'no-such-pass'"):
        check_pass("no-such-pass")
    r = edgec_cli("check-pass", "--pass", "cse", "--family", "rnn")
    assert r.returncode == 2 and r.stderr.startswith("edgec: error: unknown graph family 'rnn'"), r.stderr
    repro = tmp_path / "r.eir"
    repro.write_text("graph @main(%x: f32[2]) -> (%y: f32[2]) {\n  %0 = neg(%x) : f32[2]\n  return %0\n}\n")
    assert replay(repro, "cse") == (True, f"{repro} (1 node, random inputs (seed 0; no {tmp_path / 'r.npz'})): "
                                          "cse keeps the outputs")
    (tmp_path / "r.npz").write_bytes(b"PK\x03\x04 not a zip file")
    with pytest.raises(EdgecError, match="its inputs .* cannot read it as a .npz file"):
        replay(repro, "cse")
    r = edgec_cli("check-pass", tmp_path / "missing.py", "--pass", "cse")
    assert r.returncode == 2 and "--load-pass" in r.stderr and "no such file" in r.stderr, r.stderr


def test_hypothesis_is_loaded_only_by_edgec_testing():
    code = ("import sys\nimport edgec, edgec.cli, edgec.passmanager\nassert 'hypothesis' not in sys.modules\n"
            "sys.modules['hypothesis'] = None  # as if it were not installed\n"
            "try:\n    import edgec.testing\nexcept edgec.EdgecError as e:\n    print(e)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "pip install hypothesis" in r.stdout and "pip install edgec[test]" in r.stdout
