"""ONNX Runtime's float contrib ops (com.microsoft domain) that exported and ORT-optimized models
carry. Each imports as the edgec ops it is made of (no op of its own), so that the recognition and
fusion passes compile it as they compile the ONNX form: a FusedConv becomes a conv and its
activation, which fuse-activation puts back together into one kernel. The formulas are those of
ORT 1.32's CPU kernels (tests/ops/test_contrib_ops.py compares with it).

- FusedConv(X, W[, B[, Z]]) {Conv's attributes, activation, activation_params}: act(conv(X, W) + B + Z)
  -> conv [+ add Z] + the activation; no activation: the conv alone. Activations (MLAS's): Relu,
  Tanh, Sigmoid, Silu, LeakyRelu (activation_params [alpha]), Clip ([min, max]), HardSigmoid
  ([alpha, beta]); a parameterized one needs exactly its activation_params, as in ORT.
- FusedGemm(A, B[, C]) {Gemm's attributes, activation, activation_alpha, activation_beta,
  activation_gamma}: Gemm's import (dense or matmul, see nn.py) + the activation: Relu, Sigmoid,
  Tanh, Softplus, Softsign, LeakyRelu (alpha), Elu (alpha), Celu (alpha), ThresholdedRelu (alpha),
  HardSigmoid (alpha, beta), Selu (alpha, gamma), ParametricSoftplus (alpha * softplus(beta * x)),
  ScaledTanh (alpha * tanh(beta * x)); ORT requires the activation and each of its parameters.
- FusedMatMul(A, B) {alpha=1, transA, transB} -> matmul {transpose_a, transpose_b} [* alpha] (numpy
  matmul; transBatchA/transBatchB other than 0 are refused).
- Gelu(X) -> gelu (erf form); BiasGelu(A, B) -> gelu(A + B); FastGelu(X[, bias]) ->
  gelu{approximate="tanh"}(X + bias): ORT's 0.5 x (1 + tanh(0.797885 x + 0.035677 x^3)).
- QuickGelu(X) {alpha=1.702} -> X * sigmoid(alpha * X).
- BiasAdd(X, bias, skip) -> X + bias + skip.
- SkipLayerNormalization(input, skip, gamma[, beta[, bias]]) {epsilon=1e-12} -> (output, mean,
  inv_std_var, input_skip_bias_sum): s = input + skip (+ bias); output = layer_norm(s, gamma[, beta])
  over the last axis; mean and inv_std_var (last axis kept as 1) as LayerNormalization's
  (`nn.layer_norm_stats`); the sum s. Outputs that are not named are not computed.
- SkipSimplifiedLayerNormalization(input, skip, gamma[, bias]) {epsilon=1e-12} -> (output, -,
  inv_std_var, input_skip_bias_sum): the RMS normalization of s (`nn.rms_norm`), inv_std_var = 1 / rms.
  ORT does not compute its mean output (RMS normalization has none): a node naming it is refused.
Skip, bias and gamma broadcast as numpy does (ORT: skip [..., S, H] over the batch, bias and gamma [H]).

ONNX Runtime's ONNX-domain ops (SimplifiedLayerNormalization, LayerNormalization before opset 17)
import in nn.py, beside RMSNormalization and LayerNormalization.
"""

from __future__ import annotations

import numpy as np

from .base import ONNX_CONVERTERS, onnx_op
from .nn import layer_norm_stats, rms_norm
from .qlinear import MS, _arity

# ONNX Runtime's activation name: (edgec op or None for a composition, the attributes its
# parameters are, in ORT's order)
ACTIVATIONS = {
    "Relu": ("relu", ()), "Sigmoid": ("sigmoid", ()), "Tanh": ("tanh", ()), "Silu": ("silu", ()),
    "Softplus": ("softplus", ()), "Softsign": ("softsign", ()),
    "LeakyRelu": ("leaky_relu", ("alpha",)), "Elu": ("elu", ("alpha",)), "Celu": ("celu", ("alpha",)),
    "ThresholdedRelu": ("thresholded_relu", ("alpha",)), "Clip": ("clip", ("min", "max")),
    "HardSigmoid": ("hard_sigmoid", ("alpha", "beta")), "Selu": ("selu", ("alpha", "gamma")),
    "ParametricSoftplus": (None, ("alpha", "beta")), "ScaledTanh": (None, ("alpha", "beta")),
}
CONV_ACTIVATIONS = ("Relu", "Tanh", "Sigmoid", "Silu", "LeakyRelu", "Clip", "HardSigmoid")
GEMM_ACTIVATIONS = ("Relu", "Sigmoid", "Tanh", "Softplus", "Softsign", "LeakyRelu", "Elu", "Celu",
                    "ThresholdedRelu", "HardSigmoid", "Selu", "ParametricSoftplus", "ScaledTanh")


def _scalar(x, value: float):
    return np.asarray(value, x.type.np_dtype)


def _activation(ctx, x, name: str, params: list[float]):
    """x through ONNX Runtime's activation `name` with its parameters, as edgec ops."""
    op, attrs = ACTIVATIONS[name]
    if op is not None:
        return ctx.emit1(op, [x], dict(zip(attrs, params)))
    alpha, beta = params
    inner = ctx.emit1("mul", [x, ctx.const(_scalar(x, beta))])
    inner = ctx.emit1("softplus" if name == "ParametricSoftplus" else "tanh", [inner])
    return ctx.emit1("mul", [inner, ctx.const(_scalar(x, alpha))])


def _activation_name(ctx, attrs, known: tuple[str, ...]) -> str:
    name = attrs.get("activation", "")
    if name not in known:
        raise ctx.fail(f"activation {name!r} is not one {MS}.{ctx.node.op_type} defines "
                       f"(known: {', '.join(known)})")
    return name


@onnx_op("FusedConv", domain=MS)
def _import_fused_conv(ctx, node, inputs, attrs):
    x, w, b, z = _arity(ctx, inputs, 2, 4)
    y = ONNX_CONVERTERS["Conv"](ctx, node, [x, w, b], attrs)[0]
    if z is not None:
        y = ctx.emit1("add", [y, z])
    if not attrs.get("activation"):
        return [y]
    name = _activation_name(ctx, attrs, CONV_ACTIVATIONS)
    params = list(attrs.get("activation_params", []))
    wanted = len(ACTIVATIONS[name][1])
    if wanted and len(params) != wanted:
        raise ctx.fail(f"activation {name} takes {wanted} activation_params, got {len(params)}")
    return [_activation(ctx, y, name, params[:wanted])]


@onnx_op("FusedGemm", domain=MS)
def _import_fused_gemm(ctx, node, inputs, attrs):
    a, b, c = _arity(ctx, inputs, 2, 3)
    y = ONNX_CONVERTERS["Gemm"](ctx, node, [a, b] + ([c] if c is not None else []), attrs)[0]
    name = _activation_name(ctx, attrs, GEMM_ACTIVATIONS)
    missing = [f"activation_{p}" for p in ACTIVATIONS[name][1] if f"activation_{p}" not in attrs]
    if missing:
        raise ctx.fail(f"activation {name} needs the attribute(s) {', '.join(missing)}")
    return [_activation(ctx, y, name, [attrs[f"activation_{p}"] for p in ACTIVATIONS[name][1]])]


@onnx_op("FusedMatMul", domain=MS)
def _import_fused_matmul(ctx, node, inputs, attrs):
    a, b = _arity(ctx, inputs, 2, 2)
    batched = [name for name in ("transBatchA", "transBatchB") if attrs.get(name, 0)]
    if batched:
        raise ctx.fail(f"{' and '.join(batched)} other than 0 is not supported")
    y = ctx.emit1("matmul", [a, b], {"transpose_a": attrs.get("transA", 0), "transpose_b": attrs.get("transB", 0)})
    alpha = attrs.get("alpha", 1.0)
    return [y] if alpha == 1.0 else ctx.emit("mul", [y, ctx.const(_scalar(y, alpha))])


@onnx_op("Gelu", domain=MS)
def _import_gelu(ctx, node, inputs, attrs):
    x, = _arity(ctx, inputs, 1, 1)
    return ctx.emit("gelu", [x])


@onnx_op("BiasGelu", "FastGelu", domain=MS)
def _import_bias_gelu(ctx, node, inputs, attrs):
    fast = node.op_type == "FastGelu"
    x, bias = _arity(ctx, inputs, 1 if fast else 2, 2)
    if bias is not None:
        x = ctx.emit1("add", [x, bias])
    return ctx.emit("gelu", [x], {"approximate": "tanh" if fast else "none"})


@onnx_op("QuickGelu", domain=MS)
def _import_quick_gelu(ctx, node, inputs, attrs):
    x, = _arity(ctx, inputs, 1, 1)
    scaled = ctx.emit1("mul", [x, ctx.const(_scalar(x, attrs.get("alpha", 1.702)))])
    return ctx.emit("mul", [x, ctx.emit1("sigmoid", [scaled])])


@onnx_op("BiasAdd", domain=MS)
def _import_bias_add(ctx, node, inputs, attrs):
    x, bias, skip = _arity(ctx, inputs, 3, 3)
    return ctx.emit("add", [ctx.emit1("add", [x, bias]), skip])


@onnx_op("SkipLayerNormalization", "SkipSimplifiedLayerNormalization", domain=MS)
def _import_skip_layer_norm(ctx, node, inputs, attrs):
    simplified = node.op_type == "SkipSimplifiedLayerNormalization"
    if simplified:
        x, skip, gamma, bias = _arity(ctx, inputs, 3, 4)
        beta = None
    else:
        x, skip, gamma, beta, bias = _arity(ctx, inputs, 3, 5)
    eps = attrs.get("epsilon", 1e-12)
    named = [bool(name) for name in node.output] + [False] * 4
    total = ctx.emit1("add", [x, skip])
    if bias is not None:
        total = ctx.emit1("add", [total, bias])
    if simplified:
        if named[1]:
            raise ctx.fail("ONNX Runtime does not compute the mean output of SkipSimplifiedLayerNormalization "
                           "(RMS normalization has none); leave output 1 unnamed")
        y, rms = rms_norm(ctx, total, gamma, -1, eps)
        mean, inv_std = None, ctx.emit1("reciprocal", [rms]) if named[2] else None
    else:
        y = ctx.emit1("layer_norm", [total, gamma] + ([beta] if beta is not None else []),
                      {"axis": -1, "epsilon": eps})
        mean, inv_std = None, None
        if named[1] or named[2]:
            if total.type.dtype != "f32":
                raise ctx.fail(f"the mean and inv_std_var outputs are supported for float32 input, got {total.type}")
            mean, inv_std = layer_norm_stats(ctx, total, -1, eps)
    # An output that is not named is not computed (None): the importer skips unnamed outputs.
    return [y, mean, inv_std, total][:len(node.output)]
