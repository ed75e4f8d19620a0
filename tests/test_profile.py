"""`edgec profile`: one row per manifest kernel (its node, op and origins), sorted by cost, shares
of the kernels' total, the overhead as the total minus the kernels, --json with stable keys;
the clean errors for artifacts it cannot profile; the ARM instruction counts under qemu (skipped
without qemu-user, a cross compiler or a host C compiler)."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
from onnx import helper

import edgec
from edgec.cli import main
from edgec.errors import EdgecError, ToolError
from edgec.targets import crosslink, runners
from edgec.targets.profile import build_plugin, kernel_of, library_bases, profile, short_origins
from onnx_util import make_model

ROW_KEYS = {"name", "node", "op", "origins", "cost", "share"}
PROFILE_KEYS = {"artifact", "target", "arch", "unit", "runs", "threads", "total", "kernels_total", "overhead",
                "kernels"}


def conv_reshape_matmul():
    """Conv + Relu, a Reshape (a view: no kernel), a MatMul + Add: kernels and one view."""
    rng = np.random.default_rng(3)
    x = rng.standard_normal((1, 3, 8, 8)).astype(np.float32)
    inits = {"w": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
             "shape": np.array([1, 256], np.int64),
             "m": rng.standard_normal((256, 16)).astype(np.float32),
             "c": rng.standard_normal(16).astype(np.float32)}
    nodes = [helper.make_node("Conv", ["x", "w"], ["conv"], pads=[1, 1, 1, 1], name="conv"),
             helper.make_node("Relu", ["conv"], ["relu"], name="relu"),
             helper.make_node("Reshape", ["relu", "shape"], ["flat"], name="reshape"),
             helper.make_node("MatMul", ["flat", "m"], ["mm"], name="matmul"),
             helper.make_node("Add", ["mm", "c"], ["out"], name="add")]
    return make_model(nodes, {"x": x}, ["out"], inits)


@pytest.fixture(scope="module")
def host_artifact(tmp_path_factory):
    return edgec.compile(conv_reshape_matmul(), target="host", output=tmp_path_factory.mktemp("p") / "art").artifact


def check_rows(report, manifest):
    """The rows are the manifest's kernels, each with its node, op and origins (no view), costs
    positive and non-increasing, shares summing to 1, and the overhead the total minus the kernels."""
    kernels = {k["name"]: k for k in manifest["kernels"]}
    assert len(kernels) >= 2 and [v["op"] for v in manifest["views"]] == ["reshape"]  # what the checks are about
    assert sorted(r.name for r in report.rows) == sorted(kernels)
    assert manifest["views"][0]["node"] not in {r.node for r in report.rows}
    for r in report.rows:
        assert (r.node, r.op, r.origins) == (kernels[r.name]["node"], kernels[r.name]["op"],
                                             kernels[r.name]["origins"])
        assert r.cost > 0
    costs = [r.cost for r in report.rows]
    assert costs == sorted(costs, reverse=True)
    assert sum(r.share for r in report.rows) == pytest.approx(1.0)
    assert report.total > 0
    assert report.overhead == pytest.approx(report.total - sum(costs))


def test_host_profile_rows_are_the_manifest_kernels(host_artifact):
    report = profile(host_artifact, runs=3)
    assert (report.unit, report.runs, report.target) == ("us", 3, "host")
    check_rows(report, host_artifact.manifest)


def test_cli_json_has_stable_keys_and_the_table_one_line_per_kernel(host_artifact, capsys):
    assert main(["profile", str(host_artifact.path), "--runs", "2", "--threads", "1", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert set(data) == PROFILE_KEYS
    assert all(set(row) == ROW_KEYS for row in data["kernels"])
    assert (data["unit"], data["runs"], data["threads"]) == ("us", 2, 1)
    names = sorted(k["name"] for k in host_artifact.manifest["kernels"])
    assert sorted(row["name"] for row in data["kernels"]) == names
    assert sum(row["share"] for row in data["kernels"]) == pytest.approx(1.0)

    assert main(["profile", str(host_artifact.path), "--runs", "2"]) == 0
    lines = capsys.readouterr().out.splitlines()
    head = next(i for i, line in enumerate(lines) if line.split()[:2] == ["kernel", "node"])
    rows = [line.split() for line in lines[head + 1:lines.index("", head)]]  # the table ends at a blank line
    assert sorted(r[0] for r in rows) == names
    shares = [float(r[-1].rstrip("%")) for r in rows]
    assert shares == sorted(shares, reverse=True)
    assert sum(shares) == pytest.approx(100, abs=0.1 * len(rows))  # each printed to 0.1%
    assert any(line.startswith("runtime overhead") for line in lines)


def _damaged(host_artifact, tmp_path, change):
    path = tmp_path / "art"
    shutil.copytree(host_artifact.path, path)
    manifest = json.loads((path / "manifest.json").read_text())
    change(manifest)
    (path / "manifest.json").write_text(json.dumps(manifest))
    return path


def test_artifacts_it_cannot_profile_are_clean_errors(host_artifact, tmp_path, capsys):
    def refused(args, fragment):
        assert main(["profile", *map(str, args)]) == 2
        err = capsys.readouterr().err
        assert err.startswith("edgec: error: ") and fragment in err, err

    (tmp_path / "empty").mkdir()
    refused([tmp_path / "empty"], "is not an edgec artifact")
    refused([host_artifact.path, "--runs", "0"], "--runs must be at least 1")
    refused([_damaged(host_artifact, tmp_path / "a", lambda m: m.pop("kernels"))], "no valid kernel table")
    refused([_damaged(host_artifact, tmp_path / "b", lambda m: m["kernels"].append(
        {"name": "k9_conv", "node": "%9", "op": "conv", "origins": ["x"], "schedule": None}))],
        "never ran (k9_conv)")


def test_functions_of_the_library_are_charged_to_their_kernel():
    kernels = {"k3_conv_add", "k12_dense"}
    assert kernel_of("k3_conv_add", kernels) == "k3_conv_add"  # the host VM's call
    assert kernel_of("__tvm_ffi_k3_conv_add", kernels) == "k3_conv_add"  # the entry in an ARM model.so
    assert kernel_of("k12_dense_compute_", kernels) == "k12_dense"  # a parallel loop body
    assert kernel_of("k12_dense_compute_.1", kernels) == "k12_dense"
    assert kernel_of("k3_conv_compute_", kernels) is None  # a prefix of a kernel is no kernel
    assert kernel_of("vm.builtin.alloc_tensor", kernels) is None
    assert kernel_of("__tvm_set_raised_6", kernels) is None


def test_long_origins_are_shortened_at_a_name():
    assert short_origins(["conv", "relu"]) == "conv, relu"
    names = [f"features.{i}.expand.conv" for i in range(4)]
    assert short_origins(names, width=40) == "features.0.expand.conv, ... (3 more)"
    assert short_origins(["a" * 50, "b"], width=40) == "a" * 50 + ", ... (1 more)"


def test_library_bases_from_a_qemu_strace_log():
    log = (
        '7 openat(AT_FDCWD,"/opt/rt/tls/libtvm_runtime.so",O_RDONLY|O_CLOEXEC) = -1 errno=2 (No such file)\n'
        '7 openat(AT_FDCWD,"/opt/rt/libtvm_runtime.so",O_RDONLY|O_CLOEXEC) = 3\n'
        "7 mmap(NULL,8192,PROT_READ|PROT_WRITE,MAP_PRIVATE|MAP_ANONYMOUS,-1,0) = 0x0000005502875000\n"
        "7 mmap(0x0000005502880000,3018448,PROT_READ,MAP_PRIVATE|MAP_DENYWRITE|MAP_FIXED,3,0) = 0x0000005502880000\n"
        "7 mmap(0x00000055028a0000,2183168,PROT_EXEC|PROT_READ,MAP_PRIVATE|MAP_FIXED,3,0x20000) = 0x00000055028a0000\n"
        "7 close(3) = 0\n"
        '7 openat(AT_FDCWD,"/etc/ld.so.cache",O_RDONLY|O_CLOEXEC) = 3\n'
        "7 mmap(NULL,35071,PROT_READ,MAP_PRIVATE,3,0) = 0x0000005502da9000\n"
        "7 close(3) = 0\n"
        '7 openat(AT_FDCWD,"/art/model.so",O_RDONLY|O_CLOEXEC) = 3\n'
        "7 mmap(NULL,4096,PROT_READ|PROT_EXEC,MAP_PRIVATE|MAP_DENYWRITE,3,0) = 0x0000005500001000\n"
        "7 close(3) = 0\n")
    assert library_bases(log) == [(0x5500001000, 0x5500001000 + 4096, "/art/model.so"),
                                  (0x5502880000, 0x5502880000 + 3018448, "/opt/rt/libtvm_runtime.so")]


def test_the_plugin_needs_a_c_compiler(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # nothing cached
    monkeypatch.setenv("CC", str(tmp_path / "no-such-cc"))
    with pytest.raises(ToolError, match="C compiler.*apt-get install gcc"):
        build_plugin()


def _can_count() -> bool:
    try:
        crosslink.find_toolchain(need_cxx=True)
        runners.qemu_path()
    except ToolError:
        return False
    return shutil.which(os.environ.get("CC", "cc")) is not None


@pytest.mark.skipif(not _can_count(), reason="needs qemu-user, the aarch64 libc in /usr/aarch64-linux-gnu, a cross "
                    "compiler and a host C compiler (apt-get install qemu-user g++-aarch64-linux-gnu gcc)")
def test_arm_profile_counts_instructions_per_kernel(tmp_path):
    art = edgec.compile(conv_reshape_matmul(), target="arm-a72", output=tmp_path / "art").artifact
    report = profile(art)
    assert (report.unit, report.runs, report.threads) == ("instructions", 1, 1)
    check_rows(report, art.manifest)
    # 4x8x8 outputs of a 27-tap conv and 256x16 multiply-adds: over 1000 4-lane NEON multiply-adds each
    assert all(r.cost > 1000 for r in report.rows if r.op in ("conv", "dense"))
    assert report.overhead > 0  # the VM's allocations and calls run outside the kernels
    if len(os.sched_getaffinity(0)) > 1:
        with pytest.raises(EdgecError, match="--threads applies to host artifacts"):
            profile(edgec.load(art.path, threads=2))
