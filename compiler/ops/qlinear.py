"""ONNX Runtime's QOperator ops (com.microsoft domain) and DynamicQuantizeLinear, computed as ONNX
Runtime 1.32 computes them on x86-64 (float32 arithmetic throughout; `f32(v)` below is v as float32).

Scales and zero points are per-tensor compile-time attributes; `dtype` is the element type (u8 or
i8) of the output and of every quantized input. Scales must be positive and finite.

- qlinear_add(a, b), qlinear_mul(a, b) {a_scale, a_zero_point, b_scale, b_zero_point, y_scale,
  y_zero_point, dtype}, numpy broadcasting:
  add: y = saturate(round_half_even((a_scale * f32(a - azp) + b_scale * f32(b - bzp)) / y_scale) + yzp)
  (MLAS's reference loop and AVX2 kernel);
  mul: y = saturate(round_half_even(f32((a - azp) * (b - bzp)) * m + f32(yzp))) with
  m = (a_scale * b_scale) / y_scale (MLAS's QLinearMul, exact).
- qlinear_concat(*xs) {axis, scales, zero_points (one per input), y_scale, y_zero_point, dtype}:
  each input requantized, saturate(round_half_even(f32(scale_i * f32(x - zp_i)) / y_scale) + yzp)
  (ORT's lookup table; an input with the output's scale and zero point is copied), then joined.
- qlinear_global_avg_pool(x) {x_scale, x_zero_point, y_scale, y_zero_point, dtype}: NCHW, rank >= 3,
  over the n positions after the channel axis: acc = sum(x) - xzp * n in int32,
  y = saturate(round_half_even(f32(acc) * m) + yzp), m = x_scale / (y_scale * f32(n)) (MLAS, exact).
- qlinear_avg_pool(x) {kernel_shape, strides, pads, count_include_pad, ceil_mode, x_scale,
  x_zero_point, y_scale, y_zero_point, dtype}: 2-D NCHW, no dilations. The float32 sum of
  x_scale * f32(x - xzp) over each window's input positions (in window order), divided by the
  kernel size (count_include_pad=1, also for ceil_mode windows past the end: ORT's
  QLinearAveragePool counts them, its AveragePool does not) or by the window's input positions;
  y = saturate(round_half_even(avg / y_scale + f32(yzp))) (exact). The importer makes a
  QLinearAveragePool whose kernel covers the whole unpadded input a qlinear_global_avg_pool, as
  ORT computes it.
- qlinear_sigmoid(x), qlinear_leaky_relu(x) {x_scale, x_zero_point, y_scale, y_zero_point, dtype;
  alpha}: ORT's table of 256 outputs, made at compile time: for each value v of dtype,
  saturate(round_half_even(f(x_scale * f32(v - xzp)) / y_scale) + yzp); leaky relu f(u) = u if u >= 0
  else alpha * u (exact); sigmoid f(u) = 1 / (1 + exp(-u)) rounded to float32, where ORT evaluates
  MLAS's rational approximation (a few float32 ulps off): an entry can differ by one step where
  that crosses a rounding boundary (none of 5,120 entries did, over 20 u8/i8 parameter sets).
- dynamic_quantize_linear(x: f32) -> (y: u8, y_scale: f32[], y_zero_point: u8[]) (ONNX's
  DynamicQuantizeLinear): lo = min(0, min(x)), hi = max(0, max(x)), y_scale = (hi - lo) / 255
  (1 when hi == lo, as ORT does; ONNX leaves it undefined), y_zero_point =
  round_half_even(clip(0 - lo / y_scale, 0, 255)), y = saturate(round_half_even(x / y_scale) + y_zero_point).

Where ORT differs: QLinearAdd. ORT 1.32 on x86-64 computes the same value in another order, fitted
to its results as fma(a, rA, fma(b, rB, yzp - (azp * rA + bzp * rB))) with rA = a_scale / y_scale,
rB = b_scale / y_scale (MLAS's SSE2 kernel as its compiler contracts it; the order depends on which
operand broadcasts), and in fixed point on ARM: one step apart for under 0.1% of the outputs with
typical scales, about 1% where the scale ratios make exact halves common (measured in
tests/ops/test_qlinear_ops.py). Every other op matches ORT bit for bit.

Lowering: the float32 steps as written, with lookup tables (`R.take` of a 256-entry constant,
indexed by x - min(dtype)) for the tables above and for the dequantized inputs of qlinear_add and
qlinear_avg_pool: LLVM contracts a multiply feeding an add into one fused multiply-add, which rounds
once where ORT rounds twice; a table lookup, or a clamp between the two (qlinear_mul), keeps them apart.

ONNX importers: com.microsoft QLinearAdd, QLinearMul, QLinearConcat, QLinearGlobalAveragePool,
QLinearAveragePool (channels_last=1 through transposes to NCHW and back), QLinearSigmoid,
QLinearLeakyRelu, QGemm, and DynamicQuantizeLinear. QGemm (A, a_scale, a_zp, B, b_scale, b_zp[, C,
y_scale, y_zp]) imports as qlinear_matmul (bias C of N values, or one) with alpha folded into
a_scale as ORT does (f32(alpha * a_scale)); transA / transB transpose (a constant B at import);
without y_scale (float output) as matmul_integer [+ C] then dequantize_linear by
alpha * a_scale * b_scale (/ y_scale if given, without y_zero_point), per column.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import VerifyError
from ..ir import TensorType
from ..lazy import LazyModule
from .base import MAX_FAN_IN, Attr, OpDef, REQUIRED, balanced_tree, broadcast_shapes, normalize_axis, onnx_op, \
    register_op
from .elementwise import nearbyint_te
from .nn import _pool_geometry, _pool_windows, resolve_auto_pad
from .quant import INT8, _const_params, _f32, _range, _requantize_np, _requantize_relax, _saturate_np, \
    _saturate_relax, _scalar, shifted_int32
from .shape import _concat_infer

relax = LazyModule("tvm.relax")
R = LazyModule("tvm.relax.op")

F32 = np.float32
MS = "com.microsoft"


# ---- shared checks and tables -------------------------------------------------------------------

def _check(op: str, types: list[TensorType], attrs: dict, scales: tuple[str, ...], zero_points: tuple[str, ...]):
    """The inputs are of `dtype` (u8 or i8), the scales positive and finite, the zero points in range."""
    dtype = attrs["dtype"]
    if dtype not in INT8:
        raise VerifyError(f"{op}: dtype must be u8 or i8, got {dtype!r}")
    wrong = [str(t) for t in types if t.dtype != dtype]
    if wrong:
        raise VerifyError(f"{op} takes {dtype} inputs (dtype={dtype}), got {', '.join(wrong)}")
    for name in scales:
        values = attrs[name] if isinstance(attrs[name], list) else [attrs[name]]
        if not all(math.isfinite(s) and s > 0 for s in values):
            raise VerifyError(f"{op}: {name} must be positive and finite, got {attrs[name]}")
    lo, hi = _range(dtype)
    for name in zero_points:
        values = attrs[name] if isinstance(attrs[name], list) else [attrs[name]]
        if not all(lo <= z <= hi for z in values):
            raise VerifyError(f"{op}: {name} {attrs[name]} is outside the range of {dtype}")


def _dequantized(dtype: str, scale: float, zero_point: int) -> np.ndarray:
    """scale * f32(v - zero_point) for the 256 values v of dtype, in order (ORT's dequantize table)."""
    lo, hi = _range(dtype)
    return F32(scale) * (np.arange(lo, hi + 1) - zero_point).astype(F32)


def _table(dtype: str, fn, x_scale: float, x_zero_point: int, y_scale: float, y_zero_point: int) -> np.ndarray:
    """ORT's lookup table (QlinearBuildLookupTable): entry k is the output for the input value
    min(dtype) + k, saturate(round_half_even(fn(x) / y_scale) + y_zero_point) of its dequantized x."""
    return _saturate_np(fn(_dequantized(dtype, x_scale, x_zero_point)) / F32(y_scale), y_zero_point, dtype)


def _lookup_np(table: np.ndarray, x: np.ndarray, dtype: str) -> np.ndarray:
    """table[x - min(dtype)]."""
    return table[x.astype(np.int64) - _range(dtype)[0]]


def _lookup_relax(table: np.ndarray, x, dtype: str):
    """table[x - min(dtype)] as a Relax expression."""
    index = R.astype(x, "int32")
    lo = _range(dtype)[0]
    if lo:
        index = R.subtract(index, relax.const(lo, "int32"))
    return R.take(relax.const(table), index, axis=0)


def _saturate_shifted_relax(ctx, y, zero_point: int, dtype: str):
    """float32 y -> saturate(round_half_even(y + f32(zero_point))): y is clamped to the range less the
    zero point first (the same result: the bounds are integers), so that no multiply producing y is
    contracted with the add into a fused multiply-add."""
    lo, hi = _range(dtype)
    y = R.minimum(R.maximum(y, relax.const(float(lo - zero_point), "float32")),
                  relax.const(float(hi - zero_point), "float32"))
    return _saturate_relax(ctx, ctx.bb.emit(R.add(y, relax.const(float(zero_point), "float32"))), 0, dtype)


# ---- qlinear_add / qlinear_mul ----------------------------------------------------------------

BINARY_ATTRS = {"a_scale": Attr("float", REQUIRED), "a_zero_point": Attr("int", 0),
                "b_scale": Attr("float", REQUIRED), "b_zero_point": Attr("int", 0),
                "y_scale": Attr("float", REQUIRED), "y_zero_point": Attr("int", 0), "dtype": Attr("str", "u8")}


def _binary_infer(op: str):
    def infer(types, attrs):
        _check(op, types, attrs, ("a_scale", "b_scale", "y_scale"), ("a_zero_point", "b_zero_point", "y_zero_point"))
        return [TensorType(attrs["dtype"], broadcast_shapes(types[0].shape, types[1].shape))]
    return infer


def _shifted_f32(x: np.ndarray, zero_point: int) -> np.ndarray:
    return (x.astype(np.int32) - zero_point).astype(F32)


def _qlinear_add_np(xs, attrs):
    a = F32(attrs["a_scale"]) * _shifted_f32(xs[0], attrs["a_zero_point"])
    b = F32(attrs["b_scale"]) * _shifted_f32(xs[1], attrs["b_zero_point"])
    return _saturate_np((a + b) / F32(attrs["y_scale"]), attrs["y_zero_point"], attrs["dtype"])


def _qlinear_add_lower(ctx, xs, attrs, out):
    dtype = attrs["dtype"]
    a = _lookup_relax(_dequantized(dtype, attrs["a_scale"], attrs["a_zero_point"]), xs[0], dtype)
    b = _lookup_relax(_dequantized(dtype, attrs["b_scale"], attrs["b_zero_point"]), xs[1], dtype)
    y = ctx.bb.emit(R.divide(R.add(a, b), relax.const(F32(attrs["y_scale"]))))
    return _saturate_relax(ctx, y, attrs["y_zero_point"], dtype)


def _mul_multiplier(attrs) -> np.float32:
    return F32(attrs["a_scale"]) * F32(attrs["b_scale"]) / F32(attrs["y_scale"])


def _qlinear_mul_np(xs, attrs):
    product = (_shifted_f32(xs[0], attrs["a_zero_point"]) * _shifted_f32(xs[1], attrs["b_zero_point"])).astype(F32)
    return _saturate_np(product * _mul_multiplier(attrs) + F32(attrs["y_zero_point"]), 0, attrs["dtype"])


def _qlinear_mul_lower(ctx, xs, attrs, out):
    product = R.multiply(shifted_int32(xs[0], [attrs["a_zero_point"]], []),
                         shifted_int32(xs[1], [attrs["b_zero_point"]], []))
    y = R.multiply(R.astype(product, "float32"), relax.const(_mul_multiplier(attrs)))
    return _saturate_shifted_relax(ctx, y, attrs["y_zero_point"], attrs["dtype"])


register_op(OpDef(
    name="qlinear_add", kind="elementwise", num_inputs=(2, 2), infer=_binary_infer("qlinear_add"),
    reference=_qlinear_add_np, lower=_qlinear_add_lower, attrs=BINARY_ATTRS,
    summary="quantized add with broadcasting: (a_scale (a - azp) + b_scale (b - bzp)) / y_scale + yzp"))
register_op(OpDef(
    name="qlinear_mul", kind="elementwise", num_inputs=(2, 2), infer=_binary_infer("qlinear_mul"),
    reference=_qlinear_mul_np, lower=_qlinear_mul_lower, attrs=BINARY_ATTRS,
    summary="quantized multiply with broadcasting: (a - azp)(b - bzp) a_scale b_scale / y_scale + yzp"))


# ---- qlinear_concat ---------------------------------------------------------------------------

CONCAT_ATTRS = {"axis": Attr("int", REQUIRED), "scales": Attr("floats", REQUIRED),
                "zero_points": Attr("ints", REQUIRED), "y_scale": Attr("float", REQUIRED),
                "y_zero_point": Attr("int", 0), "dtype": Attr("str", "u8")}


def _qlinear_concat_infer(types, attrs):
    if not len(attrs["scales"]) == len(attrs["zero_points"]) == len(types):
        raise VerifyError(f"qlinear_concat: {len(types)} inputs need as many scales and zero points, got "
                          f"{len(attrs['scales'])} and {len(attrs['zero_points'])}")
    _check("qlinear_concat", types, attrs, ("scales", "y_scale"), ("zero_points", "y_zero_point"))
    return _concat_infer(types, attrs)


def _requantized_inputs(attrs):
    """For each input: None when it is copied (the output's scale and zero point), else its table."""
    out = (attrs["y_scale"], attrs["y_zero_point"])
    return [None if (s, z) == out else _table(attrs["dtype"], lambda v: v, s, z, *out)
            for s, z in zip(attrs["scales"], attrs["zero_points"])]


def _qlinear_concat_np(xs, attrs):
    parts = [x if t is None else _lookup_np(t, x, attrs["dtype"]) for x, t in zip(xs, _requantized_inputs(attrs))]
    return np.concatenate(parts, axis=attrs["axis"])


def _qlinear_concat_lower(ctx, xs, attrs, out):
    parts = [x if t is None else ctx.bb.emit(_lookup_relax(t, x, attrs["dtype"]))
             for x, t in zip(xs, _requantized_inputs(attrs))]
    return R.concat(parts, axis=normalize_axis(attrs["axis"], len(out[0].shape)))


register_op(OpDef(
    name="qlinear_concat", kind="injective", num_inputs=(1, MAX_FAN_IN), infer=_qlinear_concat_infer,
    reference=_qlinear_concat_np, lower=_qlinear_concat_lower, attrs=CONCAT_ATTRS,
    summary="join quantized tensors along an axis, each requantized to the output's scale and zero point"))


# ---- qlinear_global_avg_pool / qlinear_avg_pool -------------------------------------------------

QPARAMS = {"x_scale": Attr("float", REQUIRED), "x_zero_point": Attr("int", 0),
           "y_scale": Attr("float", REQUIRED), "y_zero_point": Attr("int", 0), "dtype": Attr("str", "u8")}
UNARY_SCALES, UNARY_ZERO_POINTS = ("x_scale", "y_scale"), ("x_zero_point", "y_zero_point")


def _global_infer(types, attrs):
    x = types[0]
    _check("qlinear_global_avg_pool", types, attrs, UNARY_SCALES, UNARY_ZERO_POINTS)
    if x.rank < 3:
        raise VerifyError(f"qlinear_global_avg_pool takes an NCHW tensor of rank >= 3, got {x}")
    return [TensorType(x.dtype, (*x.shape[:2], *[1] * (x.rank - 2)))]


def _global_params(shape, attrs) -> tuple[list[int], int, np.ndarray]:
    """(the pooled axes, the int32 correction -xzp * n, the requantize multiplier) of n positions."""
    n = math.prod(shape[2:])
    multiplier = np.asarray(F32(attrs["x_scale"]) / (F32(attrs["y_scale"]) * F32(n)), F32)
    return list(range(2, len(shape))), -attrs["x_zero_point"] * n, multiplier


def _global_np(xs, attrs):
    x = xs[0]
    axes, correction, multiplier = _global_params(x.shape, attrs)
    acc = (x.astype(np.int64).sum(axis=tuple(axes), keepdims=True) + correction).astype(np.int32)
    return _requantize_np(acc, multiplier, attrs["y_zero_point"], attrs["dtype"])


def _global_lower(ctx, xs, attrs, out):
    axes, correction, multiplier = _global_params([int(d) for d in xs[0].ty.shape], attrs)
    acc = R.sum(R.astype(xs[0], "int32"), axis=axes, keepdims=True)
    if correction:
        acc = R.add(acc, relax.const(correction, "int32"))
    return _requantize_relax(ctx, ctx.bb.emit(acc), multiplier, attrs["y_zero_point"], attrs["dtype"])


register_op(OpDef(
    name="qlinear_global_avg_pool", kind="reduction", infer=_global_infer, reference=_global_np,
    lower=_global_lower, attrs=QPARAMS,
    summary="quantized mean over the axes after the channel axis (NCHW), integer sum requantized"))


AVG_POOL_ATTRS = {"kernel_shape": Attr("ints", REQUIRED), "strides": Attr("ints", []), "pads": Attr("ints", []),
                  "count_include_pad": Attr("int", 0), "ceil_mode": Attr("int", 0), **QPARAMS}


def _avg_geometry(shape, attrs):
    """nn's pooling geometry (no dilations): (kernel, strides, pads, out sizes, extra end padding)."""
    kernel, strides, pads, _, out, extra = _pool_geometry(list(shape[2:]), {**attrs, "dilations": []})
    return kernel, strides, pads, out, extra


def _avg_infer(types, attrs):
    x = types[0]
    _check("qlinear_avg_pool", types, attrs, UNARY_SCALES, UNARY_ZERO_POINTS)
    if x.rank != 4:
        raise VerifyError(f"qlinear_avg_pool supports 2-D pooling (an NCHW tensor of rank 4), got {x}")
    if attrs["count_include_pad"] not in (0, 1):
        raise VerifyError("qlinear_avg_pool: count_include_pad must be 0 or 1")
    out = _avg_geometry(x.shape, attrs)[3]
    return [TensorType(x.dtype, (*x.shape[:2], *out))]


def _avg_np(xs, attrs):
    x, dtype = xs[0], attrs["dtype"]
    kernel, strides, pads, out, extra = _avg_geometry(x.shape, attrs)
    widths = [(pads[i], pads[i + 2] + extra[i]) for i in range(2)]
    xf = np.pad(F32(attrs["x_scale"]) * _shifted_f32(x, attrs["x_zero_point"]), [(0, 0), (0, 0)] + widths)
    total = sum(_pool_windows(xf, kernel, strides, [1, 1], out))  # float32, in window order; padding adds 0
    if attrs["count_include_pad"]:
        count = F32(math.prod(kernel))
    else:
        count = sum(_pool_windows(np.pad(np.ones(x.shape[2:], F32), widths)[None, None], kernel, strides, [1, 1], out))
    return _saturate_np(total / count / F32(attrs["y_scale"]) + F32(attrs["y_zero_point"]), 0, dtype)


def _avg_lower(ctx, xs, attrs, out):
    dtype = attrs["dtype"]
    kernel, strides, pads, _, extra = _avg_geometry([int(d) for d in xs[0].ty.shape], attrs)
    xf = ctx.bb.emit(_lookup_relax(_dequantized(dtype, attrs["x_scale"], attrs["x_zero_point"]), xs[0], dtype))
    padding = [pads[0], pads[1], pads[2] + extra[0], pads[3] + extra[1]]  # ceil_mode's windows: more end padding
    avg = R.nn.avg_pool2d(xf, pool_size=kernel, strides=strides, padding=padding, dilation=[1, 1], ceil_mode=False,
                          count_include_pad=bool(attrs["count_include_pad"]))
    y = R.add(R.divide(ctx.bb.emit(avg), relax.const(F32(attrs["y_scale"]))),
              relax.const(F32(attrs["y_zero_point"])))
    return _saturate_relax(ctx, ctx.bb.emit(y), 0, dtype)


register_op(OpDef(
    name="qlinear_avg_pool", kind="complex", infer=_avg_infer, reference=_avg_np, lower=_avg_lower,
    attrs=AVG_POOL_ATTRS,
    summary="quantized 2-D average pooling (NCHW; pads, ceil_mode, count_include_pad), float32 as ORT"))


# ---- qlinear_sigmoid / qlinear_leaky_relu (lookup tables) ------------------------------------------

def _sigmoid(x: np.ndarray, attrs) -> np.ndarray:
    """1 / (1 + exp(-x)), evaluated in float64 and rounded to float32."""
    return (1.0 / (1.0 + np.exp(-x.astype(np.float64)))).astype(F32)


def _leaky_relu(x: np.ndarray, attrs) -> np.ndarray:
    return np.where(x >= 0, x, F32(attrs["alpha"]) * x).astype(F32)


def _register_table_op(name: str, fn, extra_attrs: dict, summary: str) -> None:
    """An op computed by its table of fn(x, attrs) (float32 x -> float32)."""
    def table(attrs) -> np.ndarray:
        return _table(attrs["dtype"], lambda x: fn(x, attrs), attrs["x_scale"], attrs["x_zero_point"],
                      attrs["y_scale"], attrs["y_zero_point"])

    def infer(types, attrs):
        _check(name, types, attrs, UNARY_SCALES, UNARY_ZERO_POINTS)
        return [types[0]]

    register_op(OpDef(
        name=name, kind="elementwise", infer=infer,
        reference=lambda xs, attrs: _lookup_np(table(attrs), xs[0], attrs["dtype"]),
        lower=lambda ctx, xs, attrs, out: _lookup_relax(table(attrs), xs[0], attrs["dtype"]),
        attrs={**QPARAMS, **extra_attrs}, summary=summary))


_register_table_op("qlinear_sigmoid", _sigmoid, {}, "quantized sigmoid by ORT's 256-entry lookup table")
_register_table_op("qlinear_leaky_relu", _leaky_relu, {"alpha": Attr("float", 0.01)},
                   "quantized leaky relu by ORT's 256-entry lookup table")


# ---- dynamic_quantize_linear -------------------------------------------------------------------

def _dynamic_infer(types, attrs):
    x = types[0]
    if x.dtype != "f32":
        raise VerifyError(f"dynamic_quantize_linear takes f32 input, got {x}")
    return [TensorType("u8", x.shape), TensorType("f32", ()), TensorType("u8", ())]


def _dynamic_np(xs, attrs):
    x = xs[0]
    lo, hi = min(F32(0), x.min()), max(F32(0), x.max())
    scale = F32(1) if hi == lo else F32((hi - lo) / F32(255))
    zero_point = F32(np.rint(np.clip(F32(0) - lo / scale, 0, 255)))
    return [_saturate_np(x / scale, zero_point, "u8"), np.asarray(scale, F32), np.asarray(zero_point, np.uint8)]


def _dynamic_lower(ctx, xs, attrs, out):
    x = xs[0]
    zero, top = relax.const(0.0, "float32"), relax.const(255.0, "float32")
    lo = ctx.bb.emit(R.minimum(R.min(x), zero))
    hi = ctx.bb.emit(R.maximum(R.max(x), zero))
    scale = ctx.bb.emit(R.where(R.equal(hi, lo), relax.const(1.0, "float32"), R.divide(R.subtract(hi, lo), top)))
    zero_point = ctx.bb.emit(R.minimum(R.maximum(R.subtract(zero, R.divide(lo, scale)), zero), top))
    zero_point = ctx.bb.emit(nearbyint_te(ctx, zero_point))
    y = ctx.bb.emit(nearbyint_te(ctx, ctx.bb.emit(R.divide(x, scale))))
    y = R.minimum(R.maximum(R.add(y, zero_point), zero), top)
    return [R.astype(y, "uint8"), scale, R.astype(zero_point, "uint8")]


register_op(OpDef(
    name="dynamic_quantize_linear", kind="opaque", infer=_dynamic_infer, reference=_dynamic_np,
    lower=_dynamic_lower,
    summary="f32 -> u8 with the scale and zero point of its own range (ONNX DynamicQuantizeLinear)"))


# ---- ONNX importers ---------------------------------------------------------------------------

def _arity(ctx, inputs: list, least: int, most: int) -> list:
    """The inputs padded with None to `most` of them; fewer than `least` or more than `most` are
    refused (ONNX has no schema for com.microsoft ops, so the importer leaves this to us)."""
    n = len(inputs)
    while n and inputs[n - 1] is None:
        n -= 1
    if not least <= n <= most:
        raise ctx.fail(f"has {n} inputs; {MS}.{ctx.node.op_type} takes {least} to {most}")
    return (list(inputs) + [None] * most)[:most]


def _scale_of(ctx, value, what: str) -> float:
    if value is None:
        raise ctx.fail(f"input '{what}' is missing")
    return _scalar(ctx, _const_params(ctx, value, what, True)[0], what)


def _zero_point_of(ctx, value, what: str, dtype: str) -> int:
    """A per-tensor zero point of `dtype` (its tensor's); an omitted one is 0."""
    values, zp_dtype = _const_params(ctx, value, what, False)
    if zp_dtype is not None and zp_dtype != dtype:
        raise ctx.fail(f"'{what}' is {zp_dtype}, but its tensor is {dtype}")
    return _scalar(ctx, values or [0], what)


def _unary_params(ctx, inputs) -> dict:
    """x_scale, x_zero_point, y_scale, y_zero_point and dtype of (X, x_scale, x_zp, y_scale, y_zp)."""
    if inputs[0] is None:
        raise ctx.fail("input 'X' is required")
    dtype = inputs[0].type.dtype
    return {"x_scale": _scale_of(ctx, inputs[1], "x_scale"),
            "x_zero_point": _zero_point_of(ctx, inputs[2], "x_zero_point", dtype),
            "y_scale": _scale_of(ctx, inputs[3], "y_scale"),
            "y_zero_point": _zero_point_of(ctx, inputs[4], "y_zero_point", dtype), "dtype": dtype}


@onnx_op("QLinearAdd", "QLinearMul", domain=MS)
def _import_binary(ctx, node, inputs, attrs):
    a, a_scale, a_zp, b, b_scale, b_zp, y_scale, y_zp = _arity(ctx, inputs, 7, 8)
    if a is None or b is None:
        raise ctx.fail("inputs 'A' and 'B' are required")
    dtype = a.type.dtype
    op = "qlinear_add" if node.op_type == "QLinearAdd" else "qlinear_mul"
    return ctx.emit(op, [a, b], {
        "a_scale": _scale_of(ctx, a_scale, "A_scale"), "a_zero_point": _zero_point_of(ctx, a_zp, "A_zero_point", dtype),
        "b_scale": _scale_of(ctx, b_scale, "B_scale"), "b_zero_point": _zero_point_of(ctx, b_zp, "B_zero_point", dtype),
        "y_scale": _scale_of(ctx, y_scale, "C_scale"), "y_zero_point": _zero_point_of(ctx, y_zp, "C_zero_point", dtype),
        "dtype": dtype})


@onnx_op("QLinearConcat", domain=MS)
def _import_concat(ctx, node, inputs, attrs):
    """Inputs Y_scale, Y_zero_point, then (X, X_scale, X_zero_point) per tensor; more than MAX_FAN_IN
    tensors become a balanced tree (the inner concats give the output's scale and zero point)."""
    if len(inputs) < 5 or (len(inputs) - 2) % 3:
        raise ctx.fail(f"has {len(inputs)} inputs; {MS}.QLinearConcat takes Y_scale, Y_zero_point and "
                       "then (X, X_scale, X_zero_point) for each tensor")
    if "axis" not in attrs:
        raise ctx.fail("QLinearConcat needs an axis")
    xs = inputs[2::3]
    if any(x is None for x in xs):
        raise ctx.fail("every tensor input X is required")
    dtype = xs[0].type.dtype
    y_scale = _scale_of(ctx, inputs[0], "Y_scale")
    y_zp = _zero_point_of(ctx, inputs[1], "Y_zero_point", dtype)
    leaves = [(x, _scale_of(ctx, s, f"X_scale {i}"), _zero_point_of(ctx, z, f"X_zero_point {i}", dtype))
              for i, (x, s, z) in enumerate(zip(xs, inputs[3::3], inputs[4::3]))]

    def combine(group):
        y = ctx.emit1("qlinear_concat", [x for x, _, _ in group], {
            "axis": attrs["axis"], "scales": [s for _, s, _ in group], "zero_points": [z for _, _, z in group],
            "y_scale": y_scale, "y_zero_point": y_zp, "dtype": dtype})
        return y, y_scale, y_zp
    return [(combine(leaves) if len(leaves) == 1 else balanced_tree(leaves, MAX_FAN_IN, combine))[0]]


def _channels_first(ctx, x, attrs):
    """`x` in NCHW: transposed from NHWC when channels_last=1; (x, the permutation back or None)."""
    if not attrs.get("channels_last", 0):
        return x, None
    rank = x.type.rank
    if rank < 3:
        raise ctx.fail(f"pooling needs an input of rank >= 3, got {x.type}")
    back = [0, *range(2, rank), 1]
    return ctx.emit1("transpose", [x], {"perm": [0, rank - 1, *range(1, rank - 1)]}), back


def _channels_back(ctx, y, back):
    return [y] if back is None else ctx.emit("transpose", [y], {"perm": back})


@onnx_op("QLinearGlobalAveragePool", domain=MS)
def _import_global_avg_pool(ctx, node, inputs, attrs):
    inputs = _arity(ctx, inputs, 4, 5)
    x, back = _channels_first(ctx, inputs[0], attrs)
    return _channels_back(ctx, ctx.emit1("qlinear_global_avg_pool", [x], _unary_params(ctx, inputs)), back)


@onnx_op("QLinearAveragePool", domain=MS)
def _import_avg_pool(ctx, node, inputs, attrs):
    """2-D: kernel_shape, strides, pads or auto_pad, ceil_mode, count_include_pad. A kernel covering
    the whole unpadded input pools as qlinear_global_avg_pool: ORT computes that case so."""
    inputs = _arity(ctx, inputs, 4, 5)
    x, back = _channels_first(ctx, inputs[0], attrs)
    if x.type.rank != 4:
        raise ctx.fail(f"only 2-D pooling (a rank-4 input) is supported, got {inputs[0].type}")
    params = _unary_params(ctx, inputs)
    kernel = list(attrs["kernel_shape"])
    strides = list(attrs.get("strides", [1, 1]))
    auto_pad = attrs.get("auto_pad", "NOTSET")
    pads = resolve_auto_pad(ctx, auto_pad, x.type.shape[2:], kernel, strides, [1, 1], attrs.get("pads", []))
    if kernel == list(x.type.shape[2:]) and not any(pads):
        return _channels_back(ctx, ctx.emit1("qlinear_global_avg_pool", [x], params), back)
    ceil_mode = attrs.get("ceil_mode", 0) if auto_pad not in ("SAME_UPPER", "SAME_LOWER") else 0
    y = ctx.emit1("qlinear_avg_pool", [x], {"kernel_shape": kernel, "strides": strides, "pads": pads,
                                            "count_include_pad": attrs.get("count_include_pad", 0),
                                            "ceil_mode": ceil_mode, **params})
    return _channels_back(ctx, y, back)


@onnx_op("QLinearSigmoid", domain=MS)
def _import_sigmoid(ctx, node, inputs, attrs):
    return ctx.emit("qlinear_sigmoid", [inputs[0]], _unary_params(ctx, _arity(ctx, inputs, 4, 5)))


@onnx_op("QLinearLeakyRelu", domain=MS)
def _import_leaky_relu(ctx, node, inputs, attrs):
    params = _unary_params(ctx, _arity(ctx, inputs, 4, 5))
    return ctx.emit("qlinear_leaky_relu", [inputs[0]], {**params, "alpha": attrs.get("alpha", 0.01)})


def _transposed(ctx, v):
    """v^T: a constant transposed now, anything else by a transpose node."""
    if v.is_const:
        return ctx.const(np.ascontiguousarray(v.const_value().T))
    return ctx.emit1("transpose", [v], {"perm": [1, 0]})


def _gemm_bias(ctx, c, m: int, n: int):
    """QGemm's int32 C as N values (C of shape (), (1,), (1, 1), (N,) or (1, N)); None stays None."""
    if c is None:
        return None
    if c.type.dtype != "i32":
        raise ctx.fail(f"the bias C must be int32, got {c.type}")
    shape = tuple(c.type.shape)
    if c.is_const and c.type.size == 1:
        return ctx.const(np.full(n, c.const_value().reshape(-1)[0], np.int32))
    if shape == (n,):
        return c
    if shape == (1, n):
        return ctx.emit1("reshape", [c], {"shape": [n]})
    raise ctx.fail(f"a bias C of shape {list(shape)} is not supported for a {m}x{n} result (only (N,), (1, N) "
                   "or a constant scalar)")


@onnx_op("QGemm", domain=MS)
def _import_qgemm(ctx, node, inputs, attrs):
    a, a_scale, a_zp, b, b_scale, b_zp, c, y_scale, y_zp = _arity(ctx, inputs, 6, 9)
    if a is None or b is None:
        raise ctx.fail("inputs 'A' and 'B' are required")
    if a.type.rank != 2 or b.type.rank != 2:
        raise ctx.fail(f"A and B must be 2-D, got {a.type} and {b.type}")
    if attrs.get("transA", 0):
        a = _transposed(ctx, a)
    if attrs.get("transB", 0):
        b = _transposed(ctx, b)
    m, n = a.type.shape[0], b.type.shape[1]
    alpha_a_scale = float(F32(attrs.get("alpha", 1.0)) * F32(_scale_of(ctx, a_scale, "a_scale")))
    azp = _zero_point_of(ctx, a_zp, "a_zero_point", a.type.dtype)
    if b_scale is None:
        raise ctx.fail("input 'b_scale' is missing")
    b_scales, _ = _const_params(ctx, b_scale, "b_scale", True)
    bzp, bzp_dtype = _const_params(ctx, b_zp, "b_zero_point", False)
    if bzp_dtype is not None and bzp_dtype != b.type.dtype:
        raise ctx.fail(f"'b_zero_point' is {bzp_dtype}, but B is {b.type.dtype}")
    bias = _gemm_bias(ctx, c, m, n)
    if y_zp is not None:
        if y_scale is None:
            raise ctx.fail("y_zero_point is given without y_scale")
        y_dtype = y_zp.type.dtype
        return ctx.emit("qlinear_matmul", [a, b] + ([bias] if bias is not None else []), {
            "a_scale": alpha_a_scale, "a_zero_point": azp, "b_scale": b_scales, "b_zero_point": bzp or [0],
            "y_scale": _scale_of(ctx, y_scale, "y_scale"),
            "y_zero_point": _zero_point_of(ctx, y_zp, "y_zero_point", y_dtype), "dtype": y_dtype})
    # float output: ORT's scale (alpha * a_scale * b_scale[j], / y_scale if given) per column
    scales = F32(alpha_a_scale) * _f32(b_scales)
    if y_scale is not None:
        scales = scales / F32(_scale_of(ctx, y_scale, "y_scale"))
    acc = ctx.emit1("matmul_integer", [a, b], {"a_zero_point": [azp], "b_zero_point": bzp or [0]})
    if bias is not None:
        acc = ctx.emit1("add", [acc, bias])
    return ctx.emit("dequantize_linear", [acc], {"scale": [float(s) for s in scales], "zero_point": [], "axis": 1})


@onnx_op("DynamicQuantizeLinear")
def _import_dynamic_quantize(ctx, node, inputs, attrs):
    return ctx.emit("dynamic_quantize_linear", [inputs[0]])
