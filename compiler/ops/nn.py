"""Ops of the nn family (see base.py for what a definition holds).

| op | inputs | notes |
|---|---|---|
| `conv` | x, w[, b] | 1-D/2-D/3-D, groups, dilations, asymmetric pads, `layout` NCHW (w OIHW) or NHWC (w OHWI), fused activation |
| `conv_transpose` | x, w[, b] | 1-D/2-D, NCHW, w [C, O/group, k...], pads, output_padding, dilations, groups |
| `batch_norm` | x, scale, bias, mean, var | inference mode; `layout` NCHW or NHWC |
| `max_pool`, `avg_pool` | x | 1-D/2-D/3-D, pads, dilations, ceil_mode, count_include_pad, `layout` |
| `global_avg_pool`, `global_max_pool` | x | `layout` |
| `layer_norm` | x, scale[, bias] | normalizes axes [axis, rank) |
| `instance_norm`, `group_norm` | x, scale, bias | per-channel scale and bias |
| `lrn` | x | across channels |
| `softmax`, `log_softmax`, `hardmax` | x | `coerce_2d=1`: opset < 13 semantics (all axes from `axis` on, jointly) |
| `matmul` | a, b | numpy matmul (1-D operands, broadcast batch), transpose_a/b, fused activation |
| `dense` | x, w[, b] | y = x @ w^T + b with w [N, K], fused activation |
| `prelu` | x, slope | slope broadcasts to x |
| `resize` | x | nearest / linear, output `sizes` and coordinate `scales` as attributes |
| `depth_to_space`, `space_to_depth` | x | DCR / CRD |
| `grid_sample` | x, grid | nearest / linear / cubic, zeros / border / reflection padding, align_corners, N-D |

Pads are in ONNX order: all begins, then all ends. Empty `strides`/`dilations`/`pads` mean
ones/zeros. ONNX `auto_pad` is resolved to explicit pads at import. `layout` names the channel
position for any rank (NCHW: channels first, NHWC: channels last).

Pooling with ceil_mode follows ONNX Runtime and PyTorch: a last window that would start in the end
padding is dropped. Gemm imports to `dense` when B is constant (see `_import_gemm`); Resize and
Upsample to `resize` with the output size computed at import and coordinates computed the way ONNX
Runtime computes them. CausalConvWithState imports to concat + depthwise `conv` (+ silu) + slice,
Col2Im to `conv_transpose` with a one-hot kernel, AffineGrid to `matmul` with a constant base grid,
MeanVarianceNormalization to reductions and elementwise ops, Det (n <= 3) to cofactor expansion.
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import VerifyError
from ..lazy import LazyModule
from ..ir import TensorType, is_float
from .base import Attr, OpDef, REQUIRED, broadcast_shapes, normalize_axis, onnx_op, register_op
from .elementwise import ACTIVATION_ATTRS, apply_activation_np, apply_activation_relax, check_activation

tvm = LazyModule("tvm")
relax = LazyModule("tvm.relax")
te = LazyModule("tvm.te")
tirx = LazyModule("tvm.tirx")
topi = LazyModule("tvm.topi")
R = LazyModule("tvm.relax.op")
LAYOUTS = ("NCHW", "NHWC")


# ---- shared helpers -------------------------------------------------------------------------

def _full(values: list, n: int, fill, what: str) -> list:
    """`values` for n spatial dims; empty means `fill` everywhere."""
    if not values:
        return [fill] * n
    if len(values) != n:
        raise VerifyError(f"{what} has {len(values)} values, expected {n}")
    return list(values)


def _spatial_attrs(attrs: dict, n: int) -> tuple[list[int], list[int], list[int]]:
    """(strides, pads [begins..., ends...], dilations), defaults filled in and checked."""
    strides = _full(attrs["strides"], n, 1, "strides")
    pads = _full(attrs["pads"], 2 * n, 0, "pads")
    dils = _full(attrs["dilations"], n, 1, "dilations")
    if any(s < 1 for s in strides) or any(d < 1 for d in dils) or any(p < 0 for p in pads):
        raise VerifyError(f"strides {strides} and dilations {dils} must be >= 1, pads {pads} >= 0")
    return strides, pads, dils


def _check_layout(attrs: dict, rank: int, min_rank: int = 3) -> bool:
    """True for channels-last (NHWC). The layout names the channel position for any rank:
    NCHW is channels-first (NCW, NCDHW too), NHWC channels-last."""
    if attrs["layout"] not in LAYOUTS:
        raise VerifyError(f"layout must be one of {', '.join(LAYOUTS)}, got {attrs['layout']!r}")
    if rank < min_rank:
        raise VerifyError(f"expects a tensor of rank >= {min_rank} (N, C, spatial...), got rank {rank}")
    return attrs["layout"] == "NHWC"


def _to_cf(x: np.ndarray) -> np.ndarray:
    """Channels-last to channels-first."""
    return np.moveaxis(x, -1, 1)


def _to_cl(x: np.ndarray) -> np.ndarray:
    return np.moveaxis(x, 1, -1)


def _tvm_layout(n: int, channels_last: bool) -> str:
    sp = "DHW"[3 - n:]
    return f"N{sp}C" if channels_last else f"NC{sp}"


def _float_type(t: TensorType, what: str) -> None:
    if not is_float(t.dtype):
        raise VerifyError(f"{what} must be a float tensor, got {t}")


def _same_dtype(types: list[TensorType]) -> None:
    if len({t.dtype for t in types}) != 1:
        raise VerifyError(f"operand dtypes differ: {', '.join(str(t) for t in types)}")


def _rconst(value, dtype: str):
    return relax.const(value, dtype)


def _channel_shape(rank: int, channels: int, channels_last: bool) -> list[int]:
    """Shape that broadcasts a per-channel vector against a rank-`rank` tensor."""
    return [channels] if channels_last else [1, channels] + [1] * (rank - 2)


def resolve_auto_pad(ctx, auto_pad: str, in_sizes, kernel, strides, dils, pads) -> list[int]:
    """ONNX auto_pad to explicit pads (conv and pools): NOTSET keeps `pads`, VALID is zeros,
    SAME_UPPER/SAME_LOWER give an output of ceil(in / stride) with the odd pad at the end/begin."""
    n = len(in_sizes)
    if auto_pad in ("NOTSET", ""):
        return list(pads) if pads else [0] * (2 * n)
    if auto_pad == "VALID":
        return [0] * (2 * n)
    if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
        raise ctx.fail(f"unknown auto_pad {auto_pad!r}")
    begins, ends = [], []
    for i in range(n):
        out = -(-in_sizes[i] // strides[i])
        total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dils[i] + 1 - in_sizes[i])
        small, big = total // 2, total - total // 2
        begins.append(small if auto_pad == "SAME_UPPER" else big)
        ends.append(big if auto_pad == "SAME_UPPER" else small)
    return begins + ends


def _importer(*op_types: str):
    """`onnx_op` for this module: an attribute that is missing or does not fit (VerifyError,
    KeyError) becomes an error naming the ONNX node."""
    def wrap(fn):
        def convert(ctx, node, inputs, attrs):
            try:
                return fn(ctx, node, inputs, attrs)
            except VerifyError as e:
                raise ctx.fail(str(e)) from None
            except KeyError as e:
                raise ctx.fail(f"required attribute {e} is missing") from None
        onnx_op(*op_types)(convert)
        return fn
    return wrap


def _only_first_output(ctx, node, what: str) -> None:
    if any(name for name in node.output[1:]):
        raise ctx.fail(f"only the first output is supported; {what} must be unused (drop the output names)")


# ---- conv -----------------------------------------------------------------------------------

CONV_ATTRS = {"strides": Attr("ints", []), "pads": Attr("ints", []), "dilations": Attr("ints", []),
              "group": Attr("int", 1), "layout": Attr("str", "NCHW"), **ACTIVATION_ATTRS}


def _conv_out_size(in_size: int, k: int, s: int, d: int, pb: int, pe: int) -> int:
    return (in_size + pb + pe - d * (k - 1) - 1) // s + 1


def _conv_infer(types, attrs):
    check_activation(attrs)
    x, w = types[0], types[1]
    last = _check_layout(attrs, x.rank)
    _same_dtype(types)
    _float_type(x, "conv input")
    n = x.rank - 2
    if n > 3 or w.rank != x.rank:
        raise VerifyError(f"conv takes 1-D to 3-D inputs with weights of the same rank, got {x} and {w}")
    strides, pads, dils = _spatial_attrs(attrs, n)
    g = attrs["group"]
    if last:
        channels, spatial, out_ch, kernel, w_in = x.shape[-1], x.shape[1:-1], w.shape[0], w.shape[1:-1], w.shape[-1]
    else:
        channels, spatial, out_ch, kernel, w_in = x.shape[1], x.shape[2:], w.shape[0], w.shape[2:], w.shape[1]
    if g < 1 or channels != w_in * g or out_ch % g:
        raise VerifyError(f"conv: input channels {channels}, weight {w} and group {g} do not agree")
    if len(types) > 2 and types[2].shape != (out_ch,):
        raise VerifyError(f"conv bias must have shape [{out_ch}], got {types[2]}")
    out = [_conv_out_size(spatial[i], kernel[i], strides[i], dils[i], pads[i], pads[i + n]) for i in range(n)]
    if any(o < 1 for o in out):
        raise VerifyError(f"conv output would be empty (spatial {out})")
    shape = (x.shape[0], *out, out_ch) if last else (x.shape[0], out_ch, *out)
    return [TensorType(x.dtype, shape)]


def conv_nchw_np(x, w, strides, pads, dils, group) -> np.ndarray:
    """Direct convolution in float64, channels-first, weights [O, C/group, k...]."""
    n = x.ndim - 2
    xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + [(pads[i], pads[i + n]) for i in range(n)])
    batch, channels = x.shape[:2]
    out_ch, kernel = w.shape[0], w.shape[2:]
    out = [(xp.shape[2 + i] - dils[i] * (kernel[i] - 1) - 1) // strides[i] + 1 for i in range(n)]
    xg = xp.reshape(batch, group, channels // group, *xp.shape[2:])
    wg = w.astype(np.float64).reshape(group, out_ch // group, channels // group, *kernel)
    acc = np.zeros((batch, group, out_ch // group, *out))
    for off in np.ndindex(*kernel):
        window = tuple(slice(off[i] * dils[i], off[i] * dils[i] + strides[i] * (out[i] - 1) + 1, strides[i])
                       for i in range(n))
        acc += np.einsum("ngc...,goc->ngo...", xg[(slice(None),) * 3 + window], wg[(slice(None),) * 3 + off])
    return acc.reshape(batch, out_ch, *out)


def _conv_ref(xs, attrs):
    x, w = xs[0], xs[1]
    n = x.ndim - 2
    strides, pads, dils = _spatial_attrs(attrs, n)
    last = attrs["layout"] == "NHWC"
    if last:
        x, w = _to_cf(x), _to_cf(w)
    y = conv_nchw_np(x, w, strides, pads, dils, attrs["group"])
    if len(xs) > 2:
        y = y + xs[2].astype(np.float64).reshape(_channel_shape(y.ndim, y.shape[1], False))
    y = y.astype(xs[0].dtype)
    if last:
        y = _to_cl(y)
    return apply_activation_np(y, attrs)


def tvm_conv_weight(ctx, w, n: int, channels_last: bool):
    """(weight, kernel_layout) that an n-D conv hands TVM: an OIHW weight (NCHW) as it is; an
    OHWI weight (NHWC) as HWIO, transposed at compile time when constant, in the kernel otherwise,
    so that the output channel is the weight's contiguous axis, which the schedules vectorize
    (targets/schedules)."""
    if not channels_last:
        return w, _tvm_layout(n, False).replace("N", "O").replace("C", "I")
    perm = [*range(1, n + 1), n + 1, 0]  # OHWI -> HWIO
    if isinstance(w, tvm.ir.expr.Constant):
        w = relax.const(np.ascontiguousarray(np.transpose(w.value.numpy(), perm)), str(w.ty.dtype))
    else:
        w = ctx.bb.emit(R.permute_dims(w, perm))
    return w, "DHW"[3 - n:] + "IO"


def _conv_lower(ctx, xs, attrs, out):
    """NCHW convs take OIHW weights, NHWC convs OHWI ones handed to TVM as HWIO (`tvm_conv_weight`)."""
    n = len(out[0].shape) - 2
    strides, pads, dils = _spatial_attrs(attrs, n)
    last = attrs["layout"] == "NHWC"
    layout = _tvm_layout(n, last)
    w, kernel_layout = tvm_conv_weight(ctx, xs[1], n, last)
    fn = {1: R.nn.conv1d, 2: R.nn.conv2d, 3: R.nn.conv3d}[n]
    dtype = str(xs[0].ty.dtype)
    y = fn(xs[0], w, strides=strides, padding=pads, dilation=dils, groups=attrs["group"],
           data_layout=layout, kernel_layout=kernel_layout, out_dtype=_accumulator(dtype))
    y = _narrow(ctx, y, dtype)
    if len(xs) > 2:
        y = R.add(ctx.bb.emit(y), R.reshape(xs[2], _channel_shape(n + 2, out[0].shape[-1 if last else 1], last)))
    return apply_activation_relax(y if attrs["activation"] == "" else ctx.bb.emit(y), attrs)


def _conv_macs(node) -> int:
    """Each output sums Cin/group * k... products (weight [Cout, Cin/group, k...])."""
    return node.outputs[0].type.size * int(np.prod(node.inputs[1].type.shape[1:]))


register_op(OpDef("conv", _conv_infer, _conv_ref, _conv_lower, CONV_ATTRS, kind="complex", num_inputs=(2, 3),
                  summary="N-d convolution (groups, dilations, pads), optional bias and fused activation",
                  anchor=True, layout_sensitive=True, macs=_conv_macs))


@_importer("Conv")
def _import_conv(ctx, node, inputs, attrs):
    """Conv 1-D to 3-D with optional bias; kernel_shape is checked against the weight; auto_pad
    (SAME_UPPER, SAME_LOWER, VALID, NOTSET) becomes explicit pads."""
    x, w = inputs[0], inputs[1]
    n = x.type.rank - 2
    if n < 1 or n > 3:
        raise ctx.fail(f"Conv on rank-{x.type.rank} input is not supported (1-D to 3-D only)")
    kernel = list(attrs.get("kernel_shape", w.type.shape[2:]))
    strides = _full(attrs.get("strides", []), n, 1, "strides")
    dils = _full(attrs.get("dilations", []), n, 1, "dilations")
    pads = resolve_auto_pad(ctx, attrs.get("auto_pad", "NOTSET"), x.type.shape[2:], kernel, strides, dils,
                            attrs.get("pads", []))
    if kernel != list(w.type.shape[2:]):
        raise ctx.fail(f"kernel_shape {kernel} does not match the weight {w.type}")
    ins = [x, w] + ([inputs[2]] if len(inputs) > 2 and inputs[2] is not None else [])
    return ctx.emit("conv", ins, {"strides": strides, "pads": pads, "dilations": dils,
                                  "group": attrs.get("group", 1)})


# ---- conv_transpose --------------------------------------------------------------------------

CONVT_ATTRS = {"strides": Attr("ints", []), "pads": Attr("ints", []), "dilations": Attr("ints", []),
               "output_padding": Attr("ints", []), "group": Attr("int", 1)}


def _convt_params(attrs, n):
    strides, pads, dils = _spatial_attrs(attrs, n)
    out_pad = _full(attrs["output_padding"], n, 0, "output_padding")
    return strides, pads, dils, out_pad


def _convt_infer(types, attrs):
    x, w = types[0], types[1]
    _same_dtype(types)
    _float_type(x, "conv_transpose input")
    n = x.rank - 2
    if n not in (1, 2, 3) or w.rank != x.rank:
        raise VerifyError(f"conv_transpose takes 1-D, 2-D or 3-D inputs with weights of the same rank, got {x} and {w}")
    strides, pads, dils, out_pad = _convt_params(attrs, n)
    g = attrs["group"]
    if g < 1 or x.shape[1] != w.shape[0] or x.shape[1] % g:
        raise VerifyError(f"conv_transpose: input {x}, weight {w} (shape [C, O/group, k...]) and group {g} do not agree")
    out_ch = w.shape[1] * g
    if len(types) > 2 and types[2].shape != (out_ch,):
        raise VerifyError(f"conv_transpose bias must have shape [{out_ch}], got {types[2]}")
    out = [strides[i] * (x.shape[2 + i] - 1) + out_pad[i] + (w.shape[2 + i] - 1) * dils[i] + 1 - pads[i] - pads[i + n]
           for i in range(n)]
    if any(o < 1 for o in out):
        raise VerifyError(f"conv_transpose output would be empty (spatial {out})")
    return [TensorType(x.dtype, (x.shape[0], out_ch, *out))]


def _convt_ref(xs, attrs):
    x, w = xs[0].astype(np.float64), xs[1].astype(np.float64)
    n = x.ndim - 2
    strides, pads, dils, out_pad = _convt_params(attrs, n)
    g = attrs["group"]
    batch, channels = x.shape[:2]
    og, kernel = w.shape[1], w.shape[2:]
    full = [strides[i] * (x.shape[2 + i] - 1) + (kernel[i] - 1) * dils[i] + 1 + out_pad[i] for i in range(n)]
    acc = np.zeros((batch, g, og, *full))
    xg = x.reshape(batch, g, channels // g, *x.shape[2:])
    wg = w.reshape(g, channels // g, og, *kernel)
    for off in np.ndindex(*kernel):
        window = tuple(slice(off[i] * dils[i], off[i] * dils[i] + strides[i] * (x.shape[2 + i] - 1) + 1, strides[i])
                       for i in range(n))
        acc[(slice(None),) * 3 + window] += np.einsum("ngc...,gco->ngo...", xg, wg[(slice(None),) * 3 + off])
    crop = tuple(slice(pads[i], full[i] - pads[i + n]) for i in range(n))
    y = acc.reshape(batch, g * og, *full)[(slice(None),) * 2 + crop]
    if len(xs) > 2:
        y = y + xs[2].astype(np.float64).reshape(_channel_shape(y.ndim, y.shape[1], False))
    return y


def _convt_lower(ctx, xs, attrs, out):
    n = len(out[0].shape) - 2
    strides, pads, dils, out_pad = _convt_params(attrs, n)
    fn = {1: R.nn.conv1d_transpose, 2: R.nn.conv2d_transpose, 3: R.nn.conv3d_transpose}[n]
    dtype = str(xs[0].ty.dtype)
    y = fn(xs[0], xs[1], strides=strides, padding=pads, output_padding=out_pad, dilation=dils,
           groups=attrs["group"], data_layout=_tvm_layout(n, False), kernel_layout="IO" + "DHW"[3 - n:],
           out_dtype=_accumulator(dtype))
    y = _narrow(ctx, y, dtype)
    if len(xs) > 2:
        y = R.add(ctx.bb.emit(y), R.reshape(xs[2], _channel_shape(n + 2, out[0].shape[1], False)))
    return y


register_op(OpDef("conv_transpose", _convt_infer, _convt_ref, _convt_lower, CONVT_ATTRS, kind="complex",
                  num_inputs=(2, 3), summary="1-D/2-D/3-D transposed convolution, weight [C, O/group, k...]",
                  # each input scatters Cout/group * k... products (weight [Cin, Cout/group, k...])
                  macs=lambda node: node.inputs[0].type.size * int(np.prod(node.inputs[1].type.shape[1:]))))


@_importer("ConvTranspose")
def _import_conv_transpose(ctx, node, inputs, attrs):
    """Explicit pads, or pads computed from `output_shape` and/or auto_pad (ONNX spec formulas)."""
    x, w = inputs[0], inputs[1]
    n = x.type.rank - 2
    if n not in (1, 2, 3):
        raise ctx.fail(f"ConvTranspose on rank-{x.type.rank} input is not supported (1-D, 2-D and 3-D only)")
    kernel = list(attrs.get("kernel_shape", w.type.shape[2:]))
    if kernel != list(w.type.shape[2:]):
        raise ctx.fail(f"kernel_shape {kernel} does not match the weight {w.type}")
    strides = _full(attrs.get("strides", []), n, 1, "strides")
    dils = _full(attrs.get("dilations", []), n, 1, "dilations")
    out_pad = _full(attrs.get("output_padding", []), n, 0, "output_padding")
    auto_pad = attrs.get("auto_pad", "NOTSET")
    in_sizes = x.type.shape[2:]
    output_shape = list(attrs.get("output_shape", []))
    if len(output_shape) == n + 2:
        output_shape = output_shape[2:]
    if auto_pad in ("SAME_UPPER", "SAME_LOWER") and not output_shape:
        output_shape = [in_sizes[i] * strides[i] for i in range(n)]
    if output_shape:
        if len(output_shape) != n:
            raise ctx.fail(f"output_shape {output_shape} does not have {n} spatial dims")
        begins, ends = [], []
        for i in range(n):
            total = strides[i] * (in_sizes[i] - 1) + out_pad[i] + (kernel[i] - 1) * dils[i] + 1 - output_shape[i]
            if total < 0:
                raise ctx.fail(f"output_shape {output_shape} is larger than the full transposed convolution")
            if auto_pad == "SAME_UPPER":
                begins.append(total // 2)
                ends.append(total - total // 2)
            else:
                begins.append(total - total // 2)
                ends.append(total // 2)
        pads = begins + ends
    elif auto_pad == "VALID":
        pads = [0] * (2 * n)
    elif auto_pad in ("NOTSET", ""):
        pads = _full(attrs.get("pads", []), 2 * n, 0, "pads")
    else:
        raise ctx.fail(f"unknown auto_pad {auto_pad!r}")
    ins = [x, w] + ([inputs[2]] if len(inputs) > 2 and inputs[2] is not None else [])
    return ctx.emit("conv_transpose", ins, {"strides": strides, "pads": pads, "dilations": dils,
                                            "output_padding": out_pad, "group": attrs.get("group", 1)})


# ---- batch_norm ---------------------------------------------------------------------------------

def _bn_infer(types, attrs):
    x = types[0]
    last = _check_layout(attrs, x.rank, min_rank=2)
    _same_dtype(types)
    _float_type(x, "batch_norm input")
    channels = x.shape[-1] if last else x.shape[1]
    for t in types[1:]:
        if t.shape != (channels,):
            raise VerifyError(f"batch_norm parameters must have shape [{channels}], got {t}")
    return [x]


def _bn_ref(xs, attrs):
    x, scale, bias, mean, var = (a.astype(np.float64) for a in xs)
    shape = _channel_shape(x.ndim, x.shape[-1 if attrs["layout"] == "NHWC" else 1], attrs["layout"] == "NHWC")
    inv = scale / np.sqrt(var + attrs["epsilon"])
    return x * inv.reshape(shape) + (bias - mean * inv).reshape(shape)


def _bn_lower(ctx, xs, attrs, out):
    x, scale, bias, mean, var = xs
    t = out[0]
    last = attrs["layout"] == "NHWC"
    shape = _channel_shape(len(t.shape), t.shape[-1 if last else 1], last)
    dtype = str(x.ty.dtype)
    inv = ctx.bb.emit(R.divide(scale, R.sqrt(R.add(var, _rconst(attrs["epsilon"], dtype)))))
    shift = R.subtract(bias, R.multiply(mean, inv))
    return R.add(R.multiply(x, R.reshape(inv, shape)), R.reshape(shift, shape))


register_op(OpDef("batch_norm", _bn_infer, _bn_ref, _bn_lower,
                  {"epsilon": Attr("float", 1e-5), "layout": Attr("str", "NCHW")}, kind="opaque",
                  num_inputs=(5, 5), summary="inference batch normalization: (x - mean) / sqrt(var + eps) * scale + bias",
                  layout_sensitive=True))


@_importer("BatchNormalization")
def _import_batch_norm(ctx, node, inputs, attrs):
    """Inference mode only: training_mode=1 or the running mean/var outputs are refused."""
    if attrs.get("training_mode", 0):
        raise ctx.fail("training_mode=1 is not supported (inference only)")
    _only_first_output(ctx, node, "the running mean/var outputs (training mode)")
    return ctx.emit("batch_norm", inputs[:5], {"epsilon": attrs.get("epsilon", 1e-5)})


# ---- pooling ----------------------------------------------------------------------------------

POOL_ATTRS = {"kernel_shape": Attr("ints", REQUIRED), "strides": Attr("ints", []), "pads": Attr("ints", []),
              "dilations": Attr("ints", []), "ceil_mode": Attr("int", 0), "layout": Attr("str", "NCHW")}


def pool_out_size(in_size: int, k: int, s: int, d: int, pb: int, pe: int, ceil_mode: int) -> int:
    """ONNX/ONNX Runtime pooling output size; with ceil_mode the last window must start inside
    the input or the begin padding."""
    span = in_size + pb + pe - d * (k - 1) - 1
    if not ceil_mode:
        return span // s + 1
    out = -(-span // s) + 1
    if (out - 1) * s >= in_size + pb:
        out -= 1
    return out


def _pool_geometry(spatial, attrs):
    """(kernel, strides, pads, dilations, out sizes, extra end padding that ceil_mode needs)."""
    n = len(spatial)
    kernel = attrs["kernel_shape"]
    if len(kernel) != n or any(k < 1 for k in kernel):
        raise VerifyError(f"kernel_shape {kernel} does not fit {n} spatial dims")
    strides, pads, dils = _spatial_attrs(attrs, n)
    out = [pool_out_size(spatial[i], kernel[i], strides[i], dils[i], pads[i], pads[i + n], attrs["ceil_mode"])
           for i in range(n)]
    if any(o < 1 for o in out):
        raise VerifyError(f"pooling output would be empty (spatial {out})")
    extra = [max(0, (out[i] - 1) * strides[i] + dils[i] * (kernel[i] - 1) + 1 - (spatial[i] + pads[i] + pads[i + n]))
             for i in range(n)]
    return kernel, strides, pads, dils, out, extra


def _split_layout(shape, last):
    """(spatial dims, channel count) for a channels-first or channels-last shape."""
    return (list(shape[1:-1]), shape[-1]) if last else (list(shape[2:]), shape[1])


def _pool_infer(types, attrs):
    x = types[0]
    last = _check_layout(attrs, x.rank)
    if x.rank > 5:
        raise VerifyError(f"pooling supports 1-D to 3-D inputs, got {x}")
    if attrs.get("count_include_pad", 0) not in (0, 1):
        raise VerifyError("count_include_pad must be 0 or 1")
    spatial, _ = _split_layout(x.shape, last)
    out = _pool_geometry(spatial, attrs)[4]
    shape = (x.shape[0], *out, x.shape[-1]) if last else (x.shape[0], x.shape[1], *out)
    return [TensorType(x.dtype, shape)]


def _pool_windows(xp, kernel, strides, dils, out):
    """Strided views of the padded (channels-first) array, one per kernel offset."""
    n = len(kernel)
    for off in np.ndindex(*kernel):
        yield xp[(slice(None),) * 2 + tuple(
            slice(off[i] * dils[i], off[i] * dils[i] + strides[i] * (out[i] - 1) + 1, strides[i]) for i in range(n))]


def _pool_ref(kind):
    def ref(xs, attrs):
        x = xs[0]
        last = attrs["layout"] == "NHWC"
        if last:
            x = _to_cf(x)
        spatial = list(x.shape[2:])
        n = len(spatial)
        kernel, strides, pads, dils, out, extra = _pool_geometry(spatial, attrs)
        widths = [(pads[i], pads[i + n] + extra[i]) for i in range(n)]
        if kind == "max":
            fill = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min
            xp = np.pad(x, [(0, 0), (0, 0)] + widths, constant_values=fill)
            y = np.max(np.stack(list(_pool_windows(xp, kernel, strides, dils, out))), axis=0)
        else:
            xp = np.pad(x.astype(np.float64), [(0, 0), (0, 0)] + widths)
            total = sum(_pool_windows(xp, kernel, strides, dils, out))
            if attrs["count_include_pad"]:  # the explicit pads count, ceil_mode's extra does not
                mask = np.pad(np.ones([spatial[i] + pads[i] + pads[i + n] for i in range(n)]),
                              [(0, e) for e in extra])
            else:
                mask = np.pad(np.ones(spatial), widths)
            count = sum(_pool_windows(mask[None, None], kernel, strides, dils, out))
            y = total / count
        y = y.astype(xs[0].dtype)
        return _to_cl(y) if last else y
    return ref


def _avg_divisor(spatial, attrs):
    """Per-output-position element counts for count_include_pad=1 (None if all equal the kernel size)."""
    n = len(spatial)
    kernel, strides, pads, dils, out, extra = _pool_geometry(spatial, attrs)
    if not any(extra):
        return None
    mask = np.pad(np.ones([spatial[i] + pads[i] + pads[i + n] for i in range(n)]), [(0, e) for e in extra])
    return sum(_pool_windows(mask[None, None], kernel, strides, dils, out))[0, 0]


def _pool_lower(kind):
    def lower(ctx, xs, attrs, out):
        x = xs[0]
        last = attrs["layout"] == "NHWC"
        spatial, _ = _split_layout([int(d) for d in x.ty.shape], last)
        n = len(spatial)
        kernel, strides, pads, dils, out_sizes, extra = _pool_geometry(spatial, attrs)
        padding = pads[:n] + [pads[n + i] + extra[i] for i in range(n)]
        layout = _tvm_layout(n, last)
        common = dict(pool_size=kernel, strides=strides, padding=padding, dilation=dils, ceil_mode=False,
                      layout=layout)
        if kind == "max":
            return {1: R.nn.max_pool1d, 2: R.nn.max_pool2d, 3: R.nn.max_pool3d}[n](x, **common)
        avg = {1: R.nn.avg_pool1d, 2: R.nn.avg_pool2d, 3: R.nn.avg_pool3d}[n]
        include = bool(attrs["count_include_pad"])
        divisor = _avg_divisor(spatial, attrs) if include else None
        if divisor is None:
            return avg(x, count_include_pad=include, **common)
        # ceil_mode windows past the end: divide the window sums by the counts ONNX uses
        dtype = str(x.ty.dtype)
        sums = R.multiply(ctx.bb.emit(avg(x, count_include_pad=True, **common)),
                          _rconst(float(np.prod(kernel)), dtype))
        shape = [1, *divisor.shape, 1] if last else [1, 1, *divisor.shape]
        return R.divide(sums, _rconst(divisor.reshape(shape).astype(dtype), dtype))
    return lower


register_op(OpDef("max_pool", _pool_infer, _pool_ref("max"), _pool_lower("max"), POOL_ATTRS, kind="complex",
                  summary="max pooling (1-D to 3-D; pads, dilations, ceil_mode, layout)", layout_sensitive=True))
register_op(OpDef("avg_pool", _pool_infer, _pool_ref("avg"), _pool_lower("avg"),
                  {**POOL_ATTRS, "count_include_pad": Attr("int", 0)}, kind="complex",
                  summary="average pooling (1-D to 3-D; pads, dilations, ceil_mode, count_include_pad, layout)",
                  layout_sensitive=True))


def _import_pool(op):
    def convert(ctx, node, inputs, attrs):
        """MaxPool / AveragePool 1-D to 3-D: kernel_shape, strides, pads or auto_pad, dilations,
        ceil_mode, count_include_pad. MaxPool's Indices output and storage_order=1 are refused."""
        x = inputs[0]
        n = x.type.rank - 2
        if n < 1 or n > 3:
            raise ctx.fail(f"pooling on rank-{x.type.rank} input is not supported")
        if op == "max_pool":
            _only_first_output(ctx, node, "the Indices output")
            if attrs.get("storage_order", 0):
                raise ctx.fail("storage_order=1 is not supported")
        kernel = list(attrs["kernel_shape"])
        strides = _full(attrs.get("strides", []), n, 1, "strides")
        dils = _full(attrs.get("dilations", []), n, 1, "dilations")
        auto_pad = attrs.get("auto_pad", "NOTSET")
        pads = resolve_auto_pad(ctx, auto_pad, x.type.shape[2:], kernel, strides, dils, attrs.get("pads", []))
        ceil_mode = attrs.get("ceil_mode", 0) if auto_pad not in ("SAME_UPPER", "SAME_LOWER") else 0
        new = {"kernel_shape": kernel, "strides": strides, "pads": pads, "dilations": dils, "ceil_mode": ceil_mode}
        if op == "avg_pool":
            new["count_include_pad"] = attrs.get("count_include_pad", 0)
        return ctx.emit(op, [x], new)
    return convert


_importer("MaxPool")(_import_pool("max_pool"))
_importer("AveragePool")(_import_pool("avg_pool"))


@_importer("LpPool")
def _import_lp_pool(ctx, node, inputs, attrs):
    """LpPool: (sum of |x|^p over each window)^(1/p), as an average pool (zero padding counted)
    of |x|^p times the kernel size. ceil_mode=1 is refused (its partial windows)."""
    x = inputs[0]
    p = attrs.get("p", 2)
    if attrs.get("ceil_mode", 0):
        raise ctx.fail("ceil_mode=1 is not supported")
    if p < 1:
        raise ctx.fail(f"p must be >= 1, got {p}")
    powered = ctx.emit1("mul", [x, x]) if p == 2 else ctx.emit1(
        "pow", [ctx.emit1("abs", [x]), ctx.const(np.asarray(p, dtype=x.type.np_dtype))])
    pooled = _import_pool("avg_pool")(ctx, node, [powered], {**attrs, "count_include_pad": 1})[0]
    size = ctx.const(np.asarray(np.prod(attrs["kernel_shape"]), dtype=x.type.np_dtype))
    total = ctx.emit1("mul", [pooled, size])
    if p == 2:
        return [ctx.emit1("sqrt", [total])]
    return [ctx.emit1("pow", [total, ctx.const(np.asarray(1.0 / p, dtype=x.type.np_dtype))])]


def _global_infer(types, attrs):
    x = types[0]
    last = _check_layout(attrs, x.rank)
    spatial, channels = _split_layout(x.shape, last)
    ones = (1,) * len(spatial)
    return [TensorType(x.dtype, (x.shape[0], *ones, channels) if last else (x.shape[0], channels, *ones))]


def _spatial_axes(rank, last):
    return list(range(1, rank - 1)) if last else list(range(2, rank))


def _global_ref(fn):
    def ref(xs, attrs):
        x = xs[0]
        return fn(x.astype(np.float64) if fn is np.mean else x,
                  axis=tuple(_spatial_axes(x.ndim, attrs["layout"] == "NHWC")), keepdims=True)
    return ref


def _global_lower(relax_op: str):
    def lower(ctx, xs, attrs, out):
        return getattr(R, relax_op)(xs[0], axis=_spatial_axes(len(out[0].shape), attrs["layout"] == "NHWC"), keepdims=True)
    return lower


register_op(OpDef("global_avg_pool", _global_infer, _global_ref(np.mean), _global_lower("mean"),
                  {"layout": Attr("str", "NCHW")}, kind="reduction", summary="mean over the spatial axes",
                  layout_sensitive=True))
register_op(OpDef("global_max_pool", _global_infer, _global_ref(np.max), _global_lower("max"),
                  {"layout": Attr("str", "NCHW")}, kind="reduction", summary="max over the spatial axes",
                  layout_sensitive=True))
_importer("GlobalAveragePool")(lambda ctx, node, inputs, attrs: ctx.emit("global_avg_pool", [inputs[0]]))
_importer("GlobalMaxPool")(lambda ctx, node, inputs, attrs: ctx.emit("global_max_pool", [inputs[0]]))


# ---- normalizations ---------------------------------------------------------------------------

def _ln_infer(types, attrs):
    x = types[0]
    _same_dtype(types)
    _float_type(x, "layer_norm input")
    axis = normalize_axis(attrs["axis"], x.rank)
    norm_shape = x.shape[axis:]
    for t in types[1:]:
        if broadcast_shapes(t.shape, norm_shape) != norm_shape:
            raise VerifyError(f"layer_norm scale/bias {t} does not broadcast to the normalized shape {list(norm_shape)}")
    return [x]


def _ln_ref(xs, attrs):
    x = xs[0].astype(np.float64)
    axes = tuple(range(normalize_axis(attrs["axis"], x.ndim), x.ndim))
    mean = x.mean(axis=axes, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=axes, keepdims=True)
    y = (x - mean) / np.sqrt(var + attrs["epsilon"]) * xs[1]
    return y + xs[2] if len(xs) > 2 else y


def _ln_lower(ctx, xs, attrs, out):
    x = xs[0]
    shape = [int(d) for d in x.ty.shape]
    axis = normalize_axis(attrs["axis"], len(shape))
    norm_shape = shape[axis:]
    dtype = str(x.ty.dtype)
    gamma = xs[1] if [int(d) for d in xs[1].ty.shape] == norm_shape else R.broadcast_to(xs[1], norm_shape)
    if len(xs) > 2:
        beta = xs[2] if [int(d) for d in xs[2].ty.shape] == norm_shape else R.broadcast_to(xs[2], norm_shape)
    else:
        beta = _rconst(np.zeros(norm_shape, dtype=dtype), dtype)
    return R.nn.layer_norm(x, ctx.bb.emit(gamma), ctx.bb.emit(beta), axes=list(range(axis, len(shape))),
                           epsilon=attrs["epsilon"])


register_op(OpDef("layer_norm", _ln_infer, _ln_ref, _ln_lower,
                  {"axis": Attr("int", -1), "epsilon": Attr("float", 1e-5)}, kind="opaque", num_inputs=(2, 3),
                  summary="layer normalization over axes [axis, rank), scale and optional bias"))


def layer_norm_stats(ctx, x, axis: int, epsilon: float):
    """(mean(x), 1 / sqrt(mean((x - mean)^2) + epsilon)) over axes [axis, rank) of a float32 x, the
    normalized axes kept as 1, as edgec ops: LayerNormalization's Mean and InvStdDev outputs."""
    reduce = {"axes": list(range(axis % x.type.rank, x.type.rank)), "keepdims": 1}
    mean = ctx.emit1("reduce_mean", [x], reduce)
    centered = ctx.emit1("sub", [x, mean])
    var = ctx.emit1("reduce_mean", [ctx.emit1("mul", [centered, centered])], reduce)
    std = ctx.emit1("sqrt", [ctx.emit1("add", [var, ctx.const(np.float32(epsilon))])])
    return mean, ctx.emit1("reciprocal", [std])


@_importer("LayerNormalization")
def _import_layer_norm(ctx, node, inputs, attrs):
    """axis, epsilon, optional bias (ONNX's opset 17, and ONNX Runtime's version 1 of the ONNX
    domain that models of older opsets carry: the same op). The optional Mean and InvStdDev
    outputs are computed beside the layer_norm (`layer_norm_stats`), for float32 x with the
    default float32 stash_type."""
    x = inputs[0]
    eps = attrs.get("epsilon", 1e-5)
    ins = [v for v in inputs[:3] if v is not None]
    y = ctx.emit1("layer_norm", ins, {"axis": attrs.get("axis", -1), "epsilon": eps})
    if not any(node.output[1:]):
        return [y]
    if x.type.dtype != "f32" or attrs.get("stash_type", 1) != 1:
        raise ctx.fail(f"the Mean and InvStdDev outputs are supported for float32 input and stash_type 1, "
                       f"got {x.type.dtype} and stash_type {attrs.get('stash_type', 1)}")
    return [y, *layer_norm_stats(ctx, x, attrs.get("axis", -1), eps)][:len(node.output)]


def rms_norm(ctx, x, scale, axis: int, epsilon: float):
    """(y, rms) as edgec ops: rms = sqrt(mean(x^2 over axes [axis, rank)) + epsilon), the normalized
    axes kept as 1, and y = x / rms * scale. float16 is computed in float32 (y cast back, rms stays
    float32); other dtypes are refused."""
    if x.type.dtype not in ("f16", "f32"):
        raise ctx.fail(f"RMS normalization takes float16 or float32 input, got {x.type}")
    dtype = x.type.dtype
    if dtype != "f32":
        x = ctx.emit1("cast", [x], {"to": "f32"})
        scale = ctx.emit1("cast", [scale], {"to": "f32"})
    mean_square = ctx.emit1("reduce_mean", [ctx.emit1("mul", [x, x])],
                            {"axes": list(range(axis % x.type.rank, x.type.rank)), "keepdims": 1})
    rms = ctx.emit1("sqrt", [ctx.emit1("add", [mean_square, ctx.const(np.float32(epsilon))])])
    y = ctx.emit1("mul", [ctx.emit1("div", [x, rms]), scale])
    return (y if dtype == "f32" else ctx.emit1("cast", [y], {"to": dtype})), rms


@_importer("RMSNormalization", "SimplifiedLayerNormalization")
def _import_rms_norm(ctx, node, inputs, attrs):
    """RMSNormalization (opset 23) and ONNX Runtime's SimplifiedLayerNormalization (its version 1
    of the ONNX domain, which ONNX does not define; the same computation, with an optional second
    output inv_std_var = 1 / rms in float32): `rms_norm`, stash_type 1 (float32) only."""
    if attrs.get("stash_type", 1) != 1:
        raise ctx.fail(f"stash_type {attrs['stash_type']} is not supported (1: float32)")
    y, rms = rms_norm(ctx, inputs[0], inputs[1], attrs.get("axis", -1), attrs.get("epsilon", 1e-5))
    if len(node.output) > 1 and node.output[1]:
        return [y, ctx.emit1("reciprocal", [rms])]
    return [y]


@_importer("MeanVarianceNormalization")
def _onnx_mean_variance_normalization(ctx, node, inputs, attrs):
    """(x - mean(x)) / (sqrt(mean(x^2) - mean(x)^2) + 1e-9) over `axes` (default 0, 2, 3), as ONNX's
    function body computes it."""
    x = inputs[0]
    reduce = {"axes": [normalize_axis(a, x.type.rank) for a in attrs.get("axes", [0, 2, 3])], "keepdims": 1}
    mean = ctx.emit1("reduce_mean", [x], reduce)
    mean_square = ctx.emit1("reduce_mean", [ctx.emit1("mul", [x, x])], reduce)
    std = ctx.emit1("sqrt", [ctx.emit1("sub", [mean_square, ctx.emit1("mul", [mean, mean])])])
    eps = ctx.const(np.asarray(1e-9, x.type.np_dtype))
    return ctx.emit("div", [ctx.emit1("sub", [x, mean]), ctx.emit1("add", [std, eps])])


@_importer("LpNormalization")
def _import_lp_norm(ctx, node, inputs, attrs):
    """LpNormalization: x / ||x||_p along `axis` (p 1: sum of |x|; p 2: sqrt of the sum of
    squares), decomposed into edgec ops; a zero vector stays zero (its norm is replaced by 1)."""
    x = inputs[0]
    p = attrs.get("p", 2)
    if p not in (1, 2):
        raise ctx.fail(f"p must be 1 or 2, got {p}")
    axis = normalize_axis(attrs.get("axis", -1), x.type.rank)
    reduce = {"axes": [axis], "keepdims": 1}
    if p == 1:
        norm = ctx.emit1("reduce_sum", [ctx.emit1("abs", [x])], reduce)
    else:
        norm = ctx.emit1("sqrt", [ctx.emit1("reduce_sum", [ctx.emit1("mul", [x, x])], reduce)])
    zero, one = (ctx.const(np.asarray(v, dtype=x.type.np_dtype)) for v in (0, 1))
    norm = ctx.emit1("where", [ctx.emit1("equal", [norm, zero]), one, norm])
    return [ctx.emit1("div", [x, norm])]


def _channel_norm_infer(types, attrs):
    x = types[0]
    _same_dtype(types)
    _float_type(x, "normalization input")
    if x.rank < 3:
        raise VerifyError(f"expects rank >= 3 (N, C, spatial...), got {x}")
    for t in types[1:]:
        if t.shape != (x.shape[1],):
            raise VerifyError(f"scale and bias must have shape [{x.shape[1]}], got {t}")
    if "num_groups" in attrs and (attrs["num_groups"] < 1 or x.shape[1] % attrs["num_groups"]):
        raise VerifyError(f"num_groups {attrs['num_groups']} does not divide the {x.shape[1]} channels")
    return [x]


def _group_norm_np(x, scale, bias, groups, eps):
    x = x.astype(np.float64)
    xg = x.reshape(x.shape[0], groups, -1)
    mean = xg.mean(axis=2, keepdims=True)
    var = xg.var(axis=2, keepdims=True)
    y = ((xg - mean) / np.sqrt(var + eps)).reshape(x.shape)
    shape = _channel_shape(x.ndim, x.shape[1], False)
    return y * scale.reshape(shape) + bias.reshape(shape)


register_op(OpDef(
    "instance_norm", _channel_norm_infer,
    lambda xs, a: _group_norm_np(xs[0], xs[1], xs[2], xs[0].shape[1], a["epsilon"]),
    lambda ctx, xs, a, out: R.nn.instance_norm(xs[0], xs[1], xs[2], channel_axis=1,
                                               axes=list(range(2, len(out[0].shape))), epsilon=a["epsilon"]),
    {"epsilon": Attr("float", 1e-5)}, kind="opaque", num_inputs=(3, 3),
    summary="instance normalization (per sample and channel over the spatial axes)"))
register_op(OpDef(
    "group_norm", _channel_norm_infer,
    lambda xs, a: _group_norm_np(xs[0], xs[1], xs[2], a["num_groups"], a["epsilon"]),
    lambda ctx, xs, a, out: R.nn.group_norm(xs[0], xs[1], xs[2], num_groups=a["num_groups"], channel_axis=1,
                                            axes=list(range(2, len(out[0].shape))), epsilon=a["epsilon"]),
    {"num_groups": Attr("int", REQUIRED), "epsilon": Attr("float", 1e-5)}, kind="opaque", num_inputs=(3, 3),
    summary="group normalization, per-channel scale and bias"))


@_importer("InstanceNormalization")
def _import_instance_norm(ctx, node, inputs, attrs):
    return ctx.emit("instance_norm", inputs[:3], {"epsilon": attrs.get("epsilon", 1e-5)})


@_importer("GroupNormalization")
def _import_group_norm(ctx, node, inputs, attrs):
    """Opset 21: scale and bias per channel. Opset 18: per group; constants are repeated per channel."""
    x, scale, bias = inputs[:3]
    groups = attrs["num_groups"]
    channels = x.type.shape[1]
    if scale.type.shape != (channels,) or bias.type.shape != (channels,):
        if scale.type.shape != (groups,) or bias.type.shape != (groups,) or channels % groups:
            raise ctx.fail(f"scale {scale.type} and bias {bias.type} fit neither {groups} groups nor {channels} channels")
        per = channels // groups
        scale = ctx.const(np.repeat(ctx.constant_of(scale, "scale"), per))
        bias = ctx.const(np.repeat(ctx.constant_of(bias, "bias"), per))
    return ctx.emit("group_norm", [x, scale, bias], {"num_groups": groups, "epsilon": attrs.get("epsilon", 1e-5)})


def _lrn_window(size):
    before = (size - 1) // 2
    return before, size - 1 - before


def _lrn_infer(types, attrs):
    x = types[0]
    _float_type(x, "lrn input")
    if x.rank < 3 or attrs["size"] < 1:
        raise VerifyError(f"lrn expects rank >= 3 and size >= 1, got {x} and size {attrs['size']}")
    return [x]


def _lrn_ref(xs, attrs):
    x = xs[0].astype(np.float64)
    before, after = _lrn_window(attrs["size"])
    sq = np.pad(x * x, [(0, 0), (before, after)] + [(0, 0)] * (x.ndim - 2))
    window = sum(sq[:, i:i + x.shape[1]] for i in range(attrs["size"]))
    return x / (attrs["bias"] + attrs["alpha"] / attrs["size"] * window) ** attrs["beta"]


def _lrn_lower(ctx, xs, attrs, out):
    size, alpha, beta, bias = attrs["size"], attrs["alpha"], attrs["beta"], attrs["bias"]
    before, after = _lrn_window(size)

    def compute(x):
        rank = len(x.shape)
        sq = te.compute(x.shape, lambda *i: x(*i) * x(*i), name="lrn_sq")
        padded = topi.nn.pad(sq, [0, before] + [0] * (rank - 2), [0, after] + [0] * (rank - 2), name="lrn_pad")
        k = te.reduce_axis((0, size), name="k")
        window = te.compute(x.shape, lambda *i: te.sum(padded[(i[0], i[1] + k, *i[2:])], axis=k), name="lrn_sum")
        dtype = x.dtype
        c_bias, c_alpha, c_beta = tirx.const(bias, dtype), tirx.const(alpha / size, dtype), tirx.const(beta, dtype)
        return te.compute(x.shape, lambda *i: x(*i) / te.power(c_bias + c_alpha * window(*i), c_beta), name="lrn")

    return ctx.bb.call_te(compute, xs[0], primfunc_name_hint="lrn")


register_op(OpDef("lrn", _lrn_infer, _lrn_ref, _lrn_lower,
                  {"size": Attr("int", REQUIRED), "alpha": Attr("float", 1e-4), "beta": Attr("float", 0.75),
                   "bias": Attr("float", 1.0)}, kind="opaque",
                  summary="local response normalization across channels"))


@_importer("LRN")
def _import_lrn(ctx, node, inputs, attrs):
    return ctx.emit("lrn", [inputs[0]], {k: attrs[k] for k in ("size", "alpha", "beta", "bias") if k in attrs})


# ---- softmax family -----------------------------------------------------------------------------

SOFTMAX_ATTRS = {"axis": Attr("int", -1), "coerce_2d": Attr("int", 0)}


def _softmax_infer(types, attrs):
    x = types[0]
    _float_type(x, "softmax input")
    normalize_axis(attrs["axis"], x.rank)
    return [x]


def _as_2d(shape, axis):
    """coerce_2d: the [prod(shape[:axis]), prod(shape[axis:])] view."""
    return [int(np.prod(shape[:axis], dtype=np.int64)), int(np.prod(shape[axis:], dtype=np.int64))]


def _softmax_np(kind, x, axis):
    if kind == "hardmax":
        idx = np.argmax(x, axis=axis)  # the first maximum
        return np.moveaxis(np.eye(x.shape[axis], dtype=x.dtype)[idx], -1, axis)
    xd = x.astype(np.float64)
    shifted = xd - xd.max(axis=axis, keepdims=True)
    log_sum = np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    return shifted - log_sum if kind == "log_softmax" else np.exp(shifted - log_sum)


def _softmax_ref(kind):
    def ref(xs, attrs):
        x = xs[0]
        axis = normalize_axis(attrs["axis"], x.ndim)
        if attrs["coerce_2d"]:
            return _softmax_np(kind, x.reshape(_as_2d(x.shape, axis)), 1).reshape(x.shape)
        return _softmax_np(kind, x, axis)
    return ref


def _softmax_relax(kind, x, axis, depth):
    if kind == "softmax":
        return R.nn.softmax(x, axis=axis)
    if kind == "log_softmax":
        return R.nn.log_softmax(x, axis=axis)
    dtype = str(x.ty.dtype)
    return R.one_hot(R.argmax(x, axis=axis), tirx.const(1, dtype), tirx.const(0, dtype), depth, axis)


def _softmax_lower(kind):
    def lower(ctx, xs, attrs, out):
        shape = list(out[0].shape)
        axis = normalize_axis(attrs["axis"], len(shape))
        if not attrs["coerce_2d"]:
            return _softmax_relax(kind, xs[0], axis, shape[axis])
        flat = _as_2d(shape, axis)
        y = ctx.bb.emit(_softmax_relax(kind, ctx.bb.emit(R.reshape(xs[0], flat)), 1, flat[1]))
        return R.reshape(y, shape)
    return lower


for _kind, _onnx in (("softmax", "Softmax"), ("log_softmax", "LogSoftmax"), ("hardmax", "Hardmax")):
    register_op(OpDef(_kind, _softmax_infer, _softmax_ref(_kind), _softmax_lower(_kind), SOFTMAX_ATTRS,
                      kind="opaque", summary=f"{_kind} along `axis` (coerce_2d=1: over all axes from `axis` on)"))

    def _import_softmax(ctx, node, inputs, attrs, kind=_kind):
        """Opset >= 13: one axis (default -1). Opset < 13: the input is coerced to 2-D at `axis`
        (default 1), so all axes from `axis` on are normalized together."""
        x = inputs[0]
        if ctx.opset >= 13:
            return ctx.emit(kind, [x], {"axis": attrs.get("axis", -1)})
        axis = normalize_axis(attrs.get("axis", 1), x.type.rank)
        coerce = int(axis < x.type.rank - 1)
        return ctx.emit(kind, [x], {"axis": axis, "coerce_2d": coerce})

    _importer(_onnx)(_import_softmax)


# ---- matmul and dense ---------------------------------------------------------------------------

MATMUL_ATTRS = {"transpose_a": Attr("int", 0), "transpose_b": Attr("int", 0), **ACTIVATION_ATTRS}


def _swap_last(shape):
    return (*shape[:-2], shape[-1], shape[-2]) if len(shape) >= 2 else shape


def _matmul_infer(types, attrs):
    check_activation(attrs)
    a, b = types
    _same_dtype(types)
    if a.rank == 0 or b.rank == 0:
        raise VerifyError(f"matmul operands must have rank >= 1, got {a} and {b}")
    sa = _swap_last(a.shape) if attrs["transpose_a"] else a.shape
    sb = _swap_last(b.shape) if attrs["transpose_b"] else b.shape
    shape = matmul_shape(tuple(sa), tuple(sb))
    if shape is None:
        raise VerifyError(f"matmul shapes {list(sa)} and {list(sb)} do not agree")
    return [TensorType(a.dtype, shape)]


def matmul_shape(sa: tuple, sb: tuple) -> tuple | None:
    """The shape of `np.matmul` of operands of shapes `sa` and `sb` (rank >= 1), or None where
    they do not agree; computed from the shapes alone (no array is made)."""
    a = (1, *sa) if len(sa) == 1 else sa
    b = (*sb, 1) if len(sb) == 1 else sb
    if a[-1] != b[-2]:
        return None
    try:
        batch = np.broadcast_shapes(a[:-2], b[:-2])
    except ValueError:
        return None
    return (*batch, *a[-2:-1][:len(sa) - 1], *b[-1:][:len(sb) - 1])


def _matmul_ref(xs, attrs):
    a, b = xs
    if attrs["transpose_a"] and a.ndim >= 2:
        a = np.swapaxes(a, -1, -2)
    if attrs["transpose_b"] and b.ndim >= 2:
        b = np.swapaxes(b, -1, -2)
    if a.dtype.kind == "f":
        y = np.matmul(a.astype(np.float64), b.astype(np.float64)).astype(a.dtype)
    else:
        y = np.matmul(a, b)
    return apply_activation_np(np.asarray(y), attrs)


def _accumulator(dtype: str) -> str:
    """The dtype a product-sum accumulates in: float32 for float16 operands (as ONNX Runtime
    does; a float16 sum loses digits after a few hundred terms), else the operands' own."""
    return "float32" if dtype == "float16" else dtype


def _narrow(ctx, y, dtype: str):
    """`y` (accumulated in `_accumulator(dtype)`) back in `dtype`."""
    return R.astype(ctx.bb.emit(y), dtype) if _accumulator(dtype) != dtype else y


def _swap_last_relax(x):
    rank = len(x.ty.shape)
    return R.permute_dims(x, list(range(rank - 2)) + [rank - 1, rank - 2])


def _matmul_lower(ctx, xs, attrs, out):
    a, b = xs
    if attrs["transpose_a"] and len(a.ty.shape) >= 2:
        a = ctx.bb.emit(_swap_last_relax(a))
    if attrs["transpose_b"] and len(b.ty.shape) >= 2:
        b = _transposed_const(b) if isinstance(b, tvm.ir.expr.Constant) else ctx.bb.emit(_swap_last_relax(b))
    dtype = str(a.ty.dtype)
    y = _narrow(ctx, R.matmul(a, b, out_dtype=_accumulator(dtype)), dtype)
    return apply_activation_relax(y if attrs["activation"] == "" else ctx.bb.emit(y), attrs)


def _transposed_const(c):
    """A constant weight transposed at compile time (no transpose kernel at run time)."""
    arr = c.value.numpy()
    return relax.const(np.ascontiguousarray(np.swapaxes(arr, -1, -2)), str(c.ty.dtype))


def _matmul_macs(node) -> int:
    """Each output sums K products (K: the last axis of the first operand)."""
    a = node.inputs[0].type.shape
    return node.outputs[0].type.size * (a[-1] if a else 1)


register_op(OpDef("matmul", _matmul_infer, _matmul_ref, _matmul_lower, MATMUL_ATTRS, kind="complex",
                  num_inputs=(2, 2), summary="numpy matmul (optional transposes of the last two axes), fused activation",
                  anchor=True, macs=_matmul_macs))


def _dense_infer(types, attrs):
    check_activation(attrs)
    x, w = types[0], types[1]
    _same_dtype(types)
    if x.rank < 1 or w.rank != 2 or x.shape[-1] != w.shape[1]:
        raise VerifyError(f"dense needs x [..., K] and w [N, K], got {x} and {w}")
    if len(types) > 2 and types[2].shape != (w.shape[0],):
        raise VerifyError(f"dense bias must have shape [{w.shape[0]}], got {types[2]}")
    return [TensorType(x.dtype, (*x.shape[:-1], w.shape[0]))]


def _dense_ref(xs, attrs):
    x, w = xs[0], xs[1]
    if x.dtype.kind == "f":
        y = x.astype(np.float64) @ w.astype(np.float64).T
    else:
        y = x @ w.T
    if len(xs) > 2:
        y = y + xs[2]
    return apply_activation_np(np.asarray(y).astype(x.dtype), attrs)


def _dense_lower(ctx, xs, attrs, out):
    x, w = xs[0], xs[1]
    wt = _transposed_const(w) if isinstance(w, tvm.ir.expr.Constant) else ctx.bb.emit(R.permute_dims(w, [1, 0]))
    dtype = str(x.ty.dtype)
    y = _narrow(ctx, R.matmul(x, wt, out_dtype=_accumulator(dtype)), dtype)
    if len(xs) > 2:
        y = R.add(ctx.bb.emit(y), xs[2])
    return apply_activation_relax(y if attrs["activation"] == "" else ctx.bb.emit(y), attrs)


register_op(OpDef("dense", _dense_infer, _dense_ref, _dense_lower, dict(ACTIVATION_ATTRS), kind="complex",
                  num_inputs=(2, 3), summary="x @ w^T + b with w [N, K], fused activation", anchor=True,
                  macs=_matmul_macs))


@_importer("MatMul")
def _import_matmul(ctx, node, inputs, attrs):
    return ctx.emit("matmul", inputs[:2])


@_importer("Gemm")
def _import_gemm(ctx, node, inputs, attrs):
    """alpha * A' @ B' + beta * C.

    - B constant and A not transposed: `dense` with W = alpha * B' as [N, K]; a C of shape [N] or
      [1, N] becomes the bias (beta folded in when C is constant), any other C a separate add.
    - otherwise: `matmul` with transpose attributes, then mul by alpha and add beta * C.
    """
    a, b = inputs[0], inputs[1]
    c = inputs[2] if len(inputs) > 2 else None
    alpha, beta = float(attrs.get("alpha", 1.0)), float(attrs.get("beta", 1.0))
    trans_a, trans_b = attrs.get("transA", 0), attrs.get("transB", 0)
    if a.type.rank != 2 or b.type.rank != 2:
        raise ctx.fail(f"Gemm needs 2-D A and B, got {a.type} and {b.type}")
    dtype = a.type.np_dtype
    n = b.type.shape[0] if trans_b else b.type.shape[1]

    def scaled(value, factor):
        if factor == 1.0:
            return value
        if value.is_const:
            return ctx.const((value.const_value() * np.asarray(factor, dtype)).astype(dtype))
        return ctx.emit1("mul", [value, ctx.const(np.asarray(factor, dtype))])

    if b.is_const and not trans_a:
        w = b.const_value() if trans_b else b.const_value().T
        w = ctx.const(np.ascontiguousarray((w * np.asarray(alpha, dtype)).astype(dtype) if alpha != 1.0 else w))
        if c is not None and beta != 0.0 and (c.type.shape == (n,) or (c.type.shape == (1, n) and c.is_const)):
            bias = scaled(c, beta)
            if bias.type.shape != (n,):
                bias = ctx.const(bias.const_value().reshape(n))
            return ctx.emit("dense", [a, w, bias])
        y = ctx.emit1("dense", [a, w])
    else:
        y = scaled(ctx.emit1("matmul", [a, b], {"transpose_a": trans_a, "transpose_b": trans_b}), alpha)
    if c is None or beta == 0.0:
        return [y]
    return ctx.emit("add", [y, scaled(c, beta)])


# ---- prelu ----------------------------------------------------------------------------------------

def _prelu_infer(types, attrs):
    x, slope = types
    _same_dtype(types)
    if broadcast_shapes(x.shape, slope.shape) != x.shape:
        raise VerifyError(f"prelu slope {slope} does not broadcast to the input {x}")
    return [x]


register_op(OpDef(
    "prelu", _prelu_infer,
    lambda xs, a: np.where(xs[0] < 0, xs[0] * xs[1], xs[0]).astype(xs[0].dtype),
    lambda ctx, xs, a, out: R.where(R.less(xs[0], _rconst(0, str(xs[0].ty.dtype))), R.multiply(xs[0], xs[1]), xs[0]),
    {}, kind="elementwise", num_inputs=(2, 2), summary="x if x >= 0 else slope * x (slope broadcasts to x)"))
_importer("PRelu")(lambda ctx, node, inputs, attrs: ctx.emit("prelu", inputs[:2]))


# ---- resize ---------------------------------------------------------------------------------------

RESIZE_MODES = ("nearest", "linear", "cubic")
COORD_MODES = ("half_pixel", "half_pixel_symmetric", "pytorch_half_pixel", "align_corners", "asymmetric",
               "tf_half_pixel_for_nn")
NEAREST_MODES = ("round_prefer_floor", "round_prefer_ceil", "floor", "ceil")


def _cubic_coeffs(ratio: np.ndarray, a: np.float32) -> list[np.ndarray]:
    """Keys' cubic convolution weights of the 4 taps at floor(x) - 1 .. floor(x) + 2, for the
    fractional part `ratio` (ONNX Runtime's GetCubicCoeffs)."""
    f = np.float32
    s = ratio.astype(f)
    return [((a * (s + 1) - 5 * a) * (s + 1) + 8 * a) * (s + 1) - 4 * a,
            ((a + 2) * s - (a + 3)) * s * s + 1,
            ((a + 2) * (1 - s) - (a + 3)) * (1 - s) * (1 - s) + 1,
            ((a * (2 - s) - 5 * a) * (2 - s) + 8 * a) * (2 - s) - 4 * a]


def resize_plan(in_size: int, out_size: int, scale: float, attrs: dict):
    """Along one axis, each output element as a weighted sum of input elements ("taps"):
    (indices, weights), lists with one array of out_size entries per tap: one tap (weights None)
    for nearest, two for linear, four for cubic. Coordinates are computed with ONNX Runtime's
    float32 arithmetic (float64 where it uses double), so that rounding to the nearest pixel
    agrees with it. Cubic taps outside the input read the edge element, or with
    `exclude_outside` get weight 0 and the other weights are scaled to sum to 1."""
    f = np.float32
    x = np.arange(out_size, dtype=f)
    s = f(scale)
    mode = attrs["coordinate_transformation_mode"]
    if mode == "half_pixel":
        orig = (x + f(0.5)) / s - f(0.5)
    elif mode == "half_pixel_symmetric":
        adjustment = f(out_size) / (s * f(in_size))
        offset = f(in_size) / f(2) * (f(1) - adjustment)
        orig = (np.float64(offset) + (x.astype(np.float64) + 0.5) / np.float64(s) - 0.5).astype(f)
    elif mode == "pytorch_half_pixel":
        orig = (x + f(0.5)) / s - f(0.5) if out_size > 1 else np.zeros_like(x)
    elif mode == "align_corners":
        orig = x * f(in_size - 1) / f(out_size - 1) if out_size > 1 else np.zeros_like(x)
    elif mode == "asymmetric":
        orig = x / s
    elif mode == "tf_half_pixel_for_nn":
        orig = (x + f(0.5)) / s
    else:
        raise VerifyError(f"unknown coordinate_transformation_mode {mode!r}")
    if attrs["mode"] == "nearest":
        nearest = attrs["nearest_mode"]
        if nearest == "floor":
            idx = np.floor(orig)
        elif nearest == "ceil":
            idx = np.ceil(orig)
        elif nearest == "round_prefer_floor":
            idx = np.where(orig - np.floor(orig) == f(0.5), np.floor(orig), np.round(orig))
        elif nearest == "round_prefer_ceil":
            idx = np.where(orig - np.floor(orig) == f(0.5), np.ceil(orig), np.round(orig))
        else:
            raise VerifyError(f"unknown nearest_mode {nearest!r}")
        return [np.clip(idx, 0, in_size - 1).astype(np.int64)], None
    if attrs["mode"] == "cubic":
        base = np.floor(orig)
        coeffs = _cubic_coeffs(orig - base, f(attrs["cubic_coeff_a"]))
        taps = [base.astype(np.int64) + k for k in (-1, 0, 1, 2)]
        if attrs["exclude_outside"]:
            coeffs = [np.where((t >= 0) & (t < in_size), c, f(0)) for t, c in zip(taps, coeffs)]
            total = sum(coeffs)
            coeffs = [(c / total).astype(f) for c in coeffs]
        return [np.clip(t, 0, in_size - 1) for t in taps], [c.astype(f) for c in coeffs]
    orig = np.clip(orig, f(0), f(in_size - 1))
    i0 = np.minimum(np.floor(orig).astype(np.int64), in_size - 1)
    i1 = np.minimum(i0 + 1, in_size - 1)
    w1 = (orig - i0.astype(f)).astype(f)
    w0 = (f(1) - w1).astype(f)
    same = i0 == i1
    w0, w1 = np.where(same, f(0.5), w0), np.where(same, f(0.5), w1)
    return [i0, i1], [w0, w1]


def _resize_infer(types, attrs):
    x = types[0]
    sizes, scales = attrs["sizes"], attrs["scales"]
    if len(sizes) != x.rank or len(scales) != x.rank or any(s < 1 for s in sizes) or any(s <= 0 for s in scales):
        raise VerifyError(f"resize of {x} needs {x.rank} positive sizes and scales, got {sizes} and {scales}")
    if attrs["mode"] not in RESIZE_MODES:
        raise VerifyError(f"resize mode must be one of {', '.join(RESIZE_MODES)}, got {attrs['mode']!r}")
    if attrs["coordinate_transformation_mode"] not in COORD_MODES:
        raise VerifyError(f"coordinate_transformation_mode must be one of {', '.join(COORD_MODES)}")
    if attrs["mode"] == "nearest" and attrs["nearest_mode"] not in NEAREST_MODES:
        raise VerifyError(f"nearest_mode must be one of {', '.join(NEAREST_MODES)}")
    if attrs["mode"] != "nearest" and not is_float(x.dtype):
        raise VerifyError(f"{attrs['mode']} resize needs a float tensor, got {x}")
    return [TensorType(x.dtype, tuple(sizes))]


def _is_identity(n_in: int, indices, weights) -> bool:
    """Whether the plan of one axis copies it unchanged: output j takes input j with total weight 1
    and every other tap has weight 0 (without building the [n_out, n_in] matrix)."""
    j = np.arange(n_in)
    if len(indices[0]) != n_in:
        return False
    weights = [np.ones(n_in)] * len(indices) if weights is None else weights
    on = sum(np.where(i == j, w, 0.0) for i, w in zip(indices, weights))
    return bool(np.all(on == 1) and all(np.all((i == j) | (w == 0)) for i, w in zip(indices, weights)))


def _resize_axes(shape, attrs):
    """The axes that change, with their plans."""
    for axis, (n_in, n_out, scale) in enumerate(zip(shape, attrs["sizes"], attrs["scales"])):
        indices, weights = resize_plan(n_in, n_out, scale, attrs)
        if not _is_identity(n_in, indices, weights):
            yield axis, (indices, weights)


def _bcast_along(w, axis, rank):
    return w.reshape([-1 if i == axis else 1 for i in range(rank)])


def _resize_ref(xs, attrs):
    x = xs[0]
    for axis, (indices, weights) in _resize_axes(x.shape, attrs):
        if weights is None:
            x = np.take(x, indices[0], axis=axis)
        else:
            x = sum(np.take(x, i, axis=axis) * _bcast_along(w, axis, x.ndim)
                    for i, w in zip(indices, weights)).astype(x.dtype)
    return x


def _resize_lower(ctx, xs, attrs, out):
    x = xs[0]
    dtype = str(x.ty.dtype)
    shape = [int(d) for d in x.ty.shape]
    rank = len(shape)
    result = None  # the last step, not emitted yet
    for axis, (indices, weights) in _resize_axes(shape, attrs):
        if result is not None:
            x = ctx.bb.emit(result)
        if weights is None:
            result = R.take(x, relax.const(indices[0], "int64"), axis=axis)
            continue
        terms = [ctx.bb.emit(R.multiply(ctx.bb.emit(R.take(x, relax.const(i, "int64"), axis=axis)),
                                        relax.const(_bcast_along(w, axis, rank).astype(dtype), dtype)))
                 for i, w in zip(indices, weights)]
        total = terms[0]
        for t in terms[1:-1]:
            total = ctx.bb.emit(R.add(total, t))
        result = R.add(total, terms[-1])
    return result if result is not None else R.reshape(x, shape)  # nothing changes: a no-op copy


register_op(OpDef("resize", _resize_infer, _resize_ref, _resize_lower,
                  {"sizes": Attr("ints", REQUIRED), "scales": Attr("floats", REQUIRED), "mode": Attr("str", "nearest"),
                   "coordinate_transformation_mode": Attr("str", "half_pixel"),
                   "nearest_mode": Attr("str", "round_prefer_floor"), "cubic_coeff_a": Attr("float", -0.75),
                   "exclude_outside": Attr("int", 0)},
                  kind="injective", summary="nearest / linear / cubic resize to `sizes`; coordinates use `scales`"))


def _const_or_empty(ctx, value, what):
    if value is None:
        return None
    arr = ctx.constant_of(value, what)
    return None if arr.size == 0 else arr


@_importer("Resize")
def _import_resize(ctx, node, inputs, attrs):
    """Opsets 11-19: roi (only for tf_crop_and_resize, not supported), scales (positive, finite)
    or sizes (constants; the output's size is checked before anything is allocated),
    `axes` (opset 18), modes nearest, linear and cubic (cubic_coeff_a, exclude_outside).
    antialias and keep_aspect_ratio_policy other than stretch are refused."""
    x = inputs[0]
    rank = x.type.rank
    mode = attrs.get("mode", "nearest")
    ctm = attrs.get("coordinate_transformation_mode", "half_pixel")
    if mode not in RESIZE_MODES:
        raise ctx.fail(f"mode {mode!r} is not supported (nearest, linear and cubic only)")
    if ctm not in COORD_MODES:
        raise ctx.fail(f"coordinate_transformation_mode {ctm!r} is not supported")
    if attrs.get("antialias", 0):
        raise ctx.fail("antialias=1 is not supported")
    if attrs.get("keep_aspect_ratio_policy", "stretch") != "stretch":
        raise ctx.fail("keep_aspect_ratio_policy other than 'stretch' is not supported")
    scales = _const_or_empty(ctx, inputs[2] if len(inputs) > 2 else None, "scales")
    sizes = _const_or_empty(ctx, inputs[3] if len(inputs) > 3 else None, "sizes")
    axes = [normalize_axis(a, rank) for a in attrs.get("axes", range(rank))]
    in_shape = x.type.shape
    full_scales, full_sizes = [1.0] * rank, list(in_shape)
    if sizes is not None:
        if len(sizes) != len(axes):
            raise ctx.fail(f"sizes {sizes.tolist()} does not match {len(axes)} axes")
        for a, s in zip(axes, sizes.tolist()):
            full_sizes[a] = int(s)
            full_scales[a] = float(np.float32(s) / np.float32(in_shape[a]))
    elif scales is not None:
        if len(scales) != len(axes):
            raise ctx.fail(f"scales {scales.tolist()} does not match {len(axes)} axes")
        if not np.all(np.isfinite(scales)) or np.any(scales <= 0):
            raise ctx.fail(f"scales {scales.tolist()} must be positive and finite")
        for a, s in zip(axes, scales.tolist()):
            full_scales[a] = float(np.float32(s))
            full_sizes[a] = int(np.float32(s) * np.float32(in_shape[a]))  # truncated, as ONNX Runtime does
    else:
        raise ctx.fail("needs constant scales or sizes")
    return ctx.emit("resize", [x], {"sizes": full_sizes, "scales": full_scales, "mode": mode,
                                    "coordinate_transformation_mode": ctm,
                                    "nearest_mode": attrs.get("nearest_mode", "round_prefer_floor"),
                                    "cubic_coeff_a": attrs.get("cubic_coeff_a", -0.75),
                                    "exclude_outside": attrs.get("exclude_outside", 0)})


@_importer("Upsample")
def _import_upsample(ctx, node, inputs, attrs):
    """Upsample (deprecated): scales as a constant input or attribute; asymmetric coordinates,
    nearest rounds down."""
    x = inputs[0]
    mode = attrs.get("mode", "nearest")
    if mode not in RESIZE_MODES:
        raise ctx.fail(f"mode {mode!r} is not supported (nearest and linear only)")
    scales = attrs["scales"] if "scales" in attrs else ctx.constant_of(inputs[1] if len(inputs) > 1 else None, "scales")
    scales = [float(np.float32(s)) for s in np.asarray(scales).tolist()]
    if len(scales) != x.type.rank or not all(1 <= s < math.inf for s in scales):
        raise ctx.fail(f"scales {scales} must be finite and >= 1, one per input dim ({x.type.rank})")
    sizes = [int(math.floor(d * np.float32(s))) for d, s in zip(x.type.shape, scales)]
    return ctx.emit("resize", [x], {"sizes": sizes, "scales": scales, "mode": mode,
                                    "coordinate_transformation_mode": "asymmetric", "nearest_mode": "floor"})


# ---- depth_to_space / space_to_depth ------------------------------------------------------------

def _d2s_plan(shape, b, mode):
    """(first reshape, permutation, final shape) for depth_to_space."""
    n, c, h, w = shape
    if mode == "DCR":
        return [n, b, b, c // (b * b), h, w], [0, 3, 4, 1, 5, 2], [n, c // (b * b), h * b, w * b]
    return [n, c // (b * b), b, b, h, w], [0, 1, 4, 2, 5, 3], [n, c // (b * b), h * b, w * b]


def _s2d_plan(shape, b, mode):
    n, c, h, w = shape
    return [n, c, h // b, b, w // b, b], [0, 3, 5, 1, 2, 4], [n, c * b * b, h // b, w // b]


def _block_infer(plan):
    def infer(types, attrs):
        x = types[0]
        b = attrs["blocksize"]
        if attrs["mode"] not in (("DCR", "CRD") if plan is _d2s_plan else ("DCR",)):
            raise VerifyError(f"mode {attrs['mode']!r} is not supported here")
        if x.rank != 4 or b < 1:
            raise VerifyError(f"expects a 4-D input and blocksize >= 1, got {x} and {b}")
        if plan is _d2s_plan and x.shape[1] % (b * b):
            raise VerifyError(f"channels {x.shape[1]} are not divisible by blocksize^2 = {b * b}")
        if plan is _s2d_plan and (x.shape[2] % b or x.shape[3] % b):
            raise VerifyError(f"spatial dims {list(x.shape[2:])} are not divisible by blocksize {b}")
        return [TensorType(x.dtype, tuple(plan(x.shape, b, attrs["mode"])[2]))]
    return infer


def _block_ref(plan):
    def ref(xs, attrs):
        first, perm, final = plan(xs[0].shape, attrs["blocksize"], attrs["mode"])
        return xs[0].reshape(first).transpose(perm).reshape(final)
    return ref


def _block_lower(plan):
    def lower(ctx, xs, attrs, out):
        shape = [int(d) for d in xs[0].ty.shape]
        first, perm, final = plan(shape, attrs["blocksize"], attrs["mode"])
        y = ctx.bb.emit(R.permute_dims(ctx.bb.emit(R.reshape(xs[0], first)), perm))
        return R.reshape(y, final)
    return lower


for _name, _plan, _onnx in (("depth_to_space", _d2s_plan, "DepthToSpace"), ("space_to_depth", _s2d_plan, "SpaceToDepth")):
    register_op(OpDef(_name, _block_infer(_plan), _block_ref(_plan), _block_lower(_plan),
                      {"blocksize": Attr("int", REQUIRED), "mode": Attr("str", "DCR")}, kind="injective",
                      summary=f"ONNX {_onnx} (mode DCR or CRD)"))

    def _import_block(ctx, node, inputs, attrs, name=_name):
        mode = attrs.get("mode", "DCR") if name == "depth_to_space" else "DCR"
        return ctx.emit(name, [inputs[0]], {"blocksize": attrs["blocksize"], "mode": mode})

    _importer(_onnx)(_import_block)


# ---- ONNX ops decomposed into conv, conv_transpose and matmul ---------------------------------

@_importer("CausalConvWithState")
def _import_causal_conv_with_state(ctx, node, inputs, attrs):
    """CausalConvWithState (x [B, C, L], w [C, 1, k], optional bias [C], optional past_state
    [B, C, k-1], activation none/silu/swish): the depthwise conv of past_state (zeros when
    absent) ++ x, then SiLU; the present state is the last k-1 steps of past_state ++ x."""
    x, w = inputs[0], inputs[1]
    bias = inputs[2] if len(inputs) > 2 else None
    past = inputs[3] if len(inputs) > 3 else None
    activation = attrs.get("activation", "none")
    if activation not in ("none", "silu", "swish"):
        raise ctx.fail(f"activation {activation!r} is not supported (none, silu, swish)")
    if x.type.rank != 3 or w.type.rank != 3 or w.type.shape[::2] != (x.type.shape[1], w.type.shape[2]) \
            or w.type.shape[1] != 1:
        raise ctx.fail(f"expects x [batch, channels, length] and w [channels, 1, k], got {x.type} and {w.type}")
    (b, c, _), k = x.type.shape, w.type.shape[2]
    if past is None:
        past = ctx.const(np.zeros((b, c, k - 1), x.type.np_dtype))
    padded = x if k == 1 else ctx.emit1("concat", [past, x], {"axis": 2})
    y = ctx.emit1("conv", [padded, w] + ([bias] if bias is not None else []), {"group": c})
    if activation != "none":
        y = ctx.emit1("silu", [y])
    length = padded.type.shape[2]
    if k == 1:  # an empty state: [B, C, 0]
        return [y, ctx.const(np.zeros((b, c, 0), x.type.np_dtype))]
    state = ctx.emit1("slice", [padded], {"starts": [length - (k - 1)], "ends": [length], "axes": [2], "steps": [1]})
    return [y, state]


@_importer("Col2Im")
def _import_col2im(ctx, node, inputs, attrs):
    """Col2Im (x [N, C * prod(block), L], constant image_shape and block_shape, 2-D): the sum of
    the blocks back into the image is a conv_transpose of x (as [N, C * K, blocks...]) with a
    one-hot kernel per block position, group C."""
    x = inputs[0]
    image = [int(v) for v in ctx.constant_of(inputs[1], "image_shape").reshape(-1)]
    block = [int(v) for v in ctx.constant_of(inputs[2], "block_shape").reshape(-1)]
    n = len(image)
    if n != 2 or len(block) != 2 or x.type.rank != 3:
        raise ctx.fail(f"Col2Im is supported for 2-D images and x [N, C * K, L], got image_shape {image}, "
                       f"block_shape {block} and {x.type}")
    strides = _full(attrs.get("strides", []), n, 1, "strides")
    dils = _full(attrs.get("dilations", []), n, 1, "dilations")
    pads = _full(attrs.get("pads", []), 2 * n, 0, "pads")
    count = [(image[i] + pads[i] + pads[n + i] - dils[i] * (block[i] - 1) - 1) // strides[i] + 1 for i in range(n)]
    size = math.prod(block)
    batch, rows, length = x.type.shape
    if rows % size or math.prod(count) != length or min(count) < 1:
        raise ctx.fail(f"x {x.type} does not hold {size}-element blocks at {count} positions")
    channels = rows // size
    ctx.check_size((rows, 1, *block), x.type.dtype)
    kernel = np.zeros((rows, 1, *block), x.type.np_dtype)
    for r in range(rows):
        kernel[r, 0].reshape(-1)[r % size] = 1
    blocks = ctx.emit1("reshape", [x], {"shape": [batch, rows, *count]})
    return ctx.emit("conv_transpose", [blocks, ctx.const(kernel)],
                    {"strides": strides, "pads": pads, "dilations": dils, "group": channels})


@_importer("AffineGrid")
def _import_affine_grid(ctx, node, inputs, attrs):
    """AffineGrid (theta [N, 2, 3] or [N, 3, 4], constant size [N, C, (D,) H, W]): the grid of
    normalized coordinates in [-1, 1] (pixel centers, or corners with align_corners), x first,
    in homogeneous form [positions, 3|4], times theta^T: one matmul, reshaped to [N, (D,) H, W, 2|3]."""
    theta = inputs[0]
    size = [int(v) for v in ctx.constant_of(inputs[1], "size").reshape(-1)]
    spatial = size[2:]
    if len(spatial) not in (2, 3) or theta.type.shape != (size[0], len(spatial), len(spatial) + 1):
        raise ctx.fail(f"expects theta [N, 2, 3] with size [N, C, H, W], or [N, 3, 4] with [N, C, D, H, W]; "
                       f"got {theta.type} and {size}")
    ctx.check_size([math.prod(spatial), len(spatial) + 1], theta.type.dtype)
    axes = []
    for extent in spatial:
        step = np.arange(extent, dtype=np.float64)
        if attrs.get("align_corners", 0):
            axes.append(step * (2.0 / (extent - 1)) - 1 if extent > 1 else np.zeros(1))
        else:
            axes.append((2 * step + 1) / extent - 1)
    mesh = np.meshgrid(*axes, indexing="ij")  # (D,) H, W
    base = np.stack([*mesh[::-1], np.ones_like(mesh[0])], -1).reshape(1, -1, len(spatial) + 1)
    grid = ctx.emit1("matmul", [ctx.const(base.astype(theta.type.np_dtype)), theta], {"transpose_b": 1})
    return ctx.emit("reshape", [grid], {"shape": [size[0], *spatial, len(spatial)]})


# ---- grid_sample ------------------------------------------------------------------------------
# The sampling math is written once over a small namespace of array functions, so that the numpy
# reference and the TE kernel compute the same expressions (ONNX's reference, vectorized).

class _NumpyMath:
    floor, rint, abs = staticmethod(np.floor), staticmethod(np.rint), staticmethod(np.abs)
    where, clip = staticmethod(np.where), staticmethod(np.clip)
    and_, or_ = staticmethod(np.logical_and), staticmethod(np.logical_or)

    @staticmethod
    def to_index(x):
        return np.trunc(x).astype(np.int64)


class _TirMath:
    def __init__(self, dtype: str):
        self.dtype = dtype

    @staticmethod
    def floor(x):
        return tirx.floor(x)

    @staticmethod
    def rint(x):
        return tirx.nearbyint(x)

    @staticmethod
    def abs(x):
        return tirx.abs(x)

    @staticmethod
    def where(c, a, b):
        return tirx.Select(c, a, b)

    def clip(self, x, lo, hi):
        return tirx.max(tirx.min(x, tirx.const(hi, self.dtype)), tirx.const(lo, self.dtype))

    @staticmethod
    def and_(a, b):
        return tirx.And(a, b)

    @staticmethod
    def or_(a, b):
        return tirx.Or(a, b)

    @staticmethod
    def to_index(x):
        return tirx.Cast("int64", tirx.trunc(x))


def _gs_reflect(x, lo: float, hi: float, m):
    """x reflected by the near border until it lies in [lo, hi]: a triangle wave of period
    2 (hi - lo), lo + span - |((x - lo) mod 2 span) - span|."""
    span = hi - lo
    if span <= 0:
        return x * 0 + lo
    y = x - lo
    t = y - m.floor(y / (2 * span)) * (2 * span)
    return lo + span - m.abs(t - span)


def _gs_cubic(f):
    """Keys cubic convolution weights (alpha -0.75) of the taps at -1, 0, 1, 2 for fraction f."""
    a = -0.75
    t = [f + 1, f, 1 - f, 2 - f]
    return [((a * t[0] - 5 * a) * t[0] + 8 * a) * t[0] - 4 * a,
            ((a + 2) * t[1] - (a + 3)) * t[1] * t[1] + 1,
            ((a + 2) * t[2] - (a + 3)) * t[2] * t[2] + 1,
            ((a * t[3] - 5 * a) * t[3] + 8 * a) * t[3] - 4 * a]


def _gs_bounds(extent: int, attrs) -> tuple[float, float]:
    return (0.0, extent - 1.0) if attrs["align_corners"] else (-0.5, extent - 0.5)


def _gs_source(v, extent: int, attrs, m):
    """For one spatial axis: the input coordinate that normalized coordinate v samples (rounded
    for nearest, then clamped or reflected into the input for border / reflection padding). Cubic
    with border padding clamps only its taps, as ONNX Runtime does (ONNX's reference clamps the
    coordinate too: it differs from ONNX Runtime there)."""
    x = (v + 1) * (0.5 * (extent - 1)) if attrs["align_corners"] else ((v + 1) * extent - 1) * 0.5
    if attrs["mode"] == "nearest":
        x = m.rint(x)
    lo, hi = _gs_bounds(extent, attrs)
    if attrs["padding_mode"] == "border" and attrs["mode"] != "cubic":  # (cubic: its taps are clamped)
        x = m.where(m.or_(x < lo, x > hi), m.clip(x, 0.0, extent - 1.0), x)
    elif attrs["padding_mode"] == "reflection":
        x = _gs_reflect(x, lo, hi, m)
    return x


def _gs_taps(x, extent: int, attrs, m):
    """For one spatial axis: [(index, valid, weight)] of the taps that read around input
    coordinate x (`_gs_source`): index clamped into [0, extent); `valid` False where zeros padding
    reads 0; `valid` and `weight` None mean always / 1."""
    mode, padding = attrs["mode"], attrs["padding_mode"]
    lo, hi = _gs_bounds(extent, attrs)
    if mode == "nearest":
        points, weights = [x], [None]
    else:
        base = m.floor(x)
        f = x - base
        offsets = (0, 1) if mode == "linear" else (-1, 0, 1, 2)
        points = [base + o for o in offsets]
        weights = [1 - f, f] if mode == "linear" else _gs_cubic(f)
    taps = []
    for p, w in zip(points, weights):
        valid = None
        if padding == "zeros":
            valid = m.and_(p >= 0, p <= extent - 1)
        elif padding == "reflection":
            p = _gs_reflect(p, lo, hi, m)
        taps.append((m.to_index(m.clip(p, 0.0, extent - 1.0)), valid, w))
    return taps


def _gs_combine(per_axis, read, zero, m):
    """sum over tap combinations of prod(weights) * read(indices) (0 where a tap is not valid)."""
    import itertools
    total = None
    for combo in itertools.product(*per_axis):
        value = read([t[0] for t in combo])
        valid = [t[1] for t in combo if t[1] is not None]
        if valid:
            cond = valid[0]
            for c in valid[1:]:
                cond = m.and_(cond, c)
            value = m.where(cond, value, zero)
        for t in combo:
            if t[2] is not None:
                value = value * t[2]
        total = value if total is None else total + value
    return total


GRID_SAMPLE_ATTRS = {"mode": Attr("str", "linear"), "padding_mode": Attr("str", "zeros"),
                     "align_corners": Attr("int", 0)}


def _grid_sample_infer(types, attrs):
    x, grid = types
    if attrs["mode"] not in ("linear", "nearest", "cubic") \
            or attrs["padding_mode"] not in ("zeros", "border", "reflection"):
        raise VerifyError(f"grid_sample mode {attrs['mode']!r} (linear, nearest, cubic) or padding_mode "
                          f"{attrs['padding_mode']!r} (zeros, border, reflection) is not supported")
    n = x.rank - 2
    if n < 1 or grid.rank != n + 2 or grid.shape[0] != x.shape[0] or grid.shape[-1] != n \
            or not is_float(x.dtype) or grid.dtype != x.dtype:
        raise VerifyError(f"grid_sample takes x [N, C, spatial...] and a grid [N, out..., {max(n, 1)}] of its "
                          f"float dtype, got {x} and {grid}")
    return [TensorType(x.dtype, (*x.shape[:2], *grid.shape[1:-1]))]


def _grid_sample_ref(xs, attrs):
    x, grid = xs
    spatial = x.shape[2:]
    n = len(spatial)
    m = _NumpyMath
    # the grid's last axis lists coordinates innermost-first (x, y[, z])
    per_axis = [_gs_taps(_gs_source(grid[..., n - 1 - d], spatial[d], attrs, m), spatial[d], attrs, m)
                for d in range(n)]
    batch = np.arange(x.shape[0]).reshape((-1,) + (1,) * (grid.ndim - 2))
    moved = np.moveaxis(x, 1, 0)  # [C, N, spatial...]: weights and masks [N, out...] broadcast

    def read(indices):
        return moved[(slice(None), batch, *indices)]  # [C, N, out...]
    out = _gs_combine(per_axis, read, np.zeros((), x.dtype), m)
    return np.moveaxis(np.asarray(out, x.dtype), 0, 1)


def _grid_sample_lower(ctx, xs, attrs, out):
    """One kernel in stages (so that no expression nests deeply): the source coordinate per
    axis, then each tap's index, validity and weight, then the weighted sum of the reads."""
    from ..ir import DTYPES
    if str(xs[0].ty.dtype) == "float16":  # the coordinate arithmetic needs float32 (and its precision)
        wide = [TensorType("f32", t.shape) for t in out]
        narrow = [ctx.bb.emit(R.astype(v, "float32")) for v in xs]
        return R.astype(ctx.bb.emit(_grid_sample_lower(ctx, narrow, attrs, wide)), "float16")
    dtype = DTYPES[out[0].dtype].name
    m = _TirMath(dtype)

    def compute(x, grid):
        spatial = [int(d) for d in x.shape[2:]]
        n = len(spatial)
        where = [int(d) for d in grid.shape[:-1]]  # [N, out...]
        per_axis = []
        def source(d):
            return te.compute(where, lambda *i: _gs_source(grid(*i, n - 1 - d), spatial[d], attrs, m),
                              name=f"grid_sample_source{d}")

        def part(src, d, t, k):  # index, valid or weight of tap t along axis d
            return te.compute(where, lambda *i: _gs_taps(src(*i), spatial[d], attrs, m)[t][k],
                              name=f"grid_sample_tap{d}_{t}_{k}")
        for d in range(n):
            src = source(d)
            shape = _gs_taps(tirx.const(0.0, dtype), spatial[d], attrs, m)  # which parts are None
            per_axis.append([[part(src, d, t, k) if tap[k] is not None else None for k in range(3)]
                             for t, tap in enumerate(shape)])

        def body(b, c, *o):
            loaded = [[tuple(p(b, *o) if p is not None else None for p in tap) for tap in taps] for taps in per_axis]
            return _gs_combine(loaded, lambda idx: x(b, c, *idx), tirx.const(0, dtype), m)
        return te.compute([int(d) for d in out[0].shape], body, name="grid_sample")
    return ctx.bb.call_te(compute, xs[0], xs[1], primfunc_name_hint="grid_sample")


register_op(OpDef("grid_sample", _grid_sample_infer, _grid_sample_ref, _grid_sample_lower, GRID_SAMPLE_ATTRS,
                  kind="opaque", num_inputs=(2, 2),
                  summary="sample x at the grid's normalized coordinates (nearest, linear, cubic; zeros, border or "
                          "reflection padding), as ONNX GridSample"))


@_importer("GridSample")
def _import_grid_sample(ctx, node, inputs, attrs):
    """GridSample (opset 16: bilinear/bicubic, opset 20 on: linear/cubic, N-D)."""
    mode = {"bilinear": "linear", "bicubic": "cubic"}.get(attrs.get("mode", "linear"), attrs.get("mode", "linear"))
    return ctx.emit("grid_sample", inputs[:2], {"mode": mode, "padding_mode": attrs.get("padding_mode", "zeros"),
                                                "align_corners": attrs.get("align_corners", 0)})


@_importer("Det")
def _import_det(ctx, node, inputs, attrs):
    """Det of [..., n, n] for n up to 3, by cofactor expansion in elementwise ops (n 1: the element;
    2: ad - bc; 3: along the first row); larger matrices are refused."""
    x = inputs[0]
    if x.type.rank < 2 or x.type.shape[-1] != x.type.shape[-2] or x.type.shape[-1] > 3 or not is_float(x.type.dtype):
        raise ctx.fail(f"Det is supported for float [..., n, n] with n up to 3, got {x.type}")
    rank, n = x.type.rank, x.type.shape[-1]
    batch = list(x.type.shape[:-2])

    def at(i, j):
        e = ctx.emit1("slice", [x], {"starts": [i, j], "ends": [i + 1, j + 1], "axes": [rank - 2, rank - 1],
                                     "steps": [1, 1]})
        return ctx.emit1("reshape", [e], {"shape": batch})

    def det(rows, cols):
        if len(rows) == 1:
            return at(rows[0], cols[0])
        total = None
        for k, c in enumerate(cols):
            term = ctx.emit1("mul", [at(rows[0], c), det(rows[1:], cols[:k] + cols[k + 1:])])
            total = term if total is None else ctx.emit1("sub" if k % 2 else "add", [total, term])
        return total
    return [det(list(range(n)), list(range(n)))]
