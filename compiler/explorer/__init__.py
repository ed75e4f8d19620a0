"""edgec IR in Google's Model Explorer (`pip install 'edgec[explorer]'`).

    model-explorer model.eir --extensions=edgec.explorer
    model-explorer passes.dump --extensions=edgec.explorer   # an `--dump-ir passes.dump` directory

Model Explorer loads the extension `X` by importing `X.main`: `edgec.explorer.main` holds the
adapter, `EdgecAdapter`, so this module imports nothing of Model Explorer and `node_data` works
without it. The adapter reads (cases handled):

- an `.eir` file: one graph;
- an ONNX file: one graph, the IR edgec imports it as (static shapes only);
- a directory that `--dump-ir` wrote: one graph per `NN-pass.eir` file, in step order. Model
  Explorer chooses the adapter by the extension of the path's last name, so the directory's name
  must end in `.dump` (`edgec opt m.onnx --dump-ir m.dump`).

Every IR node is one graph node whose id is its `%N` (`edgec.text.node_names`), labelled with its
op, with its attributes and ONNX origins, the shape and dtype of each result, and an incoming
edge per input (from the producing node's result, a graph input `%x` or a constant `%cK`); the
graph's results go into a `return` node. A `fused` or `fused_elementwise` node is a layer named
`<op> %N` holding its body's steps (`%N.0`, `%N.1`, ...; the last step is `%N` itself), so it
expands in the viewer and shows as one box when collapsed.

`node_data(report)` turns an `edgec profile --json` report (value: each node's share of the
kernels' cost, summed over its kernels) or an `edgec compare --json` report (value: `max_abs`)
into Model Explorer's node-data JSON, keyed by `%N`, for the viewer's "Add per-node data":

    json.dump(edgec.explorer.node_data(json.load(open("profile.json"))), open("share.json", "w"))
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from ..errors import EdgecError

# White for the lowest value, red for the highest: hot nodes and the worst errors stand out.
GRADIENT = [{"stop": 0, "bgColor": "#ffffff"}, {"stop": 0.5, "bgColor": "#ffd166"},
            {"stop": 1, "bgColor": "#ef476f"}]


def node_data(report: dict | str | Path) -> dict:
    """Model Explorer's node data (its `GraphNodeData` as JSON: {"name", "results": {"%N":
    {"value"}}, "gradient"}) for a report, or the path of its JSON file. Cases handled:

    - `edgec profile --json` (has "kernels"): the value is the node's share of the kernels'
      total (0 to 1); a node split into several kernels (`<name>__0`, ...) sums their shares.
    - `edgec compare --json` (has "nodes"): the value is the node's `max_abs` error against the
      reference; nodes with no reference (`max_abs` null) or a non-finite error are left out.
    - anything else, or rows without "node": EdgecError naming what was expected."""
    source = "the report"
    if not isinstance(report, dict):
        source = str(report)
        try:
            report = json.loads(Path(report).read_text())
        except OSError as e:
            raise EdgecError(f"{source}: cannot read the report ({e.strerror})") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise EdgecError(f"{source}: not a JSON report ({e}); give the output of "
                             "`edgec profile DIR --json` or `edgec compare MODEL --json`") from None
    if isinstance(report, dict) and isinstance(report.get("kernels"), list):
        name, key, rows = "share of the kernels' cost", "share", report["kernels"]
    elif isinstance(report, dict) and isinstance(report.get("nodes"), list):
        name, key, rows = "max abs error", "max_abs", report["nodes"]
    else:
        raise EdgecError(f"{source}: neither an `edgec profile --json` report (a \"kernels\" list) "
                         "nor an `edgec compare --json` report (a \"nodes\" list)")
    results: dict[str, dict] = {}
    for row in rows:
        if not isinstance(row, dict) or not isinstance(row.get("node"), str):
            raise EdgecError(f"{source}: a row without a \"node\" (%N): {json.dumps(row)[:80]}")
        value = row.get(key)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            continue
        if row["node"] in results and key == "share":
            results[row["node"]]["value"] += value
        else:
            results[row["node"]] = {"value": value}
    return {"name": name, "results": results, "gradient": GRADIENT}
