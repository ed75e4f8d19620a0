"""Recurrent layers: ONNX LSTM, GRU and RNN (see base.py for what a definition holds).

An ONNX recurrent node imports as
- one `dense` for the input projection of every time step and direction at once:
  X[T, B, I] @ W[D * G * H, I]^T + (Wb + Rb) -> [T, B, D * G * H], reshaped (a view) to
  xp[T, B, D, G * H] (G gates: 4 for LSTM in ONNX's order i, o, f, c; 3 for GRU: z, r, h; 1 for
  RNN). GRU's Rb of the h gate stays out of it: it is the `recurrence`'s `rbh`;
- one `recurrence` node, the time loop: one kernel (a TIR function with a serial loop over the
  directions and the time steps; per step h @ R^T with a register-tiled, vectorized loop, then the
  gates);
- transposes for `layout=1` (batch first), before the projection and after the recurrence.

| op | inputs | outputs |
|---|---|---|
| `recurrence` {cell=lstm} | xp[T, B, D, 4H], rt[D, H, 4H], h0[D, B, H], c0[D, B, H], p[D, 3H], seq_lens[B] (i32) | y[T, D, B, H], y_h[D, B, H], y_c[D, B, H] |
| `recurrence` {cell=gru} | xp[T, B, D, 3H], rt[D, H, 3H], h0[D, B, H], seq_lens[B], rbh[D, H] | y, y_h |
| `recurrence` {cell=rnn} | xp[T, B, D, H], rt[D, H, H], h0[D, B, H], seq_lens[B] | y, y_h |

`rt` is R transposed ([D, H, G * H]: the gates of one hidden unit k are contiguous). Attributes:
`cell`; `direction` (forward, reverse, bidirectional: D = 2, the second direction reversed);
`activations` (comma-separated, G' per direction where G' is 3 for LSTM (f, g, h), 2 for GRU, 1 for
RNN; each of sigmoid, tanh, relu, affine, leakyrelu, thresholdedrelu, scaledtanh, hardsigmoid,
elu, softsign, softplus), `activation_alpha`, `activation_beta` (one value per activation, the
ONNX defaults filled in at import); `clip` (0: none; else pre-activations are clipped to
[-clip, clip]); `input_forget` (LSTM: f = 1 - i, as ONNX Runtime couples them);
`linear_before_reset` (GRU).

Sequence lengths: batch entry b runs steps 0 .. seq_lens[b] - 1 (the reverse direction from
seq_lens[b] - 1 down to 0); y is 0 past its length, y_h and y_c hold the last valid step (0 for
a length of 0), as ONNX Runtime computes them; a length over T counts as T
(ONNX Runtime refuses it). Without ONNX's optional
inputs the importer passes zeros (B, initial_h, initial_c, P) and T (sequence_lens).

On CPU targets sigmoid and tanh are computed with a clamped rational polynomial (Eigen's and
TVM's `fast_tanh`, float32-accurate; sigmoid(x) = 0.5 + 0.5 tanh(x / 2)): it vectorizes, libm
calls do not.
"""

from __future__ import annotations

import numpy as np

from ..errors import VerifyError
from ..ir import TensorType
from ..lazy import LazyModule
from .base import Attr, OpDef, get_op, onnx_op, register_op

tvm = LazyModule("tvm")
relax = LazyModule("tvm.relax")
tirx = LazyModule("tvm.tirx")

TILE_VECTORS = 4  # accumulator registers of the recurrent product
CELLS = {"lstm": (4, 3), "gru": (3, 2), "rnn": (1, 1)}  # cell: (gates, activations per direction)
CELL_INPUTS = {"lstm": 6, "gru": 5, "rnn": 4}
DIRECTIONS = ("forward", "reverse", "bidirectional")
DEFAULT_ACTIVATIONS = {"lstm": ["sigmoid", "tanh", "tanh"], "gru": ["sigmoid", "tanh"], "rnn": ["tanh"]}
# activation: (default alpha, default beta); None: the activation takes no such parameter
ACTIVATION_PARAMS = {
    "sigmoid": (None, None), "tanh": (None, None), "relu": (None, None), "softsign": (None, None),
    "softplus": (None, None), "affine": (0.0, 0.0), "leakyrelu": (0.01, None), "thresholdedrelu": (0.0, None),
    "scaledtanh": (0.0, 0.0), "hardsigmoid": (0.2, 0.5), "elu": (1.0, None),
}  # ONNX Runtime's defaults: ONNX's ops' for LeakyRelu, HardSigmoid and Elu, 0 for the others

RECURRENCE_ATTRS = {
    "cell": Attr("str"), "direction": Attr("str", "forward"), "activations": Attr("str"),
    "activation_alpha": Attr("floats"), "activation_beta": Attr("floats"), "clip": Attr("float", 0.0),
    "input_forget": Attr("int", 0), "linear_before_reset": Attr("int", 0),
}


def _activations(attrs: dict) -> list[tuple[str, float, float]]:
    names = attrs["activations"].split(",")
    return list(zip(names, attrs["activation_alpha"], attrs["activation_beta"]))


def _recurrence_infer(types, attrs):
    cell = attrs["cell"]
    if cell not in CELLS:
        raise VerifyError(f"recurrence cell must be one of {', '.join(CELLS)}, got {cell!r}")
    if attrs["direction"] not in DIRECTIONS:
        raise VerifyError(f"direction must be one of {', '.join(DIRECTIONS)}, got {attrs['direction']!r}")
    if len(types) != CELL_INPUTS[cell]:
        raise VerifyError(f"a {cell} recurrence takes {CELL_INPUTS[cell]} inputs, got {len(types)}")
    gates, per_direction = CELLS[cell]
    xp, rt, h0 = types[:3]
    d = 2 if attrs["direction"] == "bidirectional" else 1
    if xp.dtype != "f32" or xp.rank != 4 or xp.shape[2] != d or xp.shape[3] % gates:
        raise VerifyError(f"recurrence input must be f32[T, B, {d}, {gates} * H], got {xp}")
    steps, batch, _, gh = xp.shape
    h = gh // gates
    expected = [("rt", TensorType("f32", (d, h, gh))), ("h0", TensorType("f32", (d, batch, h)))]
    expected += {"lstm": [("c0", TensorType("f32", (d, batch, h))), ("p", TensorType("f32", (d, 3 * h))),
                          ("seq_lens", TensorType("i32", (batch,)))],
                 "gru": [("seq_lens", TensorType("i32", (batch,))), ("rbh", TensorType("f32", (d, h)))],
                 "rnn": [("seq_lens", TensorType("i32", (batch,)))]}[cell]
    for (name, want), got in zip(expected, types[1:]):
        if got != want:
            raise VerifyError(f"recurrence {name} must be {want}, got {got}")
    acts = _activations(attrs)
    names = attrs["activations"].split(",")
    if len(names) != per_direction * d or len(acts) != len(names) or len(attrs["activation_beta"]) != len(names):
        raise VerifyError(f"a {attrs['direction']} {cell} needs {per_direction * d} activations, each with an "
                          f"alpha and a beta; got {attrs['activations']!r}, {attrs['activation_alpha']}, "
                          f"{attrs['activation_beta']}")
    unknown = [n for n in names if n not in ACTIVATION_PARAMS]
    if unknown:
        raise VerifyError(f"unknown activation {unknown[0]!r} (known: {', '.join(ACTIVATION_PARAMS)})")
    if attrs["clip"] < 0:
        raise VerifyError(f"clip must be positive (0 for none), got {attrs['clip']}")
    state = TensorType("f32", (d, batch, h))
    return [TensorType("f32", (steps, d, batch, h)), state] + ([state] if cell == "lstm" else [])


# ---- numpy reference ------------------------------------------------------------------------

def _act_np(name: str, alpha: float, beta: float):
    return {
        "sigmoid": lambda x: 1 / (1 + np.exp(-x)),
        "tanh": np.tanh,
        "relu": lambda x: np.maximum(x, 0),
        "affine": lambda x: alpha * x + beta,
        "leakyrelu": lambda x: np.where(x >= 0, x, alpha * x),
        "thresholdedrelu": lambda x: np.where(x > alpha, x, 0),
        "scaledtanh": lambda x: alpha * np.tanh(beta * x),
        "hardsigmoid": lambda x: np.clip(alpha * x + beta, 0, 1),
        "elu": lambda x: np.where(x >= 0, x, alpha * (np.exp(np.minimum(x, 0)) - 1)),
        "softsign": lambda x: x / (1 + np.abs(x)),
        "softplus": lambda x: np.logaddexp(0, x),
    }[name]


def _recurrence_ref(xs, attrs):
    """The ONNX equations in float64, one direction and step at a time, all batch entries at once."""
    cell = attrs["cell"]
    xp, rt, h0 = (a.astype(np.float64) for a in xs[:3])
    steps, batch, d_count, gh = xp.shape
    h_size = rt.shape[1]
    c0 = xs[3].astype(np.float64) if cell == "lstm" else None
    p = xs[4].astype(np.float64) if cell == "lstm" else None
    lens = np.minimum(np.asarray(xs[{"lstm": 5, "gru": 3, "rnn": 3}[cell]]).astype(np.int64), steps)
    rbh = xs[4].astype(np.float64) if cell == "gru" else None
    per_direction = CELLS[cell][1]
    acts = [_act_np(*a) for a in _activations(attrs)]
    clip = attrs["clip"]
    clipped = (lambda v: np.clip(v, -clip, clip)) if clip > 0 else (lambda v: v)
    y = np.zeros((steps, d_count, batch, h_size))
    y_h = h0.copy()
    y_c = c0.copy() if cell == "lstm" else None
    rows = np.arange(batch)
    for d in range(d_count):
        f, g, hh = (acts[d * per_direction:(d + 1) * per_direction] + [None, None])[:3]
        reverse = attrs["direction"] == "reverse" or d == 1
        h = h0[d].copy()
        c = c0[d].copy() if cell == "lstm" else None
        for s in range(steps):
            valid = s < lens
            t = np.clip(lens - 1 - s if reverse else np.full(batch, s), 0, steps - 1)
            x = xp[t, rows, d]  # [B, G * H]
            r = rt[d]  # [H, G * H]
            if cell == "lstm":
                a = x + h @ r
                ai, ao, af, ac = (a[:, k * h_size:(k + 1) * h_size] for k in range(4))
                pi, po, pf = (p[d, k * h_size:(k + 1) * h_size] for k in range(3))
                ig = f(clipped(ai + pi * c))
                fg = 1 - ig if attrs["input_forget"] else f(clipped(af + pf * c))
                c_new = fg * c + ig * g(clipped(ac))
                og = f(clipped(ao + po * c_new))
                h_new = og * hh(c_new)
                c = np.where(valid[:, None], c_new, c)
            elif cell == "gru":
                zr = x[:, :2 * h_size] + h @ r[:, :2 * h_size]
                z, rg = f(clipped(zr[:, :h_size])), f(clipped(zr[:, h_size:]))
                if attrs["linear_before_reset"]:
                    pre = x[:, 2 * h_size:] + rg * (h @ r[:, 2 * h_size:] + rbh[d])
                else:
                    pre = x[:, 2 * h_size:] + (rg * h) @ r[:, 2 * h_size:] + rbh[d]
                h_new = (1 - z) * g(clipped(pre)) + z * h
            else:
                h_new = f(clipped(x + h @ r))
            h = np.where(valid[:, None], h_new, h)
            y[t[valid], d, rows[valid]] = h_new[valid]
        started = (lens > 0)[:, None]  # a sequence of length 0 ends in zeros (ONNX Runtime)
        y_h[d] = np.where(started, h, 0)
        if cell == "lstm":
            y_c[d] = np.where(started, c, 0)
    out = [y, y_h] + ([y_c] if cell == "lstm" else [])
    return [o.astype(np.float32) for o in out]


# ---- the kernel -----------------------------------------------------------------------------

# Eigen's rational approximation of tanh for float32 (TVM's fast_tanh): odd numerator, even
# denominator, input clamped to [-9, 9] (beyond which tanh is +-1 in float32).
TANH_NUM = (4.89352455891786e-03, 6.37261928875436e-04, 1.48572235717979e-05, 5.12229709037114e-08,
            -8.60467152213735e-11, 2.00018790482477e-13, -2.76076847742355e-16)
TANH_DEN = (4.89352518554385e-03, 2.26843463243900e-03, 1.18534705686654e-04, 1.19825839466702e-06)


def _f32(v: float):
    return tirx.const(v, "float32")


def _fast_tanh(value):
    """tanh(value) as one expression, the clamped input and its square bound once (Let)."""
    x, x2 = tirx.Var("x", "float32"), tirx.Var("x2", "float32")
    num = _f32(TANH_NUM[-1])
    for c in reversed(TANH_NUM[:-1]):
        num = num * x2 + _f32(c)
    den = _f32(TANH_DEN[-1])
    for c in reversed(TANH_DEN[:-1]):
        den = den * x2 + _f32(c)
    return tirx.Let(x, tirx.max(_f32(-9.0), tirx.min(_f32(9.0), value)), tirx.Let(x2, x * x, x * num / den))


def _act_tir(name: str, alpha: float, beta: float):
    zero, one = _f32(0.0), _f32(1.0)
    return {
        "sigmoid": lambda x: _f32(0.5) + _f32(0.5) * _fast_tanh(x * _f32(0.5)),
        "tanh": _fast_tanh,
        "relu": lambda x: tirx.max(x, zero),
        "affine": lambda x: _f32(alpha) * x + _f32(beta),
        "leakyrelu": lambda x: tirx.Select(x >= zero, x, _f32(alpha) * x),
        "thresholdedrelu": lambda x: tirx.Select(x > _f32(alpha), x, zero),
        "scaledtanh": lambda x: _f32(alpha) * _fast_tanh(_f32(beta) * x),
        "hardsigmoid": lambda x: tirx.max(zero, tirx.min(one, _f32(alpha) * x + _f32(beta))),
        "elu": lambda x: tirx.Select(x >= zero, x, _f32(alpha) * (tirx.exp(tirx.min(x, zero)) - one)),
        "softsign": lambda x: x / (one + tirx.abs(x)),
        "softplus": lambda x: tirx.max(x, zero) + tirx.log(one + tirx.exp(-tirx.abs(x))),
    }[name]


def _largest_divisor(n: int, limit: int, multiple_of: int = 1) -> int:
    for d in range(min(n, limit), 0, -1):
        if n % d == 0 and d % multiple_of == 0:
            return d
    return 1


def product_tile(width: int, lanes: int) -> int:
    """The columns of the recurrent product computed together (in registers): up to
    TILE_VECTORS vectors of `lanes` floats, a divisor of `width`."""
    tile = _largest_divisor(width, TILE_VECTORS * lanes, lanes)
    return tile if tile > 1 else _largest_divisor(width, TILE_VECTORS * lanes)


def recurrence_primfunc(attrs: dict, steps: int, batch: int, h_size: int, lanes: int, packed: bool = False):
    """The TIR function of a `recurrence` node: loops over the directions and the time steps
    (serial), the batch entries still running at that step, then per step
    - the recurrent product acc[j] = xp[t, b, d, j] + sum_k h[k] * rt[d, k, j] in tiles of up to
      4 vectors of `lanes` floats, each tile accumulated in a local buffer (registers) over k;
    - the gates, vectorized over the hidden units, written to y[t, d, b] and to the state
      (y_h and y_c are the state: they start as h0 and c0).
    Arguments: the node's inputs, then y, y_h[, y_c]. `packed` (LSTM and RNN): rt comes as
    [D, G * H / tile, H, tile] (`pack_recurrent_weight`), so that each tile reads its weights
    contiguously."""
    from tvm.script import tirx as T
    cell = attrs["cell"]
    gates, per_direction = CELLS[cell]
    d_count = 2 if attrs["direction"] == "bidirectional" else 1
    reverse_all = attrs["direction"] == "reverse"
    gh, h = gates * h_size, h_size
    acts = [_act_tir(*a) for a in _activations(attrs)]
    clip = attrs["clip"]

    def clipped(v):
        return tirx.max(_f32(-clip), tirx.min(_f32(clip), v)) if clip > 0 else v

    same = _activations(attrs)[:per_direction] == _activations(attrs)[per_direction:]

    def act(d, k, v, clip_input=True):
        """Activation k (f, g, h) of direction d applied to v, clipped first (but for LSTM's
        h(c), as ONNX Runtime does); d is a loop variable: a Select of both directions'
        activations when they differ."""
        v = clipped(v) if clip_input else v
        if d_count == 1 or same:
            return acts[k](v)
        return tirx.Select(d == 0, acts[k](v), acts[per_direction + k](v))

    def time_of(d, s, n):
        """The time index of step s of direction d for a sequence of length n (at most steps:
        a longer one reads and writes nothing out of bounds)."""
        n = tirx.min(n, steps)
        if reverse_all:
            return n - 1 - s
        return s if d_count == 1 else tirx.Select(d == 0, s, n - 1 - s)

    def tiles(width):
        tile = product_tile(width, lanes)
        return tile, width // tile

    vec = _largest_divisor(h, 2 * lanes, lanes)
    if vec == 1:
        vec = _largest_divisor(h, 2 * lanes)
    hv = h // vec
    f32 = "float32"

    if cell == "lstm":
        tile, nt = tiles(gh)
        rt_shape = (d_count, nt, h, tile) if packed else (d_count, h, gh)

        def r_at(rt, d, k, jo, ji):
            return rt[d, jo, k, ji] if packed else rt[d, k, jo * tile + ji]

        def cell_state(d, acc, p, c, j):
            """c' = f * c + i * g(c~), from the old state c (f = 1 - i with input_forget)."""
            ig = act(d, 0, acc[j] + p[d, j] * c)
            if attrs["input_forget"]:
                iv = tirx.Var("i", "float32")  # i is used twice: bound once
                return tirx.Let(iv, ig, (_f32(1.0) - iv) * c + iv * act(d, 1, acc[3 * h + j]))
            return act(d, 0, acc[2 * h + j] + p[d, 2 * h + j] * c) * c + ig * act(d, 1, acc[3 * h + j])

        def hidden(d, acc, p, c_new, j):
            """h' = o * h(c'), the output gate peeping at the new state c'."""
            return act(d, 0, acc[h + j] + p[d, h + j] * c_new) * act(d, 2, c_new, clip_input=False)

        @T.prim_func(s_tir=True)
        def kernel(xp: T.Buffer((steps, batch, d_count, gh), f32), rt: T.Buffer(rt_shape, f32),
                   h0: T.Buffer((d_count, batch, h), f32), c0: T.Buffer((d_count, batch, h), f32),
                   p: T.Buffer((d_count, 3 * h), f32), lens: T.Buffer((batch,), "int32"),
                   y: T.Buffer((steps, d_count, batch, h), f32), yh: T.Buffer((d_count, batch, h), f32),
                   yc: T.Buffer((d_count, batch, h), f32)):
            T.func_attr({"tirx.noalias": True})
            with T.sblock("root"):
                acc = T.alloc_buffer((gh,), f32)
                part = T.alloc_buffer((tile,), f32, scope="local")
                for d, b, j in T.grid(d_count, batch, h):
                    yh[d, b, j] = T.if_then_else(lens[b] > 0, h0[d, b, j], T.float32(0))
                    yc[d, b, j] = T.if_then_else(lens[b] > 0, c0[d, b, j], T.float32(0))
                for t, d, b, j in T.grid(steps, d_count, batch, h):
                    y[t, d, b, j] = T.float32(0)
                for d, s, b in T.grid(d_count, steps, batch):
                    if s < lens[b]:
                        for jo in T.serial(nt):
                            for ji in T.vectorized(tile):
                                part[ji] = xp[time_of(d, s, lens[b]), b, d, jo * tile + ji]
                            for k in T.serial(h):
                                for ji in T.vectorized(tile):
                                    part[ji] = part[ji] + yh[d, b, k] * r_at(rt, d, k, jo, ji)
                            for ji in T.vectorized(tile):
                                acc[jo * tile + ji] = part[ji]
                        for jo in T.serial(hv):
                            for ji in T.vectorized(vec):
                                yc[d, b, jo * vec + ji] = cell_state(d, acc, p, yc[d, b, jo * vec + ji], jo * vec + ji)
                                yh[d, b, jo * vec + ji] = hidden(d, acc, p, yc[d, b, jo * vec + ji], jo * vec + ji)
                                y[time_of(d, s, lens[b]), d, b, jo * vec + ji] = yh[d, b, jo * vec + ji]
        return kernel

    if cell == "gru":
        lbr = bool(attrs["linear_before_reset"])
        tile, nt = tiles(gh if lbr else 2 * h)
        tile_h, nt_h = tiles(h)

        def hidden(d, xp, acc, rbh, h_old, t, b, j):
            """h' = (1 - z) * g(xh + r * (h @ Rh + Rbh)) + z * h with linear_before_reset, else
            (1 - z) * g(xh + (r * h) @ Rh + Rbh) + z * h (acc then holds (r * h) @ Rh)."""
            z = act(d, 0, xp[t, b, d, j] + acc[j])
            hr = acc[2 * h + j] + rbh[d, j]
            if lbr:
                hr = act(d, 0, xp[t, b, d, h + j] + acc[h + j]) * hr
            zv = tirx.Var("z", "float32")  # z is used twice: bound once
            return tirx.Let(zv, z, (_f32(1.0) - zv) * act(d, 1, xp[t, b, d, 2 * h + j] + hr) + zv * h_old)

        @T.prim_func(s_tir=True)
        def kernel(xp: T.Buffer((steps, batch, d_count, gh), f32), rt: T.Buffer((d_count, h, gh), f32),
                   h0: T.Buffer((d_count, batch, h), f32), lens: T.Buffer((batch,), "int32"),
                   rbh: T.Buffer((d_count, h), f32), y: T.Buffer((steps, d_count, batch, h), f32),
                   yh: T.Buffer((d_count, batch, h), f32)):
            T.func_attr({"tirx.noalias": True})
            with T.sblock("root"):
                acc = T.alloc_buffer((gh,), f32)
                rh = T.alloc_buffer((h,), f32)
                part = T.alloc_buffer((tile,), f32, scope="local")
                part_h = T.alloc_buffer((tile_h,), f32, scope="local")
                for d, b, j in T.grid(d_count, batch, h):
                    yh[d, b, j] = T.if_then_else(lens[b] > 0, h0[d, b, j], T.float32(0))
                for t, d, b, j in T.grid(steps, d_count, batch, h):
                    y[t, d, b, j] = T.float32(0)
                for d, s, b in T.grid(d_count, steps, batch):
                    if s < lens[b]:
                        # z and r (and h's h @ Rh with linear_before_reset)
                        for jo in T.serial(nt):
                            for ji in T.vectorized(tile):
                                part[ji] = T.float32(0)
                            for k in T.serial(h):
                                for ji in T.vectorized(tile):
                                    part[ji] = part[ji] + yh[d, b, k] * rt[d, k, jo * tile + ji]
                            for ji in T.vectorized(tile):
                                acc[jo * tile + ji] = part[ji]
                        if not lbr:
                            for j in T.vectorized(h):
                                rh[j] = act(d, 0, xp[time_of(d, s, lens[b]), b, d, h + j] + acc[h + j]) * yh[d, b, j]
                            for jo in T.serial(nt_h):
                                for ji in T.vectorized(tile_h):
                                    part_h[ji] = T.float32(0)
                                for k in T.serial(h):
                                    for ji in T.vectorized(tile_h):
                                        part_h[ji] = part_h[ji] + rh[k] * rt[d, k, 2 * h + jo * tile_h + ji]
                                for ji in T.vectorized(tile_h):
                                    acc[2 * h + jo * tile_h + ji] = part_h[ji]
                        for jo in T.serial(hv):
                            for ji in T.vectorized(vec):
                                yh[d, b, jo * vec + ji] = hidden(d, xp, acc, rbh, yh[d, b, jo * vec + ji],
                                                                 time_of(d, s, lens[b]), b, jo * vec + ji)
                                y[time_of(d, s, lens[b]), d, b, jo * vec + ji] = yh[d, b, jo * vec + ji]
        return kernel

    tile, nt = tiles(h)
    rt_shape = (d_count, nt, h, tile) if packed else (d_count, h, h)

    def r_at(rt, d, k, jo, ji):
        return rt[d, jo, k, ji] if packed else rt[d, k, jo * tile + ji]

    @T.prim_func(s_tir=True)
    def kernel(xp: T.Buffer((steps, batch, d_count, h), f32), rt: T.Buffer(rt_shape, f32),
               h0: T.Buffer((d_count, batch, h), f32), lens: T.Buffer((batch,), "int32"),
               y: T.Buffer((steps, d_count, batch, h), f32), yh: T.Buffer((d_count, batch, h), f32)):
        T.func_attr({"tirx.noalias": True})
        with T.sblock("root"):
            acc = T.alloc_buffer((h,), f32)
            part = T.alloc_buffer((tile,), f32, scope="local")
            for d, b, j in T.grid(d_count, batch, h):
                yh[d, b, j] = T.if_then_else(lens[b] > 0, h0[d, b, j], T.float32(0))
            for t, d, b, j in T.grid(steps, d_count, batch, h):
                y[t, d, b, j] = T.float32(0)
            for d, s, b in T.grid(d_count, steps, batch):
                if s < lens[b]:
                    for jo in T.serial(nt):
                        for ji in T.vectorized(tile):
                            part[ji] = xp[time_of(d, s, lens[b]), b, d, jo * tile + ji]
                        for k in T.serial(h):
                            for ji in T.vectorized(tile):
                                part[ji] = part[ji] + yh[d, b, k] * r_at(rt, d, k, jo, ji)
                        for ji in T.vectorized(tile):
                            acc[jo * tile + ji] = part[ji]
                    for jo in T.serial(hv):
                        for ji in T.vectorized(vec):
                            yh[d, b, jo * vec + ji] = act(d, 0, acc[jo * vec + ji])
                            y[time_of(d, s, lens[b]), d, b, jo * vec + ji] = yh[d, b, jo * vec + ji]
    return kernel


def pack_recurrent_weight(rt: np.ndarray, tile: int) -> np.ndarray:
    """rt[D, H, G * H] -> [D, G * H / tile, H, tile]: the tiles of columns, each contiguous."""
    d, h, gh = rt.shape
    return np.ascontiguousarray(rt.reshape(d, h, gh // tile, tile).transpose(0, 2, 1, 3))


def _recurrence_lower(ctx, xs, attrs, out_types):
    """One call_tir of `recurrence_primfunc`, a loop nest without blocks: the CPU schedule rules
    leave it as it is ("prescheduled" in the manifest). A constant rt of an LSTM or RNN is
    repacked by tiles at compile time."""
    steps, d_count, batch, h = out_types[0].shape
    lanes = max(1, getattr(ctx.target, "vector_bits", 128) // 32)
    xs = list(xs)
    packed = attrs["cell"] in ("lstm", "rnn") and isinstance(xs[1], tvm.ir.expr.Constant)
    if packed:
        rt = xs[1].value.numpy()
        xs[1] = relax.const(pack_recurrent_weight(rt, product_tile(rt.shape[2], lanes)), "float32")
    func = recurrence_primfunc(attrs, steps, batch, h, lanes, packed)
    func = func.with_attr("tirx.is_scheduled", True).without_attr("global_symbol")
    gv = ctx.bb.add_func(func, f"recurrence_{attrs['cell']}")
    outs = [relax.TensorType(list(t.shape), "float32") for t in out_types]
    call = ctx.emit(relax.call_tir(gv, xs, outs))
    return [relax.TupleGetItem(call, i) for i in range(len(outs))]


def _recurrence_macs(node) -> int:
    steps, d_count, batch, h = node.outputs[0].type.shape
    return steps * d_count * batch * h * node.inputs[0].type.shape[3]


register_op(OpDef("recurrence", _recurrence_infer, _recurrence_ref, _recurrence_lower, RECURRENCE_ATTRS,
                  kind="opaque", num_inputs=(4, 6), macs=_recurrence_macs,
                  summary="the time loop of an LSTM, GRU or RNN layer over projected inputs (one kernel)"))


# ---- ONNX import ----------------------------------------------------------------------------

def _activation_attrs(ctx, cell: str, d_count: int, attrs: dict) -> dict:
    """ONNX's activations, activation_alpha and activation_beta -> the recurrence's: lower-case
    names, G' per direction (a list for one direction serves both), one alpha and one beta for
    each (ONNX consumes its lists in order, by the activations that take an alpha or a beta; the
    others get 0), the defaults of the ONNX ops filled in."""
    per_direction = CELLS[cell][1]
    names = [str(n).lower() for n in attrs.get("activations", [])] or DEFAULT_ACTIVATIONS[cell] * d_count
    if len(names) == per_direction and d_count == 2:
        names = names * 2
    if len(names) != per_direction * d_count:
        raise ctx.fail(f"has {len(names)} activations; a {attrs.get('direction', 'forward')} {cell.upper()} "
                       f"takes {per_direction * d_count}")
    unknown = [n for n in names if n not in ACTIVATION_PARAMS]
    if unknown:
        raise ctx.fail(f"activation {unknown[0]!r} is not supported (supported: {', '.join(ACTIVATION_PARAMS)})")
    given = {"alpha": list(attrs.get("activation_alpha", [])), "beta": list(attrs.get("activation_beta", []))}
    out: dict[str, list[float]] = {"alpha": [], "beta": []}
    for name in names:
        for which, default in zip(("alpha", "beta"), ACTIVATION_PARAMS[name]):
            out[which].append(0.0 if default is None else float(given[which].pop(0)) if given[which]
                              else default)
    return {"activations": ",".join(names), "activation_alpha": out["alpha"], "activation_beta": out["beta"]}


def _weight(ctx, op: str, inputs: list, attrs: dict):
    """`op` on the weights `inputs`: computed here when they are all constants (a weight's
    reshape, transpose or bias sum is no kernel at any level), else a node."""
    if all(v.is_const for v in inputs):
        result = get_op(op).run([v.const_value() for v in inputs], get_op(op).complete_attrs(attrs))[0]
        return ctx.const(np.ascontiguousarray(result, dtype=inputs[0].type.np_dtype))
    return ctx.emit1(op, inputs, attrs)


@onnx_op("LSTM", "GRU", "RNN")
def _import_recurrent(ctx, node, inputs, attrs):
    """LSTM, GRU, RNN (opsets 7, 14, 22; `layout` from 14): a dense input projection, one
    recurrence node, transposes for layout=1 (see the module's docstring). Y, Y_h and Y_c may
    each be omitted."""
    return _recurrent(ctx, node.op_type.lower(), inputs, attrs)


@onnx_op("DynamicQuantizeLSTM", domain="com.microsoft")
def _import_dynamic_quantize_lstm(ctx, node, inputs, attrs):
    """ONNX Runtime's DynamicQuantizeLSTM (X, W, R, B, sequence_lens, initial_h, initial_c, P,
    W_scale, W_zero_point, R_scale, R_zero_point; W [D, I, 4H] and R [D, H, 4H] int8 or uint8,
    scales and zero points per direction or per direction and column): the float LSTM of the
    dequantized constant weights. ONNX Runtime also quantizes X and h to uint8 at run time, so
    its results differ from the float LSTM's by that rounding (about 1e-2 of the outputs' scale)."""
    if len(node.input) != 12 or not all(node.input[i] for i in (0, 1, 2, 8, 9, 10, 11)):
        raise ctx.fail("takes 12 inputs (X, W, R, B, sequence_lens, initial_h, initial_c, P, W_scale, "
                       "W_zero_point, R_scale, R_zero_point); X, W, R and the scales and zero points are required")
    weights = []
    for k, (q, scale, zero) in enumerate(((1, 8, 9), (2, 10, 11))):
        name = ("W", "R")[k]
        wq = ctx.constant_of(inputs[q], name).astype(np.float32)
        sc = ctx.constant_of(inputs[scale], f"{name}_scale").astype(np.float32)
        zp = ctx.constant_of(inputs[zero], f"{name}_zero_point").astype(np.float32)
        if wq.ndim != 3 or sc.shape != zp.shape or sc.shape not in ((wq.shape[0],), (wq.shape[0], wq.shape[2])):
            raise ctx.fail(f"{name} must be [D, K, 4H] with a scale and zero point of shape [D] or [D, 4H], got "
                           f"{list(wq.shape)}, {list(sc.shape)} and {list(zp.shape)}")
        per = (slice(None), None, None) if sc.ndim == 1 else (slice(None), None, slice(None))
        weights.append(ctx.const(np.ascontiguousarray(((wq - zp[per]) * sc[per]).transpose(0, 2, 1))))
    return _recurrent(ctx, "lstm", [inputs[0], *weights, *inputs[3:8]], attrs)


def _recurrent(ctx, cell: str, inputs: list, attrs: dict):
    """The import of a recurrent layer of `cell` from ONNX's inputs (X, W, R[, B, sequence_lens,
    initial_h, initial_c, P]) and attributes."""
    gates = CELLS[cell][0]
    x, w, r = inputs[:3]
    opt = lambda i: inputs[i] if len(inputs) > i else None  # noqa: E731
    bias, lens, h0 = opt(3), opt(4), opt(5)
    c0, peep = (opt(6), opt(7)) if cell == "lstm" else (None, None)
    direction = attrs.get("direction", "forward")
    if direction not in DIRECTIONS:
        raise ctx.fail(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    layout = attrs.get("layout", 0)
    if layout not in (0, 1):
        raise ctx.fail(f"layout must be 0 or 1, got {layout}")
    d_count = 2 if direction == "bidirectional" else 1
    if x.type.rank != 3 or w.type.rank != 3 or r.type.rank != 3:
        raise ctx.fail(f"X, W and R must be 3-D, got {x.type}, {w.type} and {r.type}")
    if layout:
        x = ctx.emit1("transpose", [x], {"perm": [1, 0, 2]})
    steps, batch, size = x.type.shape
    h = int(attrs.get("hidden_size", r.type.shape[-1]))
    gh = gates * h
    for name, v, shape in (("W", w, (d_count, gh, size)), ("R", r, (d_count, gh, h)),
                           ("B", bias, (d_count, 2 * gh)), ("initial_h", h0, (d_count, batch, h) if not layout
                                                             else (batch, d_count, h)),
                           ("initial_c", c0, (d_count, batch, h) if not layout else (batch, d_count, h)),
                           ("P", peep, (d_count, 3 * h)), ("sequence_lens", lens, (batch,))):
        if v is not None and v.type.shape != shape:
            raise ctx.fail(f"{name} must have shape {list(shape)}, got {v.type}")
    if x.type.dtype != "f32":
        raise ctx.fail(f"only float32 {cell.upper()} is supported, got X {x.type}")
    zeros = lambda *shape: ctx.const(np.zeros(shape, np.float32))  # noqa: E731
    batch_first = lambda v: v if v is None or not layout else ctx.emit1("transpose", [v], {"perm": [1, 0, 2]})  # noqa: E731
    h0, c0 = batch_first(h0), batch_first(c0)

    # The projection: X @ W^T + Wb + Rb (GRU: without Rb of the h gate, the recurrence's rbh).
    weight = _weight(ctx, "reshape", [w], {"shape": [d_count * gh, size]})
    rbh = zeros(d_count, h)
    # As [T * B, I]: the dense schedule tiles the rows of a 2-D input (a reshape is a view).
    rows = ctx.emit1("reshape", [x], {"shape": [steps * batch, size]})
    if bias is None:
        xp = ctx.emit1("dense", [rows, weight])
    else:
        wb = _weight(ctx, "slice", [bias], {"starts": [0], "ends": [gh], "axes": [1], "steps": [1]})
        rb = _weight(ctx, "slice", [bias], {"starts": [gh], "ends": [2 * gh], "axes": [1], "steps": [1]})
        if cell == "gru":
            rbh = _weight(ctx, "slice", [rb], {"starts": [2 * h], "ends": [gh], "axes": [1], "steps": [1]})
            keep = np.concatenate([np.ones(2 * h, np.float32), np.zeros(h, np.float32)])
            rb = _weight(ctx, "mul", [rb, ctx.const(keep)], {})
        summed = _weight(ctx, "reshape", [_weight(ctx, "add", [wb, rb], {})], {"shape": [d_count * gh]})
        xp = ctx.emit1("dense", [rows, weight, summed])
    xp = ctx.emit1("reshape", [xp], {"shape": [steps, batch, d_count, gh]})
    rt = _weight(ctx, "transpose", [r], {"perm": [0, 2, 1]})
    if lens is None:
        lens = ctx.const(np.full(batch, steps, np.int32))
    elif lens.type.dtype != "i32":
        lens = ctx.emit1("cast", [lens], {"to": "i32"})
    state = [h0 if h0 is not None else zeros(d_count, batch, h)]
    if cell == "lstm":
        state += [c0 if c0 is not None else zeros(d_count, batch, h), peep if peep is not None else zeros(d_count, 3 * h),
                  lens]
    elif cell == "gru":
        state += [lens, rbh]
    else:
        state += [lens]
    rec_attrs = {"cell": cell, "direction": direction, "clip": float(attrs.get("clip", 0.0)),
                 "input_forget": int(attrs.get("input_forget", 0)),
                 "linear_before_reset": int(attrs.get("linear_before_reset", 0)),
                 **_activation_attrs(ctx, cell, d_count, attrs)}
    outs = ctx.emit("recurrence", [xp, rt, *state], rec_attrs)
    if layout:
        outs = [ctx.emit1("transpose", [outs[0]], {"perm": [2, 0, 1, 3]})] + [
            ctx.emit1("transpose", [o], {"perm": [1, 0, 2]}) for o in outs[1:]]
    return outs
