"""Build the benchmark models with onnx.helper and numpy: no torch, no download.

    python tools/make_models.py                 # models/resnet18.onnx, mobilenetv2.onnx, transformer.onnx, mlp.onnx
    python tools/make_models.py --out DIR --small

Models (ONNX opset 17, static shapes, batch 1, float32):

- `resnet18`: ResNet-18-like CNN. 1x3x224x224 -> conv7x7/2 + BatchNormalization + Relu + MaxPool3x3/2,
  4 stages of 2 basic blocks (64, 128, 256, 512 channels; a conv1x1 + BatchNormalization projection
  shortcut where a block downsamples or changes width), GlobalAveragePool, Flatten, Gemm to 1000.
- `mobilenetv2`: MobileNetV2-like CNN (width 1.0). conv3x3/2 to 32 + BN + relu6, then the inverted
  residual blocks of the (t, c, n, s) table: expand 1x1 conv + BN + Clip(0, 6) (absent when t = 1),
  depthwise 3x3 conv (group = channels) + BN + Clip(0, 6), project 1x1 conv + BN, and a residual Add
  when stride is 1 and the widths match; a final 1x1 conv to 1280 + BN + Clip(0, 6),
  GlobalAveragePool, Reshape to 1x1280, Gemm to 1000.
- `transformer`: a 2-layer post-norm Transformer encoder as PyTorch exports it. Input 1x128x256
  (tokens already embedded), 4 heads, FFN 1024. Attention: MatMul + Add per projection, Reshape and
  Transpose to heads, MatMul, Div by sqrt(head dim), Softmax, MatMul, Transpose and Reshape back, the
  output projection, residual Add. LayerNormalization decomposed (ReduceMean, Sub, Pow, ReduceMean,
  Add, Sqrt, Div, Mul, Add) and GELU in erf form (Div, Erf, Add, Mul, Mul). Reshape shapes are
  constant initializers, except the first layer's query reshape, whose shape comes from a
  Shape -> Gather -> Unsqueeze -> Concat chain.
- `mlp`: 1x512 -> 1024 -> 1024 -> 10, MatMul + Add (+ Relu on the hidden layers).

`small=True` keeps each architecture (every op pattern, every stage) but shrinks inputs, widths and
classes so that a model compiles and runs in seconds, for tests.

Weights are random with fixed seeds (numpy's PCG64): He-initialised (std sqrt(2 / fan-in)) where a
ReLU-like activation follows, std sqrt(1 / fan-in) elsewhere, so activations keep a scale near 1
through the network (the last BatchNormalization of each residual branch has a smaller scale so the
residual stream does not grow block after block). BatchNormalization statistics are random with
variance in [0.5, 1.5]. The same call writes the same bytes every time.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

OPSET = 17
IR_VERSION = 8
NAMES = ("resnet18", "mobilenetv2", "transformer", "mlp")


class ModelBuilder:
    """Collects nodes and initializers; hands out unique names; draws seeded weights."""

    def __init__(self, name: str, seed: int):
        self.name = name
        self.rng = np.random.default_rng(seed)
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.used: set[str] = set()

    def unique(self, base: str) -> str:
        name, i = base, 1
        while name in self.used:
            i += 1
            name = f"{base}_{i}"
        self.used.add(name)
        return name

    def constant(self, base: str, array: np.ndarray) -> str:
        """An initializer holding `array` (its dtype is kept)."""
        name = self.unique(base)
        self.initializers.append(numpy_helper.from_array(np.array(array, order="C"), name))
        return name

    def node(self, op_type: str, inputs: list[str], name: str, n_outputs: int = 1, **attrs) -> str | list[str]:
        """Add a node named `name`; its outputs are named after it. Returns the output name(s)."""
        name = self.unique(name)
        outputs = [name if n_outputs == 1 else f"{name}_out{i}" for i in range(n_outputs)]
        self.nodes.append(helper.make_node(op_type, inputs, outputs, name=name, **attrs))
        return outputs[0] if n_outputs == 1 else outputs

    # ---- random parameters ------------------------------------------------------------------
    def normal(self, shape: tuple[int, ...], std: float) -> np.ndarray:
        return (self.rng.standard_normal(shape) * std).astype(np.float32)

    def uniform(self, shape: tuple[int, ...], low: float, high: float) -> np.ndarray:
        return self.rng.uniform(low, high, shape).astype(np.float32)

    def model(self, inputs: list[tuple[str, tuple[int, ...]]], outputs: list[tuple[str, tuple[int, ...]]]) -> onnx.ModelProto:
        graph = helper.make_graph(
            self.nodes, self.name,
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in inputs],
            [helper.make_tensor_value_info(n, TensorProto.FLOAT, list(s)) for n, s in outputs],
            self.initializers)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", OPSET)],
                                  producer_name="edgec-make-models", producer_version="1")
        model.ir_version = IR_VERSION
        return model

    # ---- layers -----------------------------------------------------------------------------
    def conv(self, x: str, c_in: int, c_out: int, kernel: int, stride: int, name: str, group: int = 1,
             bias: bool = False) -> str:
        """Conv with He-initialised weights (fan-in = c_in / group * k * k), 'same'-style padding."""
        fan_in = (c_in // group) * kernel * kernel
        w = self.constant(f"{name}.weight", self.normal((c_out, c_in // group, kernel, kernel), math.sqrt(2.0 / fan_in)))
        inputs = [x, w]
        if bias:
            inputs.append(self.constant(f"{name}.bias", self.normal((c_out,), 0.01)))
        pad = kernel // 2
        return self.node("Conv", inputs, name, kernel_shape=[kernel, kernel], strides=[stride, stride],
                         pads=[pad, pad, pad, pad], group=group, dilations=[1, 1])

    def batch_norm(self, x: str, channels: int, name: str, gamma: tuple[float, float] = (0.5, 1.0)) -> str:
        """BatchNormalization in inference mode with random statistics (variance in [0.5, 1.5])."""
        scale = self.constant(f"{name}.weight", self.uniform((channels,), *gamma))
        bias = self.constant(f"{name}.bias", self.normal((channels,), 0.1))
        mean = self.constant(f"{name}.running_mean", self.normal((channels,), 0.1))
        var = self.constant(f"{name}.running_var", self.uniform((channels,), 0.5, 1.5))
        return self.node("BatchNormalization", [x, scale, bias, mean, var], name, epsilon=1e-5, momentum=0.9)

    def relu6(self, x: str, name: str) -> str:
        low = self.constant(f"{name}.min", np.array(0.0, np.float32))
        high = self.constant(f"{name}.max", np.array(6.0, np.float32))
        return self.node("Clip", [x, low, high], name)

    def gemm(self, x: str, n_in: int, n_out: int, name: str) -> str:
        """Gemm with transB=1 (weight stored out x in, as PyTorch's Linear exports it)."""
        w = self.constant(f"{name}.weight", self.normal((n_out, n_in), math.sqrt(1.0 / n_in)))
        b = self.constant(f"{name}.bias", self.normal((n_out,), 0.01))
        return self.node("Gemm", [x, w, b], name, alpha=1.0, beta=1.0, transB=1)

    def linear(self, x: str, n_in: int, n_out: int, name: str, gain: float = 1.0) -> str:
        """MatMul by an in x out weight, then Add a bias (two nodes, as PyTorch exports Linear on 3-D input)."""
        w = self.constant(f"{name}.weight", self.normal((n_in, n_out), math.sqrt(gain / n_in)))
        b = self.constant(f"{name}.bias", self.normal((n_out,), 0.01))
        y = self.node("MatMul", [x, w], f"{name}.matmul")
        return self.node("Add", [y, b], f"{name}.add")


# ---- ResNet-18 -------------------------------------------------------------------------------
def resnet18(small: bool = False) -> onnx.ModelProto:
    """ResNet-18-like; small: 1x3x32x32 input, widths 8/16/24/32, 10 classes."""
    size, widths, classes = (32, (8, 16, 24, 32), 10) if small else (224, (64, 128, 256, 512), 1000)
    b = ModelBuilder("resnet18", seed=18)
    x = b.conv("input", 3, widths[0], 7, 2, "conv1")
    x = b.batch_norm(x, widths[0], "bn1")
    x = b.node("Relu", [x], "relu")
    x = b.node("MaxPool", [x], "maxpool", kernel_shape=[3, 3], strides=[2, 2], pads=[1, 1, 1, 1])
    c_in = widths[0]
    for stage, c_out in enumerate(widths, start=1):
        for block in range(2):
            stride = 2 if stage > 1 and block == 0 else 1
            p = f"layer{stage}.{block}"
            y = b.conv(x, c_in, c_out, 3, stride, f"{p}.conv1")
            y = b.batch_norm(y, c_out, f"{p}.bn1")
            y = b.node("Relu", [y], f"{p}.relu1")
            y = b.conv(y, c_out, c_out, 3, 1, f"{p}.conv2")
            # A smaller last-BN scale keeps the residual stream from growing block after block.
            y = b.batch_norm(y, c_out, f"{p}.bn2", gamma=(0.2, 0.5))
            if stride != 1 or c_in != c_out:
                shortcut = b.conv(x, c_in, c_out, 1, stride, f"{p}.downsample.0")
                shortcut = b.batch_norm(shortcut, c_out, f"{p}.downsample.1")
            else:
                shortcut = x
            x = b.node("Add", [y, shortcut], f"{p}.add")
            x = b.node("Relu", [x], f"{p}.relu2")
            c_in = c_out
    x = b.node("GlobalAveragePool", [x], "avgpool")
    x = b.node("Flatten", [x], "flatten", axis=1)
    x = b.gemm(x, c_in, classes, "fc")
    b.nodes[-1].output[0] = "output"
    return b.model([("input", (1, 3, size, size))], [("output", (1, classes))])


# ---- MobileNetV2 -----------------------------------------------------------------------------
MOBILENETV2_BLOCKS = [  # expansion t, output channels c, repeats n, first stride s
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
]


def _divisible(v: float, divisor: int = 8) -> int:
    """MobileNet's channel rounding: to a multiple of `divisor`, never below 90% of `v`."""
    new = max(divisor, int(v + divisor / 2) // divisor * divisor)
    return new + divisor if new < 0.9 * v else new


def mobilenetv2(small: bool = False) -> onnx.ModelProto:
    """MobileNetV2-like at width 1.0; small: 1x3x32x32, width 0.25, at most 2 repeats, 10 classes."""
    if small:
        size, width, max_repeats, last, classes = 32, 0.25, 2, 64, 10
    else:
        size, width, max_repeats, last, classes = 224, 1.0, None, 1280, 1000
    b = ModelBuilder("mobilenetv2", seed=2)
    c_in = _divisible(32 * width)
    x = b.conv("input", 3, c_in, 3, 2, "features.0.0")
    x = b.batch_norm(x, c_in, "features.0.1")
    x = b.relu6(x, "features.0.2")
    index = 1
    for t, c, n, s in MOBILENETV2_BLOCKS:
        c_out = _divisible(c * width)
        for i in range(n if max_repeats is None else min(n, max_repeats)):
            stride = s if i == 0 else 1
            p = f"features.{index}"
            hidden = c_in * t
            y = x
            if t != 1:
                y = b.conv(y, c_in, hidden, 1, 1, f"{p}.expand.conv")
                y = b.batch_norm(y, hidden, f"{p}.expand.bn")
                y = b.relu6(y, f"{p}.expand.relu6")
            y = b.conv(y, hidden, hidden, 3, stride, f"{p}.dw.conv", group=hidden)
            y = b.batch_norm(y, hidden, f"{p}.dw.bn")
            y = b.relu6(y, f"{p}.dw.relu6")
            y = b.conv(y, hidden, c_out, 1, 1, f"{p}.project.conv")
            # Linear bottleneck: no activation; a small scale where a residual follows.
            y = b.batch_norm(y, c_out, f"{p}.project.bn",
                             gamma=(0.2, 0.5) if stride == 1 and c_in == c_out else (0.5, 1.0))
            if stride == 1 and c_in == c_out:
                y = b.node("Add", [x, y], f"{p}.add")
            x, c_in, index = y, c_out, index + 1
    x = b.conv(x, c_in, last, 1, 1, f"features.{index}.0")
    x = b.batch_norm(x, last, f"features.{index}.1")
    x = b.relu6(x, f"features.{index}.2")
    x = b.node("GlobalAveragePool", [x], "avgpool")
    shape = b.constant("flatten.shape", np.array([1, last], np.int64))
    x = b.node("Reshape", [x, shape], "flatten")
    x = b.gemm(x, last, classes, "classifier")
    b.nodes[-1].output[0] = "output"
    return b.model([("input", (1, 3, size, size))], [("output", (1, classes))])


# ---- Transformer encoder ---------------------------------------------------------------------
def _layer_norm(b: ModelBuilder, x: str, hidden: int, name: str) -> str:
    """LayerNormalization over the last axis, decomposed as PyTorch's exporter writes it."""
    mean = b.node("ReduceMean", [x], f"{name}.ReduceMean", axes=[-1], keepdims=1)
    d = b.node("Sub", [x, mean], f"{name}.Sub")
    sq = b.node("Pow", [d, b.constant(f"{name}.two", np.array(2.0, np.float32))], f"{name}.Pow")
    var = b.node("ReduceMean", [sq], f"{name}.ReduceMean_1", axes=[-1], keepdims=1)
    var = b.node("Add", [var, b.constant(f"{name}.eps", np.array(1e-5, np.float32))], f"{name}.Add")
    std = b.node("Sqrt", [var], f"{name}.Sqrt")
    y = b.node("Div", [d, std], f"{name}.Div")
    y = b.node("Mul", [y, b.constant(f"{name}.weight", b.uniform((hidden,), 0.8, 1.2))], f"{name}.Mul")
    return b.node("Add", [y, b.constant(f"{name}.bias", b.normal((hidden,), 0.05))], f"{name}.Add_1")


def _gelu(b: ModelBuilder, x: str, name: str) -> str:
    """GELU, erf form: x * (1 + erf(x / sqrt(2))) * 0.5."""
    y = b.node("Div", [x, b.constant(f"{name}.sqrt2", np.array(math.sqrt(2.0), np.float32))], f"{name}.Div")
    y = b.node("Erf", [y], f"{name}.Erf")
    y = b.node("Add", [y, b.constant(f"{name}.one", np.array(1.0, np.float32))], f"{name}.Add")
    y = b.node("Mul", [x, y], f"{name}.Mul")
    return b.node("Mul", [y, b.constant(f"{name}.half", np.array(0.5, np.float32))], f"{name}.Mul_1")


def _shape_chain(b: ModelBuilder, x: str, heads: int, head_dim: int, name: str) -> str:
    """[batch, seq, heads, head_dim] for Reshape, computed from x's shape as PyTorch exports it."""
    shape = b.node("Shape", [x], f"{name}.Shape")
    zero = b.constant(f"{name}.idx0", np.array(0, np.int64))
    one = b.constant(f"{name}.idx1", np.array(1, np.int64))
    axes = b.constant(f"{name}.axes", np.array([0], np.int64))
    batch = b.node("Gather", [shape, zero], f"{name}.Gather", axis=0)
    seq = b.node("Gather", [shape, one], f"{name}.Gather_1", axis=0)
    batch = b.node("Unsqueeze", [batch, axes], f"{name}.Unsqueeze")
    seq = b.node("Unsqueeze", [seq, axes], f"{name}.Unsqueeze_1")
    rest = b.constant(f"{name}.heads", np.array([heads, head_dim], np.int64))
    return b.node("Concat", [batch, seq, rest], f"{name}.Concat", axis=0)


def _encoder_layer(b: ModelBuilder, x: str, seq: int, hidden: int, heads: int, ffn: int, name: str,
                   dynamic_shape: bool) -> str:
    head_dim = hidden // heads
    q = b.linear(x, hidden, hidden, f"{name}.self_attn.q_proj")
    k = b.linear(x, hidden, hidden, f"{name}.self_attn.k_proj")
    v = b.linear(x, hidden, hidden, f"{name}.self_attn.v_proj")
    if dynamic_shape:
        heads_shape = _shape_chain(b, q, heads, head_dim, f"{name}.self_attn.shape")
    else:
        heads_shape = b.constant(f"{name}.self_attn.heads_shape", np.array([1, seq, heads, head_dim], np.int64))
    merged_shape = b.constant(f"{name}.self_attn.merged_shape", np.array([1, seq, hidden], np.int64))
    q = b.node("Reshape", [q, heads_shape], f"{name}.self_attn.Reshape")
    q = b.node("Transpose", [q], f"{name}.self_attn.Transpose", perm=[0, 2, 1, 3])
    k = b.node("Reshape", [k, heads_shape], f"{name}.self_attn.Reshape_1")
    k = b.node("Transpose", [k], f"{name}.self_attn.Transpose_1", perm=[0, 2, 3, 1])
    v = b.node("Reshape", [v, heads_shape], f"{name}.self_attn.Reshape_2")
    v = b.node("Transpose", [v], f"{name}.self_attn.Transpose_2", perm=[0, 2, 1, 3])
    scores = b.node("MatMul", [q, k], f"{name}.self_attn.MatMul")
    scale = b.constant(f"{name}.self_attn.scale", np.array(math.sqrt(head_dim), np.float32))
    scores = b.node("Div", [scores, scale], f"{name}.self_attn.Div")
    probs = b.node("Softmax", [scores], f"{name}.self_attn.Softmax", axis=-1)
    ctx = b.node("MatMul", [probs, v], f"{name}.self_attn.MatMul_1")
    ctx = b.node("Transpose", [ctx], f"{name}.self_attn.Transpose_3", perm=[0, 2, 1, 3])
    ctx = b.node("Reshape", [ctx, merged_shape], f"{name}.self_attn.Reshape_3")
    attn = b.linear(ctx, hidden, hidden, f"{name}.self_attn.out_proj")
    x = b.node("Add", [x, attn], f"{name}.Add")
    x = _layer_norm(b, x, hidden, f"{name}.norm1")
    h = b.linear(x, hidden, ffn, f"{name}.linear1", gain=2.0)
    h = _gelu(b, h, f"{name}.gelu")
    h = b.linear(h, ffn, hidden, f"{name}.linear2")
    x = b.node("Add", [x, h], f"{name}.Add_1")
    return _layer_norm(b, x, hidden, f"{name}.norm2")


def transformer(small: bool = False) -> onnx.ModelProto:
    """2-layer encoder; full: seq 128, hidden 256, 4 heads, FFN 1024; small: seq 16, hidden 64, FFN 128."""
    seq, hidden, heads, ffn, layers = (16, 64, 4, 128, 2) if small else (128, 256, 4, 1024, 2)
    b = ModelBuilder("transformer", seed=7)
    x = "input"
    for i in range(layers):
        x = _encoder_layer(b, x, seq, hidden, heads, ffn, f"layers.{i}", dynamic_shape=(i == 0))
    b.nodes[-1].output[0] = "output"
    return b.model([("input", (1, seq, hidden))], [("output", (1, seq, hidden))])


# ---- MLP -------------------------------------------------------------------------------------
def mlp(small: bool = False) -> onnx.ModelProto:
    """1x512 -> 1024 -> 1024 -> 10; small: 1x64 -> 128 -> 128 -> 10."""
    sizes = (64, 128, 128, 10) if small else (512, 1024, 1024, 10)
    b = ModelBuilder("mlp", seed=3)
    x = "input"
    for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
        last = i == len(sizes) - 2
        x = b.linear(x, n_in, n_out, f"fc{i + 1}", gain=1.0 if last else 2.0)
        if not last:
            x = b.node("Relu", [x], f"relu{i + 1}")
    b.nodes[-1].output[0] = "output"
    return b.model([("input", (1, sizes[0]))], [("output", (1, sizes[-1]))])


BUILDERS = {"resnet18": resnet18, "mobilenetv2": mobilenetv2, "transformer": transformer, "mlp": mlp}


def build(name: str, small: bool = False) -> onnx.ModelProto:
    """One model by name (see NAMES), checked with onnx.checker."""
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(NAMES)}")
    model = BUILDERS[name](small)
    onnx.checker.check_model(model, full_check=True)
    return model


def build_all(out_dir: str | Path = "models", small: bool = False, names: tuple[str, ...] = NAMES) -> dict[str, Path]:
    """Write `<name>.onnx` for each model into `out_dir`; returns {name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in names:
        path = out / f"{name}.onnx"
        path.write_bytes(build(name, small).SerializeToString())
        paths[name] = path
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="models", help="output directory (default: models/)")
    parser.add_argument("--small", action="store_true", help="reduced sizes, for fast tests")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"models to build: {', '.join(NAMES)} (default: all)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in NAMES]
    if unknown:
        parser.error(f"unknown model {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    for name, path in build_all(args.out, args.small, tuple(args.names) or NAMES).items():
        print(f"{name}: {path} ({path.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
