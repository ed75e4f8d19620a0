"""Recognition of the decomposed forms exporters emit, replaced by one op each.

recognize-silu:
- `x * sigmoid(x)` and `sigmoid(x) * x` -> `silu(x)`.
recognize-hardswish:
- `x * hard_sigmoid(x)` with alpha = 1/6, beta = 0.5 (either operand order) -> `hard_swish(x)`;
- `x * relu6(x + 3) / 6` with relu6 written `clip(., 0, 6)` or `min(max(., 0), 6)`, as
  `(x * r) / 6`, `x * (r / 6)`, `(x * r) * (1/6)` or `x * (r * (1/6))` -> `hard_swish(x)`.
recognize-gelu (0.5 * x * (1 + erf(x / sqrt 2))  and  0.5 * x * (1 + tanh(sqrt(2/pi) * (x + 0.044715 x^3)))):
- erf form with the argument `x / sqrt(2)` or `x * (1/sqrt(2))` -> `gelu(x)`;
- tanh form with the cube `pow(x, 3)`, `x * (x * x)` or `(x * x) * x` -> `gelu(x) {approximate="tanh"}`;
- the three products `(x * inner) * 0.5`, `(x * 0.5) * inner`, `x * (inner * 0.5)`, operands in
  either order, `1 + t` in either order.
recognize-layernorm:
- `mean = reduce_mean(x, axes); d = x - mean; v = reduce_mean(d^2, axes)` (d^2 as `pow(d, 2)`
  or `d * d`), `y = d / sqrt(v + eps)` (`v + eps` either order, or `sqrt(v)` when an earlier
  pass removed `+ 0`) -> `layer_norm(x, ones, zeros)
  {axis, epsilon=eps}` when both reductions use the same trailing axes with keepdims;
- `layer_norm(x, g, b) * c` -> `layer_norm(x, g*c, b*c)` and `layer_norm(x, g, b) + c` ->
  `layer_norm(x, g, b+c)` for constants c along the normalized axes (the exporters' `* gamma`
  and `+ beta`), either operand order.
Every rule refuses, with the reason, when a constant differs from the one the formula needs,
when the result would not have the type of `x`, or when `x` is not a float tensor; a match whose
intermediate results are used elsewhere is refused by the rewriter.
"""

from __future__ import annotations

import math

import numpy as np

from edgec.ir import is_float
from edgec.ops import OPS
from edgec.passmanager import register_pass
from edgec.rewrite import Const, Either, Op, Rule, RewritePass, Var, describe_const, is_splat

X = Var("x")


def _float_same_type(m):
    x, out = m["x"], m.root.output
    if not is_float(x.type.dtype):
        return f"x is {x.type}, not a float tensor"
    if x.type != out.type:
        return f"the result {out.type} differs from x {x.type} (the pattern broadcasts)"
    return None


def _constants(expected: dict[str, float]):
    """A check that each named constant is a splat of the expected value, then the type check."""
    def check(m):
        for name, want in expected.items():
            if name in m.values and not is_splat(m[name], want):
                return f"{describe_const(m[name])} where the formula needs {want:g}"
        return _float_same_type(m)
    return check


def _replace_with(op, attrs=None):
    def rewrite(graph, m):
        return [graph.add(op, [m["x"]], attrs or {}, origin=m.origin()).output]
    return rewrite


# ---- silu ------------------------------------------------------------------------------------

SILU_RULES = [
    Rule("silu", Op("mul", X, Op("sigmoid", X), commutative=True), _replace_with("silu"), _float_same_type),
]


@register_pass
class RecognizeSilu(RewritePass):
    name = "recognize-silu"
    summary = "x * sigmoid(x) -> silu(x)"

    def rules(self):
        return SILU_RULES


# ---- hard swish ------------------------------------------------------------------------------

def _relu6_of_x_plus_3():
    plus3 = Op("add", X, Const("three"), commutative=True)
    forms = [Op("min", Op("max", plus3, Const("zero"), commutative=True), Const("six_clip"), commutative=True)]
    if "clip" in OPS:
        forms.append(Op("clip", plus3, name="clip"))
    return Either(*forms)


def _hardswish_check(m):
    if "clip" in m.named_nodes:
        a = m.node("clip").attrs
        lo, hi = a.get("min"), a.get("max")
        if lo is None or hi is None or abs(lo) > 1e-6 or abs(hi - 6) > 1e-5:
            return f"clip bounds {lo}, {hi} are not 0, 6"
    return _constants({"three": 3.0, "zero": 0.0, "six_clip": 6.0, "six": 6.0, "sixth": 1 / 6})(m)


def _hard_sigmoid_check(m):
    a = m.node("hs").attrs
    if abs(a["alpha"] - 1 / 6) > 1e-4 or abs(a["beta"] - 0.5) > 1e-6:
        return f"hard_sigmoid alpha={a['alpha']:g}, beta={a['beta']:g} are not 1/6, 0.5"
    return _float_same_type(m)


def _hardswish_rules():
    hs = _replace_with("hard_swish")
    r6 = _relu6_of_x_plus_3
    return [
        Rule("hardswish-hard-sigmoid", Op("mul", X, Op("hard_sigmoid", X, name="hs"), commutative=True),
             hs, _hard_sigmoid_check),
        Rule("hardswish-div", Op("div", Op("mul", X, r6(), commutative=True), Const("six")), hs, _hardswish_check),
        Rule("hardswish-inner-div", Op("mul", X, Op("div", r6(), Const("six")), commutative=True), hs, _hardswish_check),
        Rule("hardswish-mul", Op("mul", Op("mul", X, r6(), commutative=True), Const("sixth"), commutative=True),
             hs, _hardswish_check),
        Rule("hardswish-inner-mul", Op("mul", X, Op("mul", r6(), Const("sixth"), commutative=True), commutative=True),
             hs, _hardswish_check),
    ]


@register_pass
class RecognizeHardSwish(RewritePass):
    name = "recognize-hardswish"
    summary = "x * relu6(x + 3) / 6 and x * hard_sigmoid(x) -> hard_swish(x)"

    def rules(self):
        return _hardswish_rules()


# ---- gelu ------------------------------------------------------------------------------------

def _gelu_outer(inner):
    """The three ways of writing 0.5 * x * inner."""
    return [
        Op("mul", Op("mul", X, inner, commutative=True), Const("half"), commutative=True),
        Op("mul", Op("mul", X, Const("half"), commutative=True), inner, commutative=True),
        Op("mul", X, Op("mul", inner, Const("half"), commutative=True), commutative=True),
    ]


def _gelu_rules():
    erf_arg = Either(Op("div", X, Const("sqrt2")), Op("mul", X, Const("inv_sqrt2"), commutative=True))
    erf_inner = Op("add", Op("erf", erf_arg), Const("one"), commutative=True)
    cube = Either(Op("pow", X, Const("three")), Op("mul", X, Op("mul", X, X), commutative=True))
    poly = Op("add", X, Op("mul", cube, Const("k"), commutative=True), commutative=True)
    tanh_inner = Op("add", Op("tanh", Op("mul", poly, Const("c"), commutative=True)), Const("one"), commutative=True)
    erf_check = _constants({"half": 0.5, "one": 1.0, "sqrt2": math.sqrt(2), "inv_sqrt2": 1 / math.sqrt(2)})
    tanh_check = _constants({"half": 0.5, "one": 1.0, "three": 3.0, "k": 0.044715, "c": math.sqrt(2 / math.pi)})
    rules = []
    for i, pattern in enumerate(_gelu_outer(erf_inner)):
        rules.append(Rule(f"gelu-erf-{i}", pattern, _replace_with("gelu"), erf_check))
    for i, pattern in enumerate(_gelu_outer(tanh_inner)):
        rules.append(Rule(f"gelu-tanh-{i}", pattern, _replace_with("gelu", {"approximate": "tanh"}), tanh_check))
    return rules


@register_pass
class RecognizeGelu(RewritePass):
    name = "recognize-gelu"
    summary = "the erf and tanh forms of 0.5 * x * (1 + ...) -> gelu(x)"

    def rules(self):
        return _gelu_rules()


# ---- layer norm ------------------------------------------------------------------------------

def _mean_axes(node) -> list[int]:
    """The axes a reduce_mean reduces, normalised (empty axes: all of them)."""
    rank = node.inputs[0].type.rank
    axes = node.attrs["axes"]
    if not axes:
        return [] if node.attrs["noop_with_empty_axes"] else list(range(rank))
    return sorted(a % rank for a in axes)


def _layernorm_check(m):
    x = m["x"]
    if not is_float(x.type.dtype):
        return f"x is {x.type}, not a float tensor"
    if m["dv"] is not m.node("d").output:
        return "the variance is not taken of x - mean"
    m1, m2 = m.node("mean1"), m.node("mean2")
    axes1, axes2 = _mean_axes(m1), _mean_axes(m2)
    rank = x.type.rank
    if axes1 != axes2:
        return f"the two reduce_means use different axes {axes1} and {axes2}"
    if not axes1 or axes1 != list(range(rank - len(axes1), rank)):
        return f"the reductions over axes {axes1} are not over the trailing axes"
    if not (m1.attrs["keepdims"] and m2.attrs["keepdims"]):
        return "a reduce_mean drops the reduced axes (keepdims=0)"
    if "two" in m.values and not is_splat(m["two"], 2.0):
        return f"{describe_const(m['two'])} is not the exponent 2"
    if "eps" not in m.values:
        return _float_same_type(m)
    if m["eps"].type.size != 1:
        return f"epsilon is a {m['eps'].type} constant, not a scalar"
    eps = float(m["eps"].const.reshape(-1)[0])
    if eps < 0:
        return f"epsilon {eps:g} is negative"
    return _float_same_type(m)


def _layernorm_rewrite(graph, m):
    x = m["x"]
    k = len(_mean_axes(m.node("mean1")))
    norm_shape = x.type.shape[x.type.rank - k:]
    dtype = x.type.np_dtype
    gamma = graph.const(np.ones(norm_shape, dtype))
    beta = graph.const(np.zeros(norm_shape, dtype))
    # the shortest text of the stored value (1e-05, not 9.99999974e-06); 0 when `+ eps` is absent
    eps = float(str(m["eps"].const.reshape(-1)[0])) if "eps" in m.values else 0.0
    return [graph.add("layer_norm", [x, gamma, beta], {"axis": x.type.rank - k, "epsilon": eps},
                      origin=m.origin()).output]


def _affine_check(m):
    """gamma/beta absorption: the layer_norm has constant gamma and beta; c is constant along
    the normalized axes only and does not broadcast the result."""
    ln = m.node("ln")
    if len(ln.inputs) < 3 or ln.inputs[1].const is None or ln.inputs[2].const is None:
        return "the layer_norm's scale and bias are not both constants"
    out = ln.output.type
    c = m["c"].type
    if m.root.output.type != out:
        return f"the {m.root.op} broadcasts the layer_norm result {out} to {m.root.output.type}"
    k = out.rank - (ln.attrs["axis"] % out.rank)
    if c.rank > k and any(d != 1 for d in c.shape[:c.rank - k]):
        return f"the constant {c} varies along axes that are not normalized"
    return None


def _affine_rewrite(graph, m):
    ln = m.node("ln")
    out = ln.output.type
    k = out.rank - (ln.attrs["axis"] % out.rank)
    norm_shape = out.shape[out.rank - k:]
    c = m["c"].const.astype(np.float64)
    c = np.broadcast_to(c.reshape(c.shape[max(0, c.ndim - k):]), norm_shape)
    gamma = np.broadcast_to(ln.inputs[1].const.astype(np.float64), norm_shape)
    beta = np.broadcast_to(ln.inputs[2].const.astype(np.float64), norm_shape)
    if m.root.op == "mul":
        gamma, beta = gamma * c, beta * c
    else:
        beta = beta + c
    dtype = out.np_dtype
    ins = [ln.inputs[0], graph.const(np.ascontiguousarray(gamma.astype(dtype))),
           graph.const(np.ascontiguousarray(beta.astype(dtype)))]
    return [graph.add("layer_norm", ins, dict(ln.attrs), origin=m.origin()).output]


def _layernorm_rules():
    if "reduce_mean" not in OPS:
        return []
    d = Op("sub", X, Op("reduce_mean", X, name="mean1"), name="d")
    dv = Var("dv")
    square = Either(Op("pow", dv, Const("two")), Op("mul", dv, dv))
    var = Op("reduce_mean", square, name="mean2")
    std = Op("sqrt", Either(Op("add", var, Const("eps"), commutative=True), var))
    ln = Op("layer_norm", any_inputs=True, name="ln")
    return [
        Rule("layernorm", Op("div", d, std), _layernorm_rewrite, _layernorm_check),
        Rule("layernorm-scale", Op("mul", ln, Const("c"), commutative=True), _affine_rewrite, _affine_check),
        Rule("layernorm-shift", Op("add", ln, Const("c"), commutative=True), _affine_rewrite, _affine_check),
    ]


@register_pass
class RecognizeLayerNorm(RewritePass):
    name = "recognize-layernorm"
    summary = "the ReduceMean/Sub/Pow/ReduceMean/Add/Sqrt/Div/Mul/Add chain -> layer_norm"

    def rules(self):
        return _layernorm_rules()
