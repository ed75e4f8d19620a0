"""Build: a lowered Relax module to a TVM executable and a shared library on disk.

On CPU targets each kernel is its own LLVM module, generated (`build_graph`) and written as an
object file (`export_library`) on a pool of threads: LLVM releases the GIL and keeps no state
between modules, so kernels build side by side on every core, and the order of the objects (by
kernel name) does not depend on how many threads there were. The VM executable imports the
kernels' modules; the shared library links their objects, and the VM finds each kernel by name.
"""

from __future__ import annotations

import os
import tempfile
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import tvm
from tvm import relax

from edgec.ir import Graph

from .lower import lower_graph


@dataclass
class BuildResult:
    executable: Any  # tvm.relax.VMExecutable
    kernels: list[str]  # names of the TIR kernels in the built module, sorted
    relax_text: str  # the Relax module after the pipeline, for --dump
    libraries: list = field(default_factory=list)  # CPU: one LLVM module per kernel, by name


def default_jobs() -> int:
    """The threads that generate code: the cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _map(fn: Callable, items: list, jobs: int | None, progress=None, unit: str = "") -> list:
    """[fn(item) for item in items] on `jobs` threads (results in order), calling
    `progress(unit, done, len(items))` after each."""
    lock = threading.Lock()
    count = 0

    def one(item):
        nonlocal count
        result = fn(item)
        if progress is not None:
            with lock:
                count += 1
                progress(unit, count, len(items))
        return result
    jobs = max(1, min(jobs or default_jobs(), len(items)))
    if jobs == 1:
        return [one(item) for item in items]
    pool = ThreadPoolExecutor(jobs)
    try:
        return list(pool.map(one, items))
    finally:  # on an error or a Ctrl-C, the items not started are dropped
        pool.shutdown(wait=True, cancel_futures=True)


def relax_pipeline(target: Any, tuning_db: str | None = None, report: dict | None = None, progress=None):
    """The Relax pipeline for the target: legalize, fuse, schedule, lower to the VM.

    CPU targets get edgec's own pipeline (NHWC convolutions with repacked weights and edgec's
    default schedules, see targets/schedules); CUDA targets the GPU pipeline
    (targets/schedules/gpu.py: dlight rules, every kernel scheduled or the build refused).
    `tuning_db` (CPU): a directory written by `edgec tune`; its records replace the default
    schedules of the kernels they match. `report` (CPU): filled with {kernel: rule}, the rule
    being "tuned" for kernels scheduled from the database. `progress`: see build_graph."""
    if target.kind == "cpu":
        from .schedules import cpu_pipeline
        return cpu_pipeline(target, tuning_db=tuning_db, report=report, progress=progress)
    if target.kind == "cuda":
        from .schedules.gpu import gpu_pipeline
        return gpu_pipeline(target, report=report, progress=progress)
    raise ValueError(f"target kind {target.kind!r}")


def build_graph(graph: Graph, target: Any, tuning_db: str | None = None,
                report: dict | None = None, jobs: int | None = None,
                progress: Callable[[str, int, int], None] | None = None) -> BuildResult:
    """Lower `graph` and compile it for `target` (`tuning_db`, `report`: see relax_pipeline).
    CPU kernels are generated on `jobs` threads (default: every core). `progress(unit, done,
    total)` is called as CPU kernels are scheduled ("kernels scheduled") and built ("kernels
    built"), from any thread."""
    mod = lower_graph(graph, target)
    tvm_target = target.tvm_target()
    with tvm_target:
        mod = relax_pipeline(target, tuning_db, report, progress)(mod)
    kernels = sorted(gv.name_hint for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc))
    if target.kind == "cuda":  # the CUDA kernels are compiled to SASS as the module is built
        from .cuda import compiling_for
        with compiling_for(target), tvm_target:
            return BuildResult(relax.build(mod, tvm_target, relax_pipeline=None), kernels, "")
    from tvm.relax import _ffi_api
    from tvm.relax.vm_build import VMExecutable, _vmcodegen
    builder = relax.ExecBuilder()
    mod = _vmcodegen(builder, mod, "bytecode")
    funcs = {gv.name_hint: (gv, f) for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc)}

    def build(name: str):
        gv, func = funcs[name]
        return tvm.tirx.build(tvm.IRModule({gv: func}, attrs=mod.attrs), target=tvm_target)

    libraries = _map(build, kernels, jobs, progress, "kernels built")
    lib = libraries[0] if libraries else None
    for other in libraries[1:]:
        lib.import_module(other)
    executable = VMExecutable(_ffi_api.VMLink(builder, tvm_target, lib, [], {}))
    return BuildResult(executable, kernels, "", libraries)


def export_library(result: BuildResult, target: Any, path: Path, jobs: int | None = None,
                   progress: Callable[[str, int, int], None] | None = None) -> dict[str, int]:
    """Write the compiled module as a shared library for the target's machine
    (aarch64 targets are cross-linked, see targets/crosslink.py). CPU kernels' objects are
    written on `jobs` threads (default: every core); `progress("kernels written", done, total)`.
    Returns {kernel: bytes of machine code in its object} (CPU; {} otherwise). A CUDA library is
    checked once written (targets/cubin.py `check_library`): an EdgecError when it holds no SASS,
    SASS for another SM, PTX or CUDA source, or a kernel without a device kernel."""
    if getattr(target, "arch", "x86_64") == "aarch64":
        from .crosslink import shared_library_fcompile
        fcompile = shared_library_fcompile()
    else:
        from tvm.support import cc
        fcompile = cc.create_shared
    if not result.libraries:
        result.executable.export_library(str(path), fcompile=fcompile)
        if target.kind == "cuda":  # SASS for the target's SM only, a device kernel for every kernel
            from .cubin import check_library
            check_library(path, target, result.kernels)
        return {}
    # As tvm.runtime.Module.export_library does for LLVM modules, with the objects written in
    # parallel: one object per kernel, then the executable and its import tree packed in one more.
    from tvm.runtime import _ffi_api
    with tempfile.TemporaryDirectory(prefix="edgec-link-") as work:
        def write(item):
            i, lib = item
            obj = os.path.join(work, f"lib{i}.o")
            lib.write_to_file(obj)
            return obj

        objects = _map(write, list(enumerate(result.libraries)), jobs, progress, "kernels written")
        from .crosslink import code_bytes
        sizes = {name: code_bytes(obj) for name, obj in zip(result.kernels, objects)}
        llvm_target = result.libraries[0].get_function("_get_target_string")()
        packed = _ffi_api.ModulePackImportsToLLVM(result.executable.mod, False, llvm_target, "")
        objects.append(os.path.join(work, "devc.o"))
        packed.write_to_file(objects[-1])
        fcompile(str(path), objects)
    return sizes
