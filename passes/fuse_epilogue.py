"""fuse-epilogue: a conv, dense or matmul and the elementwise node after it -> one `fused` node.

Cases:
- an elementwise node E (a fusable op, `edgec.ops.fused.fusable`, or a `fused_elementwise`) with
  a float result, one of whose operands is the result of a linear node A (`conv`, `dense`,
  `matmul`: the ops with the `anchor` trait, any layout, with or without a fused activation) that is
  used only by E and is not a graph output, becomes `fused(A's inputs, E's other operands)` whose
  body is A's step then E's steps (a `fused_elementwise` is inlined): the residual add after a
  conv or dense, the scale after an attention matmul, an activation a linear op has no
  attribute for, in the linear op's kernel, its result never stored;
- E takes the first such operand in its operand order; each Value is one input of the fused node;
- the fused node's `origin` is A's then E's; it keeps E's result.
Refused (left as they are): E's result shaped other than A's (a broadcast to a larger shape),
A with a non-float result or more than one use, more than MAX_FAN_IN (64) inputs in all, and
an existing `fused` node (it never absorbs a second step sequence: run after fuse-elementwise).
Count: `fused-epilogues`.
"""

from __future__ import annotations

from edgec.ir import Graph, Node, is_float
from edgec.ops import MAX_FAN_IN
from edgec.ops import get_op
from edgec.ops.fused import format_body, fusable, parse_body
from edgec.passmanager import Pass, register_pass
from edgec.rewrite import merged_origin


def _epilogue_steps(node: Node) -> list[tuple[str, list[int], dict]] | None:
    """The node's steps over its own inputs (%0..), or None when it cannot be an epilogue."""
    if len(node.outputs) != 1 or not is_float(node.output.type.dtype):
        return None
    if node.op == "fused_elementwise":
        return parse_body(node.attrs["body"], len(node.inputs))
    if fusable(node.op):
        return [(node.op, list(range(len(node.inputs))), dict(node.attrs))]
    return None


def _anchor(node: Node, outputs: set[int]) -> int | None:
    """The operand index of `node` whose producer can take it as its epilogue, or None."""
    for i, v in enumerate(node.inputs):
        p = v.producer()
        if p is None or not get_op(p.op).anchor or len(p.outputs) != 1 or not is_float(v.type.dtype):
            continue
        if v.num_uses() != 1 or id(v) in outputs or v.type.shape != node.output.type.shape:
            continue
        return i
    return None


@register_pass
class FuseEpilogue(Pass):
    name = "fuse-epilogue"
    summary = "fuse the elementwise node after a conv, dense or matmul into its kernel (a fused node)"

    def run(self, graph: Graph) -> bool:
        outputs = {id(v) for v in graph.outputs}
        changed = False
        for node in graph.nodes:
            steps = _epilogue_steps(node)
            if steps is None:
                continue
            i = _anchor(node, outputs)
            if i is None:
                continue
            anchor = node.inputs[i].producer()
            inputs = list(dict.fromkeys([*anchor.inputs, *(v for k, v in enumerate(node.inputs) if k != i)]))
            if len(inputs) > MAX_FAN_IN:
                continue
            index = {id(v): k for k, v in enumerate(inputs)}
            first = len(inputs)  # the anchor's result in the body
            local = [first if k == i else index[id(v)] for k, v in enumerate(node.inputs)]
            body = [(anchor.op, [index[id(v)] for v in anchor.inputs], dict(anchor.attrs))]
            for op, args, attrs in steps:
                body.append((op, [local[a] if a < len(node.inputs) else first + a - len(node.inputs) + 1
                                  for a in args], attrs))
            with graph.inserting_before(node):
                fused = graph.add("fused", inputs, {"body": format_body(body, len(inputs))},
                                  origin=merged_origin(anchor, node))
            graph.replace_all_uses_with(node.output, fused.output)
            graph.remove(node)
            graph.remove(anchor)
            self.count("fused-epilogues")
            changed = True
        return changed
