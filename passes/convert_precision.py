"""convert-precision{to=fp16|mixed}: compute float32 tensors in float16, in the IR.

The precision of every node is an IR decision: after this pass a node computes in the dtype its
operands and results have, and each f32 <-> f16 conversion is a `cast` node of the IR (fused
into its neighbours by `fuse-elementwise` and `fuse-epilogue` like any elementwise op). Float16
products accumulate in float32 inside the kernel: conv, conv_transpose, dense and matmul lower
to a float32 accumulator narrowed to float16 (compiler/ops/nn.py, `_accumulator`); the few
functions CUDA has no half version of (asin, atan, erf, pow, mod, round, ...: `VIA_FLOAT32` in
compiler/ops/elementwise.py) and grid_sample's coordinates are computed in float32 in their kernel.
The pass runs in the pipeline of `--precision fp16|mixed` (`Target.precision_pipeline`: after
convert-layout) and anywhere `--passes` puts it; CPU targets refuse `--precision`.

Cases:
- `to=fp16`: every node that computes on f32 tensors is rebuilt on f16 operands, with f16
  results, except the nodes whose math needs float32 (`F32_MATH`): the ops that sum many terms
  or normalize by a sum (softmax and log_softmax, layer, instance, group and batch norm, lrn,
  the summing reductions and global/average pooling, cumsum and cumprod, einsum, the recurrence
  loop of LSTM/GRU/RNN) and the quantization ops, whose rounding a float16 input would move;
  they keep f32 operands and results. A node whose results do not become f16 when its operands
  do (its float dtype comes from an attribute: a `cast`'s `to`, `one_hot`'s values) keeps f32;
  a node with f32 operands and only non-float results (`less`, `argmax`, a cast to an integer)
  reads the f16 operands (its results keep their dtype);
- `to=mixed`: only the multiply-accumulate ops (`MAC_OPS`: conv, conv_transpose, dense, matmul)
  run in f16 (float32 accumulation, f16 result); everything else keeps f32;
- a cast to f32 of a non-float tensor (i64, bool) that feeds the f16 computation becomes a cast
  to f16; a cast between float dtypes is an explicit precision choice and is kept as it is;
- boundaries: an f32 value that a converted node reads (a graph input, the result of a node
  that keeps f32) is cast to f16 once, before its first converted reader; the f16 result of a
  converted node that an f32 node or a graph output reads is cast back to f32 once, after it,
  so the graph's inputs and outputs keep their dtypes;
- constants (weights) are converted at compile time, once per constant; finite values beyond
  float16's range (+-65504, e.g. a -1e9 attention mask) are clamped to it instead of becoming
  infinities (an infinity times 0 would be NaN), and nonzero ones below its smallest subnormal
  (2^-24, about 6e-8: a 1e-9 epsilon) to that, instead of vanishing; a constant that an f32
  node also reads keeps its f32 copy for it;
- `fused` and `fused_elementwise` nodes (when the pass runs after the fusion passes) convert as a
  whole under fp16 when their body infers f16 from f16 operands, and keep f32 under mixed;
- f64 tensors and integer computation are left alone; a graph with no f32 computation is
  unchanged. Running the pass again changes nothing (every convertible node is already f16).

Statistics: `converted-<op>`, `kept-f32-<op>` (nodes that compute on f32 and stay so),
`casts-to-f16`, `casts-to-f32`, `constants-converted`, `constants-clamped`.
"""

from __future__ import annotations

import numpy as np

from edgec.errors import VerifyError
from edgec.ir import Graph, Node, TensorType, Value
from edgec.ops import OPS, get_op
from edgec.passmanager import Option, Pass, register_pass

# Ops that keep float32 math under to=fp16, by why:
F32_MATH = frozenset({
    # normalize by a sum or a variance
    "softmax", "log_softmax", "layer_norm", "instance_norm", "group_norm", "batch_norm", "lrn",
    # sum many terms: summing reductions, averages, running sums, contractions without an f32 accumulator
    *(n for n, d in OPS.items() if d.kind == "reduction" and n not in ("reduce_max", "reduce_min", "argmax",
                                                                          "argmin", "global_max_pool")),
    "avg_pool", "cumsum", "cumprod", "einsum", "recurrence",
    # quantization: float16 inputs would move the rounding to the integer grid
    "quantize_linear", "dequantize_linear", "dynamic_quantize_linear",
})
# The multiply-accumulate ops: f16 operands, float32 accumulation in the kernel (to=mixed converts only these).
MAC_OPS = frozenset({"conv", "conv_transpose", "dense", "matmul"})
F16_MAX = float(np.finfo(np.float16).max)  # 65504
F16_TINY = float(np.finfo(np.float16).smallest_subnormal)  # 2**-24, about 6e-8


def _is_f32(v: Value) -> bool:
    return v.type.dtype == "f32"


def _f16(t: TensorType) -> TensorType:
    return TensorType("f16", t.shape) if t.dtype == "f32" else t


@register_pass
class ConvertPrecision(Pass):
    name = "convert-precision"
    summary = "compute float32 tensors in float16 (to=fp16), or only conv, dense and matmul (to=mixed)"
    options = {"to": Option("fp16", choices=("fp16", "mixed"))}

    def run(self, graph: Graph) -> bool:
        half: dict[int, Value] = {}  # id(an f32 value) -> the f16 value converted nodes read instead
        converted: list[tuple[Node, Node]] = []  # (old node, its f16 replacement)
        for node in graph.nodes:
            attrs = self._converted_attrs(node)
            if attrs is None:
                continue
            with graph.inserting_before(node):
                ins = [self._half(graph, v, half, node) if _is_f32(v) else v for v in node.inputs]
                new = graph.add(node.op, ins, attrs, origin=node.origin)
            for old, out in zip(node.outputs, new.outputs):
                if old.type != out.type:
                    half[id(old)] = out
            converted.append((node, new))
            self.count(f"converted-{node.op}")
        if not converted:
            return False
        old_nodes = {id(node) for node, _ in converted}
        for node, new in converted:
            for old, out in zip(node.outputs, new.outputs):
                self._rewire_readers(graph, old, out, old_nodes)
        for node, _ in reversed(converted):
            graph.remove(node)
        return True

    # ---- which nodes ---------------------------------------------------------------------------
    def _converted_attrs(self, node: Node) -> dict | None:
        """The attributes of the f16 node that replaces `node`, or None when it keeps its precision."""
        floats = [v for v in (*node.inputs, *node.outputs) if _is_f32(v)]
        if not floats:
            return None
        attrs = dict(node.attrs)
        if self.opts["to"] == "mixed" and node.op not in MAC_OPS:
            self.count(f"kept-f32-{node.op}")
            return None
        if node.op == "cast":
            if node.inputs[0].type.dtype in ("f16", "f32", "f64") or attrs["to"] != "f32":
                return None  # float <-> float: an explicit choice; float -> integer: reads its operand as it is
            attrs["to"] = "f16"
        elif node.op in F32_MATH:
            self.count(f"kept-f32-{node.op}")
            return None
        try:
            types = get_op(node.op).infer([_f16(v.type) for v in node.inputs], get_op(node.op).complete_attrs(attrs))
        except VerifyError:
            types = None
        if types is None or [t for t in types] != [_f16(v.type) for v in node.outputs]:
            self.count(f"kept-f32-{node.op}")  # its results would not follow its operands to f16
            return None
        return attrs

    # ---- boundaries ----------------------------------------------------------------------------
    def _half(self, graph: Graph, v: Value, half: dict[int, Value], reader: Node) -> Value:
        """The f16 counterpart of the f32 value `v` (made once): a converted constant, the result
        of `v`'s converted producer, or a cast inserted at the insertion point, before `reader`,
        the first converted node that reads `v` (the cast has the origin of `v`'s producer, or
        the reader's for a graph input)."""
        if id(v) in half:
            return half[id(v)]
        if v.is_const:
            arr = np.asarray(v.const_value())
            magnitude = np.abs(arr)
            large = np.isfinite(arr) & (magnitude > F16_MAX)
            tiny = (arr != 0) & (magnitude < F16_TINY)
            if large.any() or tiny.any():
                self.count("constants-clamped")
                arr = np.where(large, np.sign(arr) * F16_MAX, np.where(tiny, np.sign(arr) * F16_TINY, arr))
            out = graph.const(arr.astype(np.float16))
            self.count("constants-converted")
        else:
            producer = v.producer()
            origin = producer.origin if producer is not None else reader.origin
            out = graph.add("cast", [v], {"to": "f16"}, origin=origin).output
            self.count("casts-to-f16")
        half[id(v)] = out
        return out

    def _rewire_readers(self, graph: Graph, old: Value, out: Value, old_nodes: set[int]) -> None:
        """Point the readers of `old` (a result of a converted node) that stay, and the graph
        outputs, at `out`, through one cast back to f32 when `out` is f16."""
        readers = [(n, i) for n, i in old.uses() if id(n) not in old_nodes]
        outputs = [i for i, v in enumerate(graph.outputs) if v is old]
        if not readers and not outputs:
            return
        if old.type != out.type:
            with graph.inserting_after(out.producer()):
                out = graph.add("cast", [out], {"to": old.type.dtype}, origin=out.producer().origin).output
            self.count("casts-to-f32")
        for n, i in readers:
            n.set_input(i, out)
        for i in outputs:
            graph.outputs[i] = out
