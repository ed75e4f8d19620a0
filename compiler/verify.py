"""End-to-end numerical verification against ONNX Runtime, and pass bisection.

`verify_model(model, target, level)` runs the same inputs through
- ONNX Runtime on the original model (CPU, one thread): the independent oracle,
- edgec's numpy interpreter on the optimized graph,
- the compiled module (`edgec.compile(..., output=tmp)` then `Artifact.run`; for a non-host target
  `Artifact.run` hands the artifact to that target's runner),
and reports, per output, the max abs error and the max error relative to the output's scale
(`max|expected|`) of the interpreter and of the compiled module.

An output is within tolerance when `max abs error <= max(atol, rtol * scale)`. Defaults by dtype:
f32 `rtol = atol = 1e-4` (that is, 1e-4 relative to the output scale, never tighter than 1e-4),
f16 1e-2, f64 1e-9; integer and bool outputs must match exactly, but for quantized outputs: one
quantization step (`quantization_step`: the scale of the dequantize that makes a float output, 1
for a quantize's integers), what rounding a tie differently changes. A NaN where the oracle has none
(or the reverse), or a shape difference, is an infinite error. An output whose scale is not above
its tolerance is reported as vacuous (an all-zero result would pass): its check needs inputs of
the model's real range. Generated inputs are seeded and in a typical range (`random_inputs`).

`bisect(model, target, level)` runs the pipeline one pass at a time with the interpreter and
returns the first pass after which the outputs leave the unoptimized graph's tolerance, with the
ONNX origins of the nodes that pass changed and of the first intermediate value that diverged.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .errors import EdgecError, PassError, ToolError
from .ir import Graph, Value
from .passmanager import Instrument

# Tolerances by dtype: an output passes when max abs error <= max(atol, rtol * max|expected|).
DEFAULT_RTOL = {"f16": 1e-2, "f32": 1e-4, "f64": 1e-9}
DEFAULT_ATOL = {"f16": 1e-2, "f32": 1e-4, "f64": 1e-9}


# ---- inputs, oracle, comparison ------------------------------------------------------------
def is_image(shape: tuple[int, ...]) -> bool:
    """Whether a float input of `shape` is taken for an image: 4-D, with 1 or 3 channels first
    (NCHW) or last (NHWC)."""
    return len(shape) == 4 and (shape[1] in (1, 3) or shape[3] in (1, 3))


def random_inputs(graph: Graph, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded inputs for each graph input, in the range typical for it: a 4-D float input with 1
    or 3 channels (an image, `is_image`) uniform in [0, 1], other floats standard normal,
    integers in [0, 10), bools fair (the rule `edgec verify --help` states)."""
    rng = np.random.default_rng(seed)
    feeds = {}
    for v in graph.inputs:
        t = v.type
        if t.np_dtype.kind == "f" and is_image(t.shape):
            arr = rng.random(t.shape)
        elif t.np_dtype.kind == "f":
            arr = rng.standard_normal(t.shape)
        elif t.np_dtype.kind in "iu":
            arr = rng.integers(0, 10, t.shape)
        elif t.np_dtype.kind == "b":
            arr = rng.integers(0, 2, t.shape).astype(bool)
        else:
            raise EdgecError(f"cannot make random values for input '{v.name}' of type {t}; pass inputs=")
        feeds[v.name] = np.asarray(arr).astype(t.np_dtype)
    return feeds


# The weight input of ONNX's integer matmuls and convolutions (their activation is input 0), and of
# ONNX Runtime's com.microsoft QGemm (session.x64quantprecision makes it exact too).
INT_WEIGHT_INPUT = {"MatMulInteger": 1, "ConvInteger": 1, "QLinearMatMul": 3, "QLinearConv": 3, "QGemm": 3}


def has_u8_x_s8(model) -> bool:
    """Whether an integer matmul or conv of the ModelProto `model` multiplies a u8 activation by
    an s8 weight, written as such or in QDQ form (ORT fuses DequantizeLinear(u8) and
    DequantizeLinear(s8) into its Conv, MatMul and Gemm into the same integer kernels)."""
    import onnx
    nodes = [n for n in model.graph.node if n.op_type in INT_WEIGHT_INPUT]
    dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear"]
    if not nodes and not dq:
        return False
    g = onnx.shape_inference.infer_shapes(model).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*g.input, *g.value_info, *g.output]}
    types.update({t.name: t.data_type for t in g.initializer})
    u8, s8 = onnx.TensorProto.UINT8, onnx.TensorProto.INT8
    if any(types.get(n.input[0]) == u8 and types.get(n.input[INT_WEIGHT_INPUT[n.op_type]]) == s8
           for n in nodes):
        return True
    dq_types = {types.get(n.input[0]) for n in dq}
    return u8 in dq_types and s8 in dq_types


def onnxruntime_session(model: Any):
    """An ONNX Runtime CPU session, one thread, on the model (path or ModelProto), exact for
    u8 x s8: on x86 without VNNI, ORT's u8 x s8 kernels add pairs of products in saturating int16
    (vpmaddubsw: 255 * 127 * 2 becomes 32767; tests/targets/test_int8.py has the numbers). ORT's
    documented `session.x64quantprecision` makes it turn constant s8 weights into u8 ones (w + 128,
    zero point + 128) for its exact u8 x u8 kernels. It is set only for models with a u8 x s8
    product: ORT has no kernel for the s8 x u8 it would make of s8 x s8."""
    import onnx
    import onnxruntime as ort
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    if isinstance(model, (str, Path)):  # ORT reads the file itself (external data beside it)
        proto, source = onnx.load(str(model), load_external_data=False), str(model)
    else:
        proto, source = model, model.SerializeToString()
    if has_u8_x_s8(proto):
        options.add_session_config_entry("session.x64quantprecision", "1")
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def run_onnxruntime(model: Any, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """ONNX Runtime (`onnxruntime_session`) on the original model (path or ModelProto)."""
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        raise ToolError("verification compares against ONNX Runtime, which is not installed: "
                        "pip install onnxruntime") from None
    try:
        session = onnxruntime_session(model)
        names = [o.name for o in session.get_outputs()]
        return dict(zip(names, session.run(names, feeds)))
    except Exception as e:  # noqa: BLE001 - ORT raises its own exception types
        raise ToolError(f"ONNX Runtime could not run the model, so there is no reference to compare "
                        f"with: {type(e).__name__}: {e}") from None


def _tolerance(dtype: str, rtol: float | dict | None, atol: float | dict | None) -> tuple[float, float]:
    def pick(given, default):
        if given is None:
            return default.get(dtype, 0.0)
        if isinstance(given, dict):
            return given.get(dtype, default.get(dtype, 0.0))
        return float(given)
    return pick(rtol, DEFAULT_RTOL), pick(atol, DEFAULT_ATOL)


@dataclass
class Error:
    """How far `actual` is from `expected`: max abs error, and that over max(|expected|)."""
    abs: float
    rel: float
    note: str = ""


def output_scale(expected: np.ndarray) -> float:
    """max |expected| over its finite entries (0 for an empty or all-NaN/inf array)."""
    e = np.asarray(expected)
    if e.size == 0:
        return 0.0
    e = e.astype(np.float64)
    finite = np.isfinite(e)
    return float(np.max(np.abs(e[finite]))) if np.any(finite) else 0.0


def compare(actual: np.ndarray, expected: np.ndarray) -> Error:
    """Max abs error of `actual` against `expected`, and that relative to `output_scale(expected)`.

    Equal infinities and NaN where NaN is expected count as equal; a NaN mismatch or a shape
    difference is an infinite error."""
    actual, expected = np.asarray(actual), np.asarray(expected)
    if actual.shape != expected.shape:
        return Error(float("inf"), float("inf"), f"shape {list(actual.shape)} != {list(expected.shape)}")
    if expected.size == 0:
        return Error(0.0, 0.0)
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    nan_a, nan_e = np.isnan(a), np.isnan(e)
    if np.any(nan_a != nan_e):
        return Error(float("inf"), float("inf"), f"{int(np.sum(nan_a != nan_e))} NaN mismatches")
    both = ~nan_e
    with np.errstate(invalid="ignore"):
        diff = np.where(a == e, 0.0, np.abs(a - e))  # equal infinities differ by 0
    err = float(np.max(diff[both])) if np.any(both) else 0.0
    scale = output_scale(expected)
    return Error(err, err / scale if scale > 0 else err)


def error_bound(dtype: str, scale: float, rtol=None, atol=None) -> float:
    """The max abs error allowed for an output of `dtype` and `scale`: max(atol, rtol * scale);
    0 (exact) for integers and bools."""
    if dtype not in DEFAULT_RTOL:
        return 0.0
    r, a = _tolerance(dtype, rtol, atol)
    return max(a, r * scale)


def within(error: Error, dtype: str, scale: float, rtol=None, atol=None) -> bool:
    return error.abs <= error_bound(dtype, scale, rtol, atol)


def quantization_step(value: Value) -> float:
    """One step of a quantized output: the scale of the per-tensor `dequantize_linear` that makes
    it, or 1 for the integers of a `quantize_linear` (an integer kernel and ONNX Runtime may round
    a tie differently); 0 for any other output."""
    p = value.producer()
    if p is None or len(p.attrs.get("scale", [])) != 1:
        return 0.0
    if p.op == "dequantize_linear":
        return p.attrs["scale"][0] * (1 + 1e-6)
    return 1.0 if p.op == "quantize_linear" else 0.0


# ---- verify_model --------------------------------------------------------------------------
@dataclass
class OutputReport:
    name: str
    dtype: str
    shape: tuple[int, ...]
    scale: float  # max |expected|
    bound: float  # the max abs error allowed
    interpreter: Error
    compiled: Error | None  # None when the compiled module was not run

    @property
    def ok(self) -> bool:
        errors = [self.interpreter] + ([self.compiled] if self.compiled is not None else [])
        return all(e.abs <= self.bound for e in errors)

    @property
    def vacuous(self) -> bool:
        """Whether the check says nothing: a float output whose scale is not above its tolerance,
        so that an all-zero result would pass (inputs outside the model's range, such as
        random ones, can make an output that small)."""
        return self.bound > 0 and self.scale <= self.bound


@dataclass
class VerifyReport:
    model: str
    target: str
    pipeline: str
    outputs: list[OutputReport]
    inputs: dict[str, np.ndarray]
    seconds: dict[str, float] = field(default_factory=dict)  # onnxruntime, optimize, interpreter, compile, run
    # CUDA targets: the kernels' check on the CPU (edgec.targets.cuda_cpu.CpuCheckReport), whose
    # outputs are the "compiled" column
    kernels: Any = None

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outputs) and (self.kernels is None or self.kernels.ok)

    def format(self) -> str:
        """A readable table: one row per output, then the verdict and the timings."""
        has_compiled = any(o.compiled is not None for o in self.outputs)
        lines = [f"verify {self.model} --target {self.target}  pipeline: {self.pipeline or '(none)'}"]
        header = ["output", "dtype", "shape", "scale", "tolerance", "interp abs", "interp rel"]
        if has_compiled:
            header += ["compiled abs", "compiled rel"]
        rows = [header + ["result"]]
        for o in self.outputs:
            row = [o.name, o.dtype, "x".join(map(str, o.shape)) or "scalar", f"{o.scale:.3g}", f"{o.bound:.1e}",
                   f"{o.interpreter.abs:.2e}", f"{o.interpreter.rel:.2e}"]
            if has_compiled:
                row += ([f"{o.compiled.abs:.2e}", f"{o.compiled.rel:.2e}"] if o.compiled is not None else ["-", "-"])
            notes = "; ".join(filter(None, [o.interpreter.note, o.compiled.note if o.compiled else "",
                                            "vacuous" if o.vacuous else ""]))
            row.append(("ok" if o.ok else "MISMATCH") + (f" ({notes})" if notes else ""))
            rows.append(row)
        widths = [max(len(r[i]) for r in rows) for i in range(len(header) + 1)]
        for i, r in enumerate(rows):
            lines.append("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip())
            if i == 0:
                lines.append("  ".join("-" * w for w in widths))
        if self.kernels is not None:
            lines.append(self.kernels.summary())
        outputs_ok = all(o.ok for o in self.outputs)
        lines.append(("OK: every output matches ONNX Runtime within tolerance" if outputs_ok else
                      "FAILED: some output differs from ONNX Runtime beyond tolerance"))
        for o in self.outputs:
            if o.vacuous:
                lines.append(f"warning: output '{o.name}' has scale {o.scale:.3g} (max |value|), not above its "
                             f"tolerance {o.bound:.1e}: an all-zero result would pass, so its check means little; "
                             f"verify it on inputs of the model's real range (--inputs FILE.npz)")
        if self.seconds:
            lines.append("time: " + ", ".join(f"{k} {v:.2f}s" for k, v in self.seconds.items()))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def precision_tolerance(precision: str | None, rtol, atol) -> tuple:
    """(rtol, atol) for a pipeline with `precision` ("fp16", "mixed"): float32 outputs then get
    float16's default tolerances, unless `rtol` or `atol` are given."""
    if precision is None:
        return rtol, atol
    return (rtol if rtol is not None else {"f32": DEFAULT_RTOL["f16"]},
            atol if atol is not None else {"f32": DEFAULT_ATOL["f16"]})


def _model_label(model: Any) -> str:
    return str(model) if isinstance(model, (str, Path)) else (getattr(model.graph, "name", "") or "<model>")


def verify_model(model: Any, target: str = "host", level: int | None = 2, passes: str | None = None,
                 input_shapes: dict[str, tuple[int, ...]] | None = None,
                 inputs: dict[str, np.ndarray] | None = None, seed: int = 0,
                 rtol: float | dict[str, float] | None = None, atol: float | dict[str, float] | None = None,
                 compiled: bool = True, precision: str | None = None) -> VerifyReport:
    """Compare edgec (interpreter on the optimized graph, and the compiled module) with ONNX Runtime.

    `model` is a path or an onnx.ModelProto; `passes` overrides the level's pipeline; `inputs`
    (name -> array) replaces the seeded random inputs; `rtol`/`atol` are floats or dicts by dtype
    name ("f32", ...); `compiled=False` skips the build and checks the interpreter only;
    `precision` ("fp16", "mixed"; GPU targets) adds convert-precision to the level's pipeline and
    compares float32 outputs at float16's tolerance (`precision_tolerance`).
    """
    from .interpreter import check_inputs, interpret
    from .onnx_import import import_onnx
    from .passmanager import optimize, resolve_pipeline

    seconds: dict[str, float] = {}
    pipeline = resolve_pipeline(target, level, passes, precision)
    rtol, atol = precision_tolerance(precision, rtol, atol)
    graph = import_onnx(model, input_shapes)
    feeds = check_inputs(graph, inputs) if inputs is not None else random_inputs(graph, seed)

    start = time.perf_counter()
    expected = run_onnxruntime(model, feeds)
    seconds["onnxruntime"] = time.perf_counter() - start

    start = time.perf_counter()
    optimized = optimize(graph, target=target, passes=pipeline)
    seconds["optimize"] = time.perf_counter() - start
    start = time.perf_counter()
    interp = interpret(optimized, feeds)
    seconds["interpreter"] = time.perf_counter() - start

    got_compiled, kernel_check = None, None
    if compiled and _is_cuda(target):
        # no Jetson GPU here to run the artifact on: its CUDA kernels run on this CPU (targets/cuda_cpu.py)
        from edgec.targets import get_target
        from edgec.targets.cuda_cpu import check_on_cpu
        start = time.perf_counter()
        kernel_check = check_on_cpu(optimized, get_target(target), feeds)
        got_compiled = kernel_check.outputs
        seconds["gpu kernels on the cpu"] = time.perf_counter() - start
    elif compiled:
        from .driver import compile as edgec_compile
        with tempfile.TemporaryDirectory(prefix="edgec-verify-") as tmp:
            start = time.perf_counter()
            artifact = edgec_compile(model, target=target, output=Path(tmp) / "artifact", passes=pipeline,
                                     input_shapes=input_shapes).artifact
            seconds["compile"] = time.perf_counter() - start
            start = time.perf_counter()
            got_compiled = artifact.run(feeds)
            seconds["run"] = time.perf_counter() - start

    reports = []
    steps = dict(zip(graph.output_names, (quantization_step(v) for v in graph.outputs)))
    for name, value in zip(optimized.output_names, optimized.outputs):
        if name not in expected:
            raise EdgecError(f"ONNX Runtime gave no output '{name}' (it gave {', '.join(expected)})")
        exp = expected[name]
        scale = output_scale(exp)
        bound = max(error_bound(value.type.dtype, scale, rtol, atol), steps.get(name, 0.0))
        reports.append(OutputReport(
            name, value.type.dtype, value.type.shape, scale, bound,
            interpreter=compare(interp[name], exp),
            compiled=compare(got_compiled[name], exp) if got_compiled is not None else None))
    return VerifyReport(_model_label(model), target, pipeline, reports, feeds, seconds, kernel_check)


def _is_cuda(target: str) -> bool:
    from edgec.targets import get_target
    return get_target(target, detect=False).kind == "cuda"


# ---- bisect --------------------------------------------------------------------------------
def run_all_values(graph: Graph, feeds: dict[str, np.ndarray]) -> dict[int, np.ndarray]:
    """Interpret `graph` keeping every node result: id(Value) -> array."""
    from .interpreter import interpret_values
    return interpret_values(graph, feeds)


def _const_digest(v: Value) -> str:
    if v.placeholder_hash is not None:
        return v.placeholder_hash
    arr = np.ascontiguousarray(v.const_value())
    return hashlib.sha256(str(v.type).encode() + arr.tobytes()).hexdigest()[:16]


def _node_key(node) -> tuple:
    """What identifies a node across a pass: op, origin, attributes and its constant inputs."""
    consts = tuple(_const_digest(v) if v.is_const else "" for v in node.inputs)
    return (node.op, node.origin, repr(sorted(node.attrs.items())), consts)


def _group_sinks(graph: Graph, nodes: list) -> list[Value]:
    """The results of `nodes` used outside them or returned by `graph`, in node order."""
    inside = {id(n) for n in nodes}
    outputs = {id(v) for v in graph.outputs}
    return [o for n in nodes for o in n.outputs
            if id(o) in outputs or any(id(user) not in inside for user, _ in o.uses())]


def _groups(graph: Graph):
    """A function: origin set -> the nodes of `graph` whose (non-empty) origins all lie in it."""
    by_origin: dict[str, list] = {}
    for n in graph.nodes:
        for o in set(n.origin):
            by_origin.setdefault(o, []).append(n)
    order = {id(n): i for i, n in enumerate(graph.nodes)}

    def group(origins: frozenset) -> list:
        found = {id(n): n for o in origins for n in by_origin.get(o, []) if set(n.origin) <= origins}
        return sorted(found.values(), key=lambda n: order[id(n)])
    return group


def channels_first(rank: int) -> tuple[int, ...]:
    """The permutation that takes a channels-last (NHWC) array of `rank` to channels-first (NCHW)."""
    return (0, rank - 1, *range(1, rank - 1))


def channels_last_values(graph: Graph) -> set[int]:
    """ids of the results of `graph` laid out channels-last (what convert-layout makes):
    - a node with a `layout` attribute such as "NHWC" (convs, pools);
    - a transpose by the channels-last permutation of a channels-first value (and back: the
      inverse permutation of a channels-last value is channels-first, any other is unknown, first);
    - reshapes and ops that change the rank: channels-first;
    - any other op (elementwise, fused, pad, concat): as its first non-constant input of the same rank."""
    last: set[int] = set()
    for node in graph.nodes:
        for o in node.outputs:
            rank = o.type.rank
            if rank < 3:
                continue
            layout = node.attrs.get("layout")
            if isinstance(layout, str):
                is_last = layout.startswith("N") and layout.endswith("C") and len(layout) == rank
            elif node.op == "transpose":
                src = id(node.inputs[0]) in last
                perm = tuple(node.attrs.get("perm", ()))
                to_last = tuple(np.argsort(channels_first(rank)))
                is_last = (perm == to_last and not src) or (src and perm == tuple(range(rank)))
            elif node.op == "reshape":
                is_last = False
            else:
                same = [v for v in node.inputs if not v.is_const and v.type.rank == rank]
                is_last = bool(same) and id(same[0]) in last
            if is_last:
                last.add(id(o))
    return last


def match_values(before: Graph, after: Graph) -> dict[int, tuple[Value, tuple[int, ...] | None]]:
    """The one matching of values between a graph and its optimized form, by ONNX origin:
    id(result of `after`) -> (result of `before`, permutation to apply to the `after` array or None).

    A node of `after` with origins S is matched when, among the nodes of each graph whose origins
    all lie in S (its group), exactly one result leaves the group (used outside it or returned),
    and in `after` that result is the node's. When the optimized result is integer and the
    reference sink is the float of a dequantize inside the group (fuse-qdq), the reference is the
    integers it dequantizes. The two must have the same dtype (or integers against floats: ops that
    fuse-qdq moved onto the integers, such as max_pool), and the same
    shape, or the same once a channels-last result is moved to channels-first (convert-layout's
    NHWC: the permutation is returned). Nodes without origin, or whose group has several or no
    sinks on either side (a multi-output split, a node convert-layout added inside a group), are
    not matched."""
    group_before, group_after = _groups(before), _groups(after)
    last = channels_last_values(after)
    matched = {}
    for node in after.nodes:
        origins = frozenset(node.origin)
        if not origins:
            continue
        sinks_after = _group_sinks(after, group_after(origins))
        sinks_before = _group_sinks(before, group_before(origins))
        if len(sinks_after) != 1 or len(sinks_before) != 1 or sinks_after[0].producer() is not node:
            continue
        got, ref = sinks_after[0], sinks_before[0]
        members = {id(n) for n in group_before(origins)}
        while (got.type.dtype != ref.type.dtype and ref.producer().op == "dequantize_linear"
               and ref.producer().inputs[0].producer() is not None
               and id(ref.producer().inputs[0].producer()) in members):
            ref = ref.producer().inputs[0]  # fuse-qdq's integer result: the quantize's integers
        if got.type.dtype != ref.type.dtype and not (got.type.np_dtype.kind in "iu" and ref.type.np_dtype.kind == "f"):
            continue
        perm = channels_first(got.type.rank) if id(got) in last else None
        shape = got.type.shape if perm is None else tuple(got.type.shape[i] for i in perm)
        if shape == ref.type.shape:
            matched[id(got)] = (ref, perm)
    return matched


@dataclass
class Divergence:
    """An intermediate value that differs between the graph before and after a pass."""
    op: str
    origin: tuple[str, ...]
    error: Error
    scale: float

    def describe(self) -> str:
        where = ", ".join(self.origin) or "(no ONNX origin)"
        return f"'{self.op}' from ONNX node {where}: max abs error {self.error.abs:.3g} (scale {self.scale:.3g})"


@dataclass
class BisectReport:
    model: str
    target: str
    pipeline: str
    culprit: str | None  # "import", a pass label such as "fold-constants{max-size=8}", or None
    step: int | None  # 1-based position of the culprit pass in the pipeline (0 for import)
    passes_before: str = ""
    changed_origins: list[str] = field(default_factory=list)  # ONNX origins of nodes the pass added or removed
    first_divergence: Divergence | None = None
    outputs: dict[str, Error] = field(default_factory=dict)  # per output, after the culprit
    error: str | None = None  # when the culprit pass raised instead of diverging

    @property
    def ok(self) -> bool:
        return self.culprit is None

    def format(self) -> str:
        lines = [f"bisect {self.model} --target {self.target}  pipeline: {self.pipeline or '(none)'}"]
        if self.culprit is None:
            lines.append("no divergence: every pass keeps the outputs within tolerance of the unoptimized graph")
            return "\n".join(lines)
        if self.culprit == "import":
            lines.append("the unoptimized graph already differs from ONNX Runtime: the divergence is in "
                         "import or an op's reference, not in a pass")
        else:
            lines.append(f"first diverging pass: {self.culprit} (step {self.step}); passes before it: "
                         f"{self.passes_before or '(none)'}")
        if self.error:
            lines.append(f"  the pass failed: {self.error}")
        if self.changed_origins:
            shown = self.changed_origins[:20]
            more = len(self.changed_origins) - len(shown)
            lines.append("  nodes it changed (ONNX origin): " + ", ".join(shown) + (f", ... ({more} more)" if more else ""))
        if self.first_divergence is not None:
            lines.append("  first diverging value: " + self.first_divergence.describe())
        for name, e in self.outputs.items():
            lines.append(f"  output {name}: max abs error {e.abs:.3g}, rel {e.rel:.3g}" + (f" ({e.note})" if e.note else ""))
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.format()


def changed_nodes(before: Graph, after: Graph) -> list[str]:
    """ONNX origins of nodes a pass added or removed (a changed node counts as both), sorted, unique."""
    from collections import Counter
    keys_before = Counter(_node_key(n) for n in before.nodes)
    keys_after = Counter(_node_key(n) for n in after.nodes)
    origins: set[str] = set()
    for key in (keys_before - keys_after) + (keys_after - keys_before):
        origins.update(key[1] or ("(no origin)",))
    return sorted(origins)


def matched_arrays(before: Graph, env_before: dict, after: Graph, env_after: dict):
    """For each result of `after` that `match_values` matches, in node order: (its node, the matched
    Value of `before`, the `after` array laid out as the reference, the reference array). `env_*`:
    id(Value) -> array, as `run_all_values` gives."""
    matched = match_values(before, after)
    for node in after.nodes:
        for o in node.outputs:
            if id(o) in matched:
                ref, perm = matched[id(o)]
                got = env_after[id(o)]
                yield node, ref, got if perm is None else np.transpose(got, perm), env_before[id(ref)]


def first_divergence(before: Graph, after: Graph, feeds: dict[str, np.ndarray],
                     rtol=None, atol=None) -> Divergence | None:
    """The first value of `after` (in its node order) that differs from its match in `before`
    (`match_values`: by ONNX origin group; values with no match are skipped)."""
    env_before, env_after = run_all_values(before, feeds), run_all_values(after, feeds)
    for node, ref, got, exp in matched_arrays(before, env_before, after, env_after):
        err = compare(got, exp)
        scale = output_scale(exp)
        if not within(err, ref.type.dtype, scale, rtol, atol):
            return Divergence(node.op, node.origin, err, scale)
    return None


def _compare_outputs(got: dict[str, np.ndarray], expected: dict[str, np.ndarray], graph: Graph,
                     rtol, atol) -> tuple[bool, dict[str, Error]]:
    errors, ok = {}, True
    for name, value in zip(graph.output_names, graph.outputs):
        err = compare(got[name], expected[name])
        errors[name] = err
        ok = ok and within(err, value.type.dtype, output_scale(expected[name]), rtol, atol)
    return ok, errors


class _Diverged(Exception):
    """Raised by `_Bisect` at the first pass after which the outputs diverge:
    args (errors per output, changed origins, first divergence)."""


class _Bisect(Instrument):
    """After each pass, the interpreter's outputs against the unoptimized graph's; at the first
    divergence it raises `_Diverged` with what the report needs. `step`: the pass running."""

    def __init__(self, feeds, reference, graph, rtol, atol):
        self.feeds, self.reference, self.graph, self.rtol, self.atol = feeds, reference, graph, rtol, atol
        self.step, self.before = 0, None

    def before_pass(self, step, label, graph):
        self.step, self.before = step, graph.copy()

    def after_pass(self, step, label, graph, record):
        from .interpreter import interpret
        ok, errors = _compare_outputs(interpret(graph, self.feeds), self.reference, self.graph, self.rtol, self.atol)
        if not ok:
            raise _Diverged(errors, changed_nodes(self.before, graph),
                            first_divergence(self.before, graph, self.feeds, self.rtol, self.atol))


def bisect(model: Any, target: str = "host", level: int | None = 2, passes: str | None = None,
           inputs: dict[str, np.ndarray] | None = None, input_shapes: dict[str, tuple[int, ...]] | None = None,
           seed: int = 0, rtol: float | dict[str, float] | None = None,
           atol: float | dict[str, float] | None = None, check_import: bool = True,
           precision: str | None = None) -> BisectReport:
    """Find the first pass after which the interpreter's outputs leave the unoptimized graph's.

    The pipeline (`passes`, or the target's for `level`) runs on a copy of the graph with a
    bisecting instrument: after each pass, the interpreter's outputs are compared with the
    unoptimized graph's. At the
    first divergence the report names the pass, the ONNX origins of the nodes it added or removed,
    and the first intermediate value (matched by producer op and origin) that differs. A pass that
    raises is reported the same way, with its error. With `check_import`, the unoptimized graph is
    first compared with ONNX Runtime; a divergence there is reported as culprit "import".
    `precision`: as for `verify_model`.
    """
    from .interpreter import interpret
    from .onnx_import import import_onnx
    from .passmanager import PassManager, VerifyIR, format_pipeline, parse_pipeline, resolve_pipeline

    pipeline = resolve_pipeline(target, level, passes, precision)
    rtol, atol = precision_tolerance(precision, rtol, atol)
    items = parse_pipeline(pipeline)
    graph = import_onnx(model, input_shapes)
    feeds = dict(inputs) if inputs is not None else random_inputs(graph, seed)
    label = _model_label(model)
    reference = interpret(graph, feeds)

    if check_import:
        ok, errors = _compare_outputs(reference, run_onnxruntime(model, feeds), graph, rtol, atol)
        if not ok:
            return BisectReport(label, target, pipeline, "import", 0, outputs=errors)

    watch = _Bisect(feeds, reference, graph, rtol, atol)
    try:
        PassManager(pipeline, [VerifyIR(), watch]).run(graph.copy())
    except (PassError, _Diverged) as e:
        step = watch.step
        report = BisectReport(label, target, pipeline, format_pipeline([items[step - 1]]), step,
                              format_pipeline(items[:step - 1]))
        if isinstance(e, PassError):
            report.error = str(e)
        else:
            report.outputs, report.changed_origins, report.first_divergence = e.args
        return report
    return BisectReport(label, target, pipeline, None, None)
