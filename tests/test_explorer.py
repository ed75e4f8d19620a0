"""edgec.explorer: the Model Explorer adapter (needs ai-edge-model-explorer, skipped without it)
and node_data, the node-data overlay of profile and compare reports."""

import json
import subprocess
import sys

import numpy as np
import pytest
from onnx import TensorProto as T
from onnx import helper as h
from onnx import numpy_helper as nh

import edgec
from edgec.errors import EdgecError
from edgec.explorer import node_data
from edgec.passmanager import DumpIR, PassManager
from edgec.text import node_names, parse_ir

PIPELINE = "fuse-matmul-add,fuse-activation,fuse-elementwise,fuse-epilogue,dce"


def small_model():
    """matmul + add + relu, and sigmoid(x2*x2), multiplied: -O2's fusions make one `fused` node."""
    w = nh.from_array(np.arange(32, dtype=np.float32).reshape(4, 8) / 10, "w")
    return h.make_model(h.make_graph([
        h.make_node("MatMul", ["x", "w"], ["m"], name="mm"),
        h.make_node("Add", ["m", "y"], ["a"], name="add"),
        h.make_node("Relu", ["a"], ["r"], name="relu"),
        h.make_node("Mul", ["x2", "x2"], ["s"], name="sq"),
        h.make_node("Sigmoid", ["s"], ["t"], name="sig"),
        h.make_node("Mul", ["t", "r"], ["z"], name="out")],
        "g", [h.make_tensor_value_info("x", T.FLOAT, [2, 4]), h.make_tensor_value_info("y", T.FLOAT, [2, 8]),
              h.make_tensor_value_info("x2", T.FLOAT, [2, 8])],
        [h.make_tensor_value_info("z", T.FLOAT, [2, 8])], [w]), opset_imports=[h.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def dump_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ex") / "passes.dump"
    PassManager(PIPELINE, [DumpIR(folder)]).run(edgec.import_onnx(small_model()))
    return folder


def test_import_edgec_does_not_import_model_explorer():
    code = "import edgec, edgec.explorer, sys; print('model_explorer' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_without_model_explorer_the_adapter_says_what_to_install():
    code = ("import sys; sys.modules['model_explorer'] = None\n"
            "try:\n    import edgec.explorer.main\n"
            "except Exception as e:\n    print(type(e).__name__, e)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("ToolError ") and "pip install 'edgec[explorer]'" in out


def sources(graph):
    """{id(value): the id the adapter gives its producer (node id, output id)} from the IR."""
    from edgec.text import _input_name
    names = node_names(graph)
    src = {id(v): (_input_name(v.name), "0") for v in graph.inputs}
    src.update({id(v): (f"%c{k}", "0") for k, v in enumerate(graph.constants())})
    for node in graph.nodes:
        src.update({id(v): (names[id(node)], str(i)) for i, v in enumerate(node.outputs)})
    return src


def test_adapter_dump_dir_one_graph_per_file_with_the_ir_nodes_and_edges(dump_dir):
    pytest.importorskip("model_explorer", reason="ai-edge-model-explorer is not installed (pip install 'edgec[explorer]')")
    from edgec.explorer.main import EdgecAdapter
    result = EdgecAdapter().convert(str(dump_dir), {})
    (collection,) = result["graphCollections"]
    files = sorted(dump_dir.glob("*.eir"))
    assert [g.id for g in collection.graphs] == [f.stem for f in files]
    assert [g.id for g in collection.graphs][:2] == ["00-input", "01-fuse-matmul-add"]
    for graph, file in zip(collection.graphs, files):
        ir = parse_ir(file.read_text())
        by_id = {n.id: n for n in graph.nodes}
        assert len(by_id) == len(graph.nodes)
        src = sources(ir)
        for node in ir.nodes:
            name = node_names(ir)[id(node)]
            me = by_id[name]
            assert [kv.value for kv in me.attrs if kv.key == "origins"] == [", ".join(node.origin)]
            assert [m.attrs[0].value for m in me.outputsMetadata] == [str(o.type) for o in node.outputs]
            if node.op.startswith("fused"):
                # the body: steps %N.0 .. in the layer "<op> %N", the last one %N; the edges
                # that enter the layer are the node's inputs
                steps = [n for n in graph.nodes if n.namespace == f"{node.op} {name}"]
                assert steps[-1] is me and [s.id for s in steps[:-1]] == [f"{name}.{k}" for k in range(len(steps) - 1)]
                step_ids = {s.id for s in steps}
                entering = {(e.sourceNodeId, e.sourceNodeOutputId) for s in steps for e in s.incomingEdges} - \
                    {(i, "0") for i in step_ids}
                assert entering == {src[id(v)] for v in node.inputs}
            else:
                assert me.label == node.op and me.namespace == ""
                assert [(e.sourceNodeId, e.sourceNodeOutputId, e.targetNodeInputId) for e in me.incomingEdges] == \
                    [(*src[id(v)], str(i)) for i, v in enumerate(node.inputs)]
        assert [(e.sourceNodeId, e.sourceNodeOutputId) for e in by_id["return"].incomingEdges] == \
            [src[id(v)] for v in ir.outputs]
    last = collection.graphs[-1]
    assert [n.label for n in last.nodes if n.namespace == "fused %0"] == \
        ["matmul", "add", "relu", "mul", "sigmoid", "mul"]
    assert last.groupNodeAttributes["fused %0"]["origins"] == "mm, add, relu, sq, sig, out"


SPLIT = """graph @g(%x: f32[2,4]) -> (%z: f32[2,2]) {
  %0, %1 = split(%x) {axis=1, sizes=[2,2]} : (f32[2,2], f32[2,2])  @"sp"
  %2 = sub(%1, %0) : f32[2,2]  @"sub"
  return %2
}
"""


def test_adapter_eir_file_and_bad_dir(tmp_path, dump_dir):
    pytest.importorskip("model_explorer", reason="ai-edge-model-explorer is not installed (pip install 'edgec[explorer]')")
    from edgec.explorer.main import EdgecAdapter
    (graph,) = EdgecAdapter().convert(str(dump_dir / "00-input.eir"), {})["graphs"]
    assert graph.id == "00-input"
    assert [n.id for n in graph.nodes] == ["%x", "%y", "%x2", "%c0", "%0", "%1", "%2", "%3", "%4", "%5", "return"]
    assert [n.label for n in graph.nodes][4:] == ["matmul", "add", "relu", "mul", "sigmoid", "mul", "return"]
    # a node of two results: the edges say which (%2 takes %0's second result, then its first)
    (tmp_path / "split.eir").write_text(SPLIT)
    (graph,) = EdgecAdapter().convert(str(tmp_path / "split.eir"), {})["graphs"]
    by_id = {n.id: n for n in graph.nodes}
    assert [(e.sourceNodeId, e.sourceNodeOutputId, e.targetNodeInputId) for e in by_id["%2"].incomingEdges] == \
        [("%0", "1", "0"), ("%0", "0", "1")]
    assert [m.attrs[0].value for m in by_id["%0"].outputsMetadata] == ["f32[2,2]", "f32[2,2]"]
    (tmp_path / "empty.dump").mkdir()
    with pytest.raises(EdgecError, match="no NN-pass.eir files"):
        EdgecAdapter().convert(str(tmp_path / "empty.dump"), {})


def test_extension_loads_the_way_model_explorer_loads_it(dump_dir):
    """`model-explorer --extensions=edgec.explorer`: its ExtensionManager imports edgec.explorer.main
    and registers the adapter; a convert command through it gives JSON (no server started)."""
    pytest.importorskip("model_explorer", reason="ai-edge-model-explorer is not installed (pip install 'edgec[explorer]')")
    code = f"""
import json
from model_explorer.extension_manager import ExtensionManager
m = ExtensionManager(["edgec.explorer"])
m.load_extensions()
meta = [e for e in m.get_extensions_metadata() if e["id"] == "edgec"]
resp = m.run_cmd({{"extensionId": "edgec", "cmdId": "convert", "modelPath": {str(dump_dir)!r}, "settings": {{}}}})
print(json.dumps({{"meta": meta, "graphs": [g["id"] for g in resp["graphCollections"][0]["graphs"]]}}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120)
    got = json.loads(out.stdout.strip().splitlines()[-1])
    assert [(m["type"], m["fileExts"]) for m in got["meta"]] == [("adapter", ["eir", "onnx", "dump"])]
    assert got["graphs"] == sorted(f.stem for f in dump_dir.glob("*.eir"))


PROFILE = {"unit": "us", "total": 4.0, "kernels": [
    {"name": "k1_dense_relu", "node": "%1", "op": "dense", "origins": ["fc2"], "cost": 2.0, "share": 0.5},
    {"name": "k0_dense_relu", "node": "%0", "op": "dense", "origins": ["fc1"], "cost": 1.0, "share": 0.25},
    {"name": "k3_cumsum__0", "node": "%3", "op": "cumsum", "origins": ["c"], "cost": 0.5, "share": 0.125},
    {"name": "k3_cumsum__1", "node": "%3", "op": "cumsum", "origins": ["c"], "cost": 0.5, "share": 0.125}]}
COMPARE = {"model": "m.onnx", "first_divergence": "%2", "nodes": [
    {"node": "%0", "op": "conv", "origins": ["c"], "reference": "%0", "max_abs": 0.0, "within": True},
    {"node": "%2", "op": "relu", "origins": ["r"], "reference": "%4", "max_abs": 0.75, "within": False},
    {"node": "%3", "op": "add", "origins": ["a"], "reference": None, "max_abs": None, "within": None}]}


def test_node_data_profile_and_compare(tmp_path):
    assert node_data(PROFILE)["results"] == {"%1": {"value": 0.5}, "%0": {"value": 0.25}, "%3": {"value": 0.25}}
    path = tmp_path / "compare.json"
    path.write_text(json.dumps(COMPARE))
    data = node_data(path)
    assert data["results"] == {"%0": {"value": 0.0}, "%2": {"value": 0.75}}
    assert data["name"] == "max abs error"
    (tmp_path / "bad.json").write_text('{"rows": []}')
    with pytest.raises(EdgecError, match="neither an `edgec profile --json` report"):
        node_data(tmp_path / "bad.json")
    (tmp_path / "cut.json").write_text('{"kernels": [')
    with pytest.raises(EdgecError, match="cut.json: not a JSON report"):
        node_data(tmp_path / "cut.json")
    with pytest.raises(EdgecError, match="a row without a \"node\""):
        node_data({"nodes": [{"op": "relu", "max_abs": 1.0}]})


def test_node_data_is_model_explorers_format():
    """Model Explorer's own GraphNodeData reads it back, and its web app's test for a node-data
    file ("results" holding per-node {"value"}) holds."""
    nd = pytest.importorskip("model_explorer.node_data_builder",
                             reason="ai-edge-model-explorer is not installed (pip install 'edgec[explorer]')")
    data = json.loads(json.dumps(node_data(PROFILE)))
    parsed = nd.GraphNodeData(results={k: nd.NodeDataResult(**v) for k, v in data.pop("results").items()},
                              gradient=[nd.GradientItem(**g) for g in data.pop("gradient")], **data)
    assert json.loads(parsed.to_json_string()) == {**json.loads(json.dumps(node_data(PROFILE))),
                                                     "thresholds": [], "hideInAggregatedStatsTable": False,
                                                     "hideInChildrenStatsTable": False,
                                                     "showExpandedSummaryOnGroupNode": False,
                                                     "showLabelCountColumnsInChildrenStatsTable": False}
