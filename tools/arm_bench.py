"""Guest instructions per inference on ARM: edgec against ONNX Runtime's aarch64 wheel, both under
the same qemu-aarch64 -cpu cortex-a72.

    python tools/arm_bench.py                       # models/*.onnx from tools/make_models.py
    python tools/arm_bench.py --small --runs 2      # the reduced models, for a quick check
    python tools/arm_bench.py MODEL.onnx ... --target arm-a76 --json out.json

Wall time under qemu means nothing, so the figure is the number of guest instructions executed,
counted by a qemu TCG plugin (targets/qemu/insn_count.c, built by
edgec.targets.profile.build_plugin). Each program is run twice, once with 1 inference and once with
1 + RUNS; the difference divided by RUNS is the count per inference, free of loading and set-up.
Both sides use one thread (edgec: TVM_NUM_THREADS=1; ONNX Runtime: one intra- and inter-op
thread), so the counts compare the work each does per inference, not a parallel speed-up.

- edgec: the model compiled for the target (`-O2`) and bundled; edgec-run with --random inputs.
- ONNX Runtime: libonnxruntime.so from the onnxruntime aarch64 wheel of the installed version,
  driven by tools/qemu_insn_count/ort_run.c through its C API. ONNX Runtime reads /proc/cpuinfo
  at start and crashes on the host's x86 one, so it runs in a private mount namespace
  (`unshare -m`, needs root) with a Cortex-A72 cpuinfo bind-mounted over /proc/cpuinfo.

Where the instructions go, kernel by kernel: `edgec profile DIR` and tools/arm_profile.py (same
qemu, a per-block profiling plugin, symbols of model.so).

Needs: qemu-user, an aarch64 cross compiler (g++-aarch64-linux-gnu or pip ziglang), a host C
compiler, root for unshare. Prints a table; --json writes the numbers.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ORT_RUN_SOURCE = ROOT / "tools" / "qemu_insn_count" / "ort_run.c"
DTYPE_CODES = {"f32": "f32", "i64": "i64"}

# /proc/cpuinfo of a 4-core Cortex-A72 (Raspberry Pi 4) as the aarch64 Linux kernel prints it.
CPUINFO_A72 = "".join(
    f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n"
    "CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n"
    for i in range(4))


def build_plugin() -> Path:
    from edgec.targets.profile import build_plugin as build
    return build("insn_count")


def ort_library(work: Path) -> Path:
    from edgec.targets.bundle import fetch_wheel
    wheel = fetch_wheel("onnxruntime", metadata.version("onnxruntime"))
    with zipfile.ZipFile(wheel) as z:
        member = next(n for n in z.namelist() if re.search(r"capi/libonnxruntime\.so\.\d", n))
        out = work / Path(member).name
        out.write_bytes(z.read(member))
    return out


def build_ort_run(work: Path) -> Path:
    from edgec.targets.crosslink import find_toolchain
    tc = find_toolchain()
    out = work / "ort-run"
    tc.run([*tc.cc, "-O2", "-o", str(out), str(ORT_RUN_SOURCE), "-ldl"], "building ort-run")
    return out


def count(cmd: list[str], plugin: Path, cpu: str, env: dict[str, str], cpuinfo: Path | None = None) -> int:
    """Guest instructions of one program run under qemu with the counting plugin."""
    from edgec.targets.runners import SYSROOT, qemu_path
    qemu = [qemu_path(), "-cpu", cpu, "-L", str(SYSROOT), "-plugin", str(plugin), "-d", "plugin",
            *[a for k, v in env.items() for a in ("-E", f"{k}={v}")]]
    full = [*qemu, *cmd]
    if cpuinfo is not None:
        script = f"mount --bind {cpuinfo} /proc/cpuinfo && exec \"$@\""
        full = ["unshare", "-m", "sh", "-c", script, "sh", *full]
    proc = subprocess.run(full, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=3600)
    found = re.findall(r"insns: (\d+)", proc.stderr)
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"{' '.join(full)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    return int(found[-1])


def per_inference(run, runs: int) -> int:
    base, more = run(1), run(1 + runs)
    return round((more - base) / runs)


def bench_model(model: Path, target: str, runs: int, work: Path, plugin: Path, ort_lib: Path, ort_run: Path,
                cpuinfo: Path) -> dict:
    import edgec
    from edgec.targets.bundle import make_bundle
    from edgec.targets.runners import qemu_cpu

    cpu = qemu_cpu(target)
    art = edgec.compile(model, target=target, output=work / f"{model.stem}-{target}").artifact
    make_bundle(art)
    edgec_count = per_inference(lambda n: count([str(art.path / "edgec-run"), "--random", "-n", str(n)], plugin, cpu,
                                                {"TVM_NUM_THREADS": "1"}), runs)
    specs = []
    for name, t in art.inputs:
        if t.dtype not in DTYPE_CODES:
            raise RuntimeError(f"{model}: input '{name}' is {t.dtype}; ort-run handles f32 and i64 inputs")
        specs.append(f"{name}={DTYPE_CODES[t.dtype]}:{'x'.join(str(d) for d in t.shape) or '1'}")
    outs = [name for name, _ in art.outputs]
    ort_count = per_inference(lambda n: count([str(ort_run), str(ort_lib), str(model.resolve()), str(n), *specs, "--",
                                               *outs], plugin, cpu, {}, cpuinfo), runs)
    return {"model": model.stem, "target": target, "qemu_cpu": cpu, "runs": runs,
            "edgec_insns": edgec_count, "onnxruntime_insns": ort_count,
            "ratio_edgec_over_ort": edgec_count / ort_count if ort_count else None}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="*", type=Path, help="ONNX models (default: the tools/make_models.py set)")
    parser.add_argument("--target", default="arm-a72")
    parser.add_argument("--runs", type=int, default=3, help="inferences counted (after one baseline run)")
    parser.add_argument("--small", action="store_true", help="build and use the reduced models")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="arm-bench.") as tmp:
        work = Path(tmp)
        models = args.models
        if not models:
            sys.path.insert(0, str(ROOT / "tools"))
            from make_models import build_all
            models = list(build_all(work / "models", small=args.small).values())
        plugin, ort_lib, ort_run = build_plugin(), ort_library(work), build_ort_run(work)
        cpuinfo = work / "cpuinfo"
        cpuinfo.write_text(CPUINFO_A72)
        results = []
        print(f"{'model':<14} {'target':<10} {'edgec insns/inf':>16} {'ORT insns/inf':>16} {'edgec/ORT':>10}")
        failed = 0
        for m in models:
            try:
                r = bench_model(Path(m), args.target, args.runs, work, plugin, ort_lib, ort_run, cpuinfo)
            except Exception as e:  # noqa: BLE001 - report the model and go on with the others
                failed += 1
                message = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
                results.append({"model": Path(m).stem, "target": args.target, "error": message})
                print(f"{Path(m).stem:<14} {args.target:<10} failed: {type(e).__name__}: {message}", flush=True)
                continue
            results.append(r)
            print(f"{r['model']:<14} {r['target']:<10} {r['edgec_insns']:>16,} {r['onnxruntime_insns']:>16,} "
                  f"{r['ratio_edgec_over_ort']:>10.2f}", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
