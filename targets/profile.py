"""Per-kernel profiles of a compiled artifact: where one inference's time (host) or guest
instructions (ARM) go, kernel by kernel.

    edgec profile DIR [--runs N] [--threads N] [--json]

`profile(artifact, runs)` gives a `Profile`: one row per kernel of the manifest (its name, its
node `%N` in model.eir, op and ONNX origins), with its cost per inference and its share of the
kernels' total, most expensive first; the total per inference; and the overhead, the total minus
the kernels: what runs outside every kernel (the VM's allocations and builtins, the TVM runtime,
libc). `Profile.format()` is the table `edgec profile` prints, `Profile.as_json()` the same rows
with stable keys. Cases handled:

- host artifacts (x86_64, target host): microseconds. TVM 0.27's Relax VM has no profiler (no
  `profile=True`), and timing each call from a Python VM instrument costs more than small
  kernels take, so, as TVM's graph debug executor did, each kernel is timed on its own: the
  library runs in a Relax VM on seeded random inputs (`rpc.random_inputs`); TVM's time
  evaluator times `main` `runs` times (the total); one more inference under a VM instrument
  records the arguments of every call of a manifest kernel (any other call, `vm.builtin.*`, is
  the overhead's), and the time evaluator runs each kernel `runs` times on them. Medians, after
  one warm-up call each. A kernel timed alone runs with its data in cache, so the kernels' sum
  can be below their share of a whole inference; the overhead is then the larger.
- ARM artifacts (aarch64): guest instructions, under `qemu-aarch64 -cpu <core>` on one thread.
  edgec-run (the bundle's, or the cached one of `runners.runner_for`) runs with the per-block
  plugin qemu/insn_profile.c (`build_plugin`, cached) and qemu's -strace, once with 1 inference
  and once with 1 + `runs`; the difference over `runs` is per inference. `count_functions`
  charges each executed block to the function holding its first instruction: the strace log says
  where each library was mapped (`library_bases`), its symbol table (nm) gives the functions
  (`symbols`). In model.so a kernel's entry `__tvm_ffi_<kernel>` and its parallel loop bodies
  `<kernel>_compute_` are the kernel's (`kernel_of`); TVM's parallel lambdas have no symbol, but
  LLVM emits them right after their `_compute_` function, which they are charged to. The kernels'
  counts do not vary between runs (the runtime's by a few percent), so `runs` defaults to 1 there.
- Errors (EdgecError): an artifact with no kernel table (compiled by an older edgec), a manifest
  kernel the library never runs (a damaged artifact), `runs` below 1, `--threads` on ARM, and,
  as ToolErrors saying what to install, no C compiler for the plugin or no qemu.
"""

from __future__ import annotations

import bisect
import hashlib
import os
import re
import shlex
import shutil
import statistics
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from edgec.errors import EdgecError, ToolError

HOST_RUNS, ARM_RUNS = 10, 1  # default runs: timings vary, instruction counts do not
PLUGIN_DIR = Path(__file__).parent / "qemu"
ARM_TIMEOUT_S = 3600
ORIGINS_WIDTH = 40  # characters of the origins column before it is shortened


@dataclass
class KernelCost:
    name: str
    node: str  # `%N` in model.eir
    op: str
    origins: list[str]
    cost: float  # per inference, in the profile's unit
    share: float  # of the kernels' total, 0 to 1


@dataclass
class Profile:
    artifact: str
    target: str
    arch: str
    unit: str  # "us" (host) or "instructions" (ARM)
    runs: int
    threads: int
    total: float  # per inference
    rows: list[KernelCost]  # most expensive first

    @property
    def kernels_total(self) -> float:
        return sum(r.cost for r in self.rows)

    @property
    def overhead(self) -> float:
        return self.total - self.kernels_total

    def as_json(self) -> dict:
        return {"artifact": self.artifact, "target": self.target, "arch": self.arch, "unit": self.unit,
                "runs": self.runs, "threads": self.threads, "total": self.total,
                "kernels_total": self.kernels_total, "overhead": self.overhead,
                "kernels": [{"name": r.name, "node": r.node, "op": r.op, "origins": r.origins, "cost": r.cost,
                             "share": r.share} for r in self.rows]}

    def format(self) -> str:
        value = (lambda v: f"{v:,.1f}") if self.unit == "us" else (lambda v: f"{v:,.0f}")
        unit = "us" if self.unit == "us" else "insns"
        if self.unit == "us":
            how = f"median of {self.runs} runs, {self.threads} thread{'s' if self.threads > 1 else ''}"
        else:
            counted = f"{self.runs} inference{'s' if self.runs > 1 else ''}"
            how = f"guest instructions under qemu, {counted} counted, 1 thread"
        head = ["kernel", "node", "op", "origins", unit, "share"]
        body = [[r.name, r.node, r.op, short_origins(r.origins), value(r.cost), f"{100 * r.share:.1f}%"]
                for r in self.rows]
        widths = [max(len(row[i]) for row in [head, *body]) for i in range(len(head))]
        right = {4, 5}

        def line(cells: list[str]) -> str:
            return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                             for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

        part = (lambda v: f" ({100 * v / self.total:.1f}% of the total)") if self.total else (lambda v: "")
        lines = [f"{self.artifact}: {self.target} ({self.arch}), {value(self.total)} {unit} per inference ({how})",
                 line(head), *map(line, body), "",
                 f"kernels           {value(self.kernels_total):>14} {unit}{part(self.kernels_total)}",
                 f"runtime overhead  {value(self.overhead):>14} {unit}{part(self.overhead)}: the total minus "
                 "the kernels",
                 f"total             {value(self.total):>14} {unit}"]
        return "\n".join(lines)


def short_origins(origins: list[str], width: int = ORIGINS_WIDTH) -> str:
    """The origins joined by ', ', cut after the last one that fits in `width` characters with a
    '... (N more)' (always at least the first origin)."""
    text = ", ".join(origins)
    if len(text) <= width:
        return text
    for keep in range(len(origins) - 1, 0, -1):
        text = ", ".join(origins[:keep]) + f", ... ({len(origins) - keep} more)"
        if len(text) <= width or keep == 1:
            return text
    return text


def kernel_of(symbol: str, kernels) -> str | None:
    """The kernel in `kernels` (names) that a function of the built module belongs to: the kernel
    itself, its entry `__tvm_ffi_<kernel>` or its parallel loop body `<kernel>_compute_` (LLVM
    may add a `.N`); None for any other function."""
    name = re.sub(r"_compute_(\.\d+)?$", "", symbol.removeprefix("__tvm_ffi_"))
    return name if name in kernels else None


def manifest_kernels(art) -> list[dict]:
    """The manifest's "kernels" entries of an edgec.driver.Artifact, checked: each has a "name",
    "node" and "op" string and "origins", a list of strings."""
    def valid(k) -> bool:
        return isinstance(k, dict) and all(isinstance(k.get(f), str) for f in ("name", "node", "op")) \
            and isinstance(k.get("origins"), list) and all(isinstance(o, str) for o in k["origins"])

    kernels = art.manifest.get("kernels")
    if not isinstance(kernels, list) or not all(map(valid, kernels)):
        raise EdgecError(f"{art.path}/manifest.json has no valid kernel table (\"kernels\"): it was written by "
                         f"an older edgec or is damaged; compile the model again with "
                         f"`edgec compile MODEL -o {art.path}`")
    return kernels


def profile(artifact, runs: int | None = None) -> Profile:
    """The per-kernel profile of an artifact (an edgec.driver.Artifact or its directory), see the
    module docstring; `runs` defaults to HOST_RUNS on host and ARM_RUNS on ARM."""
    from edgec.driver import Artifact
    art = artifact if isinstance(artifact, Artifact) else Artifact(artifact)
    if art.gpu_problem:
        raise EdgecError(art.gpu_problem.replace("it runs on the board", "it can be profiled only there"))
    kernels = manifest_kernels(art)
    arch, target = art.manifest["arch"], art.manifest["target"]
    host = arch == "x86_64" and target == "host"
    runs = (HOST_RUNS if host else ARM_RUNS) if runs is None else runs
    if runs < 1:
        raise EdgecError(f"--runs must be at least 1, not {runs}")
    names = {k["name"] for k in kernels}
    if host:
        costs, total, threads = _host_costs(art, names, runs)
        unit = "us"
    elif arch == "aarch64":
        costs, total = _arm_costs(art, names, runs)
        unit, threads = "instructions", 1
    else:
        raise EdgecError(f"{art.path}: an artifact for '{target}' ({arch}) cannot be profiled here; "
                         "compile for --target host or an ARM target")
    missing = [k["name"] for k in kernels if k["name"] not in costs]
    if missing:
        raise EdgecError(f"{art.path}: the manifest lists kernels the library never ran ({', '.join(missing[:5])}"
                         f"{', ...' if len(missing) > 5 else ''}); the artifact is damaged or from another edgec "
                         f"version: compile the model again with `edgec compile MODEL -o {art.path}`")
    kernels_total = sum(costs.values())
    order = {k["name"]: i for i, k in enumerate(kernels)}
    rows = [KernelCost(k["name"], k["node"], k["op"], list(k["origins"]), costs[k["name"]],
                       costs[k["name"]] / kernels_total if kernels_total else 0.0) for k in kernels]
    rows.sort(key=lambda r: (-r.cost, order[r.name]))
    return Profile(art.path.name, target, arch, unit, runs, threads, total, rows)


# ---- host: TVM's time evaluator -----------------------------------------------------------------

def _host_costs(art, names: set[str], runs: int) -> tuple[dict[str, float], float, int]:
    """({kernel: median us per inference}, median total us, threads) on this machine."""
    import tvm
    import tvm_ffi
    from tvm import relax

    from edgec.driver import set_threads

    from .rpc import random_inputs
    lib = tvm.runtime.load_module(str(art.library))
    vm = relax.VirtualMachine(lib, tvm.cpu())
    threads = set_threads(art.threads)
    args = [tvm.runtime.tensor(a) for a in random_inputs(art.inputs)]
    total = vm.time_evaluator("main", tvm.cpu(), number=1, repeat=runs)(*args)  # one warm-up call first

    calls: dict[str, list[tuple]] = {}  # kernel -> the arguments of each of its calls in one inference

    def instrument(func, symbol, before, ret, *call_args):
        if before and symbol in names:
            calls.setdefault(symbol, []).append(call_args)
        return 0  # VMInstrumentReturnKind.NO_OP: make the call

    vm.set_instrument(tvm_ffi.convert(instrument))
    vm["main"](*args)
    costs = {}
    for name, arg_lists in calls.items():
        module = next(m for m in lib.imports if m.implements_function(name))  # the kernels' LLVM module
        timer = module.time_evaluator(name, tvm.cpu(), number=1, repeat=runs)
        costs[name] = sum(statistics.median(timer(*a).results) * 1e6 for a in arg_lists)
    return costs, statistics.median(total.results) * 1e6, threads


# ---- ARM: guest instructions under qemu --------------------------------------------------------

OPENAT = re.compile(r'openat\([^,]*,"([^"]+)",[^)]*\) = (\d+)')
MMAP = re.compile(r"mmap\((?:NULL|0x[0-9a-f]+),(\d+),[^,]*,[^,]*,(\d+),(\d+)\) = (0x[0-9a-f]+)")
CLOSE = re.compile(r"close\((\d+)\) = 0")
LIBRARY = re.compile(r"\.so(\.\d+)*$")  # libc.so.6, model.so; not /etc/ld.so.cache
CC_HINT = "apt-get install gcc, or set CC to a C compiler"


def plugin_api_version() -> int:
    """The plugin API version to declare for this qemu-aarch64: 1 before qemu 9 (which dropped it), else 2."""
    from .runners import qemu_path
    out = subprocess.run([qemu_path(), "--version"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True).stdout
    m = re.search(r"version (\d+)\.", out)
    return 2 if m and int(m.group(1)) >= 9 else 1


def build_plugin(name: str = "insn_profile") -> Path:
    """The qemu TCG plugin qemu/<name>.c (insn_profile: per-block counts; insn_count: the total)
    built for this machine with $CC (default cc), cached in `bundle.cache_root()`/qemu-plugins
    under a key of its source, the compiler and the plugin API version."""
    from .bundle import cache_root
    source, header = PLUGIN_DIR / f"{name}.c", PLUGIN_DIR / "qemu_plugin_api.h"
    cc = shlex.split(os.environ.get("CC", "")) or [shutil.which("cc") or shutil.which("gcc") or "cc"]
    if shutil.which(cc[0]) is None:
        raise ToolError(f"counting instructions under qemu needs a plugin built with a C compiler for this "
                        f"machine, and there is none ('{cc[0]}' not found): {CC_HINT}")
    version = plugin_api_version()
    key = hashlib.sha256(source.read_bytes() + header.read_bytes()
                         + f"{' '.join(cc)} {version}".encode()).hexdigest()[:12]
    out = cache_root() / "qemu-plugins" / f"lib{name}-{key}.so"
    if out.is_file():
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    cmd = [*cc, "-O2", "-shared", "-fPIC", "-fvisibility=hidden", f"-DEDGEC_QEMU_PLUGIN_VERSION={version}",
           "-o", str(tmp), str(source)]
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    if proc.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise ToolError(f"building the qemu plugin {source.name} failed:\n{proc.stdout.strip()[-2000:]}\n"
                        f"command: {' '.join(cmd)}\n(it needs a working C compiler: {CC_HINT})")
    os.replace(tmp, out)  # a rename: concurrent builds do not collide
    return out


def library_bases(strace: str) -> list[tuple[int, int, str]]:
    """(start, end, path) of every shared library (`LIBRARY`) that qemu's -strace log shows mapped
    at file offset 0 (the dynamic loader's first mapping of a library spans it all), sorted."""
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
            if path and offset == 0 and path not in seen and LIBRARY.search(path):
                seen.add(path)
                maps.append((addr, addr + length, path))
            continue
        m = CLOSE.search(line)
        if m:
            open_fds.pop(int(m.group(1)), None)
    return sorted(maps)


def symbols(path: str) -> tuple[list[int], list[str]]:
    """Sorted start addresses of the functions of an ELF shared library and their names (its
    symbol table, else its dynamic one), read with aarch64-linux-gnu-nm or nm."""
    nm = shutil.which("aarch64-linux-gnu-nm") or shutil.which("nm")
    if nm is None:
        raise ToolError("reading the symbols of aarch64 libraries needs nm: apt-get install binutils-aarch64-linux-gnu")
    addrs: dict[int, str] = {}
    for flags in (["-n", "--defined-only"], ["-n", "--defined-only", "-D"]):
        proc = subprocess.run([nm, *flags, path], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        for line in proc.stdout.splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[1] in "tTwW":
                addrs.setdefault(int(parts[0], 16), parts[2])
    keys = sorted(addrs)
    return keys, [addrs[k] for k in keys]


def count_functions(art, plugin: Path, inferences: int, work: Path,
                    blocks: Counter | None = None) -> tuple[Counter, int]:
    """({(library path, function): guest instructions}, total) of one run of edgec-run with
    `inferences` inferences on random inputs under qemu, one thread; blocks outside every known
    library count as ("", "[unknown]"). In a stripped library (the wheel's libtvm_runtime.so) a
    block goes to the nearest exported symbol before it, so those names are only approximate.
    `blocks`, when given, receives {(library path, function, block offset in the library): instructions}."""
    from .runners import SYSROOT, qemu_cpu, qemu_path, runner_for
    out = work / f"profile-{inferences}.txt"
    cmd = [qemu_path(), "-cpu", qemu_cpu(art.manifest["target"]), "-L", str(SYSROOT),
           "-plugin", f"{plugin},out={out}", "-d", "plugin", "-strace", "-E", "TVM_NUM_THREADS=1",
           str(runner_for(art.path)), "-d", str(art.path.resolve()), "--random", "-n", str(inferences)]
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=ARM_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ToolError(f"edgec-run under qemu did not finish in {ARM_TIMEOUT_S} s: {' '.join(cmd)}") from None
    if proc.returncode != 0 or not out.is_file():
        raise ToolError(f"edgec-run under qemu with the profiling plugin failed (exit status {proc.returncode}):\n"
                        f"{proc.stderr.strip()[-2000:]}\ncommand: {' '.join(cmd)}")
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
            counts[("", "[unknown]")] += n
            continue
        lo, _, path = libs[i]
        if path not in tables:
            in_sysroot = SYSROOT / path.lstrip("/")  # qemu -L redirects the guest's system libraries
            tables[path] = symbols(str(in_sysroot) if path.startswith("/") and in_sysroot.exists() else path)
        keys, names = tables[path]
        j = bisect.bisect_right(keys, addr - lo) - 1
        function = names[j] if j >= 0 else "?"
        counts[(path, function)] += n
        if blocks is not None:
            blocks[(path, function, addr - lo)] += n
    return counts, total


def _arm_costs(art, names: set[str], runs: int) -> tuple[dict[str, float], float]:
    """({kernel: guest instructions per inference}, total per inference)."""
    if art.threads not in (None, 1):
        raise EdgecError("--threads applies to host artifacts: on ARM the instructions are counted on one "
                          "thread; leave --threads out")
    plugin = build_plugin()
    with tempfile.TemporaryDirectory(prefix="edgec-profile.") as tmp:
        base, base_total = count_functions(art, plugin, 1, Path(tmp))
        more, more_total = count_functions(art, plugin, 1 + runs, Path(tmp))
    in_model = {path: bool(path) and Path(path).resolve() == art.library.resolve() for path in {p for p, _ in more}}
    costs: dict[str, float] = {}
    for (path, function), n in more.items():
        kernel = kernel_of(function, names) if in_model[path] else None
        if kernel is not None:
            costs[kernel] = costs.get(kernel, 0) + (n - base.get((path, function), 0)) / runs
    return costs, (more_total - base_total) / runs
