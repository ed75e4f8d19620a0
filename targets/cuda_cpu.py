"""The numerics of a CUDA target's kernels checked on this machine's CPU, without a GPU or nvcc.

Each kernel of the model (one PrimFunc per IR node, from `gpu_pipeline(target, schedule=False)`)
is scheduled as a build schedules it (`schedule_gpu_func`: dlight) and lowered as a build lowers
it (BindTarget, the s_tir TIR pipeline: barriers, cross-thread reductions with warp shuffles,
shared memory; split into host and device functions). TVM's CUDA codegen turns the device
functions into CUDA C, exactly what nvcc or NVRTC would compile. That source is compiled with g++
against `cuda_cpu/cuda_cpu_shim.h`, which runs each CUDA thread of a block as a fiber with a real
`__syncthreads` barrier, warp shuffles and `__shared__` memory; each device function is launched
with the grid and block sizes it was lowered with. The library is cached by content hash under
~/.cache/edgec/cuda-cpu.

`CudaOnCpu(graph, target)` prepares that for an optimized edgec graph; `.run(feeds)` runs the
Relax main function of the unscheduled module kernel by kernel, in its order, on the CPU build of
the CUDA kernels, and checks every kernel on the way: the same inputs (the model's own values at
that point) go through the unscheduled PrimFunc built for LLVM, and the outputs must agree within
`KERNEL_RTOL` of the output's scale (max |expected|). Every buffer of a launch has a guard zone
of `GUARD_BYTES` before and after it; a byte changed there is an out-of-bounds write, and a
changed input buffer a write to an input, both failures naming the kernel. Outputs start as NaN
(integers as 0x5a bytes), so an element no thread writes is a mismatch.

Not covered: nvcc/NVRTC/ptxas, the GPU's fast-math intrinsics (libm is used), the CUDA driver and
runtime, and races that the fibers' fixed order hides (see the shim's header). Inline PTX,
and tensor-core (wmma) code are refused: the shim does not emulate them.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from edgec.errors import EdgecError, ToolError

SHIM_DIR = Path(__file__).resolve().parent / "cuda_cpu"
SHIM = SHIM_DIR / "cuda_cpu_shim.h"
GXX_FLAGS = ["-std=c++17", "-O1", "-shared", "-fPIC", "-w"]
GUARD_BYTES = 4096  # before and after every buffer of a launch
GUARD_BYTE = 0xA5
UNWRITTEN_INT_BYTE = 0x5A
# Per-kernel agreement with the unscheduled kernel, relative to max |expected|; integers exact.
KERNEL_RTOL = {"float32": 1e-5, "float16": 2e-2, "float64": 1e-12}
GXX_HINT = "apt-get install g++"
# Kernels per g++ translation unit: each unit costs ~1 s of headers, so not one per kernel; units
# compile in parallel and are cached one by one.
KERNELS_PER_UNIT = 8


def gxx() -> str:
    found = shutil.which("g++")
    if found is None:
        raise ToolError(f"checking GPU kernels on the CPU compiles their CUDA source with g++, which is not "
                        f"installed: {GXX_HINT}")
    return found


def gpu_here() -> bool:
    """Whether TVM sees a CUDA GPU in this process."""
    import tvm
    try:
        return bool(tvm.cuda(0).exist)
    except Exception:  # noqa: BLE001 - no CUDA runtime loaded
        return False


# ---- lowering ----------------------------------------------------------------------------
@dataclass
class Launch:
    """One device function of a kernel: its name, grid and block, and its pointer parameters
    as (name of the kernel's buffer, dtype, elements) in the order the CUDA function takes them."""
    name: str
    grid: tuple[int, int, int]
    block: tuple[int, int, int]
    params: list[tuple[str, str, int | None]]


@dataclass
class Kernel:
    name: str  # the PrimFunc, named after its IR node (k<N>_<op>)
    rule: str  # the dlight rule that scheduled it
    plain: object  # the unscheduled PrimFunc
    launches: list[Launch]


def _extents(script: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    ext = dict(re.findall(r'T\.launch_thread\("(\w+\.\w)", (\d+)\)', script))
    return (tuple(int(ext.get(f"blockIdx.{a}", 1)) for a in "xyz"),
            tuple(int(ext.get(f"threadIdx.{a}", 1)) for a in "xyz"))


def _pointer_params(name: str, dev_func, script: str) -> list[tuple[str, str, int | None]]:
    """(buffer name, dtype, elements) of each parameter of a device function; the elements come
    from the function's buffer declarations (None when it declares none for a pointer)."""
    sizes = {}
    for shape, ptr in re.findall(r"= T\.decl_buffer\(\(([^)]*)\),[^\n]*?data=(\w+)", script):
        sizes[ptr] = int(np.prod([int(s) for s in shape.split(",") if s.strip()]))
    params = []
    for p in dev_func.params:
        ty = p.ty
        if not hasattr(ty, "element_type"):
            raise EdgecError(f"{name}: the device function takes a scalar parameter '{p.name}' (dynamic shapes?); "
                             "the CPU check of GPU kernels handles pointer parameters only")
        params.append((p.name, str(ty.element_type.dtype), sizes.get(p.name)))
    return params


def lower_kernel(name: str, scheduled, tvm_target):
    """The device functions of one scheduled PrimFunc in launch order, and their IRModules."""
    import tvm
    from tvm import tirx
    from tvm.tirx.build import split_host_device_mods
    mod = tvm.IRModule({name: scheduled.with_attr("global_symbol", name)})
    with tvm_target:
        mod = tirx.transform.BindTarget(tvm_target)(mod)
        mod = tirx.get_tir_pipeline("s_tir")[0](mod)
    host, devices = split_host_device_mods(mod)
    funcs = {gv.name_hint: f for d in devices.values() for gv, f in d.functions_items()}
    host_text = "\n".join(f.script() for _, f in host.functions_items())

    def first_call(kernel: str) -> int:
        found = host_text.find(f'"{kernel}"')
        if found < 0:
            raise EdgecError(f"{name}: the host function never launches its device function {kernel}")
        return found
    launches = []
    for kernel in sorted(funcs, key=first_call):
        script = funcs[kernel].script()
        grid, block = _extents(script)
        launches.append(Launch(kernel, grid, block, _pointer_params(kernel, funcs[kernel], script)))
    return launches, list(devices.values())


def cuda_source(device_mods: list, tvm_target) -> str:
    """TVM's CUDA C for the device functions of `device_mods` (what nvcc or NVRTC compile)."""
    import tvm
    from tvm.s_tir.pipeline import finalize_device_passes
    mod = tvm.IRModule({})
    for d in device_mods:
        for gv, f in d.functions_items():
            mod[gv] = f
    with tvm_target:
        mod = finalize_device_passes()(mod)
        # Only the source is wanted: once TVM's CUDA runtime library is loaded (by a CUDA build in
        # this process) the codegen calls the compile callback, so for this call the callback
        # compiles nothing (the bytes it returns are never loaded).
        import tvm_ffi
        callback = tvm_ffi.get_global_func("tvm_callback_cuda_compile", allow_missing=True)
        tvm_ffi.register_global_func("tvm_callback_cuda_compile", lambda code: code.encode(), override=True)
        try:
            return tvm.get_global_func("target.build.cuda")(mod, tvm_target).inspect_source("cuda")
        finally:
            if callback is None:
                tvm_ffi.remove_global_func("tvm_callback_cuda_compile")
            else:
                tvm_ffi.register_global_func("tvm_callback_cuda_compile", callback, override=True)


# ---- the g++ build -----------------------------------------------------------------------
def _shim_files() -> bytes:
    return b"".join(p.read_bytes() for p in sorted(SHIM_DIR.rglob("*.h")))


WAITS = re.compile(r"__syncthreads|__shfl|__syncwarp")  # what needs a fiber per CUDA thread
# the definition (not the prototype) of a device function
KERNEL_START = re.compile(r'^extern "C" __global__ void (?:__launch_bounds__\(\d+\) )?(\w+)\(.*\) \{$', re.M)


def split_source(source: str) -> tuple[str, dict[str, str]]:
    """TVM's CUDA C as (the preamble before the first device function, {device function: its text})."""
    starts = list(KERNEL_START.finditer(source))
    if not starts:
        return source, {}
    ends = [m.start() for m in starts[1:]] + [len(source)]
    return source[:starts[0].start()], {m.group(1): source[m.start():end] for m, end in zip(starts, ends)}


def _unit(preamble: str, functions: dict[str, str]) -> str:
    """One translation unit: the preamble, device functions and a C launcher for each."""
    for name, text in functions.items():
        if re.search(r"\basm\b|__asm__", text):
            raise EdgecError(f"{name}: the CUDA source has inline PTX (asm), which the CPU check does not emulate")
        if "wmma::" in text or "nvcuda" in text:
            raise EdgecError(f"{name}: the CUDA source uses tensor cores (wmma), which the CPU check does not emulate")
    # `__shared__ alignas(16) float x[..]`: in C++ the alignment comes before the storage class
    code = [re.sub(r"__shared__\s+alignas\((\d+)\)", r"alignas(\1) __shared__", preamble + "".join(functions.values()))]
    for k, text in functions.items():
        fibers = "true" if WAITS.search(text) else "false"
        code.append(f"static void body_{k}(void** a) {{ cucpu_call({k}, a); }}\n"
                    f'extern "C" int launch_{k}(void** a, unsigned gx, unsigned gy, unsigned gz, '
                    f"unsigned bx, unsigned by, unsigned bz) "
                    f"{{ return cucpu::launch(body_{k}, a, dim3{{gx, gy, gz}}, dim3{{bx, by, bz}}, {fibers}); }}")
    return "\n".join(code) + "\n"


def _run(cmd: list[str], what: str) -> None:
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise ToolError(f"g++ failed on {what}:\n{r.stderr[-3000:]}")


def build_library(source: str, groups: list[list[str]], jobs: int | None = None) -> ctypes.CDLL:
    """`source` (TVM's CUDA C) compiled with g++ against the shim into one shared library, with
    a C launcher `launch_<f>` per device function f. `groups`: the device functions of each
    translation unit (one per kernel). Objects and library are cached under
    ~/.cache/edgec/cuda-cpu by the hash of everything that goes in; units compile on `jobs`
    threads (default: every core)."""
    from .build import _map
    from .bundle import cache_root
    compiler = gxx()
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True).stdout
    salt = _shim_files() + version.encode() + " ".join(GXX_FLAGS).encode()
    preamble, functions = split_source(source)
    missing = [f for g in groups for f in g if f not in functions]
    if missing:
        raise EdgecError(f"no device function {', '.join(missing)} in the CUDA source")
    work = cache_root() / "cuda-cpu"
    work.mkdir(parents=True, exist_ok=True)
    tag = f"{os.getpid()}.{threading.get_ident()}"

    def compile_unit(group: list[str]) -> Path:
        text = _unit(preamble, {f: functions[f] for f in group})
        obj = work / f"{hashlib.sha256(text.encode() + salt).hexdigest()[:24]}.o"
        if not obj.exists():
            src, tmp = obj.with_suffix(f".{tag}.cc"), obj.with_suffix(f".{tag}.tmp")
            src.write_text(text)
            _run([compiler, *GXX_FLAGS, "-c", f"-I{SHIM_DIR / 'include'}", "-include", str(SHIM), "-o", str(tmp),
                  str(src)], f"TVM's CUDA source of {', '.join(group)} (kept at {src})")
            os.replace(tmp, obj)
            src.unlink()
        return obj
    error_unit = 'extern "C" const char* cucpu_error() { return cucpu::g_error; }\n'
    objects = _map(compile_unit, [*groups], jobs)
    err_obj = work / f"{hashlib.sha256(error_unit.encode() + salt).hexdigest()[:24]}.o"
    if not err_obj.exists():
        src, tmp = err_obj.with_suffix(f".{tag}.cc"), err_obj.with_suffix(f".{tag}.tmp")
        src.write_text(error_unit)
        _run([compiler, *GXX_FLAGS, "-c", "-include", str(SHIM), "-o", str(tmp), str(src)], "the shim")
        os.replace(tmp, err_obj)
        src.unlink()
    objects.append(err_obj)
    lib = work / f"{hashlib.sha256(''.join(o.name for o in objects).encode()).hexdigest()[:24]}.so"
    if not lib.exists():
        tmp = lib.with_suffix(f".{tag}.tmp")
        _run([compiler, "-shared", "-o", str(tmp), *map(str, objects)], "linking the kernels")
        os.replace(tmp, lib)
    loaded = ctypes.CDLL(str(lib))
    loaded.cucpu_error.restype = ctypes.c_char_p
    return loaded


# ---- running -----------------------------------------------------------------------------
class _Guarded:
    """A buffer with a guard zone of GUARD_BYTES on each side (filled with GUARD_BYTE)."""

    def __init__(self, array: np.ndarray):
        self.dtype, self.shape = array.dtype, array.shape
        n = array.nbytes
        self.raw = np.full(GUARD_BYTES * 2 + n, GUARD_BYTE, np.uint8)
        self.raw[GUARD_BYTES:GUARD_BYTES + n] = np.frombuffer(np.ascontiguousarray(array).tobytes(), np.uint8)
        self.array = self.raw[GUARD_BYTES:GUARD_BYTES + n].view(self.dtype).reshape(self.shape)

    @property
    def pointer(self) -> ctypes.c_void_p:
        return ctypes.c_void_p(self.array.ctypes.data)

    def guards_intact(self) -> bool:
        return bool((self.raw[:GUARD_BYTES] == GUARD_BYTE).all() and (self.raw[-GUARD_BYTES:] == GUARD_BYTE).all())


def unwritten(shape, dtype) -> np.ndarray:
    """What an output holds before a kernel runs: NaN for floats, 0x5a bytes otherwise."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return np.full(shape, np.nan, dtype)
    return np.full(int(np.prod(shape)) * dtype.itemsize, UNWRITTEN_INT_BYTE, np.uint8).view(dtype).reshape(shape)


@dataclass
class KernelCheck:
    """One kernel's CPU run against its unscheduled version."""
    name: str
    rule: str
    launches: list[Launch]
    dtype: str  # of its (first) output
    abs_error: float = 0.0
    rel_error: float = 0.0  # abs_error over max |expected|
    tolerance: float = 0.0
    problems: list[str] = field(default_factory=list)  # out-of-bounds writes, writes to inputs, launch errors
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.problems and self.rel_error <= self.tolerance

    def describe(self) -> str:
        shape = ", ".join(f"{launch.name} grid={list(launch.grid)} block={list(launch.block)}" for launch in self.launches)
        verdict = "ok" if self.ok else "FAILED: " + ("; ".join(self.problems) or
                                                     f"relative error {self.rel_error:.2e} > {self.tolerance:.0e}")
        return f"{self.name:28s} {self.rule:24s} rel err {self.rel_error:.2e}  {verdict}  ({shape})"


@dataclass
class CpuCheckReport:
    target: str
    kernels: list[KernelCheck]
    outputs: dict[str, np.ndarray]
    seconds: dict[str, float] = field(default_factory=dict)
    gpu_here: bool = False  # whether this machine has a CUDA GPU (the check ran on the CPU all the same)

    @property
    def ok(self) -> bool:
        return all(k.ok for k in self.kernels)

    @property
    def failed(self) -> list[KernelCheck]:
        return [k for k in self.kernels if not k.ok]

    def worst(self) -> KernelCheck | None:
        return max(self.kernels, key=lambda k: k.rel_error, default=None)

    def summary(self) -> str:
        worst = self.worst()
        where = ("a GPU is here, but running the Jetson build on it is not implemented" if self.gpu_here
                 else "no GPU here")
        line = f"GPU kernels checked on the CPU ({where}): {len(self.kernels)} kernels"
        if worst is not None:
            line += f", worst relative error {worst.rel_error:.2e} ({worst.name})"
        if self.failed:
            return line + "; FAILED: " + "; ".join(
                f"{k.name}: {'; '.join(k.problems) or f'relative error {k.rel_error:.2e} > {k.tolerance:.0e}'}"
                for k in self.failed)
        return line + ", every kernel within tolerance of its unscheduled version"

    def format(self) -> str:
        return "\n".join([*(k.describe() for k in self.kernels), self.summary()])


Scheduler = Callable[[object, object], tuple]


class CudaOnCpu:
    """The CUDA kernels of `graph` (optimized, as the compile driver builds it) for the CUDA
    target `target`, compiled for this CPU (see the module docstring).

    Negative controls: `edit_source(source) -> source` changes the CUDA C before it is compiled,
    `blocks` {device function: (x, y, z)} launches a device function with another block size, and
    `schedule(func, tvm_target) -> (func, rule)` replaces `schedule_gpu_func`."""

    def __init__(self, graph, target, edit_source: Callable[[str], str] | None = None,
                 blocks: dict[str, tuple[int, int, int]] | None = None, schedule: Scheduler | None = None):
        import tvm
        from tvm import relax, tirx
        from .lower import lower_graph
        from .schedules.gpu import gpu_pipeline, schedule_gpu_func
        if target.kind != "cuda":
            raise EdgecError(f"target {target.name} is not a CUDA target; its kernels are not GPU kernels")
        self.graph, self.target = graph, target
        self.seconds: dict[str, float] = {}
        tvm_target = target.tvm_target()
        start = time.perf_counter()
        with tvm_target:
            self.module = gpu_pipeline(target, schedule=False)(lower_graph(graph, target))
        self.main = self.module["main"]
        if not isinstance(self.main, relax.Function):
            raise EdgecError("the lowered module has no Relax main function")
        from .build import _map
        funcs = [(gv.name_hint, f) for gv, f in self.module.functions_items() if isinstance(f, tirx.PrimFunc)]

        def prepare(item):
            name, func = item
            scheduled, rule = (schedule or schedule_gpu_func)(func, tvm_target)
            if scheduled is None:
                raise EdgecError(f"{target.name}: no GPU schedule for kernel {name} ({rule})")
            launches, devs = lower_kernel(name, scheduled, tvm_target)
            if not launches:
                raise EdgecError(f"{name}: scheduled by {rule} but lowered to no device function; "
                                 "TVM would run it as host code")
            for launch in launches:
                if blocks and launch.name in blocks:
                    launch.block = tuple(blocks[launch.name])
            return Kernel(name, rule, func, launches), devs
        prepared = _map(prepare, funcs, None)
        self.kernels: dict[str, Kernel] = {k.name: k for k, _ in prepared}
        device_mods = [d for _, devs in prepared for d in devs]
        self.source = cuda_source(device_mods, tvm_target)
        if edit_source is not None:
            self.source = edit_source(self.source)
        self.seconds["lower"] = time.perf_counter() - start
        start = time.perf_counter()
        names = [[launch.name for launch in k.launches] for k in self.kernels.values()]
        units = [sum(names[i:i + KERNELS_PER_UNIT], []) for i in range(0, len(names), KERNELS_PER_UNIT)]
        self.library = build_library(self.source, units)
        self.seconds["g++"] = time.perf_counter() - start
        start = time.perf_counter()
        llvm = tvm.target.Target({"kind": "llvm"})
        built = _map(lambda k: tvm.tirx.build(tvm.IRModule({k.name: k.plain.with_attr("global_symbol", k.name)}),
                                              target=llvm), list(self.kernels.values()), None)
        self.reference = dict(zip(self.kernels, built))
        self.seconds["llvm"] = time.perf_counter() - start

    # -- one kernel
    def run_kernel(self, name: str, inputs: list[np.ndarray], outputs: list[tuple[tuple, str]]):
        """Outputs of kernel `name` on the CPU build of its CUDA code, and its KernelCheck against
        the unscheduled kernel on the same inputs. `outputs`: (shape, dtype) of each."""
        import tvm
        kernel = self.kernels[name]
        params = [p.name for p in kernel.plain.params]
        if len(params) != len(inputs) + len(outputs):
            raise EdgecError(f"{name}: called with {len(inputs)} inputs and {len(outputs)} outputs, "
                             f"but it has {len(params)} parameters")
        start = time.perf_counter()
        buffers = {f"{p}_ptr": _Guarded(a) for p, a in zip(params, inputs)}
        outs = [_Guarded(unwritten(shape, dtype)) for shape, dtype in outputs]
        buffers.update({f"{p}_ptr": g for p, g in zip(params[len(inputs):], outs)})
        check = KernelCheck(name, kernel.rule, kernel.launches, outputs[0][1] if outputs else "")
        for launch in kernel.launches:
            pointers = []
            for pname, dtype, n in launch.params:
                if pname not in buffers:  # a global workspace between the device functions of one kernel
                    if n is None:
                        raise EdgecError(f"{launch.name}: parameter {pname} is neither a buffer of {name} "
                                         "nor declared with a size")
                    buffers[pname] = _Guarded(unwritten((n,), dtype))
                pointers.append(buffers[pname].pointer)
            argv = (ctypes.c_void_p * len(pointers))(*pointers)
            rc = getattr(self.library, f"launch_{launch.name}")(argv, *launch.grid, *launch.block)
            if rc:
                check.problems.append(f"{launch.name}: {self.library.cucpu_error().decode()}")
                break
        for pname, g in buffers.items():
            if not g.guards_intact():
                check.problems.append(f"out-of-bounds write past buffer {pname[:-4]} of {name}")
        for p, a in zip(params, inputs):
            if not np.array_equal(buffers[f"{p}_ptr"].array, a, equal_nan=a.dtype.kind == "f"):
                check.problems.append(f"{name} wrote to its input {p}")
        got = [g.array.copy() for g in outs]
        check.seconds = time.perf_counter() - start

        args = [tvm.runtime.tensor(np.ascontiguousarray(a)) for a in inputs]
        args += [tvm.runtime.tensor(unwritten(shape, dtype)) for shape, dtype in outputs]
        self.reference[name][name](*args)
        want = [a.numpy() for a in args[len(inputs):]]
        from edgec.verify import compare
        for w, g in zip(want, got):
            err = compare(g, w)
            check.abs_error, check.rel_error = max(check.abs_error, err.abs), max(check.rel_error, err.rel)
        check.tolerance = KERNEL_RTOL.get(check.dtype, 0.0)
        return got, check

    # -- the model
    def run(self, feeds: dict[str, np.ndarray]) -> CpuCheckReport:
        """Run the Relax main function binding by binding (call_tir on the CPU build, reshape as a
        numpy reshape), checking every kernel; outputs by graph output name."""
        import tvm
        from tvm import relax
        call_tir = _op("relax.call_tir")
        reshape = _op("relax.reshape")
        env: dict = {}
        for p, v in zip(self.main.params, self.graph.inputs):
            env[p] = np.ascontiguousarray(feeds[v.name])
        checks = []
        start = time.perf_counter()

        def value(expr):
            if isinstance(expr, tvm.ir.expr.Constant):
                return expr.value.numpy()
            if isinstance(expr, relax.Tuple):
                return tuple(value(f) for f in expr.fields)
            if isinstance(expr, relax.TupleGetItem):
                return value(expr.tuple_value)[expr.index]
            if isinstance(expr, relax.Var):
                return env[expr]
            if isinstance(expr, relax.Call) and expr.op.same_as(call_tir):
                if len(expr.args) > 2:
                    raise EdgecError(f"{expr.args[0].name_hint}: call_tir with shape variables is not supported")
                args = expr.args[1]
                inputs = [value(a) for a in (args.fields if isinstance(args, relax.Tuple) else [args])]
                info = expr.ty
                fields = list(info.fields) if isinstance(info, relax.TupleType) else [info]
                outs = [(tuple(int(d) for d in f.shape.values), str(f.dtype)) for f in fields]
                got, check = self.run_kernel(expr.args[0].name_hint, inputs, outs)
                checks.append(check)
                return tuple(got) if isinstance(info, relax.TupleType) else got[0]
            if isinstance(expr, relax.Call) and expr.op.same_as(reshape):
                shape = tuple(int(d) for d in expr.ty.shape.values)
                return value(expr.args[0]).reshape(shape)
            what = expr.op.name if isinstance(expr, relax.Call) and hasattr(expr.op, "name") else type(expr).__name__
            raise EdgecError(f"the CPU check of GPU kernels cannot run '{what}' in the Relax main function")

        body = self.main.body
        for block in body.blocks:
            for binding in block.bindings:
                env[binding.var] = value(binding.value)
        result = value(body.body)
        result = result if isinstance(result, tuple) else (result,)
        outputs = dict(zip(self.graph.output_names, (np.asarray(r) for r in result)))
        seconds = {**self.seconds, "run": time.perf_counter() - start}
        return CpuCheckReport(self.target.name, checks, outputs, seconds)


def _op(name: str):
    import tvm
    return tvm.ir.Op.get(name)


def check_on_cpu(graph, target, feeds: dict[str, np.ndarray]) -> CpuCheckReport:
    """Run the optimized `graph`'s CUDA kernels for `target` on the CPU on `feeds`, checking each.
    On a machine with a GPU the check runs on the CPU too (running there is not implemented), and
    the report says so."""
    report = CudaOnCpu(graph, target).run(feeds)
    report.gpu_here = gpu_here()
    return report
