"""Testing passes: random well-typed edgec graphs (hypothesis strategies) and an equivalence check.

    from edgec.testing import assert_equivalent
    def test_my_pass():
        assert_equivalent(MyPass, family="elementwise", examples=30)

`assert_equivalent(pass_or_pipeline, family, examples)` runs random graphs through a pass (a `Pass`
subclass, a registered name or a pipeline string), verifies the IR after it and compares the
interpreter's outputs with the unoptimized graph's (`edgec.verify.compare` and `within`: f32 within
1e-4 of the output's scale). On the first difference hypothesis shrinks the graph; the smallest
failing graph is written as a runnable `.eir` (full constants) with its inputs (`.npz`), and the
AssertionError says how to replay it (`edgec check-pass FILE --pass NAME --replay REPRO.eir`).
`edgec check-pass` runs the same engine (`check_pass`) from the command line. Runs are
reproducible: derandomized (or seeded), no example database, no deadline.

`graphs()` draws one of four families, each a random DAG built through `Graph.add` (so every
node is typed by the registry's inference):
- elementwise graphs: 1-3 inputs of random shapes (rank 0-4, dims 1-4) combined by unary
  ops (every registered continuous f32 elementwise op, read from the registry, with attribute
  choices), broadcasting binary ops incl. prelu (operands from the graph or constants of
  broadcastable shapes) and no-op shape ops;
- CNN graphs: a 4-D NCHW input through conv (groups, strides, pads, bias), batch_norm, pools,
  global pooling, resize, transposes and the elementwise ops between them;
- MLP graphs: 2-D/3-D inputs through dense and matmul with constant weights and the adds,
  batch norms and activations around them;
- transformer graphs: a (seq, d) or (1, seq, d) input through single-head attention (matmuls
  with constant weights, a scaled q.k^T, softmax, a residual add) and the layer-norm
  decomposition, with the MLP family's linear layers and activations between them.
Every family mixes in the motifs the passes look for, written the ways exporters write them:
x*1, x+0, identity, reshape/transpose/cast/pad/slice/expand that change nothing, duplicated
nodes, constant-only subgraphs, x*sigmoid(x), the gelu erf and tanh forms, hard swish, the
layer-norm decomposition, conv/dense + batch_norm / bias add / activation, transpose pairs.
Some outputs are intermediate values, so patterns with shared intermediates appear too.

Inputs only take domains where every op stays finite (log and sqrt get |x| + 0.5, acos/atanh
0.9*tanh(x), divisors |y| + 1, pow a positive base); `graph_and_inputs()` also rejects the rare
example whose values overflow. Each node's origin is `n<k>`, so tests can check that passes keep origins.

hypothesis is a test dependency (`pip install hypothesis`, or `pip install edgec[test]`):
`import edgec` does not load this module, and importing it without hypothesis is an EdgecError.
"""

from __future__ import annotations

import inspect
import math
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import EdgecError

try:
    from hypothesis import HealthCheck, assume, given, settings, strategies as st
    import hypothesis
except ImportError:
    raise EdgecError("edgec.testing needs hypothesis, which is not installed: pip install hypothesis "
                     "(or pip install edgec[test])") from None

import edgec
from .ir import Graph, TensorType, Value
from .ops import OPS


class Builder:
    """A graph under construction and the pool of values new nodes may read."""

    def __init__(self, draw, seed: int):
        self.draw = draw
        self.rng = np.random.default_rng(seed)
        self.g = Graph()
        self.pool: list[Value] = []
        self.count = 0

    def add(self, op: str, inputs: list[Value], attrs: dict | None = None) -> Value:
        node = self.g.add(op, inputs, attrs or {}, origin=[f"n{self.count}"])
        self.count += 1
        return node.output

    def keep(self, v: Value) -> Value:
        self.pool.append(v)
        return v

    def const(self, shape, low=-2.0, high=2.0) -> Value:
        return self.g.const(self.rng.uniform(low, high, size=tuple(shape)).astype(np.float32))

    def scalar(self, value: float) -> Value:
        return self.g.const(np.asarray(value, np.float32))

    def choice(self, items):
        return self.draw(st.sampled_from(list(items)))

    def flag(self) -> bool:
        return self.draw(st.booleans())

    def pick(self, predicate=lambda v: True) -> Value | None:
        candidates = [v for v in self.pool if predicate(v)]
        return self.choice(candidates) if candidates else None


def _broadcast_shape_for(b: Builder, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that broadcasts against `shape` without growing it (a suffix, some dims 1)."""
    k = b.draw(st.integers(0, len(shape)))
    suffix = shape[len(shape) - k:]
    return tuple(d if b.flag() else 1 for d in suffix)


def _positive(b: Builder, x: Value, offset: float) -> Value:
    return b.add("add", [b.add("abs", [x]), b.scalar(offset)])


# ---- elementwise generators (each returns a new value or None) ----------------------------------

# Unary elementwise ops come from the registry. Left out: ops with a jump (a last-bit difference
# after a legal reordering would flip them) and ops that do not take and give f32 (`_f32_to_f32`).
DISCONTINUOUS = {"ceil", "floor", "round", "sign", "thresholded_relu", "shrink", "is_inf", "is_nan", "cast"}
# op -> how its operand is brought into the op's domain
DOMAINS = {
    "log": "positive", "sqrt": "positive", "reciprocal": "positive", "acosh": "at-least-one",
    "acos": "unit", "asin": "unit", "atanh": "unit", "tan": "unit", "exp": "unit", "cosh": "unit", "sinh": "unit",
}
# op -> attribute choices (default attributes otherwise)
ATTR_CHOICES = {
    "leaky_relu": [{"alpha": 0.01}, {"alpha": 0.2}],
    "hard_sigmoid": [{"alpha": 0.2, "beta": 0.5}, {"alpha": 1 / 6, "beta": 0.5}],
    "gelu": [{"approximate": "none"}, {"approximate": "tanh"}],
    "clip": [{"min": 0.0, "max": 6.0}, {"min": -1.0, "max": 1.0}, {"min": 0.0}],
    "elu": [{"alpha": 1.0}, {"alpha": 0.5}],
}


def _f32_to_f32(name: str) -> bool:
    """Whether unary op `name` (default attributes) takes an f32 tensor and gives one."""
    try:
        out = OPS[name].infer([TensorType("f32", (2,))], OPS[name].complete_attrs({}))
    except Exception:  # noqa: BLE001 - the op refuses f32 (or needs an attribute)
        return False
    return [t.dtype for t in out] == ["f32"]


UNARY = sorted(name for name, d in OPS.items()
               if d.kind == "elementwise" and d.num_inputs == (1, 1) and name not in DISCONTINUOUS
               and _f32_to_f32(name))
BINARY = ["add", "sub", "mul", "div", "max", "min", "pow", "prelu"]


def gen_unary(b: Builder) -> Value:
    x = b.pick()
    op = b.choice(UNARY)
    domain = DOMAINS.get(op)
    if domain == "positive":
        x = _positive(b, x, 0.5)
    elif domain == "at-least-one":
        x = _positive(b, x, 1.0)
    elif domain == "unit":
        x = b.add("mul", [b.add("tanh", [x]), b.scalar(0.9)])
    attrs = b.choice(ATTR_CHOICES[op]) if op in ATTR_CHOICES else {}
    return b.add(op, [x], attrs)


def gen_binary(b: Builder) -> Value:
    x = b.pick()
    op = b.choice(BINARY)
    other = b.pick(lambda v: _broadcasts(v.type.shape, x.type.shape))
    if other is None or b.flag():
        other = b.const(_broadcast_shape_for(b, x.type.shape)) if b.flag() else b.scalar(b.choice([0.5, 2.0, -1.5]))
    if op == "div":
        other = _positive(b, other, 1.0)
    if op == "pow":
        x = _positive(b, x, 0.5)
        other = b.scalar(b.choice([2.0, 3.0, 0.5, -1.0]))
    if op == "prelu":  # the slope broadcasts to x (one direction only)
        other = b.const(_broadcast_shape_for(b, x.type.shape))
    ins = [x, other] if b.flag() or op in ("div", "pow", "sub", "prelu") else [other, x]
    return b.add(op, ins)


def _broadcasts(a, c) -> bool:
    try:
        np.broadcast_shapes(a, c)
        return True
    except ValueError:
        return False


def gen_noop(b: Builder) -> Value:
    """An op that changes nothing (or, sometimes, a near miss that does change the shape)."""
    x = b.pick()
    shape = x.type.shape
    kind = b.choice(["mul1", "add0", "sub0", "div1", "pow1", "identity", "reshape", "transpose", "cast",
                     "pad", "slice", "expand", "mul1-broadcast"])
    if kind == "mul1":
        return b.add("mul", [x, b.scalar(1.0)] if b.flag() else [b.scalar(1.0), x])
    if kind == "add0":
        return b.add("add", [b.g.const(np.zeros(_broadcast_shape_for(b, shape), np.float32)), x])
    if kind == "sub0":
        return b.add("sub", [x, b.scalar(0.0)])
    if kind == "div1":
        return b.add("div", [x, b.scalar(1.0)])
    if kind == "pow1":
        return b.add("pow", [x, b.scalar(1.0)])
    if kind == "identity":
        return b.add("identity", [x])
    if kind == "reshape":
        return b.add("reshape", [x], {"shape": list(shape)})
    if kind == "transpose":
        return b.add("transpose", [x], {"perm": list(range(len(shape)))})
    if kind == "cast":
        return b.add("cast", [x], {"to": "f32"})
    if kind == "pad" and shape:  # (pad of a rank-0 tensor fails in the reference: np.pad)
        return b.add("pad", [x], {"pads": [0] * (2 * len(shape))})
    if kind == "slice" and shape:
        return b.add("slice", [x], {"starts": [0], "ends": [shape[0]], "axes": [0], "steps": [1]})
    if kind == "expand":
        return b.add("expand", [x], {"shape": list(shape)})
    # x * ones that broadcast x to a larger shape: not a no-op
    return b.add("mul", [x, b.g.const(np.ones((2, *shape), np.float32))])


def gen_duplicate(b: Builder) -> Value | None:
    """A second node computing the same thing as an existing one (operands maybe swapped)."""
    nodes = [n for n in b.g.nodes if len(n.outputs) == 1]
    if not nodes:
        return None
    n = b.choice(nodes)
    ins = list(n.inputs)
    if n.op in ("add", "mul", "max", "min") and b.flag():
        ins.reverse()
    return b.add(n.op, ins, dict(n.attrs))


def gen_constant_subgraph(b: Builder) -> Value:
    x = b.pick()
    c = b.add("exp", [b.add("mul", [b.const(_broadcast_shape_for(b, x.type.shape)), b.scalar(0.5)])])
    return b.add("add", [x, c])


def gen_silu(b: Builder) -> Value:
    x = b.pick()
    s = b.add("sigmoid", [x])
    return b.add("mul", [x, s] if b.flag() else [s, x])


def _product(b: Builder, x: Value, inner: Value) -> Value:
    half = b.scalar(0.5)
    form = b.draw(st.integers(0, 2))
    if form == 0:
        return b.add("mul", [b.add("mul", [x, inner]), half])
    if form == 1:
        return b.add("mul", [b.add("mul", [half, x]), inner])
    return b.add("mul", [x, b.add("mul", [inner, half])])


def gen_gelu(b: Builder) -> Value:
    x = b.pick()
    if b.flag():
        arg = b.add("div", [x, b.scalar(math.sqrt(2))]) if b.flag() else b.add("mul", [x, b.scalar(1 / math.sqrt(2))])
        inner = b.add("add", [b.add("erf", [arg]), b.scalar(1.0)])
    else:
        cube = b.add("pow", [x, b.scalar(3.0)]) if b.flag() else b.add("mul", [x, b.add("mul", [x, x])])
        poly = b.add("add", [x, b.add("mul", [cube, b.scalar(0.044715)])])
        t = b.add("tanh", [b.add("mul", [poly, b.scalar(math.sqrt(2 / math.pi))])])
        inner = b.add("add", [b.scalar(1.0), t])
    return _product(b, x, inner)


def gen_hardswish(b: Builder) -> Value:
    x = b.pick()
    if b.flag():
        hs = b.add("hard_sigmoid", [x], {"alpha": 1 / 6, "beta": 0.5})
        return b.add("mul", [x, hs])
    plus3 = b.add("add", [x, b.scalar(3.0)])
    r6 = (b.add("clip", [plus3], {"min": 0.0, "max": 6.0}) if b.flag()
          else b.add("min", [b.add("max", [plus3, b.scalar(0.0)]), b.scalar(6.0)]))
    if b.flag():
        return b.add("div", [b.add("mul", [x, r6]), b.scalar(6.0)])
    return b.add("mul", [x, b.add("mul", [r6, b.scalar(1 / 6)])])


def gen_layernorm(b: Builder) -> Value | None:
    if "reduce_mean" not in OPS:
        return None
    x = b.pick(lambda v: v.type.rank >= 1)
    if x is None:
        return None
    n = x.type.shape[-1]
    mean = b.add("reduce_mean", [x], {"axes": [-1], "keepdims": 1})
    d = b.add("sub", [x, mean])
    sq = b.add("pow", [d, b.scalar(2.0)]) if b.flag() else b.add("mul", [d, d])
    var = b.add("reduce_mean", [sq], {"axes": [-1], "keepdims": 1})
    y = b.add("div", [d, b.add("sqrt", [b.add("add", [var, b.scalar(b.choice([1e-5, 1e-12]))])])])
    if b.flag():
        y = b.add("mul", [y, b.const((n,))])
    if b.flag():
        y = b.add("add", [y, b.const((n,))])
    return y


def gen_transpose_pair(b: Builder) -> Value | None:
    x = b.pick(lambda v: v.type.rank >= 2)
    if x is None:
        return None
    perm = list(b.draw(st.permutations(range(x.type.rank))))
    t = b.add("transpose", [x], {"perm": perm})
    if b.flag():
        t = b.add(b.choice(["relu", "neg", "sigmoid"]), [t])
    inverse = list(np.argsort(perm))
    return b.add("transpose", [t], {"perm": [int(i) for i in inverse]})


def gen_reshape_pair(b: Builder) -> Value | None:
    x = b.pick(lambda v: v.type.rank >= 1)
    if x is None:
        return None
    flat = b.add("reshape", [x], {"shape": [x.type.size]})
    if b.flag():
        flat = b.add("relu", [flat])
    return b.add("reshape", [flat], {"shape": list(x.type.shape)})


ELEMENTWISE_GENERATORS = [gen_unary, gen_unary, gen_binary, gen_binary, gen_binary, gen_noop, gen_duplicate,
                          gen_constant_subgraph, gen_silu, gen_gelu, gen_hardswish, gen_layernorm,
                          gen_transpose_pair, gen_reshape_pair]


# ---- nn generators ---------------------------------------------------------------------------------

ACT_CHOICES = [("relu", {}), ("clip", {"min": 0.0, "max": 6.0}), ("sigmoid", {}), ("hard_sigmoid", {"alpha": 0.2, "beta": 0.5}),
               ("hard_swish", {}), ("silu", {}), ("leaky_relu", {"alpha": 0.1}), ("gelu", {"approximate": "none"}),
               ("gelu", {"approximate": "tanh"}), ("tanh", {})]


def gen_conv(b: Builder) -> Value | None:
    x = b.pick(lambda v: v.type.rank == 4)
    if x is None:
        return None
    c = x.type.shape[1]
    group = b.choice([g for g in (1, c) if c % g == 0])
    out_ch = b.choice([c * k for k in (1, 2)] if group == c else [1, 2, 3, 4])
    k = b.choice([1, 3])
    pad = b.choice([0, 1]) if k == 3 else 0
    stride = b.choice([1, 2])
    if min(x.type.shape[2:]) + 2 * pad < k:
        return None
    w = b.const((out_ch, c // group, k, k), -1, 1)
    ins = [x, w] + ([b.const((out_ch,))] if b.flag() else [])
    y = b.add("conv", ins, {"strides": [stride, stride], "pads": [pad] * 4, "group": group})
    if b.flag():
        y = b.add("batch_norm", [y, b.const((out_ch,), 0.5, 1.5), b.const((out_ch,)), b.const((out_ch,)),
                                 b.const((out_ch,), 0.5, 2.0)])
    if b.flag():
        shape = b.choice([(out_ch, 1, 1), (1, out_ch, 1, 1), (1,), (1, 1, 1, y.type.shape[3])])
        y = b.add("add", [y, b.const(shape)] if b.flag() else [b.const(shape), y])
    if b.flag():
        op, attrs = b.choice(ACT_CHOICES)
        y = b.add(op, [y], attrs)
    return y


def gen_padded_conv(b: Builder) -> Value | None:
    """A pad before a conv (what fuse-pad folds): zero spatial pads mostly, sometimes a mode,
    value or channel pad the pass must refuse."""
    x = b.pick(lambda v: v.type.rank == 4)
    if x is None:
        return None
    spatial = [b.choice([0, 1, 2]) for _ in range(4)]  # h0, w0, h1, w1
    channel = b.choice([0, 0, 0, 1])
    pads = [0, channel, spatial[0], spatial[1], 0, 0, spatial[2], spatial[3]]
    mode = b.choice(["constant", "constant", "constant", "edge"])
    value = b.choice([0.0, 0.0, 0.0, 1.5]) if mode == "constant" else 0.0
    conv_pad = b.choice([0, 1])
    h, w = x.type.shape[2] + spatial[0] + spatial[2], x.type.shape[3] + spatial[1] + spatial[3]
    if min(h, w) + 2 * conv_pad < 3:
        return None
    padded = b.add("pad", [x], {"pads": pads, "mode": mode, "value": value})
    c = padded.type.shape[1]
    return b.add("conv", [padded, b.const((2, c, 3, 3), -1, 1)], {"pads": [conv_pad] * 4})


def gen_pool(b: Builder) -> Value | None:
    x = b.pick(lambda v: v.type.rank == 4)
    if x is None:
        return None
    kind = b.choice(["max_pool", "avg_pool", "global_avg_pool", "global_max_pool", "resize"])
    if kind.startswith("global"):
        return b.add(kind, [x])
    if kind == "resize":
        n, c, h, w = x.type.shape
        return b.add("resize", [x], {"sizes": [n, c, 2 * h, 2 * w], "scales": [1.0, 1.0, 2.0, 2.0]})
    if min(x.type.shape[2:]) < 2:
        return None
    return b.add(kind, [x], {"kernel_shape": [2, 2], "strides": [b.choice([1, 2])] * 2})


def gen_linear(b: Builder) -> Value | None:
    x = b.pick(lambda v: 2 <= v.type.rank <= 3)
    if x is None:
        return None
    k = x.type.shape[-1]
    n = b.choice([1, 3, 4])
    if b.flag():
        y = b.add("dense", [x, b.const((n, k), -1, 1)] + ([b.const((n,))] if b.flag() else []))
    else:
        transpose_b = int(b.flag())
        w = b.const((n, k) if transpose_b else (k, n), -1, 1)
        y = b.add("matmul", [x, w], {"transpose_b": transpose_b})
    if y.type.rank == 2 and b.flag():
        y = b.add("batch_norm", [y, b.const((n,), 0.5, 1.5), b.const((n,)), b.const((n,)), b.const((n,), 0.5, 2.0)])
    if b.flag():
        shape = b.choice([(n,), (1, n), (1,)])
        y = b.add("add", [y, b.const(shape)])
    if b.flag():
        op, attrs = b.choice(ACT_CHOICES)
        y = b.add(op, [y], attrs)
    return y


NN_GENERATORS = [gen_conv, gen_conv, gen_pool, gen_unary, gen_binary, gen_noop, gen_transpose_pair, gen_silu]
MLP_GENERATORS = [gen_linear, gen_linear, gen_unary, gen_binary, gen_noop, gen_gelu, gen_layernorm, gen_duplicate]


def gen_attention(b: Builder) -> Value | None:
    """Single-head attention: softmax(q k^T * scale) v from constant projections, sometimes with
    a residual add of the input."""
    x = b.pick(lambda v: 2 <= v.type.rank <= 3)
    if x is None:
        return None
    d = x.type.shape[-1]
    h = b.choice([2, 4])
    q, k, v = (b.add("matmul", [x, b.const((d, h), -1, 1)]) for _ in range(3))
    scores = b.add("matmul", [q, k], {"transpose_b": 1})
    scaled = (b.add("mul", [scores, b.scalar(1 / math.sqrt(h))]) if b.flag()
              else b.add("div", [scores, b.scalar(math.sqrt(h))]))
    y = b.add("matmul", [b.add("softmax", [scaled], {"axis": -1}), v])
    y = b.add("matmul", [y, b.const((h, d), -1, 1)])
    return b.add("add", [x, y]) if b.flag() else y


TRANSFORMER_GENERATORS = [gen_attention, gen_attention, gen_layernorm, gen_layernorm, gen_linear, gen_binary,
                          gen_gelu, gen_noop]


# ---- graphs and inputs -------------------------------------------------------------------------------

FAMILIES = ["elementwise", "cnn", "mlp", "transformer"]


def family_choices(family: str | list[str] | None) -> list[str]:
    """The families `family` names (None: all); an unknown one is an EdgecError."""
    choices = FAMILIES if family is None else [family] if isinstance(family, str) else list(family)
    for name in choices:
        if name not in FAMILIES:
            raise EdgecError(f"unknown graph family '{name}'; the families: {', '.join(FAMILIES)}")
    return choices


@st.composite
def graphs(draw, family: str | list[str] | None = None, max_steps: int = 6, focus: tuple = ()) -> Graph:
    """A random well-typed graph (see the module docstring). `family` picks one family or a list to
    draw from (default: all); the generators in `focus` are drawn three times as often (a pass's
    test focuses on the motifs it rewrites)."""
    family = draw(st.sampled_from(family_choices(family)))
    b = Builder(draw, draw(st.integers(0, 2 ** 32 - 1)))
    if family == "cnn":
        c = draw(st.integers(1, 3))
        shape = (1, c, draw(st.integers(3, 6)), draw(st.integers(3, 6)))
        b.keep(b.g.add_input("x", edgec.TensorType("f32", shape)))
        generators = NN_GENERATORS
    elif family == "mlp":
        k = draw(st.integers(1, 5))
        lead = draw(st.sampled_from([(2,), (1,), (2, 3)]))
        b.keep(b.g.add_input("x", edgec.TensorType("f32", (*lead, k))))
        generators = MLP_GENERATORS
    elif family == "transformer":
        d = draw(st.integers(2, 6))
        lead = draw(st.sampled_from([(3,), (1, 4), (2,)]))
        b.keep(b.g.add_input("x", edgec.TensorType("f32", (*lead, d))))
        generators = TRANSFORMER_GENERATORS
    else:
        n_inputs = draw(st.integers(1, 3))
        base = tuple(draw(st.lists(st.integers(1, 4), min_size=0, max_size=4)))
        for i in range(n_inputs):
            shape = base if i == 0 else tuple(d if draw(st.booleans()) else 1 for d in base)
            b.keep(b.g.add_input(f"in{i}", edgec.TensorType("f32", shape)))
        generators = ELEMENTWISE_GENERATORS
    generators = generators + [g for g in focus for _ in range(3)]
    steps = draw(st.integers(1, max_steps))
    for _ in range(steps):
        gen = draw(st.sampled_from(generators))
        v = gen(b)
        if v is not None:
            b.keep(v)
    produced = [v for v in b.pool if v.producer() is not None]
    assume(produced)
    outputs = [produced[-1]]
    if len(produced) > 1 and draw(st.booleans()):
        extra = draw(st.sampled_from(produced[:-1]))
        outputs.append(extra)
    b.g.set_outputs(outputs, [f"out{i}" for i in range(len(outputs))])
    return b.g


def random_inputs(graph: Graph, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {v.name: rng.normal(0, 1.5, size=v.type.shape).astype(v.type.np_dtype) for v in graph.inputs}


def finite_and_moderate(outputs: dict[str, np.ndarray], limit: float = 1e4) -> bool:
    return all(np.all(np.isfinite(a)) and (a.size == 0 or np.max(np.abs(a)) < limit) for a in outputs.values())


@st.composite
def graph_and_inputs(draw, family: str | list[str] | None = None, max_steps: int = 6, focus: tuple = ()):
    """(graph, feeds, expected outputs by the interpreter); examples that overflow are rejected."""
    g = draw(graphs(family, max_steps, focus))
    feeds = random_inputs(g, draw(st.integers(0, 2 ** 32 - 1)))
    expected = edgec.interpret(g, feeds)
    assume(finite_and_moderate(expected))
    return g, feeds, expected


# ---- the equivalence check ----------------------------------------------------------------------

def pipeline_of(pass_or_pipeline) -> str:
    """The pipeline string of a `Pass` subclass (registered now if it is not yet), a registered
    pass name or a pipeline string (checked: unknown passes or options are an EdgecError)."""
    from .passmanager import Pass, format_pipeline, parse_pipeline, register_pass
    if isinstance(pass_or_pipeline, type) and issubclass(pass_or_pipeline, Pass):
        try:
            register_pass(pass_or_pipeline)
        except ValueError as e:
            raise EdgecError(f"cannot check pass class {pass_or_pipeline.__name__}: {e}") from None
        return pass_or_pipeline.name
    if not isinstance(pass_or_pipeline, str):
        raise EdgecError(f"expected a Pass subclass, a pass name or a pipeline string, got {pass_or_pipeline!r}")
    return format_pipeline(parse_pipeline(pass_or_pipeline))


def difference(graph: Graph, feeds: dict[str, np.ndarray], pipeline: str) -> str | None:
    """Why `pipeline` on a copy of `graph` is not equivalent to it on `feeds`, or None if it is:
    the pipeline fails (or the verifier refuses its result), the optimized graph cannot be
    interpreted, its outputs differ in name or shape, or an output leaves `verify.within` of the
    unoptimized graph's (the max abs and relative errors say by how much)."""
    from .interpreter import interpret
    from .passmanager import PassManager
    from .verify import compare, output_scale, within
    expected = interpret(graph, feeds)
    try:
        optimized = PassManager(pipeline).run(graph.copy())  # verifies the IR after each pass
    except EdgecError as e:
        return str(e)
    try:
        got = interpret(optimized, feeds)
    except Exception as e:  # noqa: BLE001 - the pass made a graph the interpreter cannot run
        return f"the optimized graph does not run in the interpreter: {type(e).__name__}: {e}"
    if list(got) != list(expected):
        return f"the outputs changed: {list(expected)} -> {list(got)}"
    bad = []
    for name, value in zip(graph.output_names, graph.outputs):
        err = compare(got[name], expected[name])
        if not within(err, value.type.dtype, output_scale(expected[name])):
            bad.append(f"output {name}: max abs error {err.abs:.6g}, relative to its scale {err.rel:.6g}"
                       + (f" ({err.note})" if err.note else ""))
    return "; ".join(bad) or None


def pass_files(pipeline: str) -> list[str]:
    """The source files of the pipeline's passes that are not edgec's own (for `--load-pass`)."""
    from .passmanager import get_pass, parse_pipeline
    files = []
    for name, _ in parse_pipeline(pipeline):
        cls = get_pass(name)
        if not cls.__module__.startswith("edgec.passes"):
            file = inspect.getfile(cls.run)
            if file not in files:
                files.append(file)
    return files


def replay_commands(pipeline: str, repro: Path) -> list[str]:
    """The commands that run `pipeline` on the reproducer `repro` again: `edgec opt` (the IR after
    it) and, when the passes come from at most one file, `edgec check-pass --replay` (the comparison)."""
    files = pass_files(pipeline)
    lines = [f"edgec opt {repro}{''.join(f' --load-pass {f}' for f in files)} --passes '{pipeline}'"]
    if len(files) <= 1:
        lines.append(f"edgec check-pass {''.join(f'{f} ' for f in files)}--pass '{pipeline}' --replay {repro}")
    return lines


def nodes(graph: Graph) -> str:
    """'1 node', '3 nodes'."""
    return f"{len(graph.nodes)} node{'s' * (len(graph.nodes) != 1)}"


@dataclass
class CheckResult:
    """What `check_pass` found: `examples` graphs run; on a failure the shrunk graph, its inputs,
    why it is not equivalent and the reproducer written (`.eir` and `.npz`)."""
    pipeline: str
    examples: int
    graph: Graph | None = None
    feeds: dict | None = None
    reason: str = ""
    reproducer: Path | None = None

    @property
    def ok(self) -> bool:
        return self.graph is None

    def format(self) -> str:
        if self.ok:
            return f"{self.pipeline}: {self.examples} graphs, all equivalent"
        from .text import print_ir
        ops = ", ".join(n.op for n in self.graph.nodes)
        lines = [f"{self.pipeline}: NOT equivalent on a graph of {nodes(self.graph)} ({ops}) "
                 f"(shrunk from the failure at graph {self.examples}):",
                 f"  {self.reason}", "", print_ir(self.graph).rstrip(), "",
                 f"reproducer: {self.reproducer} (inputs: {self.reproducer.with_suffix('.npz')})", "replay it with:"]
        lines += [f"  {cmd}" for cmd in replay_commands(self.pipeline, self.reproducer)]
        return "\n".join(lines)


def write_reproducer(graph: Graph, feeds: dict[str, np.ndarray], pipeline: str, out: Path | None) -> Path:
    """`out/<first pass>-repro.eir` (full constants) and its inputs `.npz` next to it; `out` None:
    a new temporary directory."""
    import io
    from .files import make_dirs, os_error, write_bytes, write_text
    from .passmanager import parse_pipeline
    from .text import print_ir
    try:
        folder = Path(tempfile.mkdtemp(prefix="edgec-check-pass-")) if out is None else Path(out)
        make_dirs(folder)
    except OSError as e:
        raise os_error("--out", Path(out or tempfile.gettempdir()), e) from None
    path = folder / f"{parse_pipeline(pipeline)[0][0]}-repro.eir"
    buf = io.BytesIO()
    np.savez(buf, **feeds)
    write_bytes(path.with_suffix(".npz"), buf.getvalue(), "--out")
    write_text(path, print_ir(graph, full_constants=True), "--out")
    return path


def check_pass(pass_or_pipeline, family: str | list[str] | None = None, examples: int = 100,
               seed: int | None = None, out: Path | None = None, max_steps: int = 6) -> CheckResult:
    """Run `examples` random graphs of `family` (default: all) through the pass or pipeline and
    compare (`difference`); on a failure hypothesis shrinks the graph, and the smallest failing one
    is written by `write_reproducer` into `out`. Deterministic: derandomized, or seeded by `seed`;
    no example database, no deadline."""
    pipeline = pipeline_of(pass_or_pipeline)
    if examples < 1:
        raise EdgecError(f"examples must be at least 1, got {examples}")
    family_choices(family)  # an unknown family: refused before hypothesis runs
    runs = 0  # the graphs run until the first failure (or in all)
    failure: list = []

    @settings(max_examples=examples, derandomize=seed is None, database=None, deadline=None,
              suppress_health_check=list(HealthCheck), print_blob=False, report_multiple_bugs=False)
    @given(graph_and_inputs(family, max_steps))
    def check(data):
        nonlocal runs
        graph, feeds, _ = data
        runs += not failure
        reason = difference(graph, feeds, pipeline)
        if reason is not None:
            failure[:] = [graph, feeds, reason]  # the last failure hypothesis runs is the shrunk one
            raise AssertionError(reason)

    if seed is not None:
        check = hypothesis.seed(seed)(check)
    try:
        check()
    except AssertionError:
        if not failure:
            raise
    if not failure:
        return CheckResult(pipeline, runs)
    graph, feeds, reason = failure
    return CheckResult(pipeline, runs, graph, feeds, reason, write_reproducer(graph, feeds, pipeline, out))


def replay(repro: Path, pass_or_pipeline, seed: int = 0) -> tuple[bool, str]:
    """Run the pass or pipeline on the reproducer `repro` (an .eir file) with the inputs of the
    `.npz` of the same name (random ones of `seed` if there is none) and compare (`difference`):
    (equivalent, a line that says so or how the outputs differ)."""
    from .driver import load_model
    from .files import read_npz
    from .verify import random_inputs
    pipeline = pipeline_of(pass_or_pipeline)
    graph = load_model(repro, {})[0]
    npz = Path(repro).with_suffix(".npz")
    if npz.is_file():
        feeds = read_npz(npz, f"--replay {repro}: its inputs")
        inputs = f"inputs {npz}"
    else:
        feeds, inputs = random_inputs(graph, seed), f"random inputs (seed {seed}; no {npz})"
    reason = difference(graph, feeds, pipeline)
    return reason is None, (f"{repro} ({nodes(graph)}, {inputs}): {pipeline} "
                            + ("keeps the outputs" if reason is None else f"is NOT equivalent: {reason}"))


def assert_equivalent(pass_or_pipeline, family: str | list[str] | None = None, examples: int = 100,
                      seed: int | None = None, out: Path | None = None, max_steps: int = 6) -> None:
    """For pytest: `check_pass`, and an AssertionError with its report (the shrunk graph, the
    reproducer and the commands that replay it) if the pass is not equivalent."""
    result = check_pass(pass_or_pipeline, family, examples, seed, out, max_steps)
    if not result.ok:
        raise AssertionError(result.format())
