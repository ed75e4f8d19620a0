"""Every op of the registry compiles after `convert-layout`: each op is placed after a conv of
its own (so that convert-layout turns the conv NHWC and sinks the transpose back into the op, or
leaves it in front of it), the graph is optimized at -O3 and built for host and arm-a72, and the
host module runs against the interpreter of the unoptimized graph.

The examples come from the registry: `EXAMPLES` has one builder per op that is not a plain f32
unary elementwise op (those, `edgec.testing.UNARY` and the discontinuous ones, are built from
the registry alone), and `test_every_op_has_an_example` fails for a registered op without one,
so a new op is covered as soon as it is registered. `BATCH` ops share one graph: one build per
batch and target (12 builds, about 3 minutes of CPU in all; the time goes to the kernels, about
3 per op, not to the builds).
"""

from __future__ import annotations

import numpy as np
import pytest

import tvm
from tvm import relax

import edgec
from edgec import driver
from edgec.ir import DTYPES, Graph, TensorType
from edgec.ops import OPS
from edgec.testing import ATTR_CHOICES, DISCONTINUOUS, DOMAINS, UNARY

from onnx_util import assert_close
from toolchain import needs_arm_build

SHAPE = (1, 4, 6, 6)  # what every op reads: a conv's output, NCHW
BATCH = 24  # ops per graph


class Example:
    """The graph the examples add to: `x()` a new conv's output (f32 SHAPE), `const`, `add`."""

    def __init__(self, g: Graph, x, seed: int):
        self.g, self.input, self.rng = g, x, np.random.default_rng(seed)

    def x(self):
        """A new conv of the graph input (weights of its own, so no two are merged by cse)."""
        w = self.const((SHAPE[1], self.input.type.shape[1], 3, 3), -0.5, 0.5)
        return self.add("conv", [self.input, w], {"pads": [1, 1, 1, 1]})

    def const(self, shape, low=-1.0, high=1.0, dtype="f32"):
        if dtype == "bool":
            return self.g.const(self.rng.random(shape) < 0.5)
        if dtype[0] in "iu":
            return self.g.const(self.rng.integers(low, high + 1, size=shape).astype(DTYPES[dtype]))
        return self.g.const(self.rng.uniform(low, high, size=shape).astype(np.float32))

    def add(self, op, inputs, attrs=None):
        """The node's result; a list of them when it has several."""
        node = self.g.add(op, inputs, attrs or {}, origin=[op])
        return list(node.outputs) if len(node.outputs) > 1 else node.output

    # Values derived from a conv's output, as real models make them.
    def positive(self, x=None):
        return self.add("add", [self.add("abs", [x if x is not None else self.x()]), self.g.const(np.float32(0.5))])

    def ints(self, dtype="i32", scale=4.0):
        return self.add("cast", [self.add("mul", [self.x(), self.g.const(np.float32(scale))])], {"to": dtype})

    def mask(self):
        return self.add("greater", [self.x(), self.g.const(np.float32(0.0))])

    def quantized(self, dtype="u8"):
        return self.add("quantize_linear", [self.x()], {"scale": [0.02], "zero_point": [128 if dtype == "u8" else 0],
                                                        "dtype": dtype})


C = SHAPE[1]
Q = {"x_scale": 0.02, "x_zero_point": 128, "y_scale": 0.05, "y_zero_point": 128}  # qlinear unary/pool
QBIN = {"a_scale": 0.02, "a_zero_point": 128, "b_scale": 0.03, "b_zero_point": 120, "y_scale": 0.05,
        "y_zero_point": 128}
QCONV = {"pads": [1, 1, 1, 1], "x_scale": 0.02, "x_zero_point": 128, "w_scale": [0.01], "y_scale": 0.1,
         "y_zero_point": 128}


def _binary(op, **kw):
    """op(conv, a per-channel constant): the constant is transposed with the op when it sinks."""
    return lambda e: [e.add(op, [e.x(), e.const((C, 1, 1), 0.5, 1.5)], kw)]


def _reduce(op, positive=False):
    return lambda e: [e.add(op, [e.positive() if positive else e.x()], {"axes": [1], "keepdims": 0}),
                      e.add(op, [e.positive() if positive else e.x()], {"axes": [2, 3], "keepdims": 1})]


# op -> builder(Example) -> the values it makes (graph outputs)
EXAMPLES = {
    **{op: _binary(op) for op in ("add", "sub", "mul", "div", "max", "min", "prelu", "equal", "greater",
                                  "greater_equal", "less", "less_equal")},
    "mod": _binary("mod", fmod=1),
    "pow": lambda e: [e.add("pow", [e.positive(), e.const((C, 1, 1), 0.5, 2.0)])],
    **{op: (lambda op: lambda e: [e.add(op, [e.mask(), e.const((C, 1, 1), dtype="bool")])])(op)
       for op in ("and", "or", "xor")},
    "not": lambda e: [e.add("not", [e.mask()])],
    **{op: (lambda op: lambda e: [e.add(op, [e.ints(), e.const((C, 1, 1), -8, 8, "i32")])])(op)
       for op in ("bitwise_and", "bitwise_or", "bitwise_xor")},
    "bitwise_not": lambda e: [e.add("bitwise_not", [e.ints()])],
    "bitshift": lambda e: [e.add("bitshift", [e.ints("u8", 2.0), e.const((C, 1, 1), 0, 3, "u8")],
                                 {"direction": "RIGHT"})],
    "cast": lambda e: [e.ints("i32"), e.add("cast", [e.x()], {"to": "f16"})],
    "is_inf": lambda e: [e.add("is_inf", [e.x()])],
    "is_nan": lambda e: [e.add("is_nan", [e.x()])],
    "where": lambda e: [e.add("where", [e.mask(), e.x(), e.const((C, 1, 1))])],
    "clip": lambda e: [e.add("clip", [e.x()], {"min": 0.0, "max": 0.5})],
    "fused_elementwise": lambda e: [e.add("fused_elementwise", [e.x(), e.const((C, 1, 1))],
                                          {"body": "%2 = mul(%0, %1); %3 = relu(%2)"})],
    "fused": lambda e: [e.add("fused", [e.x(), e.const((C, C, 3, 3), -0.5, 0.5), e.const((C, 1, 1))],
                              {"body": "%3 = conv(%0, %1) {pads=[1,1,1,1]}; %4 = add(%3, %2)"})],
    # layout-sensitive: convert-layout converts them
    "conv": lambda e: [e.add("conv", [e.x(), e.const((2, C, 3, 3)), e.const((2,))], {"pads": [1, 1, 1, 1]}),
                       e.add("conv", [e.x(), e.const((C, 1, 3, 3))], {"group": C, "strides": [2, 2]})],
    "avg_pool": lambda e: [e.add("avg_pool", [e.x()], {"kernel_shape": [2, 2], "strides": [2, 2]})],
    "max_pool": lambda e: [e.add("max_pool", [e.x()], {"kernel_shape": [3, 3], "pads": [1, 1, 1, 1]})],
    "global_avg_pool": lambda e: [e.add("global_avg_pool", [e.x()])],
    "global_max_pool": lambda e: [e.add("global_max_pool", [e.x()])],
    "batch_norm": lambda e: [e.add("batch_norm", [e.x(), e.const((C,), 0.5, 1.5), e.const((C,)), e.const((C,)),
                                                  e.const((C,), 0.5, 2.0)])],
    "conv_integer": lambda e: [e.add("conv_integer", [e.quantized(), e.const((2, C, 3, 3), -50, 50, "i8")],
                                     {"x_zero_point": 128})],
    "qlinear_conv": lambda e: [e.add("qlinear_conv", [e.quantized(), e.const((2, C, 3, 3), -50, 50, "i8"),
                                                      e.const((2,), -100, 100, "i32")], QCONV)],
    # not layout-sensitive: convert-layout leaves them in NCHW, behind a transpose back
    "conv_transpose": lambda e: [
        e.add("conv_transpose", [e.x(), e.const((C, 2, 2, 2))], {"strides": [2, 2]}),
        e.add("conv_transpose", [e.x(), e.const((C, 1, 3, 3)), e.const((2,))],
              {"strides": [2, 2], "pads": [1, 1, 1, 1], "output_padding": [1, 1], "group": 2})],
    "dense": lambda e: [e.add("dense", [e.x(), e.const((3, SHAPE[3])), e.const((3,))])],
    "matmul": lambda e: [e.add("matmul", [e.x(), e.const((SHAPE[3], 5))]),
                         e.add("matmul", [e.x(), e.const((5, SHAPE[3]))], {"transpose_b": 1})],
    "einsum": lambda e: [e.add("einsum", [e.x(), e.const((3, C))], {"equation": "nchw,kc->nkhw"})],
    "concat": lambda e: [e.add("concat", [e.x(), e.x()], {"axis": 1}),
                         e.add("concat", [e.x(), e.const((1, 2, 6, 6))], {"axis": 1})],
    "split": lambda e: e.add("split", [e.x()], {"axis": 1, "sizes": [1, 3]}),
    "slice": lambda e: [e.add("slice", [e.x()], {"starts": [1, 1], "ends": [3, 5], "axes": [1, 3], "steps": [1, 2]})],
    "pad": lambda e: [e.add("pad", [e.x()], {"pads": [0, 0, 1, 2, 0, 0, 1, 0]}),
                      e.add("pad", [e.x()], {"pads": [0, 0, 1, 1, 0, 0, 1, 1], "mode": "reflect"})],
    "resize": lambda e: [e.add("resize", [e.x()], {"sizes": [1, C, 12, 12], "scales": [1.0, 1.0, 2.0, 2.0]}),
                         e.add("resize", [e.x()], {"sizes": [1, C, 9, 9], "scales": [1.0, 1.0, 1.5, 1.5],
                                                   "mode": "linear"})],
    "reshape": lambda e: [e.add("reshape", [e.x()], {"shape": [1, C, 36]})],
    "transpose": lambda e: [e.add("transpose", [e.x()], {"perm": [0, 2, 3, 1]}),
                            e.add("transpose", [e.x()], {"perm": [0, 1, 3, 2]})],
    "expand": lambda e: [e.add("expand", [e.x()], {"shape": [2, C, 6, 6]})],
    "tile": lambda e: [e.add("tile", [e.x()], {"repeats": [1, 2, 1, 1]})],
    "identity": lambda e: [e.add("identity", [e.x()])],
    "gather": lambda e: [e.add("gather", [e.x(), e.const((2,), 0, C - 1, "i64")], {"axis": 1})],
    "gather_elements": lambda e: [e.add("gather_elements", [e.x(), e.const(SHAPE, 0, SHAPE[3] - 1, "i64")],
                                        {"axis": 3})],
    "gather_nd": lambda e: [e.add("gather_nd", [e.x(), e.g.const(np.array([[0, 1], [0, 3]], np.int64))])],
    "scatter_elements": lambda e: [e.add("scatter_elements", [e.x(), e.g.const(np.tile(
        np.array([5, 0], np.int64), (1, C, 6, 1))), e.const((1, C, 6, 2))], {"axis": 3})],
    "scatter_nd": lambda e: [e.add("scatter_nd", [e.x(), e.g.const(np.array([[0, 2], [0, 1]], np.int64)),
                                                  e.const((2, 6, 6))])],
    "argmax": lambda e: [e.add("argmax", [e.x()], {"axis": 1, "keepdims": 1})],
    "argmin": lambda e: [e.add("argmin", [e.x()], {"axis": 1, "keepdims": 0})],
    "one_hot": lambda e: [e.add("one_hot", [e.add("argmax", [e.x()], {"axis": 1, "keepdims": 0})], {"depth": C})],
    "topk": lambda e: e.add("topk", [e.x()], {"k": 2, "axis": 1}),
    "cumsum": lambda e: [e.add("cumsum", [e.x()], {"axis": 1}), e.add("cumsum", [e.x()], {"axis": 3, "reverse": 1})],
    "cumprod": lambda e: [e.add("cumprod", [e.x()], {"axis": 1})],
    "depth_to_space": lambda e: [e.add("depth_to_space", [e.x()], {"blocksize": 2})],
    "space_to_depth": lambda e: [e.add("space_to_depth", [e.x()], {"blocksize": 2})],
    "trilu": lambda e: [e.add("trilu", [e.x()], {"upper": 0})],
    **{op: (lambda op: lambda e: [e.add(op, [e.x()], {"axis": 1}), e.add(op, [e.x()], {"axis": -1})])(op)
       for op in ("softmax", "log_softmax", "hardmax")},
    "layer_norm": lambda e: [e.add("layer_norm", [e.x(), e.const((SHAPE[3],)), e.const((SHAPE[3],))])],
    "group_norm": lambda e: [e.add("group_norm", [e.x(), e.const((C,)), e.const((C,))], {"num_groups": 2})],
    "instance_norm": lambda e: [e.add("instance_norm", [e.x(), e.const((C,)), e.const((C,))])],
    "lrn": lambda e: [e.add("lrn", [e.x()], {"size": 3})],
    **{op: _reduce(op, op in ("reduce_log_sum", "reduce_prod")) for op in OPS
       if OPS[op].kind == "reduction" and "axes" in OPS[op].attrs},
    "bitcast": lambda e: [e.add("bitcast", [e.ints("i32")], {"to": "u32"})],  # exact: a float result would differ by ulps
    "grid_sample": lambda e: [e.add("grid_sample", [e.x(), e.const((1, 5, 5, 2))]),
                              e.add("grid_sample", [e.x(), e.const((1, 4, 3, 2), -1.2, 1.2)],
                                    {"mode": "nearest", "padding_mode": "border"})],
    # an RNN layer's time loop over its inputs projected by a conv: T=6 steps of 24 features
    "recurrence": lambda e: e.add("recurrence", [
        e.add("reshape", [e.x()], {"shape": [6, 1, 1, 24]}), e.const((1, 24, 24), -0.3, 0.3), e.const((1, 1, 24)),
        e.g.const(np.array([6], np.int32))], {"cell": "rnn", "activations": "tanh", "activation_alpha": [0.0],
                                              "activation_beta": [0.0]}),
    # quantized
    "quantize_linear": lambda e: [e.quantized("u8"), e.add("quantize_linear", [e.x()], {
        "scale": [0.02, 0.03, 0.04, 0.05], "zero_point": [0, 1, 2, 3], "axis": 1, "dtype": "i8"})],
    "dequantize_linear": lambda e: [e.add("dequantize_linear", [e.quantized()], {"scale": [0.02], "zero_point": [128]}),
                                    e.add("dequantize_linear", [e.quantized("i8")], {
                                        "scale": [0.02, 0.03, 0.04, 0.05], "axis": 1})],
    "dynamic_quantize_linear": lambda e: e.add("dynamic_quantize_linear", [e.x()]),
    "matmul_integer": lambda e: [e.add("matmul_integer", [e.quantized(), e.const((SHAPE[3], 3), -50, 50, "i8")],
                                       {"a_zero_point": [128]})],
    "qlinear_matmul": lambda e: [e.add("qlinear_matmul", [e.quantized(), e.const((SHAPE[3], 3), 0, 255, "u8")], {
        "a_scale": 0.02, "a_zero_point": 128, "b_scale": [0.01], "b_zero_point": [128], "y_scale": 0.1,
        "y_zero_point": 128})],
    "qlinear_add": lambda e: [e.add("qlinear_add", [e.quantized(), e.const((C, 1, 1), 0, 255, "u8")], QBIN)],
    "qlinear_mul": lambda e: [e.add("qlinear_mul", [e.quantized(), e.const((C, 1, 1), 0, 255, "u8")], QBIN)],
    "qlinear_sigmoid": lambda e: [e.add("qlinear_sigmoid", [e.quantized()], Q)],
    "qlinear_leaky_relu": lambda e: [e.add("qlinear_leaky_relu", [e.quantized()], {**Q, "alpha": 0.1})],
    "qlinear_avg_pool": lambda e: [e.add("qlinear_avg_pool", [e.quantized()], {**Q, "kernel_shape": [2, 2],
                                                                              "strides": [2, 2]})],
    "qlinear_global_avg_pool": lambda e: [e.add("qlinear_global_avg_pool", [e.quantized()], Q)],
    "qlinear_concat": lambda e: [e.add("qlinear_concat", [e.quantized(), e.quantized()], {
        "axis": 1, "scales": [0.02, 0.02], "zero_points": [128, 128], "y_scale": 0.03, "y_zero_point": 128})],
}


def _unary(op):
    """op(conv), the conv brought into the op's domain as `edgec.testing`'s generators do."""
    def build(e):
        domain = DOMAINS.get(op)
        if domain == "positive":
            x = e.positive()
        elif domain == "at-least-one":
            x = e.add("add", [e.positive(), e.g.const(np.float32(0.5))])
        elif domain == "unit":
            x = e.add("mul", [e.add("tanh", [e.x()]), e.g.const(np.float32(0.9))])
        else:
            x = e.x()
        return [e.add(op, [x], ATTR_CHOICES.get(op, [{}])[0])]
    return build


for _op in [*UNARY, *sorted(DISCONTINUOUS - {"cast", "is_inf", "is_nan"})]:
    EXAMPLES.setdefault(_op, _unary(_op))


def test_every_op_has_an_example():
    missing = sorted(set(OPS) - set(EXAMPLES))
    assert not missing, (f"registered ops without an example in {__file__}'s EXAMPLES: {', '.join(missing)}; "
                         "add one (a small use of the op after a conv) so it is compiled after convert-layout")


OP_BATCHES = [sorted(EXAMPLES)[i:i + BATCH] for i in range(0, len(EXAMPLES), BATCH)]


def batch_graph(ops: list[str]) -> Graph:
    """One graph: every op of `ops` after convs of the input x: f32[1,3,6,6]; all it makes are outputs."""
    g = Graph()
    x = g.add_input("x", TensorType("f32", (1, 3, *SHAPE[2:])))
    e = Example(g, x, seed=0)
    outs, names = [], []
    for op in ops:
        for i, v in enumerate(EXAMPLES[op](e)):
            outs.append(v)
            names.append(f"{op}_{i}")
    g.set_outputs(outs, names)
    return g


def _feeds(g: Graph) -> dict[str, np.ndarray]:
    return {"x": np.random.default_rng(1).normal(0, 1, (1, 3, *SHAPE[2:])).astype(np.float32)}


def check_built(result, target: str) -> None:
    """convert-layout had its reason: the convs are NHWC."""
    convs = [n for n in result.graph.nodes if n.op == "conv"]
    assert convs and all(n.attrs["layout"] == "NHWC" for n in convs), f"{target}: not every conv is NHWC"


def run_on_host(result, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    vm = relax.VirtualMachine(result.built.executable, tvm.cpu())
    got = vm["main"](*[tvm.runtime.tensor(feeds[v.name]) for v in result.graph.inputs])
    return {name: r.numpy() for name, r in zip(result.graph.output_names, got)}


def test_conv_transpose_after_a_nhwc_conv_keeps_nchw_and_a_schedule():
    """The layout pass leaves conv_transpose NCHW (it has no layout attribute): the transpose
    back from the NHWC conv stays in front of it, and its kernel is scheduled by the tiled rule on
    host and arm-a72 (a conv2d_transpose in NHWC once reached TVM and had no lowering)."""
    g = batch_graph(["conv_transpose"])
    feeds = _feeds(g)
    for target in ("host", "arm-a72"):
        result = driver.build(g.copy(), target, level=3)
        check_built(result, target)
        nodes = [n for n in result.graph.nodes if n.op == "conv_transpose"]
        assert len(nodes) == 2 and all(n.inputs[0].producer().op == "transpose" for n in nodes), target
        names = [k for k in result.schedules if k.endswith("_conv_transpose")]
        assert len(names) == 2 and all(result.schedules[k] == "tiled_reduction" for k in names), result.schedules
        if target == "host":
            assert_close(run_on_host(result, feeds), edgec.interpret(g, feeds), rtol=1e-4, atol=1e-4, what=target)


@pytest.mark.parametrize("ops", OP_BATCHES, ids=lambda ops: f"{ops[0]}..{ops[-1]}")
def test_ops_after_convert_layout_build_and_run_on_host(ops):
    g = batch_graph(ops)
    feeds = _feeds(g)
    result = driver.build(g.copy(), "host", level=3)
    check_built(result, "host")
    assert_close(run_on_host(result, feeds), edgec.interpret(g, feeds), rtol=1e-4, atol=1e-4, what="host -O3")


@needs_arm_build
@pytest.mark.parametrize("ops", OP_BATCHES, ids=lambda ops: f"{ops[0]}..{ops[-1]}")
def test_ops_after_convert_layout_build_for_arm(ops, tmp_path):
    """Generating the aarch64 code happens when the library is written, so the artifact is."""
    result = edgec.compile(batch_graph(ops), target="arm-a72", output=tmp_path / "out", level=3)
    check_built(result, "arm-a72")
    assert (tmp_path / "out" / "model.so").stat().st_size > 0
