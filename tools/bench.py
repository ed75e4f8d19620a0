"""Benchmark edgec's compiled CPU code against ONNX Runtime and TVM's own path, in one process.

    python tools/bench.py                                   # all models, 1 thread, 20 runs each
    python tools/bench.py --models resnet18,mlp --repeat 10 --threads 1 --out bench_out
    python tools/bench.py --small --repeat 3                # the reduced models: a quick smoke run

For each model the runners are:

- `ort-1t`: ONNX Runtime, CPUExecutionProvider, one intra-op thread (the reference for the ratio);
- `ort-all`: ONNX Runtime with every core. It is timed on its own, after the interleaved rounds
  of the others: its worker threads keep spinning for a while after a run and would take cores
  from whichever runner is timed next;
- `tvm`: what a user would try without edgec: `tvm.relax.frontend.onnx.from_onnx` then
  `tvm.compile` with TVM's default Relax pipeline for the host (untuned);
- `edgec-O0`, `edgec-O1`, `edgec-O2`: `edgec.compile(model, target="host", level=L)`, run through
  `edgec.load(DIR).run(feeds)` (edgec's default schedules are part of the build);
- with `--int8 N`: `ort-int8-1t`, ONNX Runtime (one thread, its default session) on the model
  `quantize_static` makes (after its `quant_pre_process`; QDQ, MinMax, per-channel s8 weights,
  u8 activations), `edgec-int8`, edgec's own `edgec.quantize` (minmax) built at -O2, and
  `edgec-O2 of ort-int8`, edgec compiling ONNX Runtime's QDQ model; all calibrated on the same N
  random inputs, with a line giving each one's output SQNR against `ort-1t`'s fp32 output;
- `edgec-O2-tuned` (with `--tuning-db DIR`): -O2 with the tuning database DIR/<model> written by
  `edgec tune` (`edgec.compile(..., tuning_db=)`: kernels it has records for use the best knob
  settings measured, the others keep the default ones), run like the other edgec runners.

TVM and edgec modules run on TVM's thread pool with `--threads` threads (default 1).
Timing: after `--warmup` runs each, the runners are timed interleaved, one run of each in turn,
`--repeat` rounds (`ort-all` alone afterwards); a runner whose warm-up run took more than `--slow`
seconds (TVM's untuned path) is timed for 3 rounds only (the table gives the count). Reported: median, min and max in ms, the
ratio of the median to `ort-1t`'s median, the compile (or session creation) time (for edgec
and TVM both: from the ONNX file to a written shared library; a line gives edgec -O2's over
TVM's), the peak
memory, and the largest absolute difference of the outputs from `ort-1t`'s. Peak memory is
measured apart from the timing, in a fresh process per runner: the compiled model (ONNX Runtime:
the session) is loaded and run once, and the column gives that process's peak resident memory
above what it held before loading (Python, the runtime libraries and the inputs excluded;
`/proc/self/clear_refs` resets the peak). Compile-time memory is not part of it.

Models: `resnet18`, `mobilenetv2`, `transformer`, `mlp` from tools/make_models.py, and
`resnet50`, `squeezenet` from the onnx package's `light` backend test data when present; by name
only, `crnn` (a CRNN recognizer with a bidirectional LSTM head), `unet` and `vad` (a GRU) from
tools/make_exported_models.py. A runner
that fails (an unsupported op, say) is reported as failed with its message; the others go on.

Outputs: a markdown table on stdout and, with `--out DIR`, DIR/bench.md and DIR/bench.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np
import onnx

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

MAKE_MODELS = ("resnet18", "mobilenetv2", "transformer", "mlp")
LIGHT_MODELS = {"resnet50": "light_resnet50.onnx", "squeezenet": "light_squeezenet.onnx"}
EXPORTED_MODELS = ("crnn", "unet", "vad")  # of tools/make_exported_models.py; asked for by name
ALL_MODELS = (*MAKE_MODELS, *LIGHT_MODELS)


def proc_status_mb(key: str) -> float:
    """A memory line of /proc/self/status (VmRSS, VmHWM), in MB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024 / 1e6
    raise RuntimeError(f"no {key} in /proc/self/status")


def measure_peak(spec: dict[str, Any]) -> float:
    """In this (fresh) process: load the runner `spec` describes, run it once on the saved inputs and
    return the peak resident memory above the memory held before loading, in MB."""
    data = np.load(spec["feeds"])
    feeds = {k: data[k] for k in data.files}
    if spec["kind"] == "ort":
        import onnxruntime as ort
    else:
        import tvm
        from tvm import relax

        import edgec
        from edgec.driver import set_threads
        set_threads(spec["threads"])
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak (VmHWM) to the current resident size
    base = proc_status_mb("VmRSS")
    if spec["kind"] == "ort":
        so = ort.SessionOptions()
        so.intra_op_num_threads = spec["threads"]
        so.inter_op_num_threads = 1
        ort.InferenceSession(spec["path"], so, providers=["CPUExecutionProvider"]).run(None, feeds)
    elif spec["kind"] == "tvm":
        vm = relax.VirtualMachine(tvm.runtime.load_module(spec["path"]), tvm.cpu())
        vm["main"](*[tvm.runtime.tensor(a) for a in feeds.values()])
    else:
        edgec.load(spec["path"], threads=spec["threads"]).run(feeds)
    return proc_status_mb("VmHWM") - base


def peak_memory_mb(spec: dict[str, Any]) -> float | None:
    """`measure_peak(spec)` in a child process; None (with a note) if the child fails."""
    proc = subprocess.run([sys.executable, __file__, "--peak-of", json.dumps(spec)],
                          capture_output=True, text=True)
    if proc.returncode != 0:
        err = proc.stderr.strip().splitlines()
        print(f"  note: peak memory of {spec['path']}: {err[-1] if err else 'failed'}", file=sys.stderr)
        return None
    return float(proc.stdout.strip().splitlines()[-1])


def light_dir() -> Path:
    return Path(onnx.__file__).parent / "backend" / "test" / "data" / "light"


def load_models(names: list[str], small: bool, work: Path) -> dict[str, Path]:
    """Paths of the requested models (make_models ones written into `work`)."""
    paths: dict[str, Path] = {}
    wanted = [n for n in names if n in MAKE_MODELS]
    if wanted:
        import make_models
        paths.update(make_models.build_all(work / "models", small=small, names=tuple(wanted)))
    exported = tuple(n for n in names if n in EXPORTED_MODELS)
    if exported:
        import make_exported_models
        paths.update(make_exported_models.build_all(work / "models", names=exported))
    for n in names:
        if n in LIGHT_MODELS:
            p = light_dir() / LIGHT_MODELS[n]
            if p.is_file():
                paths[n] = p
            else:
                print(f"note: {n}: {p} is not in this onnx package; skipped", file=sys.stderr)
        elif n not in MAKE_MODELS and n not in EXPORTED_MODELS:
            raise SystemExit(f"unknown model {n!r}; known: {', '.join(ALL_MODELS + EXPORTED_MODELS)}")
    return {n: paths[n] for n in names if n in paths}


def model_feeds(path: Path, seed: int = 0) -> dict[str, np.ndarray]:
    """Random inputs for the model's graph inputs (initializers excluded)."""
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    rng = np.random.default_rng(seed)
    feeds = {}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        t = inp.type.tensor_type
        shape = [d.dim_value if d.dim_value > 0 else 1 for d in t.shape.dim]
        dtype = onnx.helper.tensor_dtype_to_np_dtype(t.elem_type)
        if np.issubdtype(dtype, np.floating):
            feeds[inp.name] = rng.standard_normal(shape).astype(dtype)
        else:
            feeds[inp.name] = rng.integers(0, 4, shape).astype(dtype)
    return feeds


# ---- runners: each returns (run function, compile seconds, load spec for `measure_peak`) --------
def make_ort(path: Path, threads: int):
    import onnxruntime as ort
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    t0 = time.perf_counter()
    sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
    elapsed = time.perf_counter() - t0
    names = [o.name for o in sess.get_outputs()]
    return (lambda feeds: sess.run(names, feeds)), elapsed, {"kind": "ort", "path": str(path), "threads": threads}


def make_tvm(path: Path, threads: int, work: Path):
    """TVM's own path: its ONNX frontend and its default (untuned) pipeline."""
    import tvm
    from tvm import relax
    from tvm.relax.frontend.onnx import from_onnx
    from tvm.target import codegen

    from edgec.driver import set_threads
    t0 = time.perf_counter()
    model = onnx.load(str(path))
    mod = from_onnx(model, keep_params_in_input=False)
    target = tvm.target.Target({"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu()})
    ex = tvm.compile(mod, target=target, relax_pipeline=relax.get_default_pipeline(target))
    lib = work / f"{path.stem}-tvm.so"
    ex.export_library(str(lib))  # where LLVM emits machine code, as edgec.compile's artifact does
    elapsed = time.perf_counter() - t0
    vm = relax.VirtualMachine(ex, tvm.cpu())

    def run(feeds):
        set_threads(threads)  # the pool is shared with edgec's runners (a no-op when unchanged)
        out = vm["main"](*[tvm.runtime.tensor(a) for a in feeds.values()])
        outs = out if isinstance(out, (list, tuple)) or type(out).__name__ == "Array" else [out]
        return [o.numpy() for o in outs]
    return run, elapsed, {"kind": "tvm", "path": str(lib), "threads": threads}


def make_edgec(path: Path, level: int, work: Path, threads: int, samples=None):
    """edgec at -O`level`; with calibration `samples`, its own int8 (`edgec.quantize`, minmax)
    first, timed from the ONNX file too."""
    import edgec
    t0 = time.perf_counter()
    out = work / f"{path.stem}-O{level}{'-int8' if samples else ''}"
    model = edgec.quantize(edgec.import_onnx(str(path)), samples) if samples else str(path)
    edgec.compile(model, target="host", output=out, level=level)
    elapsed = time.perf_counter() - t0
    art = edgec.load(out, threads=threads)
    names = [n for n, _ in art.outputs]

    def run(feeds):
        result = art.run(feeds)
        return [result[n] for n in names]
    return run, elapsed, {"kind": "edgec", "path": str(out), "threads": threads}


def make_edgec_tuned(path: Path, db_dir: str, work: Path, threads: int):
    """edgec at -O2 with a tuning database (`edgec tune`), run through the artifact."""
    import edgec
    t0 = time.perf_counter()
    out = work / f"{path.stem}-O2-tuned"
    result = edgec.compile(str(path), target="host", output=out, level=2, tuning_db=db_dir)
    elapsed = time.perf_counter() - t0
    tuned = sum(1 for rule in result.schedules.values() if rule == "tuned")
    print(f"  {path.stem}: {tuned} of {len(result.schedules)} kernels from the tuning database", file=sys.stderr)
    art = edgec.load(out, threads=threads)
    names = [n for n, _ in art.outputs]

    def run(feeds):
        outs = art.run(feeds)
        return [outs[n] for n in names]
    return run, elapsed, {"kind": "edgec", "path": str(out), "threads": threads}


def calibration_samples(path: Path, n: int) -> list[dict[str, np.ndarray]]:
    """`n` random inputs (seeds 100..) for int8 calibration, the same for edgec and ONNX Runtime."""
    return [model_feeds(path, seed=100 + i) for i in range(n)]


def ort_quantized(path: Path, samples, work: Path) -> Path:
    """ONNX Runtime's `quantize_static` of the model (its preprocessing first, as its docs ask):
    QDQ, MinMax, per-channel s8 weights, u8 activations, on `samples`."""
    from onnxruntime.quantization import (CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType,
                                          quantize_static)
    from onnxruntime.quantization.shape_inference import quant_pre_process
    pre, out = work / f"{path.stem}-pre.onnx", work / f"{path.stem}-ort-int8.onnx"
    if not out.exists():
        quant_pre_process(str(path), str(pre))

        class Reader(CalibrationDataReader):
            def __init__(self):
                self.it = iter(samples)

            def get_next(self):
                return next(self.it, None)

        quantize_static(str(pre), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                        calibrate_method=CalibrationMethod.MinMax)
    return out


def runner_factories(path: Path, args, work: Path) -> dict[str, Callable[[], tuple]]:
    cores = os.cpu_count() or 1
    factories: dict[str, Callable[[], tuple]] = {
        "ort-1t": lambda: make_ort(path, 1),
        f"ort-all({cores}t)": lambda: make_ort(path, cores),
    }
    if not args.no_tvm:
        factories["tvm"] = lambda: make_tvm(path, args.threads, work)
    for level in args.levels:
        factories[f"edgec-O{level}"] = (lambda lv: lambda: make_edgec(path, lv, work, args.threads))(level)
    if args.int8:
        samples = calibration_samples(path, args.int8)
        factories["ort-int8-1t"] = lambda: make_ort(ort_quantized(path, samples, work), 1)
        factories["edgec-int8"] = lambda: make_edgec(path, 2, work, args.threads, samples)
        factories["edgec-O2 of ort-int8"] = lambda: make_edgec(ort_quantized(path, samples, work), 2, work,
                                                               args.threads)
    if args.tuning_db and (Path(args.tuning_db) / path.stem).is_dir():  # models without a database: no column
        factories["edgec-O2-tuned"] = lambda: make_edgec_tuned(path, str(Path(args.tuning_db) / path.stem), work, args.threads)
    return factories


def max_diff(outs: list, ref: list) -> float | None:
    try:
        return float(max(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
                         for a, b in zip(outs, ref)))
    except Exception:  # noqa: BLE001 - shapes differ: report it as no comparison
        return None


def sqnr_db(outs: list, ref: list) -> float:
    from edgec.quantization import sqnr
    return sqnr(np.concatenate([np.ravel(r) for r in ref]), np.concatenate([np.ravel(o) for o in outs]))


def bench_model(name: str, path: Path, args, work: Path) -> dict[str, Any]:
    feeds = model_feeds(path)
    results: dict[str, dict[str, Any]] = {}
    runs: dict[str, Callable] = {}
    specs: dict[str, dict[str, Any]] = {}
    reference = None
    feeds_file = work / f"{name}-feeds.npz"
    np.savez(feeds_file, **feeds)
    for rname, factory in runner_factories(path, args, work).items():
        gc.collect()
        try:
            run, compile_s, specs[rname] = factory()
            t0 = time.perf_counter()
            outs = run(feeds)
            first = time.perf_counter() - t0
            for _ in range(args.warmup - 1):
                run(feeds)
        except Exception as e:  # noqa: BLE001 - report and go on with the other runners
            msg = f"{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ''}"[:200]
            results[rname] = {"failed": msg}
            print(f"  {name} {rname}: FAILED {msg}", file=sys.stderr)
            if args.verbose:
                traceback.print_exc()
            continue
        outs = [np.asarray(o) for o in (outs if isinstance(outs, (list, tuple)) else [outs])]
        if reference is None:
            reference = outs
        results[rname] = {"compile_s": compile_s, "first_run_s": first, "max_abs_diff_vs_ort": max_diff(outs, reference),
                          "times_ms": []}
        if "int8" in rname:
            results[rname]["sqnr_vs_ort_1t"] = sqnr_db(outs, reference)
        runs[rname] = run
        print(f"  {name} {rname}: ready (compile {compile_s:.1f}s, first run {first * 1e3:.1f} ms)",
              file=sys.stderr)
    rounds = {r: (3 if results[r]["first_run_s"] > args.slow else args.repeat) for r in runs}
    interleaved = [r for r in runs if not r.startswith("ort-all")]
    for i in range(max(rounds.values(), default=0)):
        for rname in interleaved:
            if i < rounds[rname]:
                t0 = time.perf_counter()
                runs[rname](feeds)
                results[rname]["times_ms"].append((time.perf_counter() - t0) * 1e3)
    for rname in runs:  # ONNX Runtime on all cores: alone (see the module docstring)
        if rname not in interleaved:
            for _ in range(rounds[rname]):
                t0 = time.perf_counter()
                runs[rname](feeds)
                results[rname]["times_ms"].append((time.perf_counter() - t0) * 1e3)
    ref_median = None
    for rname in runs:
        ts = results[rname]["times_ms"]
        results[rname].update(median_ms=statistics.median(ts), min_ms=min(ts), max_ms=max(ts), n=len(ts))
        if rname == "ort-1t":
            ref_median = results[rname]["median_ms"]
    for rname in runs:
        results[rname]["ratio_vs_ort_1t"] = results[rname]["median_ms"] / ref_median if ref_median else None
    runs.clear()  # free the runners before the child processes measure memory
    gc.collect()
    for rname in results:
        if rname in specs:
            results[rname]["peak_mb"] = peak_memory_mb({**specs[rname], "feeds": str(feeds_file)})
    return results


def fmt_mb(mb: float | None) -> str:
    return "-" if mb is None else f"{mb:.1f}" if mb < 10 else f"{mb:.0f}"


def markdown(all_results: dict[str, dict[str, Any]], args) -> str:
    lines = [f"threads for TVM/edgec: {args.threads}; repeat {args.repeat} after {args.warmup} warm-up; "
             f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
             "",
             "| model | runner | median ms | min ms | max ms | n | x ort-1t | compile s | peak MB | max abs diff |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for model, res in all_results.items():
        for rname, r in res.items():
            if "failed" in r:
                lines.append(f"| {model} | {rname} | failed: {r['failed'].replace('|', '/')} |  |  |  |  |  |  |  |")
                continue
            diff = r["max_abs_diff_vs_ort"]
            ratio = r["ratio_vs_ort_1t"]
            lines.append(f"| {model} | {rname} | {r['median_ms']:.2f} | {r['min_ms']:.2f} | {r['max_ms']:.2f} | "
                         f"{r['n']} | {ratio:.2f} | {r['compile_s']:.1f} | {fmt_mb(r.get('peak_mb'))} | "
                         f"{'-' if diff is None else f'{diff:.1e}'} |")
        tvm_r, best = res.get("tvm", {}), None
        for level in sorted(args.levels, reverse=True):
            r = res.get(f"edgec-O{level}", {})
            if "median_ms" in r:
                best = r
                break
        if "median_ms" in tvm_r and best is not None:
            lines.append(f"| {model} | edgec speed-up over tvm |  |  |  |  | "
                         f"{tvm_r['median_ms'] / best['median_ms']:.1f}x |  |  |  |")
        o2 = res.get("edgec-O2", {})
        q8 = {r: res[r]["sqnr_vs_ort_1t"] for r in ("ort-int8-1t", "edgec-int8", "edgec-O2 of ort-int8")
              if "sqnr_vs_ort_1t" in res.get(r, {})}
        if q8:
            lines.append(f"| {model} | int8 output SQNR against fp32 (dB) |  |  |  |  |  |  |  | "
                         + ", ".join(f"{r} {v:.1f}" for r, v in q8.items()) + " |")
        if "median_ms" in o2 and "median_ms" in res.get("edgec-int8", {}):
            lines.append(f"| {model} | edgec-int8 speed-up over edgec-O2 |  |  |  |  | "
                         f"{o2['median_ms'] / res['edgec-int8']['median_ms']:.2f}x |  |  |  |")
        if "compile_s" in tvm_r and "compile_s" in o2:
            lines.append(f"| {model} | edgec-O2 compile time over tvm's |  |  |  |  |  | "
                         f"{o2['compile_s'] / tvm_r['compile_s']:.1f}x |  |  |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(ALL_MODELS), help=f"comma list (default: {','.join(ALL_MODELS)})")
    p.add_argument("--repeat", type=int, default=20, help="timed rounds per runner (default 20)")
    p.add_argument("--warmup", type=int, default=2, help="untimed runs per runner first (default 2)")
    p.add_argument("--threads", type=int, default=1, help="TVM runtime threads for tvm/edgec (default 1)")
    p.add_argument("--levels", default="0,1,2", help="edgec levels to build (default 0,1,2)")
    p.add_argument("--no-tvm", action="store_true", help="skip TVM's own (slow, untuned) path")
    p.add_argument("--slow", type=float, default=1.0,
                   help="a runner whose warm-up run takes more seconds than this is timed 3 times (default 1)")
    p.add_argument("--tuning-db", help="directory of tuning databases, one per model (DIR/<model>, written by "
                   "`edgec tune`): adds an edgec-O2-tuned runner")
    p.add_argument("--int8", type=int, default=0, metavar="N",
                   help="also int8: ONNX Runtime's quantize_static model (ort-int8-1t), edgec's own quantization "
                        "(edgec-int8) and edgec on ORT's model, all calibrated on the same N random inputs")
    p.add_argument("--small", action="store_true", help="the reduced make_models sizes (smoke test)")
    p.add_argument("--out", help="directory for bench.md and bench.json")
    p.add_argument("--verbose", action="store_true", help="tracebacks of failed runners")
    p.add_argument("--peak-of", help=argparse.SUPPRESS)  # internal: the child process of peak_memory_mb
    args = p.parse_args(argv)
    if args.peak_of:
        print(f"{measure_peak(json.loads(args.peak_of)):.3f}")
        return 0
    args.levels = [int(x) for x in args.levels.split(",") if x.strip()]
    args.warmup = max(1, args.warmup)
    names = [n.strip() for n in args.models.split(",") if n.strip()]
    all_results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="edgec-bench-") as d:
        work = Path(d)
        for name, path in load_models(names, args.small, work).items():
            print(f"{name}: {path}", file=sys.stderr)
            all_results[name] = bench_model(name, path, args, work)
    table = markdown(all_results, args)
    print(table)
    if args.out:
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        (out / "bench.md").write_text(table)
        meta = {"threads": args.threads, "repeat": args.repeat, "warmup": args.warmup, "cores": os.cpu_count(),
                "machine": platform.machine(), "command": " ".join(sys.argv)}
        (out / "bench.json").write_text(json.dumps({"meta": meta, "results": all_results}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
