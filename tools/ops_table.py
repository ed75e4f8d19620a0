"""Write the README's table of supported ONNX ops (between the ops-table markers).

    python tools/ops_table.py            # rewrite README.md in place
    python tools/ops_table.py --check    # exit 1 if README.md is out of date

For each ONNX op type with an importer: the opset range edgec accepts and the versions of the
op's ONNX schema inside that range (each version is a semantic change that the importer handles).
An op of another domain (ONNX Runtime's com.microsoft ops, which ONNX has no schemas for) is
listed as `domain.OpType` with that domain's version 1; an op of the ONNX domain that ONNX Runtime
defines where ONNX does not (`ORT_ONNX_DOMAIN`) with "ONNX Runtime's 1" before ONNX's versions.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import onnx.defs

from edgec.onnx_import import MAX_OPSET, MIN_OPSET, ORT_ONNX_DOMAIN
from edgec.ops import ONNX_CONVERTERS, OPS

README = Path(__file__).resolve().parents[1] / "README.md"
BEGIN, END = "<!-- ops-table:begin -->", "<!-- ops-table:end -->"


def schema_versions(op_type: str) -> list[int]:
    versions = sorted({s.since_version for s in onnx.defs.get_all_schemas_with_history()
                       if s.name == op_type and s.domain == ""})
    in_range = [v for v in versions if MIN_OPSET <= v <= MAX_OPSET]
    older = [v for v in versions if v < MIN_OPSET]
    return ([older[-1]] if older else []) + in_range


def table() -> str:
    rows = [f"{len(ONNX_CONVERTERS)} ONNX op types import into {len(OPS)} edgec ops; every model must "
            f"declare an opset from {MIN_OPSET} to {MAX_OPSET}.", "",
            "| ONNX op | opsets | schema versions handled |", "|---|---|---|"]
    for op in sorted(ONNX_CONVERTERS):
        domain = op.rpartition(".")[0]
        if domain:
            rows.append(f"| {op} | {domain} 1 | 1 |")
            continue
        versions = [str(v) for v in schema_versions(op)]
        first = max(MIN_OPSET, int(versions[0])) if versions else MIN_OPSET
        if op in ORT_ONNX_DOMAIN:
            first, versions = MIN_OPSET, ["ONNX Runtime's 1", *versions]
        rows.append(f"| {op} | {first}-{MAX_OPSET} | {', '.join(versions) or '-'} |")
    return "\n".join(rows)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    text = README.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    new = text[:start] + "\n" + table() + "\n" + text[end:]
    if args.check:
        if new != text:
            print("README.md's ops table is out of date: run python tools/ops_table.py", file=sys.stderr)
            return 1
        return 0
    README.write_text(new)
    return 0


if __name__ == "__main__":
    sys.exit(main())
