"""The verifier: a table of invariants, each a function that returns a problem or None.

Messages name the node with its ONNX origin and say what is wrong.
"""

from __future__ import annotations

from typing import Callable

from .errors import EdgecError, VerifyError
from .ir import Graph, Node
from .ops import OPS


def _registered(graph: Graph, node: Node, seen: set[int]) -> str | None:
    return None if node.op in OPS else f"op '{node.op}' is not registered"


def _defined_before_use(graph: Graph, node: Node, seen: set[int]) -> str | None:
    for i, v in enumerate(node.inputs):
        if not v.is_const and id(v) not in seen:
            return f"input {i} ({v.type}) is not defined before this node (order or dangling value)"
    return None


def _input_count(graph: Graph, node: Node, seen: set[int]) -> str | None:
    lo, hi = OPS[node.op].num_inputs
    n = len(node.inputs)
    if n < lo or (hi >= 0 and n > hi):
        want = f"{lo}" if lo == hi else f"{lo} to {'any' if hi < 0 else hi}"
        return f"has {n} inputs, '{node.op}' takes {want}"
    return None


def _attrs_match_schema(graph: Graph, node: Node, seen: set[int]) -> str | None:
    try:
        complete = OPS[node.op].complete_attrs(node.attrs)
    except EdgecError as e:
        return str(e)
    missing = sorted(set(complete) - set(node.attrs))
    return f"attributes {', '.join(missing)} are not set" if missing else None


def _types_match_inference(graph: Graph, node: Node, seen: set[int]) -> str | None:
    try:
        inferred = OPS[node.op].infer([v.type for v in node.inputs], node.attrs)
    except EdgecError as e:
        return f"type inference fails: {e}"
    actual = [o.type for o in node.outputs]
    if list(inferred) != actual:
        return (f"result types {', '.join(map(str, actual))} differ from the inferred "
                f"{', '.join(map(str, inferred))}")
    return None


def _uses_in_sync(graph: Graph, node: Node, seen: set[int]) -> str | None:
    for i, v in enumerate(node.inputs):
        if (node, i) not in v._uses:
            return f"input {i} does not list this node among its uses"
    for o in node.outputs:
        if o.producer() is not node:
            return "a result does not name this node as its producer"
    return None


NODE_CHECKS: list[Callable[[Graph, Node, set[int]], str | None]] = [
    _registered,
    _defined_before_use,
    _input_count,
    _attrs_match_schema,
    _types_match_inference,
    _uses_in_sync,
]


def verify(graph: Graph) -> None:
    """Raise VerifyError naming the first broken invariant."""
    seen: set[int] = {id(v) for v in graph.inputs}
    names = [v.name for v in graph.inputs]
    if len(set(names)) != len(names):
        raise VerifyError(f"graph inputs have duplicate names: {names}")
    for node in graph.nodes:
        if node.graph is not graph:
            raise VerifyError(f"{node.describe()} is listed in the graph but not owned by it")
        for check in NODE_CHECKS:
            problem = check(graph, node, seen)
            if problem:
                raise VerifyError(f"{node.describe()}: {problem}")
        seen.update(id(o) for o in node.outputs)
    if len(graph.outputs) != len(graph.output_names):
        raise VerifyError("graph outputs and output names differ in number")
    if len(set(graph.output_names)) != len(graph.output_names):
        raise VerifyError(f"graph outputs have duplicate names: {graph.output_names}")
    for name, v in zip(graph.output_names, graph.outputs):
        if not v.is_const and id(v) not in seen:
            raise VerifyError(f"graph output '{name}' is not defined by any node or input")
