"""cse: common subexpression elimination.

Cases:
- two nodes with the same op, the same attributes and the same inputs (the same Values) compute
  the same result: the later one is removed and its uses (graph outputs included) go to the
  earlier one, whose `origin` becomes the union of both;
- for commutative binary ops (`add`, `mul`, `min`, `max`) the order of the two inputs does not
  matter (`a+b` and `b+a` are the same);
- equal constants (same type, same content hash) are merged into one Value first, so nodes that
  read equal constants also merge (counted as `constants-merged`);
- placeholder constants (parsed from a hash-only dump) merge when their hashes are equal;
- merging cascades in one sweep, since nodes are visited in topological order.
"""

from edgec.ir import Graph, Value
from edgec.ops import get_op
from edgec.passmanager import Pass, register_pass
from edgec.rewrite import merged_origin
from edgec.text import const_hash



def _attr_key(value):
    if isinstance(value, list):
        return tuple(_attr_key(v) for v in value)
    return (type(value).__name__, value)


@register_pass
class CommonSubexpressionElimination(Pass):
    name = "cse"
    summary = "merge nodes that compute the same thing, and equal constants"

    def run(self, graph: Graph) -> bool:
        changed = False
        constants: dict[tuple, Value] = {}

        def canonical(v: Value) -> Value:
            if not v.is_const:
                return v
            key = (v.type, const_hash(v))
            return constants.setdefault(key, v)

        seen: dict[tuple, object] = {}
        merged: dict[int, tuple] = {}  # id(kept node) -> (kept node, [nodes merged into it])
        for node in graph.nodes:
            for i, v in enumerate(node.inputs):
                c = canonical(v)
                if c is not v:
                    node.set_input(i, c)
                    self.count("constants-merged")
                    changed = True
            ids = [id(v) for v in node.inputs]
            if get_op(node.op).commutative and len(ids) == 2:
                ids.sort()
            key = (node.op, tuple(ids), tuple(sorted((k, _attr_key(v)) for k, v in node.attrs.items())),
                   tuple(o.type for o in node.outputs))
            first = seen.get(key)
            if first is None:
                seen[key] = node
                continue
            merged.setdefault(id(first), (first, []))[1].append(node)
            graph.replace_node(node, list(first.outputs))
            self.count("merged")
            changed = True
        for first, others in merged.values():  # once per kept node: k merges cost O(k), not O(k^2)
            first.origin = merged_origin(first, *others)
        for i, v in enumerate(graph.outputs):
            c = canonical(v)
            if c is not v:
                graph.outputs[i] = c
                self.count("constants-merged")
                changed = True
        return changed
