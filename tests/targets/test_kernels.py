"""The IR decides the code: after the pipeline every computing node is one kernel of the built
module, named after it (`k<N>_<op>`, N its `%N` in model.eir), and nothing else is.

- for the models of tools/make_models.py (small), and ResNet-50 and SqueezeNet (the onnx package's
  "light" test models: full-size graphs, small constant weights) at -O2 on the host: the manifest's kernels are
  exactly the nodes of model.eir that are not views, in order, each with its ONNX origins and
  schedule rule; the nodes without a kernel are reshapes of contiguous data;
- the fusion passes decide the kernels: -O2 without the `fuse-*` passes builds more;
- a node that computes the same thing as another keeps its own kernel;
- kernel names follow the printed IR and the ops fused into the node.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

import edgec
from edgec.passmanager import format_pipeline, parse_pipeline
from edgec.targets import get_target
from edgec.targets.build import build_graph
from edgec.targets.lower import VIEW_OPS, kernel_names

ROOT = Path(__file__).resolve().parents[2]
MODELS = ["resnet18", "mobilenetv2", "transformer", "mlp"]
LIGHT = ["resnet50", "squeezenet"]  # onnx/backend/test/data/light/light_<name>.onnx


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    out = tmp_path_factory.mktemp("models")
    subprocess.run([sys.executable, str(ROOT / "tools" / "make_models.py"), "--out", str(out), "--small", *MODELS],
                   check=True, capture_output=True, timeout=300)
    return out


def _eir_nodes(text: str) -> list[tuple[str, str]]:
    """(`%N`, op) of each node line of a printed graph, constants left out."""
    return re.findall(r"^  (%\d+)(?:, %\d+)* = (\w+)\(", text, re.M)


def _model_path(models: Path, name: str) -> Path:
    if name in LIGHT:
        import onnx
        return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light" / f"light_{name}.onnx"
    return models / f"{name}.onnx"


@pytest.mark.parametrize("name", MODELS + LIGHT)
def test_the_manifest_kernels_are_the_nodes_of_the_final_ir(models, name, tmp_path):
    result = edgec.compile(_model_path(models, name), target="host", output=tmp_path / "art")
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    nodes = _eir_nodes((tmp_path / "art" / "model.eir").read_text())
    kernels, views = manifest["kernels"], manifest["views"]
    assert len(nodes) == len(result.graph.nodes) and len(kernels) + len(views) == len(nodes)
    assert sorted(k["name"] for k in kernels) == result.kernels
    by_node = {k["node"]: k for k in kernels}
    for number, op in nodes:
        if number in by_node:
            k = by_node[number]
            assert k["name"].startswith(f"k{number[1:]}_") and k["op"] == op, k
            assert k["origins"] and k["schedule"] is not None, k
        else:
            assert op in VIEW_OPS, (number, op)
    assert [k["node"] for k in kernels] == [n for n, _ in nodes if n in by_node]  # node order


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2", "transformer", "squeezenet"])
def test_without_the_fusion_passes_there_are_more_kernels(models, name):
    graph = edgec.import_onnx(_model_path(models, name))
    target = get_target("host")
    o2 = parse_pipeline(target.pipeline(2))
    unfused = format_pipeline([item for item in o2 if not item[0].startswith("fuse-")])
    fused = build_graph(edgec.optimize(graph, passes=target.pipeline(2)), target).kernels
    plain = build_graph(edgec.optimize(graph, passes=unfused), target).kernels
    assert len(plain) > len(fused), (len(plain), len(fused))


def test_nodes_that_compute_the_same_keep_their_own_kernels():
    graph = edgec.parse_ir("""graph @main(%x: f32[2,8]) -> (%y: f32[2,8], %z: f32[2,8]) {
      %0 = relu(%x) : f32[2,8]
      %1 = relu(%x) : f32[2,8]
      return %0, %1
    }""")
    assert build_graph(graph, get_target("host")).kernels == ["k0_relu", "k1_relu"]


def test_kernel_names_follow_the_printed_ir():
    graph = edgec.parse_ir(r"""graph @main(%x: f32[1,2,4,4]) -> (%y: f32[1,2,4,4], %a: f32[1,1,4,4], %b: f32[1,1,4,4]) {
      %c0 = const f32[2,2,1,1] [1.0, 2.0, 3.0, 4.0]
      %0 = conv(%x, %c0) {activation="relu"} : f32[1,2,4,4]
      %1, %2 = split(%0) {axis=1, sizes=[1,1]} : (f32[1,1,4,4], f32[1,1,4,4])
      %3 = fused(%x, %c0) {body="%2 = conv(%0, %1); %3 = add(%2, %0); %4 = sigmoid(%3)"} : f32[1,2,4,4]
      return %3, %1, %2
    }""")
    assert list(kernel_names(graph).values()) == ["k0_conv_relu", "k1_split", "k3_conv_add_sigmoid"]


def test_a_node_whose_ops_fusetir_cannot_combine_has_numbered_kernels(tmp_path):
    """A reverse CumSum is flip, cumsum, flip; FuseTIR cannot make those one PrimFunc (their
    buffers differ), so the node's ops are kernels `k0_cumsum__0..2`, all listed for %0."""
    import numpy as np
    from onnx import helper
    from onnx_util import assert_close, make_model, run_ort
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    model = make_model([helper.make_node("CumSum", ["x", "axis"], ["y"], reverse=1)], {"x": x}, ["y"],
                       {"axis": np.array(1, np.int64)})
    result = edgec.compile(model, target="host", output=tmp_path / "art")
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    names = [k["name"] for k in manifest["kernels"]]
    assert len(names) > 1 and names == [f"k0_cumsum__{i}" for i in range(len(names))], names
    assert {k["node"] for k in manifest["kernels"]} == {"%0"} and manifest["views"] == []
    assert_close(result.artifact.run({"x": x}), run_ort(model, {"x": x}), what="reverse cumsum")


def test_the_other_nodes_keep_their_kernels_beside_numbered_ones(tmp_path):
    """Beside a node whose ops stay separate kernels (a reverse CumSum), the other nodes are still
    one kernel each, named after them (they used to be inlined with it: kernels named `relu`,
    `negative` that were no node's)."""
    import numpy as np
    from onnx import helper
    from onnx_util import assert_close, make_model, run_ort
    x = np.arange(12, dtype=np.float32).reshape(3, 4) - 6
    model = make_model([helper.make_node("Relu", ["x"], ["r"]),
                        helper.make_node("CumSum", ["r", "axis"], ["c"], reverse=1),
                        helper.make_node("Neg", ["c"], ["y"])], {"x": x}, ["y"], {"axis": np.array(1, np.int64)})
    result = edgec.compile(model, target="host", output=tmp_path / "art")
    manifest = json.loads((tmp_path / "art" / "manifest.json").read_text())
    names = [k["name"] for k in manifest["kernels"]]
    assert names[0] == "k0_relu" and names[-1] == "k2_neg", names
    assert len(names) > 3 and names[1:-1] == [f"k1_cumsum__{i}" for i in range(len(names) - 2)], names
    assert_close(result.artifact.run({"x": x}), run_ort(model, {"x": x}), what="relu, reverse cumsum, neg")


def test_compile_and_the_onnx_backend_take_the_same_path(models, tmp_path):
    """One compile path (`edgec.driver.build`): `edgec compile` and the ONNX backend build the
    same optimized graph and the same kernels."""
    import onnx
    from edgec.backend import EdgecBackend
    from edgec.text import print_ir
    model = onnx.load(str(models / "mlp.onnx"))
    result = edgec.compile(model, target="host", output=tmp_path / "art")
    rep = EdgecBackend.prepare(model)
    graph, _vm = rep._compiled[()]
    assert print_ir(graph) == print_ir(result.graph)
    assert edgec.driver.build(edgec.import_onnx(model), "host").kernels == result.kernels


def test_the_manifest_gives_each_kernel_its_machine_code_size(models, tmp_path):
    """`code_bytes`: the instructions of each kernel's object file (its executable sections),
    checked against binutils' readelf on an object of the same kind."""
    import shutil
    import subprocess as sp
    from edgec.targets.crosslink import code_bytes
    edgec.compile(models / "mlp.onnx", target="host", output=tmp_path / "art")
    kernels = json.loads((tmp_path / "art" / "manifest.json").read_text())["kernels"]
    assert kernels and all(k["code_bytes"] > 0 for k in kernels)
    readelf = shutil.which("readelf") or shutil.which("aarch64-linux-gnu-readelf")
    if readelf is None:
        pytest.skip("no readelf to check code_bytes against")
    import tvm
    from tvm.script import tirx as T

    @T.prim_func
    def add_one(a: T.Buffer((64,), "float32"), b: T.Buffer((64,), "float32")):
        for i in range(64):
            b[i] = a[i] + T.float32(1)

    obj = tmp_path / "k.o"
    tvm.tirx.build(tvm.IRModule({"main": add_one}), target="llvm").write_to_file(str(obj))
    out = sp.run([readelf, "-SW", str(obj)], capture_output=True, text=True, check=True).stdout
    # [Nr] Name Type Address Off Size ES Flg ...: the sizes of the sections flagged X
    want = 0
    for line in out.splitlines():
        m = re.match(r"\s*\[\s*\d+\]\s+(\S+)\s+\S+\s+[0-9a-f]+\s+[0-9a-f]+\s+([0-9a-f]+)\s+[0-9a-f]+\s+(\S*)", line)
        if m and "X" in m.group(3):
            want += int(m.group(2), 16)
    assert want > 0 and code_bytes(obj) == want
