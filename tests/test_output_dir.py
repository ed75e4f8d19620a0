"""`compile -o DIR` never loses a user's files: it writes a new path or an empty directory,
replaces a directory only when it is verifiably an edgec artifact (the manifest's format and
file list) holding nothing else, needs --force for anything else, and never takes the current
directory or one above it."""

import json
import os

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec
from edgec.errors import EdgecError


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])
    b = numpy_helper.from_array(np.arange(8, dtype=np.float32).reshape(2, 4), "b")
    graph = helper.make_graph([helper.make_node("Add", ["x", "b"], ["y"], name="add0")], "g", [x], [y], [b])
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path_factory.mktemp("model") / "m.onnx"
    onnx.save(m, path)
    return path


def tree(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_new_and_empty_directories_are_written(model, tmp_path):
    edgec.compile(model, output=tmp_path / "new")
    (tmp_path / "empty").mkdir()
    edgec.compile(model, output=tmp_path / "empty")
    manifest = json.loads((tmp_path / "empty" / "manifest.json").read_text())
    assert manifest["files"] == ["manifest.json", "model.eir", "model.so"]
    assert set(tree(tmp_path / "empty")) == set(manifest["files"])


def test_an_artifact_alone_is_replaced(model, tmp_path):
    out = tmp_path / "art"
    edgec.compile(model, output=out)
    (out / "model.so").write_bytes(b"stale")
    edgec.compile(model, output=out)
    assert (out / "model.so").read_bytes() != b"stale"


def test_user_files_beside_an_artifact_are_kept(model, tmp_path):
    out = tmp_path / "art"
    edgec.compile(model, output=out)
    (out / "notes.txt").write_text("mine")
    before = tree(out)
    with pytest.raises(EdgecError, match="notes.txt.*--force"):
        edgec.compile(model, output=out)
    assert tree(out) == before


@pytest.mark.parametrize("manifest", ["{}", '{"format": 2}', "not json", '{"format": 2, "files": "x"}',
                                      '["manifest.json"]'])
def test_a_directory_with_a_foreign_manifest_is_refused(model, tmp_path, manifest):
    project = tmp_path / "webapp"
    project.mkdir()
    (project / "manifest.json").write_text(manifest)
    (project / "index.html").write_text("<html>")
    before = tree(project)
    with pytest.raises(EdgecError, match="not an edgec artifact.*--force"):
        edgec.compile(model, output=project)
    assert tree(project) == before


def test_force_replaces_any_directory(model, tmp_path):
    project = tmp_path / "webapp"
    project.mkdir()
    (project / "index.html").write_text("<html>")
    edgec.compile(model, output=project, force=True)
    assert set(tree(project)) == {"manifest.json", "model.eir", "model.so"}


def test_a_file_is_refused(model, tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(EdgecError, match="not a directory"):
        edgec.compile(model, output=tmp_path / "f", force=True)
    assert (tmp_path / "f").read_text() == "x"


@pytest.mark.parametrize("where", [".", "..", "sub/.."])
def test_the_current_directory_and_its_parents_are_never_replaced(model, tmp_path, monkeypatch, where):
    work = tmp_path / "work"
    (work / "sub").mkdir(parents=True)
    (work / "keep.txt").write_text("mine")
    monkeypatch.chdir(work)
    with pytest.raises(EdgecError, match="current directory"):
        edgec.compile(model, output=where, force=True)
    assert (work / "keep.txt").read_text() == "mine"


def test_cli_refuses_with_exit_2_and_force_works(model, tmp_path):
    import subprocess
    import sys
    project = tmp_path / "p"
    project.mkdir()
    (project / "manifest.json").write_text("{}")
    run = lambda *a: subprocess.run([sys.executable, "-m", "edgec", "compile", str(model), "-o", str(project), *a],  # noqa: E731
                                    capture_output=True, text=True, timeout=300)
    r = run()
    assert r.returncode == 2 and "not an edgec artifact" in r.stderr and "Traceback" not in r.stderr
    assert (project / "manifest.json").read_text() == "{}"
    r = run("--force")
    assert r.returncode == 0, r.stderr
    assert json.loads((project / "manifest.json").read_text())["format"] == 2


def test_written_files_follow_the_umask(tmp_path):
    """Files edgec writes (opt -o, view -o, reports) are made through a temporary file; they get
    the permissions of any new file (0666 less the umask), not the temporary file's 0600."""
    from edgec.files import write_text
    old = os.umask(0o022)
    try:
        write_text(tmp_path / "page.html", "<html></html>", "view -o")
    finally:
        os.umask(old)
    assert (tmp_path / "page.html").stat().st_mode & 0o777 == 0o644
