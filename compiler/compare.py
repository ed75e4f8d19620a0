"""Layer-by-layer comparison of the unoptimized graph with the optimized one (`edgec compare`).

`compare_model(model, target, level | passes)` imports the model, optimizes a copy, interprets
both on the same inputs keeping every intermediate value, and matches each optimized node's
result to the unoptimized value with the same ONNX origin (`verify.match_values`: the sink of
the origin group; a channels-last result is transposed to channels-first first). Per node:
max abs error, max error relative to the reference's scale, SQNR in dB, and whether it is within
tolerance (`verify.within` for the dtype and scale). Cases:
- float values: `verify.error_bound` (f32 1e-4 of the scale, at least 1e-4), or one quantization
  step for the result of a `dequantize_linear` (`verify.quantization_step`);
- integer values made by a per-tensor `quantize_linear` (directly, or through ops that keep the
  integers, such as max_pool or reshape): both sides dequantized with its scale and zero point,
  tolerance one step (an integer kernel may round a tie the other way);
- integer values against float ones (an op fuse-qdq moved onto the integers, e.g. max_pool): the
  integers dequantized with the dequantize the float was computed from, tolerance one step
  (with no such dequantize, compared as they are, with the float's tolerance);
- other integer and bool values: exact;
- nodes with no match: listed with reference None, never beyond tolerance.
The first node (in optimized node order) beyond tolerance is named with its ONNX origins. With
`bisect=True` each diverging node also names the first pass after which the unoptimized value it
is matched to diverged: the pipeline runs pass by pass (a `passmanager.Instrument`), each
intermediate graph matched and compared the same way (so a pass that breaks a value is named
even when a later pass fuses it into another node).
With `compiled=True` the optimized side's values come from the compiled module instead of the
interpreter (`compiled_values`): every node result becomes a graph output of a copy of the
optimized graph (each node is one kernel, so the kernels stay the same), which is built with no
further passes by `driver.compile` and run as `edgec verify` runs it (`Artifact.run`: an ARM
target under qemu).
"""

from __future__ import annotations

import math
import tempfile
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import InputError
from .ir import Graph, Value
from .passmanager import Instrument
from .quantization import sqnr
from .verify import (_model_label, compare, error_bound, matched_arrays, output_scale, quantization_step,
                     random_inputs, run_all_values)


@dataclass
class NodeReport:
    node: str  # "%N" in the optimized graph
    op: str
    origins: list[str]
    reference: str | None  # "%N" of the unoptimized value it was matched to
    max_abs: float | None = None
    max_rel: float | None = None
    sqnr_db: float | None = None
    within: bool = True
    passname: str | None = None

    def as_json(self) -> dict:
        def num(x):
            return None if x is None or not math.isfinite(x) else x
        return {"node": self.node, "op": self.op, "origins": self.origins, "reference": self.reference,
                "max_abs": num(self.max_abs), "max_rel": num(self.max_rel), "sqnr_db": num(self.sqnr_db),
                "within": self.within, "pass": self.passname}


@dataclass
class CompareReport:
    model: str
    target: str
    pipeline: str
    tolerance: str
    nodes: list[NodeReport] = field(default_factory=list)
    values: str = "interpreter"  # what computed the optimized side: "interpreter" or "compiled for T"

    @property
    def first(self) -> NodeReport | None:
        return next((n for n in self.nodes if not n.within), None)

    @property
    def ok(self) -> bool:
        return self.first is None

    def as_json(self) -> dict:
        first = self.first
        return {"model": self.model, "target": self.target, "pipeline": self.pipeline,
                "tolerance": self.tolerance, "first_divergence": first.node if first else None,
                "nodes": [n.as_json() for n in self.nodes]}

    def format(self) -> str:
        lines = [f"compare {self.model} --target {self.target}  pipeline: {self.pipeline or '(none)'}",
                 f"optimized values: {self.values}; tolerance: {self.tolerance}"]
        with_pass = any(n.passname for n in self.nodes)
        header = ["node", "op", "reference", "max abs", "max rel", "SQNR dB", "result"] + (["pass"] if with_pass else [])
        rows = [header]
        for n in self.nodes:
            if n.reference is None:
                row = [n.node, n.op, "-", "-", "-", "-", "no match"]
            else:
                sq = "inf" if n.sqnr_db == math.inf else f"{n.sqnr_db:.1f}"
                row = [n.node, n.op, n.reference, f"{n.max_abs:.2e}", f"{n.max_rel:.2e}", sq,
                       "ok" if n.within else "DIVERGES"]
            rows.append(row + ([n.passname or ""] if with_pass else []))
        widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
        for i, r in enumerate(rows):
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        matched = sum(n.reference is not None for n in self.nodes)
        first = self.first
        if first is None:
            lines.append(f"OK: all {matched} matched nodes (of {len(self.nodes)}) within tolerance")
        else:
            where = ", ".join(first.origins) or "(no ONNX origin)"
            lines.append(f"FAILED: first diverging node {first.node} '{first.op}' from ONNX node {where}"
                         + (f", diverges after pass {first.passname}" if first.passname else ""))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


_KEEPS_INTEGERS = {"max_pool", "reshape", "transpose", "flatten", "squeeze", "unsqueeze", "slice", "concat",
                   "identity", "relu", "clip", "pad", "split", "gather"}


def _quant_params(value: Value, op: str = "quantize_linear") -> tuple[float, int] | None:
    """(scale, zero point) of the per-tensor `op` that made the integers of `value` (a quantize),
    or that the float `value` was computed from (a dequantize), following ops that move integers
    without changing them; None if there is none."""
    while value is not None and value.producer() is not None:
        p = value.producer()
        if p.op == op:
            if len(p.attrs.get("scale", [])) != 1:
                return None
            zp = p.attrs.get("zero_point") or [0]
            return float(p.attrs["scale"][0]), int(zp[0])
        if p.op not in _KEEPS_INTEGERS or not p.inputs:
            return None
        value = p.inputs[0]
    return None


def _compare_node(got: np.ndarray, ref_value: Value, ref: np.ndarray, rtol, atol) -> tuple:
    """(max abs, max rel, SQNR dB, within) of one matched value."""
    dtype = ref_value.type.dtype
    bound_min = quantization_step(ref_value)
    params = None
    if ref_value.type.np_dtype.kind in "iu":
        params = _quant_params(ref_value)
        if params is not None:
            ref = (ref.astype(np.float64) - params[1]) * params[0]
    elif got.dtype.kind in "iu":  # integers against the floats they stand for
        params = _quant_params(ref_value, "dequantize_linear")
    if params is not None:
        got = (got.astype(np.float64) - params[1]) * params[0]
        dtype, bound_min = "f64", params[0] * (1 + 1e-6)
    err = compare(got, ref)
    scale = output_scale(ref)
    bound = max(error_bound(dtype, scale, rtol, atol) if params is None else 0.0, bound_min)
    sq = sqnr(ref, got) if got.shape == ref.shape else -math.inf
    return err.abs, err.rel, sq, err.abs <= bound


def _diverging(before: Graph, env_before: dict, after: Graph, env_after: dict, rtol, atol) -> dict[int, bool]:
    """id(unoptimized value) -> whether its match in `after` diverges, for each matched value."""
    return {id(ref): not _compare_node(got, ref, exp, rtol, atol)[3]
            for _, ref, got, exp in matched_arrays(before, env_before, after, env_after)}


class _Passes(Instrument):
    """After each pass: for each unoptimized value whose match in the graph diverges for the first
    time, the pass (kept in `first`: id(value) -> pass label)."""

    def __init__(self, reference: Graph, env: dict, feeds, rtol, atol):
        self.reference, self.env, self.feeds, self.rtol, self.atol = reference, env, feeds, rtol, atol
        self.first: dict[int, str] = {}

    def after_pass(self, step, label, graph, record):
        bad = _diverging(self.reference, self.env, graph, run_all_values(graph, self.feeds), self.rtol, self.atol)
        for ref, diverges in bad.items():
            if diverges and ref not in self.first:
                self.first[ref] = label


def compiled_values(graph: Graph, feeds: dict[str, np.ndarray], target: str) -> dict[int, np.ndarray]:
    """Build `graph` for `target` with every node result a graph output (no passes: it is already
    optimized) and run it on `feeds`: id(Value of `graph`) -> array, for each node result. Cases:
    a result that is already a graph output is read from that output (it is not added twice);
    graph inputs and constants are not node results, so they are never added."""
    from .driver import compile as edgec_compile
    from .text import node_names

    probe = graph.copy()  # same node order: node i of `probe` is node i of `graph`
    names = node_names(graph)
    outputs, output_names = list(probe.outputs), list(probe.output_names)
    taken = set(output_names)
    name_of: dict[int, str] = dict(zip(map(id, graph.outputs), graph.output_names))
    for node, copy in zip(graph.nodes, probe.nodes):
        for i, (o, co) in enumerate(zip(node.outputs, copy.outputs)):
            if id(o) in name_of:
                continue
            name = f"%{int(names[id(node)][1:]) + i}"
            while name in taken:
                name += "_"
            taken.add(name)
            outputs.append(co)
            output_names.append(name)
            name_of[id(o)] = name
    probe.set_outputs(outputs, output_names)
    with tempfile.TemporaryDirectory(prefix="edgec-compare-") as tmp:
        artifact = edgec_compile(probe, target=target, output=f"{tmp}/artifact", passes="").artifact
        got = artifact.run(feeds)
    return {key: got[name] for key, name in name_of.items()}


def compare_model(model: Any, target: str = "host", level: int | None = 2, passes: str | None = None,
                  inputs: dict[str, np.ndarray] | None = None, input_shapes: dict[str, tuple[int, ...]] | None = None,
                  seed: int = 0, rtol=None, atol=None, bisect: bool = False,
                  compiled: bool = False) -> CompareReport:
    """Compare each node of the optimized graph with the unoptimized value of the same origin.

    `model`: what `driver.load_model` reads; `inputs` (graph input name -> array) replaces the
    seeded random inputs; `bisect` names, for each diverging node, the first pass after which its
    value diverged; `compiled` takes the optimized graph's values from its compiled module for
    `target` (`compiled_values`) instead of the interpreter."""
    from .driver import load_model
    from .interpreter import check_inputs
    from .passmanager import PassManager, resolve_pipeline
    from .text import node_names

    pipeline = resolve_pipeline(target, level, passes)
    graph = load_model(model, input_shapes)[0]
    if inputs is not None:
        names = {v.name for v in graph.inputs}
        extra = sorted(set(inputs) - names)
        if extra:
            raise InputError(f"inputs: '{extra[0]}' is not an input of the model (its inputs: {', '.join(sorted(names))}); "
                             "name each array after a graph input")
        feeds = check_inputs(graph, inputs)
    else:
        feeds = random_inputs(graph, seed)
    env_before = run_all_values(graph, feeds)
    watch = _Passes(graph, env_before, feeds, rtol, atol) if bisect else None
    optimized = PassManager(pipeline, [watch] if watch else None).run(graph.copy())
    env_after = compiled_values(optimized, feeds, target) if compiled else run_all_values(optimized, feeds)

    names_before, names_after = node_names(graph), node_names(optimized)

    def value_name(v: Value) -> str:
        return f"%{int(names_before[id(v.producer())][1:]) + v.index}"

    pairs = {id(node): (ref, got, exp) for node, ref, got, exp in matched_arrays(graph, env_before, optimized, env_after)}
    label = (graph.name or "<graph>") if isinstance(model, Graph) else _model_label(model)
    report = CompareReport(label, target, pipeline,
                           "f32: max(1e-4, 1e-4 x max|reference|); quantized: one step; integers: exact",
                           values=f"compiled for {target}" if compiled else "interpreter")
    for node in optimized.nodes:
        row = NodeReport(names_after[id(node)], node.op, list(node.origin), None)
        if id(node) in pairs:  # at most one result of a node is its group's sink
            ref, got, exp = pairs[id(node)]
            row.reference = value_name(ref)
            row.max_abs, row.max_rel, row.sqnr_db, row.within = _compare_node(got, ref, exp, rtol, atol)
            if watch is not None and not row.within:
                row.passname = watch.first.get(id(ref))
        report.nodes.append(row)
    return report
