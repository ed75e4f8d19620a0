"""convert-layout{to=NHWC|NCHW}: move convs, pools and the ops between them to one data layout.

Cases:
- layout-sensitive nodes in the other layout are converted: `conv` (1-D to 3-D), the quantized
  2-D convs `qlinear_conv` and `conv_integer` (weights OIHW <-> OHWI, transformed at compile time
  when constant, by a transpose node otherwise; their bias and per-channel weight scales and zero
  points stay per output channel), `max_pool` (u8/i8 ones between quantized convs too),
  `avg_pool`, `global_avg_pool`, `global_max_pool` and `batch_norm` (rank >= 3): a transpose to
  the new layout goes before the data input, the node's `layout` changes, and a transpose back
  goes after it;
- transpose cancellation: `transpose(transpose(x, p), q)` becomes one transpose by the composed
  permutation, or `x` itself when that is the identity;
- transpose sinking: an elementwise op (any arity, `fused_elementwise` included) whose non-constant
  operands are all transposes by the same permutation, each used only there, becomes the op on
  the untransposed values followed by one transpose; constant operands are transposed at compile
  time (after padding their rank), scalars stay. `resize` (sizes and scales permuted), `pad`
  (pads permuted) and `concat` (axis remapped, all operands transposed alike) sink the same way,
  and so do the layout-sensitive nodes already in the target layout: a transpose into them is
  swallowed by converting them back to the source layout and re-wrapping is not needed;
- reductions (`reduce_*` with axes), `softmax`, `log_softmax`, `hardmax` (coerce_2d=0) and
  `slice` sink a transpose by permuting their axes; a reduction without keepdims is followed by
  the permutation of the axes it keeps (none when they keep their order, as after reducing the
  spatial axes of NHWC); `quantize_linear` and `dequantize_linear` sink it as they are when per
  tensor (one scale: the axis is unused) and with their `axis` permuted when per axis, so that a
  chain of quantized convs between a quantize and a dequantize keeps no transposes inside;
- then, once nothing cancels or sinks any more: a transpose that moves only axes of size 1
  becomes a `reshape` (after a global pool, the transpose back to NCHW is just a reshape), and
  `reshape(reshape(x))` one reshape (or `x`), so a CNN converted end to end keeps transposes only
  at the graph boundaries;
Statistics: `transposes-before` (in the pass's input), `transposes-inserted`, `transposes-removed`,
`transposes-left`, `weights-transformed`,
`converted-<op>`. Refused (reason given): sinking through an op whose other operands are neither
constants nor the same transpose, or whose transposed operand has other uses; an op whose
result would broadcast beyond the transposed operand.
"""

from __future__ import annotations

import numpy as np

from edgec.ir import Graph, Node
from edgec.ops import OPS, ops_with
from edgec.passmanager import Option, register_pass
from edgec.rewrite import Op, Rule, RewritePass, Var, apply_rules

from .simplify_shapes import CANCEL_TRANSPOSES, MERGE_RESHAPES, TRANSPOSE_AS_RESHAPE

SENSITIVE = ops_with("layout_sensitive")  # the convs, batch_norm, the pools
WEIGHTED = ("conv", "conv_integer", "qlinear_conv")  # input 1 is the weight (OIHW <-> OHWI)


def to_last(rank: int) -> list[int]:
    """NC... -> N...C"""
    return [0, *range(2, rank), 1]


def to_first(rank: int) -> list[int]:
    """N...C -> NC..."""
    return [0, rank - 1, *range(1, rank - 1)]


def inverse(perm: list[int]) -> list[int]:
    return [int(i) for i in np.argsort(perm)]


# Ops whose axes attribute follows a transpose sunk through them (`sink-axes`).
REDUCE_OPS = tuple(sorted(n for n, d in OPS.items() if d.kind == "reduction" and "axes" in d.attrs
                          and "keepdims" in d.attrs))
SOFTMAX_OPS = ("hardmax", "log_softmax", "softmax")
QDQ_OPS = ("dequantize_linear", "quantize_linear")  # `axis` names the dimension of a per-axis scale
AXES_OPS = (*REDUCE_OPS, *SOFTMAX_OPS, *QDQ_OPS, "slice")


def _transposed_input(v):
    p = v.producer()
    return p if p is not None and p.op == "transpose" else None


def _reads_a_transpose(node: Node) -> bool:
    return any(_transposed_input(v) is not None for v in node.inputs)


@register_pass
class ConvertLayout(RewritePass):
    name = "convert-layout"
    summary = "convert convs, pools and the ops between them to NHWC or NCHW, cancelling transposes"
    options = {"to": Option("NHWC", choices=("NHWC", "NCHW"))}

    def run(self, graph: Graph) -> bool:
        before = sum(n.op == "transpose" for n in graph.nodes)
        first = apply_rules(graph, self.rules(), count=self.count)
        # Only once nothing cancels any more: transposes of unit axes become reshapes.
        second = apply_rules(graph, [TRANSPOSE_AS_RESHAPE, MERGE_RESHAPES], count=self.count)
        self.refusals = first.refusals + second.refusals
        changed = first.changed or second.changed
        after = sum(n.op == "transpose" for n in graph.nodes)
        if changed:
            inserted = self.stats.get("transposes-inserted", 0)
            self.count("transposes-before", before)
            self.count("transposes-removed", before + inserted - after)
            self.count("transposes-left", after)
        return changed

    # ---- rules -------------------------------------------------------------------------------
    def rules(self) -> list[Rule]:
        target = self.opts["to"]
        source = "NCHW" if target == "NHWC" else "NHWC"
        x = Var("x")
        rules = [
            CANCEL_TRANSPOSES,
            Rule("convert", Op(SENSITIVE, any_inputs=True, attrs={"layout": source}),
                 lambda g, m: self._convert(g, m, target), self._check_convert),
            Rule("sink-elementwise", Op(tuple(n for n, d in OPS.items() if d.kind == "elementwise"), any_inputs=True,
                                        where=_reads_a_transpose), self._sink_elementwise, self._check_sink_elementwise),
            Rule("sink-resize-pad", Op(("resize", "pad"), x, where=_reads_a_transpose), self._sink_axis_op,
                 self._check_sink_single),
            Rule("sink-concat", Op("concat", any_inputs=True, where=_reads_a_transpose), self._sink_concat,
                 self._check_sink_concat),
            Rule("sink-axes", Op(AXES_OPS, x, where=_reads_a_transpose), self._sink_axes, self._check_sink_axes),
        ]
        return rules

    # ---- converting layout-sensitive nodes ---------------------------------------------------
    @staticmethod
    def _check_convert(m):
        node = m.root
        rank = node.inputs[0].type.rank
        if rank < 3:
            return f"{node.op} of a rank-{rank} tensor has no layout"
        return None

    def _convert(self, graph, m, target):
        node = m.root
        rank = node.inputs[0].type.rank
        into, back = (to_last(rank), to_first(rank)) if target == "NHWC" else (to_first(rank), to_last(rank))
        origin = node.origin
        ins = [graph.add("transpose", [node.inputs[0]], {"perm": into}, origin=origin).output]
        self.count("transposes-inserted")
        for i, v in enumerate(node.inputs[1:], start=1):
            if node.op in WEIGHTED and i == 1:
                if v.const is not None:
                    v = graph.const(np.ascontiguousarray(np.transpose(v.const, into)))
                    self.count("weights-transformed")
                else:
                    v = graph.add("transpose", [v], {"perm": into}, origin=origin).output
                    self.count("transposes-inserted")
            ins.append(v)
        new = graph.add(node.op, ins, {**node.attrs, "layout": target}, origin=origin)
        self.count(f"converted-{node.op}")
        self.count("transposes-inserted")
        return [graph.add("transpose", [new.output], {"perm": back}, origin=origin).output]

    # ---- sinking -------------------------------------------------------------------------------
    @staticmethod
    def _transposes_feeding(node: Node) -> tuple[list[int] | None, str | None]:
        """The common permutation of the transposed operands, or the reason there is none."""
        perm = None
        for v in node.inputs:
            t = _transposed_input(v)
            if t is None:
                continue
            if perm is not None and t.attrs["perm"] != perm:
                return None, "its operands are transposed by different permutations"
            perm = t.attrs["perm"]
        if perm is None:
            return None, "no operand is a transpose"
        outputs = {id(v) for v in node.graph.outputs}
        for v in node.inputs:
            t = _transposed_input(v)
            if t is not None and (len(v.uses()) != 1 or id(v) in outputs):
                return None, "a transposed operand has other uses"
        return perm, None

    def _check_sink_elementwise(self, m):
        node = m.root
        perm, reason = self._transposes_feeding(node)
        if reason:
            return reason
        rank = len(perm)
        for v in node.inputs:
            if _transposed_input(v) is None and v.const is None and v.type.size != 1:
                return "an operand is neither a constant nor transposed alike"
            if v.type.rank > rank:
                return "an operand has a higher rank than the transposed one"
        out = node.outputs[0].type.shape
        for v in node.inputs:
            if _transposed_input(v) is not None and v.type.shape != out:
                return "the op broadcasts a transposed operand"
        return None

    def _untransposed(self, graph, v, perm, m):
        """The operand as it must be read by the op moved before the transpose."""
        t = _transposed_input(v)
        if t is not None:
            m.nodes.append(t)  # dead after the rewrite: the driver removes it
            return t.inputs[0]
        if v.const is None or v.type.size == 1:
            return v  # a size-1 value broadcasts the same either way
        arr = v.const.reshape((1,) * (len(perm) - v.type.rank) + v.type.shape)
        return graph.const(np.ascontiguousarray(np.transpose(arr, inverse(perm))))

    def _sink_elementwise(self, graph, m):
        node = m.root
        perm, _ = self._transposes_feeding(node)
        ins = [self._untransposed(graph, v, perm, m) for v in node.inputs]
        moved = graph.add(node.op, ins, dict(node.attrs), origin=node.origin)
        return [graph.add("transpose", [moved.output], {"perm": perm}, origin=node.origin).output]

    @staticmethod
    def _check_sink_single(m):
        t = _transposed_input(m["x"])
        if t is None:
            return "the operand is not a transpose"
        if len(m["x"].uses()) != 1 or any(v is m["x"] for v in m.root.graph.outputs):
            return "the transposed operand has other uses"
        return None

    def _sink_axis_op(self, graph, m):
        node = m.root
        t = _transposed_input(m["x"])
        m.nodes.append(t)
        perm = t.attrs["perm"]
        inv = inverse(perm)
        attrs = dict(node.attrs)
        if node.op == "resize":
            attrs["sizes"] = [node.attrs["sizes"][inv[j]] for j in range(len(perm))]
            attrs["scales"] = [node.attrs["scales"][inv[j]] for j in range(len(perm))]
        else:
            r = len(perm)
            begins, ends = node.attrs["pads"][:r], node.attrs["pads"][r:]
            attrs["pads"] = [begins[inv[j]] for j in range(r)] + [ends[inv[j]] for j in range(r)]
        moved = graph.add(node.op, [t.inputs[0]], attrs, origin=node.origin)
        return [graph.add("transpose", [moved.output], {"perm": perm}, origin=node.origin).output]

    def _check_sink_axes(self, m):
        reason = self._check_sink_single(m)
        if reason:
            return reason
        node = m.root
        if node.op in SOFTMAX_OPS and node.attrs["coerce_2d"]:
            return f"{node.op} with coerce_2d normalizes a run of axes"
        if node.op in REDUCE_OPS and not node.attrs["axes"]:
            return "a reduction with empty axes"
        return None

    def _sink_axes(self, graph, m):
        """A reduction, softmax, slice or per-axis quantize / dequantize of `transpose(x, p)` on
        axes A: the op on `x` along axes p[A], then the transpose (for a reduction without
        keepdims, by the permutation of the axes left, or none when they keep their order). A
        per-tensor quantize / dequantize keeps its attributes."""
        node = m.root
        t = _transposed_input(m["x"])
        m.nodes.append(t)
        perm = t.attrs["perm"]
        rank = len(perm)
        attrs = dict(node.attrs)
        after = perm
        if node.op in SOFTMAX_OPS:
            attrs["axis"] = perm[node.attrs["axis"] % rank]
        elif node.op in QDQ_OPS:
            if len(node.attrs["scale"]) > 1:
                attrs["axis"] = perm[node.attrs["axis"] % rank]
        else:
            axes = [a % rank for a in node.attrs["axes"]]
            attrs["axes"] = [perm[a] for a in axes]
            if node.op in REDUCE_OPS:
                attrs["axes"] = sorted(attrs["axes"])
                if not node.attrs["keepdims"]:
                    kept = [perm[a] for a in range(rank) if a not in axes]  # x axes, in the output's order
                    order = sorted(kept)
                    after = [order.index(k) for k in kept]
        moved = graph.add(node.op, [t.inputs[0]], attrs, origin=node.origin)
        if after == list(range(len(after))):
            return [moved.output]
        return [graph.add("transpose", [moved.output], {"perm": after}, origin=node.origin).output]

    def _check_sink_concat(self, m):
        node = m.root
        perm, reason = self._transposes_feeding(node)
        if reason:
            return reason
        if any(_transposed_input(v) is None for v in node.inputs):
            return "not every operand is transposed"
        return None

    def _sink_concat(self, graph, m):
        node = m.root
        perm, _ = self._transposes_feeding(node)
        ins = [self._untransposed(graph, v, perm, m) for v in node.inputs]
        axis = node.attrs["axis"] % len(perm)
        moved = graph.add("concat", ins, {**node.attrs, "axis": perm[axis]}, origin=node.origin)
        return [graph.add("transpose", [moved.output], {"perm": perm}, origin=node.origin).output]


