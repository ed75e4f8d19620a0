"""The CUDA toolchain of a build: which compiler makes the SASS, and TVM's CUDA runtime module.

TVM embeds compiled kernels only when its CUDA runtime library (`libtvm_runtime_cuda.so`) is
loaded, and that library links `libcuda.so.1`, which a machine without an NVIDIA driver lacks:
there TVM silently keeps the CUDA source instead (DESIGN.md section 4). `load_cuda_runtime()`
loads the real driver library when there is one, else a stub of the few `cu*` symbols the
runtime library needs (built once with the host C compiler into ~/.cache/edgec), and then TVM's
CUDA runtime library. The stub is never called by a build: it only lets the library load.
`build_stub_libcuda` builds such a stub with any C compiler (the Jetson bundle's load test
builds an aarch64 one that reports an old driver, tests/targets/test_jetson_bundle.py).

`cuda_compiler(target)` picks the compiler for the target's architecture: nvcc where it is
installed and supports the architecture (nvcc 13 builds sm_75 and newer; nvcc 12 sm_50 and
newer), else NVRTC from PyPI (`pip install 'edgec[cuda]'`: NVRTC 12.9, which builds sm_50 to
sm_90, sm_100 and sm_120) where it supports it, else a ToolError saying what to install.
`compiling_for(target)` makes TVM's CUDA compile callback use that compiler for the target's
architecture, SASS only (no PTX, so nothing is left for the board to compile).

NVRTC compiles TVM's kernels against the CUDA headers: the `cuda` extra's header packages
(`nvidia-cuda-runtime-cu12`, `nvidia-cuda-cccl-cu12`, and `nvidia-cuda-nvcc-cu12` for `crt/`)
are merged, as symbolic links, into one `include/` directory under ~/.cache/edgec
(`nvrtc_cuda_path()`), which TVM reads as `$CUDA_PATH/include`; CUDA_PATH is set for the
duration of each compile call only.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import hashlib
import importlib.util
import os
import re
import shutil
import subprocess
import threading
from pathlib import Path

from edgec.errors import ToolError

from .bundle import cache_root

# The driver API symbols libtvm_runtime_cuda.so links (nm -D --undefined-only); each stub returns
# CUDA_ERROR_NO_DEVICE (100).
STUB_SYMBOLS = ("cuDeviceGetName", "cuFuncSetAttribute", "cuGetErrorName", "cuGetErrorString", "cuLaunchKernelEx",
                "cuModuleGetFunction", "cuModuleLoadData", "cuModuleUnload", "cuTensorMapEncodeTiled")


def stub_libcuda_source(driver_version: int | None = None) -> str:
    """C source of a stub libcuda.so.1 defining STUB_SYMBOLS. With `driver_version` (1000 * major
    + 10 * minor, as the driver API counts: 12000 is CUDA 12.0) it also has what the CUDA runtime
    (libcudart) asks the driver first: cuInit, which succeeds, and cuDriverGetVersion, which
    reports that version; a version older than the runtime's makes it fail with
    cudaErrorInsufficientDriver."""
    src = "".join(f"int {name}(void) {{ return 100; }}\n" for name in STUB_SYMBOLS)
    if driver_version is not None:
        src += ("int cuInit(unsigned int flags) { (void)flags; return 0; }\n"
                f"int cuDriverGetVersion(int *version) {{ *version = {int(driver_version)}; return 0; }}\n")
    return src


def build_stub_libcuda(cc: list[str] | tuple[str, ...], out: Path, driver_version: int | None = None) -> Path:
    """Compile `stub_libcuda_source(driver_version)` with the C compiler command `cc` (the host's,
    or an aarch64 cross compiler's) into the shared library `out` (soname libcuda.so.1); the file
    appears complete or not at all."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.tmp{os.getpid()}"
    src = tmp.with_suffix(".c")
    src.write_text(stub_libcuda_source(driver_version))
    try:
        r = subprocess.run([*cc, "-shared", "-fPIC", "-Wl,-soname,libcuda.so.1", "-o", str(tmp), str(src)],
                           capture_output=True, text=True)
        if r.returncode:
            raise ToolError(f"building the stub libcuda failed: {r.stderr.strip()[-500:]}")
        os.replace(tmp, out)
    finally:
        src.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)
    return out


def _stub_libcuda() -> Path:
    """A stub libcuda.so.1 for this machine, built once."""
    out = cache_root() / "cuda-stub" / "libcuda.so.1"
    if out.exists():
        return out
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        raise ToolError("building for a CUDA target on a machine without an NVIDIA driver needs a C compiler "
                        "for a stub libcuda (apt-get install gcc)")
    return build_stub_libcuda([cc], out)


_LOADED: list[str] = []
CUDART = "libcudart.so.13"  # what TVM's CUDA runtime library links


def _load_cudart() -> None:
    """Make libcudart.so.13 loadable for TVM's CUDA runtime library: the machine's (a CUDA 13
    toolkit on the loader's path) when there is one, else the `cuda` extra's PyPI
    nvidia-cuda-runtime 13 (nvidia/cu13/lib), loaded by path so the loader finds it by its soname."""
    try:
        ctypes.CDLL(CUDART, mode=ctypes.RTLD_GLOBAL)
        return
    except OSError:
        pass
    try:
        spec = importlib.util.find_spec("nvidia.cu13")
    except ModuleNotFoundError:
        return
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "lib" / CUDART).is_file():
            ctypes.CDLL(str(Path(location) / "lib" / CUDART), mode=ctypes.RTLD_GLOBAL)
            return


def load_cuda_runtime() -> str:
    """Load TVM's CUDA runtime library (once); returns "driver" when the machine's libcuda was
    used, "stub" when the stub was."""
    if _LOADED:
        return _LOADED[0]
    from tvm.base import _LOADED_LIBS
    if "tvm_runtime_cuda" in _LOADED_LIBS:  # TVM found a driver when it was imported
        _LOADED.append("driver")
        return "driver"
    try:
        ctypes.CDLL("libcuda.so.1", mode=ctypes.RTLD_GLOBAL)
        how = "driver"
    except OSError:
        ctypes.CDLL(str(_stub_libcuda()), mode=ctypes.RTLD_GLOBAL)
        how = "stub"
    _load_cudart()
    from tvm_ffi.libinfo import load_lib_ctypes
    runtime_dir = Path(_LOADED_LIBS["tvm_runtime"]._name).resolve().parent
    try:
        _LOADED_LIBS["tvm_runtime_cuda"] = load_lib_ctypes(package="tvm", target_name="tvm_runtime_cuda",
                                                           extra_lib_paths=[runtime_dir], mode="RTLD_LOCAL")
    except (OSError, RuntimeError) as e:
        raise ToolError(f"TVM's CUDA runtime library does not load ({e}); it needs the CUDA 13 runtime "
                        f"libcudart.so.13: install the CUDA toolkit, or {INSTALL_NVRTC} "
                        "(its nvidia-cuda-runtime 13.0)") from None
    _LOADED.append(how)
    return how


def nvcc_path() -> str | None:
    """nvcc on PATH, under $CUDA_PATH or under /usr/local/cuda."""
    found = shutil.which("nvcc")
    if found:
        return found
    for root in (os.environ.get("CUDA_PATH"), "/usr/local/cuda"):
        if root and (Path(root) / "bin" / "nvcc").is_file():
            return str(Path(root) / "bin" / "nvcc")
    return None


def nvcc_version(nvcc: str) -> tuple[int, int]:
    """(major, minor) of `nvcc --version`; (0, 0) when it does not run or names no release."""
    try:
        out = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout
    except OSError:
        return 0, 0
    m = re.search(r"release (\d+)\.(\d+)", out)
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def nvcc_supports(version: tuple[int, int], sm: int) -> bool:
    """Whether an nvcc of `version` builds SASS for sm_`sm`: CUDA 13 builds sm_75 and newer, CUDA
    12 sm_50 to sm_100 and sm_120 (Thor's sm_110 is CUDA 13's name for it; 12.x called it sm_101)."""
    if version[0] >= 13:
        return sm >= 75
    return version[0] == 12 and sm >= 50 and sm != 110


# The PyPI packages whose include/ directories NVRTC compiles TVM's kernels against (the module
# names of the `cuda` extra's nvidia-cuda-runtime-cu12, -cccl-cu12 and -nvcc-cu12).
NVRTC_HEADER_PACKAGES = ("nvidia.cuda_runtime", "nvidia.cuda_cccl", "nvidia.cuda_nvcc")
INSTALL_NVRTC = "pip install 'edgec[cuda]'"


@functools.cache
def nvrtc_archs() -> tuple[tuple[int, int], tuple[int, ...]] | str:
    """((major, minor) version, SM numbers it builds) of the NVRTC that cuda-bindings loads, or
    why there is none usable (a sentence)."""
    try:
        from cuda.bindings import nvrtc
    except ImportError:
        return "NVRTC is not installed (no cuda-bindings)"
    try:
        _, major, minor = nvrtc.nvrtcVersion()
        _, archs = nvrtc.nvrtcGetSupportedArchs()
    except Exception as e:  # the library is missing or does not load: cuda-bindings raises its own types
        return f"cuda-bindings is installed but NVRTC does not load ({str(e).strip().splitlines()[0][:200]})"
    return (int(major), int(minor)), tuple(int(a) for a in archs)


def _package_include(module: str) -> Path | None:
    try:
        spec = importlib.util.find_spec(module)
    except ModuleNotFoundError:  # no nvidia package at all
        return None
    for location in (spec.submodule_search_locations or []) if spec else []:
        if (Path(location) / "include").is_dir():
            return Path(location) / "include"
    return None


def nvrtc_cuda_path() -> Path:
    """A CUDA_PATH for TVM's NVRTC compile: a directory under cache_root() whose include/ holds a
    symbolic link to each entry of the header packages' include/ directories (built once per
    set of package directories and their entries; a ToolError when one is not installed)."""
    includes = [_package_include(m) for m in NVRTC_HEADER_PACKAGES]
    missing = [m for m, inc in zip(NVRTC_HEADER_PACKAGES, includes) if inc is None]
    if missing:
        raise ToolError(f"NVRTC needs the CUDA headers of {', '.join(missing)}, which are not installed; "
                        f"install them with {INSTALL_NVRTC}")
    entries = [(inc.resolve(), sorted(e.name for e in inc.iterdir() if not e.name.startswith("__")))
               for inc in includes]  # not __init__.py, __pycache__
    key = hashlib.sha256(repr(entries).encode()).hexdigest()[:12]  # the directories and what they hold
    root = cache_root() / f"nvrtc-headers-{key}"
    if (root / "include" / "cuda_runtime.h").exists():  # exists() follows the link: the package is still there
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = root.with_name(f"{root.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "include").mkdir(parents=True)
    for inc, names in entries:
        for name in names:
            link = tmp / "include" / name
            if not link.is_symlink():  # the packages share no names; the first one wins if they ever do
                link.symlink_to(inc / name)
    shutil.rmtree(root, ignore_errors=True)  # a stale one whose packages went away
    try:
        os.replace(tmp, root)
    except OSError:  # another process made it first
        shutil.rmtree(tmp, ignore_errors=True)
    return root


def nvrtc_problem(sm: int) -> str | None:
    """Why NVRTC cannot build SASS for sm_`sm` here (a sentence), or None when it can."""
    found = nvrtc_archs()
    if isinstance(found, str):
        return found
    (major, minor), archs = found
    if sm not in archs:
        return f"NVRTC {major}.{minor} does not build sm_{sm} (it builds sm_{', sm_'.join(map(str, archs))})"
    missing = [m for m in NVRTC_HEADER_PACKAGES if _package_include(m) is None]
    if missing:
        return f"NVRTC is installed but the CUDA headers of {', '.join(missing)} are not"
    return None


def nvrtc_available() -> bool:
    """Whether NVRTC is installed with the CUDA headers it needs (whatever architectures it builds)."""
    return not isinstance(nvrtc_archs(), str) and all(_package_include(m) for m in NVRTC_HEADER_PACKAGES)


def cuda_compiler(target) -> str:
    """"nvcc" or "nvrtc": the compiler that builds SASS for `target`'s architecture here."""
    nvcc = nvcc_path()
    if nvcc is not None and nvcc_supports(nvcc_version(nvcc), target.sm):
        return "nvcc"
    why_not_nvrtc = nvrtc_problem(target.sm)
    if why_not_nvrtc is None:
        return "nvrtc"
    version = nvcc_version(nvcc) if nvcc else None
    if version is None:
        found = "no nvcc was found (PATH, $CUDA_PATH, /usr/local/cuda)"
    elif version == (0, 0):
        found = f"nvcc at {nvcc} does not run (`nvcc --version` names no release)"
    else:
        found = f"nvcc {version[0]}.{version[1]} at {nvcc} does not build {target.cuda_arch}"
    raise ToolError(f"cannot build CUDA kernels for {target.name} ({target.cuda_arch}): {found}, and {why_not_nvrtc}; "
                    f"install NVRTC 12 with {INSTALL_NVRTC} (it builds sm_50 to sm_90, sm_100 and sm_120), "
                    "or the CUDA toolkit (nvcc 13 builds sm_75 and newer, nvcc 12 sm_50 and newer)")


_ENVIRON_LOCK = threading.Lock()


@contextlib.contextmanager
def _environ(**values: str):
    """os.environ with `values` set, for the block only (TVM's compile reads CUDA_PATH and PATH)."""
    with _ENVIRON_LOCK:
        old = {name: os.environ.get(name) for name in values}
        os.environ.update(values)
        try:
            yield
        finally:
            for name, value in old.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


@contextlib.contextmanager
def compiling_for(target):
    """Within the block, TVM's CUDA builds compile SASS for `target` with `cuda_compiler(target)`."""
    import tvm_ffi
    load_cuda_runtime()
    compiler = cuda_compiler(target)
    from tvm.support import nvcc  # registers TVM's own callback; ours replaces it for the block
    if compiler == "nvcc":
        # SASS for the one architecture, no PTX: nothing is left for the board's driver to compile;
        # uncompressed (nvcc 12.4+ may compress), so that targets/cubin.py can read its kernels.
        # TVM runs `nvcc` from PATH: put the one found first.
        fmt, arch = "fatbin", ["-gencode", f"arch=compute_{target.sm},code=sm_{target.sm}"]
        options = ["--no-compress"] if nvcc_version(nvcc_path()) >= (12, 4) else None
        nvcc_bin = str(Path(nvcc_path()).parent)
        env = {"PATH": os.pathsep.join([nvcc_bin, os.environ.get("PATH", "")]).rstrip(os.pathsep)}
    else:  # a cubin for sm_XX is SASS only
        fmt, arch, options = "cubin", target.cuda_arch, None
        env = {"CUDA_PATH": str(nvrtc_cuda_path())}

    def compile_cuda(code):
        with _environ(**env):
            return nvcc.compile_cuda(code, target_format=fmt, arch=arch, options=options, compiler=compiler)

    tvm_ffi.register_global_func("tvm_callback_cuda_compile", compile_cuda, override=True)
    try:
        yield compiler
    finally:
        tvm_ffi.register_global_func("tvm_callback_cuda_compile", nvcc.tvm_callback_cuda_compile, override=True)
