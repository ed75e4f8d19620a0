"""`edgec inspect`: what a model holds, read without compiling.

Op histogram, parameter count and bytes, unsupported ops (with the nodes using them) from the
ONNX file itself; node count and multiply-accumulates from the imported graph when it imports.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import EdgecError
from .ir import Graph, Node


def node_macs(node: Node) -> int:
    """Multiply-accumulates of one node (0 for ops that are not conv/matmul-like)."""
    out = node.outputs[0].type
    if node.op == "conv":  # weight [Cout, Cin/group, k...]: each output sums Cin/group * k... products
        return out.size * int(np.prod(node.inputs[1].type.shape[1:]))
    if node.op == "conv_transpose":  # weight [Cin, Cout/group, k...]: each input scatters that many
        return node.inputs[0].type.size * int(np.prod(node.inputs[1].type.shape[1:]))
    if node.op in ("matmul", "dense"):
        a = node.inputs[0].type.shape
        return out.size * (a[-1] if a else 1)
    return 0


@dataclass
class Inspection:
    ops: Counter = field(default_factory=Counter)
    parameters: int = 0
    parameter_bytes: int = 0
    unsupported: dict[str, list[str]] = field(default_factory=dict)
    opset: int | None = None
    inputs: list[str] = field(default_factory=list)
    outputs: list[str] = field(default_factory=list)
    graph: Graph | None = None
    import_error: str | None = None

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
        elif self.import_error:
            lines.append(f"import: failed: {self.import_error}")
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
    from .onnx_import import ONNX_CONVERTERS, _read_model, import_onnx
    proto, _ = _read_model(model)
    info = Inspection()
    info.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), None)
    init_names = {t.name for t in proto.graph.initializer}
    info.inputs = [i.name for i in proto.graph.input if i.name not in init_names]
    info.outputs = [o.name for o in proto.graph.output]
    for i, n in enumerate(proto.graph.node):
        key = n.op_type if n.domain in ("", "ai.onnx") else f"{n.domain}.{n.op_type}"
        info.ops[key] += 1
        if n.domain not in ("", "ai.onnx") or n.op_type not in ONNX_CONVERTERS:
            info.unsupported.setdefault(key, []).append(n.name or f"#{i}")
    for t in proto.graph.initializer:
        count = int(np.prod(t.dims, dtype=np.int64))
        info.parameters += count
        info.parameter_bytes += len(t.raw_data) if t.raw_data else count * 4
    if not info.unsupported:
        try:
            info.graph = import_onnx(model, input_shapes)
        except EdgecError as e:
            info.import_error = str(e)
    return info
