"""`edgec diff`: nodes matched by ONNX origin (fused, changed, added, removed), transposes of a
layout change counted, the summary table, `--dump-ir` directories pass by pass, JSON, HTML, and
the exit codes of `diff` (0 equal, 1 different, 2 on errors)."""

import json

import edgec
from edgec.cli import main
from edgec.diff import diff_graphs

CONV_RELU = """graph @main(%x: f32[1,3,8,8]) -> (%y: f32[1,4,8,8]) {
  %c0 = const f32[4,3,1,1] [1,2,3,4,5,6,7,8,9,10,11,12]
  %0 = conv(%x, %c0) {dilations=[1,1], group=1, pads=[0,0,0,0], strides=[1,1]} : f32[1,4,8,8]  @"Conv_0"
  %1 = relu(%0) : f32[1,4,8,8]  @"Relu_1"
  return %1
}
"""

CONV_FUSED = """graph @main(%x: f32[1,3,8,8]) -> (%y: f32[1,4,8,8]) {
  %c0 = const f32[4,3,1,1] [1,2,3,4,5,6,7,8,9,10,11,12]
  %0 = conv(%x, %c0) {activation="relu", activation_params=[], dilations=[1,1], group=1, pads=[0,0,0,0], strides=[1,1]} : f32[1,4,8,8]  @"Conv_0","Relu_1"
  return %0
}
"""


def _write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_a_fusion_is_reported_with_the_nodes_that_became_one(tmp_path, capsys):
    a, b = _write(tmp_path, "a.eir", CONV_RELU), _write(tmp_path, "b.eir", CONV_FUSED)
    assert main(["diff", str(a), str(b)]) == 1
    # conv 3->4 channels, 1x1 kernel, on 8x8: 4*3*64 = 768 MACs; 12 weights
    assert capsys.readouterr().out == f"""--- {a}
+++ {b}
fused:     %0 conv (Conv_0), %1 relu (Relu_1) -> %0 conv (Conv_0, Relu_1)
unchanged: 0 nodes
transposes: 0 added, 0 removed
            before  after
nodes            2      1
MACs           768    768
parameters      12     12
ops:
  conv           1      1
  relu           1      0
"""


def test_an_attribute_change_is_named_with_both_values():
    a = edgec.parse_ir(CONV_RELU.replace("relu(%0)", "leaky_relu(%0) {alpha=0.1}"))
    b = edgec.parse_ir(CONV_RELU.replace("relu(%0)", "leaky_relu(%0) {alpha=0.2}"))
    d = diff_graphs(a, b)
    changed = [e for e in d.entries if e.kind != "same"]
    assert [(e.kind, e.a[0]["node"], e.b[0]["node"], e.changes) for e in changed] == [
        ("changed", "%1", "%1", ["alpha 0.1 -> 0.2"])]
    assert "changed:   %1 leaky_relu (Relu_1) -> %1 leaky_relu (Relu_1): alpha 0.1 -> 0.2" in d.format()


def test_a_removed_node_is_reported():
    text = CONV_RELU.replace("  return %1", '  %2 = identity(%1) : f32[1,4,8,8]  @"Id_2"\n  return %2')
    a = edgec.parse_ir(text)
    d = diff_graphs(a, edgec.optimize(a, passes="eliminate-noop,dce"))
    assert [(e.kind, e.a, e.b) for e in d.entries if e.kind != "same"] == [
        ("removed", [{"node": "%2", "op": "identity", "origins": ["Id_2"]}], [])]
    assert d.summary["nodes"] == [3, 2] and d.summary["ops"]["identity"] == [1, 0]


def test_convert_layout_counts_the_transposes_it_leaves():
    # two convs: NHWC transposes around each, the two between them cancel; two remain at the edges
    text = """graph @main(%x: f32[1,3,8,8]) -> (%y: f32[1,4,8,8]) {
  %c0 = const f32[4,3,1,1] [1,2,3,4,5,6,7,8,9,10,11,12]
  %c1 = const f32[4,4,1,1] [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16]
  %0 = conv(%x, %c0) {dilations=[1,1], group=1, pads=[0,0,0,0], strides=[1,1]} : f32[1,4,8,8]  @"Conv_0"
  %1 = conv(%0, %c1) {dilations=[1,1], group=1, pads=[0,0,0,0], strides=[1,1]} : f32[1,4,8,8]  @"Conv_1"
  return %1
}
"""
    a = edgec.parse_ir(text)
    b = edgec.optimize(a, passes="convert-layout")
    d = diff_graphs(a, b)
    assert d.transposes == {"added": 2, "removed": 0}
    assert d.summary["ops"] == {"conv": [2, 2], "transpose": [0, 2]}
    kinds = [(e.kind, [r["op"] for r in e.b]) for e in d.entries]
    assert kinds == [("added", ["transpose"]), ("changed", ["conv"]), ("changed", ["conv"]),
                     ("added", ["transpose"])]
    assert d.entries[1].changes == ['layout "NCHW" -> "NHWC"', "type f32[1,4,8,8] -> f32[1,8,8,4]"]


def test_a_file_against_itself_is_equal_and_exits_0(tmp_path, capsys):
    a = _write(tmp_path, "a.eir", CONV_RELU)
    assert main(["diff", str(a), str(a)]) == 0
    assert capsys.readouterr().out == f"{a} and {a} are equal (2 nodes)\n"


def test_a_dump_directory_is_diffed_pass_by_pass(tmp_path, capsys):
    a = _write(tmp_path, "a.eir", CONV_RELU)
    assert main(["opt", str(a), "--passes", "dce,fuse-activation", "--dump-ir", str(tmp_path / "d")]) == 0
    capsys.readouterr()
    assert main(["diff", str(tmp_path / "d")]) == 1
    out = capsys.readouterr().out
    assert out.startswith("01-dce.eir: no change\n== fuse-activation ==\n--- 01-dce.eir\n+++ 02-fuse-activation.eir\n"
                          "fused:     %0 conv (Conv_0), %1 relu (Relu_1) -> %0 conv (Conv_0, Relu_1)\n")


def test_json_has_the_entries_and_the_summary(tmp_path, capsys):
    a, b = _write(tmp_path, "a.eir", CONV_RELU), _write(tmp_path, "b.eir", CONV_FUSED)
    assert main(["diff", str(a), str(b), "--json"]) == 1
    report = json.loads(capsys.readouterr().out)
    assert report == {
        "a": str(a), "b": str(b), "equal": False, "unchanged": 0,
        "entries": [{"kind": "fused", "changes": [],
                     "a": [{"node": "%0", "op": "conv", "origins": ["Conv_0"]},
                           {"node": "%1", "op": "relu", "origins": ["Relu_1"]}],
                     "b": [{"node": "%0", "op": "conv", "origins": ["Conv_0", "Relu_1"]}]}],
        "transposes": {"added": 0, "removed": 0},
        "summary": {"nodes": [2, 1], "macs": [768, 768], "parameters": [12, 12],
                    "ops": {"conv": [1, 1], "relu": [1, 0]}}}


def test_html_page_shows_both_irs_with_the_fused_lines_coloured(tmp_path, capsys):
    a, b = _write(tmp_path, "a.eir", CONV_RELU), _write(tmp_path, "b.eir", CONV_FUSED)
    assert main(["diff", str(a), str(b), "--html", str(tmp_path / "d.html")]) == 1
    page = (tmp_path / "d.html").read_text()
    assert page.startswith("<!DOCTYPE html>") and "http" not in page
    assert '<div style="background:#cfe3ff" title="fused">  %1 = relu(%0) : f32[1,4,8,8]  @&quot;Relu_1&quot;</div>' in page
    assert page.count('title="fused"') == 3  # conv and relu in A, the fused conv in B


def test_a_missing_file_is_a_clean_error(tmp_path, capsys):
    a = _write(tmp_path, "a.eir", CONV_RELU)
    assert main(["diff", str(a), str(tmp_path / "missing.eir")]) == 2
    assert capsys.readouterr().err == f"edgec: error: {tmp_path / 'missing.eir'}: no such IR file\n"
    assert main(["diff", str(tmp_path)]) == 2
    assert "not an `edgec opt --dump-ir` directory" in capsys.readouterr().err


def test_nodes_without_origin_match_by_op_and_inputs():
    a = edgec.parse_ir("""graph @main(%x: f32[1,3,8,8]) -> (%y: f32[1,8,8,3]) {
  %0 = transpose(%x) {perm=[0,2,3,1]} : f32[1,8,8,3]
  %1 = relu(%0) : f32[1,8,8,3]  @"Relu_0"
  return %1
}
""")
    b = edgec.parse_ir("""graph @main(%x: f32[1,3,8,8]) -> (%y: f32[1,3,8,8]) {
  %0 = transpose(%x) {perm=[0,2,3,1]} : f32[1,8,8,3]
  %1 = relu(%0) : f32[1,8,8,3]  @"Relu_0"
  %2 = transpose(%1) {perm=[0,3,1,2]} : f32[1,3,8,8]
  return %2
}
""")
    d = diff_graphs(a, b)
    assert [(e.kind, [r["node"] for r in e.a], [r["node"] for r in e.b]) for e in d.entries] == [
        ("same", ["%0"], ["%0"]), ("same", ["%1"], ["%1"]), ("added", [], ["%2"])]
    assert d.transposes == {"added": 1, "removed": 0}
    assert "added:     %2 transpose ()" in d.format()
