"""simplify-shapes: shorten chains of shape ops on static shapes.

Cases:
- `reshape(reshape(x))` -> one reshape, or `x` when the shapes match;
- `transpose(transpose(x, p), q)` -> one transpose by the composed permutation, or `x` when it is
  the identity;
- a transpose that moves only axes of size 1 -> a `reshape` (no data moves);
- `concat` of a single operand -> that operand;
- `expand(expand(x))` -> one expand.
Shape computations themselves (ONNX Shape/Gather/Concat/Unsqueeze on static shapes) never reach
the IR as nodes: the importer folds them into constant attributes, and `fold-constants` folds any
integer arithmetic left on constants.
"""

from __future__ import annotations

from edgec.ir import Node
from edgec.passmanager import register_pass
from edgec.rewrite import Op, Rule, RewritePass, Var


def compose(inner: list[int], outer: list[int]) -> list[int]:
    """transpose(transpose(x, inner), outer) == transpose(x, compose(inner, outer))."""
    return [inner[j] for j in outer]


def moves_only_unit_axes(node: Node) -> bool:
    perm, shape = node.attrs["perm"], node.inputs[0].type.shape
    moved = [p for p in perm if shape[p] != 1]
    return moved == sorted(moved)


def _reshape_to_result(graph, m):
    """x reshaped to the root's result shape (or x itself when nothing changes)."""
    if m["x"].type == m.root.output.type:
        return [m["x"]]
    return [graph.add("reshape", [m["x"]], {"shape": list(m.root.output.type.shape)}, origin=m.origin()).output]


def _cancel_transposes(graph, m):
    perm = compose(m.node("inner").attrs["perm"], m.root.attrs["perm"])
    if perm == list(range(len(perm))):
        return [m["x"]]
    return [graph.add("transpose", [m["x"]], {"perm": perm}, origin=m.origin()).output]


def _merge_expands(graph, m):
    return [graph.add("expand", [m["x"]], {"shape": list(m.root.output.type.shape)}, origin=m.origin()).output]


X = Var("x")
MERGE_RESHAPES = Rule("merge-reshapes", Op("reshape", Op("reshape", X)), _reshape_to_result)
CANCEL_TRANSPOSES = Rule("cancel-transposes", Op("transpose", Op("transpose", X, name="inner")), _cancel_transposes,
                         allow_shared=True)
TRANSPOSE_AS_RESHAPE = Rule("transpose-as-reshape", Op("transpose", X, where=moves_only_unit_axes), _reshape_to_result)
RULES = [
    MERGE_RESHAPES,                                                                       # reshape(reshape(x)) -> reshape(x)
    CANCEL_TRANSPOSES,                                                                    # T(T(x, p), q) -> T(x, p.q)
    TRANSPOSE_AS_RESHAPE,                                                                 # T of unit axes -> reshape
    Rule("single-concat", Op("concat", X), lambda g, m: [m["x"]]),                       # concat(x) -> x
    Rule("merge-expands", Op("expand", Op("expand", X)), _merge_expands),                 # expand(expand(x)) -> expand(x)
]


@register_pass
class SimplifyShapes(RewritePass):
    name = "simplify-shapes"
    summary = "merge reshape/transpose/expand chains; transposes of unit axes become reshapes"

    def rules(self):
        return RULES

