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

`inspect_artifact(DIR)` reads a compiled artifact instead (`edgec inspect DIR`): its target and
library, and each kernel with its node in model.eir, op, ONNX origins and schedule rule, from the
manifest. For a CUDA target it also reads the library's device code (targets/cubin.py, no CUDA
tools needed): each kernel's device kernels (TVM names them `<kernel>_kernel` or
`<kernel>_kernel_<i>`) and the SM of their SASS, whether PTX or CUDA source is embedded, and
the problems that would keep the library from running on the board (none, for what `edgec
compile` writes: it refuses such a library).
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
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


@dataclass
class ArtifactInspection:
    path: Path
    manifest: dict
    library_bytes: int
    device_code: Any = None  # edgec.targets.cubin.DeviceCode for a CUDA target, else None
    device_kernels: dict[str, list[str]] = field(default_factory=dict)  # kernel -> its device kernels
    stray: list[str] = field(default_factory=list)  # device kernels that are no kernel's
    problems: list[str] = field(default_factory=list)

    @property
    def sm(self) -> int | None:
        """The SM the manifest's TVM target names ("arch": "sm_87"), None for a CPU target."""
        arch = (self.manifest.get("tvm_target") or {}).get("arch", "")
        return int(arch[3:]) if isinstance(arch, str) and arch.startswith("sm_") and arch[3:].isdigit() else None

    def format(self) -> str:
        m, code = self.manifest, self.device_code
        lines = [f"artifact: {self.path} (target {m['target']}, {m['arch']} library {m['library']}, "
                 f"{self.library_bytes:,} bytes)"]
        kernels = m.get("kernels", [])
        if code is not None:
            lines.append("device code: " + ("; ".join(i.describe() for i in code.images) or "none"))
            lines.append(f"PTX embedded: {'yes' if code.has_ptx else 'no'}; "
                         f"CUDA source embedded: {'yes' if code.has_cuda_source else 'no'}")
            lines.append(f"kernels: {len(kernels)}, device kernels: {len(code.kernels)}")
        else:
            lines.append("device code: none (a CPU library)")
            lines.append(f"kernels: {len(kernels)}")
        rows = [("kernel", "node", "op", "schedule", *(("SM", "device kernels") if code is not None else ()),
                 "origins")]
        for k in kernels:
            row = [k["name"], k["node"], k["op"], k.get("schedule") or "-"]
            if code is not None:
                mine = self.device_kernels.get(k["name"], [])
                sms = sorted({sm for d in mine for sm in code.kernels[d]})
                row += [",".join(f"sm_{sm}" for sm in sms) or "-", " ".join(mine) or "(none)"]
            rows.append((*row, ", ".join(k["origins"])))
        widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
        lines += ["  " + "  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1] for r in rows]
        views = m.get("views", [])
        if views:
            lines.append("views (no kernel): " + "; ".join(
                f"{v['node']} {v['op']} ({', '.join(v['origins'])})" for v in views))
        if code is not None:
            lines.append("problems: " + ("; ".join(self.problems) if self.problems else "none"))
        return "\n".join(lines)


def inspect_artifact(path: str | Path) -> ArtifactInspection:
    """Inspect a compiled artifact directory (`edgec compile -o DIR`); raises EdgecError for a
    directory that is not one (see `edgec.driver.Artifact`) or whose CUDA library cannot be read."""
    from .driver import Artifact
    artifact = Artifact(path)
    info = ArtifactInspection(artifact.path, artifact.manifest, artifact.library.stat().st_size)
    if info.sm is not None:
        from edgec.targets.cubin import kernels_by_owner, library_problems, read_device_code
        names = [k["name"] for k in info.manifest.get("kernels", [])]
        info.device_code = read_device_code(artifact.library)
        info.device_kernels, info.stray = kernels_by_owner(info.device_code, names)
        info.problems = library_problems(info.device_code, info.sm, names)
    return info
