"""Build small models shaped like the exported ones real projects ship, with onnx.helper and numpy.

    python tools/make_exported_models.py --out DIR [NAME ...]

Each is a few hundred kilobytes, opset 17, float32, batch 1, with the node patterns exporters
(torch.onnx, tf2onnx) write; weights are random with fixed seeds, drawn by
`make_models.ModelBuilder` (same initialisation, same bytes on every call):

- `unet`: a U-Net-style decoder / text-detector head (DBNet, CRAFT): 1x3x32x32 -> two conv +
  BatchNormalization + Relu encoder stages with MaxPool, a bottleneck, two ConvTranspose
  (2x2, stride 2) + BatchNormalization + Relu upsampling stages each concatenated with the
  encoder's skip, a 1x1 conv and a Sigmoid: a 1x1x32x32 probability map.
- `shape_if`: a conv feature extractor whose flattening is chosen by an `If` on a shape, as
  exporters write a batch-size check: `If(Equal(Gather(Shape(x), 0), 1))`, the then branch a
  Reshape to [1, -1], the else branch a Flatten; then a Gemm to 10 classes.
- `crnn`: a CRNN text recognizer: 1x1x32x160 -> three conv + Relu (+ BatchNormalization) stages
  with MaxPool down to height 1, Squeeze and Transpose to [T=40, 1, 64], a bidirectional LSTM
  with hidden size 128 (zero initial states as inputs, no sequence_lens, as torch exports it),
  Transpose and Reshape to [40, 1, 256], MatMul + Add to 100 classes and LogSoftmax over them.
- `vad`: a voice-activity detector: 1x32x40 (frames x filterbank features) -> Transpose to
  [32, 1, 40], a GRU with hidden size 64 (linear_before_reset=1 and a zero initial state, as
  torch exports it), Squeeze,
  MatMul + Add to one logit per frame and a Sigmoid: [32, 1, 1].
- `transformer_block`: one pre-norm transformer block as torch exports it: 1x16x64 ->
  LayerNormalization, Q/K/V MatMul + Add, Reshape and Transpose to 4 heads, MatMul, Div by
  sqrt(head dim), Softmax, MatMul, Transpose and Reshape back, the output projection, a residual
  Add, LayerNormalization, MatMul + Add to 128, GELU in erf form (Div, Erf, Add, Mul, Mul),
  MatMul + Add back to 64 and a residual Add.

`build(name)` checks each model with onnx.checker (full check) and runs it once in ONNX Runtime.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_models import ModelBuilder, _gelu  # noqa: E402

NAMES = ("unet", "shape_if", "crnn", "vad", "transformer_block")


def _conv_bn_relu(b: ModelBuilder, x: str, c_in: int, c_out: int, name: str) -> str:
    y = b.conv(x, c_in, c_out, 3, 1, f"{name}.conv")
    y = b.batch_norm(y, c_out, f"{name}.bn")
    return b.node("Relu", [y], f"{name}.relu")


def _up(b: ModelBuilder, x: str, c_in: int, c_out: int, name: str) -> str:
    """ConvTranspose 2x2 stride 2 (weight [c_in, c_out, 2, 2], with a bias) + BN + Relu."""
    w = b.constant(f"{name}.weight", b.normal((c_in, c_out, 2, 2), math.sqrt(2.0 / c_in)))
    bias = b.constant(f"{name}.bias", b.normal((c_out,), 0.01))
    y = b.node("ConvTranspose", [x, w, bias], f"{name}.deconv", kernel_shape=[2, 2], strides=[2, 2])
    y = b.batch_norm(y, c_out, f"{name}.bn")
    return b.node("Relu", [y], f"{name}.relu")


def unet() -> onnx.ModelProto:
    b = ModelBuilder("unet", seed=21)
    e1 = _conv_bn_relu(b, "input", 3, 8, "enc1")  # 32x32
    e2 = _conv_bn_relu(b, b.node("MaxPool", [e1], "pool1", kernel_shape=[2, 2], strides=[2, 2]), 8, 16, "enc2")
    mid = _conv_bn_relu(b, b.node("MaxPool", [e2], "pool2", kernel_shape=[2, 2], strides=[2, 2]), 16, 32, "mid")
    d2 = _up(b, mid, 32, 16, "up2")  # 16x16
    d2 = _conv_bn_relu(b, b.node("Concat", [d2, e2], "cat2", axis=1), 32, 16, "dec2")
    d1 = _up(b, d2, 16, 8, "up1")  # 32x32
    d1 = _conv_bn_relu(b, b.node("Concat", [d1, e1], "cat1", axis=1), 16, 8, "dec1")
    logits = b.conv(d1, 8, 1, 1, 1, "head", bias=True)
    b.node("Sigmoid", [logits], "prob")
    b.nodes[-1].output[0] = "output"
    return b.model([("input", (1, 3, 32, 32))], [("output", (1, 1, 32, 32))])


def shape_if() -> onnx.ModelProto:
    b = ModelBuilder("shape_if", seed=22)
    x = b.node("Relu", [b.conv("input", 3, 8, 3, 2, "conv", bias=True)], "relu")  # 1x8x8x8
    shape = b.node("Shape", [x], "Shape")
    batch = b.node("Gather", [shape, b.constant("zero", np.array(0, np.int64))], "Gather", axis=0)
    cond = b.node("Equal", [batch, b.constant("one", np.array(1, np.int64))], "Equal")
    then_shape = b.constant("then.shape", np.array([1, -1], np.int64))
    then_branch = helper.make_graph([helper.make_node("Reshape", [x, then_shape], ["flat_then"], name="then.Reshape")],
                                    "then", [], [helper.make_tensor_value_info("flat_then", TensorProto.FLOAT, [1, 512])])
    else_branch = helper.make_graph([helper.make_node("Flatten", [x], ["flat_else"], name="else.Flatten", axis=1)],
                                    "else", [], [helper.make_tensor_value_info("flat_else", TensorProto.FLOAT, [1, 512])])
    flat = b.node("If", [cond], "If", then_branch=then_branch, else_branch=else_branch)
    b.gemm(flat, 512, 10, "fc")
    b.nodes[-1].output[0] = "output"
    return b.model([("input", (1, 3, 16, 16))], [("output", (1, 10))])


def _rnn_weights(b: ModelBuilder, name: str, gates: int, n_in: int, hidden: int, directions: int) -> list[str]:
    """W [dirs, gates*hidden, n_in], R [dirs, gates*hidden, hidden], B [dirs, 2*gates*hidden]."""
    std = 1.0 / math.sqrt(hidden)
    return [b.constant(f"{name}.W", b.uniform((directions, gates * hidden, n_in), -std, std)),
            b.constant(f"{name}.R", b.uniform((directions, gates * hidden, hidden), -std, std)),
            b.constant(f"{name}.B", b.uniform((directions, 2 * gates * hidden), -std, std))]


def crnn() -> onnx.ModelProto:
    hidden, classes = 128, 100
    b = ModelBuilder("crnn", seed=23)
    x = b.node("Relu", [b.conv("input", 1, 16, 3, 1, "cnn.0", bias=True)], "cnn.1")
    x = b.node("MaxPool", [x], "cnn.2", kernel_shape=[2, 2], strides=[2, 2])  # 16x80
    x = b.node("Relu", [b.conv(x, 16, 32, 3, 1, "cnn.3", bias=True)], "cnn.4")
    x = b.node("MaxPool", [x], "cnn.5", kernel_shape=[2, 2], strides=[2, 2])  # 8x40
    x = b.node("Relu", [b.batch_norm(b.conv(x, 32, 64, 3, 1, "cnn.6"), 64, "cnn.7")], "cnn.8")
    x = b.node("MaxPool", [x], "cnn.9", kernel_shape=[8, 1], strides=[8, 1])  # 1x40
    x = b.node("Squeeze", [x, b.constant("squeeze.axes", np.array([2], np.int64))], "Squeeze")  # 1x64x40
    x = b.node("Transpose", [x], "Transpose", perm=[2, 0, 1])  # T x 1 x 64
    zeros = b.constant("rnn.h0", np.zeros((2, 1, hidden), np.float32))  # torch passes the zero states
    y, _, _ = b.node("LSTM", [x, *_rnn_weights(b, "rnn", 4, 64, hidden, 2), "", zeros, zeros], "rnn", n_outputs=3,
                     hidden_size=hidden, direction="bidirectional")  # T x 2 x 1 x 128
    y = b.node("Transpose", [y], "Transpose_1", perm=[0, 2, 1, 3])
    y = b.node("Reshape", [y, b.constant("rnn.shape", np.array([40, 1, 2 * hidden], np.int64))], "Reshape")
    y = b.linear(y, 2 * hidden, classes, "fc")
    b.node("LogSoftmax", [y], "LogSoftmax", axis=2)
    b.nodes[-1].output[0] = "output"
    return b.model([("input", (1, 1, 32, 160))], [("output", (40, 1, classes))])


def vad() -> onnx.ModelProto:
    frames, features, hidden = 32, 40, 64
    b = ModelBuilder("vad", seed=24)
    x = b.node("Transpose", ["input"], "Transpose", perm=[1, 0, 2])  # T x 1 x 40
    h0 = b.constant("gru.h0", np.zeros((1, 1, hidden), np.float32))
    y, _ = b.node("GRU", [x, *_rnn_weights(b, "gru", 3, features, hidden, 1), "", h0], "gru", n_outputs=2,
                  hidden_size=hidden, linear_before_reset=1)  # T x 1 x 1 x 64
    y = b.node("Squeeze", [y, b.constant("squeeze.axes", np.array([1], np.int64))], "Squeeze")  # T x 1 x 64
    b.node("Sigmoid", [b.linear(y, hidden, 1, "fc", gain=16.0)], "Sigmoid")  # probabilities spread (0.3 to 0.85)
    b.nodes[-1].output[0] = "output"
    return b.model([("input", (1, frames, features))], [("output", (frames, 1, 1))])


def transformer_block() -> onnx.ModelProto:
    seq, hidden, heads, ffn = 16, 64, 4, 128
    head_dim = hidden // heads
    b = ModelBuilder("transformer_block", seed=25)

    def layer_norm(x: str, name: str) -> str:
        scale = b.constant(f"{name}.weight", b.uniform((hidden,), 0.8, 1.2))
        bias = b.constant(f"{name}.bias", b.normal((hidden,), 0.05))
        return b.node("LayerNormalization", [x, scale, bias], name, axis=-1, epsilon=1e-5)

    heads_shape = b.constant("attn.heads_shape", np.array([1, seq, heads, head_dim], np.int64))
    merged_shape = b.constant("attn.merged_shape", np.array([1, seq, hidden], np.int64))
    h = layer_norm("input", "ln1")
    q, k, v = (b.node("Reshape", [b.linear(h, hidden, hidden, f"attn.{p}_proj"), heads_shape], f"attn.Reshape_{p}")
               for p in "qkv")
    q = b.node("Transpose", [q], "attn.Transpose_q", perm=[0, 2, 1, 3])
    k = b.node("Transpose", [k], "attn.Transpose_k", perm=[0, 2, 3, 1])
    v = b.node("Transpose", [v], "attn.Transpose_v", perm=[0, 2, 1, 3])
    scores = b.node("MatMul", [q, k], "attn.MatMul")
    scores = b.node("Div", [scores, b.constant("attn.scale", np.array(math.sqrt(head_dim), np.float32))], "attn.Div")
    ctx = b.node("MatMul", [b.node("Softmax", [scores], "attn.Softmax", axis=-1), v], "attn.MatMul_1")
    ctx = b.node("Reshape", [b.node("Transpose", [ctx], "attn.Transpose", perm=[0, 2, 1, 3]), merged_shape],
                 "attn.Reshape")
    x = b.node("Add", ["input", b.linear(ctx, hidden, hidden, "attn.out_proj")], "Add")
    h = _gelu(b, b.linear(layer_norm(x, "ln2"), hidden, ffn, "mlp.fc1", gain=2.0), "mlp.gelu")
    b.node("Add", [x, b.linear(h, ffn, hidden, "mlp.fc2")], "Add_1")
    b.nodes[-1].output[0] = "output"
    return b.model([("input", (1, seq, hidden))], [("output", (1, seq, hidden))])


BUILDERS = {"unet": unet, "shape_if": shape_if, "crnn": crnn, "vad": vad, "transformer_block": transformer_block}


def inputs_of(model: onnx.ModelProto, seed: int = 0) -> dict[str, np.ndarray]:
    """Seeded standard-normal float32 inputs of the model's (static) input shapes."""
    rng = np.random.default_rng(seed)
    return {i.name: rng.standard_normal([d.dim_value for d in i.type.tensor_type.shape.dim]).astype(np.float32)
            for i in model.graph.input}


def build(name: str) -> onnx.ModelProto:
    """One model by name (see NAMES), checked with onnx.checker and run once in ONNX Runtime."""
    if name not in BUILDERS:
        raise ValueError(f"unknown model {name!r}; known: {', '.join(NAMES)}")
    import onnxruntime
    model = BUILDERS[name]()
    onnx.checker.check_model(model, full_check=True)
    sess = onnxruntime.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    sess.run(None, inputs_of(model))
    return model


def build_all(out_dir: str | Path, names: tuple[str, ...] = NAMES) -> dict[str, Path]:
    """Write `<name>.onnx` for each model into `out_dir`; returns {name: path}."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name in names:
        paths[name] = out / f"{name}.onnx"
        paths[name].write_bytes(build(name).SerializeToString())
    return paths


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="models", help="output directory (default: models/)")
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"models to build: {', '.join(NAMES)} (default: all)")
    args = parser.parse_args(argv)
    unknown = [n for n in args.names if n not in NAMES]
    if unknown:
        parser.error(f"unknown model {', '.join(unknown)}; choose from {', '.join(NAMES)}")
    for name, path in build_all(args.out, tuple(args.names) or NAMES).items():
        print(f"{name}: {path} ({path.stat().st_size / 1e6:.2f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
