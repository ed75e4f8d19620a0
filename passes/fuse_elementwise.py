"""fuse-elementwise: chains (trees) of elementwise/broadcast ops -> one `fused_elementwise` node.

Cases:
- a node is fusable when its op is a registered elementwise op with a lowering
  (`edgec.ops.fused.fusable`: unary math and activations, broadcasting binary ops, clip, where,
  cast to a float type, ...) and its single result is a float tensor;
- a fusable node absorbs the fusable producers of its inputs whose every use is inside the
  group (and that are not graph outputs), repeatedly: the group's intermediate results are never
  stored (a value used twice inside the group is computed once); values used outside, constants
  and graph inputs become the fused node's inputs (each Value once);
- an existing `fused_elementwise` node is fusable too: its body is inlined, so running the pass
  twice fuses no further and nested bodies never appear;
- groups of a single node are left alone (nothing to gain); the fused node's `origin` is the
  union of the group's origins, in graph order.
Counts: `fused-groups`, `fused-nodes`.
"""

from __future__ import annotations

from edgec.ir import Graph, Node, is_float
from edgec.ops.fused import format_body, fusable, parse_body
from edgec.passmanager import Pass, register_pass
from edgec.rewrite import merged_origin


def _can_fuse(node: Node) -> bool:
    if len(node.outputs) != 1 or not is_float(node.output.type.dtype):
        return False
    return node.op == "fused_elementwise" or fusable(node.op)


@register_pass
class FuseElementwise(Pass):
    name = "fuse-elementwise"
    summary = "fuse trees of elementwise ops into one fused_elementwise kernel"

    def run(self, graph: Graph) -> bool:
        outputs = {id(v) for v in graph.outputs}
        absorbed: set[int] = set()
        groups: list[list[Node]] = []
        for node in reversed(graph.nodes):
            if id(node) in absorbed or not _can_fuse(node):
                continue
            group = [node]
            grown = True
            while grown:  # absorb producers all of whose uses are inside the group
                grown = False
                for member in list(group):
                    for v in member.inputs:
                        p = v.producer()
                        if p is None or id(p) in absorbed or p in group or not _can_fuse(p):
                            continue
                        if id(v) in outputs or any(user not in group for user, _ in v.uses()):
                            continue
                        group.append(p)
                        grown = True
            if len(group) == 1:
                continue
            absorbed.update(id(n) for n in group)
            groups.append(group)
        for group in groups:
            self._fuse(graph, group)
        return bool(groups)

    def _fuse(self, graph: Graph, group: list[Node]) -> None:
        order = {id(n): i for i, n in enumerate(graph.nodes)}
        members = sorted(group, key=lambda n: order[id(n)])
        member_ids = {id(n) for n in members}
        root = members[-1]
        inputs: list = []
        index: dict[int, int] = {}  # id(value) -> body number, for external inputs
        for n in members:
            for v in n.inputs:
                p = v.producer()
                if (p is None or id(p) not in member_ids) and id(v) not in index:
                    index[id(v)] = len(inputs)
                    inputs.append(v)
        steps: list[tuple[str, list[int], dict]] = []
        for n in members:
            args = [index[id(v)] for v in n.inputs]
            if n.op == "fused_elementwise":
                local = {k: a for k, a in enumerate(args)}
                inner = parse_body(n.attrs["body"], len(n.inputs))
                for k, (op, inner_args, attrs) in enumerate(inner):
                    local[len(n.inputs) + k] = len(inputs) + len(steps)
                    steps.append((op, [local[i] for i in inner_args], attrs))
            else:
                steps.append((n.op, args, dict(n.attrs)))
            index[id(n.output)] = len(inputs) + len(steps) - 1
        body = format_body(steps, len(inputs))
        with graph.inserting_before(root):
            fused = graph.add("fused_elementwise", inputs, {"body": body}, origin=merged_origin(*members))
        graph.replace_all_uses_with(root.output, fused.output)
        for n in reversed(members):
            graph.remove(n)
        self.count("fused-groups")
        self.count("fused-nodes", len(members))
