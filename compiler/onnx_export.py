"""ONNX export: an edgec Graph written as an ONNX model, built with onnx_graphsurgeon.

    export_onnx(graph, "model.qdq.onnx")     # the file, written whole or not at all (edgec.files)
    model = to_onnx(graph)                   # the onnx.ModelProto

It serves int8 quantization, whose QDQ graph (the fp32 graph after the passes up to
fuse-activation, NCHW, with quantize_linear -> dequantize_linear pairs and int8 weights
dequantized per output channel) users run in ONNX Runtime to check it. The opset is 17 by
default: the lowest with per-axis int8 QuantizeLinear/DequantizeLinear (13), HardSwish (14) and
LayerNormalization (17). Opsets 17 to 21 give the same nodes; 16-bit quantization needs 21.

| IR op | ONNX |
|---|---|
| `conv` | Conv, then the fused activation as node(s) of its own |
| `dense` | Gemm transB=1 with the bias (an input of rank other than 2 reshaped to 2-D and back), then the activation |
| `matmul` | MatMul (Transpose of the last two axes for transpose_a/b), then the activation |
| activations, fused or ops | relu, sigmoid, tanh, hard_sigmoid, hard_swish, leaky_relu: their op; clip: Clip with min and max inputs; silu: x * Sigmoid(x); gelu, gelu_tanh: their formulas |
| `ONE_TO_ONE` | the ONNX op of the same meaning, with the listed attributes |
| `reduce_*` (`REDUCTIONS`) | Reduce*: axes an input from opset 18 (ReduceSum: 13), an attribute before |
| `avg_pool` | AveragePool (dilations other than 1 from opset 19) |
| `softmax`, `log_softmax`, `hardmax` | Softmax, LogSoftmax, Hardmax; coerce_2d: Reshape to 2-D around it |
| `reshape`, `expand`, `split`, `slice`, `pad`, `cast` | the ONNX op, with its attributes as initializers |
| `quantize_linear`, `dequantize_linear` | QuantizeLinear, DequantizeLinear: scale and zero point scalars per tensor, 1-D with `axis` per axis; the zero point has the integer dtype (int32, zero, for a bias) |
| `qlinear_conv`, `qlinear_matmul`, `matmul_integer` | QLinearConv, QLinearMatMul, MatMulInteger |
| `qlinear_matmul` with a bias | QLinearMatMul takes none: MatMulInteger, Add, Cast, Mul by the requantize multiplier, QuantizeLinear with scale 1: edgec's arithmetic exactly |

Attributes that are empty lists are left out (they mean ONNX's defaults).

Refused, with an UnsupportedError naming the node(s): ops without an export (every such op type
and its nodes in one message, `unsupported` on the error as for import; `fused` and
`fused_elementwise` nodes come from fuse-elementwise / fuse-epilogue, so export before them), the
NHWC layout (export before convert-layout), what the opset cannot express (16-bit quantization
below 21, avg_pool dilations and pad mode wrap below 19, noop_with_empty_axes below 18), graph
input and output names that repeat.

Names: graph inputs and outputs keep theirs; the ONNX node of an IR node is named after its
ONNX origin (joined with '+', else its op), each of several `<name>/<OpType>`, made unique with
`_2`, `_3`, ... (an output's Identity: `<output>/Identity`); intermediate tensors are `t0, t1, ...`
and initializers `c0, c1, ...` in graph order, skipping the user's names. The same graph gives
the same bytes.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from .errors import EdgecError, UnsupportedError
from .files import write_bytes
from .ir import DTYPES, Graph, Node, Value
from .onnx_import import ONNX_DTYPE_OF
from .ops.elementwise import _clip_bounds
from .ops.quant import _multiplier

OPSET = 17
MIN_OPSET, MAX_OPSET = 17, 21
INT64_MIN = np.iinfo(np.int64).min

# IR op -> (ONNX op type, the attributes it takes as they are; inputs are passed in order)
ONE_TO_ONE: dict[str, tuple[str, tuple[str, ...]]] = {
    "add": ("Add", ()), "sub": ("Sub", ()), "mul": ("Mul", ()), "div": ("Div", ()),
    "min": ("Min", ()), "max": ("Max", ()), "pow": ("Pow", ()),
    "equal": ("Equal", ()), "less": ("Less", ()), "greater": ("Greater", ()),
    "and": ("And", ()), "or": ("Or", ()), "not": ("Not", ()), "where": ("Where", ()),
    "exp": ("Exp", ()), "log": ("Log", ()), "sqrt": ("Sqrt", ()), "erf": ("Erf", ()), "neg": ("Neg", ()),
    "abs": ("Abs", ()), "reciprocal": ("Reciprocal", ()), "floor": ("Floor", ()), "ceil": ("Ceil", ()),
    "round": ("Round", ()), "elu": ("Elu", ("alpha",)), "softplus": ("Softplus", ()),
    "prelu": ("PRelu", ()), "identity": ("Identity", ()),
    "transpose": ("Transpose", ("perm",)), "concat": ("Concat", ("axis",)), "gather": ("Gather", ("axis",)),
    "batch_norm": ("BatchNormalization", ("epsilon",)),
    "layer_norm": ("LayerNormalization", ("axis", "epsilon")),
    "max_pool": ("MaxPool", ("kernel_shape", "strides", "pads", "dilations", "ceil_mode")),
    "global_avg_pool": ("GlobalAveragePool", ()), "global_max_pool": ("GlobalMaxPool", ()),
    "argmax": ("ArgMax", ("axis", "keepdims", "select_last_index")),
    "argmin": ("ArgMin", ("axis", "keepdims", "select_last_index")),
}
REDUCTIONS = {"reduce_sum": "ReduceSum", "reduce_mean": "ReduceMean", "reduce_max": "ReduceMax",
              "reduce_min": "ReduceMin", "reduce_prod": "ReduceProd", "reduce_l1": "ReduceL1", "reduce_l2": "ReduceL2",
              "reduce_log_sum": "ReduceLogSum", "reduce_log_sum_exp": "ReduceLogSumExp",
              "reduce_sum_square": "ReduceSumSquare"}
# Activations: IR name -> (ONNX op type, its attributes from activation_params in order)
SIMPLE_ACTIVATIONS: dict[str, tuple[str, tuple[str, ...]]] = {
    "relu": ("Relu", ()), "sigmoid": ("Sigmoid", ()), "tanh": ("Tanh", ()), "hard_swish": ("HardSwish", ()),
    "hard_sigmoid": ("HardSigmoid", ("alpha", "beta")), "leaky_relu": ("LeakyRelu", ("alpha",)),
}


def export_onnx(graph: Graph, path: str | Path, opset: int = OPSET, what: str = "export_onnx") -> None:
    """Write `graph` as an ONNX model to `path`, whole or not at all; `what` starts the message of
    an error about the path (the CLI passes its option, "quantize -o")."""
    data = to_onnx(graph, opset).SerializeToString(deterministic=True)
    write_bytes(Path(path), data, what)


def to_onnx(graph: Graph, opset: int = OPSET):
    """`graph` as an onnx.ModelProto (checked by onnx.checker)."""
    import onnx
    import onnx_graphsurgeon as gs
    from .verifier import verify

    if not MIN_OPSET <= opset <= MAX_OPSET:
        raise UnsupportedError(f"ONNX export to opset {opset} is not supported; choose one of "
                               f"{MIN_OPSET} to {MAX_OPSET} (default {OPSET})")
    verify(graph)
    _check_supported(graph)
    ex = _Exporter(graph, opset)
    for node in graph.nodes:
        ex.convert(node)
    outputs = ex.outputs()
    gs_graph = gs.Graph(nodes=ex.nodes, inputs=ex.inputs, outputs=outputs, name=graph.name, opset=opset,
                        producer_name="edgec", producer_version=__version__)
    model = gs.export_onnx(gs_graph)
    model.ir_version = onnx.helper.find_min_ir_version_for([onnx.helper.make_opsetid("", opset)])
    if model.ByteSize() >= 1 << 31:
        raise EdgecError(f"the ONNX model would take {model.ByteSize()} bytes, more than the 2 GiB a "
                         "protobuf file can hold; ONNX export writes no external data")
    onnx.checker.check_model(model)
    return model


def _check_supported(graph: Graph) -> None:
    """Every op without an export, with the nodes that use it, in one error."""
    unsupported: dict[str, list[str]] = {}
    for i, node in enumerate(graph.nodes):
        if node.op not in EXPORTERS:
            unsupported.setdefault(node.op, []).append("+".join(node.origin) or f"#{i}")
    if not unsupported:
        return
    parts = [f"{op} (nodes: {', '.join(names[:10])}{', ...' if len(names) > 10 else ''})"
             for op, names in sorted(unsupported.items())]
    advice = "export a graph without them"
    if unsupported.keys() & {"fused", "fused_elementwise"}:
        advice += ("; fused and fused_elementwise nodes are made by fuse-elementwise and fuse-epilogue, so "
                   "export the graph before those passes")
    err = UnsupportedError(f"the graph uses {len(unsupported)} op type(s) that have no ONNX export: "
                           + "; ".join(parts) + f"; {advice}")
    err.unsupported = unsupported
    raise err


def _fail(node: Node, message: str) -> UnsupportedError:
    return UnsupportedError(f"cannot export {node.describe()} to ONNX: {message}")


class _Exporter:
    """The graphsurgeon graph being built: a tensor for every IR value, unique names."""

    def __init__(self, graph: Graph, opset: int):
        import onnx_graphsurgeon as gs
        self.gs = gs
        self.graph = graph
        self.opset = opset
        self.nodes: list = []
        self.tensors: dict[int, Any] = {}  # id(Value) -> gs tensor
        self.node_names: set[str] = set()
        self.counts = {"t": 0, "c": 0}
        names = [v.name for v in graph.inputs] + list(graph.output_names)
        repeated = sorted(n for n, k in Counter(names).items() if k > 1)
        if repeated:
            raise UnsupportedError(f"ONNX needs unique graph input and output names, but "
                                   f"{', '.join(repr(n) for n in repeated)} names more than one; rename them")
        self.tensor_names = set(names)
        self.inputs = [gs.Variable(v.name, dtype=v.type.np_dtype, shape=list(v.type.shape)) for v in graph.inputs]
        self.tensors.update((id(v), t) for v, t in zip(graph.inputs, self.inputs))

    # ---- names and tensors -------------------------------------------------------------------
    def _fresh(self, prefix: str) -> str:
        """The next `t<N>` or `c<N>` that no user's name takes."""
        while True:
            name = f"{prefix}{self.counts[prefix]}"
            self.counts[prefix] += 1
            if name not in self.tensor_names:
                self.tensor_names.add(name)
                return name

    def const(self, array: Any, dtype: str | None = None):
        """A new initializer."""
        arr = np.asarray(array, dtype=DTYPES[dtype] if dtype else None)
        return self.gs.Constant(self._fresh("c"), np.ascontiguousarray(arr))

    def ints(self, values) -> Any:
        return self.const(np.asarray(list(values), np.int64))

    def scales(self, values: list[float]):
        """A scale initializer: a scalar for one value, 1-D for several (per axis)."""
        return self.const(np.asarray(values, np.float32).reshape(() if len(values) == 1 else -1))

    def zero_points(self, values: list[int], dtype: str):
        return self.const(np.asarray(values, DTYPES[dtype]).reshape(() if len(values) == 1 else -1))

    def tensor(self, v: Value):
        """The tensor of an IR value (its initializer, made on first use, for a constant)."""
        if id(v) not in self.tensors:
            self.tensors[id(v)] = self.const(v.const_value())
        return self.tensors[id(v)]

    def emit(self, op_type: str, inputs: list, attrs: dict | None = None, outputs: int = 1):
        """An ONNX node (named by `convert`); attributes that are empty lists are left out
        (ONNX's defaults). Returns its output tensor (a list when outputs > 1)."""
        outs = [self.gs.Variable(self._fresh("t")) for _ in range(outputs)]
        attrs = {a: v for a, v in (attrs or {}).items() if not (isinstance(v, list) and not v)}
        self.nodes.append(self.gs.Node(op_type, None, attrs, inputs=list(inputs), outputs=outs))
        return outs if outputs > 1 else outs[0]

    def _name_nodes(self, start: int, base: str) -> None:
        """Name the ONNX nodes made for one IR node: `base` for one, `<base>/<OpType>` for each of
        several; `_2`, `_3`, ... where a name is taken."""
        made = self.nodes[start:]
        for n in made:
            name = base if len(made) == 1 else f"{base}/{n.op}"
            unique, k = name, 1
            while unique in self.node_names:
                k += 1
                unique = f"{name}_{k}"
            self.node_names.add(unique)
            n.name = unique

    # ---- nodes -------------------------------------------------------------------------------
    def convert(self, node: Node) -> None:
        start = len(self.nodes)
        if node.attrs.get("layout", "NCHW") != "NCHW":
            raise _fail(node, f"layout {node.attrs['layout']} is not supported (ONNX has NCHW only); "
                              "export the graph before convert-layout")
        outs = EXPORTERS[node.op](self, node, [self.tensor(v) for v in node.inputs])
        outs = outs if isinstance(outs, list) else [outs]
        self.tensors.update((id(v), t) for v, t in zip(node.outputs, outs, strict=True))
        self._name_nodes(start, "+".join(node.origin) or node.op)

    def outputs(self) -> list:
        """The graph outputs, named as in the IR: a node's result is renamed, anything else (an
        input, a constant, a value already output under another name) goes through an Identity."""
        claimed: set[int] = set()
        result = []
        for v, name in zip(self.graph.outputs, self.graph.output_names):
            t = self.tensor(v)
            if not isinstance(t, self.gs.Variable) or not t.inputs or id(t) in claimed:
                t = self.emit("Identity", [t])
                self._name_nodes(len(self.nodes) - 1, f"{name}/Identity")
            claimed.add(id(t))
            t.name, t.dtype, t.shape = name, v.type.np_dtype, list(v.type.shape)
            result.append(t)
        return result

    def activation(self, x, name: str, params: list[float], dtype: str):
        """The activation `name` (ACTIVATIONS of edgec.ops.elementwise) applied to x, of IR dtype `dtype`."""
        if name == "":
            return x
        if name in SIMPLE_ACTIVATIONS:
            op_type, attr_names = SIMPLE_ACTIVATIONS[name]
            return self.emit(op_type, [x], dict(zip(attr_names, params)))
        if name == "clip":
            lo, hi = _clip_bounds(dtype, params[0], params[1])
            return self.emit("Clip", [x, self.const(lo, dtype), self.const(hi, dtype)])
        if name == "silu":
            return self.emit("Mul", [x, self.emit("Sigmoid", [x])])
        if name == "gelu":  # 0.5 * x * (1 + erf(x / sqrt(2)))
            erf = self.emit("Erf", [self.emit("Div", [x, self.const(np.sqrt(2), dtype)])])
            inner = self.emit("Add", [erf, self.const(1, dtype)])
        else:  # gelu_tanh: 0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x^3)))
            cube = self.emit("Mul", [self.emit("Mul", [x, x]), x])
            arg = self.emit("Add", [x, self.emit("Mul", [cube, self.const(0.044715, dtype)])])
            tanh = self.emit("Tanh", [self.emit("Mul", [arg, self.const(np.sqrt(2 / np.pi), dtype)])])
            inner = self.emit("Add", [tanh, self.const(1, dtype)])
        return self.emit("Mul", [self.emit("Mul", [x, inner]), self.const(0.5, dtype)])


# ---- converters: fn(exporter, node, input tensors) -> output tensor(s) ---------------------------

def _one_to_one(op_type: str, attr_names: tuple[str, ...]):
    return lambda ex, node, xs: ex.emit(op_type, xs, {a: node.attrs[a] for a in attr_names})


def _activation_op(ex, node, xs):
    """A standalone activation op: the same ONNX nodes as the fused activation."""
    a = node.attrs
    if node.op == "gelu":
        name, params = ("gelu" if a["approximate"] == "none" else "gelu_tanh"), []
    elif node.op == "clip":
        name, params = "clip", [a["min"], a["max"]]
    else:  # the ops' attributes are the activation's params
        names = SIMPLE_ACTIVATIONS[node.op][1] if node.op in SIMPLE_ACTIVATIONS else ()
        name, params = node.op, [a[k] for k in names]
    return ex.activation(xs[0], name, params, node.outputs[0].type.dtype)


def _fused_activation(ex, node, y):
    return ex.activation(y, node.attrs["activation"], node.attrs["activation_params"], node.outputs[0].type.dtype)


def _geometry(attrs: dict) -> dict:
    return {"strides": attrs["strides"], "pads": attrs["pads"], "dilations": attrs["dilations"],
            "group": attrs["group"]}


def _conv(ex, node, xs):
    return _fused_activation(ex, node, ex.emit("Conv", xs, _geometry(node.attrs)))


def _dense(ex, node, xs):
    x, out = node.inputs[0].type, node.outputs[0].type
    a = xs[0] if x.rank == 2 else ex.emit("Reshape", [xs[0], ex.ints([-1, x.shape[-1]])])
    y = ex.emit("Gemm", [a, *xs[1:]], {"transB": 1})
    if x.rank != 2:
        y = ex.emit("Reshape", [y, ex.ints(out.shape)])
    return _fused_activation(ex, node, y)


def _matmul(ex, node, xs):
    operands = []
    for t, v, flag in zip(xs, node.inputs, ("transpose_a", "transpose_b")):
        rank = v.type.rank
        if node.attrs[flag] and rank >= 2:
            t = ex.emit("Transpose", [t], {"perm": [*range(rank - 2), rank - 1, rank - 2]})
        operands.append(t)
    return _fused_activation(ex, node, ex.emit("MatMul", operands))


def _avg_pool(ex, node, xs):
    attrs = {k: node.attrs[k] for k in ("kernel_shape", "strides", "pads", "ceil_mode", "count_include_pad")}
    if any(d != 1 for d in node.attrs["dilations"]):
        if ex.opset < 19:
            raise _fail(node, "average pooling with dilations needs ONNX opset 19; export with opset=19")
        attrs["dilations"] = node.attrs["dilations"]
    return ex.emit("AveragePool", xs, attrs)


def _reduce(ex, node, xs):
    """Axes as an input from ReduceSum-13 and the others' opset 18, an attribute before."""
    op_type, a = REDUCTIONS[node.op], node.attrs
    attrs = {"keepdims": a["keepdims"]}
    if op_type != "ReduceSum" and ex.opset < 18:
        if a["noop_with_empty_axes"] and not a["axes"]:
            raise _fail(node, "noop_with_empty_axes needs ONNX opset 18; export with opset=18")
        return ex.emit(op_type, xs, {"axes": a["axes"], **attrs})
    if a["noop_with_empty_axes"]:
        attrs["noop_with_empty_axes"] = 1
    return ex.emit(op_type, [xs[0], *([ex.ints(a["axes"])] if a["axes"] else [])], attrs)


def _softmax(op_type: str):
    def convert(ex, node, xs):
        shape = node.inputs[0].type.shape
        axis = node.attrs["axis"] % len(shape)
        if not node.attrs["coerce_2d"]:
            return ex.emit(op_type, xs, {"axis": axis})
        flat = ex.emit("Reshape", [xs[0], ex.ints([int(np.prod(shape[:axis])), -1])])
        return ex.emit("Reshape", [ex.emit(op_type, [flat], {"axis": 1}), ex.ints(shape)])
    return convert


def _slice(ex, node, xs):
    a = node.attrs
    # IR ends are normalised: -1 with a negative step means "through index 0", which ONNX spells INT64_MIN.
    ends = [INT64_MIN if e == -1 and s < 0 else e for e, s in zip(a["ends"], a["steps"])]
    return ex.emit("Slice", [xs[0], ex.ints(a["starts"]), ex.ints(ends), ex.ints(a["axes"]), ex.ints(a["steps"])])


def _pad(ex, node, xs):
    mode = node.attrs["mode"]
    if mode == "wrap" and ex.opset < 19:
        raise _fail(node, "pad mode wrap needs ONNX opset 19; export with opset=19")
    ins = [xs[0], ex.ints(node.attrs["pads"])]
    if mode == "constant":
        ins.append(ex.const(node.attrs["value"], node.inputs[0].type.dtype))
    return ex.emit("Pad", ins, {"mode": mode})


def _qdq_inputs(ex, node, x, dtype: str) -> tuple[list, dict]:
    """(inputs, attributes) of QuantizeLinear / DequantizeLinear of x, with `dtype` its integer side."""
    a = node.attrs
    if dtype in ("u16", "i16") and ex.opset < 21:
        raise _fail(node, f"{dtype} quantization needs ONNX opset 21; export with opset=21")
    n = len(a["scale"])
    inputs = [x, ex.scales(a["scale"]), ex.zero_points(a["zero_point"] or [0] * n, dtype)]
    return inputs, {"axis": a["axis"]} if n > 1 else {}


def _quantize(ex, node, xs):
    return ex.emit("QuantizeLinear", *_qdq_inputs(ex, node, xs[0], node.attrs["dtype"]))


def _dequantize(ex, node, xs):
    dtype = node.inputs[0].type.dtype
    if dtype == "i32" and any(node.attrs["zero_point"]):
        raise _fail(node, f"ONNX dequantizes int32 with a zero point of 0, not {node.attrs['zero_point']}")
    return ex.emit("DequantizeLinear", *_qdq_inputs(ex, node, xs[0], dtype))


def _qlinear_conv(ex, node, xs):
    a = node.attrs
    x, w = node.inputs[0].type.dtype, node.inputs[1].type.dtype
    ins = [xs[0], ex.scales([a["x_scale"]]), ex.zero_points([a["x_zero_point"]], x),
           xs[1], ex.scales(a["w_scale"]), ex.zero_points(a["w_zero_point"], w),
           ex.scales([a["y_scale"]]), ex.zero_points([a["y_zero_point"]], a["dtype"]), *xs[2:]]
    return ex.emit("QLinearConv", ins, _geometry(a))


def _qlinear_matmul(ex, node, xs):
    a = node.attrs
    x, w = node.inputs[0].type.dtype, node.inputs[1].type.dtype
    if len(xs) == 2:
        return ex.emit("QLinearMatMul", [
            xs[0], ex.scales([a["a_scale"]]), ex.zero_points([a["a_zero_point"]], x),
            xs[1], ex.scales(a["b_scale"]), ex.zero_points(a["b_zero_point"], w),
            ex.scales([a["y_scale"]]), ex.zero_points([a["y_zero_point"]], a["dtype"])])
    # With a bias, which QLinearMatMul does not take: edgec's arithmetic written out,
    # y = saturate(round_half_even(float32(a @ b + bias) * multiplier) + y_zero_point).
    acc = ex.emit("Add", [_matmul_integer(ex, xs, [a["a_zero_point"]], a["b_zero_point"], x, w), xs[2]])
    scaled = ex.emit("Mul", [ex.emit("Cast", [acc], {"to": ONNX_DTYPE_OF["f32"]}),
                             ex.const(_multiplier(a["a_scale"], a["b_scale"], a["y_scale"]))])
    return ex.emit("QuantizeLinear", [scaled, ex.scales([1.0]), ex.zero_points([a["y_zero_point"]], a["dtype"])])


def _matmul_integer(ex, xs, a_zero_point: list[int], b_zero_point: list[int], a_dtype: str, b_dtype: str):
    return ex.emit("MatMulInteger", [xs[0], xs[1], ex.zero_points(a_zero_point, a_dtype),
                                     ex.zero_points(b_zero_point, b_dtype)])


EXPORTERS: dict[str, Any] = {
    **{op: _one_to_one(*spec) for op, spec in ONE_TO_ONE.items()},
    **{op: _activation_op for op in (*SIMPLE_ACTIVATIONS, "clip", "silu", "gelu")},
    **{op: _reduce for op in REDUCTIONS},
    "conv": _conv, "dense": _dense, "matmul": _matmul, "avg_pool": _avg_pool,
    "softmax": _softmax("Softmax"), "log_softmax": _softmax("LogSoftmax"), "hardmax": _softmax("Hardmax"),
    "reshape": lambda ex, node, xs: ex.emit("Reshape", [xs[0], ex.ints(node.attrs["shape"])]),
    "expand": lambda ex, node, xs: ex.emit("Expand", [xs[0], ex.ints(node.attrs["shape"])]),
    "split": lambda ex, node, xs: ex.emit("Split", [xs[0], ex.ints(node.attrs["sizes"])],
                                          {"axis": node.attrs["axis"]}, outputs=len(node.attrs["sizes"])),
    "slice": _slice, "pad": _pad,
    "cast": lambda ex, node, xs: ex.emit("Cast", xs, {"to": ONNX_DTYPE_OF[node.attrs["to"]]}),
    "quantize_linear": _quantize, "dequantize_linear": _dequantize,
    "qlinear_conv": _qlinear_conv, "qlinear_matmul": _qlinear_matmul,
    "matmul_integer": lambda ex, node, xs: _matmul_integer(
        ex, xs, node.attrs["a_zero_point"], node.attrs["b_zero_point"],
        node.inputs[0].type.dtype, node.inputs[1].type.dtype),
}
