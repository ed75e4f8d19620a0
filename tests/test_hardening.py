"""Bad input: every malformed or unsupported model gives one clear EdgecError, never a crash.

A corpus of malformed models (MALFORMED): truncated, corrupted and random bytes; an empty file;
graphs with a cycle, a dangling input, duplicate names or no outputs; type mismatches and
unknown data types; absurd shapes (billions of elements, sizes computed from constants by
Range, EyeLike, Tile, Pad, OneHot, TopK, Resize, Upsample); external data outside the model's
directory (a relative path, an absolute path, a symlink), missing, with a NUL in its name, or
over the total size of constants; opsets newer than edgec knows. For each: `edgec.import_onnx`
and `edgec.compile` raise an `EdgecError` subclass whose message says what is wrong, nothing is
written when a compile fails, and `edgec inspect` prints that message and exits 2.
Beside it: unsupported ops (every type and node in one message, which inspect reports); dynamic
dims without a value (named with the --input-shape each input needs; inspect says so) and
--input-shape values that are malformed or change a static dim; names with NUL characters and
graph names that are not identifiers. A watchdog turns a hang into a failure. Two hypothesis
fuzz tests (mutated bytes, mutated fields of a valid model) check that only EdgecError escapes
the importer.
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
from edgec.inspect import inspect_model
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


def inspect_cli(path: Path, capsys, *options: str) -> tuple[int, str, str]:
    """`edgec inspect PATH` in this process: (exit status, stdout, stderr)."""
    from edgec.cli import main
    status = main(["inspect", str(path), *options])
    out = capsys.readouterr()
    return status, out.out, out.err


def _external_model(location: str, offset: int = 0, length: int | None = 8, dims=(2,)) -> onnx.ModelProto:
    t = TensorProto(name="c", data_type=F, dims=list(dims))
    t.data_location = TensorProto.EXTERNAL
    entries = {"location": location, "offset": str(offset)}
    if length is not None:
        entries["length"] = str(length)
    for k, v in entries.items():
        e = t.external_data.add()
        e.key, e.value = k, v
    return model([helper.make_node("Add", ["x", "c"], ["y"])], [vi("x", F, [2])], [vi("y", F, [2])], [t])


# ---- the corpus of malformed models ----------------------------------------------------------
#
# name -> (build, error class, message fragments). `build(d)` gets the model's own directory
# (tmp_path/model, so that tmp_path is outside it) and returns a ModelProto, bytes or a path.

MALFORMED: dict[str, tuple] = {}


def malformed(name: str, cls: type = EdgecError, *fragments: str):
    def register(build):
        MALFORMED[name] = (build, cls, fragments)
        return build
    return register


def _const(name, array):
    return numpy_helper.from_array(np.asarray(array), name)


# the file itself
malformed("missing-file", EdgecError, "no such model file")(lambda d: d / "nothing.onnx")
malformed("empty-file", ModelError, "no ONNX graph", "model.onnx")(lambda d: b"")
malformed("truncated", ModelError, "model.onnx")(
    lambda d: small_cnn().SerializeToString()[: len(small_cnn().SerializeToString()) // 2])
malformed("random-bytes", ModelError, "model.onnx")(
    lambda d: np.random.default_rng(2).integers(0, 256, 1000, dtype=np.uint8).tobytes())
malformed("text-file", ModelError, "model.onnx")(
    lambda d: b"graph @main(%x: f32[1]) -> (f32[1]) {\n  return %x\n}\n")


@malformed("corrupted-tensor-data", ModelError, "initializer 'w'", "malformed")
def _corrupted_tensor_data(d):
    """An initializer whose raw bytes do not fill its declared shape."""
    m = small_cnn()
    m.graph.initializer[0].raw_data = m.graph.initializer[0].raw_data[:-7]
    return m


# graph structure
@malformed("cycle", ModelError, "'add'", "'b'", "cycle")
def _cycle(d):
    nodes = [helper.make_node("Add", ["x", "b"], ["a"], name="add"),
             helper.make_node("Relu", ["a"], ["b"], name="relu")]
    return model(nodes, [vi("x", F, [2])], [vi("b", F, [2])])


@malformed("cycle-and-unsupported-op", ModelError, "'add'", "cycle")
def _cycle_and_unsupported_op(d):
    """A malformed graph is refused as such even when it also uses an unsupported op."""
    m = _cycle(d)
    m.graph.node.append(helper.make_node("FooBar", ["x"], ["z"], name="foo"))
    return m


malformed("dangling-input", ModelError, "'add'", "'ghost'", "dangling")(lambda d: model(
    [helper.make_node("Add", ["x", "ghost"], ["y"], name="add")], [vi("x", F, [2])], [vi("y", F, [2])]))
malformed("output-not-produced", ModelError, "graph output 'z'", "not produced")(lambda d: model(
    [helper.make_node("Relu", ["x"], ["y"], name="relu")], [vi("x", F, [2])], [vi("z", F, [2])]))
malformed("no-outputs", ModelError, "the model has no outputs")(lambda d: model(
    [helper.make_node("Relu", ["x"], ["y"], name="relu")], [vi("x", F, [2])], []))
malformed("duplicate-node-outputs", ModelError, "'second'", "'y'", "already defined")(lambda d: model(
    [helper.make_node("Relu", ["x"], ["y"], name="first"), helper.make_node("Neg", ["x"], ["y"], name="second")],
    [vi("x", F, [2])], [vi("y", F, [2])]))
malformed("duplicate-initializers", ModelError, "initializer name 'c'", "twice")(lambda d: model(
    [helper.make_node("Add", ["x", "c"], ["y"])], [vi("x", F, [2])], [vi("y", F, [2])],
    [_const("c", np.ones(2, np.float32)), _const("c", np.zeros(2, np.float32))]))
malformed("duplicate-inputs", ModelError, "input name 'x'", "twice")(lambda d: model(
    [helper.make_node("Add", ["x", "x"], ["y"])], [vi("x", F, [2]), vi("x", F, [3])], [vi("y", F, [2])]))
malformed("node-output-shadows-input", ModelError, "'relu'", "already defined")(lambda d: model(
    [helper.make_node("Relu", ["x"], ["x"], name="relu")], [vi("x", F, [2])], [vi("x", F, [2])]))


@malformed("no-default-opset", ModelError, "no opset")
def _no_default_opset(d):
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, [2])], [vi("y", F, [2])])
    del m.opset_import[:]
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    return m


# types and shapes
malformed("operand-type-mismatch", UnsupportedError, "'add'", "f32", "i64")(lambda d: model(
    [helper.make_node("Add", ["x", "c"], ["y"], name="add")], [vi("x", F, [2])], [vi("y", F, [2])],
    [_const("c", np.array([1, 2], np.int64))]))
malformed("declared-output-type", ModelError, "graph output 'y'", "declared i64", "f32")(lambda d: model(
    [helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, [2])], [vi("y", I64, [2])]))
malformed("declared-output-shape", ShapeError, "graph output 'y'", "[3]", "f32[2]")(lambda d: model(
    [helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, [2])], [vi("y", F, [3])]))
malformed("matmul-shapes", EdgecError, "'mm'", "[2, 3]", "[5, 4]")(lambda d: model(
    [helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [vi("x", F, [2, 3])], [vi("y", F, [2, 4])],
    [_const("w", np.ones((5, 4), np.float32))]))
malformed("conv-group-0", UnsupportedError, "'conv'", "group 0")(lambda d: model(
    [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", group=0)], [vi("x", F, [1, 3, 8, 8])],
    [vi("y", F, None)], [_const("w", np.ones((4, 3, 3, 3), np.float32))]))
malformed("input-dtype-bf16", UnsupportedError, "input 'x'", "data type 16", "does not support")(lambda d: model(
    [helper.make_node("Identity", ["x"], ["y"])], [vi("x", TensorProto.BFLOAT16, [2])],
    [vi("y", TensorProto.BFLOAT16, [2])]))
malformed("input-dtype-99", UnsupportedError, "input 'x'", "data type 99")(lambda d: model(
    [helper.make_node("Relu", ["x"], ["y"])], [vi("x", 99, [2])], [vi("y", F, [2])]))
malformed("initializer-dtype-f8", UnsupportedError, "initializer 'c'", "data type 17")(lambda d: model(
    [helper.make_node("Cast", ["c"], ["y"], to=F)], [], [vi("y", F, [2])],
    [helper.make_tensor("c", TensorProto.FLOAT8E4M3FN, [2], [1.0, 2.0])], opset=19))
malformed("initializer-dtype-99", UnsupportedError, "initializer 'c'", "data type 99")(lambda d: model(
    [helper.make_node("Add", ["x", "c"], ["y"])], [vi("x", F, [2])], [vi("y", F, [2])],
    [TensorProto(name="c", data_type=99, dims=[2], raw_data=b"\0" * 8)]))
malformed("initializer-2^40-elements", ModelError, "initializer 'c'", "elements")(lambda d: model(
    [helper.make_node("Add", ["x", "c"], ["y"])], [vi("x", F, [2])], [vi("y", F, [2])],
    [TensorProto(name="c", data_type=F, dims=[1 << 20, 1 << 20])]))
malformed("zero-input-dim", ShapeError, "input 'x'", "dimension 0", "empty")(lambda d: model(
    [helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, [2, 0])], [vi("y", F, [2, 0])]))
malformed("billions-of-elements-input", ShapeError, "input 'x'", "too large")(lambda d: model(
    [helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, [100000, 100000])], [vi("y", F, [100000, 100000])]))
malformed("negative-reshape-target", EdgecError, "'rs'", "-2")(lambda d: model(
    [helper.make_node("Reshape", ["x", "s"], ["y"], name="rs")], [vi("x", F, [4])], [vi("y", F, None)],
    [_const("s", np.array([-2, -2], np.int64))]))

# Sizes computed from constants: each refused, naming the node, before anything is allocated.
malformed("expand-10^10", ShapeError, "'grow'", "[100000, 100000]", "elements")(lambda d: model(
    [helper.make_node("Expand", ["x", "s"], ["y"], name="grow")], [vi("x", F, [1])], [vi("y", F, None)],
    [_const("s", np.array([100000, 100000], np.int64))]))
malformed("constant-of-shape-2^80", EdgecError, "'huge'")(lambda d: model(
    [helper.make_node("ConstantOfShape", ["s"], ["y"], name="huge")], [], [vi("y", F, None)],
    [_const("s", np.array([2**40, 2**40], np.int64))]))
malformed("range-2*10^12", ShapeError, "'rng'", "[1999999991808]", "elements")(lambda d: model(
    [helper.make_node("Range", ["s", "l", "d"], ["y"], name="rng")], [], [vi("y", F, None)],
    [_const("s", np.float32(0)), _const("l", np.float32(2e12)), _const("d", np.float32(1))]))
malformed("range-int-2^62", ShapeError, "'rng'", "elements")(lambda d: model(
    [helper.make_node("Range", ["s", "l", "d"], ["y"], name="rng")], [], [vi("y", I64, None)],
    [_const("s", np.int64(0)), _const("l", np.int64(2**62)), _const("d", np.int64(1))]))
malformed("range-8GiB", ShapeError, "'rng'", "limit")(lambda d: model(  # under MAX_ELEMENTS, not in bytes
    [helper.make_node("Range", ["s", "l", "d"], ["y"], name="rng")], [], [vi("y", I64, None)],
    [_const("s", np.int64(0)), _const("l", np.int64(2**30)), _const("d", np.int64(1))]))
malformed("range-to-infinity", UnsupportedError, "'rng'", "finite")(lambda d: model(
    [helper.make_node("Range", ["s", "l", "d"], ["y"], name="rng")], [], [vi("y", F, None)],
    [_const("s", np.float32(0)), _const("l", np.float32(np.inf)), _const("d", np.float32(1))]))
malformed("eye-like-12GB", ShapeError, "'eye'", "f64[40000, 40000]", "limit")(lambda d: model(
    [helper.make_node("EyeLike", ["x"], ["y"], name="eye", dtype=TensorProto.DOUBLE)],
    [vi("x", F, [40000, 40000])], [vi("y", TensorProto.DOUBLE, None)]))
malformed("tile-2^40", ShapeError, "'tile'", "elements")(lambda d: model(
    [helper.make_node("Tile", ["x", "r"], ["y"], name="tile")], [], [vi("y", F, None)],
    [_const("x", np.ones((4, 4), np.float32)), _const("r", np.array([2**20, 2**20], np.int64))]))
malformed("pad-2^41", ShapeError, "'pad'", "elements")(lambda d: model(
    [helper.make_node("Pad", ["x", "p"], ["y"], name="pad")], [vi("x", F, [2, 2])], [vi("y", F, None)],
    [_const("p", np.array([2**40, 0, 2**40, 0], np.int64))]))
malformed("one-hot-depth-2^40", ShapeError, "'hot'", "elements")(lambda d: model(
    [helper.make_node("OneHot", ["i", "depth", "v"], ["y"], name="hot")], [vi("i", I64, [3])], [vi("y", F, None)],
    [_const("depth", np.int64(2**40)), _const("v", np.array([0, 1], np.float32))]))
malformed("top-k-2^40", EdgecError, "'top'", "k=1099511627776")(lambda d: model(
    [helper.make_node("TopK", ["x", "k"], ["y", "i"], name="top")], [vi("x", F, [4])],
    [vi("y", F, None), vi("i", I64, None)], [_const("k", np.array([2**40], np.int64))]))
malformed("resize-infinite-scale", UnsupportedError, "'resize'", "finite")(lambda d: model(
    [helper.make_node("Resize", ["x", "", "s"], ["y"], name="resize")], [vi("x", F, [1, 1, 4, 4])],
    [vi("y", F, None)], [_const("s", np.array([1, 1, np.inf, 1], np.float32))]))
malformed("resize-scale-10^15", ShapeError, "'resize'", "elements")(lambda d: model(
    [helper.make_node("Resize", ["x", "", "s"], ["y"], name="resize")], [vi("x", F, [1, 1, 4, 4])],
    [vi("y", F, None)], [_const("s", np.array([1, 1, 1e15, 1e15], np.float32))]))
malformed("upsample-infinite-scale", UnsupportedError, "'up'", "finite")(lambda d: model(
    [helper.make_node("Upsample", ["x", "s"], ["y"], name="up")], [vi("x", F, [1, 1, 4, 4])],
    [vi("y", F, None)], [_const("s", np.array([1, 1, np.inf, 1], np.float32))], opset=11))


# external data
def _secret(d: Path) -> Path:
    """A data file beside (outside) the model's directory."""
    secret = d.parent / "secret.bin"
    secret.write_bytes(np.array([7.0, 7.0], np.float32).tobytes())
    return secret


def _symlinked(d: Path, link: str, target: Path) -> str:
    os.symlink(target, d / link)
    return link


outside = ("initializer 'c'", "outside the model's directory")
malformed("external-data-parent", ModelError, *outside)(lambda d: _external_model(f"../{_secret(d).name}"))
malformed("external-data-absolute", ModelError, *outside)(lambda d: _external_model(str(_secret(d))))
malformed("external-data-symlink", ModelError, *outside)(
    lambda d: _external_model(_symlinked(d, "link.bin", _secret(d))))
malformed("external-data-symlinked-dir", ModelError, *outside)(
    lambda d: _external_model(_symlinked(d, "up", d.parent) + f"/{_secret(d).name}"))
malformed("external-data-missing-file", ModelError, "'nothere.bin'", "missing")(
    lambda d: _external_model("nothere.bin"))
malformed("external-data-nul-location", ModelError, "initializer 'c'", "NUL")(
    lambda d: _external_model("w\0.bin"))
malformed("external-data-name-too-long", ModelError, "initializer 'c'", "cannot read")(
    lambda d: _external_model("w" * 300 + ".bin"))


def _non_utf8_name(field: bytes) -> bytes:
    """small_cnn with one name's bytes replaced by an invalid UTF-8 byte (protobuf then hands
    the name back as bytes, not str)."""
    data = small_cnn().SerializeToString()
    assert data.count(field) >= 1
    return data.replace(field, field[:-1] + b"\xff")


malformed("non-utf8-value-name", ModelError, "not valid UTF-8")(lambda d: _non_utf8_name(b"\x0a\x01x"))
malformed("non-utf8-node-name", ModelError, "not valid UTF-8")(lambda d: _non_utf8_name(b"\x1a\x07flatten"))


@malformed("external-data-range-outside-file", ModelError, "offset 4", "outside the file")
def _external_range_outside(d):
    (d / "w.bin").write_bytes(b"\0" * 8)
    return _external_model("w.bin", offset=4, length=8)


@malformed("external-data-negative-offset", ModelError, "outside the file")
def _external_negative_offset(d):
    (d / "w.bin").write_bytes(b"\0" * 8)
    return _external_model("w.bin", offset=-1)


@malformed("external-data-length-mismatch", ModelError, "length 16", "8 bytes")
def _external_length_mismatch(d):
    (d / "w.bin").write_bytes(b"\0" * 16)
    return _external_model("w.bin", length=None)


# Refused from the declared shape, before the (absent) data file is looked at.
malformed("constants-over-total-limit", ModelError, "constants take 8589934592 bytes", "limit")(
    lambda d: _external_model("absent.bin", length=None, dims=(1 << 30, 2)))

# opsets and ops
malformed("newer-opset", UnsupportedError, f"opset {MAX_OPSET + 1}", f"{MIN_OPSET} to {MAX_OPSET}")(
    lambda d: model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, [2])], [vi("y", F, [2])],
                    opset=MAX_OPSET + 1))
# SpaceToDepth gained `mode` in opset 28; only its default (DCR) keeps the old meaning.
malformed("attribute-after-opset-21", UnsupportedError, "'s2d'", "mode='CRD'")(lambda d: model(
    [helper.make_node("SpaceToDepth", ["x"], ["y"], name="s2d", blocksize=2, mode="CRD")],
    [vi("x", F, [1, 1, 4, 4])], [vi("y", F, None)], opset=28))


@malformed("malformed-attribute", EdgecError, "'tp'")
def _malformed_attribute(d):
    """An attribute of the wrong kind (perm as floats) names the node instead of crashing."""
    node = helper.make_node("Transpose", ["x"], ["y"], name="tp")
    node.attribute.append(helper.make_attribute("perm", [1.0, 0.0]))
    return model([node], [vi("x", F, [2, 3])], [vi("y", F, [3, 2])])


def build_malformed(name: str, tmp_path: Path) -> Path:
    """The corpus model `name`, saved as tmp_path/model/model.onnx (or where its builder says)."""
    d = tmp_path / "model"
    d.mkdir()
    source = MALFORMED[name][0](d)
    return source if isinstance(source, Path) else save(source, d)


@pytest.mark.parametrize("name", sorted(MALFORMED))
def test_malformed_model_is_refused(tmp_path, capsys, name):
    """import_onnx and compile raise the expected EdgecError (a failed compile writes nothing),
    and `edgec inspect` prints the same message as its one error line and exits 2."""
    _, cls, fragments = MALFORMED[name]
    path = build_malformed(name, tmp_path)
    message = expect_error(path, cls, *fragments)
    expect_compile_error(path, tmp_path, cls, *fragments)
    status, out, err = inspect_cli(path, capsys)
    assert status == 2, out
    assert err == f"edgec: error: {message}\n", err


# ---- the file itself -------------------------------------------------------------------------

def test_valid_model_imports_and_matches_onnxruntime(tmp_path):
    """The baseline the other tests corrupt is itself fine."""
    m = small_cnn()
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    art = edgec.compile(save(m, tmp_path), target="host", output=tmp_path / "out").artifact
    assert_close(art.run({"x": x}), run_ort(m, {"x": x}), what="compiled")


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


# ---- names -----------------------------------------------------------------------------------

def test_names_with_nul_import():
    """NUL characters in node, value and graph names are kept as they are."""
    m = model([helper.make_node("Relu", ["x\0a"], ["y\0b"], name="relu\0c")], [vi("x\0a", F, [2])],
              [vi("y\0b", F, [2])])
    m.graph.name = "g\0d"
    graph = edgec.import_onnx(m)
    assert graph.name == "g\0d" and graph.inputs[0].name == "x\0a" and graph.output_names == ["y\0b"]
    assert list(graph.nodes[0].origin) == ["relu\0c"]
    out = edgec.interpret(graph, {"x\0a": np.array([-1.0, 2.0], np.float32)})
    np.testing.assert_array_equal(out["y\0b"], [0.0, 2.0])


@pytest.mark.parametrize("name, kept", [("modèle", "modèle"), ("torch-jit-export", "torch-jit-export"),
                                        ("", "main")])
def test_graph_name_is_kept_unless_empty(name, kept):
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, [2])], [vi("y", F, [2])])
    m.graph.name = name
    assert edgec.import_onnx(m).name == kept


# ---- input shapes ----------------------------------------------------------------------------

def test_dynamic_dim_without_value(tmp_path):
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, ["batch", 3])], [vi("y", F, ["batch", 3])])
    expect_error(m, ShapeError, "input 'x'", "dynamic dimension 'batch'", "--input-shape x=D0,3")
    expect_compile_error(save(m, tmp_path), tmp_path, ShapeError, "'batch'")
    graph = edgec.import_onnx(m, input_shapes={"x": (4, 3)})  # with a value it imports
    assert graph.inputs[0].type.shape == (4, 3)


def test_all_inputs_without_a_value_are_named_at_once():
    m = model([helper.make_node("Add", ["a", "b"], ["y"])], [vi("a", F, ["n", 3]), vi("b", F, [2, "m"])],
              [vi("y", F, None)])
    msg = expect_error(m, ShapeError, "input 'a' has a dynamic dimension 'n'", "input 'b'",
                       "--input-shape a=D0,3 --input-shape b=2,D1")
    assert edgec.import_onnx(m, input_shapes={"a": (2, 3), "b": (2, 3)}).outputs[0].type.shape == (2, 3), msg


@pytest.mark.parametrize("dim", [-1, -3])
def test_negative_input_dim_is_dynamic(tmp_path, dim):
    """Some exporters write -1 (dim_value) for a dynamic dim: it needs a value like a named one."""
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, [2, dim])], [vi("y", F, [2, dim])])
    expect_error(m, ShapeError, "input 'x'", f"dynamic dimension {dim}", "--input-shape x=2,D1")
    expect_compile_error(save(m, tmp_path), tmp_path, ShapeError, "--input-shape x=2,D1")
    assert edgec.import_onnx(m, input_shapes={"x": (2, 5)}).inputs[0].type.shape == (2, 5)


def test_input_without_shape():
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, None)], [vi("y", F, None)])
    expect_error(m, ShapeError, "input 'x'", "no shape", "--input-shape x=D0,D1,...")


@pytest.mark.parametrize("shape, fragments", [
    ((3, 5), ["--input-shape x=3,5", "dim 1 of input 'x' is 4"]),
    ((2, 4, 1), ["rank 3", "rank 2"]),
    ((0, 4), ["x=0,4", "positive integer"]),
    ((-2, 4), ["x=-2,4", "positive integer"]),
    ((1.5, 4), ["x=1.5,4", "positive integer"]),
])
def test_input_shape_sets_only_dynamic_dims(shape, fragments):
    """A value for a static dim must be that dim; every value a positive integer."""
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, ["n", 4])], [vi("y", F, ["n", 4])])
    with pytest.raises(ShapeError) as info:
        edgec.import_onnx(m, input_shapes={"x": shape})
    for fragment in fragments:
        assert fragment in str(info.value), str(info.value)


@pytest.mark.parametrize("text, fragment", [
    ("input=1,,64", "dim 1 is empty"), ("input=0,3", "dim 0 is '0'"), ("input=1,-1", "dim 1 is '-1'"),
    ("input=1.5", "dim 0 is '1.5'"), ("input=a,b", "dim 0 is 'a'"), ("=1,2", "expected"), ("input", "expected"),
])
def test_parse_shape_refuses_malformed_dims(text, fragment):
    from edgec.onnx_import import parse_shape
    with pytest.raises(ShapeError) as info:
        parse_shape(text)
    assert fragment in str(info.value) and "expected NAME=D0,D1,..." in str(info.value), str(info.value)


def test_parse_shape():
    from edgec.onnx_import import parse_shape
    assert parse_shape("input=1, 3,224,224") == ("input", (1, 3, 224, 224))
    assert parse_shape("a=b=2") == ("a=b", (2,))
    assert parse_shape("scalar=") == ("scalar", ())


# ---- external data ---------------------------------------------------------------------------

def test_external_data_inside_directory_works(tmp_path):
    d = tmp_path / "model"
    d.mkdir()
    (d / "weights.bin").write_bytes(np.array([1.5, -2.0], np.float32).tobytes())
    graph = edgec.import_onnx(save(_external_model("weights.bin"), d))
    out = edgec.interpret(graph, {"x": np.zeros(2, np.float32)})
    np.testing.assert_array_equal(out["y"], [1.5, -2.0])


def test_external_data_without_path(tmp_path):
    """A ModelProto in memory has no directory to read data files from."""
    expect_error(_external_model("w.bin"), ModelError, "external data", "file path")


# ---- opsets and ops --------------------------------------------------------------------------

def test_newest_supported_opset_imports():
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, [2])], [vi("y", F, [2])],
              opset=MAX_OPSET)
    x = np.array([-1.0, 2.0], np.float32)
    np.testing.assert_array_equal(edgec.interpret(edgec.import_onnx(m), {"x": x})["y"], [0.0, 2.0])


def test_old_opset_is_converted():
    """An opset-9 model (Pad and Slice took attributes then) is upgraded and matches ORT."""
    nodes = [helper.make_node("Pad", ["x"], ["p"], pads=[0, 1, 0, 1], mode="constant", value=0.5),
             helper.make_node("Slice", ["p"], ["s"], starts=[1], ends=[3], axes=[1]),
             helper.make_node("Relu", ["s"], ["y"])]
    m = model(nodes, [vi("x", F, [2, 3])], [vi("y", F, [2, 2])], opset=9, ir_version=4)
    x = np.random.default_rng(3).standard_normal((2, 3)).astype(np.float32)
    assert_close(edgec.interpret(edgec.import_onnx(m), {"x": x}), run_ort(m, {"x": x}))


def _unsupported_ops_model() -> onnx.ModelProto:
    nodes = [helper.make_node("FooBar", ["x"], ["a"], name="foo1"),
             helper.make_node("FooBar", ["a"], ["b"], name="foo2"),
             helper.make_node("FusedThing", ["b"], ["c"], name="fused", domain="com.example"),
             helper.make_node("Relu", ["c"], ["d"], name="relu"),
             helper.make_node("StringNormalizer", ["d"], ["y"], name="strnorm")]
    m = model(nodes, [vi("x", F, [2])], [vi("y", F, [2])])
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    return m


def test_unsupported_ops_listed_in_one_message(tmp_path):
    m = _unsupported_ops_model()
    msg = expect_error(m, UnsupportedError, "3 op type(s)", "FooBar (nodes: foo1, foo2)",
                       "com.example.FusedThing (nodes: fused)", "StringNormalizer (nodes: strnorm)")
    assert "Relu" not in msg
    expect_compile_error(save(m, tmp_path), tmp_path, UnsupportedError, "FooBar")


def test_malformed_subgraph_refused_before_import():
    """A subgraph's structure is checked with the main graph's: a name that neither it nor the
    scopes around it define (here one defined only after its node) is named with the node's path."""
    then = helper.make_graph([helper.make_node("Relu", ["late"], ["t"])], "then", [], [vi("t", F, [2])])
    other = helper.make_graph([helper.make_node("Relu", ["x"], ["e"])], "else", [], [vi("e", F, [2])])
    m = model([helper.make_node("If", ["cond"], ["y"], name="branch", then_branch=then, else_branch=other),
               helper.make_node("Neg", ["x"], ["late"])],
              [vi("cond", TensorProto.BOOL, []), vi("x", F, [2])], [vi("y", F, [2])])
    expect_error(m, ModelError, "ONNX node 'branch/then_branch/Relu_0' (Relu) uses 'late'")


# ---- edgec inspect ---------------------------------------------------------------------------

def test_inspect_reports_unsupported_ops_at_once(tmp_path, capsys):
    status, out, err = inspect_cli(save(_unsupported_ops_model(), tmp_path), capsys)
    assert status == 0 and err == ""
    assert ("unsupported ops: FooBar (nodes: foo1, foo2); StringNormalizer (nodes: strnorm); "
            "com.example.FusedThing (nodes: fused)") in out


def test_inspect_names_the_input_shapes_it_needs(tmp_path, capsys):
    """With a dynamic dim unset, the node and MAC counts give way to the --input-shape needed."""
    w = _const("w", np.ones((3, 5), np.float32))
    m = model([helper.make_node("MatMul", ["x", "w"], ["y"])], [vi("x", F, ["n", 3])], [vi("y", F, ["n", 5])], [w])
    path = save(m, tmp_path)
    status, out, err = inspect_cli(path, capsys)
    assert status == 0 and err == ""
    assert "edgec nodes and MACs after import: need --input-shape x=D0,3" in out
    assert not any(line.startswith("MACs:") for line in out.splitlines())
    status, out, err = inspect_cli(path, capsys, "--input-shape", "x=2,3")
    assert status == 0 and "MACs: 30" in out and "edgec nodes after import: 1" in out


def test_inspect_counts_weights_in_constant_nodes(tmp_path, capsys):
    """Exports that keep weights in Constant nodes: those count as parameters too."""
    weight = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32))
    nodes = [helper.make_node("Constant", [], ["w"], value=weight),
             helper.make_node("Conv", ["x", "w", "b"], ["y"], name="conv", pads=[1, 1, 1, 1])]
    m = model(nodes, [vi("x", F, [1, 3, 8, 8])], [vi("y", F, None)], [_const("b", np.ones(4, np.float32))])
    status, out, err = inspect_cli(save(m, tmp_path), capsys)
    assert status == 0, err
    assert "parameters: 112 (0.00 MB)" in out  # 108 weights in the Constant node, 4 biases
    assert f"MACs: {4 * 8 * 8 * 27:,}" in out


def test_inspect_counts_number_attributes_of_constant_nodes(tmp_path, capsys):
    """Constant nodes with value_floats, value_float and value_ints count as parameters too."""
    nodes = [helper.make_node("Constant", [], ["b"], value_floats=[1.0, 2.0, 3.0]),
             helper.make_node("Constant", [], ["s"], value_float=2.0),
             helper.make_node("Constant", [], ["shape"], value_ints=[3, 1]),
             helper.make_node("Add", ["x", "b"], ["a"]), helper.make_node("Mul", ["a", "s"], ["m"]),
             helper.make_node("Reshape", ["m", "shape"], ["y"])]
    m = model(nodes, [vi("x", F, [1, 3])], [vi("y", F, None)])
    status, out, err = inspect_cli(save(m, tmp_path), capsys)
    assert status == 0, err
    assert "parameters: 6 (0.00 MB)" in out  # 3 + 1 floats, 2 int64s
    assert inspect_model(m).parameter_bytes == 3 * 4 + 4 + 2 * 8


@pytest.mark.parametrize("dim", ["n", -1])
def test_inspect_names_the_input_shape_a_dynamic_dim_needs(tmp_path, capsys, dim):
    """A dim written as a name or as -1 (some exporters): inspect names the --input-shape."""
    m = model([helper.make_node("Relu", ["x"], ["y"])], [vi("x", F, [dim, 4])], [vi("y", F, None)])
    status, out, err = inspect_cli(save(m, tmp_path), capsys)
    assert status == 0 and err == ""
    assert "edgec nodes and MACs after import: need --input-shape x=D0,4 (dynamic dims)" in out


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
