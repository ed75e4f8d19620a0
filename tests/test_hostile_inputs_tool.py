"""tools/hostile_inputs.py, the hardening audit: it runs a subset end to end (table and JSON),
classifies a killed process as a crash and a timeout as a hang, tells clean errors from unclean
ones, counts a refused legitimate input as wrong, and survives a case that breaks it. Whether
edgec passes the audit is the tool's output, not this test's business."""

import argparse
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "hostile_inputs.py"


@pytest.fixture(scope="module")
def tool():
    spec = importlib.util.spec_from_file_location("hostile_inputs", TOOL)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def test_quick_subset_prints_a_table_and_writes_json(tool, tmp_path):
    out = tmp_path / "cases.json"
    proc = subprocess.run([sys.executable, str(TOOL), "--quick", "--classes", "onnx-malformed,eir-text",
                           "--json", str(out)], capture_output=True, text=True, timeout=600, cwd=tmp_path)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert lines[0] == ("| class | cases | worked | clean errors | unclean errors | crashes | hangs | "
                        "internal errors | harness errors | wrong |")
    rows = {}
    for line in lines[2:]:
        if not line.startswith("| "):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        rows[cells[0]] = [int(c) for c in cells[1:]]
    assert list(rows) == ["onnx-malformed", "eir-text", "eir-text (fuzz)"]
    cases = json.loads(out.read_text())
    for row, (n, *outcomes, wrong) in rows.items():
        mine = [c for c in cases if c["row"] == row]
        assert len(mine) == n == sum(outcomes)
        assert outcomes == [sum(c["outcome"] == o for c in mine) for o in tool.OUTCOMES]
        assert wrong == sum(bool(c["wrong"]) for c in mine)
    assert rows["eir-text (fuzz)"][0] == 10 and rows["onnx-malformed"][0] == 3  # --quick's sample
    assert not [c for c in cases if c["outcome"] == tool.HARNESS]
    for c in cases:
        assert {"cls", "case", "command", "rc", "seconds", "stderr", "outcome", "wrong"} <= set(c)
    assert {c["command"] for c in cases if c["case"] == "compile:random-bytes"} == {
        "edgec compile m/model.onnx --target host -o out"}


def test_a_killed_process_is_a_crash_and_a_timeout_a_hang(tool, tmp_path):
    crash = tool.run_command([sys.executable, "-c", "import os; os.kill(os.getpid(), 11)"], tmp_path, timeout=60)
    assert crash.rc == -11 and tool.classify(crash) == (tool.CRASH, None)
    assert tool.key_message(crash) == "killed by SIGSEGV"
    hang = tool.run_command([sys.executable, "-c", "import time; time.sleep(10)"], tmp_path, timeout=1)
    assert tool.classify(hang) == (tool.HANG, None)
    assert hang.seconds < 8  # killed at the timeout, not waited for


def test_a_fuzz_case_that_kills_or_hangs_the_worker_is_a_crash_or_hang_and_the_rest_still_run(tool, tmp_path):
    opts = argparse.Namespace(timeout=5, memory_gb=4, keep=None, seed=0)
    results = tool.run_fuzz_chunk("demo", "selftest", 0, 4, tool.Fixtures(opts, tmp_path), opts)
    assert [(r.case, r.outcome) for r in results] == [
        ("fuzz-0000", tool.CRASH), ("fuzz-0001", tool.HANG), ("fuzz-0002", tool.INTERNAL), ("fuzz-0003", tool.WORKED)]
    assert "SIGSEGV" in results[0].message and "ValueError" in results[2].message


def test_clean_and_unclean_errors(tool):
    def run(rc, stderr):
        return tool.Run([], rc, "", stderr, 0.1)
    assert tool.classify(run(2, "edgec: error: no such file\n")) == (tool.CLEAN, None)
    assert tool.classify(run(2, "usage: edgec compile ...\nedgec compile: error: bad -O\n"))[0] == tool.CLEAN
    assert tool.classify(run(2, "edgec: error: bad\n"), left=["out/"]) == (tool.UNCLEAN, "left behind out/")
    assert tool.classify(run(2, "oops\n"))[0] == tool.UNCLEAN
    assert tool.classify(run(2, "Traceback (most recent call last):\nValueError: x\n"))[0] == tool.CRASH
    assert tool.classify(run(70, "edgec: internal error: ValueError: x\n"))[0] == tool.INTERNAL
    assert tool.classify(run(130, "edgec: interrupted\n"))[0] == tool.CLEAN
    assert tool.classify(run(1, ""), "verify")[0] == tool.WORKED
    assert tool.classify(run(1, ""), "compile")[0] == tool.CRASH


def test_a_refused_legitimate_input_and_a_swallowed_interrupt_are_wrong(tool, tmp_path):
    refused = tool.Run([], 2, "", "edgec: error: no\n", 0.1)
    legit = tool.Case("legit", [["run"]], expect="work")
    assert tool.expectation(legit, tool.CLEAN, refused, [refused], tmp_path, []).startswith(
        "refused a legitimate input")
    swallowed = tool.Run([], 0, "", "", 0.1, interrupted=True)
    interrupt = tool.Case("sigint", [["compile"]], expect="interrupted")
    assert "swallowed" in tool.expectation(interrupt, tool.WORKED, swallowed, [swallowed], tmp_path, [])
    malformed = tool.Case("bad", [["compile"]], expect="error")
    accepted = tool.Run([], 0, "", "", 0.1)
    assert tool.expectation(malformed, tool.WORKED, accepted, [accepted], tmp_path, []).startswith("accepted")


def test_a_case_that_breaks_the_tool_is_a_harness_error(tool, tmp_path):
    def broken_setup(work, fixtures):
        raise RuntimeError("setup broke")
    opts = argparse.Namespace(timeout=30, large_timeout=30, memory_gb=4, keep=None)
    result = tool.run_case("demo", tool.Case("broken", [["--version"]], setup=broken_setup),
                           tool.Fixtures(opts, tmp_path), opts)
    assert result.outcome == tool.HARNESS and "setup broke" in result.message
