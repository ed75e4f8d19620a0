"""MetaSchedule tuning of a model's kernels into a reusable database, and its use at compile time.

    db = tune(relax_mod, target, vector_bits, "tuning_db", trials=2000)     # resumable
    pipeline = cpu_pipeline(tvm_target, vector_bits, tuning_db="tuning_db")  # tuned + default rules

The tasks are the kernels of edgec's CPU pipeline up to fusion (the same NHWC layouts, so the
records match what `cpu_pipeline` compiles); records live in a MetaSchedule JSONDatabase in the
given directory, keyed by the target and the kernel's structural hash. Tuning again with the same
directory adds trials to the records already there. At compile time the database's best schedule
is applied to each kernel it has; the others get edgec's default rules.

The builder and the runner work in this process: MetaSchedule's default ones start worker
processes that import `tvm.s_tir.tensor_intrin` for 38 s or more and time out. The cost model is
the random one unless xgboost is installed.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

import tvm
from tvm.s_tir import meta_schedule as ms
from tvm.s_tir.meta_schedule.builder import BuilderResult, PyBuilder
from tvm.s_tir.meta_schedule.runner import EvaluatorConfig, PyRunner, PyRunnerFuture, RunnerResult
from tvm.s_tir.meta_schedule.runner.local_runner import default_alloc_argument, default_run_evaluator
from tvm.ir.utils import derived_object

_BUILT: dict[str, object] = {}  # in-process "artifacts": key -> runtime module


@derived_object
class InProcessBuilder(PyBuilder):
    """Builds candidate kernels in this process (no worker start-up)."""

    def build(self, build_inputs):  # noqa: D102
        from tvm.driver import build as tvm_build
        from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock
        results = []
        for inp in build_inputs:
            try:
                mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(inp.mod)
                key = f"inprocess:{len(_BUILT)}"
                _BUILT[key] = tvm_build(mod, target=inp.target)
                results.append(BuilderResult(key, None))
            except Exception as e:  # noqa: BLE001 - a candidate that fails to build is skipped
                results.append(BuilderResult(None, f"{type(e).__name__}: {e}"))
        return results


@derived_object
class _Done(PyRunnerFuture):
    def __init__(self, result: RunnerResult):
        super().__init__()
        self._result = result

    def done(self) -> bool:
        return True

    def result(self) -> RunnerResult:
        return self._result


@derived_object
class InProcessRunner(PyRunner):
    """Times built candidates on this machine's CPU, in this process."""

    def __init__(self, number: int = 3, repeat: int = 1, min_repeat_ms: int = 40):
        super().__init__()
        self.config = EvaluatorConfig(number=number, repeat=repeat, min_repeat_ms=min_repeat_ms,
                                      enable_cpu_cache_flush=False)

    def run(self, runner_inputs):  # noqa: D102
        futures = []
        for inp in runner_inputs:
            try:
                rt_mod = _BUILT.pop(inp.artifact_path)
                device = tvm.cpu()
                args = default_alloc_argument(device, [a.as_json() for a in inp.args_info], 1)
                costs = default_run_evaluator(rt_mod, device, self.config, args)
                futures.append(_Done(RunnerResult([float(c) for c in costs], None)))
            except Exception as e:  # noqa: BLE001 - a candidate that fails to run is skipped
                futures.append(_Done(RunnerResult(None, f"{type(e).__name__}: {e}")))
        return futures


def fused_module(mod: tvm.IRModule, tvm_target: tvm.target.Target) -> tvm.IRModule:
    """edgec's CPU pipeline up to fusion: the kernels that get scheduled (and tuned)."""
    from . import front_passes
    with tvm_target:
        return tvm.transform.Sequential(front_passes(tvm_target))(mod)


def database(db_dir: str | Path) -> ms.database.JSONDatabase:
    """The JSON database in `db_dir` (created if missing)."""
    d = Path(db_dir)
    d.mkdir(parents=True, exist_ok=True)
    return ms.database.JSONDatabase(path_workload=str(d / "database_workload.json"),
                                    path_tuning_record=str(d / "database_tuning_record.json"),
                                    allow_missing=True)


def tune(mod: tvm.IRModule, tvm_target: tvm.target.Target, db_dir: str | Path, trials: int,
         progress: Callable[[str], None] | None = None) -> ms.database.JSONDatabase:
    """Tune the kernels of the lowered Relax module `mod` with up to `trials` measurements in
    all, adding the records to the database in `db_dir`. `progress` receives one line per
    finished task, with the trials done and an estimate of the time left."""
    fused = fused_module(mod, tvm_target)
    # MetaSchedule wants the core count in the target.
    config = {k: v for k, v in tvm_target.export().items() if v is not None}
    config["num-cores"] = os.cpu_count() or 1
    tune_target = tvm.target.Target(config)
    tasks = ms.relax_integration.extract_tasks(fused, tune_target)
    if not tasks:
        return database(db_dir)
    work_dir = str(Path(db_dir) / "logs")
    os.makedirs(work_dir, exist_ok=True)
    try:
        import xgboost  # noqa: F401
        cost_model = "xgb"
    except ImportError:
        cost_model = "random"
    db = database(db_dir)
    start = time.time()
    per_task = max(1, trials // len(tasks))
    done = 0
    for i, task in enumerate(tasks):
        contexts, weights = ms.relax_integration.extracted_tasks_to_tune_contexts([task], work_dir=work_dir)
        ms.tune.tune_tasks(tasks=contexts, task_weights=weights, work_dir=work_dir,
                           max_trials_global=per_task, max_trials_per_task=per_task,
                           num_trials_per_iter=min(64, per_task), builder=InProcessBuilder(),
                           runner=InProcessRunner(), database=db, cost_model=cost_model,
                           measure_callbacks=[ms.measure_callback.AddToDatabase(),
                                              ms.measure_callback.UpdateCostModel()],
                           task_scheduler="round-robin")
        done += per_task
        if progress is not None:
            elapsed = time.time() - start
            left = elapsed / (i + 1) * (len(tasks) - i - 1)
            progress(f"[{i + 1}/{len(tasks)}] {task.task_name}: {done}/{per_task * len(tasks)} trials, "
                     f"{elapsed:.0f}s elapsed, about {left:.0f}s left")
    return db


def tune_graph(graph, target, db_dir: str | Path, trials: int,
               progress: Callable[[str], None] | None = None) -> ms.database.JSONDatabase:
    """`tune` for an edgec Graph (after the same passes as the compile that will use the
    database, so that the kernels match) and an edgec CPU Target."""
    from edgec.targets.lower import lower_graph
    return tune(lower_graph(graph, target), target.tvm_target(), db_dir, trials, progress)
