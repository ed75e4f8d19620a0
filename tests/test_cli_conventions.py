"""Command-line conventions: --version, --debug on either side of the command, "did you mean",
-O and --passes not together, reports on stderr, help for every argument, no TVM for listings
and help, outputs that cannot be written as clean errors naming the path, and no reproducer
directory unless a pass fails."""

import argparse
import errno
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec
from edgec.cli import build_parser
from edgec.errors import EdgecError

ROOT = Path(__file__).resolve().parents[1]


def edgec_cli(*args, env=None):
    return subprocess.run([sys.executable, "-m", "edgec", *map(str, args)], capture_output=True, text=True,
                          timeout=300, env=env)


def assert_clean_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr and "internal error" not in result.stderr, result.stderr
    for f in fragments:
        assert f in result.stderr, result.stderr


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    b = numpy_helper.from_array(np.arange(8, dtype=np.float32).reshape(2, 4), "b")
    graph = helper.make_graph([helper.make_node("Add", ["x", "b"], ["t"], name="add0"),
                               helper.make_node("Relu", ["t"], ["y"], name="relu0")], "g", [x], [y], [b])
    path = tmp_path_factory.mktemp("model") / "m.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_version_names_edgec_and_the_pinned_tvm():
    pin = re.search(r'"apache-tvm==([^"]+)"', (ROOT / "pyproject.toml").read_text()).group(1)
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M).group(1)
    r = edgec_cli("--version")
    assert r.returncode == 0, r.stderr
    assert r.stdout == f"edgec {version} (TVM {pin})\n"


def test_debug_works_before_and_after_the_command(tmp_path):
    (tmp_path / "boom.py").write_text("raise RuntimeError('boom')\n")
    plain = edgec_cli("passes", "--load-pass", tmp_path / "boom.py")
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    for args in (["--debug", "passes"], ["passes", "--debug"]):
        r = edgec_cli(*args, "--load-pass", tmp_path / "boom.py")
        assert r.returncode != 0 and "Traceback" in r.stderr and "boom" in r.stderr, args


def test_unknown_targets_and_passes_get_a_suggestion(model, tmp_path):
    r = edgec_cli("compile", model, "--target", "arm_a72", "-o", tmp_path / "art")
    assert_clean_error(r, "unknown target 'arm_a72' (did you mean 'arm-a72'?)", "rpi4 (arm-a72)")
    r = edgec_cli("opt", model, "--passes", "fold-constant,dce")
    assert_clean_error(r, "unknown pass 'fold-constant' (did you mean 'fold-constants'?)")
    r = edgec_cli("opt", model, "--passes", "convert-layout{to=XYZ}")
    assert_clean_error(r, "convert-layout{to=XYZ}: the value must be one of NHWC, NCHW")
    assert "reproducer" not in r.stderr  # refused when the pipeline is read, not as a failing pass
    assert not (tmp_path / "art").exists()


def test_a_level_and_passes_together_are_refused(model, tmp_path):
    r = edgec_cli("compile", model, "--target", "host", "-O3", "--passes", "dce", "-o", tmp_path / "art")
    assert r.returncode == 2 and "--passes: not allowed with argument -O" in r.stderr, r.stderr
    assert not (tmp_path / "art").exists()


def test_reports_go_to_stderr_and_results_to_stdout(model, tmp_path):
    r = edgec_cli("opt", model, "--passes", "fold-constants,dce", "--timing")
    assert r.returncode == 0, r.stderr
    assert "| dce |" in r.stderr and "| dce |" not in r.stdout
    assert edgec.parse_ir(r.stdout).nodes  # stdout holds just the IR


def _arguments(parser):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            yield parser.prog, action
            for sub in action.choices.values():
                yield from _arguments(sub)
        elif not isinstance(action, argparse._HelpAction):
            yield parser.prog, action


def test_every_argument_has_help():
    missing = [f"{prog} {action.dest}" for prog, action in _arguments(build_parser()) if not action.help]
    assert missing == []


@pytest.mark.parametrize("args", [["--help"], ["passes"], ["ops"], ["targets"], ["compile", "--help"],
                                  ["check-pass", "--pass", "cse", "--examples", "5"]])
def test_help_and_listings_do_not_import_tvm(args):
    script = ("import sys\nfrom edgec.cli import main\n"
              "try:\n    status = main(sys.argv[1:])\nexcept SystemExit as e:\n    status = e.code\n"
              "assert status == 0, status\nassert 'tvm' not in sys.modules, 'tvm was imported'\n")
    r = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr


def test_import_and_optimize_do_not_import_tvm(tmp_path):
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_models.py"), "--out", str(tmp_path), "--small",
                    "mobilenetv2"], check=True, capture_output=True, timeout=300)
    script = ("import sys, edgec\n"
              "g = edgec.optimize(edgec.import_onnx(sys.argv[1]))\n"
              "assert any(n.op == 'conv' for n in g.nodes)\n"
              "assert 'tvm' not in sys.modules, 'tvm was imported'\n")
    r = subprocess.run([sys.executable, "-c", script, str(tmp_path / "mobilenetv2.onnx")], capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0, r.stderr


# ---- outputs that cannot be written -------------------------------------------------------------

def test_opt_output_into_a_missing_directory_or_onto_a_directory(model, tmp_path):
    r = edgec_cli("opt", model, "--passes", "dce", "-o", tmp_path / "nope" / "m.eir")
    assert_clean_error(r, f"opt -o {tmp_path / 'nope' / 'm.eir'}: the directory {tmp_path / 'nope'} does not exist")
    r = edgec_cli("opt", model, "--passes", "dce", "-o", tmp_path)
    assert_clean_error(r, f"opt -o {tmp_path} is a directory")
    assert sorted(tmp_path.iterdir()) == []


def test_compile_output_under_a_file(model, tmp_path):
    (tmp_path / "f").write_text("mine")
    r = edgec_cli("compile", model, "--target", "host", "-o", tmp_path / "f" / "art")
    assert_clean_error(r, f"compile -o {tmp_path / 'f' / 'art'}: cannot write it ({tmp_path / 'f'} is a file")
    assert (tmp_path / "f").read_text() == "mine" and sorted(tmp_path.iterdir()) == [tmp_path / "f"]


def test_unwritable_outputs_are_clean_errors(model, tmp_path, monkeypatch):
    """A read-only file system (simulated: the temporary file or directory cannot be made) fails
    before the compile, naming -o, and leaves nothing; the same for opt -o."""
    def read_only(*args, **kwargs):
        raise OSError(errno.EROFS, "Read-only file system")
    monkeypatch.setattr("tempfile.mkdtemp", read_only)
    monkeypatch.setattr("tempfile.mkstemp", read_only)
    with pytest.raises(EdgecError, match=re.escape(f"compile -o {tmp_path / 'a' / 'art'}: cannot write it "
                                                   "(Read-only file system)")):
        edgec.compile(model, output=tmp_path / "a" / "art")
    from edgec.files import write_text
    with pytest.raises(EdgecError, match=re.escape(f"opt -o {tmp_path / 'm.eir'}: cannot write it")):
        write_text(tmp_path / "m.eir", "text", "opt -o")
    assert sorted(tmp_path.iterdir()) == []  # not even the parent compile would have made


@pytest.mark.parametrize("flag", ["--dump-ir", "--reproducer-dir"])
def test_instrument_directories_that_are_files(model, tmp_path, flag):
    (tmp_path / "f").write_text("mine")
    r = edgec_cli("opt", model, "--passes", "dce", flag, tmp_path / "f")
    assert_clean_error(r, f"{flag} {tmp_path / 'f'} is a file, not a directory")
    r = edgec_cli("compile", model, "--target", "host", "-o", tmp_path / "art", flag, tmp_path / "f")
    assert_clean_error(r, f"{flag} {tmp_path / 'f'} is a file, not a directory")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f"]


def test_no_reproducer_directory_unless_a_pass_fails(model, tmp_path):
    temp = tmp_path / "temp"
    temp.mkdir()
    env = dict(os.environ, TMPDIR=str(temp))
    assert edgec_cli("opt", model, "--passes", "dce", env=env).returncode == 0
    assert edgec_cli("compile", model, "--target", "host", "-o", tmp_path / "art", env=env).returncode == 0
    assert list(temp.iterdir()) == []
    (tmp_path / "bad.py").write_text(
        "from edgec import Pass, register_pass\n\n"
        "@register_pass\nclass Bad(Pass):\n    name = 'test-bad'\n    summary = 'fails'\n\n"
        "    def run(self, graph):\n        raise ValueError('no')\n")
    r = edgec_cli("opt", model, "--load-pass", tmp_path / "bad.py", "--passes", "test-bad", env=env)
    assert_clean_error(r, "pass 'test-bad' (step 1) failed: no", f"reproducer (input IR and pipeline): {temp}")
    (made,) = temp.iterdir()
    assert made.name.startswith("edgec-reproducer-") and len(list(made.iterdir())) == 1
