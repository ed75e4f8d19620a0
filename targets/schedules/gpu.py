"""GPU schedules: every kernel of a CUDA target scheduled by a dlight rule, or the build refused.

`gpu_pipeline(target)` turns a module from `lower_graph` (one Primitive Relax function per IR
node) into a VM module for a CUDA target:

1. `front_passes` (shared with the CPU pipeline): legalize, fold, lift constants, FuseTIR, so
   that each IR node is one PrimFunc named after it, as on the CPU;
2. `ApplyGPUSchedules`: dlight's GPU rules, tried in order (Matmul, GEMV, Reduction,
   GeneralReduction, Fallback) per kernel. Where TVM's ApplyDefaultSchedule stops at a rule that
   raises (GEMV asserts on a 3x3 depthwise conv with a 1x1 output), the next rule is tried. GEMV
   is not used for a kernel whose output has a number of elements that is not a multiple of 16:
   TVM 0.27's cross-thread reduction then stores past the end of the output (measured, DESIGN.md
   section 4), so the Reduction rules schedule it instead;
3. a kernel that no rule schedules is refused (`unscheduled_error`, naming the node): TVM would
   silently compile it as host code reading device pointers. The `recurrence` of LSTM/GRU/RNN
   (a loop nest written by its lowering) is one: it has no GPU form yet;
4. TVM's CUDA dataflow lowering and VM finalization (a reshape of contiguous data becomes a view).

`schedule_gpu_func(func, tvm_target)` schedules one PrimFunc; `gpu_pipeline(target,
schedule=False)` stops after step 1, with the kernels unscheduled (for comparisons).
"""

from __future__ import annotations

import tvm
from tvm import relax, tirx

from edgec import interrupt
from edgec.errors import EdgecError

SCHEDULED = "tirx.is_scheduled"
GEMV_ROWS_MULTIPLE = 16


def _rules():
    from tvm.s_tir import dlight as dl
    return [("Matmul", dl.gpu.Matmul()), ("GEMV", dl.gpu.GEMV()), ("Reduction", dl.gpu.Reduction()),
            ("GeneralReduction", dl.gpu.GeneralReduction()), ("Fallback", dl.gpu.Fallback())]


def _output_elements(func: tirx.PrimFunc) -> int | None:
    """Elements of the kernel's last buffer parameter (its output), None if not static."""
    n = 1
    for d in getattr(func.params[-1], "shape", [None]):
        if not isinstance(d, tirx.IntImm):
            return None
        n *= int(d)
    return n


def schedule_gpu_func(func: tirx.PrimFunc, tvm_target) -> tuple[tirx.PrimFunc | None, str]:
    """(the scheduled func, "dlight.<Rule>") or (None, why no rule applied). A rule that raises
    or that does not apply is noted and the next one tried."""
    notes = []
    for name, rule in _rules():
        if name == "GEMV":
            rows = _output_elements(func)
            if rows is None or rows % GEMV_ROWS_MULTIPLE:
                continue
        try:
            sch = rule.apply(func, tvm_target, False)
        except Exception as e:  # noqa: BLE001 - dlight asserts; try the next rule
            notes.append(f"{name} raised {type(e).__name__}")
            continue
        if sch is None:
            continue
        sch = sch[0] if isinstance(sch, list) else sch
        rule_name = f"dlight.{name}" + (f" ({', '.join(notes)})" if notes else "")
        return sch.mod["main"].with_attr(SCHEDULED, True), rule_name
    return None, "; ".join(notes) or "no dlight rule applies"


def _is_scheduled(func: tirx.PrimFunc) -> bool:
    return func.attrs is not None and SCHEDULED in func.attrs and bool(int(func.attrs[SCHEDULED]))


@tvm.transform.module_pass(opt_level=0, name="edgec.ApplyGPUSchedules")
class ApplyGPUSchedules:
    """Schedule every PrimFunc with dlight's rules. `self.applied`: {kernel: rule};
    `self.failed`: [(kernel, why)] for those no rule schedules (left as they are)."""

    def __init__(self, target, progress=None):
        self.target = target
        self.progress = progress
        self.applied: dict[str, str | None] = {}
        self.failed: list[tuple[str, str]] = []

    def transform_module(self, mod: tvm.IRModule, _ctx) -> tvm.IRModule:
        tvm_target = self.target.tvm_target()
        funcs = [(gv, f) for gv, f in mod.functions_items() if isinstance(f, tirx.PrimFunc)]
        for done, (gv, func) in enumerate(funcs, 1):
            interrupt.check()
            if self.progress is not None:
                self.progress("kernels scheduled", done, len(funcs))
            if _is_scheduled(func):
                self.applied[gv.name_hint] = "prescheduled"
                continue
            new, rule = schedule_gpu_func(func, tvm_target)
            if new is None:
                self.failed.append((gv.name_hint, rule))
                continue
            mod[gv] = new
            self.applied[gv.name_hint] = rule
        return mod


def unscheduled_error(target, failed: list[tuple[str, str]]) -> EdgecError:
    """The error for kernels no GPU rule schedules (kernels are named after their IR nodes,
    k<N>_<op> for node %N)."""
    listed = ", ".join(f"{name} (node %{name[1:].split('_')[0]}: {why})" for name, why in failed)
    return EdgecError(f"{target.name}: edgec has no GPU schedule for {len(failed)} kernel(s): {listed}. TVM would "
                      "compile them as host code reading GPU memory, so the build stops. Compile this model for a "
                      "CPU target (--target arm-a78, ...); see `edgec inspect MODEL` for its ops")


def gpu_pipeline(target, schedule: bool = True, report: dict | None = None, progress=None):
    """The Relax pipeline for a CUDA target: a kernel per node, scheduled by dlight, lowered to
    the VM. `report` receives {kernel: rule}; `progress`: as for cpu_pipeline."""
    from tvm.relax.backend.cuda import pipeline as cuda
    from . import front_passes
    tvm_target = target.tvm_target()

    def pipeline(mod: tvm.IRModule) -> tvm.IRModule:
        # a plain function, not a TVM pass: the EdgecError below keeps its type
        with tvm_target:
            mod = tvm.transform.Sequential(front_passes(tvm_target))(mod)
            if not schedule:
                return mod
            apply = ApplyGPUSchedules(target, progress)
            mod = apply(mod)
            if report is not None:
                report.update(apply.applied)
            if apply.failed:
                raise unscheduled_error(target, apply.failed)
            passes = [*cuda.dataflow_lower_passes(tvm_target), relax.transform.DeadCodeElimination(),
                      *cuda.finalize_passes(tvm_target)]
            return tvm.transform.Sequential(passes)(mod)

    return pipeline
