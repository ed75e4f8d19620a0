"""The Model Explorer adapter for edgec IR: `model-explorer FILE --extensions=edgec.explorer`
imports this module (Model Explorer loads `X.main` for `--extensions=X`); see
`edgec.explorer` for what it shows."""

from __future__ import annotations

from pathlib import Path

from ..errors import EdgecError, ToolError

try:
    from model_explorer import Adapter, AdapterMetadata, ModelExplorerGraphs
    from model_explorer import graph_builder as gb
except ImportError:
    raise ToolError("edgec.explorer needs Model Explorer: pip install 'edgec[explorer]' "
                    "(the ai-edge-model-explorer package)") from None


def dump_files(folder: Path) -> list[Path]:
    """The IR files of a `--dump-ir` directory in step order (EdgecError if it holds none)."""
    from ..passmanager import dump_files as files_of
    files = files_of(folder)
    if not files:
        raise EdgecError(f"{folder}: no NN-pass.eir files; give a directory that "
                         "`edgec opt MODEL --dump-ir DIR` wrote, or an .eir file")
    return files


def to_graph(graph, graph_id: str) -> gb.Graph:
    """The Model Explorer graph of an edgec IR graph (see `edgec.explorer`)."""
    from ..ops.fused import parse_body
    from ..text import _attr, _input_name, node_names
    numbers = node_names(graph)
    source: dict[int, tuple[str, str]] = {}  # id(value) -> (node id, output id)
    nodes = []

    def edges(values) -> list[gb.IncomingEdge]:
        return [gb.IncomingEdge(*source[id(v)], str(i)) for i, v in enumerate(values)]

    def outputs(values) -> list[gb.MetadataItem]:
        return [gb.MetadataItem(str(i), [gb.KeyValue("tensor_shape", str(v.type)),
                                         gb.KeyValue("shape", str(list(v.type.shape))),
                                         gb.KeyValue("dtype", v.type.dtype)])
                for i, v in enumerate(values)]

    def attrs(items: dict, origin=()) -> list[gb.KeyValue]:
        kv = [gb.KeyValue(k, _attr(items[k])) for k in sorted(items)]
        return kv + ([gb.KeyValue("origins", ", ".join(origin))] if origin else [])

    for v in graph.inputs:
        source[id(v)] = (_input_name(v.name), "0")
        nodes.append(gb.GraphNode(_input_name(v.name), "input", namespace="inputs",
                                  attrs=[gb.KeyValue("name", v.name)], outputsMetadata=outputs([v])))
    for k, v in enumerate(graph.constants()):
        source[id(v)] = (f"%c{k}", "0")
        nodes.append(gb.GraphNode(f"%c{k}", "const", outputsMetadata=outputs([v])))
    group_attrs: dict[str, dict[str, str]] = {}
    for node in graph.nodes:
        name = numbers[id(node)]
        if node.op in ("fused", "fused_elementwise"):
            # A layer of the body's steps; the last step is the node itself.
            layer = f"{node.op} {name}"
            group_attrs[layer] = {"node": name, "op": node.op, "body": node.attrs["body"],
                                  "origins": ", ".join(node.origin)}
            steps = parse_body(node.attrs["body"], len(node.inputs), node.op == "fused")
            step_ids = [source[id(v)] for v in node.inputs]
            for k, (op, args, step_attrs) in enumerate(steps):
                last = k == len(steps) - 1
                step_id = name if last else f"{name}.{k}"
                nodes.append(gb.GraphNode(
                    step_id, op, namespace=layer,
                    attrs=attrs(step_attrs, node.origin if last else ()),
                    incomingEdges=[gb.IncomingEdge(*step_ids[a], str(i)) for i, a in enumerate(args)],
                    outputsMetadata=outputs(node.outputs) if last else []))
                step_ids.append((step_id, "0"))
        else:
            nodes.append(gb.GraphNode(name, node.op, attrs=attrs(node.attrs, node.origin),
                                      incomingEdges=edges(node.inputs), outputsMetadata=outputs(node.outputs)))
        for i, v in enumerate(node.outputs):
            source[id(v)] = (name, str(i))
    nodes.append(gb.GraphNode("return", "return", incomingEdges=edges(graph.outputs),
                              attrs=[gb.KeyValue(str(i), n) for i, n in enumerate(graph.output_names)]))
    return gb.Graph(graph_id, nodes, groupNodeAttributes=group_attrs or None)


class EdgecAdapter(Adapter):
    """Model Explorer adapter: an `.eir` or ONNX file, or a `--dump-ir` directory."""

    metadata = AdapterMetadata(
        id="edgec", name="edgec IR adapter",
        description="edgec IR: an .eir file, an ONNX model as edgec imports it, or a --dump-ir "
                    "directory named *.dump (one graph per pass)",
        fileExts=["eir", "onnx", "dump"])

    def convert(self, model_path: str, settings: dict) -> ModelExplorerGraphs:
        from ..driver import load_model
        path = Path(model_path)
        if path.is_dir():
            graphs = [to_graph(load_model(p)[0], p.stem) for p in dump_files(path)]
            return {"graphCollections": [gb.GraphCollection(path.name, graphs, graphSorting="name_asc")]}
        return {"graphs": [to_graph(load_model(path)[0], path.stem)]}
