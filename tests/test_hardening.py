"""Bad input: every malformed or unsupported model gives one clear EdgecError, never a crash.

Cases: truncated, corrupted and random bytes; an empty file; graphs with a cycle, a dangling
input and duplicate names; type mismatches; absurd shapes (negative dims, billions of elements);
external data outside the model's directory (a relative path, an absolute path, a symlink);
opsets newer than edgec knows; unsupported ops (every type and node in one message); a dynamic
dim without a value. For each: `edgec.import_onnx` / `edgec.compile` raise an `EdgecError`
subclass whose message says what is wrong, nothing is written when a compile fails, and a
watchdog turns a hang into a failure. Two hypothesis fuzz tests (mutated bytes, mutated fields
of a valid model) check that only EdgecError escapes the importer.
"""

from __future__ import annotations

import os
import signal
import tempfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper, numpy_helper

import edgec
from edgec.errors import EdgecError, ModelError, ShapeError, UnsupportedError
from edgec.onnx_import import MAX_OPSET, MIN_OPSET

from onnx_util import assert_close, run_ort

F, I64 = TensorProto.FLOAT, TensorProto.INT64
WATCHDOG_S = 60


@pytest.fixture(autouse=True)
def watchdog():
    """Fail a test that runs longer than WATCHDOG_S instead of hanging CI."""
    def on_alarm(signum, frame):
        raise TimeoutError(f"test ran longer than {WATCHDOG_S} s (a hang?)")
    old = signal.signal(signal.SIGALRM, on_alarm)
    signal.alarm(WATCHDOG_S)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


def vi(name, elem_type, shape):
    return helper.make_tensor_value_info(name, elem_type, shape)


def model(nodes, inputs, outputs, initializers=(), opset=17, ir_version=8):
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(initializers))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = ir_version
    return m


def small_cnn() -> onnx.ModelProto:
    """A valid model with weights: Conv -> Relu -> Reshape -> MatMul -> Add."""
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             numpy_helper.from_array(rng.standard_normal((4,)).astype(np.float32), "b"),
             numpy_helper.from_array(np.array([1, 64], np.int64), "shape"),
             numpy_helper.from_array(rng.standard_normal((64, 5)).astype(np.float32), "fc"),
             numpy_helper.from_array(rng.standard_normal((5,)).astype(np.float32), "fcb")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Reshape", ["p", "shape"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "fc"], ["m"], name="fc"),
             helper.make_node("Add", ["m", "fcb"], ["y"], name="bias")]
    return model(nodes, [vi("x", F, [1, 3, 8, 8])], [vi("y", F, [1, 5])], inits)


def save(m: onnx.ModelProto | bytes, directory: Path, name: str = "model.onnx") -> Path:
    path = directory / name
    path.write_bytes(m if isinstance(m, bytes) else m.SerializeToString())
    return path


def listing(directory: Path) -> set[str]:
    return {str(p.relative_to(directory)) for p in directory.rglob("*")}


def expect_error(source, cls=EdgecError, *fragments: str) -> str:
    """import_onnx(source) raises `cls` whose message holds every fragment (case-insensitive)."""
    with pytest.raises(cls) as info:
        edgec.import_onnx(source)
    message = str(info.value)
    for fragment in fragments:
        assert fragment.lower() in message.lower(), f"{fragment!r} not in {message!r}"
    return message


def expect_compile_error(source, tmp_path: Path, cls=EdgecError, *fragments: str) -> str:
    """edgec.compile raises like import_onnx and writes nothing, in or beside the output dir."""
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    before = listing(tmp_path)
    with pytest.raises(cls) as info:
        edgec.compile(source, target="host", output=work / "out")
    for fragment in fragments:
        assert fragment.lower() in str(info.value).lower(), f"{fragment!r} not in {info.value!r}"
    assert listing(tmp_path) == before, "a failed compile left files behind"
    return str(info.value)


# ---- the file itself -------------------------------------------------------------------------

def test_valid_model_imports_and_matches_onnxruntime(tmp_path):
    """The baseline the other tests corrupt is itself fine."""
    m = small_cnn()
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    art = edgec.compile(save(m, tmp_path), target="host", output=tmp_path / "out").artifact
    assert_close(art.run({"x": x}), run_ort(m, {"x": x}), what="compiled")


def test_missing_file(tmp_path):
    expect_error(tmp_path / "nothing.onnx", ModelError, "no such model file")
    expect_compile_error(tmp_path / "nothing.onnx", tmp_path, EdgecError, "no such model file")


def test_empty_file(tmp_path):
    path = save(b"", tmp_path)
    expect_error(path, ModelError, "no ONNX graph", "model.onnx")
    expect_compile_error(path, tmp_path, ModelError, "no ONNX graph")


@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95, 0.999])
def test_truncated_file(tmp_path, keep):
    data = small_cnn().SerializeToString()
    path = save(data[: int(len(data) * keep)], tmp_path)
    msg = expect_error(path, ModelError, "model.onnx")
    assert "truncated" in msg or "no ONNX graph" in msg, msg
    expect_compile_error(path, tmp_path, ModelError)


def test_random_bytes(tmp_path):
    rng = np.random.default_rng(2)
    for i in range(20):
        path = save(rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8).tobytes(),
                    tmp_path, f"random{i}.onnx")
        msg = expect_error(path, ModelError, f"random{i}.onnx")
        assert "not a valid ONNX file" in msg or "no ONNX graph" in msg, msg


def test_text_file_is_not_a_model(tmp_path):
    path = save(b"graph @main(%x: f32[1]) -> (f32[1]) {\n  return %x\n}\n", tmp_path)
    expect_error(path, ModelError, "model.onnx")


def test_corrupted_tensor_data(tmp_path):
    """An initializer whose raw bytes do not fill its declared shape."""
    m = small_cnn()
    m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:-7]
    expect_error(m, ModelError, "initializer 'w'", "malformed")
    expect_compile_error(save(m, tmp_path), tmp_path, ModelError, "initializer 'w'")


@pytest.mark.parametrize("case", ["truncated", "newer-opset", "dynamic-dim"])
def test_cli_one_message_and_exit_status_2(tmp_path, case):
    """`edgec compile` on a bad model: exit status 2, one 'edgec: error:' line, no traceback,
    nothing written."""
    import subprocess
    import sys
    if case == "truncated":
        data = small_cnn().SerializeToString()
        path = save(data[: len(data) // 2], tmp_path)
    elif case == "newer-opset":
        path = save(model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, [2])], [vi("y", F, [2])],
                          opset=MAX_OPSET + 1), tmp_path)
    else:
        path = save(model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, ["n"])],
                          [vi("y", F, ["n"])]), tmp_path)
    before = listing(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "edgec", "compile", str(path), "-o", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=WATCHDOG_S)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("edgec: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert listing(tmp_path) == before


# ---- graph structure -------------------------------------------------------------------------

def test_cycle(tmp_path):
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="add"),
             helper.make_node("Relu", ["a"], ["b"], name="relu")]
    m = model(nodes, [vi("x", F, [2])], [vi("b", F, [2])])
    expect_error(m, ModelError, "'add'", "'b'", "cycle")
    expect_compile_error(save(m, tmp_path), tmp_path, ModelError, "cycle")


def test_dangling_input():
    m = model([helper.make_node("Add", ["x", "ghost"], ["y"], name="add")], [vi("x", F, [2])],
              [vi("y", F, [2])])
    expect_error(m, ModelError, "'add'", "'ghost'", "dangling")


def test_output_not_produced():
    m = model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [vi("x", F, [2])],
              [vi("z", F, [2])])
    expect_error(m, ModelError, "graph output 'z'", "not produced")


def test_duplicate_node_outputs():
    nodes = [helper.make_node("Relu", ["x"], ["y"], name="first"),
             helper.make_node("Neg", ["x"], ["y"], name="second")]
    m = model(nodes, [vi("x", F, [2])], [vi("y", F, [2])])
    expect_error(m, ModelError, "'second'", "'y'", "already defined")


def test_duplicate_initializers():
    inits = [numpy_helper.from_array(np.ones(2, np.float32), "c"),
             numpy_helper.from_array(np.zeros(2, np.float32), "c")]
    m = model([helper.make_node("Add", ["x", "c"], ["y"])], [vi("x", F, [2])], [vi("y", F, [2])], inits)
    expect_error(m, ModelError, "initializer name 'c'", "twice")


def test_duplicate_inputs():
    m = model([helper.make_node("Add", ["x", "x"], ["y"])], [vi("x", F, [2]), vi("x", F, [3])],
              [vi("y", F, [2])])
    expect_error(m, ModelError, "input name 'x'", "twice")


def test_node_output_shadows_input():
    m = model([helper.make_node("Relu", ["x"], ["x"], name="relu")], [vi("x", F, [2])],
              [vi("x", F, [2])])
    expect_error(m, ModelError, "'relu'", "already defined")


def test_no_default_opset():
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, [2])], [vi("y", F, [2])])
    del m.opset_import[:]
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    expect_error(m, ModelError, "no opset")


# ---- types and shapes ------------------------------------------------------------------------

def test_operand_type_mismatch(tmp_path):
    m = model([helper.make_node("Add", ["x", "c"], ["y"], name="add")], [vi("x", F, [2])],
              [vi("y", F, [2])], [numpy_helper.from_array(np.array([1, 2], np.int64), "c")])
    expect_error(m, UnsupportedError, "'add'", "f32", "i64")
    expect_compile_error(save(m, tmp_path), tmp_path, UnsupportedError, "'add'")


def test_declared_output_type_mismatch():
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, [2])], [vi("y", I64, [2])])
    expect_error(m, ModelError, "graph output 'y'", "declared i64", "f32")


def test_declared_output_shape_mismatch():
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, [2])], [vi("y", F, [3])])
    expect_error(m, ShapeError, "graph output 'y'", "[3]", "f32[2]")


def test_matmul_shapes_do_not_agree():
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [vi("x", F, [2, 3])],
              [vi("y", F, [2, 4])], [numpy_helper.from_array(np.ones((5, 4), np.float32), "w")])
    expect_error(m, EdgecError, "'mm'", "[2, 3]", "[5, 4]")


def test_unsupported_input_dtype():
    m = model([helper.make_node("Identity", ["x"], ["y"])], [vi("x", TensorProto.BFLOAT16, [2])],
              [vi("y", TensorProto.BFLOAT16, [2])])
    expect_error(m, UnsupportedError, "input 'x'", "data type 16", "not supported")


def test_unsupported_initializer_dtype():
    t = helper.make_tensor("c", TensorProto.FLOAT8E4M3FN, [2], [1.0, 2.0])
    m = model([helper.make_node("Cast", ["c"], ["y"], to=F)], [], [vi("y", F, [2])], [t], opset=19)
    expect_error(m, UnsupportedError, "initializer 'c'", "data type 17")


def test_negative_input_dim(tmp_path):
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, [2, -3])], [vi("y", F, [2, -3])])
    expect_error(m, ShapeError, "input 'x'", "-3")
    expect_compile_error(save(m, tmp_path), tmp_path, ShapeError, "-3")


def test_zero_input_dim():
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, [2, 0])], [vi("y", F, [2, 0])])
    expect_error(m, ShapeError, "input 'x'", "dimension 0", "empty")


def test_billions_of_elements_input():
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, [100000, 100000])],
              [vi("y", F, [100000, 100000])])
    expect_error(m, ShapeError, "input 'x'", "too large")


def test_billions_of_elements_inside(tmp_path):
    """Expand to 10^10 elements: refused at the node, nothing allocated."""
    m = model([helper.make_node("Expand", ["x", "s"], ["y"], name="grow")], [vi("x", F, [1])],
              [vi("y", F, None)], [numpy_helper.from_array(np.array([100000, 100000], np.int64), "s")])
    expect_error(m, ShapeError, "'grow'", "[100000, 100000]", "elements")
    expect_compile_error(save(m, tmp_path), tmp_path, ShapeError, "'grow'")


def test_absurd_constant_of_shape():
    """A ConstantOfShape of 2^80 elements is refused, naming the node."""
    m = model([helper.make_node("ConstantOfShape", ["s"], ["y"], name="huge")], [], [vi("y", F, None)],
              [numpy_helper.from_array(np.array([2**40, 2**40], np.int64), "s")])
    expect_error(m, EdgecError, "'huge'")


def test_negative_reshape_target():
    m = model([helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")], [vi("x", F, [4])],
              [vi("y", F, None)], [numpy_helper.from_array(np.array([-2, -2], np.int64), "s")])
    expect_error(m, EdgecError, "'rs'", "-2")


def test_dynamic_dim_without_value(tmp_path):
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, ["batch", 3])], [vi("y", F, ["batch", 3])])
    expect_error(m, ShapeError, "input 'x'", "dynamic dimension 'batch'", "--input-shape")
    expect_compile_error(save(m, tmp_path), tmp_path, ShapeError, "'batch'")
    graph = edgec.import_onnx(m, input_shapes={"x": (4, 3)})  # with a value it imports
    assert graph.inputs[0].type.shape == (4, 3)


def test_input_without_shape():
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, None)], [vi("y", F, None)])
    expect_error(m, ShapeError, "input 'x'", "no shape", "--input-shape")


# ---- external data ---------------------------------------------------------------------------

def _external_model(location: str, offset: int = 0, length: int | None = 8) -> onnx.ModelProto:
    t = TensorProto(name="c", data_type=F, dims=[2])
    t.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset)}
    if length is not None:
        entries["length"] = str(length)
    for k, v in entries.items():
        e = t.external_data.add()
        e.key, e.value = k, v
    return model([helper.make_node("Add", ["x", "c"], ["y"])], [vi("x", F, [2])], [vi("y", F, [2])], [t])


def test_external_data_inside_directory_works(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "weights.bin").write_bytes(np.array([1.5, -2.0], np.float32).tobytes())
    graph = edgec.import_onnx(save(_external_model("weights.bin"), d))
    out = edgec.interpret(graph, {"x": np.zeros(2, np.float32)})
    np.testing.assert_array_equal(out["y"], [1.5, -2.0])


@pytest.mark.parametrize("how", ["parent", "absolute", "symlink", "symlinked-dir"])
def test_external_data_outside_directory(tmp_path, how):
    d = tmp_path / "model"
    d.mkdir()
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.array([7.0, 7.0], np.float32).tobytes())
    if how == "parent":
        location = "../secret.bin"
    elif how == "absolute":
        location = str(secret)
    elif how == "symlink":
        os.symlink(secret, d / "link.bin")
        location = "link.bin"
    else:
        os.symlink(tmp_path, d / "up")
        location = "up/secret.bin"
    path = save(_external_model(location), d)
    expect_error(path, ModelError, "initializer 'c'", "outside the model's directory")
    before = listing(tmp_path)
    with pytest.raises(ModelError, match="outside the model's directory"):
        edgec.compile(path, target="host", output=d / "out")
    assert listing(tmp_path) == before


def test_external_data_missing_file(tmp_path):
    expect_error(save(_external_model("nothere.bin"), tmp_path), ModelError, "'nothere.bin'", "missing")


def test_external_data_range_outside_file(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"\0" * 8)
    expect_error(save(_external_model("w.bin", offset=4, length=8), tmp_path), ModelError,
                 "offset 4", "outside the file")
    expect_error(save(_external_model("w.bin", offset=-1), tmp_path), ModelError, "outside the file")


def test_external_data_without_path(tmp_path):
    """A ModelProto in memory has no directory to read data files from."""
    expect_error(_external_model("w.bin"), ModelError, "external data", "file path")


# ---- opsets and ops --------------------------------------------------------------------------

def test_newer_opset_than_supported(tmp_path):
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, [2])], [vi("y", F, [2])],
              opset=MAX_OPSET + 1)
    expect_error(m, UnsupportedError, f"opset {MAX_OPSET + 1}", f"{MIN_OPSET} to {MAX_OPSET}")
    expect_compile_error(save(m, tmp_path), tmp_path, UnsupportedError, f"opset {MAX_OPSET + 1}")


def test_newest_supported_opset_imports():
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, [2])], [vi("y", F, [2])],
              opset=MAX_OPSET)
    x = np.array([-1.0, 2.0], np.float32)
    np.testing.assert_array_equal(edgec.interpret(edgec.import_onnx(m), {"x": x})["y"], [0.0, 2.0])


def test_attribute_added_after_opset_21_is_refused_unless_default():
    """SpaceToDepth gained `mode` in opset 28; only its default (DCR) keeps the old meaning."""
    m = model([helper.make_node("SpaceToDepth", ["x"], ["y"], name="s2d", blocksize=2, mode="CRD")],
              [vi("x", F, [1, 1, 4, 4])], [vi("y", F, None)], opset=28)
    expect_error(m, UnsupportedError, "'s2d'", "mode='CRD'")


def test_old_opset_is_converted():
    """An opset-9 model (Pad and Slice took attributes then) is upgraded and matches ORT."""
    nodes = [helper.make_node("Pad", ["x"], ["p"], pads=[0, 1, 0, 1], mode="constant", value=0.5),
             helper.make_node("Slice", ["p"], ["s"], starts=[1], ends=[3], axes=[1]),
             helper.make_node("Relu", ["s"], ["y"])]
    m = model(nodes, [vi("x", F, [2, 3])], [vi("y", F, [2, 2])], opset=9, ir_version=4)
    x = np.random.default_rng(3).standard_normal((2, 3)).astype(np.float32)
    assert_close(edgec.interpret(edgec.import_onnx(m), {"x": x}), run_ort(m, {"x": x}))


def test_unsupported_ops_listed_in_one_message(tmp_path):
    nodes = [helper.make_node("FooBar", ["x"], ["a"], name="foo1"),
             helper.make_node("FooBar", ["a"], ["b"], name="foo2"),
             helper.make_node("FusedThing", ["b"], ["c"], name="fused", domain="com.example"),
             helper.make_node("Relu", ["c"], ["d"], name="relu"),
             helper.make_node("StringNormalizer", ["d"], ["y"], name="strnorm")]
    m = model(nodes, [vi("x", F, [2])], [vi("y", F, [2])])
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    msg = expect_error(m, UnsupportedError, "3 op type(s)", "FooBar (nodes: foo1, foo2)",
                       "com.example.FusedThing (nodes: fused)", "StringNormalizer (nodes: strnorm)")
    assert "Relu" not in msg
    expect_compile_error(save(m, tmp_path), tmp_path, UnsupportedError, "FooBar")


def test_subgraph_attribute_refused():
    """A control-flow op that is registered still refuses subgraphs cleanly (or is unsupported)."""
    body = helper.make_graph([helper.make_node("Identity", ["x"], ["z"])], "body", [], [vi("z", F, [2])])
    m = model([helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=body, else_branch=body)],
              [vi("cond", TensorProto.BOOL, []), vi("x", F, [2])], [vi("y", F, [2])])
    expect_error(m, UnsupportedError, "If", "branch")


def test_malformed_attribute_is_an_edgec_error():
    """An attribute of the wrong kind (perm as floats) names the node instead of crashing."""
    node = helper.make_node("Transpose", ["x"], ["y"], name="tp")
    node.attribute.append(helper.make_attribute("perm", [1.0, 0.0]))
    m = model([node], [vi("x", F, [2, 3])], [vi("y", F, [3, 2])])
    expect_error(m, EdgecError, "'tp'")


# ---- fuzzing ---------------------------------------------------------------------------------

VALID_BYTES = small_cnn().SerializeToString()


def _import_bytes(data: bytes) -> None:
    """Import `data` from a file: it may succeed; if it fails, only with an EdgecError."""
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.onnx"
        path.write_bytes(data)
        try:
            edgec.import_onnx(path)
        except EdgecError as e:
            assert str(e).strip(), "an error without a message"


mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, len(VALID_BYTES) - 1), st.integers(1, 255)),
    st.tuples(st.just("set"), st.integers(0, len(VALID_BYTES) - 1), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, len(VALID_BYTES) - 1), st.integers(1, 64)),
    st.tuples(st.just("insert"), st.integers(0, len(VALID_BYTES) - 1), st.binary(min_size=1, max_size=8)),
)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutation, min_size=1, max_size=6))
def test_fuzz_mutated_bytes(mutations):
    data = bytearray(VALID_BYTES)
    for kind, pos, arg in mutations:
        pos = min(pos, len(data) - 1) if data else 0
        if kind == "flip" and data:
            data[pos] ^= arg
        elif kind == "set" and data:
            data[pos] = arg
        elif kind == "cut":
            del data[pos:pos + arg]
        elif kind == "insert":
            data[pos:pos] = arg
    _import_bytes(bytes(data))


def _mutate_field(m: onnx.ModelProto, choice: int, value: int) -> None:
    """One structural change to a valid model: a dim, a dtype, an attribute, a name, an opset."""
    g = m.graph
    kind = choice % 9
    if kind == 0:  # an input or output dim
        vals = list(g.input) + list(g.output)
        dims = vals[value % len(vals)].type.tensor_type.shape.dim
        if dims:
            dims[value % len(dims)].dim_value = value
    elif kind == 1:  # an element type
        vals = list(g.input) + list(g.output)
        vals[value % len(vals)].type.tensor_type.elem_type = value % 30
    elif kind == 2:  # an initializer dim
        t = g.initializer[value % len(g.initializer)]
        if t.dims:
            t.dims[value % len(t.dims)] = value
    elif kind == 3:  # an initializer's data type
        g.initializer[value % len(g.initializer)].data_type = value % 30
    elif kind == 4:  # an integer attribute or list entry
        attrs = [a for n in g.node for a in n.attribute]
        if attrs:
            a = attrs[value % len(attrs)]
            if a.ints:
                a.ints[value % len(a.ints)] = value
            else:
                a.i = value
    elif kind == 5:  # an input name
        n = g.node[value % len(g.node)]
        if n.input:
            n.input[value % len(n.input)] = ["x", "w", "c", "", "nope", "y"][value % 6]
    elif kind == 6:  # an op type
        g.node[value % len(g.node)].op_type = ["Relu", "Conv", "Reshape", "Gemm", "Concat", "Loop"][value % 6]
    elif kind == 7:  # the opset
        m.opset_import[0].version = value % 40
    else:  # drop a node
        del g.node[value % len(g.node)]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 1000), st.integers(-3, 1 << 20)), min_size=1, max_size=4))
def test_fuzz_mutated_fields(changes):
    m = small_cnn()
    for choice, value in changes:
        _mutate_field(m, choice, value)
    try:
        data = m.SerializeToString()
    except Exception:  # noqa: BLE001 - protobuf refuses some values; nothing to import then
        return
    _import_bytes(data)
