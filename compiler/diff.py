"""`edgec diff A B`: what changed between two IRs, node by node, matched by ONNX origin.

A and B are each an `.eir` file or an ONNX model (`edgec.driver.load_model`); `edgec diff DIR`
diffs each consecutive pair of the files `edgec opt --dump-ir DIR` writes (`00-input.eir`,
`01-<pass>.eir`, ...), one section per pass.

Matching (`diff_graphs`): a bipartite graph (networkx) joins an A-node and a B-node when their
origin sets intersect; each connected component is one correspondence:
- 1 A : 1 B: `same`, or `changed` (op, attributes, output types: shape and dtype; the layout is
  an attribute);
- n A : 1 B: `fused`; 1 A : n B: `split`; n A : m B: `rewritten`;
- 0 : 1 `added`, 1 : 0 `removed`.
Within a component, nodes of the same op and origins pair off 1:1 first, and transposes left over
are added or removed (convert-layout gives those it inserts the origin of the node they wrap).
A node with no origin (an inserted transpose) is matched by structure instead: an
unmatched A-node of the same op whose inputs are the same (graph inputs by name, constants by
content, node results by the correspondence of their producers), else it is added or removed.
Transposes added and removed are counted (layout changes), and a summary compares op counts,
nodes, MACs (`edgec.inspect.node_macs`) and parameters (constant elements).

Nodes are named `%N op (origins)`, `%N` as `edgec.text.node_names` numbers them; entries are in
B's node order, removed ones after, in A's order. The text, the JSON (`Diff.as_json`) and the
HTML page (`html_page`, self-contained) hold the same content.
"""

from __future__ import annotations

import html
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import networkx as nx

from .errors import EdgecError
from .inspect import node_macs
from .ir import Graph, Node, Value
from .text import _attr, const_hash, node_names, print_ir


@dataclass
class Entry:
    kind: str  # same, changed, fused, split, rewritten, added or removed
    a: list[dict]  # {"node", "op", "origins"} of the A-nodes, in A's order
    b: list[dict]
    changes: list[str] = field(default_factory=list)  # for "changed": what differs


@dataclass
class Diff:
    a_name: str
    b_name: str
    entries: list[Entry]
    transposes: dict[str, int]  # {"added": n, "removed": n}
    summary: dict  # {"nodes": [a, b], "macs": [a, b], "parameters": [a, b], "ops": {op: [a, b]}}
    a_ir: str = ""
    b_ir: str = ""
    a_kinds: list[str] = field(default_factory=list)  # the entry kind of each A-node, in order (HTML)
    b_kinds: list[str] = field(default_factory=list)
    a_constants: int = 0  # constant lines before the node lines in a_ir (HTML)
    b_constants: int = 0

    @property
    def equal(self) -> bool:
        return all(e.kind == "same" for e in self.entries)

    def as_json(self) -> dict:
        return {"a": self.a_name, "b": self.b_name, "equal": self.equal,
                "entries": [{"kind": e.kind, "a": e.a, "b": e.b, "changes": e.changes}
                            for e in self.entries if e.kind != "same"],
                "unchanged": sum(e.kind == "same" for e in self.entries),
                "transposes": self.transposes, "summary": self.summary}

    def format(self) -> str:
        if self.equal:
            return f"{self.a_name} and {self.b_name} are equal ({self.summary['nodes'][1]} nodes)"
        lines = [f"--- {self.a_name}", f"+++ {self.b_name}"]
        for e in self.entries:
            if e.kind == "same":
                continue
            a, b = ", ".join(map(_name, e.a)), ", ".join(map(_name, e.b))
            if e.kind == "added":
                lines.append(f"added:     {b}")
            elif e.kind == "removed":
                lines.append(f"removed:   {a}")
            else:
                text = f"{e.kind + ':':<10} {a} -> {b}"
                lines.append(text + (": " + "; ".join(e.changes) if e.changes else ""))
        unchanged = sum(e.kind == "same" for e in self.entries)
        lines.append(f"unchanged: {unchanged} node{'s' * (unchanged != 1)}")
        lines.append(f"transposes: {self.transposes['added']} added, {self.transposes['removed']} removed")
        rows = [("nodes", *self.summary["nodes"]), ("MACs", *self.summary["macs"]),
                ("parameters", *self.summary["parameters"])]
        rows += [(f"  {op}", a, b) for op, (a, b) in self.summary["ops"].items()]
        width = max(len(r[0]) for r in rows)
        cols = [max(len("before"), *(len(f"{r[1]:,}") for r in rows)),
                max(len("after"), *(len(f"{r[2]:,}") for r in rows))]
        lines.append(f"{'':<{width}}  {'before':>{cols[0]}}  {'after':>{cols[1]}}")
        for k, (label, a, b) in enumerate(rows):
            if k == 3:
                lines.append("ops:")
            lines.append(f"{label:<{width}}  {a:>{cols[0]},}  {b:>{cols[1]},}")
        return "\n".join(lines)


def _name(ref: dict) -> str:
    return f"{ref['node']} {ref['op']} ({', '.join(ref['origins'])})"


def _refs(nodes: list[Node], names: dict[int, str]) -> list[dict]:
    return [{"node": names[id(n)], "op": n.op, "origins": list(n.origin)} for n in nodes]


def _changes(a: Node, b: Node) -> list[str]:
    """What differs between two corresponding nodes: op, attributes, output types."""
    out = []
    if a.op != b.op:
        out.append(f"op {a.op} -> {b.op}")
    for k in sorted(set(a.attrs) | set(b.attrs)):
        va = _attr(a.attrs[k]) if k in a.attrs else None
        vb = _attr(b.attrs[k]) if k in b.attrs else None
        if va != vb:
            out.append(f"{k} {va if va is not None else '(none)'} -> {vb if vb is not None else '(none)'}")
    ta, tb = [str(o.type) for o in a.outputs], [str(o.type) for o in b.outputs]
    if ta != tb:
        out.append(f"type {', '.join(ta)} -> {', '.join(tb)}")
    return out


def _pieces(ai: list[int], bj: list[int], a_nodes: list[Node], b_nodes: list[Node]) -> list[tuple[list, list]]:
    """A component split into its correspondences: first the pairs of nodes with the same op and
    origins (in order), then the transposes left over (added or removed, as convert-layout
    inserts them with the origin of the node they wrap), then the rest as one correspondence."""
    left_a, pieces, rest_b = list(ai), [], []
    for j in bj:
        same = [i for i in left_a if (a_nodes[i].op, a_nodes[i].origin) == (b_nodes[j].op, b_nodes[j].origin)]
        if same:
            left_a.remove(same[0])
            pieces.append(([same[0]], [j]))
        else:
            rest_b.append(j)
    pieces += [([i], []) for i in left_a if a_nodes[i].op == "transpose"]
    pieces += [([], [j]) for j in rest_b if b_nodes[j].op == "transpose"]
    rest_a = [i for i in left_a if a_nodes[i].op != "transpose"]
    rest_b = [j for j in rest_b if b_nodes[j].op != "transpose"]
    if rest_a and rest_b:
        pieces.append((rest_a, rest_b))
    else:
        pieces += [([i], []) for i in rest_a] + [([], [j]) for j in rest_b]
    return pieces


def diff_graphs(a: Graph, b: Graph, a_name: str = "A", b_name: str = "B") -> Diff:
    """Match the nodes of `a` and `b` (see the module's docstring) and compare them."""
    a_nodes, b_nodes = list(a.nodes), list(b.nodes)
    bip = nx.Graph()
    by_origin: dict[str, list[int]] = {}
    for i, n in enumerate(a_nodes):
        bip.add_node(("a", i))
        for o in n.origin:
            by_origin.setdefault(o, []).append(i)
    for j, n in enumerate(b_nodes):
        bip.add_node(("b", j))
        for o in n.origin:
            for i in by_origin.get(o, ()):
                bip.add_edge(("a", i), ("b", j))
    # components with an origin on both sides; origin-less nodes are matched by structure below
    comp_of: dict[tuple[str, int], int] = {}
    comps: list[tuple[list[int], list[int]]] = []
    for nodes in nx.connected_components(bip):
        ai = sorted(i for s, i in nodes if s == "a")
        bj = sorted(j for s, j in nodes if s == "b")
        if ai and bj:
            for piece in _pieces(ai, bj, a_nodes, b_nodes):
                for i in piece[0]:
                    comp_of[("a", i)] = len(comps)
                for j in piece[1]:
                    comp_of[("b", j)] = len(comps)
                comps.append(piece)
    a_index = {id(n): i for i, n in enumerate(a_nodes)}
    b_index = {id(n): j for j, n in enumerate(b_nodes)}

    def key(v: Value, side: str, index: dict) -> tuple:
        if v.is_const:
            return ("const", const_hash(v))
        p = v.producer()
        if p is None:
            return ("input", v.name)
        c = comp_of.get((side, index[id(p)]))
        if c is None:
            return ("unmatched", side, id(v))
        ai, bj = comps[c]
        return ("node", c, v.index) if len(ai) == len(bj) == 1 else ("unmatched", side, id(v))

    free_a: dict[str, list[int]] = {}
    for i, n in enumerate(a_nodes):
        if ("a", i) not in comp_of and not n.origin:
            free_a.setdefault(n.op, []).append(i)
    for j, n in enumerate(b_nodes):
        if ("b", j) in comp_of or n.origin:
            continue
        want = [key(v, "b", b_index) for v in n.inputs]
        for i in free_a.get(n.op, []):
            if [key(v, "a", a_index) for v in a_nodes[i].inputs] == want:
                free_a[n.op].remove(i)
                comp_of[("a", i)] = comp_of[("b", j)] = len(comps)
                comps.append(([i], [j]))
                break
    for i in range(len(a_nodes)):
        if ("a", i) not in comp_of:
            comps.append(([i], []))
    for j in range(len(b_nodes)):
        if ("b", j) not in comp_of:
            comps.append(([], [j]))
    comps.sort(key=lambda c: (c[1][0], 0) if c[1] else (len(b_nodes), c[0][0]))

    a_names, b_names = node_names(a), node_names(b)
    entries = []
    a_kinds, b_kinds = [""] * len(a_nodes), [""] * len(b_nodes)
    for ai, bj in comps:
        an, bn = [a_nodes[i] for i in ai], [b_nodes[j] for j in bj]
        changes = []
        if not an:
            kind = "added"
        elif not bn:
            kind = "removed"
        elif len(an) == len(bn) == 1:
            changes = _changes(an[0], bn[0])
            kind = "changed" if changes else "same"
        else:
            kind = "fused" if len(bn) == 1 else "split" if len(an) == 1 else "rewritten"
        entries.append(Entry(kind, _refs(an, a_names), _refs(bn, b_names), changes))
        for i in ai:
            a_kinds[i] = kind
        for j in bj:
            b_kinds[j] = kind
    transposes = {"added": sum(e.kind == "added" and r["op"] == "transpose" for e in entries for r in e.b),
                  "removed": sum(e.kind == "removed" and r["op"] == "transpose" for e in entries for r in e.a)}
    ops_a, ops_b = Counter(n.op for n in a_nodes), Counter(n.op for n in b_nodes)
    summary = {"nodes": [len(a_nodes), len(b_nodes)],
               "macs": [sum(map(node_macs, a_nodes)), sum(map(node_macs, b_nodes))],
               "parameters": [sum(v.type.size for v in a.constants()), sum(v.type.size for v in b.constants())],
               "ops": {op: [ops_a[op], ops_b[op]] for op in sorted(set(ops_a) | set(ops_b))}}
    return Diff(a_name, b_name, entries, transposes, summary, print_ir(a), print_ir(b), a_kinds, b_kinds,
                len(a.constants()), len(b.constants()))


def load_graph(path: str | Path) -> Graph:
    """The graph of an `.eir` file or an ONNX model (EdgecError for a missing or bad file)."""
    from .driver import load_model
    return load_model(path)[0]


def dump_files(folder: Path) -> list[Path]:
    """The `NN-<pass>.eir` files of a `--dump-ir` directory, in order (at least `00-input.eir`)."""
    from .passmanager import dump_files as files_of
    files = files_of(folder)
    if not files or files[0].name != "00-input.eir":
        raise EdgecError(f"{folder}: not an `edgec opt --dump-ir` directory (no 00-input.eir); "
                         "write one with `edgec opt MODEL --dump-ir DIR`")
    return files


def diff_dump(folder: Path) -> list[tuple[str, Diff]]:
    """(pass, Diff) for each consecutive pair of files of a `--dump-ir` directory."""
    files = dump_files(folder)
    graphs = [load_graph(f) for f in files]
    return [(f.stem.split("-", 1)[1], diff_graphs(ga, gb, fa.name, f.name))
            for fa, f, ga, gb in zip(files, files[1:], graphs, graphs[1:])]


def format_dump(diffs: list[tuple[str, Diff]]) -> str:
    sections = []
    for name, d in diffs:
        sections.append(f"{d.b_name}: no change" if d.equal else f"== {name} ==\n{d.format()}")
    return "\n".join(sections)


_COLOURS = {"changed": "#fff3b0", "fused": "#cfe3ff", "split": "#cfe3ff", "rewritten": "#cfe3ff",
            "added": "#c8f7c5", "removed": "#ffd0d0"}


def _html_lines(ir: str, kinds: list[str], constants: int) -> str:
    lines = ir.rstrip("\n").split("\n")
    first = 1 + constants  # the header line, then one line per constant, then the nodes
    out = []
    for k, line in enumerate(lines):
        node = k - first
        kind = kinds[node] if 0 <= node < len(kinds) else ""
        style = f' style="background:{_COLOURS[kind]}" title="{kind}"' if kind in _COLOURS else ""
        out.append(f"<div{style}>{html.escape(line) or '&nbsp;'}</div>")
    return "\n".join(out)


def html_page(diffs: list[tuple[str, Diff]]) -> str:
    """A self-contained page: per diff, the two IR texts side by side, node lines coloured by kind."""
    legend = " ".join(f'<span style="background:{c}">{k}</span>' for k, c in _COLOURS.items()
                      if k in ("changed", "fused", "added", "removed"))
    parts = ["<!DOCTYPE html>", '<html><head><meta charset="utf-8"><title>edgec diff</title>',
             "<style>body{font-family:sans-serif} td{vertical-align:top;font-family:monospace;"
             "white-space:pre;font-size:12px;padding:4px} table{border-collapse:collapse}"
             " td,th{border:1px solid #ccc}</style></head><body>",
             f"<p>{legend} (fused, split and rewritten share a colour)</p>"]
    for name, d in diffs:
        parts.append(f"<h2>{html.escape(name)}</h2>")
        parts.append(f"<pre>{html.escape(d.format())}</pre>")
        parts.append(f"<table><tr><th>{html.escape(d.a_name)}</th><th>{html.escape(d.b_name)}</th></tr>"
                     f"<tr><td>{_html_lines(d.a_ir, d.a_kinds, d.a_constants)}</td>"
                     f"<td>{_html_lines(d.b_ir, d.b_kinds, d.b_constants)}</td></tr></table>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def run(paths: list[Path], as_json: bool = False, html_file: Path | None = None) -> tuple[str, bool]:
    """The report (text or JSON) of `edgec diff` and whether everything is equal; writes the
    HTML page to `html_file` when given."""
    from .files import write_text
    dirs = [p.is_dir() for p in paths]
    if len(paths) == 1:
        if not dirs[0]:
            raise EdgecError(f"{paths[0]}: not a directory; give two models or .eir files (edgec diff A B), "
                             "or one `--dump-ir` directory")
        diffs = diff_dump(paths[0])
        report = (json.dumps({"dir": str(paths[0]), "passes": [{"pass": n, **d.as_json()} for n, d in diffs]},
                             indent=2) if as_json else format_dump(diffs))
    elif len(paths) == 2:
        if any(dirs):
            raise EdgecError(f"{paths[dirs.index(True)]}: a directory; diff a --dump-ir directory alone "
                             "(edgec diff DIR)")
        d = diff_graphs(load_graph(paths[0]), load_graph(paths[1]), str(paths[0]), str(paths[1]))
        diffs = [(f"{paths[0]} -> {paths[1]}", d)]
        report = json.dumps(d.as_json(), indent=2) if as_json else d.format()
    else:
        raise EdgecError("edgec diff takes two models or .eir files (A B), or one --dump-ir directory")
    if html_file is not None:
        write_text(html_file, html_page(diffs), "diff --html")
    return report, all(d.equal for _, d in diffs)
