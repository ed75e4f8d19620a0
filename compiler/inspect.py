"""`edgec inspect`: what a model holds, read without compiling.

The model goes through the importer's checks first (`load_model`: the file, its constants, its
external data, its opset, its graph's structure) and then through `import_onnx`; any error
either raises is raised here too (the CLI prints it and exits 2), except the two things inspect
reports instead:
- unsupported op types, listed with the nodes that use them, all at once;
- dynamic dims without a value: the report names the `--input-shape NAME=...` each such input
  needs in place of the node and MAC counts.
From the ONNX file: the op histogram, and the parameters (initializers and the values of
Constant nodes: tensors, value_float(s), value_int(s)) with their bytes, counting the nodes and
initializers inside subgraphs (If's branches, Loop's and Scan's body) too, once each as the file
holds them. From the imported graph: the node count and multiply-accumulates.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from .errors import ShapeError, UnsupportedError
from .ir import Graph, Node


def node_macs(node: Node) -> int:
    """Multiply-accumulates of one node (its OpDef's `macs`; 0 for ops without one)."""
    from .ops import get_op
    macs = get_op(node.op).macs
    return macs(node) if macs is not None else 0


# Bytes per element of a Constant node's number attributes (f32 and i64, as the importer makes them).
NUMBER_ATTRIBUTES = {"value_float": 4, "value_floats": 4, "value_int": 8, "value_ints": 8}


def constant_size(attr) -> tuple[int, int]:
    """(elements, bytes) of one attribute of a Constant node: `value` (a tensor, by its declared
    size), `value_float(s)` and `value_int(s)`; (0, 0) for the others (strings, sparse values)."""
    from .onnx_import import tensor_size
    if attr.name == "value" and attr.HasField("t"):
        return tensor_size(attr.t, "a Constant node's value")
    if attr.name not in NUMBER_ATTRIBUTES:
        return 0, 0
    count = len(attr.floats) + len(attr.ints) if attr.name.endswith("s") else 1
    return count, count * NUMBER_ATTRIBUTES[attr.name]


@dataclass
class Inspection:
    ops: Counter = field(default_factory=Counter)
    parameters: int = 0
    parameter_bytes: int = 0
    unsupported: dict[str, list[str]] = field(default_factory=dict)
    missing_shapes: list[str] = field(default_factory=list)  # --input-shape values still needed
    opset: int | None = None
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    graph: Graph | None = None

    @property
    def macs(self) -> int | None:
        return None if self.graph is None else sum(node_macs(n) for n in self.graph.nodes)

    def format(self) -> str:
        lines = [f"opset: {self.opset}", "inputs: " + ", ".join(self.inputs),
                 "outputs: " + ", ".join(self.outputs),
                 f"parameters: {self.parameters:,} ({self.parameter_bytes / 1e6:.2f} MB)"]
        if self.graph is not None:
            lines.append(f"edgec nodes after import: {len(self.graph.nodes)}")
            lines.append(f"MACs: {self.macs:,}")
        elif self.missing_shapes:
            lines.append("edgec nodes and MACs after import: need "
                         + " ".join(f"--input-shape {s}" for s in self.missing_shapes)
                         + " (dynamic dims)")
        lines.append("ONNX ops:")
        width = max((len(k) for k in self.ops), default=0)
        for op, n in sorted(self.ops.items(), key=lambda kv: (-kv[1], kv[0])):
            mark = "  (unsupported)" if op in self.unsupported else ""
            lines.append(f"  {op:<{width}}  {n}{mark}")
        if self.unsupported:
            lines.append("unsupported ops: " + "; ".join(
                f"{op} (nodes: {', '.join(nodes)})" for op, nodes in sorted(self.unsupported.items())))
        else:
            lines.append("unsupported ops: none")
        return "\n".join(lines)


def inspect_model(model: Any, input_shapes: dict | None = None) -> Inspection:
    """Inspect an ONNX model (path or ModelProto); raises the importer's EdgecError for a model
    that is malformed or fails to import for another reason than those reported."""
    from .onnx_import import import_onnx, load_model, subgraphs, tensor_size, walk_nodes
    proto, opset = load_model(model)
    gp = proto.graph
    info = Inspection(opset=opset)
    init_names = {t.name for t in gp.initializer}
    info.inputs = [i.name for i in gp.input if i.name not in init_names]
    info.outputs = [o.name for o in gp.output]
    sizes = [tensor_size(t) for t in gp.initializer]
    for n, _ in walk_nodes(gp):
        for _, sub in subgraphs(n):
            sizes += [tensor_size(t) for t in sub.initializer]
        info.ops[n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"] += 1
        if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
            sizes += [constant_size(a) for a in n.attribute]
    info.parameters = sum(count for count, _ in sizes)
    info.parameter_bytes = sum(nbytes for _, nbytes in sizes)
    try:
        info.graph = import_onnx(proto, input_shapes)
    except UnsupportedError as e:
        if not getattr(e, "unsupported", None):
            raise
        info.unsupported = e.unsupported
    except ShapeError as e:
        if not getattr(e, "missing_shapes", None):
            raise
        info.missing_shapes = e.missing_shapes
    return info
