#!/usr/bin/env python3
"""Rewrite tests/onnx_backend_expected_failures.txt from a fresh run of the ONNX backend suite.

    python tools/update_expected_failures.py            # both runs on 2 workers
    python tools/update_expected_failures.py -n 4

What it does:
1. runs the same suite through ONNX Runtime's backend (`onnxruntime.backend`) to learn which
   cases ORT itself fails;
2. runs tests/test_onnx_backend.py with `--runxfail` (listed cases run as plain tests), writing
   JUnit XML, so every case reports its real outcome and error;
3. lists every failing case, one line each: `test_name # reason`. A reason already in the file is
   kept (unless it is 'unclassified: ...'); a new failure gets a reason from its error message
   (`classify`), with '; ORT also fails' appended when ORT fails the case too; an error it cannot
   classify gets 'unclassified: <first line of the error>'. Passing cases leave the list.
4. writes the counts (passed, expected failures, skipped, per category) in the file's header and
   prints them.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
FILE = ROOT / "tests" / "onnx_backend_expected_failures.txt"
SUITE = ROOT / "tests" / "test_onnx_backend.py"

ORT_SUITE = '''
import warnings
import onnx.backend.test
import onnxruntime.backend
with warnings.catch_warnings():
    warnings.simplefilter("ignore", RuntimeWarning)
    globals().update(onnx.backend.test.BackendTest(onnxruntime.backend, __name__).test_cases)
'''


def onnx_dtype_name(number: int) -> str:
    from onnx import TensorProto
    try:
        return TensorProto.DataType.Name(number).lower()
    except ValueError:
        return f"ONNX data type {number}"


# (regex on the error, reason template using the match's groups); the first that matches wins.
RULES: list[tuple[str, object]] = [
    (r"does not support: (.*)", lambda m: "op " + ", ".join(
        re.sub(r" \(nodes:.*", "", part) for part in m.group(1).split("; ")) + " not supported"),
    (r"has ONNX data type (\d+)", lambda m: f"dtype {onnx_dtype_name(int(m.group(1)))} not supported"),
    (r"No corresponding Numpy type for Tensor Type\. (\w+)", lambda m: f"dtype {m.group(1).lower()} not supported"),
    (r"uses opset (\d+); edgec supports opsets \d+ to (\d+)\.",
     lambda m: f"opset {m.group(1)} not supported (newer than {m.group(2)})"),
    (r"uses opset (\d+);.*version_converter could not convert",
     lambda m: f"opset {m.group(1)} model: onnx.version_converter cannot upgrade it"),
    (r"dynamic dimension|has no shape", "dynamic shapes not supported"),
    (r"empty tensors|empty or too large|would be empty", "empty tensors (a zero-sized dim) not supported"),
    (r"is not a tensor", "sequence/optional/map values not supported"),
    (r"subgraph or sparse tensor", "subgraph or sparse-tensor attributes not supported"),
    (r"training", "training mode not supported"),
    (r"must be a constant", "needs a constant operand (edgec compiles static shapes only)"),
    (r"attribute (\w+)=.* is not supported", lambda m: f"attribute {m.group(1)} value not supported"),
    (r"ONNX defines no (\w+) in opset (\d+)", lambda m: f"op {m.group(1)} not in opset {m.group(2)}"),
    (r"is empty, which edgec does not support", "empty tensors (a zero-sized dim) not supported"),
    (r"Invalid DLTensor file format", "empty tensors (a zero-sized dim) not supported: TVM cannot load an empty constant"),
    (r"\((\w+)\): only the first output is supported", lambda m: f"{m.group(1)}: only the first output supported"),
    (r"Dropout's mask output is used", "Dropout: the mask output not supported"),
    # Any other clean refusal by a converter, in its own words (a bug shows as 'importer failed').
    (r"UnsupportedError: ONNX node '[^']*' \((\w+)\): (?!the importer failed)(.*)",
     lambda m: f"{m.group(1)}: {m.group(2)[:160]}"),
]


def classify(message: str) -> str | None:
    for pattern, reason in RULES:
        m = re.search(pattern, message)
        if m:
            return reason(m) if callable(reason) else reason
    return None


def first_line(message: str) -> str:
    line = next((ln.strip() for ln in message.splitlines() if ln.strip()), "no message")
    return line[:200].replace(" # ", " ")


def read_file() -> dict[str, str]:
    entries = {}
    if FILE.is_file():
        for line in FILE.read_text().splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                pattern, _, reason = line.partition(" # ")
                entries[pattern.strip()] = reason.strip()
    return entries


def run_junit(test_file: Path, xml: Path, workers: int, extra: list[str], cwd: Path) -> None:
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", str(workers),
           str(test_file), f"--junitxml={xml}", *extra]
    print("running:", " ".join(cmd), flush=True)
    subprocess.run(cmd, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    if not xml.is_file():
        sys.exit(f"{test_file}: pytest wrote no report")


def outcomes(xml: Path) -> dict[str, tuple[str, str, str]]:
    """test name -> (category, outcome, message); outcome passed | failed | skipped."""
    result = {}
    for tc in ET.parse(xml).getroot().iter("testcase"):
        category = tc.get("classname", "").rsplit(".", 1)[-1]
        outcome, message = "passed", ""
        for child in tc:
            if child.tag in ("failure", "error"):
                outcome, message = "failed", child.get("message") or (child.text or "")
            elif child.tag == "skipped":
                outcome, message = "skipped", child.get("message") or ""
        result[tc.get("name")] = (category, outcome, message)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-n", type=int, default=2, help="pytest-xdist workers")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        (tmp / "test_ort_backend.py").write_text(ORT_SUITE)
        run_junit(tmp / "test_ort_backend.py", tmp / "ort.xml", args.n, [], tmp)
        ort_failed = {n for n, (_, o, _) in outcomes(tmp / "ort.xml").items() if o == "failed"}
        run_junit(SUITE, tmp / "edgec.xml", args.n, ["--runxfail"], ROOT)
        results = outcomes(tmp / "edgec.xml")

    old = read_file()
    lines, counts, unclassified = [], Counter(), 0
    for name, (category, outcome, message) in sorted(results.items()):
        if not name.startswith("test_") or not category.startswith("OnnxBackend"):
            continue
        counts[category, outcome] += 1
        if outcome != "failed":
            continue
        if name in ort_failed:
            counts[category, "failed by ORT too"] += 1
        reason = old.get(name)
        if reason is None or reason.startswith("unclassified:"):
            reason = classify(message)
            if name in ort_failed:
                reason = f"{reason}; ORT also fails" if reason else "ORT also fails"
            if reason is None:
                reason = f"unclassified: {first_line(message)}"
        if reason.startswith("unclassified:"):
            unclassified += 1
        lines.append(f"{name} # {reason}")

    categories = sorted({c for c, _ in counts})
    header = ["# ONNX backend test cases edgec is expected to fail: 'TEST_NAME_REGEX # reason'.",
              "# Regenerate with tools/update_expected_failures.py (it keeps hand-written reasons).",
              "# Counts at the last update (CPU cases; CUDA cases are skipped):"]
    for c in categories:
        header.append(f"#   {c}: {counts[c, 'passed']} passed, {counts[c, 'failed']} expected failures "
                      f"({counts[c, 'failed by ORT too']} of them fail in ONNX Runtime too), "
                      f"{counts[c, 'skipped']} skipped")
    FILE.write_text("\n".join(header + lines) + "\n")
    print("\n".join(header[2:]))
    print(f"{len(lines)} expected failures written to {FILE} ({unclassified} unclassified)")


if __name__ == "__main__":
    main()
