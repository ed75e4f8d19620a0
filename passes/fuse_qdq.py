"""fuse-qdq: QDQ patterns (the format ONNX Runtime's quantizer and exporters write, and what
`edgec.quantize` produces) become integer ops, so a quantized model runs integer kernels instead
of float ones between quantize/dequantize round trips.

In QDQ form a quantized tensor is `dequantize_linear(q)` of an integer `q`, and a quantized
result is `quantize_linear(op(...))`. Each rule replaces `quantize_linear(op(dequantize_linear..))`
by one integer node computing the same thing (up to one step of the output's quantization, from
float rounding):

- conv: `q(conv(dq(x), dq(W), [bias]))` -> `qlinear_conv(x, W, bias_i32)` where W is a constant
  integer weight quantized per tensor or per output channel (axis 0) and x, the result per tensor;
  the bias is `dq(B)` of an int32 constant or a float constant, rescaled to x_scale * w_scale[c]
  (exact when it already has that scale, as ONNX Runtime writes it); any group (depthwise too),
  NCHW;
- matmul: `q(dense(dq(x), dq(W)[, bias]))`, `q(matmul(dq(x), dq(W)))` (transpose_b 0 or 1) and
  `q(add(matmul(dq(x), dq(W)), bias))` (a Gemm as imported) -> `qlinear_matmul(x, W as [K, N],
  bias_i32)`, with W a constant 2-D weight per tensor or per output column;
- the linear op's activation, its fused `activation` attribute or a `relu`/`clip` node between it
  and the quantize, is kept only when the output's quantized range implies it:
  `relu` when the zero point is the lowest value of the output type, `clip{lo, hi}` when the
  whole quantized range lies in [lo, hi] (saturation then clamps exactly); any other activation
  is refused;
- add and mul of two per-tensor quantized tensors -> `qlinear_add` / `qlinear_mul`, with a
  relu/clip node before the quantize folded when implied (ResNet's add + relu);
  `q(global_avg_pool(dq(x)))` -> `qlinear_global_avg_pool` (NCHW); `q(op(dq(x)))` for sigmoid,
  leaky_relu and 2-D NCHW avg_pool -> `qlinear_sigmoid` / `qlinear_leaky_relu` / `qlinear_avg_pool`;
  `q(concat(dq(x1), .., dq(xn)))` -> `qlinear_concat` (each input with its own parameters);
- data movement and max: `q(op(dq(x)))` -> `op(x)` on the integers when the quantize and the
  dequantize have the same scale, zero point and type (exact: the op moves or compares values,
  and dequantize is monotonic): reshape, flatten, squeeze, unsqueeze, transpose, slice, max_pool,
  global_max_pool;
- `q(dq(x))` with the same parameters -> `x`.
Refused (reason given): a weight that is not a constant, per-axis activation parameters, a weight
quantized along another axis, u16/i16 types, an activation the quantized range does not imply,
and a linear op whose result has other uses. What is left keeps the float ops between the
quantize/dequantize nodes (fake quantization), which is correct, only slower.

Statistics: one per rewrite, named by the rule (`conv`, `matmul`, `add`, ...), and `refused-<rule>`.
"""

from __future__ import annotations

import numpy as np

from edgec.ir import Graph
from edgec.ops.quant import INT8
from edgec.passmanager import register_pass
from edgec.rewrite import Either, Op, Rule, RewritePass, Var, merged_origin

_RANGE = {"u8": (0, 255), "i8": (-128, 127)}


def _zp(node) -> list[int]:
    a = node.attrs
    return a["zero_point"] or [0] * len(a["scale"])


def _per_tensor(node) -> tuple[float, int] | None:
    """(scale, zero point) of a per-tensor quantize/dequantize, or None."""
    a = node.attrs
    return (a["scale"][0], _zp(node)[0]) if len(a["scale"]) == 1 else None


def _dq(name: str):
    return Op("dequantize_linear", Var(name), name=f"dq_{name}")


def _dq_const(name: str):
    return Op("dequantize_linear", Var(name), name=f"dq_{name}",
              where=lambda n: n.inputs[0].const is not None)


def _origin(m) -> tuple[str, ...]:
    """The origin of the integer node: the matched nodes (and the bias's dequantize, which the
    rewrite leaves unused) but the dequantizes of its activation inputs, which belong to the nodes
    that produced them."""
    bias = m.values["bias"].producer() if "bias" in m.values else None
    if bias is not None and bias.op == "dequantize_linear" and bias not in m.nodes:
        m.nodes.append(bias)
    inputs = {id(m.node(k)) for k in ("dq_x", "dq_a", "dq_b") if k in m.named_nodes}
    return merged_origin(*sorted((n for n in m.nodes if id(n) not in inputs), key=Graph.order_key))


def _out_params(m):
    """(scale, zero point, dtype) of the root quantize, or a reason."""
    q = m.root
    p = _per_tensor(q)
    if p is None:
        return "the output is quantized per axis"
    if q.attrs["dtype"] not in INT8:
        return f"the output type {q.attrs['dtype']} is not u8 or i8"
    return (*p, q.attrs["dtype"])


def _activation(m) -> tuple[str, list[float]] | str:
    """The activation of the matched linear op: its fused attribute, or the relu/clip node between
    it and the quantize (as PyTorch's QDQ export writes it); a reason when it has both."""
    lin = m.node("lin")
    act, params = lin.attrs.get("activation", ""), list(lin.attrs.get("activation_params", []))
    if "act" in m.named_nodes:
        node = m.node("act")
        if act:
            return f"the {lin.op} has the activation '{act}' and a '{node.op}' after it"
        act, params = node.op, ([node.attrs["min"], node.attrs["max"]] if node.op == "clip" else [])
    return act, params


def _act_implied(m, scale: float, zp: int, dtype: str) -> str | None:
    """None when saturating to the output's range does what the linear op's activation does."""
    found = _activation(m)
    if isinstance(found, str):
        return found
    act, params = found
    lo_q, hi_q = _RANGE[dtype]
    lo, hi = (lo_q - zp) * scale, (hi_q - zp) * scale
    if act == "":
        return None
    if act == "relu" and zp == lo_q:
        return None
    if act == "clip" and lo >= params[0] - 1e-6 * abs(params[0]) and hi <= params[1] * (1 + 1e-6) + 1e-12:
        return None
    return (f"the fused activation '{act}' is not implied by the output range "
            f"[{lo:.6g}, {hi:.6g}] (scale {scale:.6g}, zero point {zp})")


def _input_check(m, names=("x",)) -> str | None:
    for name in names:
        dq = m.node(f"dq_{name}")
        if _per_tensor(dq) is None:
            return f"the input '{name}' is dequantized per axis"
        if dq.inputs[0].type.dtype not in INT8:
            return f"the input '{name}' is {dq.inputs[0].type}, not u8 or i8"
    return None


def _weight(m, axis: int, n: int):
    """(int weight, scales, zero points) of the dequantized constant W, or a reason; per tensor or
    per `axis` with n values."""
    dq = m.node("dq_w")
    w = dq.inputs[0]
    if w.type.dtype not in INT8:
        return f"the weight is {w.type}, not u8 or i8"
    scale, zp = dq.attrs["scale"], _zp(dq)
    if len(scale) > 1 and (dq.attrs["axis"] % w.type.rank != axis or len(scale) != n):
        return f"the weight is quantized along axis {dq.attrs['axis']}, not the output channels (axis {axis})"
    return w, scale, zp


def _bias_i32(bias, x_scale: float, w_scale: list[float], n: int):
    """The bias as an int32 array in units of x_scale * w_scale[c], or a reason; None when there is
    none. (An array, not a constant: the check and the rewrite both call this; only the rewrite
    adds the constant.)"""
    if bias is None:
        return None
    unit = np.float32(x_scale) * np.asarray(w_scale, np.float32)
    unit = np.broadcast_to(unit, (n,))
    p = bias.producer()
    if p is not None and p.op == "dequantize_linear" and p.inputs[0].const is not None:
        b = p.inputs[0].const_value()
        if b.dtype != np.int32 or any(_zp(p)):
            return f"the bias is dequantized from {p.inputs[0].type} with zero point {_zp(p)}, not int32"
        if len(p.attrs["scale"]) > 1 and b.ndim != 1:
            return f"the bias {p.inputs[0].type} is not 1-D"
        scale = np.broadcast_to(np.asarray(p.attrs["scale"], np.float32), (n,))
        if np.array_equal(scale, unit):
            values = b.reshape(-1).astype(np.int64)
        else:
            values = np.rint(b.reshape(-1).astype(np.float64) * scale / unit)
    elif bias.const is not None and bias.type.dtype == "f32":
        values = np.rint(bias.const_value().reshape(-1).astype(np.float64) / unit)
    else:
        return "the bias is neither a constant nor a dequantized int32 constant"
    if values.size != n:
        return f"the bias has {values.size} values, not {n}"
    if np.abs(values).max(initial=0) >= 2 ** 31:
        return "the bias does not fit in int32 at scale x_scale * w_scale"
    return values.astype(np.int32)


# ---- conv --------------------------------------------------------------------------------------

def _quantized(inner: Op) -> Op:
    """quantize_linear(inner) or quantize_linear(relu|clip(inner))."""
    return Op("quantize_linear", Either(Op(("relu", "clip"), inner, name="act"), inner))


CONV = _quantized(Op("conv", _dq("x"), _dq_const("w"), name="lin"))
CONV_BIAS = _quantized(Op("conv", _dq("x"), _dq_const("w"), Var("bias"), name="lin"))


def _linear_out(m):
    """(scale, zero point, dtype) of a linear op's quantized output, or a reason: per-tensor
    input, and an activation the output range implies."""
    out = _out_params(m)
    if isinstance(out, str):
        return out
    return _input_check(m) or _act_implied(m, *out) or out


def _conv_parts(m):
    """Everything qlinear_conv needs, or a reason."""
    lin = m.node("lin")
    out = _linear_out(m)
    if isinstance(out, str):
        return out
    if lin.attrs.get("layout", "NCHW") != "NCHW" or lin.output.type.rank != 4:
        return "only 2-D NCHW convolutions are quantized"
    o = lin.output.type.shape[1]
    weight = _weight(m, 0, o)
    if isinstance(weight, str):
        return weight
    x_scale, x_zp = _per_tensor(m.node("dq_x"))
    bias = _bias_i32(m.values.get("bias"), x_scale, weight[1], o)
    if isinstance(bias, str):
        return bias
    return out, weight, (x_scale, x_zp), bias


def _conv_check(m):
    parts = _conv_parts(m)
    return parts if isinstance(parts, str) else None


def _conv_rewrite(graph, m):
    (y_scale, y_zp, dtype), (w, w_scale, w_zp), (x_scale, x_zp), bias = _conv_parts(m)
    lin = m.node("lin")
    # the float conv's empty lists mean their defaults
    attrs = {"strides": lin.attrs["strides"] or [1, 1], "pads": lin.attrs["pads"] or [0, 0, 0, 0],
             "dilations": lin.attrs["dilations"] or [1, 1], "group": lin.attrs["group"]}
    attrs.update(x_scale=x_scale, x_zero_point=x_zp, w_scale=list(w_scale), w_zero_point=list(w_zp),
                 y_scale=y_scale, y_zero_point=y_zp, dtype=dtype)
    inputs = [m["x"], w] + ([graph.const(bias)] if bias is not None else [])
    return [graph.add("qlinear_conv", inputs, attrs, origin=_origin(m)).output]


# ---- matmul, dense, Gemm (matmul + add) --------------------------------------------------------

def _plain_matmul(n) -> bool:
    return n.attrs.get("transpose_a", 0) == 0


MATMUL = _quantized(Op("matmul", _dq("x"), _dq_const("w"), name="lin", where=_plain_matmul))
GEMM = _quantized(Op("add", Op("matmul", _dq("x"), _dq_const("w"), name="lin", where=_plain_matmul),
                     Var("bias"), commutative=True, name="add"))
DENSE = _quantized(Op("dense", _dq("x"), _dq_const("w"), name="lin"))
DENSE_BIAS = _quantized(Op("dense", _dq("x"), _dq_const("w"), Var("bias"), name="lin"))


def _matmul_parts(m):
    """Everything qlinear_matmul needs, or a reason."""
    lin = m.node("lin")
    out = _linear_out(m)
    if isinstance(out, str):
        return out
    if "add" in m.named_nodes and lin.attrs.get("activation"):
        return f"the matmul has the activation '{lin.attrs['activation']}' before the bias add"
    w_type = m.node("dq_w").inputs[0].type
    if w_type.rank != 2:
        return f"the weight {w_type} is not 2-D"
    # as [N, K] (dense, matmul with transpose_b) or [K, N]
    n_k = lin.op == "dense" or lin.attrs.get("transpose_b", 0) == 1
    n = w_type.shape[0] if n_k else w_type.shape[1]
    weight = _weight(m, 0 if n_k else 1, n)
    if isinstance(weight, str):
        return weight
    x_scale, x_zp = _per_tensor(m.node("dq_x"))
    bias = _bias_i32(m.values.get("bias"), x_scale, weight[1], n)
    if isinstance(bias, str):
        return bias
    return out, weight, (x_scale, x_zp), bias, n_k


def _matmul_check(m):
    parts = _matmul_parts(m)
    return parts if isinstance(parts, str) else None


def _matmul_rewrite(graph, m):
    (y_scale, y_zp, dtype), (w, w_scale, w_zp), (x_scale, x_zp), bias, n_k = _matmul_parts(m)
    if n_k:
        w = graph.const(np.ascontiguousarray(w.const_value().T))
    attrs = {"a_scale": x_scale, "a_zero_point": x_zp, "b_scale": list(w_scale), "b_zero_point": list(w_zp),
             "y_scale": y_scale, "y_zero_point": y_zp, "dtype": dtype}
    inputs = [m["x"], w] + ([graph.const(bias)] if bias is not None else [])
    return [graph.add("qlinear_matmul", inputs, attrs, origin=_origin(m)).output]


# ---- add, mul, global average pool ------------------------------------------------------------

def _binary_check(m):
    out = _out_params(m)
    return out if isinstance(out, str) else _input_check(m, ("a", "b")) or _act_implied(m, *out)


def _binary_rewrite(qop: str):
    def rewrite(graph, m):
        y_scale, y_zp, dtype = _out_params(m)
        (a_scale, a_zp), (b_scale, b_zp) = _per_tensor(m.node("dq_a")), _per_tensor(m.node("dq_b"))
        attrs = {"a_scale": a_scale, "a_zero_point": a_zp, "b_scale": b_scale, "b_zero_point": b_zp,
                 "y_scale": y_scale, "y_zero_point": y_zp, "dtype": dtype}
        return [graph.add(qop, [m["a"], m["b"]], attrs, origin=_origin(m)).output]
    return rewrite


def _gap_check(m):
    out = _out_params(m)
    if isinstance(out, str):
        return out
    if m.node("lin").attrs.get("layout", "NCHW") != "NCHW":
        return "only NCHW global average pooling is quantized"
    return _input_check(m)


def _gap_rewrite(graph, m):
    y_scale, y_zp, dtype = _out_params(m)
    x_scale, x_zp = _per_tensor(m.node("dq_x"))
    attrs = {"x_scale": x_scale, "x_zero_point": x_zp, "y_scale": y_scale, "y_zero_point": y_zp, "dtype": dtype}
    return [graph.add("qlinear_global_avg_pool", [m["x"]], attrs, origin=_origin(m)).output]


def _unary_check(m):
    out = _out_params(m)
    if isinstance(out, str):
        return out
    lin = m.node("lin")
    if lin.op == "avg_pool" and (lin.attrs.get("layout", "NCHW") != "NCHW" or lin.output.type.rank != 4
                                 or any(d != 1 for d in lin.attrs.get("dilations", []))):
        return "only 2-D NCHW average pooling without dilation is quantized"
    return _input_check(m)


UNARY_OPS = {"sigmoid": "qlinear_sigmoid", "leaky_relu": "qlinear_leaky_relu", "avg_pool": "qlinear_avg_pool"}


def _unary_rewrite(graph, m):
    y_scale, y_zp, dtype = _out_params(m)
    x_scale, x_zp = _per_tensor(m.node("dq_x"))
    lin = m.node("lin")
    attrs = {"x_scale": x_scale, "x_zero_point": x_zp, "y_scale": y_scale, "y_zero_point": y_zp, "dtype": dtype}
    if lin.op == "leaky_relu":
        attrs["alpha"] = lin.attrs["alpha"]
    if lin.op == "avg_pool":
        attrs.update({k: lin.attrs[k] for k in ("kernel_shape", "strides", "pads", "count_include_pad", "ceil_mode")})
    return [graph.add(UNARY_OPS[lin.op], [m["x"]], attrs, origin=_origin(m)).output]


def _concat_inputs(m):
    """The dequantize of each concat input, or a reason."""
    dqs = [v.producer() for v in m.node("lin").inputs]
    if any(p is None or p.op != "dequantize_linear" or _per_tensor(p) is None for p in dqs):
        return "an input of the concat is not dequantized per tensor"
    out = _out_params(m)
    if isinstance(out, str):
        return out
    if any(p.inputs[0].type.dtype != out[2] for p in dqs):
        return f"the concat's inputs are not all {out[2]}"
    return dqs


def _concat_check(m):
    found = _concat_inputs(m)
    return found if isinstance(found, str) else None


def _concat_rewrite(graph, m):
    y_scale, y_zp, dtype = _out_params(m)
    dqs = _concat_inputs(m)
    attrs = {"axis": m.node("lin").attrs["axis"], "scales": [_per_tensor(p)[0] for p in dqs],
             "zero_points": [_per_tensor(p)[1] for p in dqs], "y_scale": y_scale, "y_zero_point": y_zp,
             "dtype": dtype}
    return [graph.add("qlinear_concat", [p.inputs[0] for p in dqs], attrs, origin=_origin(m)).output]


# ---- integers through data movement, q(dq(x)) -------------------------------------------------

PASS_THROUGH = ("global_max_pool", "max_pool", "reshape", "slice", "transpose")


def _same_params(m) -> str | None:
    q, dq = m.root, m.node("dq_x")
    if q.attrs["scale"] != dq.attrs["scale"] or _zp(q) != _zp(dq) or q.attrs["dtype"] != dq.inputs[0].type.dtype:
        return "the quantize and the dequantize have different parameters"
    if len(q.attrs["scale"]) > 1:
        return "the parameters are per axis"
    return None


def _move_rewrite(graph, m):
    lin = m.node("lin")
    return [graph.add(lin.op, [m["x"]], lin.attrs, origin=_origin(m)).output]


def _rule(name, pattern, check, rewrite) -> Rule:
    """A rule whose dequantized inputs may feed other nodes too (a residual branch), but whose op
    (`lin`, and the bias `add` of a Gemm) feeds only the quantize."""
    def guarded(m):
        for key in ("lin", "add", "act"):
            if key in m.named_nodes and m.node(key).output.num_uses() != 1:
                return f"the result of '{m.node(key).op}' is also used elsewhere"
        return check(m)
    return Rule(name, pattern, rewrite, guarded, allow_shared=True)


QOP_RULES = [  # the ops of compiler/ops/qlinear.py
    _rule("add", _quantized(Op("add", _dq("a"), _dq("b"), name="lin")), _binary_check,
          _binary_rewrite("qlinear_add")),
    _rule("mul", _quantized(Op("mul", _dq("a"), _dq("b"), name="lin")), _binary_check,
          _binary_rewrite("qlinear_mul")),
    _rule("global-avg-pool", Op("quantize_linear", Op("global_avg_pool", _dq("x"), name="lin")),
          _gap_check, _gap_rewrite),
    _rule("unary", Op("quantize_linear", Op(tuple(UNARY_OPS), _dq("x"), name="lin")), _unary_check, _unary_rewrite),
    _rule("concat", Op("quantize_linear", Op("concat", name="lin", any_inputs=True)), _concat_check,
          _concat_rewrite),
]

RULES = [
    _rule("conv", CONV_BIAS, _conv_check, _conv_rewrite),
    _rule("conv", CONV, _conv_check, _conv_rewrite),
    _rule("gemm", GEMM, _matmul_check, _matmul_rewrite),
    _rule("matmul", MATMUL, _matmul_check, _matmul_rewrite),
    _rule("dense", DENSE_BIAS, _matmul_check, _matmul_rewrite),
    _rule("dense", DENSE, _matmul_check, _matmul_rewrite),
    *QOP_RULES,
    _rule("move", Op("quantize_linear", Op(PASS_THROUGH, _dq("x"), name="lin")), _same_params, _move_rewrite),
    _rule("qdq-pair", Op("quantize_linear", _dq("x")), _same_params, lambda g, m: [m["x"]]),
]


@register_pass
class FuseQDQ(RewritePass):
    name = "fuse-qdq"
    summary = "quantize(op(dequantize ..)) patterns -> integer ops (qlinear_conv, qlinear_matmul, ...)"

    def rules(self):
        return RULES
