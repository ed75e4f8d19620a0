"""Shape and indexing ops against ONNX Runtime: reference interpreter and compiled host module."""

import re

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

import edgec
from edgec.errors import EdgecError
from onnx_util import check_model, make_model, node_model

rng = np.random.default_rng(0)
X = rng.standard_normal((2, 3, 4)).astype(np.float32)
XI = rng.integers(-50, 50, (2, 3, 4)).astype(np.int64)
BIG = np.iinfo(np.int64).max


def i64(*values):
    return np.array(values, dtype=np.int64)


def check(op, x, consts=None, opset=17, n_outputs=1, input_names=None, **attrs):
    model = node_model(op, {"x": x}, consts, n_outputs=n_outputs, opset=opset, input_names=input_names, **attrs)
    return check_model(model, {"x": x})


def ops_of(model):
    return [n.op for n in edgec.import_onnx(model).nodes]


# ---- reshape family ----------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(4, 6), (0, -1), (-1, 4), (2, 0, 2, 2), (24,), (1, 2, 1, 12)])
@pytest.mark.parametrize("x", [X, XI], ids=["f32", "i64"])
def test_reshape(x, shape):
    check("Reshape", x, {"shape": i64(*shape)})


def test_reshape_allowzero():
    check("Reshape", X, {"shape": i64(3, -1, 2)}, opset=14, allowzero=1)
    # With allowzero a 0 is a real 0: 0 * 24 elements cannot hold 2x3x4.
    model = node_model("Reshape", {"x": X}, {"shape": i64(0, 24)}, opset=14, allowzero=1)
    model.graph.ClearField("output")
    model.graph.output.append(helper.make_tensor_value_info("out0", TensorProto.FLOAT, None))
    with pytest.raises(EdgecError, match="Reshape_node"):
        edgec.import_onnx(model)


def test_reshape_of_non_constant_shape_names_the_node():
    shape = i64(4, 6)
    model = node_model("Reshape", {"x": X, "shape": shape})
    with pytest.raises(EdgecError, match="Reshape_node.*shape.*constant"):
        edgec.import_onnx(model)


@pytest.mark.parametrize("axis", [0, 1, 2, 3, -1, -3])
def test_flatten(axis):
    check("Flatten", X, axis=axis)
    assert ops_of(node_model("Flatten", {"x": X}, axis=axis)) == ["reshape"]


@pytest.mark.parametrize("opset,axes", [(11, [2]), (11, None), (13, [-2]), (13, None), (13, [0, 2])])
def test_squeeze(opset, axes):
    x = rng.standard_normal((1, 3, 1, 4)).astype(np.float32)
    if opset < 13:
        check("Squeeze", x, opset=opset, **({"axes": axes} if axes else {}))
    else:
        check("Squeeze", x, {"axes": i64(*axes)} if axes else None, opset=opset)


@pytest.mark.parametrize("opset,axes", [(11, [0, -1]), (13, [1, 3]), (13, [-1]), (13, [0, 4, 2])])
def test_unsqueeze(opset, axes):
    if opset < 13:
        check("Unsqueeze", X, opset=opset, axes=axes)
    else:
        check("Unsqueeze", XI, {"axes": i64(*axes)}, opset=opset)


# ---- transpose / concat / split ----------------------------------------------------------------

@pytest.mark.parametrize("perm", [None, [1, 0, 2], [2, 0, 1]])
@pytest.mark.parametrize("x", [X, XI], ids=["f32", "i64"])
def test_transpose(x, perm):
    check("Transpose", x, **({"perm": perm} if perm else {}))


@pytest.mark.parametrize("axis", [0, 2, -2])
@pytest.mark.parametrize("x", [X, XI], ids=["f32", "i64"])
def test_concat(x, axis):
    other = np.concatenate([x, x], axis=axis)[:1] if axis == 0 else np.flip(x, axis).copy()
    model = node_model("Concat", {"x": x, "y": x * 2}, {"c": other}, axis=axis)
    check_model(model, {"x": x, "y": x * 2})


@pytest.mark.parametrize("opset,axis,split,n", [
    (11, 1, [1, 2], 2),     # split attribute
    (13, -1, [3, 1], 2),    # split input
    (13, 2, None, 2),       # equal split
    (18, 0, None, 2),       # num_outputs, even
])
def test_split(opset, axis, split, n):
    x = XI if opset == 13 else X
    if opset < 13:
        check("Split", x, opset=opset, n_outputs=n, axis=axis, split=split)
    elif opset == 13:
        check("Split", x, {"split": i64(*split)} if split else None, opset=opset, n_outputs=n, axis=axis)
    else:
        check("Split", x, opset=opset, n_outputs=n, axis=axis, num_outputs=n)


def test_split_into_one():
    check("Split", X, opset=13, n_outputs=1, axis=1)


def test_split_num_outputs_uneven():
    x = rng.standard_normal((2, 5)).astype(np.float32)
    check("Split", x, opset=18, n_outputs=3, axis=1, num_outputs=3)


# Outputs declared but never read: a variadic or required output keeps its meaning (the first
# piece of a two-way Split is half of the input, not all of it); only optional ones are dropped.
UNREAD_OUTPUTS = [
    ("Split", 11, {"axis": 1, "split": [1, 2]}, None, 2),
    ("Split", 13, {"axis": 2}, {"split": i64(1, 3)}, 2),
    ("Split", 13, {"axis": 2}, None, 2),                     # equal split
    ("Split", 18, {"axis": 2, "num_outputs": 3}, None, 3),   # uneven pieces of 5: 2, 2, 1
    ("TopK", 11, {"axis": -1}, {"k": i64(2)}, 2),            # indices unread
    ("MaxPool", 12, {"kernel_shape": [2]}, None, 2),         # optional indices unread
]


@pytest.mark.parametrize("op,opset,attrs,consts,n", UNREAD_OUTPUTS, ids=lambda c: str(c))
def test_only_first_output_read(op, opset, attrs, consts, n):
    x = X if op != "Split" or opset != 18 else rng.standard_normal((2, 3, 5)).astype(np.float32)
    names = ["x", *(consts or {})]
    node = helper.make_node(op, names, [f"out{i}" for i in range(n)], name=f"{op}_node", **attrs)
    model = make_model([node], {"x": x}, ["out0"], consts, opset)
    expected = check_model(model, {"x": x})
    assert expected["out0"].size < x.size  # the case really tests a part of the input


# ---- slice -----------------------------------------------------------------------------------------

SLICES = [
    # starts, ends, axes, steps
    ([0, 1], [2, 100], [0, 2], None),                     # clamping of a large end
    ([-3], [-1], [-1], None),                              # negative start/end/axis
    ([-1], [-BIG], [2], [-1]),                             # full reverse
    ([3], [0], [2], [-2]),                                 # negative step, exclusive end
    ([100], [0], [1], [-1]),                               # start clamped for a negative step
    ([-100], [-200], [2], [-1]),                           # both clamp: just index 0
    ([1, 0], [BIG, 4], [1, 2], [1, 3]),                    # positive steps, INT64_MAX end
    ([2, -1, 0], [0, -BIG, BIG], [1, 2, 0], [-1, -2, 1]),  # mixed
]


@pytest.mark.parametrize("starts,ends,axes,steps", SLICES)
@pytest.mark.parametrize("x", [X, XI], ids=["f32", "i64"])
def test_slice(x, starts, ends, axes, steps):
    consts = {"starts": i64(*starts), "ends": i64(*ends), "axes": i64(*axes)}
    if steps:
        consts["steps"] = i64(*steps)
    check("Slice", x, consts)


def test_empty_slice_is_refused_unless_folded():
    model = node_model("Slice", {"x": X}, {"starts": i64(3), "ends": i64(1), "axes": i64(2)})
    with pytest.raises(EdgecError, match="Slice_node.*empty"):
        edgec.import_onnx(model)
    # An empty slice of a constant (shape arithmetic) folds: Concat(Shape(x)[0:0], [4, 6]).
    nodes = [helper.make_node("Shape", ["x"], ["s"]),
             helper.make_node("Slice", ["s", "zero", "zero"], ["none"]),
             helper.make_node("Concat", ["none", "dims"], ["shape"], axis=0),
             helper.make_node("Reshape", ["x", "shape"], ["out"])]
    model = make_model(nodes, {"x": X}, ["out"], {"zero": i64(0), "dims": i64(4, 6)})
    assert ops_of(model) == ["reshape"]
    check_model(model, {"x": X})


def test_slice_without_axes_and_steps():
    check("Slice", X, {"starts": i64(1, -2), "ends": i64(2, BIG)})
    check("Slice", X, {"starts": i64(1), "ends": i64(3), "steps": i64(1)},
          input_names=["x", "starts", "ends", "", "steps"])


# ---- gather / scatter --------------------------------------------------------------------------

@pytest.mark.parametrize("axis,indices", [
    (0, i64(1, -1, 0)), (1, i64(-1, 0, -3, 2).reshape(2, 2)), (-1, np.array(2, np.int64)),
    (2, np.array([3, -4, 1], np.int32)),
])
@pytest.mark.parametrize("x", [X, XI], ids=["f32", "i64"])
def test_gather(x, axis, indices):
    check("Gather", x, {"i": indices}, axis=axis)           # constant indices
    model = node_model("Gather", {"x": x, "i": indices}, axis=axis)  # run-time indices
    check_model(model, {"x": x, "i": indices})


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_elements(axis):
    dim = X.shape[axis]
    idx = rng.integers(-dim, dim, (2, 3, 4)).astype(np.int64)
    model = node_model("GatherElements", {"x": X, "i": idx}, axis=axis)
    check_model(model, {"x": X, "i": idx})


@pytest.mark.parametrize("batch_dims,indices", [
    (0, i64([0, 1], [-1, -2], [1, 0])),
    (0, i64([[1], [-2]])),
    (1, i64([[1, 3], [-1, 0]], [[0, 0], [2, -1]])),
])
def test_gather_nd(batch_dims, indices):
    model = node_model("GatherND", {"x": X, "i": indices}, batch_dims=batch_dims)
    check_model(model, {"x": X, "i": indices})


@pytest.mark.parametrize("op,consts,attrs,what", [
    ("Gather", {"i": i64(0, 2)}, {"axis": 0}, "2 at position [1]"),             # X is 2x3x4
    ("Gather", {"i": i64(-3)}, {"axis": 0}, "-3 at position [0]"),
    ("Gather", {"i": np.array([[4]], np.int32)}, {"axis": -1}, "4 at position [0, 0]"),
    ("GatherElements", {"i": np.full((2, 3, 4), 3, np.int64)}, {"axis": 1}, "outside [-3, 2]"),
    ("GatherND", {"i": i64([0, 3])}, {}, "3 at position [0, 1]"),
    ("ScatterElements", {"i": np.full((1, 1, 1), -5, np.int64), "u": np.ones((1, 1, 1), np.float32)},
     {"axis": 2}, "outside [-4, 3]"),
    ("ScatterND", {"i": i64([2]), "u": np.ones((1, 3, 4), np.float32)}, {}, "outside [-2, 1]"),
])
def test_constant_indices_out_of_range_are_refused(op, consts, attrs, what):
    """Out-of-range constant indices would make the compiled code read or write outside the
    tensor; ONNX forbids them, so import refuses them, naming the node."""
    model = node_model(op, {"x": X}, consts, **attrs)
    with pytest.raises(EdgecError, match=f"{op}_node.*{re.escape(what)}"):
        edgec.import_onnx(model)


@pytest.mark.parametrize("opset,reduction,indices", [
    (13, None, i64([0, 1], [1, -1])),
    (16, "add", i64([0], [1], [0])),
    (18, "max", i64([1, 2, 3], [0, 0, -1])),
    (18, "min", i64([1, 2], [1, 2])),
    (16, "mul", i64([1, 1], [0, 2])),
])
def test_scatter_nd(opset, reduction, indices):
    k = indices.shape[-1]
    updates = rng.standard_normal(indices.shape[:-1] + X.shape[k:]).astype(np.float32)
    attrs = {"reduction": reduction} if reduction else {}
    model = node_model("ScatterND", {"x": X, "i": indices, "u": updates}, opset=opset, **attrs)
    check_model(model, {"x": X, "i": indices, "u": updates})


# ---- pad / expand / tile -------------------------------------------------------------------------

@pytest.mark.parametrize("mode,pads,value", [
    ("constant", [0, 1, 2, 1, 0, 1], 1.5),
    ("constant", [0, -1, 2, 0, 1, -2], None),   # negative pads crop
    ("reflect", [1, 2, 3, 1, 0, 2], None),
    ("edge", [0, 2, 1, 1, 3, 0], None),
])
def test_pad(mode, pads, value):
    consts = {"pads": i64(*pads)}
    if value is not None:
        consts["value"] = np.array(value, np.float32)
    check("Pad", X, consts, mode=mode)


@pytest.mark.parametrize("pads", [[0, 1, 2, 1, 0, 3], [1, 3, 0, 0, 4, 9]], ids=["small", "wider-than-dim"])
def test_pad_wrap_opset19(pads):
    check("Pad", X, {"pads": i64(*pads)}, opset=19, mode="wrap")


def test_pad_integer_and_axes_opset18():
    check("Pad", XI, {"pads": i64(1, 0, 2, 0, 1, 1), "value": np.array(-7, np.int64)})
    check("Pad", X, {"pads": i64(1, 2, 0, 3), "value": np.array(0.5, np.float32), "axes": i64(-1, 1)}, opset=18)
    check("Pad", X, {"pads": i64(1, 1), "axes": i64(2)}, input_names=["x", "pads", "", "axes"],
          opset=18, mode="reflect")


@pytest.mark.parametrize("x,shape", [
    (X[:, :1, :], [2, 3, 4]),                              # plain
    (X[:, :1, :], [3, 1]),                                 # bidirectional: keeps 4
    (XI[0, :, :1], [2, 1, 1, 5]),                          # rank grows
])
def test_expand(x, shape):
    check("Expand", np.ascontiguousarray(x), {"shape": i64(*shape)})


@pytest.mark.parametrize("x", [X, XI], ids=["f32", "i64"])
def test_tile(x):
    check("Tile", x, {"repeats": i64(2, 1, 3)})


# ---- identity / dropout / cast / where ---------------------------------------------------------

def test_identity_and_dropout():
    check("Identity", X)
    check("Dropout", X, opset=13)
    check("Dropout", X, {"ratio": np.array(0.3, np.float32)}, opset=13)
    assert ops_of(node_model("Dropout", {"x": X}, opset=13)) == ["identity"]


def test_dropout_training_mode_is_refused():
    model = node_model("Dropout", {"x": X}, {"ratio": np.array(0.5, np.float32), "train": np.array(True)}, opset=13)
    with pytest.raises(EdgecError, match="Dropout_node.*training mode with a ratio other than 0"):
        edgec.import_onnx(model)


@pytest.mark.parametrize("x,to", [
    (X * 10, TensorProto.INT64), (X * 10, TensorProto.INT32), (np.abs(X) * 50, TensorProto.UINT8),
    (np.where(X > 0.5, X, 0).astype(np.float32), TensorProto.BOOL), (X, TensorProto.FLOAT16),
    (X, TensorProto.DOUBLE), (XI, TensorProto.FLOAT), (XI, TensorProto.INT8), (X > 0, TensorProto.FLOAT),
], ids=["f32-i64", "f32-i32", "f32-u8", "f32-bool", "f32-f16", "f32-f64", "i64-f32", "i64-i8", "bool-f32"])
def test_cast(x, to):
    check("Cast", np.ascontiguousarray(x), to=to)


def test_cast_like():
    check("CastLike", X * 10, {"like": np.zeros(1, np.int32)})
    check("CastLike", XI, {"like": np.zeros(1, np.float32)})


@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_where(dtype):
    cond = rng.standard_normal((3, 1)) > 0
    x = (X * 10).astype(dtype)
    y = np.arange(4).astype(dtype)
    model = node_model("Where", {"c": cond, "x": x}, {"y": y})
    check_model(model, {"c": cond, "x": x})


# ---- trilu / one_hot / cumsum / topk / einsum --------------------------------------------------

@pytest.mark.parametrize("upper,k", [(1, None), (0, None), (1, 2), (0, -1), (1, -5)])
def test_trilu(upper, k):
    consts = {"k": np.array(k, np.int64)} if k is not None else None
    check("Trilu", X, consts, opset=14, upper=upper)


@pytest.mark.parametrize("axis,values,indices", [
    (-1, np.array([0, 1], np.float32), i64([0, -1, 3], [2, 4, -5])),
    (0, np.array([-2, 5], np.int64), i64(1, 0, -2)),
    (1, np.array([0.5, 3], np.float32), np.array([[1.7, 2.2], [0, 4]], np.float32)),
])
def test_one_hot(axis, values, indices):
    # ONNX Runtime implements some type combinations only: float indices go with float depth.
    depth = np.array(5, np.float32 if indices.dtype == np.float32 else np.int64)
    model = node_model("OneHot", {"i": indices}, {"depth": depth, "values": values}, axis=axis)
    check_model(model, {"i": indices})


@pytest.mark.parametrize("exclusive", [0, 1])
@pytest.mark.parametrize("reverse", [0, 1])
@pytest.mark.parametrize("x,axis", [(X, 1), (XI, -1)], ids=["f32", "i64"])
@pytest.mark.parametrize("op", ["CumSum", "CumProd"])
def test_cumulative(op, x, axis, exclusive, reverse):
    if op == "CumProd":  # CumProd is opset 26; keep the products small
        x = (np.sign(x) + (x % 3 if x.dtype.kind == "i" else np.round(x, 1))).astype(x.dtype)
        check(op, x, {"axis": np.array(axis, np.int64)}, opset=26, exclusive=exclusive, reverse=reverse)
    else:
        check(op, x, {"axis": np.array(axis, np.int64)}, exclusive=exclusive, reverse=reverse)


@pytest.mark.parametrize("largest", [1, 0])
@pytest.mark.parametrize("x,axis,k", [(X, -1, 2), (X, 1, 3), (XI, 0, 1)], ids=["f32-last", "f32-mid", "i64"])
def test_topk(x, axis, k, largest):
    x = np.ascontiguousarray(x)
    if x.dtype == np.int64:  # distinct values: ties may order differently
        x = rng.permutation(x.size).reshape(x.shape).astype(np.int64)
    check("TopK", x, {"k": i64(k)}, n_outputs=2, axis=axis, largest=largest)


@pytest.mark.parametrize("equation,shapes", [
    ("ij,jk->ik", [(3, 4), (4, 5)]),
    ("bij,bjk->bik", [(2, 3, 4), (2, 4, 5)]),
    ("...ij->...ji", [(2, 3, 4)]),
    ("ij->", [(3, 4)]),
    ("bij, bkj", [(2, 3, 4), (2, 5, 4)]),     # implicit output, spaces
    ("ii->i", [(3, 3)]),                      # diagonal
    ("...j,j->...", [(2, 3, 4), (4,)]),
    ("bhqd,bhkd->bhqk", [(1, 2, 3, 4), (1, 2, 5, 4)]),
])
def test_einsum(equation, shapes):
    arrays = {f"x{i}": rng.standard_normal(s).astype(np.float32) for i, s in enumerate(shapes)}
    check_model(node_model("Einsum", arrays, equation=equation), arrays)


# ---- constants, shape arithmetic and folding ---------------------------------------------------

def test_constant_forms():
    nodes = [
        helper.make_node("Constant", [], ["a"], value=numpy_helper.from_array(X[0])),
        helper.make_node("Constant", [], ["b"], value_float=2.5),
        helper.make_node("Constant", [], ["c"], value_floats=[1.0, 2.0, 3.0, 4.0]),
        helper.make_node("Constant", [], ["d"], value_ints=[1, 2, 3, 4]),
        helper.make_node("Constant", [], ["e"], value_int=7),
        helper.make_node("Add", ["x", "a"], ["s0"]),
        helper.make_node("Mul", ["s0", "b"], ["s1"]),
        helper.make_node("Sub", ["s1", "c"], ["out"]),
        helper.make_node("Mul", ["d", "e"], ["outi"]),
    ]
    model = make_model(nodes, {"x": X}, ["out", "outi"])
    check_model(model, {"x": X})


def test_shape_size_and_constant_of_shape():
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Shape", ["x"], ["s_tail"], start=-2),
        helper.make_node("Shape", ["x"], ["s_mid"], start=1, end=-1),
        helper.make_node("Size", ["x"], ["n"]),
        helper.make_node("ConstantOfShape", ["s"], ["c"],
                         value=numpy_helper.from_array(np.array([2.5], np.float32))),
        helper.make_node("Add", ["x", "c"], ["out"]),
        helper.make_node("ConstantOfShape", ["s_tail"], ["ci"]),
    ]
    model = make_model(nodes, {"x": X}, ["out", "s", "s_tail", "s_mid", "n", "ci"], opset=15)
    check_model(model, {"x": X})


def test_range():
    nodes = [
        helper.make_node("Range", ["a", "b", "c"], ["ri"]),
        helper.make_node("Range", ["fa", "fb", "fc"], ["rf"]),
        helper.make_node("Range", ["b", "a", "nc"], ["rn"]),
        helper.make_node("Add", ["x", "rf"], ["out"]),
    ]
    consts = {"a": np.array(1, np.int64), "b": np.array(10, np.int64), "c": np.array(3, np.int64),
              "nc": np.array(-4, np.int64), "fa": np.array(-1, np.float32), "fb": np.array(0.9, np.float32),
              "fc": np.array(0.5, np.float32)}
    x = rng.standard_normal((4,)).astype(np.float32)
    model = make_model(nodes, {"x": x}, ["ri", "rn", "out"], consts)
    check_model(model, {"x": x})


def test_non_zero():
    c = np.array([[0, 1.5, 0], [2, 0, -1]], np.float32)
    model = make_model([helper.make_node("NonZero", ["c"], ["out"], name="nz")], {}, ["out"], {"c": c})
    check_model(model, {})
    model = node_model("NonZero", {"x": X})
    with pytest.raises(EdgecError, match="NonZero_node.*'X' must be a constant: the output shape depends on its values"):
        edgec.import_onnx(model)


def test_shape_gather_concat_reshape_chain_folds():
    """Shape -> Gather -> Mul -> Unsqueeze -> Concat -> Reshape (plus Slice, Cast through float
    and Squeeze) becomes a single reshape at import."""
    nodes = [
        helper.make_node("Shape", ["x"], ["s"]),
        helper.make_node("Gather", ["s", "zero"], ["d0"], axis=0),              # 2 (a scalar)
        helper.make_node("Unsqueeze", ["d0", "axes0"], ["d0v"]),               # [2]
        helper.make_node("Slice", ["s", "one", "big"], ["tail"]),              # [3, 4]
        helper.make_node("Cast", ["tail"], ["tailf"], to=TensorProto.FLOAT),
        helper.make_node("Cast", ["tailf"], ["taili"], to=TensorProto.INT64),
        helper.make_node("Gather", ["taili", "zero"], ["t0"], axis=0),
        helper.make_node("Gather", ["taili", "minus1"], ["t1"], axis=0),
        helper.make_node("Mul", ["t0", "t1"], ["p"]),                          # 12
        helper.make_node("Unsqueeze", ["p", "axes0"], ["pv"]),
        helper.make_node("Concat", ["d0v", "pv"], ["shape2"], axis=0),        # [2, 12]
        helper.make_node("Reshape", ["x", "shape2"], ["y"]),
        helper.make_node("Squeeze", ["pv", "axes0"], ["ps"]),
        helper.make_node("Relu", ["y"], ["out"]),
    ]
    consts = {"zero": np.array(0, np.int64), "minus1": np.array(-1, np.int64), "axes0": i64(0),
              "one": i64(1), "big": i64(BIG)}
    model = make_model(nodes, {"x": X}, ["out", "ps", "shape2"], consts)
    assert ops_of(model) == ["reshape", "relu"]
    out = check_model(model, {"x": X})
    assert out["out"].shape == (2, 12)


def test_integer_ops_on_constants_fold():
    """transpose / slice / gather / tile / expand / where / concat / cast on int64 constants fold."""
    c = i64([1, 2, 3], [4, 5, 6])
    nodes = [
        helper.make_node("Transpose", ["c"], ["t"]),                          # [[1,4],[2,5],[3,6]]
        helper.make_node("Slice", ["t", "s0", "e0", "a0", "st"], ["sl"]),     # rows 2, 0
        helper.make_node("Gather", ["sl", "gi"], ["g"], axis=1),
        helper.make_node("Tile", ["g", "reps"], ["tl"]),
        helper.make_node("Expand", ["tl", "eshape"], ["ex"]),
        helper.make_node("Identity", ["cond"], ["eq"]),
        helper.make_node("Where", ["eq", "ex", "three"], ["w"]),
        helper.make_node("Concat", ["w", "w"], ["cc"], axis=0),
        helper.make_node("Cast", ["cc"], ["ci"], to=TensorProto.INT32),
        helper.make_node("Cast", ["ci"], ["out"], to=TensorProto.INT64),
        helper.make_node("Identity", ["x"], ["xo"]),
    ]
    consts = {"c": c, "s0": i64(-1), "e0": i64(-BIG), "a0": i64(0), "st": i64(-2), "gi": i64(-1, 0),
              "reps": i64(1, 2), "eshape": i64(2, 1, 1), "three": np.array(3, np.int64),
              "cond": np.array([[True, False, True, False]])}
    x = np.zeros((1,), np.float32)
    model = make_model(nodes, {"x": x}, ["out", "xo"], consts)
    assert ops_of(model) == ["identity"]
    check_model(model, {"x": x})


@pytest.mark.parametrize("reduction", ["none", "add", "mul", "max", "min"])
@pytest.mark.parametrize("axis", [0, 1, -1])
def test_scatter_elements(reduction, axis):
    rng = np.random.default_rng(0)
    data = rng.normal(size=(4, 5)).astype(np.float32)
    extent = data.shape[axis]
    if reduction == "none":  # distinct indices along the axis: the result does not depend on order
        idx = np.stack([rng.permutation(extent)[:3] for _ in range(4 if axis == 1 or axis == -1 else 5)])
        idx = idx if axis in (1, -1) else idx.T
    else:  # repeats combine
        idx = rng.integers(-extent, extent, (3, 4) if axis == 0 else (4, 3))
    upd = rng.normal(size=idx.shape).astype(np.float32)
    model = node_model("ScatterElements", {"x": data}, {"i": idx.astype(np.int64), "u": upd},
                       opset=18, axis=axis, **({} if reduction == "none" else {"reduction": reduction}))
    check_model(model, {"x": data})


@pytest.mark.parametrize("k", [0, 1, -2])
@pytest.mark.parametrize("dtype", [None, 7])
def test_eye_like(k, dtype):
    x = np.random.default_rng(0).normal(size=(3, 5)).astype(np.float32)
    check("EyeLike", x, k=k, **({} if dtype is None else {"dtype": dtype}))


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
@pytest.mark.parametrize("shape,axes", [([5, 3], None), ([2, 9], None), ([7], [-1]), ([4, 2], [1, 0])])
def test_center_crop_pad(dtype, shape, axes):
    x = np.arange(30).reshape(6, 5).astype(dtype)
    attrs = {} if axes is None else {"axes": axes}
    check("CenterCropPad", x, {"shape": np.array(shape, np.int64)}, opset=18, **attrs)


# ---- importers that compute their outputs at import (windows, MelWeightMatrix, Unique, NMS) ---

def test_windows_and_mel_weight_matrix():
    from onnx_util import multi_node_model
    cases = [(op, {}, {"size": np.array(n, np.int64)}, {"periodic": p})
             for op in ("HannWindow", "HammingWindow", "BlackmanWindow") for n, p in ((10, 1), (7, 0))]
    cases.append(("MelWeightMatrix", {}, {"bins": np.array(8, np.int64), "dft": np.array(64, np.int64),
                                          "rate": np.array(8000, np.int64), "low": np.float32(0),
                                          "high": np.float32(4000)}, {}))
    cases.append(("Relu", {"x": X}, {}, {}))
    model, feeds = multi_node_model(cases, opset=17)
    check_model(model, feeds)


@pytest.mark.parametrize("attrs", [{}, {"sorted": 0}, {"axis": 0}, {"axis": -1, "sorted": 0}])
def test_unique_of_a_constant(attrs):
    x = np.array([[2, 1, 2, 5], [3, 1, 2, 5], [2, 1, 2, 5]], np.float32)
    model = node_model("Unique", {}, {"x": x}, n_outputs=4, opset=17, **attrs)
    check_model(model, {})


def test_non_max_suppression_of_constants():
    rng = np.random.default_rng(3)
    corners = rng.uniform(0, 10, (2, 12, 2, 2)).astype(np.float32)
    boxes = corners.reshape(2, 12, 4)  # corners in any order
    scores = rng.uniform(0, 1, (2, 3, 12)).astype(np.float32)
    for center, limit, iou, score in ((0, 4, 0.3, 0.2), (1, 10, 0.5, None), (0, 0, 0.5, None)):
        inits = {"boxes": boxes, "scores": scores, "limit": i64(limit), "iou": np.float32([iou])}
        if score is not None:
            inits["score"] = np.float32([score])
        check_model(node_model("NonMaxSuppression", {}, inits, opset=17, center_point_box=center), {})


@pytest.mark.parametrize("op,consts,what", [
    ("Unique", {}, "'X' must be a constant"),
    ("NonMaxSuppression", {"scores": np.ones((1, 1, 2), np.float32)}, "'boxes' must be a constant"),
    ("Compress", None, "'condition' must be a constant")])
def test_data_dependent_shapes_need_constants(op, consts, what):
    """An op whose output shape depends on the values of a non-constant input names the node."""
    boxes = np.ones((1, 2, 4), np.float32)
    inputs = {"x": boxes} if consts is not None else {"x": boxes, "c": np.array([True, False])}
    with pytest.raises(EdgecError, match=f"{op}_node.*{what}: the output shape depends on its values"):
        edgec.import_onnx(node_model(op, inputs, consts, opset=17))


@pytest.mark.parametrize("axis", [None, 0, 2, -1])
def test_compress(axis):
    cond = np.array([True, False, True, True, False])
    check("Compress", X, {"c": cond[:X.size if axis is None else X.shape[axis]]},
          **({} if axis is None else {"axis": axis}))


@pytest.mark.parametrize("attrs", [{}, {"batch_axis": 0, "time_axis": 1}])
def test_reverse_sequence(attrs):
    x = rng.standard_normal((4, 4, 3)).astype(np.float32)
    check("ReverseSequence", x, {"lens": i64(4, 1, 0, 2)}, **attrs)


@pytest.mark.parametrize("consts", [{}, {"ratio": np.float32(0), "mode": np.array(True)}])
def test_dropout_mask(consts):
    """Inference Dropout, or training with ratio 0: the identity and an all-true mask."""
    check("Dropout", X, consts, opset=17, n_outputs=2)


@pytest.mark.parametrize("x,to", [
    (X, TensorProto.INT32), (XI, TensorProto.DOUBLE), (X.astype(np.float16), TensorProto.UINT16),
    ((XI + 60).astype(np.uint8), TensorProto.INT8)], ids=["f32-i32", "i64-f64", "f16-u16", "u8-i8"])
def test_bitcast(x, to):
    check("BitCast", x, opset=26, to=to)


def test_bitcast_between_sizes_is_refused():
    graph = helper.make_graph([helper.make_node("BitCast", ["x"], ["y"], name="BitCast_node", to=TensorProto.INT64)],
                              "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.INT64, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 26)])  # onnx's checker refuses it too
    with pytest.raises(EdgecError, match="BitCast_node.*same size"):
        edgec.import_onnx(model)
