"""fuse-elementwise: chains (trees) of elementwise/broadcast ops -> one `fused_elementwise` node.

Cases:
- a node is fusable when its op is a registered elementwise op with a lowering
  (`edgec.ops.fused.fusable`: unary math and activations, broadcasting binary ops, clip, where,
  cast to a float type, ...) and its single result is a float tensor;
- a fusable node absorbs the fusable producers of its inputs whose every use is inside the
  group (and that are not graph outputs), repeatedly: the group's intermediate results are never
  stored (a value used twice inside the group is computed once); values used outside, constants
  and graph inputs become the fused node's inputs (each Value once);
- a group stops growing at `max-steps` body steps and at `MAX_FAN_IN` (64) inputs, the most a
  `fused_elementwise` takes: a longer chain becomes several fused nodes, one after the other, so
  that no kernel is unboundedly large (a producer that would pass a limit starts a group of its own);
- an existing `fused_elementwise` node is fusable too: its body is inlined (its steps count
  towards `max-steps`), so running the pass twice fuses no further and nested bodies never appear;
- groups of a single node are left alone (nothing to gain); the fused node's `origin` is the
  union of the group's origins, in graph order.
Groups are grown from the last node backwards; each node is examined once per input, so the pass
is linear in the graph's size.
Counts: `fused-groups`, `fused-nodes`.
"""

from __future__ import annotations

from edgec.ir import Graph, Node, Value, is_float
from edgec.ops import MAX_FAN_IN
from edgec.ops.fused import format_body, fusable, parse_body
from edgec.passmanager import Pass, register_pass
from edgec.rewrite import merged_origin


def _can_fuse(node: Node) -> bool:
    if len(node.outputs) != 1 or not is_float(node.output.type.dtype):
        return False
    return node.op == "fused_elementwise" or fusable(node.op)


def _steps(node: Node) -> int:
    return node.attrs["body"].count(";") + 1 if node.op == "fused_elementwise" else 1


@register_pass
class FuseElementwise(Pass):
    name = "fuse-elementwise"
    summary = "fuse trees of elementwise ops into one fused_elementwise kernel"
    options = {"max-steps": 64}

    def run(self, graph: Graph) -> bool:
        outputs = {id(v) for v in graph.outputs}
        absorbed: set[int] = set()
        groups: list[list[Node]] = []
        for node in reversed(graph.nodes):
            if id(node) in absorbed or not _can_fuse(node):
                continue
            group = self._grow(node, absorbed, outputs)
            if len(group) == 1:
                continue
            absorbed.update(id(n) for n in group)
            groups.append(group)
        for group in groups:
            self._fuse(graph, group)
        return bool(groups)

    def _grow(self, root: Node, absorbed: set[int], outputs: set[int]) -> list[Node]:
        """`root` and the producers it absorbs: those whose result's every use is inside the
        group, within the limits. A producer is examined when a user joins; all its uses are
        inside exactly when the count of uses by members reaches its number of uses."""
        group, members = [root], {id(root)}
        steps = _steps(root)
        external: dict[int, Value] = {id(v): v for v in root.inputs}  # the group's inputs
        inside: dict[int, int] = {}  # id(value) -> uses by members
        work = [root]
        while work:
            member = work.pop()
            for v in member.inputs:
                inside[id(v)] = inside.get(id(v), 0) + 1
            for v in dict.fromkeys(member.inputs):
                p = v.producer()
                if p is None or id(p) in members or id(p) in absorbed or not _can_fuse(p):
                    continue
                if id(v) in outputs or inside[id(v)] != v.num_uses():
                    continue
                new_inputs = {id(w): w for w in p.inputs if id(w) not in external}
                if steps + _steps(p) > self.opts["max-steps"] or len(external) - 1 + len(new_inputs) > MAX_FAN_IN:
                    continue
                del external[id(v)]
                external.update(new_inputs)
                steps += _steps(p)
                group.append(p)
                members.add(id(p))
                work.append(p)
        return group

    def _fuse(self, graph: Graph, group: list[Node]) -> None:
        members = sorted(group, key=Graph.order_key)
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
