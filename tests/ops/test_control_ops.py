"""ONNX control flow (If, Loop, Scan), imported inline, against ONNX Runtime: the interpreter,
and a host build for a representative case of each (the unrolled Loop at -O2)."""

import numpy as np
import pytest
from onnx import TensorProto, helper

import edgec
from edgec.errors import UnsupportedError
from edgec.inspect import inspect_model
from onnx_util import check_model, make_model
from toolchain import needs_arm_run

F = TensorProto.FLOAT
rng = np.random.default_rng(0)


def randn(*shape):
    return rng.standard_normal(shape).astype(np.float32)


def vi(name, elem_type=F, shape=None):
    return helper.make_tensor_value_info(name, elem_type, shape)


def graph(nodes, name, inputs, outputs, initializers=()):
    return helper.make_graph(nodes, name, inputs, outputs, list(initializers))


ONNX_TYPES = {np.float32: F, np.int64: TensorProto.INT64, np.bool_: TensorProto.BOOL}


def const(name, array):
    return helper.make_node("Constant", [], [name], value=helper.make_tensor(
        name, ONNX_TYPES[array.dtype.type], array.shape, array.reshape(-1)))


def ops(g):
    return [n.op for n in g.nodes]


# ---- If ---------------------------------------------------------------------------------------

def test_if_on_a_shape_inlines_the_taken_branch():
    """An exporter's If on Shape(x)[0] == 1: the condition folds at import and only the taken
    branch is imported; the other one (a reshape to another shape) never reaches the graph."""
    x = randn(1, 4)
    then = graph([helper.make_node("Relu", ["x"], ["t"])], "then", [], [vi("t")])
    other = graph([const("s", np.array([2, 2], np.int64)), helper.make_node("Reshape", ["x", "s"], ["e"])],
                  "else", [], [vi("e")])
    nodes = [helper.make_node("Shape", ["x"], ["shape"]), const("zero", np.array(0, np.int64)),
             helper.make_node("Gather", ["shape", "zero"], ["n"]), const("one", np.array(1, np.int64)),
             helper.make_node("Equal", ["n", "one"], ["cond"]),
             helper.make_node("If", ["cond"], ["y"], name="batch_is_1", then_branch=then, else_branch=other)]
    m = make_model(nodes, {"x": x}, ["y"])
    g = edgec.import_onnx(m)
    assert ops(g) == ["relu"]
    assert g.nodes[0].origin == ("batch_is_1/then_branch/Relu_0",)
    check_model(m, {"x": x})


def _data_if_model(x):
    """If on sum(x) > 0: then x + b (b captured: an outer initializer through an outer node), else
    x * 2 (its own initializer) - 1 (a Constant node of the branch)."""
    then = graph([helper.make_node("Add", ["x", "b2"], ["t"])], "then", [], [vi("t")])
    other = graph([helper.make_node("Mul", ["x", "two"], ["m"]), const("c1", np.array(1, np.float32)),
                   helper.make_node("Sub", ["m", "c1"], ["e"])], "else", [], [vi("e")],
                  [helper.make_tensor("two", F, [], [2.0])])
    nodes = [helper.make_node("Neg", ["b"], ["b2"]),
             helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0), const("zero", np.array(0, np.float32)),
             helper.make_node("Greater", ["s", "zero"], ["cond"]),
             helper.make_node("If", ["cond"], ["y"], name="if_positive", then_branch=then, else_branch=other)]
    return make_model(nodes, {"x": x}, ["y"], {"b": randn(3)})


def test_if_on_data_computes_both_branches_and_selects():
    x = np.abs(randn(2, 3))
    m = _data_if_model(x)
    g = edgec.import_onnx(m)
    assert ops(g).count("where") == 1 and "add" in ops(g) and "mul" in ops(g)
    check_model(m, {"x": x})
    check_model(m, {"x": -x}, compiled=False)


def test_if_on_data_with_branches_of_different_types_is_refused():
    x = randn(4)
    then = graph([helper.make_node("Relu", ["x"], ["t"])], "then", [], [vi("t")])
    other = graph([const("s", np.array([2, 2], np.int64)), helper.make_node("Reshape", ["x", "s"], ["e"])],
                  "else", [], [vi("e")])
    nodes = [helper.make_node("ReduceSum", ["x"], ["total"], keepdims=0), const("zero", np.array(0, np.float32)),
             helper.make_node("Greater", ["total", "zero"], ["cond"]),
             helper.make_node("If", ["cond"], ["y"], name="pick", then_branch=then, else_branch=other)]
    m = make_model(nodes, {"x": x}, ["y"])
    with pytest.raises(UnsupportedError, match=r"'pick' \(If\): output 0 \('y'\) is f32\[4\] in then_branch "
                                               r"but f32\[2,2\] in else_branch"):
        edgec.import_onnx(m)


def test_an_optional_output_read_only_inside_a_branch_is_kept():
    """LayerNormalization's Mean, read by nothing but a branch, is a capture: still computed."""
    x = randn(2, 4)
    then = graph([helper.make_node("Add", ["y", "mean"], ["t"])], "then", [], [vi("t")])
    other = graph([helper.make_node("Sub", ["y", "mean"], ["e"])], "else", [], [vi("e")])
    nodes = [helper.make_node("LayerNormalization", ["x", "scale"], ["y", "mean"], axis=-1),
             const("cond", np.array(True)),
             helper.make_node("If", ["cond"], ["out"], then_branch=then, else_branch=other)]
    m = make_model(nodes, {"x": x}, ["out"], {"scale": randn(4)})
    check_model(m, {"x": x}, compiled=False)


# ---- Loop -------------------------------------------------------------------------------------

def _loop_body(extra_nodes=(), cond_out="cond_in"):
    """body(i, cond, y) -> (cond, y + float(i) * x, (y + float(i) * x) * 2): x captured from the main graph."""
    nodes = [helper.make_node("Cast", ["i"], ["fi"], to=F), helper.make_node("Mul", ["fi", "x"], ["ix"]),
             helper.make_node("Add", ["y", "ix"], ["y_out"]), const("two", np.array(2, np.float32)),
             helper.make_node("Mul", ["y_out", "two"], ["scan"]), *extra_nodes]
    return graph(nodes, "body", [vi("i", TensorProto.INT64, []), vi("cond_in", TensorProto.BOOL, []), vi("y")],
                 [vi(cond_out, TensorProto.BOOL, []), vi("y_out"), vi("scan")])


def test_loop_with_a_constant_trip_count_unrolls_at_O2():
    x = randn(2, 3)
    nodes = [const("m", np.array(3, np.int64)),
             helper.make_node("Loop", ["m", "", "y0"], ["y", "scans"], name="loop", body=_loop_body())]
    m = make_model(nodes, {"x": x}, ["y", "scans"], {"y0": randn(2, 3)})
    g = edgec.import_onnx(m)
    assert ops(g).count("concat") == 1 and g.outputs[1].type.shape == (3, 2, 3)
    check_model(m, {"x": x}, level=2)


def test_loop_whose_condition_folds_as_it_unrolls():
    """No trip count; the body's condition i < 3 becomes known at every unrolled iteration."""
    x = randn(2)
    body = _loop_body([const("three", np.array(3, np.int64)), helper.make_node("Less", ["i", "three"], ["go"])],
                      cond_out="go")
    nodes = [const("true", np.array(True)),
             helper.make_node("Loop", ["", "true", "y0"], ["y", "scans"], name="while_loop", body=body)]
    m = make_model(nodes, {"x": x}, ["y", "scans"], {"y0": randn(2)})
    assert edgec.import_onnx(m).outputs[1].type.shape == (4, 2)  # i = 0..3: the fourth sees i < 3 false
    check_model(m, {"x": x}, compiled=False)


def _if_inside_loop_model(x):
    """Loop(4) whose body's If selects on data; its branches capture a value of the body (y) and
    one of the main graph two scopes out (w)."""
    then = graph([helper.make_node("Add", ["y", "w"], ["t"])], "then", [], [vi("t")])
    other = graph([helper.make_node("Sub", ["y", "w"], ["e"])], "else", [], [vi("e")])
    body_nodes = [helper.make_node("ReduceSum", ["y"], ["s"], keepdims=0), const("zero", np.array(0, np.float32)),
                  helper.make_node("Greater", ["s", "zero"], ["pos"]),
                  helper.make_node("If", ["pos"], ["y_out"], name="inner", then_branch=then, else_branch=other),
                  helper.make_node("Identity", ["y_out"], ["scan"])]
    body = graph(body_nodes, "body", [vi("i", TensorProto.INT64, []), vi("c", TensorProto.BOOL, []), vi("y")],
                 [vi("c", TensorProto.BOOL, []), vi("y_out"), vi("scan")])
    nodes = [helper.make_node("Neg", ["v"], ["w"]), const("m", np.array(4, np.int64)),
             helper.make_node("Loop", ["m", "", "x"], ["y", "scans"], name="outer", body=body)]
    return make_model(nodes, {"x": x}, ["y", "scans"], {"v": randn(3)})


def test_if_on_data_inside_a_loop():
    x = randn(3)
    m = _if_inside_loop_model(x)
    g = edgec.import_onnx(m)
    assert ops(g).count("where") == 4
    assert any(n.origin == ("outer/body[3]/inner/then_branch/Add_0",) for n in g.nodes)
    check_model(m, {"x": x}, compiled=False)


@needs_arm_run
def test_if_on_data_inside_a_loop_on_arm():
    from edgec.verify import verify_model
    report = verify_model(_if_inside_loop_model(randn(3)), target="arm-a72", level=2)
    assert report.ok and all(o.compiled is not None for o in report.outputs), report.format()


def _loop_model(x, trip_nodes, trip="m", cond_out="cond_in", extra=()):
    nodes = [*trip_nodes, helper.make_node("Loop", [trip, "", "y0"], ["y", "scans"], name="the_loop",
                                           body=_loop_body(extra, cond_out))]
    return make_model(nodes, {"x": x}, ["y", "scans"], {"y0": randn(*x.shape)})


def test_loop_that_cannot_be_unrolled_is_refused():
    x = randn(2)
    data_trip = [helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
                 helper.make_node("Cast", ["s"], ["m"], to=TensorProto.INT64)]
    with pytest.raises(UnsupportedError, match=r"'the_loop' \(Loop\): input 'M' must be a constant: edgec unrolls "
                                               r"a Loop at import \(up to 64 iterations\)"):
        edgec.import_onnx(_loop_model(x, data_trip))
    with pytest.raises(UnsupportedError, match=r"'the_loop' \(Loop\): has a trip count of 100 and its condition "
                                               r"still holds after 64 iterations"):
        edgec.import_onnx(_loop_model(x, [const("m", np.array(100, np.int64))]))
    data_cond = [helper.make_node("ReduceSum", ["y_out"], ["s"], keepdims=0), const("z", np.array(0, np.float32)),
                 helper.make_node("Greater", ["s", "z"], ["go"])]
    with pytest.raises(UnsupportedError, match=r"'the_loop' \(Loop\): the condition its body computes \('go', in "
                                               r"iteration 0\) depends on data: edgec unrolls a Loop"):
        edgec.import_onnx(_loop_model(x, [const("m", np.array(3, np.int64))], cond_out="go", extra=data_cond))


# ---- Scan -------------------------------------------------------------------------------------

def test_scan_with_reverse_directions_and_axes():
    """A running sum over a (forward, axis 0) and b (reversed, axis 1); the per-step products are
    stacked along axis 1 from the end, the running sums along axis 0."""
    a, b = randn(4, 3), randn(3, 4)
    body = graph([helper.make_node("Add", ["acc", "ai"], ["acc2"]),
                  helper.make_node("Add", ["acc2", "bi"], ["acc_out"]),
                  helper.make_node("Mul", ["ai", "bi"], ["prod"]), helper.make_node("Identity", ["acc_out"], ["sums"])],
                 "body", [vi("acc", F, [3]), vi("ai", F, [3]), vi("bi", F, [3])],
                 [vi("acc_out", F, [3]), vi("prod", F, [3]), vi("sums", F, [3])])
    nodes = [helper.make_node("Scan", ["acc0", "a", "b"], ["acc", "prods", "sums"], name="scan", body=body,
                              num_scan_inputs=2, scan_input_axes=[0, 1], scan_input_directions=[0, 1],
                              scan_output_axes=[1, 0], scan_output_directions=[1, 0])]
    m = make_model(nodes, {"a": a, "b": b}, ["acc", "prods", "sums"], {"acc0": randn(3)})
    g = edgec.import_onnx(m)
    assert g.outputs[1].type.shape == (3, 4) and g.outputs[2].type.shape == (4, 3)
    check_model(m, {"a": a, "b": b}, level=2)


def test_scan_longer_than_the_unroll_limit_is_refused():
    a = randn(65, 2)
    body = graph([helper.make_node("Add", ["acc", "ai"], ["acc_out"])], "body",
                 [vi("acc", F, [2]), vi("ai", F, [2])], [vi("acc_out", F, [2])])
    m = make_model([helper.make_node("Scan", ["acc0", "a"], ["acc"], name="long", body=body, num_scan_inputs=1)],
                   {"a": a}, ["acc"], {"acc0": randn(2)})
    with pytest.raises(UnsupportedError, match=r"'long' \(Scan\): has a sequence length of 65; edgec unrolls a "
                                               r"Scan at import, up to 64 iterations"):
        edgec.import_onnx(m)


# ---- inspect ----------------------------------------------------------------------------------

def test_inspect_counts_ops_and_weights_inside_subgraphs():
    m = _data_if_model(randn(2, 3))
    info = inspect_model(m)
    assert info.ops["Add"] == 1 and info.ops["Mul"] == 1 and info.ops["Sub"] == 1 and info.ops["If"] == 1
    assert info.ops["Constant"] == 2  # one in the main graph, one in else_branch
    assert info.parameters == 3 + 1 + 1 + 1  # b, else_branch's initializer, the two scalar Constants
    assert info.unsupported == {}


def test_unsupported_op_inside_a_subgraph_is_listed_with_its_path():
    then = graph([helper.make_node("FooBar", ["x"], ["t"], name="foo")], "then", [], [vi("t")])
    other = graph([helper.make_node("Relu", ["x"], ["e"])], "else", [], [vi("e")])
    nodes = [const("cond", np.array(True)),
             helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then, else_branch=other)]
    m = helper.make_model(graph(nodes, "g", [vi("x", F, [2])], [vi("y", F, [2])]),
                          opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedError, match=r"FooBar \(nodes: branch/then_branch/foo\)"):
        edgec.import_onnx(m)
    assert inspect_model(m).unsupported == {"FooBar": ["branch/then_branch/foo"]}
