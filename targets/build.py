"""Build: a lowered Relax module to a TVM executable and a shared library on disk."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tvm
from tvm import relax

from edgec.ir import Graph

from .lower import lower_graph


@dataclass
class BuildResult:
    executable: Any  # tvm.relax.VMExecutable
    kernels: list[str]  # names of the TIR kernels in the built module, sorted
    relax_text: str  # the Relax module after the pipeline, for --dump


def relax_pipeline(target: Any, tuning_db: str | None = None, report: dict | None = None):
    """The Relax pipeline for the target: legalize, fuse, schedule, lower to the VM.

    CPU targets get edgec's own pipeline (NHWC convolutions with repacked weights and edgec's
    default schedules, see targets/schedules); other targets get TVM's default pipeline.
    `tuning_db` (CPU): a directory written by `edgec tune`; its records replace the default
    schedules of the kernels they match. `report` (CPU): filled with {kernel: rule}, the rule
    being "tuned" for kernels scheduled from the database."""
    if target.kind == "cpu":
        from .schedules import cpu_pipeline
        return cpu_pipeline(target.tvm_target(), target.vector_bits, tuning_db=tuning_db, report=report)
    return relax.get_default_pipeline(target.tvm_target())


def build_graph(graph: Graph, target: Any, tuning_db: str | None = None,
                report: dict | None = None) -> BuildResult:
    """Lower `graph` and compile it for `target` (`tuning_db`, `report`: see relax_pipeline)."""
    mod = lower_graph(graph, target)
    tvm_target = target.tvm_target()
    with tvm_target:
        mod = relax_pipeline(target, tuning_db, report)(mod)
    kernels = sorted(gv.name_hint for gv, f in mod.functions.items() if isinstance(f, tvm.tirx.PrimFunc))
    ex = relax.build(mod, tvm_target, relax_pipeline=None)
    return BuildResult(ex, kernels, "")


def export_library(result: BuildResult, target: Any, path: Path) -> None:
    """Write the compiled module as a shared library for the target's machine
    (aarch64 targets are cross-linked, see targets/crosslink.py)."""
    if getattr(target, "arch", "x86_64") == "aarch64":
        from .crosslink import shared_library_fcompile
        result.executable.export_library(str(path), fcompile=shared_library_fcompile())
        return
    result.executable.export_library(str(path))
