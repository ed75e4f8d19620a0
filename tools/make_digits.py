"""Train a small CNN on real handwritten digits with plain numpy, and write it as ONNX.

    python tools/make_digits.py --out DIR        # DIR/digits.onnx, DIR/digits.npz

The data is scikit-learn's bundled digits set (`sklearn.datasets.load_digits`: 1797 8x8 grayscale
images, pixels 0..16, no download). It gives the int8 quantization tests a model whose accuracy
means something: random weights say nothing about how much quantization costs.

Split: one shuffle with a fixed seed (numpy's PCG64), the first 500 images for test, the other 1297
for training. Pixels are scaled by 1/16 to [0, 1] in the data, not in the model: the model's input
is the scaled image.

Model (ONNX opset 17, float32, batch 1): input "input" f32[1,1,8,8] ->
conv1 (3x3, 1->16, pad 1) + relu1 -> conv2 (3x3, 16->32, stride 2, pad 1) + relu2 (-> 4x4) ->
conv3 (3x3, 32->32, pad 1) + relu3 -> flatten (512) -> fc (Gemm 512->10, transB=1) -> "logits"
f32[1,10]. Every Conv and the Gemm has a bias.

Training: forward and backward written out with im2col, in float32; cross-entropy loss, Adam
(lr 2e-3, cosine decay to 0), 20 epochs of shuffled mini-batches of 32, each image shifted by up to
one pixel per epoch (without it the net overfits: 100% train, 97% test), He-initialised weights;
all from fixed seeds and on one BLAS thread, so the same machine writes the same model bytes every
time. 5 to 8 s on one core; 98.4% test accuracy (train 98.8%).

digits.npz holds float32 `calib` [200,1,1,8,8] (the first 200 training images), `test_x`
[500,1,1,8,8] and int64 `test_y` [500]: each `calib[i]` and `test_x[i]` is one model input.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import onnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from make_models import ModelBuilder  # noqa: E402

SEED = 0
N_TEST = 500
N_CALIB = 200
EPOCHS = 20
BATCH = 32
LR = 2e-3
# (name, input channels, output channels, stride); every conv is 3x3 with pad 1.
CONVS = (("conv1", 1, 16, 1), ("conv2", 16, 32, 2), ("conv3", 32, 32, 1))
FC_IN, CLASSES = 32 * 4 * 4, 10


def load_data() -> dict[str, np.ndarray]:
    """The fixed split, pixels scaled to [0, 1]: train_x/test_x float32 [N,1,8,8], train_y/test_y int64."""
    from sklearn.datasets import load_digits
    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None]
    y = digits.target.astype(np.int64)
    order = np.random.default_rng(SEED).permutation(len(y))
    test, train = order[:N_TEST], order[N_TEST:]
    return {"train_x": x[train], "train_y": y[train], "test_x": x[test], "test_y": y[test]}


# ---- the network in numpy ----------------------------------------------------------------------
def im2col(x: np.ndarray, stride: int) -> np.ndarray:
    """[N,C,H,W] -> [N,OH,OW,C*9]: the 3x3 windows (pad 1) under each output position."""
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (3, 3), axis=(2, 3))[:, :, ::stride, ::stride]
    n, c, oh, ow = windows.shape[:4]
    return windows.transpose(0, 2, 3, 1, 4, 5).reshape(n, oh, ow, c * 9)


def col2im(dcols: np.ndarray, shape: tuple[int, ...], stride: int) -> np.ndarray:
    """The adjoint of im2col: [N,OH,OW,C*9] gradients summed back into [N,C,H,W]."""
    n, c, h, w = shape
    oh, ow = dcols.shape[1:3]
    d = dcols.reshape(n, oh, ow, c, 3, 3).transpose(0, 3, 1, 2, 4, 5)
    dxp = np.zeros((n, c, h + 2, w + 2), dcols.dtype)
    for i in range(3):
        for j in range(3):
            dxp[:, :, i:i + stride * oh:stride, j:j + stride * ow:stride] += d[..., i, j]
    return dxp[:, :, 1:-1, 1:-1]


def init_params(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """He-initialised weights (std sqrt(2 / fan-in)), zero biases; the fc layer std sqrt(1 / fan-in)."""
    params = {}
    for name, c_in, c_out, _ in CONVS:
        params[f"{name}.weight"] = rng.standard_normal((c_out, c_in, 3, 3)) * np.sqrt(2.0 / (c_in * 9))
        params[f"{name}.bias"] = np.zeros(c_out)
    params["fc.weight"] = rng.standard_normal((CLASSES, FC_IN)) * np.sqrt(1.0 / FC_IN)
    params["fc.bias"] = np.zeros(CLASSES)
    return params


def forward(params: dict[str, np.ndarray], x: np.ndarray) -> tuple[np.ndarray, list]:
    """Logits [N,10] and what backward needs: per conv its input shape, im2col and ReLU output."""
    saved = []
    for name, _, c_out, stride in CONVS:
        cols = im2col(x, stride)
        y = cols @ params[f"{name}.weight"].reshape(c_out, -1).T + params[f"{name}.bias"]
        y = np.maximum(y, 0.0)  # [N,OH,OW,C_out]
        saved.append((x.shape, cols, y))
        x = y.transpose(0, 3, 1, 2)
    flat = x.reshape(len(x), -1)
    saved.append(flat)
    return flat @ params["fc.weight"].T + params["fc.bias"], saved


def backward(params: dict[str, np.ndarray], saved: list, dlogits: np.ndarray) -> dict[str, np.ndarray]:
    grads = {"fc.weight": dlogits.T @ saved[-1], "fc.bias": dlogits.sum(0)}
    dx = (dlogits @ params["fc.weight"]).reshape(len(dlogits), 32, 4, 4)
    for (name, _, c_out, stride), (shape, cols, y) in zip(reversed(CONVS), reversed(saved[:-1])):
        dy = dx.transpose(0, 2, 3, 1) * (y > 0)  # [N,OH,OW,C_out], through the ReLU
        dy2 = dy.reshape(-1, c_out)
        grads[f"{name}.weight"] = (dy2.T @ cols.reshape(len(dy2), -1)).reshape(params[f"{name}.weight"].shape)
        grads[f"{name}.bias"] = dy2.sum(0)
        if name != CONVS[0][0]:
            dx = col2im(dy @ params[f"{name}.weight"].reshape(c_out, -1), shape, stride)
    return grads


def loss_and_grad(params: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray):
    """Mean cross-entropy of the batch and its gradient with respect to every parameter."""
    logits, saved = forward(params, x)
    z = logits - logits.max(1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(1, keepdims=True)
    loss = -np.log(p[np.arange(len(y)), y]).mean()
    p[np.arange(len(y)), y] -= 1.0
    return loss, backward(params, saved, p / len(y))


def shifted(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Each image moved by -1, 0 or 1 pixel along each axis, zeros coming in (augmentation)."""
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(xp, (8, 8), axis=(2, 3))  # [N,1,3,3,8,8]
    dy, dx = rng.integers(0, 3, (2, len(x)))
    return windows[np.arange(len(x)), :, dy, dx]


def train(train_x: np.ndarray, train_y: np.ndarray) -> dict[str, np.ndarray]:
    """Adam with a cosine-decayed rate on shuffled, shifted mini-batches, in float32, from fixed
    seeds: the same data gives the same weights on the same machine."""
    rng = np.random.default_rng(SEED + 1)
    params = {k: p.astype(np.float32) for k, p in init_params(rng).items()}
    m = {k: np.zeros_like(p) for k, p in params.items()}
    v = {k: np.zeros_like(p) for k, p in params.items()}
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    steps, step = EPOCHS * -(-len(train_x) // BATCH), 0
    for _ in range(EPOCHS):
        order = rng.permutation(len(train_x))
        x = shifted(train_x, rng)
        for start in range(0, len(x), BATCH):
            batch = order[start:start + BATCH]
            _, grads = loss_and_grad(params, x[batch], train_y[batch])
            step += 1
            rate = LR * 0.5 * (1 + np.cos(np.pi * step / steps))
            for k, g in grads.items():
                m[k] = beta1 * m[k] + (1 - beta1) * g
                v[k] = beta2 * v[k] + (1 - beta2) * g * g
                m_hat, v_hat = m[k] / (1 - beta1 ** step), v[k] / (1 - beta2 ** step)
                params[k] -= (rate * m_hat / (np.sqrt(v_hat) + eps)).astype(np.float32)
    return params


def predict(params: dict[str, np.ndarray], x: np.ndarray) -> np.ndarray:
    """The class of each image of [N,1,8,8]."""
    return forward(params, x)[0].argmax(1)


# ---- ONNX --------------------------------------------------------------------------------------
def to_onnx(params: dict[str, np.ndarray]) -> onnx.ModelProto:
    """The trained network as an ONNX model, batch 1, float32 weights; checked with onnx.checker."""
    b = ModelBuilder("digits_cnn", seed=SEED)
    x = "input"
    for i, (name, _, _, stride) in enumerate(CONVS, start=1):
        w = b.constant(f"{name}.weight", params[f"{name}.weight"].astype(np.float32))
        bias = b.constant(f"{name}.bias", params[f"{name}.bias"].astype(np.float32))
        x = b.node("Conv", [x, w, bias], name, kernel_shape=[3, 3], strides=[stride, stride],
                   pads=[1, 1, 1, 1], group=1, dilations=[1, 1])
        x = b.node("Relu", [x], f"relu{i}")
    x = b.node("Flatten", [x], "flatten", axis=1)
    w = b.constant("fc.weight", params["fc.weight"].astype(np.float32))
    bias = b.constant("fc.bias", params["fc.bias"].astype(np.float32))
    b.node("Gemm", [x, w, bias], "fc", alpha=1.0, beta=1.0, transB=1)
    b.nodes[-1].output[0] = "logits"
    model = b.model([("input", (1, 1, 8, 8))], [("logits", (1, CLASSES))])
    model.producer_name = "edgec-make-digits"
    onnx.checker.check_model(model, full_check=True)
    return model


def make_digits(out_dir: str | Path, verbose: bool = False) -> tuple[Path, Path]:
    """Train, then write `out_dir`/digits.onnx and `out_dir`/digits.npz; returns both paths."""
    from threadpoolctl import threadpool_limits
    data = load_data()
    start = time.perf_counter()
    with threadpool_limits(limits=1):  # BLAS splits sums differently on more threads: other bits
        params = train(data["train_x"], data["train_y"])
    seconds = time.perf_counter() - start
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    model_path, data_path = out / "digits.onnx", out / "digits.npz"
    model_path.write_bytes(to_onnx(params).SerializeToString())
    np.savez(data_path, calib=data["train_x"][:N_CALIB, None], test_x=data["test_x"][:, None],
             test_y=data["test_y"])
    if verbose:
        train_acc = (predict(params, data["train_x"]) == data["train_y"]).mean()
        test_acc = (predict(params, data["test_x"]) == data["test_y"]).mean()
        print(f"trained in {seconds:.1f} s: train accuracy {100 * train_acc:.2f}%, "
              f"test accuracy {100 * test_acc:.2f}% ({len(data['train_y'])} train / {N_TEST} test images)")
        print(f"{model_path} ({model_path.stat().st_size / 1e3:.0f} KB), {data_path}")
    return model_path, data_path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="models", help="output directory (default: models/)")
    args = parser.parse_args(argv)
    make_digits(args.out, verbose=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
