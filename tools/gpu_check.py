"""Check edgec's CUDA kernels on the NVIDIA GPU of this machine: build, run, compare, sanitize, time.

    python tools/gpu_check.py                          # resnet18, mobilenetv2, transformer, mlp
    python tools/gpu_check.py --models mlp --repeat 20 --no-sanitizer

For a machine with an NVIDIA GPU and its driver (an x86 server, sm_90 on an H100/H200, or a
Jetson): the models are built with edgec's GPU pipeline (the same kernels a Jetson target gets:
one per IR node, dlight schedules, SASS from nvcc/NVRTC) for the architecture of GPU 0, with the
machine's own CPU as the host, and run there through TVM's VM. For each model it reports:

- the largest difference of the outputs from ONNX Runtime on the CPU (same random inputs);
- `compute-sanitizer --tool memcheck` on one run of the model in a child process (its error
  count; `--no-sanitizer` skips it, and it is skipped when compute-sanitizer is not on PATH);
- the median latency over `--repeat` runs after `--warmup`, beside ONNX Runtime's
  CUDAExecutionProvider when that is installed (onnxruntime-gpu), as a ratio.

Never a test: the test suite checks the kernels without a GPU (targets/cuda_cpu.py). Exit status
1 when a model's outputs differ beyond --rtol or the sanitizer reports errors; 2 without a GPU.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import load_models, model_feeds  # noqa: E402

MODELS = ["resnet18", "mobilenetv2", "transformer", "mlp"]


def gpu_target():
    """An edgec CUDA target for GPU 0 of this machine (see `host_gpu_target`)."""
    import tvm
    from edgec.targets.cuda import load_cuda_runtime
    load_cuda_runtime()
    dev = tvm.cuda(0)
    if not dev.exist:
        print("gpu_check: no CUDA GPU here (tvm.cuda(0) does not exist)", file=sys.stderr)
        raise SystemExit(2)
    return host_gpu_target(int(dev.compute_version.replace(".", "")), dev.device_name)


def host_gpu_target(sm: int, gpu: str):
    """The edgec CUDA target "gpu-here": Jetson Orin's, for sm_`sm`, with this machine's CPU as
    the host (registered once)."""
    from edgec.targets import TARGETS, get_target, register_target
    from edgec.targets.jetson import GPU_LIMITS
    if "gpu-here" in TARGETS:
        return TARGETS["gpu-here"]
    return register_target(dataclasses.replace(
        get_target("jetson-orin"), name="gpu-here", description=f"GPU 0 of this machine ({gpu}, sm_{sm})",
        aliases=(), arch="x86_64", sm=sm, host_cpu="", jetpack="", qemu_cpus=(),
        tvm={"kind": "cuda", "arch": f"sm_{sm}", **GPU_LIMITS, "host": {"kind": "llvm"}}))


def build(path: Path, target=None):
    """(VM on GPU 0, input names, output names, compile seconds); `target`: default gpu_target()."""
    import tvm
    from tvm import relax
    from edgec import import_onnx
    from edgec.driver import build as edgec_build
    target = target or gpu_target()
    start = time.perf_counter()
    graph = import_onnx(path)
    result = edgec_build(graph, target.name, level=2)
    seconds = time.perf_counter() - start
    if not tvm.cuda(0).exist:  # a dry run of the build, without a GPU
        return None, [v.name for v in result.graph.inputs], result.graph.output_names, seconds
    vm = relax.VirtualMachine(result.built.executable, tvm.cuda(0))
    return vm, [v.name for v in result.graph.inputs], result.graph.output_names, seconds


def run_vm(vm, names: list[str], feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    import tvm
    dev = tvm.cuda(0)
    args = [tvm.runtime.tensor(feeds[n], device=dev) for n in names]
    out = vm["main"](*args)
    dev.sync()
    return [o.numpy() for o in out]  # edgec's main returns a tuple of its outputs


def time_runs(fn, warmup: int, repeat: int) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e3)
    return statistics.median(times)


def ort_session(path: Path, provider: str):
    import onnxruntime as ort
    if provider not in ort.get_available_providers():
        return None
    return ort.InferenceSession(str(path), providers=[provider])


def sanitize(path: Path) -> str:
    """compute-sanitizer memcheck on one run of the model in a child process: its summary line."""
    tool = shutil.which("compute-sanitizer")
    if tool is None:
        return "skipped (compute-sanitizer not on PATH)"
    r = subprocess.run([tool, "--tool", "memcheck", "--error-exitcode", "3", sys.executable, __file__,
                        "--run-once", str(path)], capture_output=True, text=True)
    summary = [line for line in r.stdout.splitlines() if "ERROR SUMMARY" in line]
    return summary[-1].strip("= ").strip() if summary else f"exit {r.returncode}: {r.stderr.strip()[-300:]}"


def check_model(name: str, path: Path, args) -> dict:
    vm, inputs, outputs, compile_s = build(path)
    feeds = model_feeds(path)
    got = run_vm(vm, inputs, feeds)
    ref_sess = ort_session(path, "CPUExecutionProvider")
    want = ref_sess.run(outputs, feeds)
    scale = max(float(np.abs(w).max()) for w in want) or 1.0
    err = max(float(np.abs(g.astype(np.float64) - w).max()) for g, w in zip(got, want)) / scale
    row = {"model": name, "compile_s": round(compile_s, 1), "max_rel_diff": err, "ok": err <= args.rtol}
    row["edgec_ms"] = time_runs(lambda: run_vm(vm, inputs, feeds), args.warmup, args.repeat)
    cuda_sess = ort_session(path, "CUDAExecutionProvider")
    if cuda_sess is not None:
        row["ort_cuda_ms"] = time_runs(lambda: cuda_sess.run(outputs, feeds), args.warmup, args.repeat)
        row["ratio"] = row["edgec_ms"] / row["ort_cuda_ms"]
    if args.sanitizer:
        row["memcheck"] = sanitize(path)
        row["ok"] = row["ok"] and ("0 errors" in row["memcheck"] or row["memcheck"].startswith("skipped"))
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--models", default=",".join(MODELS))
    ap.add_argument("--repeat", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--rtol", type=float, default=1e-4, help="largest difference from ORT, relative to its largest output")
    ap.add_argument("--no-sanitizer", dest="sanitizer", action="store_false")
    ap.add_argument("--small", action="store_true", help="the reduced models of make_models.py")
    ap.add_argument("--out", help="also write the rows as JSON to this file")
    ap.add_argument("--run-once", help=argparse.SUPPRESS)  # the child process the sanitizer watches
    args = ap.parse_args(argv)
    if args.run_once:
        path = Path(args.run_once)
        vm, inputs, _, _ = build(path)
        run_vm(vm, inputs, model_feeds(path))
        return 0
    target = gpu_target()
    print(f"{target.description}; edgec kernels built for {target.cuda_arch}")
    with tempfile.TemporaryDirectory(prefix="edgec-gpu-") as work:
        paths = load_models(args.models.split(","), args.small, Path(work))
        rows = [check_model(name, path, args) for name, path in paths.items()]
    print("| model | compile s | max rel diff vs ORT | edgec ms | ORT CUDA ms | ratio | memcheck |")
    print("|---|---:|---:|---:|---:|---:|---|")
    for r in rows:
        ort_ms = f"{r['ort_cuda_ms']:.3f}" if "ort_cuda_ms" in r else "n/a"
        ratio = f"{r['ratio']:.2f}" if "ratio" in r else "n/a"
        print(f"| {r['model']} | {r['compile_s']} | {r['max_rel_diff']:.1e} | {r['edgec_ms']:.3f} | {ort_ms} | "
              f"{ratio} | {r.get('memcheck', 'not run')} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2) + "\n")
    return 0 if all(r["ok"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
