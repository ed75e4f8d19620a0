"""Rerun the hardening audit: feed edgec hostile inputs, class by class, and print one markdown
table row per class.

    python tools/hostile_inputs.py                          # every class, --jobs 2
    python tools/hostile_inputs.py --quick                  # a few cases of each class (smoke test)
    python tools/hostile_inputs.py --classes eir-text,run-inputs --json out.json
    python tools/hostile_inputs.py --list                   # the classes and their cases

Run it from a checkout with edgec installed (`python -m edgec` must work). Each CLI case runs
`sys.executable -m edgec ...` as a subprocess in a fresh directory of its own, with TMPDIR
pointing to an empty directory of its own (so temp files it leaves are seen), bytecode writing
off, and an address-space limit (--memory-gb, default 4) so that a case asking for absurd memory
fails instead of taking the machine down (such a failure shows up as an internal error or a
crash). The fuzz classes call the Python API in a worker process (`--fuzz-worker`, restarted
after a case that kills or hangs it), with a fixed seed (--seed): each case is rebuilt from
(seed, class, index) alone, so a run repeats exactly.

Outcomes (every case gets exactly one):
- worked: exit 0 (`verify` and `diff` may exit 1, "outputs differ"); in-process: no exception;
- clean error: exit 2 with exactly one `edgec: error: ...` line (argparse's `edgec CMD: error:`
  counts), no traceback, and nothing left behind: the case directory as it was before the
  command (no output directory or file, no `.NAME.*` temp directory beside -o) and its TMPDIR
  empty; an interrupt's exit 130 with `edgec: interrupted` counts the same way; in-process: an
  `EdgecError` subclass;
- unclean error: exit 2 that breaks one of those rules (always counted as wrong too);
- crash: killed by a signal, any other non-zero status (not 2/130, nor 1 for verify/diff), or a
  Python traceback on stderr; in-process: the worker died;
- hang: ran past the per-case timeout (--timeout, default 120 s; large graphs --large-timeout,
  default 300 s);
- internal error: exit 70 or "internal error" on stderr; in-process: any other exception;
- harness error: the tool itself failed on the case (reported, never aborting the run).
"wrong" counts cases whose outcome is not what the case expects: a legitimate input refused, a
malformed one accepted, an error message without what it must say ("did you mean"), numbers
that differ from ONNX Runtime, an interrupt swallowed (exit 0 after SIGINT), a run that worked
but left temp files; an unclean error is always wrong. Under the table, the
cases not as expected, grouped by message. The exit status is 0 when every case is as
expected, 1 otherwise.

Classes: onnx-malformed, unsupported, wrong-numbers, output-paths, eir-text (+ fuzz),
run-inputs (+ fuzz), large-graphs (skipped under --quick), interrupts, cli-conventions,
onnx-fuzz; `--list` shows every case. Fuzz rows are shown apart, as "CLASS (fuzz)".

Measured on the project's shared 2-core machine with --jobs 2, other work beside it (load
average 3-5): a full run (1333 cases, --fuzz 400) took 16 min and 19 min on today's code, of which
the large graphs' three 300 s timeouts and a 3-minute crash are about 10 min of job time; --quick
(45 cases) took 83 s and 130 s. Each CLI case costs 6-12 s there, most of it importing TVM.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import queue
import random
import re
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np

WORKED, CLEAN, UNCLEAN, CRASH, HANG, INTERNAL, HARNESS = (
    "worked", "clean error", "unclean error", "crash", "hang", "internal error", "harness error")
OUTCOMES = [WORKED, CLEAN, UNCLEAN, CRASH, HANG, INTERNAL, HARNESS]
COLUMNS = ["worked", "clean errors", "unclean errors", "crashes", "hangs", "internal errors", "harness errors"]
DIFFERS_OK = {"verify", "diff"}  # commands whose exit status 1 means "outputs differ"
ERROR_LINE = re.compile(r"^edgec(?: [a-z-]+)?: error: ", re.M)
FUZZ_CHUNK = 200  # fuzz cases per worker process (a unit of parallel work)
WORKER_START_S = 300  # a fuzz worker's start (imports, base inputs) is not a case: its own bound


# ---- models ----------------------------------------------------------------------------------

def _onnx():
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    return onnx, TensorProto, helper, numpy_helper


def make_model(nodes, inputs, outputs, inits=(), opset=17, name="g"):
    """A ModelProto from (name, elem_type, shape) inputs and outputs (shape None: none)."""
    onnx, _, helper, _ = _onnx()
    vi = lambda io: [helper.make_tensor_value_info(n, t, s) for n, t, s in io]  # noqa: E731
    graph = helper.make_graph(nodes, name, vi(inputs), vi(outputs), list(inits))
    m = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def tiny_model(name="g"):
    """x: f32[1,4] -> Relu -> y."""
    _, T, helper, _ = _onnx()
    return make_model([helper.make_node("Relu", ["x"], ["y"], name="relu")],
                      [("x", T.FLOAT, [1, 4])], [("y", T.FLOAT, [1, 4])], name=name)


def small_cnn():
    """A valid model with weights: Conv -> Relu -> MaxPool -> Reshape -> MatMul -> Add."""
    _, T, helper, nh = _onnx()
    rng = np.random.default_rng(0)
    inits = [nh.from_array(rng.standard_normal((4, 3, 3, 3)).astype(np.float32), "w"),
             nh.from_array(rng.standard_normal((4,)).astype(np.float32), "b"),
             nh.from_array(np.array([1, 64], np.int64), "shape"),
             nh.from_array(rng.standard_normal((64, 5)).astype(np.float32), "fc"),
             nh.from_array(rng.standard_normal((5,)).astype(np.float32), "fcb")]
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["c"], name="conv", pads=[1, 1, 1, 1]),
             helper.make_node("Relu", ["c"], ["r"], name="relu"),
             helper.make_node("MaxPool", ["r"], ["p"], name="pool", kernel_shape=[2, 2], strides=[2, 2]),
             helper.make_node("Reshape", ["p", "shape"], ["f"], name="flatten"),
             helper.make_node("MatMul", ["f", "fc"], ["m"], name="fc"),
             helper.make_node("Add", ["m", "fcb"], ["y"], name="bias")]
    return make_model(nodes, [("x", T.FLOAT, [1, 3, 8, 8])], [("y", T.FLOAT, [1, 5])], inits)


def mixed_model():
    """Split, Gather, Concat, Transpose, Softmax, Reshape and Mul on constants: a second fuzz seed."""
    _, T, helper, nh = _onnx()
    inits = [nh.from_array(np.array([2, 2], np.int64), "sizes"),
             nh.from_array(np.array([1, 0], np.int64), "idx"),
             nh.from_array(np.array([2, 4], np.int64), "shape"),
             nh.from_array(np.linspace(-1, 1, 8, dtype=np.float32).reshape(2, 4), "k")]
    nodes = [helper.make_node("Split", ["x", "sizes"], ["s0", "s1"], name="split", axis=1),
             helper.make_node("Concat", ["s1", "s0"], ["c"], name="concat", axis=1),
             helper.make_node("Gather", ["c", "idx"], ["g"], name="gather", axis=0),
             helper.make_node("Transpose", ["g"], ["t"], name="transpose", perm=[1, 0]),
             helper.make_node("Reshape", ["t", "shape"], ["r"], name="reshape"),
             helper.make_node("Mul", ["r", "k"], ["m"], name="mul"),
             helper.make_node("Softmax", ["m"], ["y"], name="softmax", axis=-1)]
    return make_model(nodes, [("x", T.FLOAT, [2, 4])], [("y", T.FLOAT, [2, 4])], inits, opset=13)


def save(path: Path, model) -> Path:
    """Write a ModelProto, bytes or str to `path` (parents made)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(model, str):
        path.write_text(model)
    else:
        path.write_bytes(model if isinstance(model, bytes) else model.SerializeToString())
    return path


def npy_bytes(arr: np.ndarray, header: str | None = None) -> bytes:
    """`arr` as .npy bytes (format 1.0); `header` replaces the header dict text as written."""
    import io
    if header is None:
        buf = io.BytesIO()
        np.save(buf, arr, allow_pickle=True)
        return buf.getvalue()
    text = header + " " * ((64 - (10 + len(header) + 1) % 64) % 64) + "\n"
    return b"\x93NUMPY\x01\x00" + len(text).to_bytes(2, "little") + text.encode("latin1") + arr.tobytes()


X14 = np.array([[-1.5, 0.25, 2.0, -0.125]], np.float32)  # the input of tiny_model's cases


# ---- running a command -----------------------------------------------------------------------

# Sets the address-space limit, then becomes the command (so signals and the pid are its own).
_SHIM = ("import os, resource, sys\n"
         "lim = int(sys.argv[1])\n"
         "if lim: resource.setrlimit(resource.RLIMIT_AS, (lim, lim))\n"
         "os.execv(sys.argv[2], sys.argv[2:])")
_RUNNING: set[subprocess.Popen] = set()  # killed when the tool itself is interrupted
_RUNNING_LOCK = threading.Lock()
_STOPPING = threading.Event()  # set then: start no more


def start(argv: list[str], memory_gb: float, **popen) -> subprocess.Popen:
    """Start `argv` in its own session (its process group is killed as a whole) under the memory limit."""
    if _STOPPING.is_set():
        raise RuntimeError("the tool was interrupted")
    p = subprocess.Popen([sys.executable, "-c", _SHIM, str(int(memory_gb * (1 << 30))), *argv],
                         stdin=subprocess.DEVNULL, start_new_session=True, **popen)
    with _RUNNING_LOCK:
        _RUNNING.add(p)
    return p


def finish(p: subprocess.Popen) -> int:
    """Kill what is left of `p`'s process group; its exit status."""
    try:
        os.killpg(p.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    rc = p.wait()
    with _RUNNING_LOCK:
        _RUNNING.discard(p)
    return rc


@dataclass
class Run:
    """One finished command: exit status (negative: killed by that signal), output, time."""
    argv: list[str]
    rc: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    interrupted: bool = False  # SIGINT was sent while it ran
    timeout: float = 0.0


def run_command(argv: list[str], cwd: Path | None = None, env: dict | None = None, timeout: float = 120,
                memory_gb: float = 4, interrupt_at: float | None = None, log_dir: Path | None = None) -> Run:
    """Run `argv` (see `start`); kill it at `timeout`. `interrupt_at`: send SIGINT that many
    seconds after the start if it still runs. Its stdout and stderr go to files in `log_dir`."""
    own_logs = log_dir is None
    log_dir = Path(tempfile.mkdtemp(prefix="hostile-run-")) if own_logs else log_dir
    out_path, err_path = log_dir / "stdout", log_dir / "stderr"
    began = time.monotonic()
    with open(out_path, "wb") as out, open(err_path, "wb") as err:
        p = start(argv, memory_gb, cwd=cwd, env=env, stdout=out, stderr=err)
    timed_out = interrupted = False
    try:
        if interrupt_at is not None:
            try:
                p.wait(timeout=interrupt_at)
            except subprocess.TimeoutExpired:
                os.kill(p.pid, signal.SIGINT)
                interrupted = True
        p.wait(timeout=max(0.0, timeout - (time.monotonic() - began)))
    except subprocess.TimeoutExpired:
        timed_out = True
    finally:
        rc = finish(p)
    read = lambda path: path.read_bytes().decode("utf-8", "replace")  # noqa: E731
    run = Run(argv, None if timed_out else rc, read(out_path), read(err_path), time.monotonic() - began,
              timed_out, interrupted, timeout)
    if own_logs:
        shutil.rmtree(log_dir, ignore_errors=True)
    return run


def key_message(run: Run) -> str:
    """The line that says what happened: the error line, a traceback's last line, a signal."""
    if run.timed_out:
        return f"timed out after {run.timeout:g} s"
    lines = [ln for ln in run.stderr.splitlines() if ln.strip()]
    for ln in lines:
        if ERROR_LINE.match(ln) or "internal error" in ln or ln.startswith("edgec: interrupted"):
            return ln.strip()
    if "Traceback (most recent call last)" in run.stderr:
        tail = [ln for ln in lines if not ln.startswith(" ")]
        return "traceback: " + (tail[-1].strip() if tail else "?")
    if run.rc is not None and run.rc < 0:
        try:
            return f"killed by {signal.Signals(-run.rc).name}"
        except ValueError:
            return f"killed by signal {-run.rc}"
    return lines[0].strip() if lines and run.rc else f"exit {run.rc}"


def classify(run: Run, command: str = "", left: list[str] = ()) -> tuple[str, str | None]:
    """(outcome, reason an error is unclean) of one run; `left` lists what it left behind."""
    if run.timed_out:
        return HANG, None
    if run.rc < 0:
        return CRASH, None
    if run.rc == 70 or "internal error" in run.stderr:
        return INTERNAL, None
    if "Traceback (most recent call last)" in run.stderr:
        return CRASH, None
    if run.rc == 0 or (run.rc == 1 and command in DIFFERS_OK):
        return WORKED, None
    if run.rc in (2, 130):
        want = "edgec: interrupted" if run.rc == 130 else "edgec: error:"
        found = (len(re.findall(r"^edgec: interrupted", run.stderr, re.M)) if run.rc == 130
                 else len(ERROR_LINE.findall(run.stderr)))
        if found != 1:
            return UNCLEAN, f"exit {run.rc} with {found} '{want}' lines, not one"
        if left:
            return UNCLEAN, "left behind " + ", ".join(left)
        return CLEAN, None
    return CRASH, None


# ---- cases -----------------------------------------------------------------------------------

@dataclass
class Case:
    """A CLI case: `steps` are edgec argument lists run one after the other in a fresh directory
    (the first that does not work decides the outcome).

    expect: "work", "error" or "either" (no expectation: only crashes, hangs, internal and
    unclean errors count against it). `setup(work, fixtures)` writes the inputs; `check(work,
    runs)` returns why a run that worked is wrong, or None. `message` / `not_message`: regexes
    the error line must / must not match. `interrupt`: SIGINT the last step at this fraction of
    the reference compile time."""
    name: str
    steps: list[list[str]]
    expect: str = "error"
    setup: Callable | None = None
    check: Callable | None = None
    message: str | None = None
    not_message: str | None = None
    quick: bool = False
    large: bool = False
    interrupt: float | None = None


@dataclass
class Result:
    cls: str
    row: str
    case: str
    command: str
    expect: str
    outcome: str
    wrong: str | None
    rc: int | None
    seconds: float
    stderr: str  # its first line
    message: str  # the line that says what happened
    left_behind: list[str] = field(default_factory=list)


def cli(*args) -> list[str]:
    return [str(a) for a in args]


HOST = ["--target", "host"]


def _files(contents: dict):
    """A setup writing each {relative path: content} (ModelProto, bytes, str, or a function making one)."""
    def setup(work, fx):
        for name, content in contents.items():
            save(work / name, content() if callable(content) else content)
    return setup


def _with(*setups):
    def setup(work, fx):
        for s in setups:
            s(work, fx)
    return setup


def _artifact(name="art"):
    """A setup copying the compiled tiny model (built once per run) to `name`."""
    def setup(work, fx):
        shutil.copytree(fx.artifact(), work / name, symlinks=True)
    return setup


def _npy(name, arr, header=None):
    def setup(work, fx):
        save(work / name, npy_bytes(arr, header))
    return setup


# 1. onnx-malformed

def _external_model(location: str):
    onnx, T, helper, nh = _onnx()
    w = nh.from_array(np.zeros(2, np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = T.EXTERNAL
    for k, v in (("location", location), ("offset", "0"), ("length", "8")):
        e = w.external_data.add()
        e.key, e.value = k, v
    return make_model([helper.make_node("Add", ["x", "w"], ["y"], name="add")],
                      [("x", T.FLOAT, [2])], [("y", T.FLOAT, [2])], [w])


def _malformed_inputs() -> dict[str, Callable]:
    """name -> setup writing m/model.onnx (and what it points to)."""
    _, T, helper, _ = _onnx()
    valid = small_cnn().SerializeToString()
    rng = random.Random(1)

    def flipped(n):
        data = bytearray(valid)
        for _ in range(n):
            i = rng.randrange(len(data))
            data[i] ^= 1 << rng.randrange(8)
        return bytes(data)

    def relu(i, o, name):
        return helper.make_node("Relu", [i], [o], name=name)

    def ext(location, link=False):
        """m/model.onnx with external data at `location`, outside m/ (ABSOLUTE: its absolute path)."""
        def setup(work, fx):
            save(work / "secret.bin", b"\x00" * 8)
            save(work / "m" / "model.onnx", _external_model(str(work / "secret.bin") if location == "ABSOLUTE"
                                                             else location))
            if link:
                os.symlink("../secret.bin", work / "m" / location)
        return setup

    F = T.FLOAT
    models = {
        "truncated-half": valid[:len(valid) // 2],
        "truncated-tail": valid[:-3],
        "bitflip-8": flipped(8),
        "bitflip-64": flipped(64),
        "random-bytes": bytes(rng.randrange(256) for _ in range(512)),
        "empty-file": b"",
        "text-file": "this is not an ONNX model\n",
        "cycle": make_model([relu("b", "a", "r1"), relu("a", "b", "r2")], [("x", F, [1, 4])], [("b", F, [1, 4])]),
        "dangling-input": make_model([relu("nothere", "y", "r")], [("x", F, [1, 4])], [("y", F, [1, 4])]),
        "dtype-99": make_model([relu("x", "y", "r")], [("x", 99, [1, 4])], [("y", F, [1, 4])]),
        "conv-group-0": make_model(
            [helper.make_node("Conv", ["x", "w"], ["y"], name="conv", group=0)],
            [("x", F, [1, 2, 4, 4])], [("y", F, None)],
            [helper.make_tensor("w", F, [2, 2, 1, 1], [1.0] * 4)]),
        "duplicate-names": make_model([relu("x", "y", "r1"), relu("x", "y", "r2")],
                                      [("x", F, [1, 4])], [("y", F, [1, 4])]),
    }
    setups = {name: _files({"m/model.onnx": m}) for name, m in models.items()}
    setups["external-parent"] = ext("../secret.bin")
    setups["external-absolute"] = ext("ABSOLUTE")
    setups["external-symlink"] = ext("link.bin", link=True)
    setups["external-nul"] = ext("w\x00.bin")
    return setups


def onnx_malformed_cases() -> list[Case]:
    cases = []
    quick = {"random-bytes"}
    for name, setup in _malformed_inputs().items():
        expect = "either" if name.startswith("bitflip") else "error"
        for cmd in (cli("compile", "m/model.onnx", *HOST, "-o", "out"), cli("verify", "m/model.onnx", *HOST),
                    cli("inspect", "m/model.onnx")):
            cases.append(Case(f"{cmd[0]}:{name}", [cmd], expect, setup, quick=name in quick))
    return cases


# 2. unsupported

def unsupported_cases() -> list[Case]:
    _, T, helper, _ = _onnx()
    F, I64 = T.FLOAT, T.INT64
    ops = make_model([helper.make_node("Det", ["x"], ["d1"], name="det_a"),
                      helper.make_node("Det", ["x"], ["d2"], name="det_b"),
                      helper.make_node("Unique", ["x"], ["u"], name="uniq")],
                     [("x", F, [2, 2])], [("d1", F, None), ("d2", F, None), ("u", F, None)])
    dyn = lambda dims: _files({"dyn.onnx": make_model(  # noqa: E731  y = relu(x), x of shape `dims`
        [helper.make_node("Relu", ["x"], ["y"], name="relu")], [("x", F, dims)], [("y", F, dims)])})
    no_outputs = make_model([helper.make_node("Relu", ["x"], ["y"], name="relu")], [("x", F, [1, 4])], [])
    huge_range = make_model(
        [helper.make_node("Range", ["start", "limit", "delta"], ["r"], name="range"),
         helper.make_node("Cast", ["r"], ["rf"], name="cast", to=F),
         helper.make_node("ReduceSum", ["rf"], ["s"], name="sum", keepdims=0),
         helper.make_node("Add", ["x", "s"], ["y"], name="add")],
        [("x", F, [1])], [("y", F, [1])],
        [helper.make_tensor("start", I64, [], [0]), helper.make_tensor("limit", I64, [], [10**15]),
         helper.make_tensor("delta", I64, [], [1])])
    all_named = r"(?s)(?=.*Det)(?=.*Unique)(?=.*det_a)(?=.*det_b)(?=.*uniq)"
    c = lambda m, *extra: cli("compile", m, *HOST, "-o", "out", *extra)  # noqa: E731
    inspect_lists = lambda work, runs: None if all(  # noqa: E731
        s in runs[-1].stdout for s in ("Det", "Unique")) else "inspect does not list Det and Unique"
    return [
        Case("compile:unsupported-ops", [c("ops.onnx")], setup=_files({"ops.onnx": ops}), message=all_named,
             quick=True),
        Case("inspect:unsupported-ops", [cli("inspect", "ops.onnx")], "work", _files({"ops.onnx": ops}),
             check=inspect_lists),
        Case("compile:dynamic-dim-without-value", [c("dyn.onnx")], setup=dyn(["N", 4]), quick=True),
        Case("compile:input-shape-x=3,5-against-static-4", [c("dyn.onnx", "--input-shape", "x=3,5")],
             setup=dyn(["N", 4])),
        Case("compile:input-shape-x=1,,64", [c("dyn.onnx", "--input-shape", "x=1,,64")], setup=dyn(["N", 64])),
        Case("compile:input-shape-x=0", [c("dyn.onnx", "--input-shape", "x=0")], setup=dyn(["N"])),
        Case("compile:input-shape-x=a", [c("dyn.onnx", "--input-shape", "x=a")], setup=dyn(["N"])),
        Case("compile:input-shape-unknown-name", [c("dyn.onnx", "--input-shape", "z=1,4")], setup=dyn(["N", 4])),
        Case("compile:input-shape-fixes-dynamic-dim", [c("dyn.onnx", "--input-shape", "x=2,4")], "work",
             dyn(["N", 4])),
        Case("compile:no-outputs", [c("none.onnx")], setup=_files({"none.onnx": no_outputs})),
        Case("compile:range-huge-count", [c("range.onnx")], setup=_files({"range.onnx": huge_range})),
    ]


# 3. wrong-numbers

def _ort_check(model_file="m.onnx", feeds=None, out="y"):
    """A check: edgec's res/OUT.npy against ONNX Runtime on the same input."""
    def check(work, runs):
        import onnxruntime as ort
        x = np.load(work / "x.npy")
        try:
            sess = ort.InferenceSession(str(work / model_file), providers=["CPUExecutionProvider"])
            want = sess.run([out], {"x": x})[0]
        except Exception as e:  # noqa: BLE001 - ONNX Runtime refusing is the verdict
            return f"edgec ran a model ONNX Runtime refuses ({type(e).__name__}: {str(e)[:120]})"
        got = np.load(work / "res" / f"{out}.npy")
        if got.shape != want.shape:
            return f"output shape {list(got.shape)}, ONNX Runtime gives {list(want.shape)}"
        if not np.allclose(got, want, rtol=1e-4, atol=1e-5):
            return f"outputs differ from ONNX Runtime by up to {float(np.max(np.abs(got - want))):.3g}"
        return None
    return check


def wrong_numbers_cases() -> list[Case]:
    _, T, helper, nh = _onnx()
    F = T.FLOAT
    split13 = make_model([helper.make_node("Split", ["x", "sizes"], ["a", "b"], name="split", axis=1),
                          helper.make_node("Relu", ["a"], ["y"], name="relu")],
                         [("x", F, [1, 4])], [("y", F, None)], [nh.from_array(np.array([1, 3], np.int64), "sizes")],
                         opset=13)
    split18 = make_model([helper.make_node("Split", ["x"], ["a", "b"], name="split", axis=1, num_outputs=2),
                          helper.make_node("Relu", ["a"], ["y"], name="relu")],
                         [("x", F, [1, 5])], [("y", F, None)], opset=18)

    def gather(indices):
        return make_model([helper.make_node("Gather", ["x", "idx"], ["y"], name="gather", axis=0)],
                          [("x", F, [4, 3])], [("y", F, None)],
                          [nh.from_array(np.array(indices, np.int64), "idx")])
    steps = [cli("compile", "m.onnx", *HOST, "-o", "art"), cli("run", "art", "--input", "x=x.npy", "-o", "res")]
    x = lambda *shape: np.arange(np.prod(shape), dtype=np.float32).reshape(shape) - 1.5  # noqa: E731
    case = lambda name, m, arr, expect: Case(  # noqa: E731
        name, steps, expect, _with(_files({"m.onnx": m}), _npy("x.npy", arr)), _ort_check())
    return [case("split-opset13-second-piece-unread", split13, x(1, 4), "work"),
            replace(case("split-opset18-second-piece-unread", split18, x(1, 5), "work"), quick=True),
            case("gather-constant-index-out-of-range", gather([0, 5]), x(4, 3), "error"),
            case("gather-constant-negative-index", gather([-1, 0]), x(4, 3), "work")]


# 4. output-paths

def _three_outputs_model():
    _, T, helper, _ = _onnx()
    F = T.FLOAT
    return make_model([helper.make_node("Relu", ["x"], ["a/b"], name="r1"),
                       helper.make_node("Neg", ["x"], ["a b"], name="r2"),
                       helper.make_node("Sigmoid", ["x"], ["a_b"], name="r3")],
                      [("x", F, [1, 4])], [("a/b", F, [1, 4]), ("a b", F, [1, 4]), ("a_b", F, [1, 4])])


def _three_distinct_files(work, runs):
    files = sorted(p for p in (work / "res").rglob("*") if p.is_file())
    contents = {p.read_bytes() for p in files}
    if len(files) != 3 or len(contents) != 3:
        return f"run -o wrote {len(files)} file(s) with {len(contents)} distinct content(s) for 3 outputs"
    return None


def _failing_pass():
    return ("from edgec import Pass, register_pass\n\n\n@register_pass\nclass Explode(Pass):\n"
            "    name = 'explode'\n    summary = 'always fails'\n\n    def run(self, graph):\n"
            "        raise RuntimeError('boom')\n")


def output_paths_cases() -> list[Case]:
    m = _files({"m.onnx": tiny_model})
    comp = lambda out, *extra: cli("compile", "m.onnx", *HOST, "-o", out, *extra)  # noqa: E731
    user_dir = _files({"out/manifest.json": '{"note": "my own file"}\n', "out/notes.txt": "keep me\n"})
    a_file = _files({"f.txt": "a user's file\n"})
    run_art = cli("run", "art", "--input", "x=x.npy")
    return [
        Case("compile-o-onto-user-dir-with-manifest", [comp("out")], setup=_with(m, user_dir), quick=True),
        Case("compile-o-dot", [comp(".")], setup=m),
        Case("compile-o-under-a-file", [comp("f.txt/out")], setup=_with(m, a_file)),
        Case("compile-o-onto-a-file", [comp("f.txt")], setup=_with(m, a_file)),
        Case("compile-o-new-nested-dir", [comp("new/deep/out")], "work", m, quick=True),
        Case("compile-o-onto-own-artifact", [comp("out"), comp("out")], "work", m),
        Case("compile-dump-ir-onto-a-file", [comp("out", "--dump-ir", "f.txt")], setup=_with(m, a_file)),
        Case("opt-o-into-missing-dir", [cli("opt", "m.onnx", "-O1", "-o", "nodir/out.eir")], "either", m),
        Case("opt-o-onto-a-dir", [cli("opt", "m.onnx", "-O1", "-o", "d")], setup=_with(m, _files({"d/keep": "x"}))),
        Case("opt-reproducer-dir-onto-a-file",
             [cli("opt", "m.onnx", "--load-pass", "explode.py", "--passes", "explode", "--reproducer-dir", "f.txt")],
             setup=_with(m, a_file, _files({"explode.py": _failing_pass()}))),
        Case("run-o-onto-a-file", [[*run_art, "-o", "f.txt"]], setup=_with(_artifact(), _npy("x.npy", X14), a_file)),
        Case("outputs-named-a/b,a-b,a_b",
             [cli("compile", "three.onnx", *HOST, "-o", "art"), cli("run", "art", "--input", "x=x.npy", "-o", "res")],
             "work", _with(_files({"three.onnx": _three_outputs_model}), _npy("x.npy", X14)), _three_distinct_files),
    ]


# 5. eir-text

VALID_EIR = """graph @main(%x: f32[1,4]) -> (%y: f32[1,4]) {
  %c0 = const f32[4] [1,2,3,4]
  %0 = add(%x, %c0) : f32[1,4]  @"Add_0"
  %1 = relu(%0) : f32[1,4]  @"Relu_1"
  return %1
}
"""
VALID_EIR_I8 = VALID_EIR.replace("f32", "i8").replace("relu(%0)", "neg(%0)")


def eir_text_cases() -> list[Case]:
    sub = lambda old, new, text=VALID_EIR: text.replace(old, new, 1)  # noqa: E731
    nested = "[" * 100_000 + "1" + "]" * 100_000
    texts = {
        "bad-escape": sub('@"Relu_1"', '@"Re\\qlu_1"'),
        "bad-base64": sub("[1,2,3,4]", '#00ff b64"QUJ"'),
        "base64-byte-count": sub("[1,2,3,4]", '#00ff b64"AAAA"'),
        "element-count": sub("[1,2,3,4]", "[1,2,3]"),
        "dim-1.5": sub("%x: f32[1,4]", "%x: f32[1.5,4]"),
        "dim-1e0": sub("%x: f32[1,4]", "%x: f32[1e0,4]"),
        "dim-nan": sub("%x: f32[1,4]", "%x: f32[nan,4]"),
        "dim-inf4": sub("%x: f32[1,4]", "%x: f32[inf4]"),
        "int8-300": sub("[1,2,3,4]", "[300,2,3,4]", VALID_EIR_I8),
        "non-utf8": VALID_EIR.encode().replace(b"Relu_1", b"Relu_\xff\xfe"),
        "nested-attribute-100000": sub(" : f32[1,4]  @\"Relu_1\"", " {deep=" + nested + "} : f32[1,4]  @\"Relu_1\""),
        "value-defined-twice": sub('  %1 = relu', '  %0 = relu(%x) : f32[1,4]\n  %1 = relu'),
        "missing-return": sub("  return %1\n", ""),
        "missing-close": sub("}\n", ""),
        "unknown-op": sub("relu(%0)", "frobnicate(%0)"),
        "unknown-dtype": sub("%x: f32[1,4]", "%x: f33[1,4]"),
        "empty-file": "",
    }
    opt = lambda f, out="out.eir": cli("opt", f, "-O1", "-o", out)  # noqa: E731
    cases = [Case(f"opt:{name}", [opt("in.eir")], "error", _files({"in.eir": text}), quick=name == "bad-escape")
             for name, text in texts.items()]
    cases.append(Case("opt:valid", [opt("in.eir")], "work", _files({"in.eir": VALID_EIR}), quick=True))
    cases.append(Case("opt:non-ascii-graph-and-input-names-round-trip",
                      [opt("m.onnx", "a.eir"), opt("a.eir", "b.eir")], "work",
                      _files({"m.onnx": lambda: _renamed(tiny_model("módel_ü"), "x", "entrée")})))
    return cases


def _renamed(m, old, new):
    for n in m.graph.node:
        n.input[:] = [new if i == old else i for i in n.input]
    for v in m.graph.input:
        if v.name == old:
            v.name = new
    return m


# 6. run-inputs

def _edit_manifest(edit):
    def setup(work, fx):
        mf = work / "art" / "manifest.json"
        mf.write_text(edit(mf.read_text()))
    return setup


def _edit_library(edit):
    def setup(work, fx):
        lib = work / "art" / "model.so"
        data = edit(lib.read_bytes())
        lib.unlink()
        if data is not None:
            lib.write_bytes(data)
    return setup


def _relu_check(work, runs):
    got = np.load(work / "res" / "y.npy")
    want = np.maximum(X14.astype(np.float32), 0)
    if got.shape == want.shape and np.allclose(got, want):
        return None
    return f"output {got.tolist()}, expected {want.tolist()}"


def run_inputs_cases() -> list[Case]:
    art = _artifact()
    run = lambda *extra: cli("run", "art", *extra)  # noqa: E731
    feed = ["--input", "x=x.npy"]
    with_x = lambda arr=X14, header=None: _with(art, _npy("x.npy", arr, header))  # noqa: E731
    drop_key = lambda key: _edit_manifest(lambda t: json.dumps({k: v for k, v in json.loads(t).items() if k != key}))
    obj = np.array([{"a": 1}, None], dtype=object)
    aarch64 = lambda data: data[:18] + (183).to_bytes(2, "little") + data[20:]  # noqa: E731  ELF e_machine
    return [
        Case("empty-npy", [run(*feed)], setup=_with(art, _files({"x.npy": b""}))),
        Case("npy-header-claims-1e15-elements", [run(*feed)],
             setup=with_x(X14, "{'descr': '<f4', 'fortran_order': False, 'shape': (1000000000000000,), }")),
        Case("truncated-npy", [run(*feed)], setup=_with(art, lambda w, fx: save(w / "x.npy", npy_bytes(X14)[:-5]))),
        Case("big-endian-npy", [run(*feed, "-o", "res")], "work", with_x(X14.astype(">f4")), _relu_check, quick=True),
        Case("object-npy-pickle", [run(*feed)], setup=with_x(obj)),
        Case("wrong-shape", [run(*feed)], setup=with_x(np.zeros((2, 4), np.float32)), quick=True),
        Case("wrong-dtype", [run(*feed)], setup=with_x(X14.astype(np.float64))),
        Case("wrong-name", [run("--input", "z=x.npy")], setup=with_x()),
        Case("missing-input", [run()], setup=with_x()),
        Case("artifact-without-model.so", [run(*feed)], setup=_with(with_x(), _edit_library(lambda d: None))),
        Case("manifest-missing-inputs", [run(*feed)], setup=_with(with_x(), drop_key("inputs"))),
        Case("manifest-missing-arch", [run(*feed)], setup=_with(with_x(), drop_key("arch"))),
        Case("manifest-not-json", [run(*feed)], setup=_with(with_x(), _edit_manifest(lambda t: t[:len(t) // 2]))),
        Case("truncated-model.so", [run(*feed)], setup=_with(with_x(), _edit_library(lambda d: d[:len(d) // 2]))),
        Case("model.so-of-another-architecture", [run(*feed)], setup=_with(with_x(), _edit_library(aarch64))),
        Case("threads-0", [run(*feed, "--threads", "0")], setup=with_x()),
        Case("threads-1000", [run(*feed, "--threads", "1000", "-o", "res")], "work", with_x(), _relu_check),
    ]


# 7. large-graphs

def _many_inputs_model(op, n):
    _, T, helper, _ = _onnx()
    names = [f"x{i}" for i in range(n)]
    attrs = {"axis": 1} if op == "Concat" else {}
    width = 2 * n if op == "Concat" else 2
    return make_model([helper.make_node(op, names, ["y"], name=op.lower(), **attrs)],
                      [(nm, T.FLOAT, [1, 2]) for nm in names], [("y", T.FLOAT, [1, width])])


def _chain_model(n):
    _, T, helper, _ = _onnx()
    nodes = [helper.make_node("Sin" if i % 2 else "Cos", [f"v{i}" if i else "x"], [f"v{i + 1}" if i < n - 1 else "y"],
                              name=f"n{i}") for i in range(n)]
    return make_model(nodes, [("x", T.FLOAT, [1, 8])], [("y", T.FLOAT, [1, 8])])


def _wide_model(leaves):
    """`leaves` identical Relu(x) nodes summed pairwise: about 2 * leaves nodes for cse."""
    _, T, helper, _ = _onnx()
    nodes = [helper.make_node("Relu", ["x"], [f"l{i}"], name=f"relu{i}") for i in range(leaves)]
    level, k = [f"l{i}" for i in range(leaves)], 0
    while len(level) > 1:
        nxt = []
        for i in range(0, len(level) - 1, 2):
            nodes.append(helper.make_node("Add", [level[i], level[i + 1]], [f"a{k}"], name=f"add{k}"))
            nxt.append(f"a{k}")
            k += 1
        level = nxt + ([level[-1]] if len(level) % 2 else [])
    nodes[-1].output[0] = "y"
    return make_model(nodes, [("x", T.FLOAT, [1, 8])], [("y", T.FLOAT, [1, 8])])


def large_graphs_cases() -> list[Case]:
    opt = lambda level: cli("opt", "m.onnx", level, "-o", "out.eir")  # noqa: E731
    big = lambda name, steps, make: Case(name, [steps], "work", _files({"m.onnx": make}), large=True)  # noqa: E731
    return [big("compile:concat-3000-inputs", cli("compile", "m.onnx", *HOST, "-o", "out"),
                lambda: _many_inputs_model("Concat", 3000)),
            big("opt-O2:sum-10000-inputs", opt("-O2"), lambda: _many_inputs_model("Sum", 10_000)),
            big("opt-O2:chain-20000-nodes", opt("-O2"), lambda: _chain_model(20_000)),
            big("opt-O1:wide-22000-nodes", opt("-O1"), lambda: _wide_model(11_000))]


# 8. interrupts

INTERRUPT_FRACTIONS = [0.1, 0.3, 0.5, 0.6, 0.7, 0.75, 0.8, 0.9]  # of an uninterrupted compile here


def interrupts_cases() -> list[Case]:
    return [Case(f"sigint-at-{round(f * 100)}%-of-compile", [cli("compile", "cnn.onnx", *HOST, "-o", "out")],
                 "interrupted", _files({"cnn.onnx": small_cnn}), interrupt=f, quick=f == 0.7)
            for f in INTERRUPT_FRACTIONS]


# 9. cli-conventions

def cli_conventions_cases() -> list[Case]:
    m = _files({"m.onnx": tiny_model})
    version = lambda work, runs: None if re.search(r"\d+\.\d+", runs[-1].stdout + runs[-1].stderr) \
        else "prints no version"  # noqa: E731
    parse_refusal = dict(message=r"convert-layout|fold-constants|max-size|to=",  # refused when parsed, not run
                         not_message=r"reproducer|\(step \d+\) failed")
    return [
        Case("--version", [cli("--version")], "work", check=version, quick=True),
        Case("--debug-after-the-subcommand", [cli("inspect", "m.onnx", "--debug")], "work", m),
        Case("unknown-target-did-you-mean", [cli("compile", "m.onnx", "--target", "arm-a27", "-o", "out")],
             setup=m, message=r"(?i)did you mean", quick=True),
        Case("unknown-pass-did-you-mean", [cli("opt", "m.onnx", "--passes", "fold-constant")], setup=m,
             message=r"(?i)did you mean"),
        Case("unknown-command", [cli("complie", "m.onnx")], setup=m),
        Case("-O3-with---passes", [cli("opt", "m.onnx", "-O3", "--passes", "dce")], setup=m),
        Case("convert-layout{to=XYZ}", [cli("opt", "m.onnx", "--passes", "convert-layout{to=XYZ}",
                                            "--reproducer-dir", "repro")], setup=m, **parse_refusal),
        Case("fold-constants{max-size=-5}", [cli("opt", "m.onnx", "--passes", "fold-constants{max-size=-5}",
                                                 "--reproducer-dir", "repro")], setup=m, **parse_refusal),
        Case("passes", [cli("passes")], "work"),
        Case("targets", [cli("targets")], "work"),
    ]


# 10. the fuzz classes (in-process, in a worker)

FUZZ_CLASSES = {"onnx-fuzz": "onnx-fuzz", "eir-text": "eir-fuzz", "run-inputs": "npy-fuzz"}

CLASSES: dict[str, Callable[[], list[Case]]] = {
    "onnx-malformed": onnx_malformed_cases,
    "unsupported": unsupported_cases,
    "wrong-numbers": wrong_numbers_cases,
    "output-paths": output_paths_cases,
    "eir-text": eir_text_cases,
    "run-inputs": run_inputs_cases,
    "large-graphs": large_graphs_cases,
    "interrupts": interrupts_cases,
    "cli-conventions": cli_conventions_cases,
    "onnx-fuzz": lambda: [],
}


def _mutate_bytes(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    data = bytearray(data)
    kind = rng.choice(["flip", "overwrite", "delete", "duplicate", "insert", "truncate"])
    i = rng.randrange(len(data))
    n = rng.randint(1, 32)
    if kind == "flip":
        for _ in range(n):
            j = rng.randrange(len(data))
            data[j] ^= 1 << rng.randrange(8)
    elif kind == "overwrite":
        data[i:i + n] = bytes(rng.randrange(256) for _ in range(len(data[i:i + n])))
    elif kind == "delete":
        del data[i:i + n]
    elif kind == "duplicate":
        data[i:i] = data[i:i + n]
    elif kind == "insert":
        data[i:i] = bytes(rng.randrange(256) for _ in range(n))
    else:
        del data[i:]
    return bytes(data), f"bytes {kind} at {i} ({n})"


_INTS = [-(2**63), -(2**31), -2, -1, 0, 1, 2, 3, 7, 64, 2**31, 2**40, 2**62]
_FLOATS = [float("nan"), float("inf"), -float("inf"), -0.0, 1e38, -1e-45, 0.5]
_ONNX_OPS = ["Relu", "Conv", "Add", "MatMul", "Reshape", "Split", "Gather", "Concat", "Transpose", "Softmax",
             "MaxPool", "Slice", "Pad", "Resize", "Expand", "Tile", "ConstantOfShape", "Range", "TopK",
             "Einsum", "ReduceSum", "Cast", "Where", "NonZero", "Loop", "Det", "Squeeze", "Unsqueeze", "Mul"]
_ATTR_NAMES = ["axis", "axes", "group", "pads", "strides", "kernel_shape", "perm", "keepdims", "split",
               "num_outputs", "to", "dilations", "mode", "value", "k", "equation"]


def _mutate_field(rng: random.Random, m) -> str:
    """One mutation of a ModelProto's fields, in place; returns what it did."""
    onnx, T, helper, nh = _onnx()
    g = m.graph
    kind = rng.choice(["op_type", "remove_node", "rewire", "attr_value", "attr_remove", "attr_add", "init_dtype",
                       "init_dims", "init_data", "input_dtype", "input_dims", "output_name", "opset", "ir_version",
                       "duplicate_node"])
    node = rng.choice(g.node) if g.node else None
    names = [v.name for v in g.input] + [t.name for t in g.initializer] + [o for n in g.node for o in n.output] + [""]
    if kind == "op_type" and node is not None:
        node.op_type = rng.choice(_ONNX_OPS)
    elif kind == "remove_node" and node is not None:
        g.node.remove(node)
    elif kind == "rewire" and node is not None and node.input:
        node.input[rng.randrange(len(node.input))] = rng.choice(names)
    elif kind == "attr_value" and node is not None and node.attribute:
        a = rng.choice(node.attribute)
        if a.ints:
            a.ints[:] = [rng.choice(_INTS) for _ in range(rng.randint(0, 6))]
        elif a.type == onnx.AttributeProto.INT:
            a.i = rng.choice(_INTS)
        elif a.type == onnx.AttributeProto.FLOAT:
            a.f = rng.choice(_FLOATS)
        else:
            a.s = rng.choice([b"", b"NHWC", b"\xff", b"a" * 1000])
    elif kind == "attr_remove" and node is not None and node.attribute:
        node.attribute.remove(rng.choice(node.attribute))
    elif kind == "attr_add" and node is not None:
        value = rng.choice([rng.choice(_INTS), [rng.choice(_INTS) for _ in range(rng.randint(0, 5))],
                            rng.choice(_FLOATS), "NCHW"])
        node.attribute.append(helper.make_attribute(rng.choice(_ATTR_NAMES), value))
    elif kind == "init_dtype" and g.initializer:
        rng.choice(g.initializer).data_type = rng.randrange(0, 30)
    elif kind == "init_dims" and g.initializer:
        t = rng.choice(g.initializer)
        t.dims[:] = [rng.choice([0, 1, 2, 3, 4, 64, -1, 2**40]) for _ in range(rng.randint(0, 5))]
    elif kind == "init_data" and g.initializer:
        t = rng.choice(g.initializer)
        t.raw_data = t.raw_data[:rng.randrange(len(t.raw_data) + 1)] if rng.random() < 0.5 else t.raw_data * 2
    elif kind == "input_dtype" and g.input:
        rng.choice(g.input).type.tensor_type.elem_type = rng.randrange(0, 30)
    elif kind == "input_dims" and g.input:
        dims = rng.choice(g.input).type.tensor_type.shape.dim
        if dims:
            d = rng.choice(dims)
            if rng.random() < 0.3:
                d.dim_param = "N"
            else:
                d.dim_value = rng.choice([0, 1, 2, 5, 2**31, 2**62, -3])
    elif kind == "output_name" and g.output:
        rng.choice(g.output).name = rng.choice(names + ["nothere"])
    elif kind == "opset":
        m.opset_import[0].version = rng.choice([1, 6, 7, 9, 10, 11, 13, 17, 18, 21, 28, 29, 10**6])
    elif kind == "ir_version":
        m.ir_version = rng.choice([0, 1, 3, 7, 8, 10, 11, 99])
    elif kind == "duplicate_node" and node is not None:
        g.node.append(node)
    else:
        return kind + " (no-op: nothing to change)"
    return kind


def _mutate_text(rng: random.Random, text: str) -> tuple[str, str]:
    """One mutation of IR text (characters, lines or tokens) and its kind."""
    kind = rng.choice(["delete", "insert", "replace", "swap_lines", "drop_line", "dup_line", "truncate",
                       "number", "ident", "var"])
    lines = text.split("\n")
    i = rng.randrange(max(1, len(text)))
    if kind == "delete":
        return text[:i] + text[i + rng.randint(1, 4):], kind
    if kind in ("insert", "replace"):
        ch = rng.choice('%@#[](){}=,:"\\ -.0123456789abefinx\n\x00é')
        return text[:i] + ch + text[i + (kind == "replace"):], kind
    if kind in ("swap_lines", "drop_line", "dup_line"):
        a, b = rng.randrange(len(lines)), rng.randrange(len(lines))
        if kind == "swap_lines":
            lines[a], lines[b] = lines[b], lines[a]
        elif kind == "drop_line":
            del lines[a]
        else:
            lines.insert(b, lines[a])
        return "\n".join(lines), kind
    if kind == "truncate":
        return text[:i], kind
    pattern, choices = {
        "number": (r"(?<![%#\w])-?\d+(?:\.\d*)?", ["0", "-1", "1.5", "1e0", "nan", "inf", "3", "-0",
                                                  "99999999999999999999", "2147483648"]),
        "ident": (r"\b(?:f32|i64|i8|f16|bool|relu|add|conv|matmul|softmax|reshape|split|concat|gather|group|axis)\b",
                  ["f32", "i64", "i8", "u8", "bool", "f64", "relu", "conv", "split", "transpose", "xyz", "const"]),
        "var": (r"%[\w.]+", ["%0", "%1", "%c0", "%x", "%99", "%\"\"", "%y"]),
    }[kind]
    spots = list(re.finditer(pattern, text))
    if not spots:
        return text, kind
    s = rng.choice(spots)
    return text[:s.start()] + rng.choice(choices) + text[s.end():], kind


# The worker's own test (tests/test_hostile_inputs_tool.py): case i kills it, hangs, fails, works.
SELFTEST = [lambda: os.kill(os.getpid(), signal.SIGSEGV), lambda: time.sleep(600),
            lambda: int("not a number"), lambda: None]


class FuzzWorker:
    """Builds and runs fuzz case i of a kind (onnx-fuzz, eir-fuzz, npy-fuzz, or selftest) from
    (seed, kind, i) alone."""

    def __init__(self, kind: str, seed: int, artifact: str | None, scratch: Path):
        import edgec
        self.edgec, self.kind, self.seed, self.scratch = edgec, kind, seed, scratch
        if kind == "selftest":
            self.bases = [b""]
        elif kind == "onnx-fuzz":
            self.bases = [small_cnn(), mixed_model()]
        elif kind == "eir-fuzz":
            from edgec.passmanager import resolve_pipeline
            self.pipeline = resolve_pipeline("host", 2)
            self.bases = [edgec.print_ir(edgec.import_onnx(small_cnn()), full_constants=True),
                          edgec.print_ir(edgec.import_onnx(mixed_model()), full_constants=True), VALID_EIR]
        else:
            self.artifact = edgec.load(artifact)
            self.bases = [npy_bytes(X14)]

    def build(self, i: int) -> tuple[Callable[[], None], bytes, str, str]:
        """(call, input bytes, suffix, description) of case i."""
        rng = random.Random(f"{self.seed}:{self.kind}:{i}")
        base = rng.choice(self.bases)
        if self.kind == "selftest":
            return SELFTEST[i % len(SELFTEST)], base, ".txt", f"selftest {i}"
        if self.kind == "onnx-fuzz":
            if rng.random() < 0.5:
                data, what = _mutate_bytes(rng, base.SerializeToString())
            else:
                m = type(base)()
                m.CopyFrom(base)
                what = "+".join(_mutate_field(rng, m) for _ in range(rng.randint(1, 3)))
                data = m.SerializeToString()
            path = self.scratch / f"case{i}.onnx"
            return (lambda: self.edgec.import_onnx(path)), data, ".onnx", what
        if self.kind == "eir-fuzz":
            text, kinds = base, []
            for _ in range(rng.randint(1, 3)):
                text, kind = _mutate_text(rng, text)
                kinds.append(kind)

            def call():
                from edgec.passmanager import PassManager
                self.edgec.print_ir(PassManager(self.pipeline).run(self.edgec.parse_ir(text)))
            return call, text.encode(), ".eir", "text " + "+".join(kinds)
        data = base
        whats = []
        for _ in range(rng.randint(1, 2)):
            if rng.random() < 0.5:
                header = "{'descr': %r, 'fortran_order': %s, 'shape': %s, }" % (
                    rng.choice(["<f4", ">f4", "<f8", "|b1", "<i8", "|O", "<U3", "|V4", "<c8", "<f2", ">i4", "<M8[s]",
                                "|S4", "float32", "<f4 "]),
                    rng.choice(["False", "True", "'x'", "None"]),
                    rng.choice(["(1, 4)", "(4, 1)", "()", "(0,)", "(1000000000000000,)", "(1, -1)",
                                "(2147483648, 2147483648)", "(1, 4, 1)", "(4,)", "[1, 4]", "(1.0, 4)"]))
                data, what = npy_bytes(X14, header), "header " + header
            else:
                data, what = _mutate_bytes(rng, data)
            whats.append(what)
        path = self.scratch / f"case{i}.npy"

        def run_npy():
            from edgec.cli import _read_inputs
            self.artifact.run(_read_inputs([f"x={path}"]))
        return run_npy, data, ".npy", "; ".join(whats)

    @staticmethod
    def run(call: Callable[[], None]) -> dict:
        """Outcome of one call: no exception, an EdgecError, or anything else (a bug)."""
        from edgec.errors import EdgecError
        began = time.monotonic()
        try:
            call()
            outcome, message = WORKED, ""
        except EdgecError as e:
            outcome, message = CLEAN, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        except KeyboardInterrupt:
            raise
        except BaseException as e:  # noqa: BLE001 - anything else escaping edgec is a bug (SystemExit too)
            outcome, message = INTERNAL, f"{type(e).__name__}: {str(e)[:300]}".splitlines()[0]
        return {"outcome": outcome, "message": message, "seconds": time.monotonic() - began}


def fuzz_worker_main(kind: str, seed: int, first: int, count: int, artifact: str | None, keep: str | None) -> int:
    """The --fuzz-worker side: JSON lines on the protocol fd, {"start": i, "what": ...} before each
    case, its outcome after. With `keep`, a case's input stays there unless it worked or failed cleanly
    (so the input of a case that kills the worker is kept too)."""
    proto = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)  # whatever edgec prints goes to stderr, never into the protocol
    scratch = Path(tempfile.mkdtemp(prefix="fuzz-"))
    worker = FuzzWorker(kind, seed, artifact, scratch)
    for i in range(first, first + count):
        try:
            call, data, suffix, what = worker.build(i)
            save(scratch / f"case{i}{suffix}", data)
        except Exception as e:  # noqa: BLE001 - a bug in this tool, not in edgec
            proto.write(json.dumps({"start": i, "what": "?"}) + "\n")
            proto.write(json.dumps({"i": i, "outcome": HARNESS, "message": f"building the case failed: "
                                    f"{type(e).__name__}: {e}"}) + "\n")
            continue
        kept = Path(keep) / f"fuzz-{i:04d}{suffix}" if keep else None
        if kept:
            save(kept, data)
        proto.write(json.dumps({"start": i, "what": what}) + "\n")
        result = worker.run(call)
        proto.write(json.dumps({"i": i, **result}) + "\n")
        (scratch / f"case{i}{suffix}").unlink()
        if kept and result["outcome"] in (WORKED, CLEAN):
            kept.unlink()
    shutil.rmtree(scratch, ignore_errors=True)
    return 0


# ---- running the cases -----------------------------------------------------------------------

class Fixtures:
    """What several cases share, built once on first use (thread-safe)."""

    def __init__(self, opts, root: Path):
        self.opts, self.root = opts, root
        self._lock = threading.Lock()
        self._art: Path | Exception | None = None
        self._compile_s: float | Exception | None = None

    def _compile(self, name: str, model) -> tuple[Path, float]:
        d = self.root / name
        work, tmp = d / "work", d / "tmp"
        work.mkdir(parents=True)
        tmp.mkdir()
        save(work / "m.onnx", model)
        run = run_command(edgec_argv(["compile", "m.onnx", *HOST, "-o", "art"]), work, child_env(tmp),
                          self.opts.timeout, self.opts.memory_gb, log_dir=d)
        if run.rc != 0:
            raise RuntimeError(f"fixture: `edgec compile` of the {name} model failed: {key_message(run)}")
        return work / "art", run.seconds

    def artifact(self) -> Path:
        """The host artifact of tiny_model."""
        with self._lock:
            if self._art is None:
                try:
                    self._art = self._compile("tiny-artifact", tiny_model())[0]
                except Exception as e:  # noqa: BLE001 - every case using it reports it
                    self._art = e
            if isinstance(self._art, Exception):
                raise self._art
            return self._art

    def compile_seconds(self) -> float:
        """How long an uninterrupted compile of the interrupts' model takes here."""
        with self._lock:
            if self._compile_s is None:
                try:
                    self._compile_s = self._compile("cnn-reference", small_cnn())[1]
                except Exception as e:  # noqa: BLE001
                    self._compile_s = e
            if isinstance(self._compile_s, Exception):
                raise self._compile_s
            return self._compile_s


def edgec_argv(args: list[str]) -> list[str]:
    return [sys.executable, "-m", "edgec", *args]


def child_env(tmp: Path) -> dict:
    env = dict(os.environ, TMPDIR=str(tmp), PYTHONDONTWRITEBYTECODE="1", PYTHONUNBUFFERED="1")
    env.pop("PYTHONSTARTUP", None)
    return env


def snapshot(root: Path) -> dict[str, str]:
    """relative path -> what is there (a directory, a link and its target, a file's sha256)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            if p.is_symlink():
                out[rel] = "link " + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                try:
                    out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
                except OSError as e:
                    out[rel] = f"unreadable {e}"
    return out


def _pattern(name: str) -> str:
    """A temp name with its random mkdtemp suffix as '*' (so equal leftovers group together)."""
    return re.sub(r"(?<=[-.])[a-z0-9_]{8}$", "*", name)


def changes(before: dict[str, str], after: dict[str, str]) -> list[str]:
    """What a failed command changed: new, removed and rewritten paths (top-most only)."""
    new = [p for p in after if p not in before]
    gone = [p for p in before if p not in after]
    changed = [p for p in after if p in before and after[p] != before[p]]
    top = lambda paths: [p for p in sorted(paths)  # noqa: E731
                         if not any(p.startswith(q + "/") for q in paths if q != p)]
    return ([_pattern(p) + ("/" if after[p] == "dir" else "") for p in top(new)]
            + [f"{p} (removed)" for p in top(gone)] + [f"{p} (changed)" for p in changed])


def run_case(cls: str, case: Case, fx: Fixtures, opts) -> Result:
    root = Path(tempfile.mkdtemp(prefix="case-", dir=fx.root))
    work, tmp = root / "work", root / "tmp"
    work.mkdir()
    tmp.mkdir()
    command = " && ".join("edgec " + shlex.join(s) for s in case.steps)
    result = Result(cls, cls, case.name, command, case.expect, HARNESS, None, None, 0.0, "", "")
    try:
        if case.setup:
            case.setup(work, fx)
        interrupt_at = case.interrupt * fx.compile_seconds() if case.interrupt is not None else None
        timeout = opts.large_timeout if case.large else opts.timeout
        runs: list[Run] = []
        for i, step in enumerate(case.steps):
            before = snapshot(work)
            run = run_command(edgec_argv(step), work, child_env(tmp), timeout, opts.memory_gb,
                              interrupt_at if i == len(case.steps) - 1 else None, log_dir=root)
            runs.append(run)
            if run.rc != 0:
                break
        temp_left = sorted("$TMPDIR/" + _pattern(p.name) for p in tmp.iterdir())
        left = (changes(before, snapshot(work)) if run.rc else []) + temp_left  # a failed step must leave nothing
        outcome, unclean = classify(run, step[0] if step else "", left)
        result.outcome, result.rc, result.seconds = outcome, run.rc, sum(r.seconds for r in runs)
        result.stderr = next((ln for ln in run.stderr.splitlines() if ln.strip()), "")
        result.message = key_message(run)
        result.left_behind = left
        reasons = [unclean, expectation(case, outcome, run, runs, work, temp_left)]
        result.wrong = "; ".join(filter(None, reasons)) or None
        if case.interrupt is not None:
            result.message += f" (SIGINT at {interrupt_at:.1f} s)" if run.interrupted else \
                f" (finished in {run.seconds:.1f} s, before the SIGINT at {interrupt_at:.1f} s)"
    except Exception as e:  # noqa: BLE001 - a case must never abort the run
        result.outcome, result.wrong = HARNESS, None
        result.message = f"{type(e).__name__}: {e}".splitlines()[0]
        result.stderr = traceback.format_exc().splitlines()[-1]
    if opts.keep and (result.outcome not in (WORKED, CLEAN) or result.wrong):
        shutil.copytree(root, Path(opts.keep) / cls / re.sub(r"[^\w.,=-]", "_", case.name), symlinks=True,
                        dirs_exist_ok=True)
    shutil.rmtree(root, ignore_errors=True)
    return result


def expectation(case: Case, outcome: str, run: Run, runs: list[Run], work: Path, temp_left: list[str]) -> str | None:
    """Why a worked or (clean or unclean) error outcome is not what `case` expects (None: it is)."""
    if outcome not in (WORKED, CLEAN, UNCLEAN):
        return None
    if case.expect == "interrupted":
        if outcome != WORKED:
            return None if run.rc == 130 else f"SIGINT gave exit {run.rc}, not 130"
        reasons = ["interrupt swallowed: exit 0 after SIGINT" if run.interrupted else None]
    elif outcome == WORKED:
        reasons = ["accepted; expected a clean error" if case.expect == "error" else None,
                   "verify reported a mismatch (exit 1)" if run.rc == 1 and case.expect == "work" else None,
                   case.check(work, runs) if case.check and case.expect != "error" else None]
    else:
        message = key_message(run)
        return "; ".join(filter(None, [
            f"refused a legitimate input: {message}" if case.expect == "work" else None,
            f"the message lacks /{case.message}/: {message}" if case.message and not re.search(
                case.message, run.stderr) else None,
            f"the message has /{case.not_message}/: {message}" if case.not_message and re.search(
                case.not_message, run.stderr) else None])) or None
    reasons.append(f"worked but left {', '.join(temp_left)}" if temp_left else None)
    return "; ".join(filter(None, reasons)) or None


def run_fuzz_chunk(cls: str, kind: str, first: int, count: int, fx: Fixtures, opts) -> list[Result]:
    """Cases first..first+count-1 of a fuzz class in worker processes, restarted after a case
    that kills or hangs one."""
    row = f"{cls} (fuzz)"
    results: dict[int, Result] = {}
    desc = {"onnx-fuzz": "edgec.import_onnx(mutated model)", "eir-fuzz": "edgec.parse_ir + -O2 passes (mutated text)",
            "npy-fuzz": "edgec run's input reading + Artifact.run (mutated .npy)", "selftest": "selftest"}[kind]

    def record(i, outcome, message, seconds=0.0, rc=None, what=""):
        results[i] = Result(cls, row, f"fuzz-{i:04d}", f"{desc} [seed {opts.seed}, case {i}: {what}]", "either",
                            outcome, None, rc, seconds, message, message)

    root = Path(tempfile.mkdtemp(prefix=f"{kind}-", dir=fx.root))
    try:
        artifact = str(fx.artifact()) if kind == "npy-fuzz" else None
    except Exception as e:  # noqa: BLE001
        for i in range(first, first + count):
            record(i, HARNESS, str(e))
        return list(results.values())
    nxt, stop = first, first + count
    while nxt < stop:
        argv = [sys.executable, str(Path(__file__).resolve()), "--fuzz-worker", kind, "--seed", str(opts.seed),
                "--first", str(nxt), "--count", str(stop - nxt)]
        if artifact:
            argv += ["--artifact", artifact]
        if opts.keep:
            argv += ["--keep", str(Path(opts.keep).resolve() / f"{cls}-fuzz")]
        tmp = root / f"tmp{nxt}"
        tmp.mkdir()
        err_path = root / f"stderr{nxt}"
        with open(err_path, "wb") as err:
            p = start(argv, opts.memory_gb, cwd=root, env=child_env(tmp), stdout=subprocess.PIPE, stderr=err,
                      text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: ([lines.put(ln) for ln in p.stdout], lines.put(None)), daemon=True).start()
        current, what, started = None, "", time.monotonic()
        try:
            while True:
                try:
                    limit = opts.timeout if current is not None else WORKER_START_S
                    line = lines.get(timeout=max(0.1, limit - (time.monotonic() - started)))
                except queue.Empty:  # the case (or the worker's start) ran past the timeout
                    if current is None:
                        raise RuntimeError(f"the fuzz worker did not start (or go on) within {WORKER_START_S} s")
                    record(current, HANG, f"timed out after {opts.timeout:g} s", opts.timeout, what=what)
                    nxt = current + 1
                    break
                if line is None:  # the worker ended
                    rc = p.wait()
                    if current is None:
                        if nxt < stop:
                            tail = err_path.read_text(errors="replace").strip().splitlines()[-1:] or [f"exit {rc}"]
                            raise RuntimeError(f"the fuzz worker stopped before a case: {tail[0]}")
                        break
                    tail = [ln for ln in err_path.read_text(errors="replace").splitlines() if ln.strip()][-1:]
                    how = signal.Signals(-rc).name if rc < 0 and -rc in signal.valid_signals() else f"exit {rc}"
                    record(current, CRASH, f"the worker died ({how}): {tail[0] if tail else ''}".strip(), rc=rc,
                           what=what)
                    nxt = current + 1
                    break
                msg = json.loads(line)
                if "start" in msg:
                    current, what, started = msg["start"], msg["what"], time.monotonic()
                    continue
                record(msg["i"], msg["outcome"], msg["message"], msg.get("seconds", 0.0), what=what)
                current, started, nxt = None, time.monotonic(), msg["i"] + 1
        except Exception as e:  # noqa: BLE001 - the worker itself cannot run: every case left says so
            for i in range(nxt, stop):
                record(i, HARNESS, f"{type(e).__name__}: {e}")
            nxt = stop
        finally:
            finish(p)
    shutil.rmtree(root, ignore_errors=True)
    return [results[i] for i in sorted(results)]


def plan(opts) -> list[tuple[str, str, Callable[[Fixtures], list[Result]], float]]:
    """(class, label, job, cost guess) for every unit of work, in table order."""
    units = []
    fuzz_n = min(opts.fuzz, 10) if opts.quick else opts.fuzz
    for cls in opts.classes:
        for case in CLASSES[cls]():
            if opts.quick and not case.quick or opts.quick and case.large:
                continue
            cost = 300 if case.large else 20 if case.interrupt is not None else 10 * len(case.steps)
            units.append((cls, case.name, lambda fx, c=case, k=cls: [run_case(k, c, fx, opts)], cost))
        if cls in FUZZ_CLASSES:
            kind = FUZZ_CLASSES[cls]
            for first in range(0, fuzz_n, FUZZ_CHUNK):
                n = min(FUZZ_CHUNK, fuzz_n - first)
                units.append((cls, f"fuzz {first}-{first + n - 1}",
                              lambda fx, k=cls, kd=kind, f=first, c=n: run_fuzz_chunk(k, kd, f, c, fx, opts), 60))
    return units


def table(results: list[Result], rows: list[str]) -> str:
    head = ["class", "cases", *COLUMNS, "wrong"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" + "---:|" * (len(head) - 1)]
    for row in rows:
        rs = [r for r in results if r.row == row]
        if not rs:
            continue
        counts = [sum(r.outcome == o for r in rs) for o in OUTCOMES]
        wrong = sum(bool(r.wrong) for r in rs)
        lines.append(f"| {row} | {len(rs)} | " + " | ".join(map(str, counts)) + f" | {wrong} |")
    return "\n".join(lines)


def not_as_expected(results: list[Result]) -> list[Result]:
    return [r for r in results if r.outcome not in (WORKED, CLEAN) or r.wrong]


def failures(results: list[Result]) -> str:
    """The cases not as expected, grouped by class, outcome and message (numbers folded)."""
    groups: dict[tuple, list[Result]] = {}
    for r in not_as_expected(results):
        what = r.wrong if r.wrong else r.message
        key = (r.row, r.outcome, re.sub(r"\d+", "N", what)[:100])
        groups.setdefault(key, []).append(r)
    lines = []
    for (row, outcome, _), rs in groups.items():
        names = ", ".join(r.case for r in rs[:4]) + (f" and {len(rs) - 4} more" if len(rs) > 4 else "")
        label = outcome + (", wrong" if rs[0].wrong and outcome in (WORKED, CLEAN) else "")
        text = rs[0].wrong or rs[0].message
        if rs[0].wrong and rs[0].outcome not in (WORKED, CLEAN) and rs[0].message not in text:
            text += f" ({rs[0].message})"
        lines.append(f"- {row}: {len(rs)} {label}: `{text[:200]}` ({names})")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--classes", default=",".join(CLASSES), help="comma-separated subset (default: all)")
    ap.add_argument("--quick", action="store_true", help="a few cases of each class, 10 fuzz cases, no large graphs")
    ap.add_argument("--jobs", type=int, default=2, help="cases run in parallel (default 2)")
    ap.add_argument("--timeout", type=float, default=120, help="seconds before a case counts as a hang (120)")
    ap.add_argument("--large-timeout", type=float, default=300, help="the same for large-graphs (300)")
    ap.add_argument("--fuzz", type=int, default=400, help="cases per fuzz class (400)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the fuzz classes (0)")
    ap.add_argument("--memory-gb", type=float, default=4, help="address-space limit per case, 0: none (4)")
    ap.add_argument("--json", type=Path, default=None, help="write every case's outcome here")
    ap.add_argument("--keep", type=Path, default=None, help="copy the inputs of cases not as expected here")
    ap.add_argument("--list", action="store_true", help="list the classes and their cases, run nothing")
    ap.add_argument("--fuzz-worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--artifact", default=None, help=argparse.SUPPRESS)
    opts = ap.parse_args(argv)
    if opts.fuzz_worker:
        return fuzz_worker_main(opts.fuzz_worker, opts.seed, opts.first, opts.count, opts.artifact,
                                str(opts.keep) if opts.keep else None)
    opts.classes = [c.strip() for c in opts.classes.split(",") if c.strip()]
    unknown = [c for c in opts.classes if c not in CLASSES]
    if unknown or opts.jobs < 1:
        ap.error(f"unknown class(es) {', '.join(unknown)}; known: {', '.join(CLASSES)}" if unknown
                 else "--jobs must be at least 1")
    units = plan(opts)
    if opts.list:
        for cls, label, _, _ in units:
            print(f"{cls}: {label}")
        return 0
    rows = [r for c in opts.classes for r in ([c] + ([f"{c} (fuzz)"] if c in FUZZ_CLASSES else []))]
    start = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="hostile-inputs-"))
    fx = Fixtures(opts, root)
    results: list[tuple[int, list[Result]]] = []
    order = sorted(range(len(units)), key=lambda i: -units[i][3])  # the longest first
    pool = ThreadPoolExecutor(max_workers=opts.jobs)
    try:
        futures = {pool.submit(units[i][2], fx): i for i in order}
        for n, fut in enumerate(as_completed(futures), start=1):
            i = futures[fut]
            cls, label = units[i][:2]
            try:
                rs = fut.result()
            except Exception as e:  # noqa: BLE001 - never abort the run
                rs = [Result(cls, cls, label, "", "either", HARNESS, None, None, 0.0, "", f"{type(e).__name__}: {e}")]
            results.append((i, rs))
            summary = rs[0].outcome + (f", wrong: {rs[0].wrong}" if rs[0].wrong else "") if len(rs) == 1 else \
                ", ".join(f"{sum(r.outcome == o for r in rs)} {o}" for o in OUTCOMES if any(r.outcome == o for r in rs))
            print(f"[{n}/{len(units)}] {cls}: {label}: {summary[:160]} ({sum(r.seconds for r in rs):.1f} s)",
                  file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        _STOPPING.set()
        pool.shutdown(wait=False, cancel_futures=True)
        with _RUNNING_LOCK:
            for p in list(_RUNNING):
                os.killpg(p.pid, signal.SIGKILL)
        shutil.rmtree(root, ignore_errors=True)
        print("hostile_inputs: interrupted", file=sys.stderr)
        return 130
    pool.shutdown()
    shutil.rmtree(root, ignore_errors=True)
    flat = [r for _, rs in sorted(results, key=lambda t: t[0]) for r in rs]
    bad = not_as_expected(flat)
    print(table(flat, rows))
    print(f"\n{len(flat) - len(bad)} of {len(flat)} cases as expected; {time.monotonic() - start:.0f} s "
          f"with --jobs {opts.jobs}" + (" (--quick)" if opts.quick else f", --fuzz {opts.fuzz}, --seed {opts.seed}"))
    if bad:
        print("\nNot as expected:\n\n" + failures(flat))
    if opts.json:
        opts.json.write_text(json.dumps([asdict(r) for r in flat], indent=1) + "\n")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
