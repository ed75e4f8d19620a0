"""int8 post-training quantization: calibrate on sample inputs, write the graph in QDQ form.

    qgraph = edgec.quantize(graph, samples, method="minmax")    # the QDQ graph
    cal = edgec.calibrate(graph, samples); qgraph = cal.quantize()   # the same, in two steps

1. The graph is prepared for quantization by edgec's own clean-up, recognition and fusion passes
   (`PREPARE`; no layout conversion), so a conv with its batch norm, bias and relu is one node and
   is quantized as one: its activation is inside the quantized range.
2. Quantized nodes (`QUANTIZABLE`): 2-D NCHW `conv` (depthwise and grouped too), `dense` and
   `matmul` with a constant 2-D weight, each with no activation, `relu` or `clip` fused; `add`,
   `mul` of two computed tensors (with a relu or clip right after, quantized together: the output
   range after it makes saturation do it), `concat`, 2-D NCHW `avg_pool` and `global_avg_pool`,
   `sigmoid` and `leaky_relu`;
   `exclude` (ONNX node names or op types) and `op_types` select among them. The data movement
   ops `reshape`, `transpose`, `slice`, `max_pool`, `global_max_pool` between quantized tensors
   carry their input's parameters, so they run on the integers.
3. Calibration runs edgec's interpreter on every sample and records, for each tensor a quantized
   node reads or writes, its range: `minmax` (the extremes), `percentile` (the `percentile`-th
   and (100 - percentile)-th values, from a 2048-bin histogram), `entropy` (the range, shrunk from
   the extremes, whose 256-level quantization keeps the 2048-bin histogram closest in KL
   divergence) or `mse` (the one with the least mean squared quantization error over that
   histogram). The histogram methods make a second pass over the samples; their histograms leave
   out exact zeros (a relu's), which every range represents exactly.
4. Activations: per tensor, asymmetric, u8 (default) or i8, the range always holding 0 (so a
   zero pads exactly). Weights: symmetric int8 in [-127, 127], per output channel (default) or
   per tensor. Bias: int32 in units of input scale x weight scale.
5. The result is the graph with `quantize_linear` -> `dequantize_linear` after each quantized
   tensor and int8 weights behind `dequantize_linear`: the QDQ form that ONNX Runtime writes.
   The interpreter runs it as fake quantization (the reference); the `fuse-qdq` pass of every
   pipeline (-O1 and up) makes each quantized node one integer kernel.

`Calibration.quantize(keep_float=...)` builds the QDQ graph with some nodes left in float, for the
per-node report (`report`: each node's own output SQNR, and the model's SQNR and top-1 agreement
when only that node is quantized) and the accuracy budget (`fit_budget`: revert the most damaging
nodes, by that measured ranking, until a metric is within a given drop of fp32).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np

from .errors import EdgecError, InputError
from .interpreter import check_inputs, interpret, interpret_values
from .ir import Graph, Node, Value

METHODS = ("minmax", "percentile", "entropy", "mse")
ACTIVATION_DTYPES = {"u8": (0, 255), "i8": (-128, 127)}
LINEAR = ("conv", "dense", "matmul")
QUANTIZABLE = (*LINEAR, "add", "mul", "global_avg_pool", "avg_pool", "concat", "sigmoid", "leaky_relu")
MOVE = ("global_max_pool", "max_pool", "reshape", "slice", "transpose")
BINS = 2048
WEIGHT_MAX = 127


def prepare_pipeline() -> str:
    """The passes run before quantization: the -O2 clean-ups, recognition and fusion, no layout."""
    from edgec.targets import CLEANUP, FUSE, RECOGNIZE
    return f"{CLEANUP},{RECOGNIZE},{FUSE}"


# ---- calibration data -------------------------------------------------------------------------

def load_samples(source: Any, graph: Graph) -> list[dict[str, np.ndarray]]:
    """Calibration samples as feed dicts, each checked against the graph's inputs.

    `source`: a `.npz` file (input name -> array with a leading sample axis), a directory of
    `.npy` files (one sample each; single-input models) and `.npz` files (one sample each, by
    input name), or any iterable of feed dicts."""
    names = [v.name for v in graph.inputs]
    if isinstance(source, (str, os.PathLike)):
        path = Path(source)
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.suffix in (".npy", ".npz"))
            if not files:
                raise InputError(f"calibration directory {path} has no .npy or .npz files")
            samples = [_sample_file(p, names) for p in files]
        elif path.suffix == ".npz" and path.is_file():
            samples = _stacked(path, names)
        else:
            raise InputError(f"calibration data {path}: expected a .npz file or a directory of .npy/.npz files")
    else:
        samples = [dict(s) for s in source]
    if not samples:
        raise InputError("the calibration data has no samples")
    out = []
    for i, s in enumerate(samples):
        try:
            out.append(check_inputs(graph, s))
        except InputError as e:
            raise InputError(f"calibration sample {i}: {e}") from None
    return out


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    from .files import read_npz
    return read_npz(path, "calibration file")


def _stacked(path: Path, names: list[str]) -> list[dict[str, np.ndarray]]:
    data = _load_npz(path)
    missing = [n for n in names if n not in data]
    if missing:
        raise InputError(f"calibration file {path} has no array for input(s) {', '.join(missing)} "
                         f"(it has {', '.join(sorted(data)) or 'none'}): one array per input name, "
                         "with a leading sample axis")
    counts = {len(data[n]) if data[n].ndim else 0 for n in names}
    if len(counts) != 1 or 0 in counts:
        raise InputError(f"calibration file {path}: the inputs' arrays need the same leading sample axis, "
                         f"got shapes {', '.join(f'{n}: {list(data[n].shape)}' for n in names)}")
    return [{n: data[n][i] for n in names} for i in range(counts.pop())]


def _sample_file(path: Path, names: list[str]) -> dict[str, np.ndarray]:
    if path.suffix == ".npz":
        return _load_npz(path)
    if len(names) != 1:
        raise InputError(f"calibration file {path}: a .npy file holds one input, the model has {len(names)} "
                         f"({', '.join(names)}); use .npz files with one array per input name")
    try:
        return {names[0]: np.load(path, allow_pickle=False)}
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read calibration file {path}: {e}") from None


# ---- which nodes ------------------------------------------------------------------------------

def _why_not(node: Node) -> str | None:
    """None when `node` can be quantized, else the reason."""
    if node.op not in QUANTIZABLE:
        return f"edgec does not quantize '{node.op}'"
    if any(v.type.dtype != "f32" for v in node.inputs if not v.is_const) or node.output.type.dtype != "f32":
        return "not a float32 node"
    if node.op in LINEAR:
        act = node.attrs.get("activation", "")
        if act not in ("", "relu", "clip"):
            return f"its fused activation '{act}' is not quantized (only relu and clip)"
        w = node.inputs[1]
        if w.const is None or (node.op != "conv" and w.type.rank != 2):
            return "its weight is not a constant 2-D matrix" if node.op != "conv" else "its weight is not a constant"
        if len(node.inputs) > 2 and node.inputs[2].const is None:
            return "its bias is not a constant"
        if node.op == "conv" and (node.output.type.rank != 4 or node.attrs.get("layout", "NCHW") != "NCHW"):
            return "only 2-D NCHW convolutions are quantized"
        if node.op == "matmul" and node.attrs.get("transpose_a", 0):
            return "a matmul with transpose_a is not quantized"
        return None
    if node.op in ("add", "mul") and any(v.is_const for v in node.inputs):
        return f"an {node.op} with a constant operand is not quantized"
    if node.op in ("global_avg_pool", "avg_pool") and (node.attrs.get("layout", "NCHW") != "NCHW"
                                                       or node.output.type.rank != 4):
        return "only 2-D NCHW average pooling is quantized"
    if node.op == "avg_pool" and any(d != 1 for d in node.attrs.get("dilations", [])):
        return "average pooling with dilation is not quantized"
    if node.op == "concat" and any(v.is_const for v in node.inputs):
        return "a concat with a constant operand is not quantized"
    return None


def _selected(node: Node, exclude: Iterable[str], op_types: Iterable[str] | None) -> bool:
    exclude = set(exclude)
    if node.op in exclude or exclude & set(node.origin):
        return False
    return op_types is None or node.op in set(op_types)


# ---- ranges -----------------------------------------------------------------------------------

def _qparams(lo: float, hi: float, dtype: str) -> tuple[float, int]:
    """Asymmetric (scale, zero point) for the range [lo, hi], widened to hold 0."""
    qmin, qmax = ACTIVATION_DTYPES[dtype]
    lo, hi = min(0.0, float(lo)), max(0.0, float(hi))
    if hi - lo <= 0 or not np.isfinite(hi - lo):
        return 1.0, qmin
    scale = float(np.float32((hi - lo) / (qmax - qmin)))
    zp = int(np.clip(np.rint(qmin - lo / scale), qmin, qmax))
    return scale, zp


def _fake_quant(centers: np.ndarray, lo: float, hi: float) -> np.ndarray:
    scale, zp = _qparams(lo, hi, "u8")
    return (np.clip(np.rint(centers / scale) + zp, 0, 255) - zp) * scale


def _search(hist: np.ndarray, edges: np.ndarray, method: str, percentile: float) -> tuple[float, float]:
    """The calibrated range of one tensor from its histogram over [edges[0], edges[-1]]."""
    lo, hi = float(edges[0]), float(edges[-1])
    total = hist.sum()
    if total == 0 or hi <= lo:
        return lo, hi
    if method == "percentile":
        cdf = np.cumsum(hist) / total
        q = percentile / 100.0
        i_hi = int(np.searchsorted(cdf, q))
        i_lo = int(np.searchsorted(cdf, 1.0 - q))
        return (lo if lo >= 0 else float(edges[i_lo])), float(edges[min(i_hi + 1, len(edges) - 1)])
    centers = (edges[:-1] + edges[1:]) / 2
    p = hist / total
    best, best_range = np.inf, (lo, hi)
    for alpha in np.linspace(1.0, 0.2, 81):
        a_lo, a_hi = lo * alpha, hi * alpha
        if method == "mse":
            err = float(np.sum(p * (centers - _fake_quant(centers, a_lo, a_hi)) ** 2))
        else:  # entropy: KL(P || Q), Q the histogram merged into the 256 levels of [a_lo, a_hi]
            err = _kl(hist, centers, a_lo, a_hi)
        if err < best - 1e-12:
            best, best_range = err, (a_lo, a_hi)
    return best_range


def _kl(hist: np.ndarray, centers: np.ndarray, lo: float, hi: float) -> float:
    """KL(P || Q) as TensorRT's calibrator measures it: P is the histogram inside [lo, hi] with the
    mass outside folded into its edge bins, Q the inside bins merged into the 256 quantization
    levels, each level's mass spread evenly over its bins that hold values (clipping costs the
    outliers' mass, coarse levels the detail they lose)."""
    inside = (centers >= lo) & (centers <= hi)
    if inside.sum() < 2:
        return np.inf
    first, last = np.flatnonzero(inside)[[0, -1]]
    sliced = hist[first:last + 1].astype(np.float64)
    p = sliced.copy()
    p[0] += hist[:first].sum()
    p[-1] += hist[last + 1:].sum()
    scale, zp = _qparams(lo, hi, "u8")
    level = np.clip(np.rint(centers[first:last + 1] / scale) + zp, 0, 255).astype(np.int64)
    mass = np.bincount(level, weights=sliced, minlength=256)
    filled = np.bincount(level, weights=(sliced > 0).astype(np.float64), minlength=256)
    q = np.where(sliced > 0, mass[level] / np.maximum(filled[level], 1), 0.0)
    if q.sum() == 0:
        return np.inf
    keep = p > 0
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p[keep] * np.log(p[keep] / np.maximum(q[keep], 1e-12))))


# ---- the calibrated graph ---------------------------------------------------------------------

Key = tuple  # ("input", name) or (node index, output index): stable across copies of the graph


def _key(graph_index: dict[int, int], v: Value) -> Key:
    p = v.producer()
    return ("input", v.name) if p is None else (graph_index[id(p)], v.index)


@dataclass
class Calibration:
    """A prepared graph, the nodes chosen for quantization and the calibrated range of every
    tensor they read or write."""
    graph: Graph
    nodes: list[int]  # indices into graph.nodes of the quantized nodes
    skipped: dict[int, str]  # index -> why a node that computes is not quantized
    ranges: dict[Key, tuple[float, float]]
    method: str
    per_channel: bool = True
    activations: str = "u8"
    samples: int = 0
    moves: list[int] = field(default_factory=list)  # data movement nodes carrying their input's parameters
    # a quantized add/mul -> the relu/clip right after it (its only user), quantized with it: the
    # output range after the activation makes saturation do the activation (fuse-qdq folds it)
    absorbed: dict[int, int] = field(default_factory=dict)

    def output_of(self, nodes: list[Node], i: int) -> Value:
        """The quantized output of node i: its own, or that of the activation it absorbed."""
        return nodes[self.absorbed.get(i, i)].output

    def node(self, index: int) -> Node:
        return self.graph.nodes[index]

    def quantize(self, keep_float: Iterable[int] = ()) -> Graph:
        """The QDQ graph, with the nodes in `keep_float` (indices) left in float."""
        return self._build(keep_float)[0]

    def _build(self, keep_float: Iterable[int]) -> tuple[Graph, list[Node]]:
        """The QDQ graph and its nodes that are copies of the prepared graph's, in its order."""
        keep = set(keep_float)
        g = self.graph.copy()
        nodes = list(g.nodes)
        index = {id(n): i for i, n in enumerate(nodes)}
        chosen = [i for i in self.nodes if i not in keep]
        params: dict[Key, tuple[float, int]] = {}
        tensors: dict[Key, Value] = {}
        for i in chosen:
            n = nodes[i]
            for v in (*[v for v in n.inputs if not v.is_const], self.output_of(nodes, i)):
                k = _key(index, v)
                tensors[k] = v
                params[k] = _qparams(*self.ranges[k], self.activations)
        for i in self.moves:  # in graph order: a move whose input is quantized passes its parameters on
            n = nodes[i]
            k_in = _key(index, n.inputs[0])
            if k_in in params:
                k = _key(index, n.output)
                tensors[k], params[k] = n.output, params[k_in]
        x_keys = {i: _key(index, nodes[i].inputs[0]) for i in chosen}
        for k in sorted(tensors, key=lambda k: (-1, 0) if k[0] == "input" else k):
            _insert_qdq(g, tensors[k], *params[k], self.activations)
        for i in chosen:
            if nodes[i].op in LINEAR:
                _quantize_weights(g, nodes[i], params[x_keys[i]][0], self.per_channel)
        from .verifier import verify
        verify(g)
        return g, nodes


def _insert_qdq(g: Graph, v: Value, scale: float, zp: int, dtype: str) -> None:
    """v -> quantize_linear -> dequantize_linear, every user of v reading the dequantized value."""
    uses = v.uses()
    p = v.producer()
    origin = p.origin if p is not None else ()
    where = g.inserting_after(p) if p is not None else g.inserting_before(g.nodes[0])
    attrs = {"scale": [scale], "zero_point": [zp], "axis": 1}
    with where:
        q = g.add("quantize_linear", [v], {**attrs, "dtype": dtype}, origin=origin)
        dq = g.add("dequantize_linear", [q.output], attrs, origin=origin)
    for node, i in uses:
        node.set_input(i, dq.output)
    g.outputs = [dq.output if o is v else o for o in g.outputs]


def weight_params(w: np.ndarray, axis: int | None) -> tuple[np.ndarray, list[float]]:
    """Symmetric int8 weights in [-127, 127] and their scales, per `axis` (None: per tensor)."""
    w = w.astype(np.float32)
    if axis is None:
        amax = np.array([np.abs(w).max(initial=0.0)])
        shape = [1] * w.ndim
    else:
        amax = np.abs(np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)).max(axis=1, initial=0.0)
        shape = [1] * w.ndim
        shape[axis] = -1
    scale = np.where(amax > 0, amax / WEIGHT_MAX, 1.0).astype(np.float32)
    q = np.clip(np.rint(w / scale.reshape(shape)), -WEIGHT_MAX, WEIGHT_MAX).astype(np.int8)
    return q, [float(s) for s in scale]


def _quantize_weights(g: Graph, node: Node, x_scale: float, per_channel: bool) -> None:
    """The constant weight (and bias) of a linear node -> int8 (int32) behind dequantize_linear."""
    w = node.inputs[1].const_value()
    n_axis = 1 if node.op == "matmul" and not node.attrs.get("transpose_b", 0) else 0
    q, scales = weight_params(w, n_axis if per_channel else None)
    with g.inserting_before(node):
        dq_w = g.add("dequantize_linear", [Graph.const(q)],
                     {"scale": scales, "zero_point": [0] * len(scales), "axis": n_axis}, origin=node.origin)
        node.set_input(1, dq_w.output)
        if len(node.inputs) > 2:
            b = node.inputs[2].const_value().astype(np.float64).reshape(-1)
            unit = np.broadcast_to(np.float32(x_scale) * np.asarray(scales, np.float32), b.shape)
            b_q = np.clip(np.rint(b / unit), -2 ** 31, 2 ** 31 - 1).astype(np.int32)
            dq_b = g.add("dequantize_linear", [Graph.const(b_q)],
                         {"scale": [float(u) for u in unit], "zero_point": [0] * b.size, "axis": 0},
                         origin=node.origin)
            node.set_input(2, dq_b.output)


# ---- calibrate --------------------------------------------------------------------------------

def calibrate(graph: Graph, calibration: Any, method: str = "minmax", percentile: float = 99.99,
              per_channel: bool = True, activations: str = "u8", exclude: Iterable[str] = (),
              op_types: Iterable[str] | None = None, progress: bool = False) -> Calibration:
    """Prepare `graph`, choose its quantized nodes and calibrate their tensors on `calibration`
    (see `load_samples` for what it may be)."""
    from .passmanager import optimize
    method = _method(method)
    if activations not in ACTIVATION_DTYPES:
        raise EdgecError(f"activations must be one of {', '.join(ACTIVATION_DTYPES)}, got {activations!r}")
    if not 50.0 < percentile <= 100.0:
        raise EdgecError(f"percentile must be in (50, 100], got {percentile}")
    if op_types is not None:
        unknown = sorted(set(op_types) - set(QUANTIZABLE))
        if unknown:
            raise EdgecError(f"--op-types: edgec does not quantize {', '.join(unknown)} "
                             f"(it quantizes {', '.join(QUANTIZABLE)})")
    samples = load_samples(calibration, graph)
    g = optimize(graph, passes=prepare_pipeline())
    nodes = list(g.nodes)
    index = {id(n): i for i, n in enumerate(nodes)}
    chosen, skipped = [], {}
    for i, n in enumerate(nodes):
        if n.op in MOVE or n.op in ("quantize_linear", "dequantize_linear"):
            continue
        reason = _why_not(n)
        if reason is None and not _selected(n, exclude, op_types):
            reason = "excluded"
        if reason is None:
            chosen.append(i)
        elif n.op not in ("reshape", "flatten", "squeeze", "unsqueeze"):
            skipped[i] = reason
    moves = [i for i, n in enumerate(nodes) if n.op in MOVE]
    absorbed = {}
    for i in chosen:
        users = nodes[i].output.uses()
        if nodes[i].op in ("add", "mul") and len(users) == 1 and nodes[i].output not in g.outputs:
            act = users[0][0]
            if act.op == "relu" or (act.op == "clip" and np.isfinite([act.attrs["min"], act.attrs["max"]]).all()):
                absorbed[i] = index[id(act)]
                skipped.pop(absorbed[i], None)
    wanted: dict[Key, Value] = {}
    for i in chosen:
        n = nodes[i]
        for v in (*[v for v in n.inputs if not v.is_const], nodes[absorbed.get(i, i)].output):
            wanted[_key(index, v)] = v
    ranges = _ranges(g, samples, wanted, index, method, percentile, progress)
    return Calibration(g, chosen, skipped, ranges, method, per_channel, activations, len(samples), moves, absorbed)


def _method(method: str) -> str:
    if method not in METHODS:
        raise EdgecError(f"unknown calibration method '{method}'; use one of {', '.join(METHODS)}")
    return method


def _ranges(g: Graph, samples, wanted: dict[Key, Value], index, method: str, percentile: float,
            progress: bool) -> dict[Key, tuple[float, float]]:
    from .progress import Progress
    passes = 1 if method == "minmax" else 2
    bar = Progress(len(samples) * passes, "calibration samples", after=2.0, lines=False) if progress else None
    lo = {k: np.inf for k in wanted}
    hi = {k: -np.inf for k in wanted}
    for s in samples:
        env = interpret_values(g, s)
        for k, v in wanted.items():
            a = env[id(v)]
            lo[k], hi[k] = min(lo[k], float(a.min())), max(hi[k], float(a.max()))
        if bar:
            bar.step()
    if method == "minmax":
        if bar:
            bar.clear()
        return {k: (lo[k], hi[k]) for k in wanted}
    hists = {k: np.zeros(BINS, np.int64) for k in wanted}
    edges = {k: np.linspace(min(lo[k], 0.0), max(hi[k], 0.0), BINS + 1) for k in wanted}
    for s in samples:
        env = interpret_values(g, s)
        for k, v in wanted.items():
            a = env[id(v)]
            hists[k] += np.histogram(a[a != 0], bins=edges[k])[0]  # zeros are exact: left out
        if bar:
            bar.step()
    if bar:
        bar.clear()
    return {k: _search(hists[k], edges[k], method, percentile) for k in wanted}


def quantize(graph: Graph, calibration: Any, method: str = "minmax", **options: Any) -> Graph:
    """The QDQ graph of `graph` quantized to int8 on `calibration` (see `calibrate`)."""
    return calibrate(graph, calibration, method, **options).quantize()


# ---- measuring the damage ---------------------------------------------------------------------

def sqnr(reference: np.ndarray, value: np.ndarray) -> float:
    """Signal to quantization noise ratio in dB (inf when equal)."""
    ref = reference.astype(np.float64)
    noise = float(np.sum((ref - value.astype(np.float64)) ** 2))
    signal = float(np.sum(ref ** 2))
    if noise == 0:
        return float("inf")
    return 10.0 * np.log10(max(signal, 1e-300) / noise)


@dataclass
class Row:
    """One quantized node in the report."""
    node: str  # op and ONNX origins
    op: str
    origin: tuple[str, ...]
    output_sqnr: float  # dB, the node's own output in the fully quantized graph against fp32
    alone_sqnr: float  # dB, the model's output when only this node is quantized
    alone_top1: float | None  # top-1 agreement with fp32 when only this node is quantized


def _outputs(graph: Graph, samples) -> list[np.ndarray]:
    """The first output of `graph` on each sample."""
    return [next(iter(interpret(graph, s).values())) for s in samples]


def _top1(ref: list[np.ndarray], got: list[np.ndarray]) -> float | None:
    if ref[0].ndim < 1 or ref[0].shape[-1] < 2:
        return None
    same = [np.array_equal(r.reshape(-1, r.shape[-1]).argmax(-1), g.reshape(-1, g.shape[-1]).argmax(-1))
            for r, g in zip(ref, got)]
    return float(np.mean(same))


def report(cal: Calibration, samples: list[dict[str, np.ndarray]], progress: bool = False) -> dict[str, Any]:
    """Per quantized node: SQNR of its output against fp32, and the model output's SQNR and top-1
    agreement when only that node is quantized; plus the whole model's."""
    from .progress import Progress
    fp32 = _outputs(cal.graph, samples)
    full, copies = cal._build(())
    quant = _outputs(full, samples)
    own = _node_outputs(cal, full, copies, samples)
    rows = []
    bar = Progress(len(cal.nodes), "nodes measured", after=2.0, lines=False) if progress else None
    for i in cal.nodes:
        n = cal.node(i)
        alone = _outputs(cal.quantize(keep_float=[j for j in cal.nodes if j != i]), samples)
        rows.append(Row(n.describe(), n.op, n.origin, own[i], _sqnr_all(fp32, alone), _top1(fp32, alone)))
        if bar:
            bar.step()
    if bar:
        bar.clear()
    return {"method": cal.method, "samples": len(samples), "model_sqnr": _sqnr_all(fp32, quant),
            "model_top1": _top1(fp32, quant), "rows": rows,
            "float": {cal.node(i).describe(): why for i, why in sorted(cal.skipped.items())}}


def _sqnr_all(ref: list[np.ndarray], got: list[np.ndarray]) -> float:
    return sqnr(np.concatenate([r.reshape(-1) for r in ref]), np.concatenate([g.reshape(-1) for g in got]))


def _node_outputs(cal: Calibration, full: Graph, copies: list[Node], samples) -> dict[int, float]:
    """SQNR of each quantized node's output in `full` (the dequantized value after it) against
    the fp32 graph's; `copies[i]` is node i of the prepared graph in `full`."""
    fp_nodes = list(cal.graph.nodes)
    pairs = {}
    for i in cal.nodes:
        q_out = cal.output_of(copies, i)
        dq = next(u for u, _ in q_out.uses() if u.op == "quantize_linear").output.uses()[0][0].output
        pairs[i] = (cal.output_of(fp_nodes, i), dq)
    ref = {i: [] for i in pairs}
    got = {i: [] for i in pairs}
    for s in samples:
        env_f, env_q = interpret_values(cal.graph, s), interpret_values(full, s)
        for i, (fv, qv) in pairs.items():
            ref[i].append(env_f[id(fv)])
            got[i].append(env_q[id(qv)])
    return {i: _sqnr_all(ref[i], got[i]) for i in pairs}


def _db(x: float) -> str:
    return "inf" if x == float("inf") else f"{x:.1f}"


def format_report(rep: dict[str, Any], kind: str) -> str:
    """The report as Markdown (".md": rows from the most damaging node) or JSON (".json")."""
    import json
    rows = sorted(rep["rows"], key=lambda r: (r.alone_sqnr, r.node))
    if kind == ".json":
        def num(x):
            return None if x is None else (x if np.isfinite(x) else "inf")
        data = {"method": rep["method"], "samples": rep["samples"], "model_sqnr_db": num(rep["model_sqnr"]),
                "model_top1_agreement": rep["model_top1"],
                "nodes": [{"node": r.node, "op": r.op, "origin": list(r.origin), "output_sqnr_db": num(r.output_sqnr),
                           "model_sqnr_db_alone": num(r.alone_sqnr), "top1_agreement_alone": r.alone_top1}
                          for r in rows],
                "float": rep["float"]}
        return json.dumps(data, indent=2, sort_keys=True) + "\n"
    top1 = "" if rep["model_top1"] is None else f", top-1 agreement with fp32 {rep['model_top1']:.1%}"
    lines = [f"# int8 quantization report ({rep['method']}, {rep['samples']} samples)", "",
             f"Whole model: output SQNR {_db(rep['model_sqnr'])} dB{top1}.", "",
             "Rows from the most damaging node: the model's output SQNR (and top-1 agreement) when only "
             "that node is quantized; its own output's SQNR in the fully quantized model.", "",
             "| node | ONNX origin | model SQNR alone (dB) | top-1 alone | own output SQNR (dB) |",
             "|---|---|---|---|---|"]
    for r in rows:
        t = "" if r.alone_top1 is None else f"{r.alone_top1:.1%}"
        lines.append(f"| {r.op} | {', '.join(r.origin)} | {_db(r.alone_sqnr)} | {t} | {_db(r.output_sqnr)} |")
    if rep["float"]:
        lines += ["", "Kept in float:", ""] + [f"- {node}: {why}" for node, why in rep["float"].items()]
    return "\n".join(lines) + "\n"


# ---- accuracy budget --------------------------------------------------------------------------

@dataclass
class Budget:
    """What `fit_budget` reverted to float and what the model then scores."""
    metric: str
    fp32: float  # the fp32 model's score
    int8: float  # the fully quantized model's
    final: float  # with the `reverted` nodes in float
    reverted: list[int]  # node indices, in the order they were reverted
    impact: dict[int, float]  # index -> the score's drop when only that node is quantized

    @property
    def drop(self) -> float:
        return self.fp32 - self.final


def scorer(metric: str, labels: np.ndarray | None = None):
    """(name, score(outputs, fp32_outputs) -> float, higher is better), outputs being each sample's
    output dicts. `top1`: percent of samples whose argmax is the label (with `labels`) or the fp32
    model's argmax; `sqnr`: minus the noise power in percent of the signal's (fp32 scores 0; 30 dB
    is -0.1); a `.py` file: its function `score(outputs, labels)`."""
    def first(outs):
        return [next(iter(o.values())) for o in outs]

    if metric == "top1":
        def top1(outs, ref):
            pred = np.array([a.reshape(-1).argmax() for a in first(outs)])
            want = (np.asarray(labels).reshape(-1) if labels is not None
                    else np.array([a.reshape(-1).argmax() for a in first(ref)]))
            if len(want) != len(pred):
                raise InputError(f"--labels has {len(want)} labels for {len(pred)} samples")
            return 100.0 * float(np.mean(pred == want))
        return ("top-1 accuracy (%)" if labels is not None else "top-1 agreement with fp32 (%)"), top1
    if metric == "sqnr":
        def noise(outs, ref):
            r = np.concatenate([a.reshape(-1) for a in first(ref)]).astype(np.float64)
            g = np.concatenate([a.reshape(-1) for a in first(outs)]).astype(np.float64)
            return -100.0 * float(np.sum((r - g) ** 2) / max(np.sum(r ** 2), 1e-300)) + 0.0  # not -0.0
        return "output noise (-% of signal power)", noise
    path = Path(metric)
    if path.suffix != ".py" or not path.is_file():
        raise EdgecError(f"--metric {metric}: use top1, sqnr or a Python file that defines score(outputs, labels)")
    import importlib.util
    spec = importlib.util.spec_from_file_location(f"edgec_metric_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except Exception as e:  # noqa: BLE001 - the user's file: say which and why
        raise EdgecError(f"--metric {metric}: loading it failed: {type(e).__name__}: {e}") from None
    if not callable(getattr(module, "score", None)):
        raise EdgecError(f"--metric {metric}: the file defines no function score(outputs, labels)")
    return path.name, lambda outs, ref: float(module.score(outs, labels))


def fit_budget(cal: Calibration, samples: list[dict[str, np.ndarray]], max_drop: float, metric: str = "top1",
               labels: np.ndarray | None = None, progress: bool = False) -> Budget:
    """Revert quantized nodes to float, the most damaging first (ranked by the score's drop when
    only that node is quantized: measured, not guessed from weight error), one at a time, until
    the fully quantized model's score is within `max_drop` of fp32's on `samples`."""
    from .progress import Progress
    name, score = scorer(metric, labels)

    def run(graph):
        return [interpret(graph, s) for s in samples]

    ref = run(cal.graph)
    fp32 = score(ref, ref)
    int8 = score(run(cal.quantize()), ref)
    bar = Progress(len(cal.nodes), "nodes measured", after=2.0, lines=False) if progress else None
    impact = {}
    if fp32 - int8 > max_drop:
        for i in cal.nodes:
            impact[i] = fp32 - score(run(cal.quantize(keep_float=[j for j in cal.nodes if j != i])), ref)
            if bar:
                bar.step()
    if bar:
        bar.clear()
    reverted, final = [], int8
    for i in sorted(impact, key=lambda i: (-impact[i], i)):
        if fp32 - final <= max_drop:
            break
        reverted.append(i)
        final = score(run(cal.quantize(keep_float=reverted)), ref)
    return Budget(name, fp32, int8, final, reverted, impact)
