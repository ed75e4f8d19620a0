"""Fusion into the linear ops (conv, dense, matmul): padding, batch norm, bias, activation, matmul + add.

fuse-pad (an injective producer folded into its consumer):
- `conv(pad(x, pads, mode="constant", value=0), w[, b])` -> `conv(x, w[, b])` with the pad's
  spatial pads added to the conv's, when the pad leaves the batch and channel axes alone (NCHW:
  axes 0, 1; NHWC: axes 0 and the last) and pads by zero or more (no cropping);
Refused: another mode or a non-zero value, padding of the batch or channel axis, negative pads, a
pad whose result has other uses.

fuse-conv-bn (`batch_norm` after a linear op with constant weights, folded at compile time):
- `batch_norm(conv(x, w[, b]))` -> `conv(x, w * s, (b - mean) * s + beta)` with
  s = scale / sqrt(var + eps) per output channel; NCHW (w OIHW) and NHWC (w OHWI) convs, when the
  batch_norm has the conv's layout;
- `batch_norm(dense(x, w[, b]))` and `batch_norm(matmul(x, W))` with a constant 2-D W (either
  `transpose_b`) -> `dense(x, w', b')`, when the normalized channel axis is the last axis;
Refused (reason given): non-constant weights, bias or batch-norm parameters; a linear op that
already has a fused activation; a layout mismatch; a channel axis other than the features;
a matmul with `transpose_a` or a weight that is not 2-D; a non-float dtype.

fuse-bias (a constant added after a conv or dense becomes its bias):
- `conv(x, w[, b]) + c` where c is constant per output channel (any shape that broadcasts
  along the channel axis only, without growing the result) -> `conv(x, w, b + c)`;
- `dense(x, w[, b]) + c` with c constant per feature (last axis) -> `dense(x, w, b + c)`;
- `matmul(x, W) + c` with a constant 2-D W: a matmul has no bias input, so it becomes
  `dense(x, W as [N, K], c)`, as in fuse-matmul-add (below);
- either operand order of the add.
Refused: a non-constant or not-per-channel addend, an add that broadcasts the result to a larger
shape, a linear op with a fused activation, non-constant weights or bias, and for a matmul the
cases fuse-matmul-add refuses.

fuse-matmul-add:
- `matmul(x, W) + c` with W a constant 2-D matrix ([K, N], or [N, K] with `transpose_b`) and c
  constant per output feature -> `dense(x, W as [N, K], c)`; either operand order of the add.
Refused: `transpose_a`, a non-2-D or non-constant W, a fused activation, an addend that is not
per feature or broadcasts the result.

fuse-activation (the linear op's `activation`/`activation_params` attributes, see
`edgec.ops.elementwise.ACTIVATIONS`):
- conv, matmul or dense followed by `relu`, `clip` (relu6 and any finite bounds), `sigmoid`,
  `hard_sigmoid` (alpha, beta), `hard_swish`, `silu`, `leaky_relu` (alpha), `gelu` (erf form ->
  `gelu`, tanh form -> `gelu_tanh`), `tanh`.
Refused: a linear op that already has an activation, a clip with an infinite bound, a
non-float result.
Every rule refuses when the linear op's result is also used elsewhere (the rewriter's check).
"""

from __future__ import annotations

import numpy as np

from edgec.ir import Graph, is_float
from edgec.ops import ops_with
from edgec.passmanager import register_pass
from edgec.rewrite import Any, Const, Op, Rule, RewritePass, Var

LINEAR = ops_with("anchor")  # conv, dense, matmul


def _const_inputs(node, indices, what):
    for i in indices:
        if i < len(node.inputs) and node.inputs[i].const is None:
            return f"the {node.op} {what[i]} is not a constant"
    return None


def _channel_axis(node) -> int:
    """The axis a conv/batch_norm keeps its channels on."""
    rank = node.output.type.rank
    return rank - 1 if node.attrs.get("layout", "NCHW") == "NHWC" else 1


def _linear_check(lin, need_weight=True):
    """Reasons shared by all rules: float result, no activation yet, constant weight and bias."""
    if not is_float(lin.output.type.dtype):
        return f"the {lin.op} result is {lin.output.type}, not a float tensor"
    if lin.attrs.get("activation"):
        return f"the {lin.op} already has the fused activation '{lin.attrs['activation']}'"
    if need_weight:
        reason = _const_inputs(lin, [1, 2], {1: "weight", 2: "bias"})
        if reason:
            return reason
        if lin.op == "matmul":
            if lin.attrs["transpose_a"]:
                return "the matmul transposes its first operand"
            if lin.inputs[1].type.rank != 2:
                return f"the matmul weight is {lin.inputs[1].type}, not a 2-D matrix"
    return None


def _weight_nk(lin) -> np.ndarray:
    """Weights with the output channels/features on axis 0 (conv OIHW/OHWI, dense [N, K])."""
    w = lin.inputs[1].const
    if lin.op == "matmul":
        return w if lin.attrs["transpose_b"] else w.T
    return w


def _bias_of(lin, n: int) -> np.ndarray:
    if len(lin.inputs) > 2:
        return lin.inputs[2].const.astype(np.float64)
    return np.zeros(n)


def _rebuild(graph: Graph, lin, x, w: np.ndarray, bias: np.ndarray, origin):
    dtype = lin.output.type.np_dtype
    w_c = graph.const(np.ascontiguousarray(w.astype(dtype)))
    b_c = graph.const(np.ascontiguousarray(bias.astype(dtype)))
    if lin.op == "matmul":
        return graph.add("dense", [x, w_c, b_c], {}, origin=origin).output
    return graph.add(lin.op, [x, w_c, b_c], dict(lin.attrs), origin=origin).output


# ---- fuse-conv-bn ------------------------------------------------------------------------------

def _conv_bn_check(m):
    lin, bn = m.node("lin"), m.node("bn")
    reason = _linear_check(lin)
    if reason:
        return reason
    if any(v.const is None for v in bn.inputs[1:]):
        return "the batch_norm parameters are not all constants"
    if lin.op == "conv":
        if bn.attrs["layout"] != lin.attrs["layout"]:
            return f"the batch_norm layout {bn.attrs['layout']} differs from the conv layout {lin.attrs['layout']}"
    elif _channel_axis(bn) != lin.output.type.rank - 1:
        return (f"the batch_norm normalizes axis {_channel_axis(bn)} of the {lin.op} result "
                f"{lin.output.type}, not its features (the last axis)")
    return None


def _conv_bn_rewrite(graph, m):
    lin, bn = m.node("lin"), m.node("bn")
    scale, beta, mean, var = (v.const.astype(np.float64) for v in bn.inputs[1:])
    s = scale / np.sqrt(var + bn.attrs["epsilon"])
    w = _weight_nk(lin).astype(np.float64)
    w = w * s.reshape([-1] + [1] * (w.ndim - 1))
    bias = (_bias_of(lin, len(s)) - mean) * s + beta
    return [_rebuild(graph, lin, lin.inputs[0], w, bias, m.origin())]


CONV_BN = Rule("conv-bn", Op("batch_norm", Op(LINEAR, name="lin", any_inputs=True), Any(), Any(), Any(), Any(),
                              name="bn"), _conv_bn_rewrite, _conv_bn_check)


@register_pass
class FuseConvBn(RewritePass):
    name = "fuse-conv-bn"
    summary = "fold batch_norm into the weights and bias of a conv / dense / matmul"

    def rules(self):
        return [CONV_BN]


# ---- fuse-pad ------------------------------------------------------------------------------------

def _padded_input(conv):
    p = conv.inputs[0].producer()
    return p if p is not None and p.op == "pad" else None


def _pad_check(m):
    conv = m.root
    pad = _padded_input(conv)
    if len(conv.inputs[0].uses()) != 1 or any(v is conv.inputs[0] for v in conv.graph.outputs):
        return "the pad's result has other uses"
    if pad.attrs["mode"] != "constant" or pad.attrs["value"] != 0.0:
        return f"the pad is mode '{pad.attrs['mode']}' with value {pad.attrs['value']}, not zeros"
    r = conv.inputs[0].type.rank
    begins, ends = pad.attrs["pads"][:r], pad.attrs["pads"][r:]
    if min(begins + ends) < 0:
        return "the pad crops (negative pads)"
    channel = r - 1 if conv.attrs.get("layout") == "NHWC" else 1
    if any(begins[a] or ends[a] for a in (0, channel)):
        return "the pad pads the batch or channel axis"
    return None


def _pad_rewrite(graph, m):
    conv = m.root
    pad = _padded_input(conv)
    m.nodes.append(pad)
    r = conv.inputs[0].type.rank
    spatial = list(range(1, r - 1)) if conv.attrs.get("layout") == "NHWC" else list(range(2, r))
    begins, ends = pad.attrs["pads"][:r], pad.attrs["pads"][r:]
    n = len(spatial)
    own = conv.attrs["pads"] or [0] * (2 * n)  # [] is no padding
    pads = [own[i] + begins[a] for i, a in enumerate(spatial)]
    pads += [own[n + i] + ends[a] for i, a in enumerate(spatial)]
    inputs = [pad.inputs[0], *conv.inputs[1:]]
    return [graph.add("conv", inputs, {**conv.attrs, "pads": pads}, origin=m.origin()).output]


PAD = Rule("pad", Op("conv", any_inputs=True, where=lambda n: _padded_input(n) is not None), _pad_rewrite, _pad_check)


@register_pass
class FusePad(RewritePass):
    name = "fuse-pad"
    summary = "a zero pad of the spatial axes before a conv becomes the conv's own pads"

    def rules(self):
        return [PAD]


# ---- fuse-bias / fuse-matmul-add -----------------------------------------------------------------

def _per_channel(c, out_type, axis) -> np.ndarray | None:
    """The per-channel vector of the constant `c` added to a result of `out_type` along `axis`,
    or None when c varies along another axis or would broadcast the result."""
    if c.type.rank > out_type.rank:
        return None
    shape = (1,) * (out_type.rank - c.type.rank) + c.type.shape
    for i, d in enumerate(shape):
        if d != 1 and (i != axis or d != out_type.shape[axis]):
            return None
    n = out_type.shape[axis]
    values = c.const.astype(np.float64).reshape(-1)
    return values.copy() if shape[axis] == n else np.full(n, values[0])


def _bias_check(m):
    lin, add = m.node("lin"), m.root
    if lin.op == "matmul":
        return _matmul_add_check(m)
    reason = _linear_check(lin)
    if reason:
        return reason
    if add.output.type != lin.output.type:
        return f"the add broadcasts the {lin.op} result {lin.output.type} to {add.output.type}"
    axis = _channel_axis(lin) if lin.op == "conv" else lin.output.type.rank - 1
    if _per_channel(m["c"], lin.output.type, axis) is None:
        return f"the addend {m['c'].type} is not constant per output channel (axis {axis})"
    return None


def _bias_rewrite(graph, m):
    lin = m.node("lin")
    if lin.op == "matmul":
        return _matmul_add_rewrite(graph, m)
    axis = _channel_axis(lin) if lin.op == "conv" else lin.output.type.rank - 1
    c = _per_channel(m["c"], lin.output.type, axis)
    return [_rebuild(graph, lin, lin.inputs[0], lin.inputs[1].const, _bias_of(lin, len(c)) + c, m.origin())]


def _add_of(lin_pattern):
    return Op("add", lin_pattern, Const("c"), commutative=True)


BIAS = Rule("bias", _add_of(Op(("conv", "dense", "matmul"), name="lin", any_inputs=True)), _bias_rewrite, _bias_check)


def _matmul_add_check(m):
    lin, add = m.node("lin"), m.root
    reason = _linear_check(lin)
    if reason:
        return reason
    if add.output.type != lin.output.type:
        return f"the add broadcasts the matmul result {lin.output.type} to {add.output.type}"
    if _per_channel(m["c"], lin.output.type, lin.output.type.rank - 1) is None:
        return f"the addend {m['c'].type} is not constant per output feature"
    return None


def _matmul_add_rewrite(graph, m):
    lin = m.node("lin")
    c = _per_channel(m["c"], lin.output.type, lin.output.type.rank - 1)
    return [_rebuild(graph, lin, lin.inputs[0], _weight_nk(lin), c, m.origin())]


MATMUL_ADD = Rule("matmul-add", _add_of(Op("matmul", Var("x"), Any(), name="lin")), _matmul_add_rewrite,
                  _matmul_add_check)


@register_pass
class FuseBias(RewritePass):
    name = "fuse-bias"
    summary = "a constant per-channel add after a conv or dense becomes its bias"

    def rules(self):
        return [BIAS]


@register_pass
class FuseMatmulAdd(RewritePass):
    name = "fuse-matmul-add"
    summary = "matmul with a constant 2-D weight + constant add -> dense with bias"

    def rules(self):
        return [MATMUL_ADD]


# ---- fuse-activation ---------------------------------------------------------------------------

def _activation_of(act) -> tuple[str, list[float]] | str:
    """(activation name, params) for the activation node, or the reason it cannot be fused."""
    a = act.attrs
    if act.op == "clip":
        if not (np.isfinite(a["min"]) and np.isfinite(a["max"])):
            return f"the clip bounds [{a['min']}, {a['max']}] are not both finite"
        return "clip", [a["min"], a["max"]]
    if act.op == "hard_sigmoid":
        return "hard_sigmoid", [a["alpha"], a["beta"]]
    if act.op == "leaky_relu":
        return "leaky_relu", [a["alpha"]]
    if act.op == "gelu":
        return ("gelu" if a["approximate"] == "none" else "gelu_tanh"), []
    return act.op, []


ACTIVATION_OPS = ops_with("activation")


def _activation_check(m):
    lin = m.node("lin")
    reason = _linear_check(lin, need_weight=False)
    if reason:
        return reason
    found = _activation_of(m.root)
    return found if isinstance(found, str) else None


def _activation_rewrite(graph, m):
    lin = m.node("lin")
    name, params = _activation_of(m.root)
    attrs = {**lin.attrs, "activation": name, "activation_params": params}
    return [graph.add(lin.op, list(lin.inputs), attrs, origin=m.origin()).output]


ACTIVATION = Rule("activation", Op(ACTIVATION_OPS, Op(LINEAR, name="lin", any_inputs=True)),
                  _activation_rewrite, _activation_check)


@register_pass
class FuseActivation(RewritePass):
    name = "fuse-activation"
    summary = "an activation after a conv / matmul / dense becomes its `activation` attribute"

    def rules(self):
        return [ACTIVATION]
