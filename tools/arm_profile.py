"""Guest instructions per inference on ARM, broken down by function (kernel) of the model library.

    python tools/arm_profile.py MODEL.onnx                    # compile for arm-a72 at -O2, profile
    python tools/arm_profile.py MODEL.onnx --keep DIR --top 30
    python tools/arm_profile.py --artifact DIR                # an already compiled (bundled) artifact
    aarch64-linux-gnu-objdump -d --no-show-raw-insn DIR/model.so | less   # then read the hot kernels

The companion of tools/arm_bench.py (which gives only totals): edgec-run runs under
`qemu-aarch64 -cpu <core>` with the per-block profiling plugin tools/qemu_insn_count/insn_profile.c
(built by tools/build_qemu_plugin.sh) and qemu's -strace, once with 1 inference and once with
1 + RUNS. The strace log gives where each shared library (model.so, libtvm_runtime.so, libc, ...)
was mapped, the library's symbol table (aarch64-linux-gnu-nm, else nm) gives the functions, and
each executed block is charged to the function containing its first instruction. The difference
of the two runs divided by RUNS is per inference. One thread (TVM_NUM_THREADS=1), like arm_bench.
TVM's parallel loops become `<kernel>_compute_` functions; blocks outside any known library are
shown as [unknown]. model.so keeps its kernel symbols; in stripped libraries (the wheel's
libtvm_runtime.so) a block is charged to the nearest exported symbol before it, so those names
are only approximate.
"""

from __future__ import annotations

import argparse
import bisect
import json
import re
import shutil
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROFILE_SOURCE = ROOT / "tools" / "qemu_insn_count" / "insn_profile.c"

OPENAT = re.compile(r'openat\([^,]*,"([^"]+)",[^)]*\) = (\d+)')
MMAP = re.compile(r"mmap\((?:NULL|0x[0-9a-f]+),(\d+),[^,]*,[^,]*,(\d+),(\d+)\) = (0x[0-9a-f]+)")
CLOSE = re.compile(r"close\((\d+)\) = 0")


def build_plugin(work: Path) -> Path:
    out = work / "libinsn_profile.so"
    subprocess.run([str(ROOT / "tools" / "build_qemu_plugin.sh"), str(out), str(PROFILE_SOURCE)], check=True,
                   stdout=subprocess.DEVNULL)
    return out


def library_bases(strace: str) -> list[tuple[int, int, str]]:
    """(start, end, path) of every file mapped at offset 0 (a library's first mapping spans it all)."""
    open_fds: dict[int, str] = {}
    maps = []
    seen = set()
    for line in strace.splitlines():
        m = OPENAT.search(line)
        if m:
            open_fds[int(m.group(2))] = m.group(1)
            continue
        m = MMAP.search(line)
        if m:
            length, fd, offset, addr = int(m.group(1)), int(m.group(2)), int(m.group(3)), int(m.group(4), 16)
            path = open_fds.get(fd)
            if path and offset == 0 and path not in seen and (path.endswith(".so") or ".so." in path):
                seen.add(path)
                maps.append((addr, addr + length, path))
            continue
        m = CLOSE.search(line)
        if m:
            open_fds.pop(int(m.group(1)), None)
    return sorted(maps)


def symbols(path: str) -> tuple[list[int], list[str]]:
    """Sorted function start addresses of an ELF shared library and their names."""
    nm = shutil.which("aarch64-linux-gnu-nm") or shutil.which("nm")
    addrs: dict[int, str] = {}
    for flags in (["-n", "--defined-only"], ["-n", "--defined-only", "-D"]):
        proc = subprocess.run([nm, *flags, path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1] in "tTwW":
                addrs.setdefault(int(parts[0], 16), parts[2])
    keys = sorted(addrs)
    return keys, [addrs[k] for k in keys]


def run_profile(artifact: Path, plugin: Path, cpu: str, inferences: int, work: Path,
                blocks: Counter | None = None) -> tuple[Counter, int]:
    """{function: instructions} and the total for one run of edgec-run with `inferences` inferences.
    `blocks`, when given, receives {(function, block offset in its library): instructions}."""
    from edgec.targets.runners import SYSROOT, qemu_path
    out = work / f"profile-{inferences}.txt"
    cmd = [qemu_path(), "-cpu", cpu, "-L", str(SYSROOT), "-plugin", f"{plugin},out={out}", "-d", "plugin",
           "-strace", "-E", "TVM_NUM_THREADS=1", str(artifact / "edgec-run"), "--random", "-n", str(inferences)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=7200,
                          cwd=str(artifact))
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    libs = library_bases(proc.stderr + proc.stdout)
    starts = [lo for lo, _, _ in libs]
    tables: dict[str, tuple[list[int], list[str]]] = {}
    counts: Counter = Counter()
    total = 0
    for line in out.read_text().splitlines():
        addr_s, n_s = line.split()
        addr, n = int(addr_s, 16), int(n_s)
        total += n
        i = bisect.bisect_right(starts, addr) - 1
        if i < 0 or addr >= libs[i][1]:
            counts["[unknown]"] += n
            continue
        lo, _, path = libs[i]
        if path not in tables:
            in_sysroot = SYSROOT / path.lstrip("/")  # qemu -L redirects the guest's system libraries
            tables[path] = symbols(str(in_sysroot) if path.startswith("/") and in_sysroot.exists() else path)
        keys, names = tables[path]
        j = bisect.bisect_right(keys, addr - lo) - 1
        name = names[j] if j >= 0 else "?"
        counts[f"{Path(path).name}:{name}"] += n
        if blocks is not None:
            blocks[(f"{Path(path).name}:{name}", addr - lo)] += n
    return counts, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", type=Path, help="ONNX model to compile")
    parser.add_argument("--artifact", type=Path, help="profile this compiled artifact directory instead")
    parser.add_argument("--target", default="arm-a72")
    parser.add_argument("--level", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1, help="inferences counted (after one baseline run)")
    parser.add_argument("--top", type=int, default=25, help="functions to list")
    parser.add_argument("--blocks", metavar="TEXT",
                        help="also list the hottest translated blocks (library offsets, for objdump) of the "
                             "functions whose name contains TEXT")
    parser.add_argument("--keep", type=Path, help="compile into this directory (kept) instead of a temporary one")
    args = parser.parse_args(argv)
    if (args.model is None) == (args.artifact is None):
        parser.error("give a MODEL or --artifact DIR")

    import edgec
    from edgec.targets.bundle import make_bundle
    from edgec.targets.runners import qemu_cpu

    with tempfile.TemporaryDirectory(prefix="arm-profile.") as tmp:
        work = Path(tmp)
        if args.artifact is not None:
            art_path = args.artifact
            target = json.loads((art_path / "manifest.json").read_text()).get("target", args.target)
        else:
            art_path = args.keep or work / f"{args.model.stem}-{args.target}"
            art = edgec.compile(args.model, target=args.target, output=art_path, level=args.level).artifact
            art_path, target = art.path, args.target
        make_bundle(art_path)
        plugin = build_plugin(work)
        cpu = qemu_cpu(target)
        base_blocks: Counter = Counter()
        more_blocks: Counter = Counter()
        base, base_total = run_profile(art_path, plugin, cpu, 1, work, base_blocks)
        more, more_total = run_profile(art_path, plugin, cpu, 1 + args.runs, work, more_blocks)
        per = {k: (more[k] - base.get(k, 0)) / args.runs for k in more}
        total = (more_total - base_total) / args.runs
        print(f"{art_path.name}: {total:,.0f} guest instructions per inference ({target}, {cpu})")
        print(f"{'insns/inf':>14} {'share':>6}  function")
        for name, n in sorted(per.items(), key=lambda kv: -kv[1])[:args.top]:
            print(f"{n:>14,.0f} {100 * n / total if total else 0:>5.1f}%  {name}")
        if args.blocks:
            hot = {k: (more_blocks[k] - base_blocks.get(k, 0)) / args.runs for k in more_blocks
                   if args.blocks in k[0]}
            print(f"\nhottest blocks of functions matching '{args.blocks}':")
            print(f"{'insns/inf':>14} {'offset':>10}  function")
            for (name, offset), n in sorted(hot.items(), key=lambda kv: -kv[1])[:args.top]:
                print(f"{n:>14,.0f} {offset:>10x}  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
