"""Tuning the parameters of edgec's own schedule rules, into a reusable database.

    report = tune_graph(graph, target, "tuning_db", trials=2000)             # resumable
    pipeline = cpu_pipeline(target, tuning_db="tuning_db")   # tuned + default rules

What is tuned: the knobs of the `tiled_reduction` rule (`rules.tiled_reduction_space`: register
tile sizes and whatever else the space offers), kernel by kernel. The default setting is always
candidate 0 and is always measured, so the best setting found is never slower than the default (as
measured). Kernels whose space has a single setting (or that another rule schedules) are not tuned.

Steps of `tune`:

1. the kernels: edgec's CPU pipeline up to fusion (`front_passes`, the same NHWC layouts) and the
   same constant-parameter detection as `ApplySchedules`, so that the kernels are exactly the ones
   `cpu_pipeline` schedules;
2. the default setting of every tunable kernel is measured first (or taken from the database);
3. the trial budget (`trials`: at most that many measurements per model, the defaults included) is
   shared by the kernels in proportion to their default time times their number of calls, no
   kernel getting more than its space has; each kernel's candidates are taken in order of
   distance from the default (nearest first), so that a small budget is spent near the default;
4. each candidate is scheduled with `schedule_func(..., knobs=...)`, built alone for the target,
   run on random inputs of its parameters' shapes and timed with TVM's time evaluator (median of
   `repeat` runs of at least `min_repeat_ms` each). A candidate that fails to build or run is
   recorded as failed and never picked;
5. when the budget has room for it (at least 25 trials per kernel), confirmation rounds: each
   kernel's default and its `CONFIRM` best settings are measured `CONFIRM_ROUNDS` times more,
   interleaved, and a setting's time is the fastest of its rounds (machine load only slows runs
   down; on a shared machine it comes and goes in phases of seconds), so that one lucky run on a
   busy machine does not pick a setting.

A run makes at most `trials` measurements, confirmation rounds included.

Runners: `LocalRunner` (this process, the host target) and `RPCRunner` (a TVM RPC server, e.g. on
the board: each candidate is exported as a shared library, with edgec's aarch64 cross linker for
ARM targets, uploaded and timed there). ARM targets need the RPC runner.

Database: one JSON file, DIR/tuning.json:

    {"format": 1, "records": {TARGET: {HASH: {"kernel": NAME, "best": KNOBS, "confirmed_at": N,
                               "measurements": [{"knobs": KNOBS, "ms": T, "runs": [T, ...]}, ...]}}}}

TARGET is the target's canonical string (`str(tvm.target.Target)`) and the fingerprint of the
schedule rules (`rules_version`: a database made before the rules changed applies to nothing;
tune again), HASH the structural hash of the kernel's unscheduled PrimFunc (decimal). `runs` are the medians of each round, `ms` the
smallest; `ms` is null for a failed candidate (with "error"). `confirmed_at`: the number of
settings measured when the confirmation round ran.
The file is rewritten atomically (temporary file + rename) after each kernel and when a run is
interrupted, with sorted keys; a second run reuses every measurement already there, so an
interrupted run resumes where it stopped and a rerun with the same budget measures nothing.
At compile time `best_knobs(DIR, target)` gives {HASH: KNOBS} for the target; a database made for
another target, or by other schedule rules, gives nothing.
"""

from __future__ import annotations

import json
import math
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TextIO

import numpy as np
import tvm
from tvm import tirx

from edgec.driver import set_threads
from edgec.errors import EdgecError, ToolError
from edgec.progress import Progress, duration

DB_FILE = "tuning.json"
CONFIRM = 3  # best settings measured again with the default, when the budget allows
CONFIRM_ROUNDS = 3  # how many times they are measured again (interleaved)
DB_FORMAT = 1


# ---- keys -----------------------------------------------------------------------------------

def rules_version() -> str:
    """A fingerprint of the schedule rules (the sha256 of rules.py, 12 hex digits): a knob setting
    means another schedule once the rules change, so records of other rules are not used."""
    import hashlib
    from . import rules
    return hashlib.sha256(Path(rules.__file__).read_bytes()).hexdigest()[:12]


def target_key(tvm_target: tvm.target.Target) -> str:
    """The database key of a target: its canonical string and the rules' fingerprint."""
    return f"{tvm_target} rules={rules_version()}"


def kernel_hash(func: tirx.PrimFunc) -> str:
    """The database key of a kernel: the structural hash of its unscheduled PrimFunc, in decimal
    (without the kernel's name: nodes that compute the same thing share their record)."""
    import tvm_ffi
    from edgec.targets.lower import KERNEL
    return str(tvm_ffi.structural_hash(func.without_attr(KERNEL)))


# ---- the kernels ------------------------------------------------------------------------------

@dataclass
class Kernel:
    """One kernel of the model as `cpu_pipeline` schedules it."""

    name: str
    func: tirx.PrimFunc  # unscheduled, after fusion
    constant_params: frozenset  # parameter indices that are constants at every call site
    calls: int  # number of call sites in the model
    space: list[dict]  # knob settings, default first
    hash: str = ""

    def __post_init__(self):
        self.hash = kernel_hash(self.func)


def fused_module(mod: tvm.IRModule, tvm_target: tvm.target.Target) -> tvm.IRModule:
    """edgec's CPU pipeline up to fusion: the kernels that get scheduled (and tuned)."""
    from . import front_passes
    with tvm_target:
        return tvm.transform.Sequential(front_passes(tvm_target))(mod)


def extract_kernels(mod: tvm.IRModule, target) -> list[Kernel]:
    """The kernels of the lowered Relax module `mod` as `cpu_pipeline` schedules them, with their
    tuning spaces (kernels with an empty space are included, with `space == []`)."""
    from . import _call_tir_sites, constant_params, schedule_func
    from .rules import tiled_reduction_space
    fused = fused_module(mod, target.tvm_target())
    sites = _call_tir_sites(fused)
    kernels = []
    for gv, func in fused.functions_items():
        if not isinstance(func, tirx.PrimFunc):
            continue
        constant = constant_params(sites, gv.name_hint)
        try:
            space = tiled_reduction_space(func, target.vector_bits)
        except Exception:  # noqa: BLE001 - the rule does not understand this kernel: not tunable
            space = []
        if space and schedule_func(func, target, constant, [])[1] != "tiled_reduction":
            space = []  # a rule tried before the tiled one (int8 dot product) schedules it
        kernels.append(Kernel(gv.name_hint, func, constant, max(1, len(sites.get(gv.name_hint, []))), space))
    return kernels


def scheduled(kernel: Kernel, target, knobs: dict) -> tirx.PrimFunc:
    """The kernel scheduled with `knobs` (as ApplySchedules would, weights repacked), ready to
    build alone; an EdgecError if the rule refuses the setting."""
    from . import schedule_func
    func, rule = schedule_func(kernel.func, target, kernel.constant_params, [], knobs)
    if rule != "tiled_reduction":
        raise EdgecError(f"{kernel.name}: the tiled rule refused the setting {knobs}")
    return func.with_attr("global_symbol", "main")


# ---- the database -----------------------------------------------------------------------------

def _knobs_id(knobs: dict) -> str:
    return json.dumps(knobs, sort_keys=True)


class Database:
    """The tuning database file DIR/tuning.json (see the module docstring)."""

    def __init__(self, db_dir: str | Path, create: bool = True):
        self.dir = Path(db_dir)
        self.path = self.dir / DB_FILE
        self.records: dict[str, dict[str, dict]] = {}
        if self.path.is_file():
            try:
                data = json.loads(self.path.read_text())
            except ValueError as e:
                raise EdgecError(f"tuning database {self.path} is not valid JSON ({e}); "
                                 "delete it or choose another --db") from None
            if not isinstance(data, dict) or data.get("format") != DB_FORMAT:
                raise EdgecError(f"{self.path} is not an edgec tuning database (format {DB_FORMAT})")
            self.records = data.get("records", {})
        elif not create:
            raise EdgecError(f"tuning database {self.dir}: no {DB_FILE} in it; make one with `edgec tune`")

    def record(self, target: str, khash: str, name: str) -> dict:
        rec = self.records.setdefault(target, {}).setdefault(khash, {"kernel": name, "measurements": [],
                                                                        "best": None})
        return rec

    def measured(self, target: str, khash: str) -> dict[str, dict]:
        """{knobs id: measurement} for the kernel."""
        rec = self.records.get(target, {}).get(khash)
        return {} if rec is None else {_knobs_id(m["knobs"]): m for m in rec["measurements"]}

    def add(self, target: str, khash: str, name: str, knobs: dict, ms: float | None, error: str | None = None):
        """Record one measurement (the median of a runner's repeats) of a setting. A setting
        measured again (a confirmation round) keeps all its rounds in "runs" and the fastest
        as its "ms": machine load only ever slows a run down."""
        rec = self.record(target, khash, name)
        entry = next((m for m in rec["measurements"] if _knobs_id(m["knobs"]) == _knobs_id(knobs)), None)
        if entry is None:
            entry = {"knobs": knobs, "ms": None, "runs": []}
            rec["measurements"].append(entry)
            rec["measurements"].sort(key=lambda m: _knobs_id(m["knobs"]))
        if ms is not None:
            entry["runs"].append(ms)
            entry["ms"] = min(entry["runs"])
        elif error is not None and not entry["runs"]:
            entry["error"] = error
        ok = [m for m in rec["measurements"] if m["ms"] is not None]
        rec["best"] = min(ok, key=lambda m: m["ms"])["knobs"] if ok else None

    def rounds(self, target: str, khash: str) -> int:
        """Measurements made for the kernel, confirmation rounds included."""
        rec = self.records.get(target, {}).get(khash)
        return 0 if rec is None else sum(max(1, len(m.get("runs", []))) for m in rec["measurements"])

    def best(self, target: str) -> dict[str, dict]:
        """{kernel hash: best knobs} for the target."""
        return {h: rec["best"] for h, rec in self.records.get(target, {}).items() if rec.get("best") is not None}

    def save(self) -> None:
        """Write the file atomically, with sorted keys (deterministic content)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        text = json.dumps({"format": DB_FORMAT, "records": self.records}, indent=1, sort_keys=True) + "\n"
        fd, tmp = tempfile.mkstemp(prefix=f".{DB_FILE}.", dir=self.dir)
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise


def best_knobs(db_dir: str | Path, tvm_target: tvm.target.Target) -> dict[str, dict]:
    """{kernel hash: best knobs} in the database DIR for the target ({} for another target)."""
    return Database(db_dir, create=False).best(target_key(tvm_target))


# ---- runners ----------------------------------------------------------------------------------

def _random_args(func: tirx.PrimFunc, seed: int = 0) -> list[np.ndarray]:
    """Random arrays for the buffer parameters of `func`, in order (small integers for integer dtypes)."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo  # PrimFunc has no buffer_map in Python here
    rng = np.random.default_rng(seed)
    arrays = []
    for info in ArgInfo.from_prim_func(func):
        shape = [int(d) for d in info.shape]
        dtype = np.dtype(str(info.dtype))
        if dtype.kind == "f":
            arrays.append(rng.uniform(-1, 1, shape).astype(dtype))
        elif dtype.kind == "b":
            arrays.append(rng.integers(0, 2, shape).astype(bool))
        else:
            arrays.append(rng.integers(0, 3, shape).astype(dtype))
    return arrays


class LocalRunner:
    """Builds and times candidates in this process on this machine's CPU (the host target).
    `threads`: TVM thread pool size while timing (None: every core, like a compiled module)."""

    where = "this machine"

    def __init__(self, tvm_target: tvm.target.Target, repeat: int = 5, min_repeat_ms: float = 20,
                 threads: int | None = None):
        self.tvm_target = tvm_target
        self.repeat = repeat
        self.min_repeat_ms = min_repeat_ms
        self.count = 0  # candidates measured
        self.threads = threads


    def measure(self, func: tirx.PrimFunc) -> float:
        """Median time of one call of `func`, in ms."""
        self.count += 1
        lib = tvm.compile(tvm.IRModule({"main": func}), target=self.tvm_target)
        dev = tvm.cpu()
        args = [tvm.runtime.tensor(a, dev) for a in _random_args(func)]
        set_threads(self.threads)
        timer = lib.jit().time_evaluator("main", dev, number=1, repeat=self.repeat, min_repeat_ms=self.min_repeat_ms)
        return statistics.median(timer(*args).results) * 1e3

    def close(self) -> None:
        pass


class RPCRunner:
    """Builds candidates here and times them on a TVM RPC server (`address` HOST:PORT, or a
    tracker with `key`): each is exported as a shared library (cross-linked for aarch64 targets,
    targets/crosslink.py), uploaded and loaded there. Every socket operation is bounded by
    `timeout_s`."""

    def __init__(self, tvm_target: tvm.target.Target, arch: str, address: str, key: str | None = None,
                 repeat: int = 5, min_repeat_ms: float = 20, threads: int | None = None, timeout_s: float = 60):
        import socket

        from edgec.targets import rpc
        self.tvm_target = tvm_target
        self.arch = arch
        self.repeat = repeat
        self.min_repeat_ms = min_repeat_ms
        self.count = 0
        self.where = f"{address} key={key}" if key else address
        self._old_timeout = socket.getdefaulttimeout()
        socket.setdefaulttimeout(timeout_s)
        self.remote = rpc.connect(address, key, timeout_s)
        self._tmp = tempfile.TemporaryDirectory(prefix="edgec-tune-")
        if threads:  # (mode 1, n) reaches every core on ARM, where TVM's default pool has them all
            try:
                self.remote.get_function("runtime.config_threadpool")(1, threads)
            except Exception:  # noqa: BLE001 - an old runtime without it: time with its default
                pass

    def measure(self, func: tirx.PrimFunc) -> float:
        self.count += 1
        lib = tvm.compile(tvm.IRModule({"main": func}), target=self.tvm_target)
        name = f"candidate{self.count}.so"
        path = Path(self._tmp.name) / name
        if self.arch == "aarch64":
            from edgec.targets.crosslink import shared_library_fcompile
            lib.export_library(str(path), fcompile=shared_library_fcompile())
        else:
            lib.export_library(str(path))
        try:
            self.remote.upload(str(path))
            rlib = self.remote.load_module(name)
            dev = self.remote.cpu()
            args = [tvm.runtime.tensor(a, dev) for a in _random_args(func)]
            timer = rlib.time_evaluator("main", dev, number=1, repeat=self.repeat, min_repeat_ms=self.min_repeat_ms)
            return statistics.median(timer(*args).results) * 1e3
        except Exception as e:  # noqa: BLE001 - the remote failed: say where
            text = str(e).strip()
            raise ToolError(f"timing a candidate on {self.where} failed: "
                            f"{text.splitlines()[-1] if text else type(e).__name__}") from None
        finally:
            path.unlink(missing_ok=True)

    def close(self) -> None:
        import socket
        socket.setdefaulttimeout(self._old_timeout)
        self._tmp.cleanup()


# ---- tuning -----------------------------------------------------------------------------------

def _ms(ms: float | None) -> str:
    return "failed" if ms is None else f"{ms:.3f} ms"


def candidate_order(space: list[dict]) -> list[dict]:
    """The space with the default (its first entry) first and the others by distance from it:
    the sum over knobs of |log2 ratio| for positive numbers, 1 for any other difference (ties
    keep the space's order). Knob settings are otherwise opaque."""
    if not space:
        return []
    default = space[0]

    def distance(knobs: dict) -> float:
        d = 0.0
        for k in set(knobs) | set(default):
            a, b = knobs.get(k), default.get(k)
            if a == b:
                continue
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a > 0 and b > 0 \
                    and not isinstance(a, bool) and not isinstance(b, bool):
                d += abs(math.log2(a / b))
            else:
                d += 1.0
        return d

    rest = sorted(range(1, len(space)), key=lambda i: (distance(space[i]), i))
    return [default, *(space[i] for i in rest)]


def allocate(weights: list[float], sizes: list[int], budget: int) -> list[int]:
    """How many extra candidates (beyond the default) each kernel gets: `budget` shared in
    proportion to `weights`, kernel i getting at most `sizes[i]`; what a kernel cannot use goes to
    the others. Deterministic."""
    n = len(weights)
    give = [0] * n
    left = max(0, budget)
    open_ = [i for i in range(n) if sizes[i] > 0]
    while left > 0 and open_:
        total = sum(max(weights[i], 1e-9) for i in open_)
        spent = 0
        for i in open_:
            share = int(left * max(weights[i], 1e-9) / total)
            share = min(share, sizes[i] - give[i])
            give[i] += share
            spent += share
        if spent == 0:  # rounding left every share at 0: one each, heaviest first
            for i in sorted(open_, key=lambda i: (-weights[i], i)):
                if left - spent == 0:
                    break
                give[i] += 1
                spent += 1
        left -= spent
        open_ = [i for i in open_ if give[i] < sizes[i]]
    return give


@dataclass
class TuneReport:
    """What a tuning run did."""

    kernels: int  # kernels in the model
    tunable: int  # kernels with more than one setting
    measured: int  # measurements made by this run
    reused: int  # measurements taken from the database
    seconds: float
    speedups: dict[str, float] = field(default_factory=dict)  # kernel -> default ms / best ms

    def format(self) -> str:
        gain = ", ".join(f"{k} {v:.2f}x" for k, v in sorted(self.speedups.items(), key=lambda kv: -kv[1])[:5]
                         if v > 1.005)
        return (f"{self.tunable} of {self.kernels} kernels tunable; {self.measured} measurements made, "
                f"{self.reused} reused from the database, {duration(self.seconds)}"
                + (f"; best gains: {gain}" if gain else ""))


def tune(mod: tvm.IRModule, target, db_dir: str | Path, trials: int, runner=None,
         stream: TextIO | None = None) -> TuneReport:
    """Tune the kernels of the lowered Relax module `mod` with at most `trials` measurements in
    all (see the module docstring), recording them in the database in `db_dir`. `runner`: a
    LocalRunner (default) or RPCRunner. Progress goes to `stream` (default stderr)."""
    start = time.monotonic()
    tvm_target = target.tvm_target()
    runner = runner or LocalRunner(tvm_target)
    db = Database(db_dir)
    tkey = target_key(tvm_target)
    kernels = extract_kernels(mod, target)
    # One entry per distinct kernel (identical kernels share a hash and a record).
    by_hash: dict[str, Kernel] = {}
    calls: dict[str, int] = {}
    for k in kernels:
        if len(k.space) > 1:
            by_hash.setdefault(k.hash, k)
            calls[k.hash] = calls.get(k.hash, 0) + k.calls
    tunable = list(by_hash.values())
    orders = {k.hash: candidate_order(k.space) for k in tunable}
    trials = max(0, trials)

    def already(k: Kernel, knobs: dict) -> bool:
        return _knobs_id(knobs) in db.measured(tkey, k.hash)

    # Plan: the defaults (as many as the budget allows), then the rest by share of default time,
    # then (when the budget has room for it) confirmation rounds per kernel: the default and the
    # CONFIRM best settings measured CONFIRM_ROUNDS times more, so that one lucky or unlucky run
    # on a loaded machine does not decide.
    with_default = tunable[:trials]
    missing_defaults = sum(not already(k, orders[k.hash][0]) for k in with_default)
    progress = Progress(missing_defaults, "measurements", stream)
    measured = 0

    def measure(k: Kernel, knobs: dict) -> None:
        nonlocal measured
        try:
            ms, error = runner.measure(scheduled(k, target, knobs)), None
        except ToolError:
            raise
        except Exception as e:  # noqa: BLE001 - a candidate that fails to build or run is skipped
            text = str(e).strip()
            ms, error = None, f"{type(e).__name__}: {text.splitlines()[-1] if text else ''}"[:300]
        db.add(tkey, k.hash, k.name, knobs, ms, error)
        measured += 1
        progress.step(f"{k.name}: {_ms(ms)}")

    def confirm_set(k: Kernel, n: int) -> list[dict]:
        """The default and the n best other settings measured so far."""
        ok = sorted((m for m in db.measured(tkey, k.hash).values()
                     if m["ms"] is not None and m["knobs"] != orders[k.hash][0]), key=lambda m: m["ms"])
        return [orders[k.hash][0], *(m["knobs"] for m in ok[:n])]

    def needs_confirmation(k: Kernel) -> bool:
        rec = db.record(tkey, k.hash, k.name)
        return rec.get("confirmed_at") != len(rec["measurements"])

    plan: list = []
    try:
        for k in with_default:
            if not already(k, orders[k.hash][0]):
                measure(k, orders[k.hash][0])
        db.save()
        progress.note("default schedules measured")
        # The budget is shared by the defaults' first rounds, which confirmation rounds leave as they
        # are (they lower "ms"): a rerun plans what the first run planned, and so measures nothing.
        default_ms = {k.hash: next(iter(db.measured(tkey, k.hash)[_knobs_id(orders[k.hash][0])]["runs"]), None)
                      for k in with_default}
        weights = [(default_ms[k.hash] or 0.0) * calls[k.hash] for k in with_default]
        left = trials - len(with_default)
        reserve = (CONFIRM + 1) * CONFIRM_ROUNDS * len(with_default)
        confirm = left >= 2 * reserve
        extra = allocate(weights, [len(orders[k.hash]) - 1 for k in with_default], left - reserve * confirm)
        plan = [(k, orders[k.hash][1:1 + n], min(CONFIRM, n) if confirm else 0) for k, n in zip(with_default, extra)]
        plan.sort(key=lambda item: -(default_ms[item[0].hash] or 0.0) * calls[item[0].hash])
        progress.total += sum(not already(k, knobs) for k, cands, _ in plan for knobs in cands)
        progress.total += sum((n + 1) * CONFIRM_ROUNDS for k, cands, n in plan
                              if n and (needs_confirmation(k) or any(not already(k, c) for c in cands)))
        for k, cands, n_confirm in plan:
            todo = [knobs for knobs in cands if not already(k, knobs)]
            for knobs in todo:
                measure(k, knobs)
            if n_confirm and needs_confirmation(k):
                chosen = confirm_set(k, n_confirm)
                for _ in range(CONFIRM_ROUNDS):
                    for knobs in chosen:
                        measure(k, knobs)
                rec = db.record(tkey, k.hash, k.name)
                rec["confirmed_at"] = len(rec["measurements"])
                todo.append("confirmed")
            if todo:
                db.save()
                best = db.record(tkey, k.hash, k.name)["best"]
                best_ms = db.measured(tkey, k.hash)[_knobs_id(best)]["ms"] if best is not None else None
                default_now = db.measured(tkey, k.hash)[_knobs_id(orders[k.hash][0])]["ms"]
                progress.note(f"{k.name}: default {_ms(default_now)}, best {_ms(best_ms)}")
    finally:
        db.save()
        runner.close()
    speedups = {}
    for k in with_default:
        rec = db.measured(tkey, k.hash)
        best = db.record(tkey, k.hash, k.name)["best"]
        default_now = rec[_knobs_id(orders[k.hash][0])]["ms"]
        if best is not None and default_now:
            speedups[k.name] = default_now / rec[_knobs_id(best)]["ms"]
    in_db = sum(db.rounds(tkey, k.hash) for k in with_default)
    report = TuneReport(len(kernels), len(tunable), measured, in_db - measured, time.monotonic() - start, speedups)
    progress.finish("done")
    return report


def make_runner(target, rpc: str | None = None, key: str | None = None, threads: int | None = None,
                repeat: int = 5):
    """The runner for an edgec CPU target: RPC when `rpc` (HOST:PORT) is given, else this
    process; an EdgecError for a target this machine cannot run without `rpc`."""
    tvm_target = target.tvm_target()
    if rpc:
        return RPCRunner(tvm_target, target.arch, rpc, key, repeat=repeat, threads=threads)
    if not target.runs_here:
        raise EdgecError(f"target '{target.name}' runs on {target.arch}: tuning measures on the device, so "
                         "pass --rpc HOST:PORT of a TVM RPC server on the board (`python -m tvm.exec.rpc_server "
                         "--host 0.0.0.0 --port 9090`), or --key KEY with --rpc pointing at an RPC tracker")
    return LocalRunner(tvm_target, repeat=repeat, threads=threads)


def tune_graph(graph, target, db_dir: str | Path, trials: int, rpc: str | None = None, key: str | None = None,
               threads: int | None = None, stream: TextIO | None = None, runner=None) -> TuneReport:
    """`tune` for an edgec Graph (after the same passes as the compile that will use the
    database, so that the kernels match) and an edgec CPU Target; see `make_runner`."""
    from edgec.targets.lower import lower_graph
    if target.kind != "cpu":
        raise EdgecError(f"edgec tune supports CPU targets; '{target.name}' is {target.kind}")
    runner = runner or make_runner(target, rpc, key, threads)
    return tune(lower_graph(graph, target), target, db_dir, trials,
                runner=runner, stream=stream)
