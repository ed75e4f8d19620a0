"""`edgec run DIR` on bad input: every bad .npy input, -o directory, artifact directory or thread
count gives one EdgecError (exit 2, `edgec: error:`, no traceback), and legitimate inputs work.

Cases: .npy inputs (empty, a header claiming 10^15 elements or more than the file holds,
truncated, a damaged or deeply nested header, unsupported dtypes and pickles, format 3.0, a
directory; Fortran-order and big-endian arrays are read), outputs whose names map to the same
file (unique file names, never written outside -o, not through a link), -o onto a file, an
artifact without model.so, manifests missing keys or with keys of the wrong type, a model.so of
the wrong architecture, garbage or truncated (which dlopen maps past its end: SIGBUS), and
--threads above the core count for ARM artifacts (capped, as on the host). A hypothesis fuzzer
feeds mutated .npy files to the reader `edgec run` uses. ARM cases need qemu-aarch64 and the
aarch64 cross toolchain and skip without them.
"""

from __future__ import annotations

import io
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from onnx import TensorProto, helper

import edgec
from edgec.cli import main, read_npy
from edgec.errors import EdgecError, InputError, ToolError
from edgec.ir import DTYPES
from edgec.ir import MAX_ELEMENTS
from edgec.targets import crosslink, runners

# Output names that all become a_b.npy under a plain "replace unsafe characters" rule, and one
# that would reach above the -o directory if used as a path.
OUTPUTS = {"a/b": "Relu", "a b": "Neg", "a_b": "Abs", "../up": "Sigmoid"}
X = np.linspace(-2, 2, 8, dtype=np.float32).reshape(2, 4)


def expected(x: np.ndarray) -> dict[str, np.ndarray]:
    return {"a/b": np.maximum(x, 0), "a b": -x, "a_b": np.abs(x), "../up": 1 / (1 + np.exp(-x))}


def tiny_model():
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])
    nodes = [helper.make_node(op, ["x"], [name], name=f"n{i}") for i, (name, op) in enumerate(OUTPUTS.items())]
    outs = [helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in OUTPUTS]
    return helper.make_model(helper.make_graph(nodes, "g", [x], outs), opset_imports=[helper.make_opsetid("", 17)])


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """The tiny model compiled once for the host; tests copy it (`art`)."""
    out = tmp_path_factory.mktemp("host") / "art"
    edgec.compile(tiny_model(), target="host", output=out)
    return out


@pytest.fixture
def art(built, tmp_path):
    return Path(shutil.copytree(built, tmp_path / "art"))


def edgec_cli(*args):
    """`edgec ARGS` in a subprocess (for the cases that used to crash the process)."""
    return subprocess.run([sys.executable, "-m", "edgec", *map(str, args)], capture_output=True, text=True,
                          timeout=300)


def run_main(capsys, *args) -> tuple[int, str, str]:
    """`edgec ARGS` in this process: exit status, stdout, stderr."""
    rc = main([str(a) for a in args])
    out, err = capsys.readouterr()
    return rc, out, err


def assert_clean_error(rc: int, err: str, *fragments: str) -> None:
    assert rc == 2, err
    assert err.startswith("edgec: error: ") and "Traceback" not in err, err
    for f in fragments:
        assert f in err, err


def npy_bytes(arr: np.ndarray, version=(1, 0)) -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array(buf, arr, version=version, allow_pickle=True)
    return buf.getvalue()


def npy_with_header(header: str, data: bytes = b"", version=(1, 0)) -> bytes:
    """A .npy file with the header text given as is (its length field matching it)."""
    text = header.encode("latin1")
    length = len(text).to_bytes(2 if version == (1, 0) else 4, "little")
    return np.lib.format.magic(*version) + length + text + data


# ---- the .npy reader ---------------------------------------------------------------------------

GOOD = {
    "big-endian f32": np.arange(6, dtype=">f4").reshape(2, 3) - 2.5,
    "big-endian i64": np.array([[1, -2], [1 << 40, 7]], dtype=">i8"),
    "big-endian f16": np.array([1.5, -0.25, np.inf], dtype=">f2"),
    "fortran order": np.asfortranarray(np.arange(12, dtype=np.float32).reshape(3, 4)),
    "fortran big-endian": np.asfortranarray(np.arange(24, dtype=">u2").reshape(2, 3, 4)),
    "0-d": np.array(3.25, dtype=np.float64),
    "empty": np.zeros((0, 3), dtype=np.int32),
    "bool": np.array([True, False, True]),
}


@pytest.mark.parametrize("name", GOOD)
def test_legitimate_npy_files_are_read_native_and_c_order(name, tmp_path):
    arr = GOOD[name]
    np.save(tmp_path / "a.npy", arr)
    got = read_npy(tmp_path / "a.npy", "--input x")
    assert got.dtype == arr.dtype.newbyteorder("=") and got.dtype.isnative
    assert got.shape == arr.shape and got.flags.c_contiguous
    assert np.array_equal(got, arr)


def test_npy_format_2_is_read(tmp_path):
    arr = np.arange(5, dtype=np.int8)
    (tmp_path / "a.npy").write_bytes(npy_bytes(arr, version=(2, 0)))
    assert np.array_equal(read_npy(tmp_path / "a.npy", "--input x"), arr)


VALID = npy_bytes(np.arange(8, dtype=np.float32).reshape(2, 4))
HEADER = "{'descr': '<f4', 'fortran_order': False, 'shape': %s, }"
BAD = {
    "empty file": (b"", "is not a .npy file"),
    "10^15 elements": (npy_with_header(HEADER % "(1000000000000000,)"),
                       f"1000000000000000 elements, more than the {MAX_ELEMENTS}"),
    "10^15 elements, 2-d": (npy_with_header(HEADER % "(100000000, 10000000)"), "elements"),
    "more than the file holds": (npy_with_header(HEADER % "(100000000,)", b"\0" * 16),
                                 "truncated: its header says float32[100000000], 400000000 bytes"),
    "truncated data": (VALID[:-4], "truncated"),
    "truncated header": (VALID[:20], "header is damaged"),
    "negative dim": (npy_with_header(HEADER % "(-1, 4)"), "has shape [-1, 4] in its header, with a negative"),
    "nested header": (npy_with_header(HEADER % ("(" + "-" * 3000 + "1,)")), "header is damaged"),
    "header length 4 GiB": (np.lib.format.magic(2, 0) + b"\xff\xff\xff\xff{}", "header is damaged"),
    "unclosed paren": (npy_with_header("{'descr': (, 'fortran_order': False, 'shape': (), }"), "header is damaged"),
    "not a dict": (npy_with_header("[1, 2]"), "header is damaged"),
    "bad descr": (npy_with_header("{'descr': '<f9', 'fortran_order': False, 'shape': (2,), }"),
                  "header is damaged"),
    "object dtype (pickle)": (npy_bytes(np.array([{"a": 1}, None], dtype=object)), "edgec never unpickles"),
    "unicode dtype": (npy_bytes(np.array(["ab", "c"])), "holds dtype <U2"),
    "record dtype": (npy_bytes(np.zeros(2, dtype=[("a", "<f4"), ("b", "<i4")])), "holds dtype [('a', '<f4')"),
    "complex dtype": (npy_bytes(np.zeros(2, dtype=np.complex64)), "holds dtype complex64; edgec runs float64,"),
    "format 3.0": (npy_with_header(HEADER % "(2,)", b"\0" * 8, version=(3, 0)), "format version 3.0"),
    "ONNX bytes": (b"\x08\x07\x12\x04test", "is not a .npy file"),
}


@pytest.mark.parametrize("case", BAD)
def test_bad_npy_files_are_input_errors(case, tmp_path):
    data, fragment = BAD[case]
    (tmp_path / "a.npy").write_bytes(data)
    with pytest.raises(InputError) as e:
        read_npy(tmp_path / "a.npy", "--input x")
    assert str(e.value).startswith(f"--input x: {tmp_path / 'a.npy'} ") and fragment in str(e.value), str(e.value)


def test_npy_from_a_pipe(tmp_path):
    """A pipe (`--input x=/dev/stdin`) has no size: it is read whole, then checked the same way."""
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    arr = np.arange(6, dtype=">i4").reshape(3, 2)
    writer = threading.Thread(target=lambda: fifo.write_bytes(npy_bytes(arr)))
    writer.start()
    try:
        got = read_npy(fifo, "--input x")
    finally:
        writer.join(timeout=10)
    assert got.dtype == np.int32 and np.array_equal(got, arr)


def test_missing_file_and_directory_are_input_errors(tmp_path):
    for path, fragment in [(tmp_path / "nope.npy", "No such file"), (tmp_path, "Is a directory")]:
        with pytest.raises(InputError, match=f"--input x: cannot read .*{fragment}"):
            read_npy(path, "--input x")


# ---- fuzzing the reader ------------------------------------------------------------------------

FUZZ_DTYPES = [*(d.str for d in DTYPES.values()), ">f4", ">f8", ">i4", ">u8", ">f2", ">i2", "<U3", "<c8", "|V4",
               "|O"]
DESCRS = ["<f4", ">f4", "|b1", "<i8", "|O", "<U2", "<f9", "(", "[('a', '<f4')]", "3"]
SHAPES = ["()", "(0,)", "(3,)", "(2, 3)", "(-1,)", "(10**3,)", "(1000000000000000,)", "(2,3,4,5,6,7)",
          "(2147483648,)", "(1.5,)", "3", "(", "((2,),)"]


@st.composite
def npy_files(draw):
    """A .npy file written by numpy (random dtype, shape, byte order, layout, format 1.0 or 2.0),
    then perhaps a header field rewritten and bytes flipped, set, cut, inserted or truncated.
    Returns the bytes and the array when they are still numpy's own file of it, else None."""
    dtype = np.dtype(draw(st.sampled_from(FUZZ_DTYPES)))
    shape = tuple(draw(st.lists(st.integers(0, 4), max_size=3)))
    rng = np.random.default_rng(draw(st.integers(0, 2**16)))
    if dtype.kind == "O":
        arr = np.empty(shape, dtype=object)
        arr.flat[:] = [None] * arr.size
    else:
        arr = rng.integers(0, 256, size=math.prod(shape) * dtype.itemsize, dtype=np.uint8).view(dtype).reshape(shape)
    if draw(st.booleans()):
        arr = np.asfortranarray(arr)
    data = bytearray(npy_bytes(arr, version=draw(st.sampled_from([(1, 0), (2, 0)]))))
    pristine = True
    if draw(st.booleans()):  # rewrite the header with other field values, over the same data
        start = data.index(b"{")
        body = bytes(data[data.index(b"\n", start) + 1:])
        header = (f"{{'descr': {draw(st.sampled_from([repr(dtype.str), *DESCRS]))}, "
                  f"'fortran_order': {draw(st.sampled_from(['False', 'True', '1', 'None']))}, "
                  f"'shape': {draw(st.sampled_from([repr(arr.shape), *SHAPES]))}, }}")
        header += " " * draw(st.integers(0, 70)) + "\n"
        data = bytearray(npy_with_header(header, body, version=(1, 0) if data[6] == 1 else (2, 0)))
        pristine = False
    for kind, pos, arg in draw(st.lists(st.tuples(st.sampled_from(["flip", "set", "cut", "insert", "truncate"]),
                                                  st.integers(0, 1 << 16), st.integers(1, 255)), max_size=4)):
        pristine = False
        pos %= max(len(data), 1)
        if kind == "flip" and data:
            data[pos] ^= arg
        elif kind == "set" and data:
            data[pos] = arg % 256
        elif kind == "cut":
            del data[pos:pos + arg % 16 + 1]
        elif kind == "insert":
            data[pos:pos] = bytes([arg]) * (arg % 8 + 1)
        else:
            del data[pos:]
    return bytes(data), arr if pristine else None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(npy_files())
def test_fuzz_npy_reader(case):
    """Only an InputError escapes the reader; an array it returns is numpy's own reading of the
    file (np.load), native and C-ordered; a file np.save wrote of a dtype edgec runs is read."""
    data, arr = case
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "fuzz.npy"
        path.write_bytes(data)
        try:
            got = read_npy(path, "--input x")
        except InputError as e:
            assert str(e).startswith(f"--input x: {path} "), str(e)
            assert arr is None or arr.dtype.newbyteorder("=") not in DTYPES.values(), str(e)
            return
        want = np.load(path, allow_pickle=False)
    assert got.dtype.isnative and got.flags.c_contiguous and got.dtype in DTYPES.values()
    assert got.dtype == want.dtype.newbyteorder("=") and got.shape == want.shape
    assert got.tobytes() == np.ascontiguousarray(want, dtype=got.dtype).tobytes()
    if arr is not None:
        assert np.array_equal(got, arr, equal_nan=got.dtype.kind == "f")


# ---- edgec run: inputs and -o ------------------------------------------------------------------

def test_empty_npy_through_the_cli(art, tmp_path):
    (tmp_path / "empty.npy").write_bytes(b"")
    r = edgec_cli("run", art, "--input", f"x={tmp_path / 'empty.npy'}")
    assert_clean_error(r.returncode, r.stderr, f"--input x: {tmp_path / 'empty.npy'} is not a .npy file")


def test_huge_npy_header_is_refused_before_allocating(art, tmp_path, capsys):
    (tmp_path / "huge.npy").write_bytes(npy_with_header(HEADER % "(1000000000000000,)"))
    rc, _, err = run_main(capsys, "run", art, "--input", f"x={tmp_path / 'huge.npy'}")
    assert_clean_error(rc, err, f"--input x: {tmp_path / 'huge.npy'} has shape [1000000000000000]")


@pytest.mark.parametrize("layout", ["big-endian", "fortran"])
def test_big_endian_and_fortran_inputs_run(layout, art, tmp_path, capsys):
    x = X.astype(">f4") if layout == "big-endian" else np.asfortranarray(X)
    np.save(tmp_path / "x.npy", x)
    rc, out, err = run_main(capsys, "run", art, "--input", f"x={tmp_path / 'x.npy'}", "-o", tmp_path / "res")
    assert rc == 0, err
    np.testing.assert_allclose(np.load(tmp_path / "res" / "a_b_2.npy"), -X)


def test_input_given_twice(art, tmp_path, capsys):
    np.save(tmp_path / "x.npy", X)
    rc, _, err = run_main(capsys, "run", art, "-i", f"x={tmp_path / 'x.npy'}", "-i", f"x={tmp_path / 'x.npy'}")
    assert_clean_error(rc, err, "--input x is given twice")


def test_outputs_get_unique_file_names_inside_o(art, tmp_path, capsys):
    np.save(tmp_path / "x.npy", X)
    res = tmp_path / "res"
    res.mkdir()
    (res / "a_b.npy").symlink_to(tmp_path / "outside.npy")  # replaced, not followed
    rc, out, err = run_main(capsys, "run", art, "--input", f"x={tmp_path / 'x.npy'}", "-o", res)
    assert rc == 0, err
    files = {"a/b": "a_b.npy", "a b": "a_b_2.npy", "a_b": "a_b_3.npy", "../up": ".._up.npy"}
    assert sorted(p.name for p in res.iterdir()) == sorted(files.values())
    assert not (tmp_path / "outside.npy").exists() and not (res / "a_b.npy").is_symlink()
    for name, want in expected(X).items():
        np.testing.assert_allclose(np.load(res / files[name]), want, rtol=1e-6)
        assert f"{name}: float32[2, 4]" in out and f"-> {res / files[name]}\n" in out, out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["art", "res", "x.npy"]


def test_output_file_names_are_unique_and_plain():
    names = ["a/b", "a b", "a_b", "a_b_2", "", "/", "..", "é", "x" * 300, "x" * 300 + "y"]
    files = edgec.driver.output_files(names)
    assert files == ["a_b.npy", "a_b_2.npy", "a_b_3.npy", "a_b_2_2.npy", "output.npy", "_.npy", "...npy",
                     "__.npy", "x" * 200 + ".npy", "x" * 200 + "_2.npy"]
    assert edgec.driver.output_files(names) == files


def test_o_onto_a_file(art, tmp_path, capsys):
    np.save(tmp_path / "x.npy", X)
    (tmp_path / "res").write_text("keep me")
    rc, _, err = run_main(capsys, "run", art, "--input", f"x={tmp_path / 'x.npy'}", "-o", tmp_path / "res")
    assert_clean_error(rc, err, f"-o {tmp_path / 'res'} exists and is not a directory")
    assert (tmp_path / "res").read_text() == "keep me"


def test_output_file_that_is_a_directory(art, tmp_path, capsys):
    np.save(tmp_path / "x.npy", X)
    (tmp_path / "res" / "a_b_3.npy").mkdir(parents=True)
    rc, _, err = run_main(capsys, "run", art, "--input", f"x={tmp_path / 'x.npy'}", "-o", tmp_path / "res")
    assert_clean_error(rc, err, "cannot write a_b_3.npy")
    assert not any(p.name.endswith(".tmp") for p in (tmp_path / "res").iterdir())


# ---- edgec run: the artifact directory ---------------------------------------------------------

def _edit_manifest(art: Path, edit) -> None:
    m = json.loads((art / "manifest.json").read_text())
    m = edit(m) or m
    (art / "manifest.json").write_text(json.dumps(m))


MANIFESTS = {
    "not an object": (lambda m: [m], "it is not a JSON object"),
    "no library": (lambda m: m.pop("library") and None, 'it has no "library"'),
    "no inputs": (lambda m: m.pop("inputs") and None, 'it has no "inputs"'),
    "no arch": (lambda m: m.pop("arch") and None, 'it has no "arch"'),
    "inputs a string": (lambda m: m.update(inputs="x"), '"inputs" is "x", not a list'),
    "arch a number": (lambda m: m.update(arch=5), '"arch" is 5, not a string'),
    "unknown arch": (lambda m: m.update(arch="riscv64"), '"arch" is "riscv64"'),
    "library outside": (lambda m: m.update(library="../model.so"), '"library" is "../model.so", not a file name'),
    "input not an object": (lambda m: m["inputs"].__setitem__(0, 3), '"inputs"[0] is not an object'),
    "input without name": (lambda m: m["inputs"][0].pop("name") and None, '"inputs"[0] has no "name"'),
    "unknown dtype": (lambda m: m["outputs"][1].update(dtype="f99"), '"outputs"[1]["dtype"] is "f99"'),
    "dtype a list": (lambda m: m["outputs"][0].update(dtype=["f32"]), '"outputs"[0]["dtype"] is ["f32"]'),
    "shape a string": (lambda m: m["inputs"][0].update(shape="2,4"), '"inputs"[0]["shape"] is "2,4"'),
    "negative dim": (lambda m: m["inputs"][0].update(shape=[2, -4]), '"inputs"[0]["shape"] is [2, -4]'),
}


@pytest.mark.parametrize("case", MANIFESTS)
def test_damaged_manifest_names_the_key(case, art):
    edit, fragment = MANIFESTS[case]
    _edit_manifest(art, edit)
    with pytest.raises(EdgecError) as e:
        edgec.load(art)
    assert fragment in str(e.value) and "edgec compile MODEL -o" in str(e.value), str(e.value)


def _patch(offset: int, value: bytes):
    def patch(lib: Path) -> None:
        data = bytearray(lib.read_bytes())
        data[offset:offset + len(value)] = value
        lib.write_bytes(bytes(data))
    return patch


LIBRARIES = {
    "missing": (lambda lib: lib.unlink(), "the artifact has no model.so"),
    "garbage": (lambda lib: lib.write_bytes(b"garbage" * 100), "is not an ELF shared library"),
    "empty": (lambda lib: lib.write_bytes(b""), "is not an ELF shared library"),
    "aarch64 machine": (_patch(18, b"\xb7\x00"), "is built for aarch64, not x86_64"),
    "32-bit": (_patch(4, b"\x01"), "is not a 64-bit little-endian ELF"),
    "not a library": (_patch(16, b"\x01\x00"), "not a shared library"),
    "truncated": (lambda lib: lib.write_bytes(lib.read_bytes()[:len(lib.read_bytes()) // 2]), "is truncated"),
    "header only": (lambda lib: lib.write_bytes(lib.read_bytes()[:64]), "program header table does not fit"),
}


@pytest.mark.parametrize("case", LIBRARIES)
def test_bad_library_is_refused_before_loading(case, art):
    damage, fragment = LIBRARIES[case]
    damage(art / "model.so")
    with pytest.raises(EdgecError) as e:
        edgec.load(art)
    assert fragment in str(e.value) and "compile the model again" in str(e.value), str(e.value)


def test_truncated_library_through_the_cli(art, tmp_path):
    """dlopen maps the truncated file's segments past its end: the first touch was a SIGBUS."""
    data = (art / "model.so").read_bytes()
    (art / "model.so").write_bytes(data[:len(data) // 2])  # the loaded segments are the first ~60%
    np.save(tmp_path / "x.npy", X)
    r = edgec_cli("run", art, "--input", f"x={tmp_path / 'x.npy'}")
    assert_clean_error(r.returncode, r.stderr, "model.so is truncated", "edgec compile MODEL -o")


def test_host_library_in_an_arm_artifact(art, capsys):
    _edit_manifest(art, lambda m: m.update(target="arm-a72", arch="aarch64"))
    rc, _, err = run_main(capsys, "run", art)
    assert_clean_error(rc, err, "model.so is built for x86_64, not aarch64")


def test_elf_check_reads_a_real_library():
    assert crosslink.elf_library_problem(np.__file__, "x86_64") == "is not an ELF shared library"
    lib = Path(np._core._multiarray_umath.__file__)
    assert crosslink.elf_library_problem(lib, "x86_64") is None
    assert crosslink.elf_library_problem(lib, "aarch64") == "is built for x86_64, not aarch64"


# ---- ARM artifacts (qemu) ----------------------------------------------------------------------

def _have(check) -> bool:
    try:
        check()
        return True
    except ToolError:
        return False


HAVE_TOOLCHAIN = _have(lambda: crosslink.find_toolchain(need_cxx=True))
HAVE_QEMU = HAVE_TOOLCHAIN and _have(runners.qemu_path)
needs_qemu = pytest.mark.skipif(not HAVE_QEMU, reason="needs qemu-user, the aarch64 libc in /usr/aarch64-linux-gnu "
                                "and a cross compiler (apt-get install qemu-user g++-aarch64-linux-gnu)")


@pytest.fixture(scope="module")
def arm_art(tmp_path_factory):
    if not HAVE_TOOLCHAIN:
        pytest.skip("no aarch64 cross compiler (apt-get install g++-aarch64-linux-gnu)")
    out = tmp_path_factory.mktemp("arm") / "art"
    edgec.compile(tiny_model(), target="arm-a72", output=out)
    return out


def test_arm_threads_are_capped_to_the_cores(arm_art):
    cores = len(os.sched_getaffinity(0))
    assert edgec.load(arm_art, threads=1000).threads == cores
    assert edgec.load(arm_art, threads=1).threads == 1
    assert edgec.load(arm_art).threads is None
    with pytest.raises(EdgecError, match="at least 1"):
        edgec.load(arm_art, threads=0)


def test_aarch64_library_in_a_host_artifact(arm_art, art):
    shutil.copy(arm_art / "model.so", art / "model.so")
    with pytest.raises(EdgecError, match="model.so is built for aarch64, not x86_64"):
        edgec.load(art)


@needs_qemu
def test_arm_outputs_with_colliding_names_and_many_threads(arm_art, tmp_path, capsys):
    """edgec-run writes each output to its own file (the same names as `edgec run -o`), and
    --threads 1000 runs on the cores there are (1000 guest threads under qemu never finished)."""
    np.save(tmp_path / "x.npy", X.astype(">f4"))
    rc, out, err = run_main(capsys, "run", arm_art, "--input", f"x={tmp_path / 'x.npy'}", "--threads", "1000",
                            "-o", tmp_path / "res")
    assert rc == 0, err
    files = dict(zip(OUTPUTS, edgec.driver.output_files(list(OUTPUTS))))
    for name, want in expected(X).items():
        np.testing.assert_allclose(np.load(tmp_path / "res" / files[name]), want, rtol=1e-5, atol=1e-6)
