"""Quantization ops: quantize/dequantize and integer conv/matmul (ONNX Runtime's arithmetic, bit-exact).

Scales and zero points are compile-time attributes (ONNX requires constants for them here); a
per-tensor scale is a list of one value, a per-axis one has shape[axis] values.

- quantize_linear(x: f32) {scale, zero_point, axis, dtype}: saturate(round_half_even(x / scale) + zp)
  to dtype (u8, i8, u16, i16); the division is in float32, as ONNX Runtime does it.
- dequantize_linear(x: u8/i8/u16/i16/i32) {scale, zero_point, axis} -> f32: float32(x - zp) * scale.
- matmul_integer(a, b) {a_zero_point (1 or M values), b_zero_point (1 or N values)} -> i32:
  (a - azp) @ (b - bzp), accumulated in int32; batch dims broadcast like MatMul (rank >= 2).
- conv_integer(x, w) {x_zero_point, w_zero_point (1 or O values), strides, pads, dilations, group,
  layout} -> i32: 2-D convolution of (x - xzp) and (w - wzp) accumulated in int32 (padding is the
  zero point); `layout` NCHW (x NCHW, w OIHW; the default, as imported) or NHWC (x NHWC, w OHWI,
  as convert-layout makes it, like `conv`).
- qlinear_matmul(a, b[, bias: i32[N]]) and qlinear_conv(x, w[, bias: i32[O]]): the integer product above (plus bias),
  then requantized like ONNX Runtime (MlasRequantizeOutput): the multiplier is computed in float32
  as (in_scale * w_scale[c]) / y_scale, y = saturate(round_half_even(float32(acc) * multiplier) + yzp).
  w_scale / b_scale may be per output channel (conv) or per column (matmul); qlinear_conv has
  conv_integer's `layout`.

quantize_linear and dequantize_linear have kind `opaque`, not `elementwise`: a per-axis `axis`
names a dimension, so passes must not treat them as layout-free; convert-layout sinks
transposes through them explicitly, permuting a per-axis `axis`.

Lowering: int32 arithmetic in Relax (`conv2d` / `matmul` with out_dtype="int32" on zero-point
shifted int32 operands; an NHWC conv hands TVM its OHWI weight as HWIO, as the float conv does),
then the float32 requantize step with an explicit round-half-to-even.

A target may lower the integer product itself (`Target.int8_accumulator`, a hook): on targets with
int8 dot-product instructions (`target.dotprod`: ARM `sdot`) and a constant weight, it is an
int8 x int8 -> int32 kernel (targets/schedules/int8.py) plus zero-point corrections, exact in
wrapping int32 arithmetic:

    (a - azp)(b - bzp) summed over k = a.b - azp * colsum(b) - bzp * rowsum(a - azp)

uint8 operands become int8 first (x - 128, zero point - 128: the difference x - zp is the same);
the weight is converted, zero padded to multiples of 4 and repacked with numpy at compile time,
and azp * colsum(b) is a compile-time constant. rowsum(a - azp) (a window sum for convs) is
computed only when some (converted) weight zero point is nonzero. Cases: matmul_integer /
qlinear_matmul with a 2-D constant b (a of any rank >= 2, per-row a zero points), conv_integer /
qlinear_conv with a constant weight and group 1 (any kernel size, stride, dilation, padding;
the kernel computes NHWC: an NHWC conv reads its input and returns its result as they are, with
no transpose; an NCHW one transposes its input in the kernel's packing stage and the result
back to NCHW). Other cases (batched or non-constant b, grouped and depthwise convs) keep the
generic lowering. On x86 hosts with AVX2 (`target.avx2`) the same cases run as exact int16
products on `vpmaddwd` (targets/schedules/int16.py): x - xzp and w - wzp as int16, so that
accumulator needs no corrections.

The generic conv (conv_integer, qlinear_conv: depthwise and grouped convs, and every conv on
targets without an accumulator of their own, such as the A72) runs in float32 on the float conv
schedules when that is exact (`float_exact`: with a constant weight and bias, K * max|x - xzp| *
max|w - wzp| + max|bias| < 2^24, so every partial sum is an integer float32 holds: 3x3 depthwise
convs always, 1x1 convs up to about 514 input channels); the result is the int32 one bit for bit.
Otherwise it computes in int32.

ONNX importers: QuantizeLinear, DequantizeLinear (opsets 10-21; block quantization of opset 21
is refused), MatMulInteger, ConvInteger, QLinearMatMul, QLinearConv (2-D; auto_pad resolved).
"""

from __future__ import annotations

import numpy as np

from ..errors import VerifyError
from ..lazy import LazyModule
from ..ir import DTYPES, TensorType
from .base import Attr, OpDef, REQUIRED, broadcast_shapes, normalize_axis, onnx_op, register_op
from .elementwise import nearbyint_te
from .nn import (_channel_shape, _check_layout, _to_cf, _to_cl, _tvm_layout, conv_nchw_np, resolve_auto_pad,
                 tvm_conv_weight)

tvm = LazyModule("tvm")
relax = LazyModule("tvm.relax")
R = LazyModule("tvm.relax.op")

QUANT_DTYPES = ("u8", "i8", "u16", "i16")
INT8 = ("u8", "i8")


def _range(dtype: str) -> tuple[int, int]:
    info = np.iinfo(DTYPES[dtype])
    return int(info.min), int(info.max)


def _f32(values) -> np.ndarray:
    return np.asarray(values, dtype=np.float64).astype(np.float32)


def _per_axis_shape(rank: int, axis: int, n: int) -> list[int]:
    """Shape that broadcasts n per-axis values against a rank-`rank` tensor (n == 1: a scalar)."""
    if n == 1:
        return [1] * rank
    return [1] * axis + [n] + [1] * (rank - axis - 1)


def _check_params(op: str, t: TensorType, scale: list, zero_point: list, axis: int, zp_dtype: str) -> int:
    """Check per-tensor / per-axis scale and zero point against `t`; returns the normalised axis."""
    if not scale:
        raise VerifyError(f"{op}: scale is empty")
    if zero_point and len(zero_point) != len(scale):
        raise VerifyError(f"{op}: {len(scale)} scales but {len(zero_point)} zero points")
    lo, hi = _range(zp_dtype)
    if any(not lo <= z <= hi for z in zero_point):
        raise VerifyError(f"{op}: zero points {zero_point} are outside the range of {zp_dtype}")
    if len(scale) == 1:  # per tensor: the axis is not used
        return 0
    axis = normalize_axis(axis, t.rank)
    if t.shape[axis] != len(scale):
        raise VerifyError(f"{op}: {len(scale)} scales for axis {axis} of {t}")
    return axis


def _saturate_np(y: np.ndarray, zero_point, dtype: str) -> np.ndarray:
    """float32 y -> saturate(round_half_even(y) + zero_point) as dtype."""
    lo, hi = _range(dtype)
    return np.clip(np.rint(y).astype(np.float64) + zero_point, lo, hi).astype(DTYPES[dtype])  # rint: half to even


def _requantize_np(acc: np.ndarray, multiplier: np.ndarray, zero_point: int, dtype: str) -> np.ndarray:
    return _saturate_np(acc.astype(np.float32) * multiplier.astype(np.float32), zero_point, dtype)


def _saturate_relax(ctx, y, zero_point: int, dtype: str):
    """float32 y -> saturate(round_half_even(y) + zero_point) as dtype."""
    lo, hi = _range(dtype)
    y = ctx.bb.emit(nearbyint_te(ctx, y))
    y = R.add(y, relax.const(float(zero_point), "float32"))
    y = R.minimum(R.maximum(y, relax.const(float(lo), "float32")), relax.const(float(hi), "float32"))
    return R.astype(y, DTYPES[dtype].name)


def _requantize_relax(ctx, acc, multiplier: np.ndarray, zero_point: int, dtype: str):
    """int32 acc -> saturate(round_half_even(float32(acc) * multiplier) + zero_point) as dtype."""
    y = ctx.bb.emit(R.multiply(R.astype(acc, "float32"), relax.const(multiplier.astype(np.float32))))
    return _saturate_relax(ctx, y, zero_point, dtype)


def shifted_int32(x, zero_points: list[int], shape: list[int]):
    """int32(x) - zero point(s) as a Relax expression."""
    xi = R.astype(x, "int32")
    if not any(zero_points):
        return xi
    zp = np.asarray(zero_points, np.int32).reshape(shape)
    return R.subtract(xi, relax.const(zp))


# ---- quantize_linear / dequantize_linear ------------------------------------------------------

QDQ_ATTRS = {"scale": Attr("floats", REQUIRED), "zero_point": Attr("ints", []), "axis": Attr("int", 1)}


def _quantize_infer(types, attrs):
    t = types[0]
    if t.dtype != "f32":
        raise VerifyError(f"quantize_linear takes f32 input, got {t}")
    if attrs["dtype"] not in QUANT_DTYPES:
        raise VerifyError(f"quantize_linear: dtype must be one of {', '.join(QUANT_DTYPES)}, got {attrs['dtype']!r}")
    _check_params("quantize_linear", t, attrs["scale"], attrs["zero_point"], attrs["axis"], attrs["dtype"])
    return [TensorType(attrs["dtype"], t.shape)]


def _params(x_rank: int, attrs: dict) -> tuple[np.ndarray, np.ndarray]:
    """(scale f32, zero point i64) shaped to broadcast against the input."""
    scale = attrs["scale"]
    axis = normalize_axis(attrs["axis"], x_rank) if len(scale) > 1 else 0
    shape = _per_axis_shape(x_rank, axis, len(scale))
    zp = attrs["zero_point"] or [0] * len(scale)
    return _f32(scale).reshape(shape), np.asarray(zp, np.int64).reshape(shape)


def _quantize_np(xs, attrs):
    x = xs[0]
    scale, zp = _params(x.ndim, attrs)
    lo, hi = _range(attrs["dtype"])
    with np.errstate(all="ignore"):
        y = np.rint(x / scale).astype(np.float64) + zp
    return np.clip(np.nan_to_num(y, nan=0.0), lo, hi).astype(DTYPES[attrs["dtype"]])


def _quantize_lower(ctx, xs, attrs, out):
    x = xs[0]
    scale, zp = _params(len(out[0].shape), attrs)
    lo, hi = _range(attrs["dtype"])
    y = ctx.bb.emit(R.divide(x, relax.const(scale)))
    y = ctx.bb.emit(nearbyint_te(ctx, y))
    y = R.add(y, relax.const(zp.astype(np.float32)))
    y = R.minimum(R.maximum(y, relax.const(float(lo), "float32")), relax.const(float(hi), "float32"))
    return R.astype(y, DTYPES[attrs["dtype"]].name)


register_op(OpDef(
    name="quantize_linear", kind="opaque", infer=_quantize_infer, reference=_quantize_np,
    lower=_quantize_lower, attrs={**QDQ_ATTRS, "dtype": Attr("str", "u8")},
    summary="f32 -> integer: saturate(round_half_even(x / scale) + zero_point), per tensor or per axis"))


def _dequantize_infer(types, attrs):
    t = types[0]
    if t.dtype not in QUANT_DTYPES + ("i32",):
        raise VerifyError(f"dequantize_linear takes {', '.join(QUANT_DTYPES)} or i32 input, got {t}")
    _check_params("dequantize_linear", t, attrs["scale"], attrs["zero_point"], attrs["axis"], t.dtype)
    return [TensorType("f32", t.shape)]


def _dequantize_np(xs, attrs):
    x = xs[0]
    scale, zp = _params(x.ndim, attrs)
    return ((x.astype(np.int64) - zp).astype(np.float32) * scale).astype(np.float32)


def _dequantize_lower(ctx, xs, attrs, out):
    x = xs[0]
    scale, zp = _params(len(out[0].shape), attrs)
    wide = "int64" if str(x.ty.dtype) == "int32" else "int32"
    xi = R.astype(x, wide)
    if np.any(zp):
        xi = R.subtract(xi, relax.const(zp.astype(wide)))
    return R.multiply(R.astype(xi, "float32"), relax.const(scale))


register_op(OpDef(
    name="dequantize_linear", kind="opaque", infer=_dequantize_infer, reference=_dequantize_np,
    lower=_dequantize_lower, attrs=dict(QDQ_ATTRS),
    summary="integer -> f32: (x - zero_point) * scale, per tensor or per axis"))


# ---- matmul_integer / qlinear_matmul -----------------------------------------------------------

def _matmul_shape(op: str, a: TensorType, b: TensorType) -> tuple[int, ...]:
    if a.rank < 2 or b.rank < 2:
        raise VerifyError(f"{op} takes operands of rank 2 or more, got {a} and {b}")
    if a.shape[-1] != b.shape[-2]:
        raise VerifyError(f"{op}: {a} @ {b}: inner dimensions differ")
    batch = broadcast_shapes(a.shape[:-2], b.shape[:-2])
    return (*batch, a.shape[-2], b.shape[-1])


def _check_zero_points(op: str, what: str, zps: list[int], allowed: tuple[int, ...], dtype: str) -> None:
    if len(zps) not in allowed:
        raise VerifyError(f"{op}: {what} has {len(zps)} values, expected one of {sorted(set(allowed))}")
    lo, hi = _range(dtype)
    if any(not lo <= z <= hi for z in zps):
        raise VerifyError(f"{op}: {what} {zps} is outside the range of {dtype}")


def _int_matmul_np(a, b, azp: list[int], bzp: list[int]) -> np.ndarray:
    a64 = a.astype(np.int64) - np.asarray(azp, np.int64).reshape(-1, 1)
    b64 = b.astype(np.int64) - np.asarray(bzp, np.int64).reshape(1, -1)
    return np.matmul(a64, b64).astype(np.int32)  # int32 accumulation wraps like ONNX Runtime


def _int_matmul_relax(a, b, azp: list[int], bzp: list[int]):
    return R.matmul(shifted_int32(a, azp, [-1, 1]), shifted_int32(b, bzp, [1, -1]), out_dtype="int32")


# ---- the target's own int8 accumulator (a hook: `Target.int8_accumulator`) ------------------

def pad_last(values: np.ndarray, n: int, fill) -> np.ndarray:
    """A per-column vector of 1 or n0 <= n values, padded to n (a single value is kept)."""
    values = np.asarray(values)
    if values.size == 1 or values.shape[-1] == n:
        return values
    pad = np.full((*values.shape[:-1], n - values.shape[-1]), fill, values.dtype)
    return np.concatenate([values, pad], axis=-1)


def _target_acc(ctx, kind: str, x, w, x_zero_points: list[int], w_zero_points: list[int], attrs=None):
    """The target's own int32 accumulator for an integer matmul ("matmul") or 2-D conv ("conv"),
    padded on its last axis: (acc, padded size), or None for the generic lowering below."""
    return ctx.target.int8_accumulator(ctx, kind, x, w, x_zero_points, w_zero_points, attrs)


def _padded_bias(bias, n: int, n4: int):
    """An int32 bias of n values, zero padded to the accumulator's n4 columns."""
    return bias if n4 == n else R.concat([bias, relax.const(np.zeros(n4 - n, np.int32))], axis=0)


def _slice_last(x, n: int, n4: int):
    return x if n == n4 else R.strided_slice(x, axes=[-1], begin=[0], end=[n])


def _matmul_integer_lower(ctx, xs, attrs, out):
    a, b = xs
    found = _target_acc(ctx, "matmul", a, b, attrs["a_zero_point"], attrs["b_zero_point"])
    if found is not None:
        acc, n4 = found
        return _slice_last(acc, out[0].shape[-1], n4)
    return _int_matmul_relax(a, b, attrs["a_zero_point"], attrs["b_zero_point"])


def _matmul_integer_infer(types, attrs):
    a, b = types[0], types[1]
    if a.dtype not in INT8 or b.dtype not in INT8:
        raise VerifyError(f"matmul_integer takes u8/i8 operands, got {a} and {b}")
    shape = _matmul_shape("matmul_integer", a, b)
    _check_zero_points("matmul_integer", "a_zero_point", attrs["a_zero_point"], (1, a.shape[-2]), a.dtype)
    _check_zero_points("matmul_integer", "b_zero_point", attrs["b_zero_point"], (1, b.shape[-1]), b.dtype)
    return [TensorType("i32", shape)]


register_op(OpDef(
    name="matmul_integer", kind="complex", num_inputs=(2, 2), infer=_matmul_integer_infer,
    reference=lambda xs, a: _int_matmul_np(xs[0], xs[1], a["a_zero_point"], a["b_zero_point"]),
    lower=_matmul_integer_lower,
    attrs={"a_zero_point": Attr("ints", [0]), "b_zero_point": Attr("ints", [0])},
    summary="(a - a_zero_point) @ (b - b_zero_point), int32 result"))


QMATMUL_ATTRS = {"a_scale": Attr("float", REQUIRED), "a_zero_point": Attr("int", 0),
                 "b_scale": Attr("floats", REQUIRED), "b_zero_point": Attr("ints", [0]),
                 "y_scale": Attr("float", REQUIRED), "y_zero_point": Attr("int", 0), "dtype": Attr("str", "u8")}


def _multiplier(in_scale: float, w_scale: list[float], y_scale: float) -> np.ndarray:
    """ONNX Runtime's requantize multiplier, in float32: (in_scale * w_scale[i]) / y_scale."""
    return (np.float32(in_scale) * _f32(w_scale)) / np.float32(y_scale)


def _qlinear_matmul_infer(types, attrs):
    a, b = types[0], types[1]
    if a.dtype not in INT8 or b.dtype not in INT8:
        raise VerifyError(f"qlinear_matmul takes u8/i8 operands, got {a} and {b}")
    if attrs["dtype"] not in INT8:
        raise VerifyError(f"qlinear_matmul: dtype must be u8 or i8, got {attrs['dtype']!r}")
    shape = _matmul_shape("qlinear_matmul", a, b)
    n = b.shape[-1]
    _check_zero_points("qlinear_matmul", "a_zero_point", [attrs["a_zero_point"]], (1,), a.dtype)
    _check_zero_points("qlinear_matmul", "b_zero_point", attrs["b_zero_point"], (1, n), b.dtype)
    _check_zero_points("qlinear_matmul", "y_zero_point", [attrs["y_zero_point"]], (1,), attrs["dtype"])
    if len(attrs["b_scale"]) not in (1, n):
        raise VerifyError(f"qlinear_matmul: b_scale has {len(attrs['b_scale'])} values, expected 1 or {n}")
    if len(types) > 2 and (types[2].dtype != "i32" or types[2].shape != (n,)):
        raise VerifyError(f"qlinear_matmul: the bias must be i32[{n}], got {types[2]}")
    return [TensorType(attrs["dtype"], shape)]


def _qlinear_matmul_np(xs, attrs):
    acc = _int_matmul_np(xs[0], xs[1], [attrs["a_zero_point"]], attrs["b_zero_point"])
    if len(xs) > 2:
        acc = (acc.astype(np.int64) + xs[2].astype(np.int64)).astype(np.int32)
    m = _multiplier(attrs["a_scale"], attrs["b_scale"], attrs["y_scale"])
    return _requantize_np(acc, m, attrs["y_zero_point"], attrs["dtype"])


def _qlinear_matmul_lower(ctx, xs, attrs, out):
    m = _multiplier(attrs["a_scale"], attrs["b_scale"], attrs["y_scale"])
    found = _target_acc(ctx, "matmul", xs[0], xs[1], [attrs["a_zero_point"]], attrs["b_zero_point"])
    n = out[0].shape[-1]
    if found is not None:
        acc, n4 = found
        if len(xs) > 2:
            acc = ctx.bb.emit(R.add(acc, _padded_bias(xs[2], n, n4)))
        y = _requantize_relax(ctx, acc, pad_last(m, n4, 1.0), attrs["y_zero_point"], attrs["dtype"])
        return _slice_last(ctx.bb.emit(y), n, n4)
    acc = ctx.bb.emit(_int_matmul_relax(xs[0], xs[1], [attrs["a_zero_point"]], attrs["b_zero_point"]))
    if len(xs) > 2:
        acc = ctx.bb.emit(R.add(acc, xs[2]))
    return _requantize_relax(ctx, acc, m, attrs["y_zero_point"], attrs["dtype"])


register_op(OpDef(
    name="qlinear_matmul", kind="complex", num_inputs=(2, 3), infer=_qlinear_matmul_infer,
    reference=_qlinear_matmul_np, lower=_qlinear_matmul_lower, attrs=QMATMUL_ATTRS,
    summary="quantized matmul (optional int32 bias per column), requantized like ONNX Runtime"))


# ---- conv_integer / qlinear_conv (2-D, NCHW or NHWC) -------------------------------------------

CONV_GEOMETRY = {"strides": Attr("ints", [1, 1]), "pads": Attr("ints", [0, 0, 0, 0]),
                 "dilations": Attr("ints", [1, 1]), "group": Attr("int", 1), "layout": Attr("str", "NCHW")}


def _channels_first(shape: tuple[int, ...]) -> tuple[int, ...]:
    """An NHWC (or OHWI) shape as NCHW (OIHW)."""
    return (shape[0], shape[-1], *shape[1:-1])


def _conv_shape(op: str, x: TensorType, w: TensorType, attrs: dict) -> tuple[int, ...]:
    if x.rank != 4 or w.rank != 4:
        raise VerifyError(f"{op} supports 2-D convolutions (rank-4 NCHW or NHWC input, OIHW or OHWI weight), "
                          f"got {x} and {w}")
    last = _check_layout(attrs, x.rank)
    xs, ws = (_channels_first(x.shape), _channels_first(w.shape)) if last else (x.shape, w.shape)
    strides, pads, dils, g = attrs["strides"], attrs["pads"], attrs["dilations"], attrs["group"]
    if len(strides) != 2 or len(dils) != 2 or len(pads) != 4:
        raise VerifyError(f"{op}: strides {strides} and dilations {dils} need 2 values, pads {pads} 4")
    if min(strides) < 1 or min(dils) < 1 or min(pads) < 0:
        raise VerifyError(f"{op}: strides {strides} and dilations {dils} must be >= 1, pads {pads} >= 0")
    if g < 1 or xs[1] != ws[1] * g or ws[0] % g:
        raise VerifyError(f"{op}: input {x}, weight {w} and group {g} do not agree ({attrs['layout']})")
    out = [(xs[2 + i] + pads[i] + pads[i + 2] - dils[i] * (ws[2 + i] - 1) - 1) // strides[i] + 1 for i in range(2)]
    if min(out) < 1:
        raise VerifyError(f"{op}: the output would be empty (spatial {out})")
    return (xs[0], *out, ws[0]) if last else (xs[0], ws[0], *out)


def _int_conv_np(x, w, xzp: int, wzp: list[int], attrs) -> np.ndarray:
    last = attrs["layout"] == "NHWC"
    if last:
        x, w = _to_cf(x), _to_cf(w)
    xs = x.astype(np.int64) - xzp
    ws = w.astype(np.int64) - np.asarray(wzp, np.int64).reshape(-1, 1, 1, 1)
    acc = conv_nchw_np(xs, ws, attrs["strides"], attrs["pads"], attrs["dilations"], attrs["group"])
    acc = np.rint(acc).astype(np.int64).astype(np.int32)  # float64 holds these sums exactly
    return _to_cl(acc) if last else acc


def _int_conv_relax(ctx, x, w, xzp: int, wzp: list[int], attrs):
    """The generic int32 conv: NCHW with the OIHW weight, or NHWC with the OHWI weight handed
    to TVM as HWIO (`tvm_conv_weight`, as the float conv does)."""
    last = attrs["layout"] == "NHWC"
    w, kernel_layout = tvm_conv_weight(ctx, w, 2, last)
    return R.nn.conv2d(shifted_int32(x, [xzp], [1]), shifted_int32(w, wzp, [1, 1, 1, -1] if last else [-1, 1, 1, 1]),
                       strides=attrs["strides"], padding=attrs["pads"], dilation=attrs["dilations"],
                       groups=attrs["group"], data_layout=_tvm_layout(2, last), kernel_layout=kernel_layout,
                       out_dtype="int32")


def _channel_vector(values, attrs: dict):
    """Per-output-channel values shaped to broadcast against the conv's output in its layout."""
    return values.reshape(_channel_shape(4, -1, attrs["layout"] == "NHWC"))


def _acc_in_layout(ctx, acc, o: int, o4: int, attrs: dict):
    """The target's NHWC accumulator (O4 channels) cut to the o channels, in the conv's layout."""
    y = _slice_last(acc, o, o4)
    return y if attrs["layout"] == "NHWC" else R.permute_dims(ctx.bb.emit(y), [0, 3, 1, 2])


def _out_channels(out, attrs: dict) -> int:
    return out[0].shape[-1 if attrs["layout"] == "NHWC" else 1]


def _conv_integer_lower(ctx, xs, attrs, out):
    x, w = xs
    found = _target_acc(ctx, "conv", x, w, [attrs["x_zero_point"]], attrs["w_zero_point"], attrs)
    if found is not None:
        acc, o4 = found
        return _acc_in_layout(ctx, acc, _out_channels(out, attrs), o4, attrs)
    acc = _float_exact_conv(ctx, xs, attrs)
    if acc is not None:
        return R.astype(acc, "int32")
    return _int_conv_relax(ctx, x, w, attrs["x_zero_point"], attrs["w_zero_point"], attrs)


def _conv_integer_infer(types, attrs):
    x, w = types[0], types[1]
    if x.dtype not in INT8 or w.dtype not in INT8:
        raise VerifyError(f"conv_integer takes u8/i8 operands, got {x} and {w}")
    shape = _conv_shape("conv_integer", x, w, attrs)
    _check_zero_points("conv_integer", "x_zero_point", [attrs["x_zero_point"]], (1,), x.dtype)
    _check_zero_points("conv_integer", "w_zero_point", attrs["w_zero_point"], (1, w.shape[0]), w.dtype)
    return [TensorType("i32", shape)]


register_op(OpDef(
    name="conv_integer", kind="complex", num_inputs=(2, 2), infer=_conv_integer_infer,
    reference=lambda xs, a: _int_conv_np(xs[0], xs[1], a["x_zero_point"], a["w_zero_point"], a),
    lower=_conv_integer_lower,
    attrs={**CONV_GEOMETRY, "x_zero_point": Attr("int", 0), "w_zero_point": Attr("ints", [0])},
    summary="2-D convolution of zero-point shifted u8/i8 operands, int32 result (NCHW or NHWC)",
    layout_sensitive=True))


QCONV_ATTRS = {**CONV_GEOMETRY, "x_scale": Attr("float", REQUIRED), "x_zero_point": Attr("int", 0),
               "w_scale": Attr("floats", REQUIRED), "w_zero_point": Attr("ints", [0]),
               "y_scale": Attr("float", REQUIRED), "y_zero_point": Attr("int", 0), "dtype": Attr("str", "u8")}


def _qlinear_conv_infer(types, attrs):
    x, w = types[0], types[1]
    if x.dtype not in INT8 or w.dtype not in INT8:
        raise VerifyError(f"qlinear_conv takes u8/i8 operands, got {x} and {w}")
    if attrs["dtype"] not in INT8:
        raise VerifyError(f"qlinear_conv: dtype must be u8 or i8, got {attrs['dtype']!r}")
    shape = _conv_shape("qlinear_conv", x, w, attrs)
    out_ch = w.shape[0]
    _check_zero_points("qlinear_conv", "x_zero_point", [attrs["x_zero_point"]], (1,), x.dtype)
    _check_zero_points("qlinear_conv", "w_zero_point", attrs["w_zero_point"], (1, out_ch), w.dtype)
    _check_zero_points("qlinear_conv", "y_zero_point", [attrs["y_zero_point"]], (1,), attrs["dtype"])
    if len(attrs["w_scale"]) not in (1, out_ch):
        raise VerifyError(f"qlinear_conv: w_scale has {len(attrs['w_scale'])} values, expected 1 or {out_ch}")
    if len(types) > 2 and (types[2].dtype != "i32" or types[2].shape != (out_ch,)):
        raise VerifyError(f"qlinear_conv: the bias must be i32[{out_ch}], got {types[2]}")
    return [TensorType(attrs["dtype"], shape)]


def _qlinear_conv_np(xs, attrs):
    acc = _int_conv_np(xs[0], xs[1], attrs["x_zero_point"], attrs["w_zero_point"], attrs)
    if len(xs) > 2:
        acc = (acc.astype(np.int64) + _channel_vector(xs[2].astype(np.int64), attrs)).astype(np.int32)
    m = _channel_vector(_multiplier(attrs["x_scale"], attrs["w_scale"], attrs["y_scale"]), attrs)
    return _requantize_np(acc, m, attrs["y_zero_point"], attrs["dtype"])


def _qlinear_conv_dot(ctx, xs, attrs, out):
    """qlinear_conv on the target's own accumulator (None when the target has none): NHWC accumulator,
    bias and requantization per output channel on the last axis, then in the conv's layout (a
    transpose back for NCHW, none for NHWC)."""
    found = _target_acc(ctx, "conv", xs[0], xs[1], [attrs["x_zero_point"]], attrs["w_zero_point"], attrs)
    if found is None:
        return None
    acc, o4 = found
    o = _out_channels(out, attrs)
    if len(xs) > 2:
        acc = ctx.bb.emit(R.add(acc, _padded_bias(xs[2], o, o4)))
    m = pad_last(_multiplier(attrs["x_scale"], attrs["w_scale"], attrs["y_scale"]), o4, 1.0)
    y = ctx.bb.emit(_requantize_relax(ctx, acc, m, attrs["y_zero_point"], attrs["dtype"]))
    return _acc_in_layout(ctx, y, o, o4, attrs)


FLOAT_EXACT = 2 ** 24  # float32 holds every integer of smaller magnitude


def float_exact(k: int, x_max: int, w_max: int, bias_max: int) -> bool:
    """Whether float32 sums K products of |x| <= x_max and |w| <= w_max, plus a bias of at most
    bias_max, exactly: every partial sum is then an integer below 2^24."""
    return k * x_max * w_max + bias_max < FLOAT_EXACT


def _float_exact_conv(ctx, xs, attrs):
    """The conv's integer accumulator (plus bias) computed in float32, or None when float32 might
    round it. With a constant weight (and bias), every partial sum is bounded by
    K * max|x - xzp| * max|w - wzp| (+ max|bias|); below 2^24 each product and sum is an integer
    float32 holds exactly, so the result is the int32 one, bit for bit, on the float conv
    schedules (depthwise 3x3: K = 9, always). The requantization then reads it as float32(acc)."""
    x, w = xs[0], xs[1]
    if not all(isinstance(v, tvm.ir.expr.Constant) for v in xs[1:]):
        return None
    wdata = w.value.numpy().astype(np.int64)
    last = attrs["layout"] == "NHWC"
    # OIHW or OHWI: the output channel is axis 0 either way
    shifted = wdata - np.asarray(attrs["w_zero_point"], np.int64).reshape(-1, 1, 1, 1)
    k = int(np.prod(wdata.shape[1:]))
    lo, hi = _range({"uint8": "u8", "int8": "i8"}[str(x.ty.dtype)])
    xzp = attrs["x_zero_point"]
    x_max = max(xzp - lo, hi - xzp)
    bias = int(np.abs(xs[2].value.numpy().astype(np.int64)).max(initial=0)) if len(xs) > 2 else 0
    if not float_exact(k, x_max, int(np.abs(shifted).max(initial=0)), bias):
        return None
    xf = R.astype(x, "float32")
    if xzp:
        xf = R.subtract(xf, relax.const(np.float32(xzp)))
    wf, kernel_layout = tvm_conv_weight(ctx, relax.const(shifted.astype(np.float32)), 2, last)
    acc = ctx.bb.emit(R.nn.conv2d(xf, wf, strides=attrs["strides"], padding=attrs["pads"],
                                  dilation=attrs["dilations"], groups=attrs["group"],
                                  data_layout=_tvm_layout(2, last), kernel_layout=kernel_layout,
                                  out_dtype="float32"))
    if len(xs) > 2:
        b = xs[2].value.numpy().astype(np.float32)
        acc = ctx.bb.emit(R.add(acc, relax.const(b.reshape(_channel_shape(4, -1, last)))))
    return acc


def _qlinear_conv_lower(ctx, xs, attrs, out):
    y = _qlinear_conv_dot(ctx, xs, attrs, out)
    if y is not None:
        return y
    m = _channel_vector(_multiplier(attrs["x_scale"], attrs["w_scale"], attrs["y_scale"]), attrs)
    acc = _float_exact_conv(ctx, xs, attrs)
    if acc is not None:
        y = ctx.bb.emit(R.multiply(acc, relax.const(m.astype(np.float32))))
        return _saturate_relax(ctx, y, attrs["y_zero_point"], attrs["dtype"])
    acc = ctx.bb.emit(_int_conv_relax(ctx, xs[0], xs[1], attrs["x_zero_point"], attrs["w_zero_point"], attrs))
    if len(xs) > 2:
        acc = ctx.bb.emit(R.add(acc, R.reshape(xs[2], _channel_shape(4, -1, attrs["layout"] == "NHWC"))))
    return _requantize_relax(ctx, acc, m, attrs["y_zero_point"], attrs["dtype"])


register_op(OpDef(
    name="qlinear_conv", kind="complex", num_inputs=(2, 3), infer=_qlinear_conv_infer,
    reference=_qlinear_conv_np, lower=_qlinear_conv_lower, attrs=QCONV_ATTRS,
    summary="quantized 2-D convolution (optional int32 bias; NCHW or NHWC), requantized like ONNX Runtime",
    layout_sensitive=True))


# ---- ONNX importers ---------------------------------------------------------------------------

def _const_params(ctx, value, what: str, float_values: bool, float_dtypes=("f32",)) -> tuple[list, str | None]:
    """A constant scale (of one of `float_dtypes`) or zero point: (values as a flat list, its
    dtype); None gives ([], None)."""
    if value is None:
        return [], None
    arr = ctx.constant_of(value, what)
    if arr.ndim > 1:
        raise ctx.fail(f"'{what}' must be a scalar or 1-D (block quantization is not supported), got {value.type}")
    if float_values:
        if value.type.dtype not in float_dtypes:
            raise ctx.fail(f"'{what}' must be {' or '.join(DTYPES[d].name for d in float_dtypes)}, got {value.type}")
        return [float(v) for v in arr.reshape(-1)], value.type.dtype
    return [int(v) for v in arr.reshape(-1)], value.type.dtype


def _scalar(ctx, values: list, what: str):
    if len(values) != 1:
        raise ctx.fail(f"'{what}' must be a scalar (per-tensor), got {len(values)} values")
    return values[0]


def _refuse_blocks(ctx, attrs):
    if attrs.get("block_size", 0):
        raise ctx.fail("block quantization (block_size) is not supported")


def _quantize_computed(ctx, x, scale, zero_point, dtype: str):
    """QuantizeLinear with a per-tensor scale (and zero point) computed in the graph, as
    DynamicQuantizeLinear's expansion has: saturate(round(x / scale) + zero_point), in edgec ops."""
    if scale.type.size != 1 or zero_point is not None and zero_point.type.size != 1:
        for v, what in ((scale, "y_scale"), (zero_point, "y_zero_point")):
            if v is not None and not v.is_const:  # names the graph input behind it, which the backend binds
                ctx.constant_of(v, what, "a scale or zero point computed in the graph must be per-tensor (one value)")
        raise ctx.fail(f"a scale or zero point computed in the graph must be per-tensor (one value), got "
                       f"{scale.type} and {zero_point.type if zero_point is not None else 'none'}")
    if x.type.dtype != "f32" or scale.type.dtype != "f32":
        raise ctx.fail(f"quantizing {x.type} with a scale {scale.type} is not supported (f32 only)")
    y = ctx.emit1("round", [ctx.emit1("div", [x, ctx.emit1("reshape", [scale], {"shape": []})])])
    if zero_point is not None:
        y = ctx.emit1("add", [y, ctx.emit1("cast", [ctx.emit1("reshape", [zero_point], {"shape": []})],
                                                    {"to": "f32"})])
    info = np.iinfo(DTYPES[dtype])
    y = ctx.emit1("clip", [y], {"min": float(info.min), "max": float(info.max)})
    return ctx.emit("cast", [y], {"to": dtype})


@onnx_op("QuantizeLinear")
def _import_quantize(ctx, node, inputs, attrs):
    """Constant scales and zero points (per tensor or per axis) import to `quantize_linear`;
    a per-tensor scale or zero point computed in the graph, to elementwise ops."""
    _refuse_blocks(ctx, attrs)
    from ..onnx_import import ONNX_DTYPES
    x = inputs[0]
    computed = [v for v in inputs[1:3] if v is not None and not v.is_const]
    if computed and len(inputs) > 1 and inputs[1] is not None:
        zero_point = inputs[2] if len(inputs) > 2 else None
        dtype = zero_point.type.dtype if zero_point is not None else "u8"
        if zero_point is None and attrs.get("output_dtype", 0):
            dtype = ONNX_DTYPES.get(attrs["output_dtype"], f"ONNX type {attrs['output_dtype']}")
        if dtype not in QUANT_DTYPES:
            raise ctx.fail(f"quantizing to {dtype} is not supported (supported: {', '.join(QUANT_DTYPES)})")
        return _quantize_computed(ctx, x, inputs[1], zero_point, dtype)
    scale, _ = _const_params(ctx, inputs[1] if len(inputs) > 1 else None, "y_scale", True)
    zp, zp_dtype = _const_params(ctx, inputs[2] if len(inputs) > 2 else None, "y_zero_point", False)
    if not scale:
        raise ctx.fail("input 'y_scale' is missing")
    if zp_dtype is not None:
        dtype = zp_dtype
    elif attrs.get("output_dtype", 0):
        dtype = ONNX_DTYPES.get(attrs["output_dtype"], f"ONNX type {attrs['output_dtype']}")
    else:
        dtype = "u8"
    if dtype not in QUANT_DTYPES:
        raise ctx.fail(f"quantizing to {dtype} is not supported (supported: {', '.join(QUANT_DTYPES)})")
    if x.type.dtype != "f32":
        raise ctx.fail(f"quantizing {x.type} is not supported (f32 only)")
    axis = attrs.get("axis", 1) if len(scale) > 1 else 1
    return ctx.emit("quantize_linear", [x], {"scale": scale, "zero_point": zp, "axis": axis, "dtype": dtype})


@onnx_op("DequantizeLinear")
def _import_dequantize(ctx, node, inputs, attrs):
    _refuse_blocks(ctx, attrs)
    x = inputs[0]
    scale, _ = _const_params(ctx, inputs[1] if len(inputs) > 1 else None, "x_scale", True)
    zp, zp_dtype = _const_params(ctx, inputs[2] if len(inputs) > 2 else None, "x_zero_point", False)
    if not scale:
        raise ctx.fail("input 'x_scale' is missing")
    if zp_dtype is not None and zp_dtype != x.type.dtype:
        raise ctx.fail(f"the zero point is {zp_dtype}, the input {x.type}")
    if x.type.dtype == "i32" and any(zp):
        raise ctx.fail("an i32 input needs a zero point of 0")
    axis = attrs.get("axis", 1) if len(scale) > 1 else 1
    return ctx.emit("dequantize_linear", [x], {"scale": scale, "zero_point": zp, "axis": axis})


@onnx_op("MatMulInteger")
def _import_matmul_integer(ctx, node, inputs, attrs):
    a, b = inputs[0], inputs[1]
    azp, _ = _const_params(ctx, inputs[2] if len(inputs) > 2 else None, "a_zero_point", False)
    bzp, _ = _const_params(ctx, inputs[3] if len(inputs) > 3 else None, "b_zero_point", False)
    return ctx.emit("matmul_integer", [a, b], {"a_zero_point": azp or [0], "b_zero_point": bzp or [0]})


@onnx_op("QLinearMatMul")
def _import_qlinear_matmul(ctx, node, inputs, attrs):
    """Scales of float32 or (opset 21) float16, whose values are exact in float32."""
    a, b = inputs[0], inputs[3]
    a_scale, _ = _const_params(ctx, inputs[1], "a_scale", True, ("f32", "f16"))
    azp, _ = _const_params(ctx, inputs[2], "a_zero_point", False)
    b_scale, _ = _const_params(ctx, inputs[4], "b_scale", True, ("f32", "f16"))
    bzp, _ = _const_params(ctx, inputs[5], "b_zero_point", False)
    y_scale, _ = _const_params(ctx, inputs[6], "y_scale", True, ("f32", "f16"))
    yzp, y_dtype = _const_params(ctx, inputs[7], "y_zero_point", False)
    return ctx.emit("qlinear_matmul", [a, b], {
        "a_scale": _scalar(ctx, a_scale, "a_scale"), "a_zero_point": _scalar(ctx, azp or [0], "a_zero_point"),
        "b_scale": b_scale, "b_zero_point": bzp or [0], "y_scale": _scalar(ctx, y_scale, "y_scale"),
        "y_zero_point": _scalar(ctx, yzp or [0], "y_zero_point"), "dtype": y_dtype or "u8"})


def _conv_geometry(ctx, x, w, attrs) -> dict:
    if x.type.rank != 4 or w.type.rank != 4:
        raise ctx.fail(f"only 2-D convolutions are supported, got input {x.type} and weight {w.type}")
    kernel = list(attrs.get("kernel_shape", w.type.shape[2:]))
    if kernel != list(w.type.shape[2:]):
        raise ctx.fail(f"kernel_shape {kernel} does not match the weight {w.type}")
    strides = list(attrs.get("strides", [1, 1]))
    dils = list(attrs.get("dilations", [1, 1]))
    pads = resolve_auto_pad(ctx, attrs.get("auto_pad", "NOTSET"), x.type.shape[2:], kernel, strides, dils,
                            attrs.get("pads", []))
    return {"strides": strides, "pads": pads, "dilations": dils, "group": attrs.get("group", 1)}


@onnx_op("ConvInteger")
def _import_conv_integer(ctx, node, inputs, attrs):
    x, w = inputs[0], inputs[1]
    xzp, _ = _const_params(ctx, inputs[2] if len(inputs) > 2 else None, "x_zero_point", False)
    wzp, _ = _const_params(ctx, inputs[3] if len(inputs) > 3 else None, "w_zero_point", False)
    return ctx.emit("conv_integer", [x, w], {**_conv_geometry(ctx, x, w, attrs),
                                             "x_zero_point": _scalar(ctx, xzp or [0], "x_zero_point"),
                                             "w_zero_point": wzp or [0]})


@onnx_op("QLinearConv")
def _import_qlinear_conv(ctx, node, inputs, attrs):
    x, w = inputs[0], inputs[3]
    x_scale, _ = _const_params(ctx, inputs[1], "x_scale", True)
    xzp, _ = _const_params(ctx, inputs[2], "x_zero_point", False)
    w_scale, _ = _const_params(ctx, inputs[4], "w_scale", True)
    wzp, _ = _const_params(ctx, inputs[5], "w_zero_point", False)
    y_scale, _ = _const_params(ctx, inputs[6], "y_scale", True)
    yzp, y_dtype = _const_params(ctx, inputs[7], "y_zero_point", False)
    bias = inputs[8] if len(inputs) > 8 else None
    return ctx.emit("qlinear_conv", [x, w] + ([bias] if bias is not None else []), {
        **_conv_geometry(ctx, x, w, attrs),
        "x_scale": _scalar(ctx, x_scale, "x_scale"), "x_zero_point": _scalar(ctx, xzp or [0], "x_zero_point"),
        "w_scale": w_scale, "w_zero_point": wzp or [0], "y_scale": _scalar(ctx, y_scale, "y_scale"),
        "y_zero_point": _scalar(ctx, yzp or [0], "y_zero_point"), "dtype": y_dtype or "u8"})
