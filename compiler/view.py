"""`edgec view`: one self-contained HTML page that draws IR graphs (no network: the layout library,
dagre, is inlined from `assets/dagre.min.js`).

The page holds, as JSON, one entry per graph (`graph_json`): its inputs, constants, nodes (`%N`,
op, kind, origins, attributes, operands, result types, and a fused node's body steps) and outputs.
It draws one box per node (class `node`, `data-node="%N"`), edges labelled with the value's type,
ops coloured by `OpDef.kind`; a click shows origins and attributes in the side panel; a search box
highlights the nodes whose ONNX origins contain the text; a click on a fused node (`fused`,
`fused_elementwise`) expands it into its body steps (class `step`) and lays the graph out again.

Sources (`load_graphs`): an ONNX model (run through the pipeline, as `edgec opt`), an `.eir` file
(drawn as it is unless a pipeline is given) or a `--dump-ir` directory (every `.eir` in name
order, a select chooses one). Overlays, matched to the last graph by `"node"`: `edgec profile
--json` (each node's share of the kernels' total; kernels `<name>__i` of one node add up) and
`edgec compare --json` (nodes not within tolerance red, with their max_abs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from .errors import EdgecError
from .ir import Graph
from .ops import get_op
from .text import _attr, _input_name, node_names

ASSETS = Path(__file__).parent / "assets"
FUSED = ("fused", "fused_elementwise")


def graph_json(graph: Graph, title: str) -> dict[str, Any]:
    """The page's description of `graph`: sources are named as `print_ir` names values."""
    from .ops.fused import parse_body
    names = node_names(graph)
    source: dict[int, list] = {}  # id(value) -> [box, value name, type]
    inputs = []
    for v in graph.inputs:
        name = _input_name(v.name)
        source[id(v)] = [name, name, str(v.type)]
        inputs.append({"id": name, "type": str(v.type)})
    constants = []
    for i, v in enumerate(graph.constants()):
        source[id(v)] = [None, f"%c{i}", str(v.type)]
        constants.append({"id": f"%c{i}", "type": str(v.type)})
    nodes = []
    for node in graph.nodes:
        first = int(names[id(node)][1:])
        for k, o in enumerate(node.outputs):
            source[id(o)] = [names[id(node)], f"%{first + k}", str(o.type)]
        steps = None
        if node.op in FUSED:
            steps = [{"op": op, "kind": get_op(op).kind, "args": args, "attrs": {k: _attr(a[k]) for k in sorted(a)}}
                     for op, args, a in parse_body(node.attrs["body"], len(node.inputs), node.op == "fused")]
        nodes.append({"id": names[id(node)], "op": node.op, "kind": get_op(node.op).kind,
                      "origins": list(node.origin),
                      "attrs": {k: _attr(node.attrs[k]) for k in sorted(node.attrs) if k != "body" or steps is None},
                      "inputs": [source[id(v)] for v in node.inputs],
                      "types": [str(o.type) for o in node.outputs], "steps": steps})
    outputs = [{"id": "out:" + _input_name(n)[1:], "name": _input_name(n), "from": source[id(v)]}
               for n, v in zip(graph.output_names, graph.outputs)]
    return {"title": title, "inputs": inputs, "constants": constants, "nodes": nodes, "outputs": outputs}


def load_graphs(path: Path, input_shapes: dict, pipeline: str | None) -> list[tuple[str, Graph]]:
    """[(title, graph)] of a model, an `.eir` file or a directory (a dump's files in step order,
    else its `.eir` files in name order: an artifact's model.eir); `pipeline` (resolved by the caller, None for none) runs on a model or an `.eir` file."""
    from .driver import load_model
    from .passmanager import PassManager, dump_files
    if path.is_dir():
        files = dump_files(path) or sorted(path.glob("*.eir"))  # a dump in step order, else any IR files
        if not files:
            raise EdgecError(f"{path}: no .eir files in this directory; `edgec opt MODEL --dump-ir DIR` writes them")
        return [(f.name, load_model(f)[0]) for f in files]
    graph = load_model(path, input_shapes)[0]
    if pipeline is not None:
        graph = PassManager(pipeline).run(graph)
    return [(path.name, graph)]


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except OSError as e:
        raise EdgecError(f"{what} {path}: cannot read it ({e.strerror})") from None
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise EdgecError(f"{what} {path}: not JSON ({e}); give the file that `edgec "
                         f"{what[2:]} --json` prints") from None


def profile_overlay(path: Path) -> dict[str, dict]:
    """{"%N": {"share", "label"}} from `edgec profile --json`: a node's kernels' shares added up."""
    data = _read_json(path, "--profile")
    rows = data.get("kernels") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("node"), str)
                                             and isinstance(r.get("share"), (int, float)) for r in rows):
        raise EdgecError(f"--profile {path}: no \"kernels\" rows with \"node\" and \"share\"; "
                         "give the file that `edgec profile DIR --json` prints")
    shares: dict[str, float] = {}
    for r in rows:
        shares[r["node"]] = shares.get(r["node"], 0.0) + r["share"]
    return {n: {"share": s, "label": f"{100 * s:.1f}%"} for n, s in shares.items()}


def compare_overlay(path: Path) -> dict[str, dict]:
    """{"%N": {"within", "label"}} from `edgec compare --json`."""
    data = _read_json(path, "--compare")
    rows = data.get("nodes") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("node"), str)
                                             and isinstance(r.get("within"), bool) for r in rows):
        raise EdgecError(f"--compare {path}: no \"nodes\" rows with \"node\" and \"within\"; "
                         "give the file that `edgec compare MODEL --json` prints")
    out = {}
    for r in rows:
        m = r.get("max_abs")
        out[r["node"]] = {"within": r["within"], "label": "max_abs " + (f"{m:.3g}" if isinstance(m, (int, float)) else "-")}
    return out


def check_overlay(overlay: dict[str, dict], graph: Graph, what: str) -> None:
    """Refuse an overlay that names a node `graph` does not have (made for another graph)."""
    known = set(node_names(graph).values())
    missing = sorted((n for n in overlay if n not in known), key=lambda n: (len(n), n))
    if missing:
        raise EdgecError(f"{what} names node {missing[0]}, which the graph ({len(known)} nodes) does not have"
                         f"{f' (and {len(missing) - 1} more)' if len(missing) > 1 else ''}; give the report of "
                         "this graph (for an artifact: view its model.eir)")


def _script_json(value: Any) -> str:
    """JSON that cannot end the <script> element it sits in."""
    return json.dumps(value, sort_keys=True, separators=(",", ":")).replace("</", "<\\/")


def render_html(graphs: list[tuple[str, Graph]], profile: dict | None = None, compare: dict | None = None) -> str:
    """The page: `graphs` embedded as JSON, the overlays on the last graph. Same input, same text."""
    dagre = (ASSETS / "dagre.min.js").read_text()
    dagre = "\n".join(line for line in dagre.splitlines() if not line.startswith("//# sourceMappingURL"))
    data = {"graphs": [graph_json(g, title) for title, g in graphs],
            "profile": profile or {}, "compare": compare or {}}
    title = graphs[-1][0]
    return (_PAGE.replace("{{TITLE}}", title.replace("&", "&amp;").replace("<", "&lt;"))
            .replace("{{DAGRE}}", dagre).replace("{{DATA}}", _script_json(data)))


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>edgec view: {{TITLE}}</title>
<style>
body{margin:0;font:12px system-ui,sans-serif;display:flex;height:100vh}
#main{flex:1;overflow:auto;position:relative}
#side{width:330px;border-left:1px solid #ccc;padding:8px;overflow:auto;background:#fafafa}
#bar{position:sticky;top:0;left:0;background:#fff;padding:6px;border-bottom:1px solid #ddd;z-index:2}
#side pre{white-space:pre-wrap;word-break:break-all;font-size:11px}
svg text{font-size:11px;pointer-events:none}
.node rect,.step rect{stroke:#444;stroke-width:1}
.node,.step{cursor:pointer}
.io rect{fill:#eee;stroke:#888;stroke-dasharray:3 2}
.cluster{fill:#f6f6ff;stroke:#88a;stroke-dasharray:4 2}
.edge path{fill:none;stroke:#888;stroke-width:1.2}
.edge text{fill:#555;font-size:9px}
.hit rect{stroke:#e0a000;stroke-width:4}
.dim{opacity:.25}
.bad rect{stroke:#d00;stroke-width:3}
.sel rect{stroke:#06c;stroke-width:3}
</style></head><body>
<div id="main"><div id="bar">
<select id="pass"></select>
<input id="search" placeholder="search ONNX node name" size="28">
<span id="count"></span> <span id="legend"></span></div>
<svg id="svg" xmlns="http://www.w3.org/2000/svg"></svg></div>
<div id="side"><b>edgec view</b><p>Click a node for its origins and attributes; click a fused node to show its body.</p><div id="info"></div></div>
<script>{{DAGRE}}</script>
<script id="data" type="application/json">{{DATA}}</script>
<script>
"use strict";
const DATA = JSON.parse(document.getElementById("data").textContent);
const COLORS = {complex: "#9ecae1", elementwise: "#c7e9c0", injective: "#fdd0a2", reduction: "#dadaeb",
                opaque: "#e0e0e0", stable: "#fcbba1"};
const NS = "http://www.w3.org/2000/svg";
const svg = document.getElementById("svg");
const expanded = new Set();
let current = DATA.graphs.length - 1;

function el(tag, attrs, parent) {
  const e = document.createElementNS(NS, tag);
  for (const k in attrs) e.setAttribute(k, attrs[k]);
  if (parent) parent.appendChild(e);
  return e;
}
function textWidth(s) { return 7 * s.length + 16; }
function last() { return current === DATA.graphs.length - 1; }
function overlay(id) {
  if (!last()) return null;
  return {profile: DATA.profile[id], compare: DATA.compare[id]};
}
function boxLabel(n) {
  const lines = [n.id + " " + n.op + (n.steps ? " [" + n.steps.length + " steps]" : "")];
  const o = overlay(n.id);
  if (o && o.profile) lines.push(o.profile.label);
  if (o && o.compare) lines.push(o.compare.label);
  return lines;
}
function esc(s) { return String(s).replace(/&/g, "&amp;").replace(/</g, "&lt;"); }

function show(n, step) {
  const o = overlay(n.id);
  let h = "<h3>" + esc(n.id + " = " + n.op) + " <small>(" + esc(n.kind) + ")</small></h3>";
  if (step) h += "<p><b>step</b> %" + step.num + " = " + esc(step.op) + "(" + step.args.map(a => "%" + a).join(", ") + ")</p><pre>" +
    esc(Object.entries(step.attrs).map(([k, v]) => k + "=" + v).join("\\n")) + "</pre>";
  h += "<p><b>origins</b></p><pre>" + esc(n.origins.join("\\n") || "-") + "</pre>";
  h += "<p><b>operands</b></p><pre>" + esc(n.inputs.map((s, i) => (n.steps ? "%" + i + ": " : "") + s[1] + " " + s[2]).join("\\n")) + "</pre>";
  h += "<p><b>results</b></p><pre>" + esc(n.types.join("\\n")) + "</pre>";
  h += "<p><b>attributes</b></p><pre>" + esc(Object.entries(n.attrs).map(([k, v]) => k + "=" + v).join("\\n") || "-") + "</pre>";
  if (n.steps) h += "<p><b>body</b></p><pre>" + esc(n.steps.map((s, k) => "%" + (n.inputs.length + k) + " = " + s.op + "(" +
    s.args.map(a => "%" + a).join(", ") + ")").join("\\n")) + "</pre>";
  if (o && o.profile) h += "<p><b>profile</b> " + esc(o.profile.label) + " of the kernels</p>";
  if (o && o.compare) h += "<p><b>compare</b> " + (o.compare.within ? "within tolerance" : "NOT within tolerance") + ", " + esc(o.compare.label) + "</p>";
  document.getElementById("info").innerHTML = h;
}

function draw() {
  const G = DATA.graphs[current];
  const g = new dagre.graphlib.Graph({compound: true, multigraph: true});
  g.setGraph({rankdir: "TB", nodesep: 20, ranksep: 30, edgesep: 10, marginx: 10, marginy: 10});
  g.setDefaultEdgeLabel(() => ({}));
  const boxes = {};
  function box(id, lines, info) {
    const w = Math.max(...lines.map(textWidth));
    g.setNode(id, {width: w, height: 16 * lines.length + 8, lines: lines, info: info});
    boxes[id] = info;
  }
  G.inputs.forEach(v => box(v.id, [v.id + ": " + v.type], {io: true}));
  const exits = {};  // node id -> box its results leave from
  G.nodes.forEach(n => {
    if (n.steps && expanded.has(n.id)) {
      g.setNode("g:" + n.id, {cluster: true, info: {node: n}, paddingTop: 24});
      n.steps.forEach((s, k) => {
        const sid = "s:" + n.id + ":" + k;
        box(sid, [n.id + "[" + k + "] %" + (n.inputs.length + k) + " = " + s.op], {node: n, step: Object.assign({num: n.inputs.length + k}, s)});
        g.setParent(sid, "g:" + n.id);
      });
      exits[n.id] = "s:" + n.id + ":" + (n.steps.length - 1);
    } else {
      box(n.id, boxLabel(n), {node: n});
      exits[n.id] = n.id;
    }
  });
  G.outputs.forEach(o => box(o.id, [o.name], {io: true}));
  let e = 0;
  function edge(src, dst, label) {
    if (src[0] === null) return;  // constants are listed in the panel, not drawn
    g.setEdge(src[0] in exits ? exits[src[0]] : src[0], dst, {label: label, width: textWidth(label) * 0.8, height: 12, labelpos: "c"}, "e" + (e++));
  }
  G.nodes.forEach(n => {
    if (n.steps && expanded.has(n.id)) {
      const base = n.inputs.length;
      n.steps.forEach((s, k) => s.args.forEach(a => {
        const sid = "s:" + n.id + ":" + k;
        if (a < base) edge(n.inputs[a], sid, n.inputs[a][2]);
        else g.setEdge("s:" + n.id + ":" + (a - base), sid, {label: "", width: 0, height: 0}, "e" + (e++));
      }));
    } else n.inputs.forEach(s => edge(s, n.id, s[2]));
  });
  G.outputs.forEach(o => edge(o.from, o.id, o.from[2]));
  dagre.layout(g);
  svg.textContent = "";
  const gi = g.graph();
  svg.setAttribute("width", gi.width + 20);
  svg.setAttribute("height", gi.height + 20);
  g.nodes().forEach(id => {
    const d = g.node(id);
    if (!d.cluster) return;
    const r = el("rect", {x: d.x - d.width / 2, y: d.y - d.height / 2, width: d.width, height: d.height, rx: 6, "class": "cluster"}, svg);
    r.addEventListener("click", () => { expanded.delete(d.info.node.id); draw(); });
    const t = el("text", {x: d.x - d.width / 2 + 6, y: d.y - d.height / 2 + 13}, svg);
    t.textContent = d.info.node.id + " " + d.info.node.op + " (click the frame to fold)";
  });
  g.edges().forEach(ed => {
    const d = g.edge(ed);
    const grp = el("g", {"class": "edge"}, svg);
    el("path", {d: "M" + d.points.map(p => p.x + "," + p.y).join("L"), "marker-end": "url(#arrow)"}, grp);
    if (d.label) { const t = el("text", {x: d.x, y: d.y + 3, "text-anchor": "middle"}, grp); t.textContent = d.label; }
  });
  const defs = el("defs", {}, svg);
  const m = el("marker", {id: "arrow", viewBox: "0 0 10 10", refX: 10, refY: 5, markerWidth: 6, markerHeight: 6, orient: "auto"}, defs);
  el("path", {d: "M0,0L10,5L0,10z", fill: "#888"}, m);
  g.nodes().forEach(id => {
    const d = g.node(id);
    if (d.cluster) return;
    const info = d.info, n = info.node;
    const cls = info.io ? "io" : (info.step ? "step" : "node");
    const grp = el("g", {"class": cls, transform: "translate(" + (d.x - d.width / 2) + "," + (d.y - d.height / 2) + ")"}, svg);
    let fill = "#eee";
    if (n) {
      fill = COLORS[info.step ? info.step.kind : n.kind] || "#e0e0e0";
      grp.setAttribute("data-node", n.id);
      grp.dataset.origins = n.origins.join("\\n").toLowerCase();
      const o = overlay(n.id);
      if (o && o.profile) fill = "hsl(0,90%," + (95 - 50 * Math.min(1, o.profile.share * 5)) + "%)";
      if (o && o.compare && !o.compare.within) grp.classList.add("bad");
    }
    el("rect", {width: d.width, height: d.height, rx: 4, fill: fill}, grp);
    d.lines.forEach((l, i) => { const t = el("text", {x: 8, y: 16 * i + 16}, grp); t.textContent = l; });
    if (n) grp.addEventListener("click", () => {
      document.querySelectorAll(".sel").forEach(x => x.classList.remove("sel"));
      grp.classList.add("sel");
      show(n, info.step);
      if (n.steps && !info.step) { expanded.add(n.id); draw(); }
    });
  });
  search();
}

function search() {
  const q = document.getElementById("search").value.trim().toLowerCase();
  let hits = 0;
  document.querySelectorAll(".node,.step").forEach(x => {
    const hit = q !== "" && x.dataset.origins.includes(q);
    x.classList.toggle("hit", hit);
    x.classList.toggle("dim", q !== "" && !hit);
    if (hit) hits++;
  });
  document.getElementById("count").textContent = q ? hits + " match" + (hits === 1 ? "" : "es") : "";
  const first = document.querySelector(".hit");
  if (first && first.scrollIntoView) first.scrollIntoView({block: "center", inline: "center"});
}

const sel = document.getElementById("pass");
DATA.graphs.forEach((G, i) => { const o = document.createElement("option"); o.value = i; o.textContent = G.title; sel.appendChild(o); });
sel.value = current;
if (DATA.graphs.length < 2) sel.style.display = "none";
sel.addEventListener("change", () => { current = +sel.value; expanded.clear(); draw(); });
document.getElementById("search").addEventListener("input", search);
document.getElementById("legend").innerHTML = Object.entries(COLORS).map(([k, c]) =>
  '<span style="background:' + c + ';padding:1px 5px;margin-left:3px">' + k + "</span>").join("");
draw();
</script></body></html>
"""
