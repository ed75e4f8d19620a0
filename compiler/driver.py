"""The compile driver and artifacts.

`compile(model, target, output)` imports, optimizes, lowers and builds, then writes an artifact
directory atomically (a failed compile leaves nothing behind):

    DIR/model.so        the compiled library
    DIR/manifest.json   inputs and outputs, target, pipeline, source sha256, versions, and the
                        kernels: for each, its node in model.eir, ONNX origins and schedule rule
    DIR/model.eir       the final IR

`load(DIR).run({name: array})` runs it (an ARM artifact under qemu, see targets/runners.py);
`output_files(names)` gives the .npy file name of each output.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import numpy as np

from . import interrupt
from .errors import EdgecError
from .files import make_dirs, os_error, remove_dirs
from .ir import DTYPES, Graph, TensorType
from .passmanager import Instruments, PassManager, format_pipeline, resolve_pipeline
from .progress import Progress

LIBRARY, MANIFEST, FINAL_IR = "model.so", "manifest.json", "model.eir"
ARTIFACT_FORMAT = 2  # 2: the manifest lists the artifact's files ("files")


def _artifact_files(path: Path) -> set[str] | None:
    """The files an edgec artifact at `path` says it holds (its manifest's "files"), or None
    when `path` is not verifiably an artifact (no manifest, not JSON, another format)."""
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(manifest, dict):
        return None
    files = manifest.get("files")
    if manifest.get("format") != ARTIFACT_FORMAT or not isinstance(files, list) or MANIFEST not in files \
            or not all(isinstance(f, str) for f in files):
        return None
    return set(files)


def check_output_dir(out_dir: Path, force: bool = False) -> None:
    """Refuse an output directory whose replacement would lose anything: `-o` may name a new
    path, an empty directory, or an edgec artifact that holds exactly the files its manifest
    lists; `force` allows any other directory. Never the current directory or one above it."""
    if not out_dir.exists() and not out_dir.is_symlink():
        return
    if out_dir.is_symlink() or not out_dir.is_dir():
        raise EdgecError(f"output {out_dir} exists and is not a directory; choose another -o")
    here = Path.cwd().resolve()
    if out_dir.resolve() == here or out_dir.resolve() in here.parents:
        raise EdgecError(f"output {out_dir} is the current directory or one above it; "
                         "name a new directory for the artifact, such as -o out/model")
    if force:
        return
    held = {str(f.relative_to(out_dir)) for f in out_dir.rglob("*") if f.is_file() or f.is_symlink()}
    if not held and not any(out_dir.iterdir()):
        return
    listed = _artifact_files(out_dir)
    if listed is None:
        raise EdgecError(f"output {out_dir} exists and is not an edgec artifact; choose another -o, "
                         "or add --force to replace the directory and everything in it")
    extra = sorted(held - listed) + sorted(str(d.relative_to(out_dir)) + "/" for d in out_dir.rglob("*")
                                           if d.is_dir() and not any(d.iterdir()))
    if extra:
        shown = ", ".join(extra[:5]) + (", ..." if len(extra) > 5 else "")
        raise EdgecError(f"output {out_dir} is an edgec artifact but also holds files it did not write "
                         f"({shown}); move them away, choose another -o, or add --force to replace it all")


def edgec_version() -> str:
    from . import __version__
    return __version__


def _io(names: list[str], types: list[TensorType]) -> list[dict[str, Any]]:
    return [{"name": n, "dtype": t.dtype, "shape": list(t.shape)} for n, t in zip(names, types)]


@dataclass
class CompileResult:
    graph: Graph  # the optimized graph
    pass_manager: PassManager
    kernels: list[str]
    artifact: "Artifact | None"
    schedules: dict[str, str]  # kernel -> schedule rule ("tuned" when from the tuning database)
    built: Any = None  # edgec.targets.build.BuildResult: the executable, in this process


def load_model(model: Any, input_shapes: dict[str, tuple[int, ...]] | None = None) -> tuple[Graph, str]:
    """The graph of `model` and the sha256 of its source: an ONNX file or ModelProto (imported),
    an `.eir` IR file (what `edgec opt -o` and `edgec quantize -o` write) or a Graph (its full IR
    text is hashed)."""
    import onnx
    from .onnx_import import import_onnx
    from .text import parse_ir, print_ir
    if isinstance(model, Graph):
        return model, hashlib.sha256(print_ir(model, full_constants=True).encode()).hexdigest()
    if isinstance(model, onnx.ModelProto):
        return import_onnx(model, input_shapes), hashlib.sha256(model.SerializeToString()).hexdigest()
    path = Path(model)
    if path.suffix == ".eir":
        if not path.is_file():
            raise EdgecError(f"{path}: no such IR file")
        try:
            data = path.read_bytes()
            return parse_ir(data.decode("utf-8")), hashlib.sha256(data).hexdigest()
        except OSError as e:
            raise EdgecError(f"{path}: cannot read the IR file ({e.strerror})") from None
        except UnicodeDecodeError as e:
            raise EdgecError(f"{path}: not edgec IR text: byte {e.start} is not UTF-8 ({e.reason}); "
                             "an .eir file is what `edgec opt -o FILE.eir` writes") from None
        except EdgecError as e:
            raise type(e)(f"{path}: {e}") from None
    if not path.is_file():
        raise EdgecError(f"{path}: no such model file")
    return import_onnx(path, input_shapes), hashlib.sha256(path.read_bytes()).hexdigest()


def _write_artifact(tmp: Path, built, tgt, graph: Graph, pm: PassManager, level: int | None, sha: str,
                    bundle: bool, schedules: dict[str, str | None], jobs: int | None = None,
                    progress=None, name: str | None = None) -> None:
    """The artifact's files, into the temporary directory `tmp` (to be renamed `name`)."""
    import tvm
    from edgec.targets.build import export_library
    from edgec.targets.lower import kernel_table
    from .text import print_ir
    code = export_library(built, tgt, tmp / LIBRARY, jobs, progress)
    (tmp / FINAL_IR).write_text(print_ir(graph))
    manifest = {
        "format": ARTIFACT_FORMAT,
        "inputs": _io([v.name for v in graph.inputs], [v.type for v in graph.inputs]),
        "outputs": _io(graph.output_names, [v.type for v in graph.outputs]),
        "target": tgt.name, "arch": tgt.arch, "tvm_target": tgt.tvm,
        "pipeline": format_pipeline(pm.items),
        "level": level,
        "source_sha256": sha,
        "library": LIBRARY,
        **kernel_table(graph, built.kernels, schedules, code),
        "edgec_version": edgec_version(), "tvm_version": tvm.__version__,
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    if bundle:
        from edgec.targets.bundle import write_bundle
        write_bundle(tmp, name=name)
    manifest["files"] = sorted(str(f.relative_to(tmp)) for f in tmp.rglob("*") if f.is_file())
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")


COMPILE_PROGRESS_AFTER_S = 2.0


class _CompileProgress:
    """`progress(unit, done, total)` for build_graph and export_library: one bar per stage
    ("kernels scheduled", "kernels built", "kernels written") on a terminal, after 2 s."""

    def __init__(self, stream: TextIO):
        self.stream = stream
        self.start = time.monotonic()
        self.bar: Progress | None = None

    def __call__(self, unit: str, done: int, total: int) -> None:
        if self.bar is None or self.bar.unit != unit:
            drawn = self.bar is not None and self.bar.drawn  # the new bar redraws the same line
            self.bar = Progress(total, unit, self.stream, since=self.start, after=COMPILE_PROGRESS_AFTER_S,
                                lines=False)
            self.bar.drawn = drawn
        self.bar.update(done)

    def clear(self) -> None:
        if self.bar is not None:
            self.bar.clear()


def compile(model: Any, target: str = "host", output: str | Path | None = None, level: int = 2,
            passes: str | None = None, input_shapes: dict[str, tuple[int, ...]] | None = None,
            instruments: Instruments | None = None, bundle: bool = False,
            tuning_db: str | Path | None = None, force: bool = False, jobs: int | None = None,
            progress: TextIO | None = None, precision: str | None = None) -> CompileResult:
    """Import `model` (see `load_model`: ONNX, .eir or Graph), optimize, build for `target`, write `output`.

    `bundle` (ARM and Jetson targets): also put the aarch64 TVM runtime (for Jetson with CUDA) and
    the `edgec-run` runner in the artifact, so that the directory runs on a board with nothing else
    installed (targets/bundle.py).
    `tuning_db`: a directory written by `edgec tune`; matching kernels use its schedules.
    `output` may name an existing directory only if it is empty or an edgec artifact holding
    nothing but its own files (see `check_output_dir`); `force` replaces any other directory.
    `jobs`: threads that generate the kernels' code (default: every core). `progress`: a stream
    (stderr) for a bar of the kernels scheduled, built and written, drawn only on a terminal and
    only once the compile has taken 2 s (`COMPILE_PROGRESS_AFTER_S`).
    `precision` "fp16" or "mixed" (GPU targets): float16 computation, decided in the IR by the
    pass convert-precision, which the pipeline of `level` then holds (see `resolve_pipeline`).
    TVM is loaded only after the passes, so that a bad model or pipeline fails at once."""
    from edgec.targets import get_target

    tgt = get_target(target, detect=False)
    pm = PassManager(resolve_pipeline(target, level, passes, precision), instruments)
    out_dir = Path(output) if output is not None else None
    if out_dir is not None:
        check_output_dir(out_dir, force)
    if bundle:
        from edgec.targets.bundle import check_bundle_target
        if out_dir is None:
            raise EdgecError("--bundle needs an output directory (-o DIR)")
        check_bundle_target(tgt)
    if tuning_db is not None and not Path(tuning_db).is_dir():
        raise EdgecError(f"--tuning-db {tuning_db}: no such directory; make one with `edgec tune`")
    made, tmp = [], None  # the artifact's parent directories this call made, and its temporary directory
    bar = _CompileProgress(progress) if progress is not None else None
    try:
        if out_dir is not None:  # first, so that an -o that cannot be written fails before the compile
            try:
                made = make_dirs(out_dir.parent)
                with interrupt.deferred():
                    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
            except OSError as e:
                raise os_error("compile -o", out_dir, e) from None
        graph, sha = load_model(model, input_shapes)
        result = build(graph, target, pass_manager=pm, tuning_db=tuning_db,
                       jobs=jobs, progress=bar)
        graph, built, schedule_report, tgt = result.graph, result.built, result.schedules, get_target(target)
        interrupt.check()  # TVM may have turned a Ctrl-C into a failure it worked around
        artifact = None
        if tmp is not None:
            try:
                _write_artifact(tmp, built, tgt, graph, pm, level if passes is None else None, sha, bundle,
                                schedule_report, jobs, bar, name=out_dir.name)
            except OSError as e:
                if e.filename is not None and not str(e.filename).startswith(str(tmp)):
                    raise  # not the artifact's own file: a tool's
                raise os_error("compile -o", out_dir, e) from None
            interrupt.check()
            with interrupt.deferred():  # the old artifact goes only together with the new one's arrival
                if out_dir.exists():
                    check_output_dir(out_dir, force)  # again: it may have changed while we compiled
                    shutil.rmtree(out_dir)
                os.replace(tmp, out_dir)
                made, tmp = [], None
            artifact = Artifact(out_dir)
    finally:
        if bar is not None:
            bar.clear()
        if tmp is not None:
            with interrupt.deferred():
                shutil.rmtree(tmp, ignore_errors=True)
        remove_dirs(made)
    return CompileResult(graph, pm, built.kernels, artifact, schedule_report, built)


def build(graph: Graph, target: str = "host", level: int | None = 2, passes: str | None = None, *,
          pass_manager: PassManager | None = None, tuning_db: str | Path | None = None,
          jobs: int | None = None, progress=None, precision: str | None = None) -> CompileResult:
    """The one compile path: optimize `graph` with the pipeline of `target` at `level` (or the
    explicit `passes`; see `resolve_pipeline`), or with `pass_manager`, then lower every
    computing node to one kernel, schedule the kernels (records of `tuning_db` first) and
    generate their code. `compile` adds the artifact; the ONNX backend runs `built.executable` in
    this process; `verify` and the benchmark go through `compile`; `edgec tune` tunes the kernels
    of the same optimized graph. `jobs`, `progress`: see `targets.build.build_graph`; `precision`:
    see `compile`."""
    from edgec.targets import get_target
    from edgec.targets.build import build_graph
    pm = pass_manager or PassManager(resolve_pipeline(target, level, passes, precision))
    graph = pm.run(graph)
    schedules: dict[str, str] = {}
    built = build_graph(graph, get_target(target), tuning_db=str(tuning_db) if tuning_db else None,
                        report=schedules, jobs=jobs, progress=progress)
    return CompileResult(graph, pm, built.kernels, None, schedules, built)


ARCHES = ("x86_64", "aarch64")


def _manifest_problem(manifest: Any) -> str | None:
    """What is wrong with a parsed manifest.json, naming the key, or None. Checked: an object
    with "target", "arch" (x86_64 or aarch64) and "library" (a file name in the directory)
    strings, and "inputs" and "outputs" lists of {"name": str, "dtype": an edgec dtype, "shape":
    [non-negative ints]}."""
    if not isinstance(manifest, dict):
        return "it is not a JSON object"
    for key, kind in (("target", str), ("arch", str), ("library", str), ("inputs", list), ("outputs", list)):
        if key not in manifest:
            return f'it has no "{key}"'
        if not isinstance(manifest[key], kind):
            return f'"{key}" is {json.dumps(manifest[key])[:60]}, not a {"string" if kind is str else "list"}'
    if manifest["arch"] not in ARCHES:
        return f'"arch" is "{manifest["arch"]}", not one of {", ".join(ARCHES)}'
    library = manifest["library"]
    if library in ("", ".", "..") or Path(library).name != library:
        return f'"library" is "{library}", not a file name in the artifact directory'
    for key in ("inputs", "outputs"):
        for i, d in enumerate(manifest[key]):
            where = f'"{key}"[{i}]'
            if not isinstance(d, dict):
                return f"{where} is not an object"
            if not isinstance(d.get("name"), str):
                return f'{where} has no "name" string'
            if not isinstance(d.get("dtype"), str) or d["dtype"] not in DTYPES:
                return f'{where}["dtype"] is {json.dumps(d.get("dtype"))}, not one of {", ".join(DTYPES)}'
            shape = d.get("shape")
            if not isinstance(shape, list) or not all(type(n) is int and n >= 0 for n in shape):
                return f'{where}["shape"] is {json.dumps(shape)[:60]}, not a list of non-negative integers'
    return None


class Artifact:
    """A compiled artifact directory, checked when opened: the manifest (`_manifest_problem`)
    and the library (an ELF shared library for the manifest's arch whose segments lie inside the
    file, see `elf_library_problem`); `threads` is capped to the cores here (`thread_count`)."""

    def __init__(self, path: str | Path, threads: int | None = None):
        from edgec.targets.crosslink import elf_library_problem
        self.path = Path(path)
        # worker threads of the compiled module, host and ARM alike (None: all cores)
        self.threads = None if threads is None else thread_count(threads)
        mf = self.path / MANIFEST
        if not mf.is_file():
            raise EdgecError(f"{self.path} is not an edgec artifact (no {MANIFEST}); "
                             "make one with `edgec compile MODEL -o DIR`")
        recompile = f"compile the model again with `edgec compile MODEL -o {self.path}`"
        try:
            self.manifest = json.loads(mf.read_text())
        except (OSError, ValueError) as e:
            raise EdgecError(f"{mf} cannot be read as JSON ({e}); {recompile}") from None
        problem = _manifest_problem(self.manifest)
        if problem:
            raise EdgecError(f"{mf} is damaged or from another edgec version: {problem}; {recompile}")
        self.library = self.path / self.manifest["library"]
        if not self.library.is_file():
            raise EdgecError(f"{self.path}: the artifact has no {self.manifest['library']}; {recompile}")
        try:
            problem = elf_library_problem(self.library, self.manifest["arch"])
        except OSError as e:
            problem = f"cannot be read ({e.strerror})"
        if problem:
            raise EdgecError(f"{self.library} {problem} (the manifest says target {self.manifest['target']}, "
                             f"{self.manifest['arch']}); {recompile}")
        self.inputs = [(d["name"], TensorType(d["dtype"], tuple(d["shape"]))) for d in self.manifest["inputs"]]
        self.outputs = [(d["name"], TensorType(d["dtype"], tuple(d["shape"]))) for d in self.manifest["outputs"]]
        self._vm = None

    def check_inputs(self, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Inputs in order, checked by name, shape and dtype."""
        from .interpreter import check_feeds
        return list(check_feeds(self.inputs, feeds).values())

    @property
    def gpu_problem(self) -> str | None:
        """Why this artifact cannot run on this machine's CPU when its kernels are a GPU's
        (None for a CPU artifact)."""
        from edgec.targets.bundle import is_cuda_artifact
        if not is_cuda_artifact(self.manifest):
            return None
        return (f"{self.path} is built for the GPU of {self.manifest['target']} "
                f"({self.manifest['tvm_target'].get('arch')}), which qemu cannot emulate: it runs "
                f"on the board. Build it with --bundle, copy the directory to the board and run its edgec-run "
                f"there (-d cuda); on this machine, `edgec verify MODEL --target {self.manifest['target']}` checks "
                "its kernels on the CPU")

    def run(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.gpu_problem:
            raise EdgecError(self.gpu_problem)
        arrays = self.check_inputs(feeds)
        if self.manifest["arch"] != "x86_64" or self.manifest["target"] != "host":
            from edgec.targets import runners
            return runners.run_artifact(self, arrays)
        import tvm
        from tvm import relax
        if self._vm is None:
            lib = tvm.runtime.load_module(str(self.library))
            self._vm = relax.VirtualMachine(lib, tvm.cpu())
        set_threads(self.threads)
        result = self._vm["main"](*[tvm.runtime.tensor(a) for a in arrays])
        return {name: r.numpy() for (name, _), r in zip(self.outputs, result)}


_SAFE_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-")
MAX_STEM = 200  # bytes of a name kept in its file name


def output_files(names: list[str]) -> list[str]:
    """The .npy file name of each output, in order, unique and deterministic: the name's first
    MAX_STEM UTF-8 bytes with every byte but ASCII letters, digits, '_', '.' and '-' turned into
    '_' ('output' if that leaves nothing), then '.npy'; a file name already taken by an earlier
    output gets '_2', '_3', ... before '.npy'. No name can reach outside the directory.
    edgec-run (targets/runtime/edgec_run.cc, OutputFiles) applies the same rule."""
    files: list[str] = []
    for name in names:
        raw = name.encode("utf-8", "surrogatepass")[:MAX_STEM]
        stem = bytes(b if b in _SAFE_BYTES else ord("_") for b in raw).decode("ascii") or "output"
        file, k = f"{stem}.npy", 2
        while file in files:
            file, k = f"{stem}_{k}.npy", k + 1
        files.append(file)
    return files


def load(path: str | Path, threads: int | None = None) -> Artifact:
    return Artifact(path, threads)


_pool_threads: dict[int, tuple] = {}  # Python thread id -> (threads asked for, worker count given)


def thread_count(n: int | None) -> int:
    """The worker count for `threads` n: None means one per core this process may run on, more
    than that is capped to it; an EdgecError below 1."""
    if n is not None and n < 1:
        raise EdgecError(f"the number of threads must be at least 1, not {n}")
    cores = len(os.sched_getaffinity(0))
    return cores if n is None else min(n, cores)


def set_threads(n: int | None) -> int:
    """Give TVM's CPU thread pool of the calling thread `thread_count(n)` workers and return the
    count; a no-op when `n` is what the last call asked for.

    TVM's own default on x86 is half the cores (it assumes hyper-threads), and
    `config_threadpool(mode, n)` cannot go above that default; naming the cores the workers may
    share (mode -3) lifts the cap, and the pool can be resized both ways afterwards.
    """
    last = _pool_threads.get(threading.get_ident())
    if last is not None and last[0] == n:
        return last[1]
    import tvm
    count = thread_count(n)
    cpus = [str(c) for c in sorted(os.sched_getaffinity(0))]
    tvm.get_global_func("runtime.config_threadpool")(-3, count, cpus)
    _pool_threads[threading.get_ident()] = (n, count)
    return count
