"""The deployable bundle: an artifact directory that runs on an aarch64 board with nothing installed.

`write_bundle(DIR)` adds to a compiled aarch64 artifact (model.so, manifest.json, model.eir):

    DIR/libtvm_runtime.so   the aarch64 TVM runtime of the pinned apache-tvm wheel
    DIR/libtvm_ffi.so       the aarch64 TVM FFI library of the pinned apache-tvm-ffi wheel
    DIR/edgec-run           the C++ runner (targets/runtime/edgec_run.cc) cross-built for aarch64,
                            with RUNPATH $ORIGIN so it finds the libraries beside it
    DIR/README.txt          how to run it on the board

and for a CUDA artifact (a Jetson target), which edgec-run runs on the GPU:

    DIR/libtvm_runtime_cuda.so  TVM's CUDA runtime, from the same apache-tvm wheel; it links
                                libcudart.so.13 and the driver's libcuda.so.1
    DIR/libcudart.so.13         the CUDA 13.0 runtime of PyPI's aarch64 nvidia-cuda-runtime wheel
                                (redistributable), so the board needs only its driver: a CUDA 13
                                driver, which is JetPack 7's (`check_bundle_target`)

The runtime libraries come from PyPI's manylinux aarch64 wheels of the TVM versions installed here
and of CUDA_RUNTIME (`pip download`), are never committed, and are cached with the built runner in
`$XDG_CACHE_HOME/edgec/` (default `~/.cache/edgec/`). `runtime_dir()` and `cuda_runtime_dir()`
return those cache directories, fetching and building on first use; a failed download or a missing
cross compiler is a ToolError saying what to do.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from importlib import metadata
from pathlib import Path

from edgec.errors import EdgecError, ToolError

from .crosslink import Toolchain, elf_machine, find_toolchain

RUNNER = "edgec-run"
RUNTIME_LIBS = {"libtvm_runtime.so": ("apache-tvm", "tvm/lib/libtvm_runtime.so"),
                "libtvm_ffi.so": ("apache-tvm-ffi", "tvm_ffi/lib/libtvm_ffi.so")}
# The CUDA runtime a CUDA bundle carries: the major version libtvm_runtime_cuda.so of the pinned
# apache-tvm links (libcudart.so.13), at its first minor release, which any CUDA 13 driver runs.
CUDA_RUNTIME = ("nvidia-cuda-runtime", "13.0.96")
CUDA_MAJOR = 13
CUDA_LIBS = {"libtvm_runtime_cuda.so": ("apache-tvm", "tvm/lib/libtvm_runtime_cuda.so"),
             "libcudart.so.13": ("nvidia-cuda-runtime", "nvidia/cu13/lib/libcudart.so.13")}
RUNNER_SOURCE = Path(__file__).parent / "runtime" / "edgec_run.cc"
# manylinux tags tried in order when downloading the aarch64 wheels.
PLATFORMS = ["manylinux_2_28_aarch64", "manylinux_2_27_aarch64", "manylinux2014_aarch64"]


def cache_root() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "edgec"


def pinned_versions() -> dict[str, str]:
    """The installed versions of the TVM packages, which the aarch64 runtime must match."""
    return {pkg: metadata.version(pkg) for pkg in ("apache-tvm", "apache-tvm-ffi")}


def fetch_wheel(pkg: str, version: str, cache: Path | None = None) -> Path:
    """The manylinux aarch64 wheel of `pkg==version`: from the cache, else downloaded with pip into
    a temporary directory and moved into the cache (a rename, so concurrent fetches do not collide)."""
    cache = cache or cache_root() / "wheels"
    cache.mkdir(parents=True, exist_ok=True)
    pattern = pkg.replace("-", "_") + f"-{version}-*aarch64*.whl"
    cached = sorted(cache.glob(pattern))
    if cached:
        return cached[0]
    errors = []
    with tempfile.TemporaryDirectory(prefix=".download.", dir=cache) as tmp:
        for platform in PLATFORMS:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
                   "--platform", platform, "--python-version", "3.11", "-d", tmp, f"{pkg}=={version}"]
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            found = sorted(Path(tmp).glob(pattern))
            if proc.returncode == 0 and found:
                os.replace(found[0], cache / found[0].name)
                return cache / found[0].name
            errors.append(f"{' '.join(cmd)}:\n{proc.stdout.strip()[-600:]}")
    raise ToolError(f"could not download the aarch64 wheel of {pkg}=={version}; tried:\n" + "\n".join(errors))


def _extract_libs(wheels: dict[str, Path], dest: Path, libs: dict[str, tuple[str, str]] = RUNTIME_LIBS) -> None:
    for lib, (pkg, member) in libs.items():
        with zipfile.ZipFile(wheels[pkg]) as z:
            with z.open(member) as src, open(dest / lib, "wb") as out:
                shutil.copyfileobj(src, out)
        if elf_machine(dest / lib) != "aarch64":
            raise ToolError(f"{wheels[pkg].name}: {member} is not an aarch64 library")


def _include_dirs() -> list[str]:
    import tvm_ffi
    root = Path(tvm_ffi.__file__).parent
    dirs = [root / "include", root / "3rdparty" / "dlpack" / "include"]
    return [str(d) for d in dirs if d.is_dir()]


def build_runner(toolchain: Toolchain, libdir: Path, output: Path) -> None:
    """Cross-build edgec-run against the aarch64 libraries in `libdir`."""
    cmd = [*toolchain.cxx, "-std=c++17", "-O2", "-o", str(output), str(RUNNER_SOURCE),
           *[f"-I{d}" for d in _include_dirs()], f"-L{libdir}",
           "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi", "-Wl,--as-needed", "-ldl", "-Wl,-rpath,$ORIGIN"]
    if toolchain.name == "zig":
        # zig links its own libc++ statically; libtvm_runtime's libstdc++ comes from the board.
        cmd += ["-Wl,--allow-shlib-undefined"]
    toolchain.run(cmd, "building edgec-run")


def _cached_dir(d: Path, files: list[str], fill) -> Path:
    """The cache directory `d` once it holds `files`: else `fill(tmp)` writes them into a
    temporary directory that is then renamed to `d` (so concurrent builds do not collide)."""
    if all((d / f).is_file() for f in files):
        return d
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".runtime.", dir=d.parent))
    try:
        fill(tmp)
        try:
            os.replace(tmp, d)
        except OSError:  # another process finished first: use its directory
            if not all((d / f).is_file() for f in files):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return d


def runtime_dir(toolchain: Toolchain | None = None) -> Path:
    """The cache directory holding the aarch64 runtime libraries and a built edgec-run."""
    tc = toolchain or find_toolchain(need_cxx=True)
    versions = pinned_versions()
    key = hashlib.sha256((RUNNER_SOURCE.read_bytes() + tc.name.encode() + json.dumps(versions).encode())).hexdigest()[:12]
    d = cache_root() / f"aarch64-runtime-tvm{versions['apache-tvm']}-ffi{versions['apache-tvm-ffi']}-{tc.name}-{key}"

    def fill(tmp: Path) -> None:
        _extract_libs({pkg: fetch_wheel(pkg, v) for pkg, v in versions.items()}, tmp)
        build_runner(tc, tmp, tmp / RUNNER)
    return _cached_dir(d, [*RUNTIME_LIBS, RUNNER], fill)


def cuda_runtime_dir() -> Path:
    """The cache directory holding the aarch64 CUDA libraries of a CUDA bundle (CUDA_LIBS)."""
    versions = {"apache-tvm": pinned_versions()["apache-tvm"], CUDA_RUNTIME[0]: CUDA_RUNTIME[1]}
    d = cache_root() / f"aarch64-cuda-runtime-tvm{versions['apache-tvm']}-cudart{CUDA_RUNTIME[1]}"
    return _cached_dir(d, list(CUDA_LIBS), lambda tmp: _extract_libs(
        {pkg: fetch_wheel(pkg, v) for pkg, v in versions.items()}, tmp, CUDA_LIBS))


def is_cuda_artifact(manifest: dict) -> bool:
    """Whether an artifact's kernels are CUDA kernels (its manifest's TVM target is a CUDA target;
    edgec-run applies the same rule)."""
    tvm_target = manifest.get("tvm_target")
    return isinstance(tvm_target, dict) and tvm_target.get("kind") == "cuda"


def check_bundle_target(target) -> None:
    """An EdgecError unless a bundle for `target` (an edgec.targets.Target) can run on its board
    as shipped: an ARM target, or a Jetson target with a JetPack release of CUDA_MAJOR (the
    bundle's TVM CUDA runtime needs that driver)."""
    if target.arch != "aarch64":
        raise EdgecError(f"--bundle needs an ARM target (--target arm-a72, ...) or a Jetson one (jetson-orin, ...); "
                         f"target '{target.name}' runs on {target.arch}")
    if target.kind == "cuda" and f"CUDA {CUDA_MAJOR}" not in (target.jetpack or ""):
        raise EdgecError(
            f"--bundle for {target.name}: the bundle's TVM CUDA runtime (PyPI's aarch64 apache-tvm) needs a "
            f"CUDA {CUDA_MAJOR} driver (JetPack 7), and {target.name} boards run {target.jetpack}; "
            f"compile without --bundle and load model.so with a TVM {pinned_versions()['apache-tvm']} runtime "
            "built on the board against its CUDA")


README = """\
edgec model bundle for {target} ({description})

Everything the model needs is in this directory: no Python, TVM or compiler on the board.
The board needs aarch64 Linux with glibc 2.28 or newer and libstdc++ (any current
Raspberry Pi OS, Debian or Ubuntu has them).

  ./edgec-run --random -n 20 -w 2              # time 20 runs on generated inputs
  ./edgec-run -o out {example}         # run on .npy inputs, write out/<output>.npy

Inputs (checked by edgec-run against manifest.json):
{inputs}
Outputs:
{outputs}
edgec-run prints the latency of each run and the median, min and max.
Copy the whole directory to the board, e.g. `scp -r {name} pi@raspberrypi.local:`.
"""


JETSON_README = """\
edgec model bundle for {target} ({description})

Everything the model needs is in this directory except the board's NVIDIA driver: no Python,
TVM, CUDA toolkit or compiler on the board. The kernels are {cuda_arch} code for the GPU, and
edgec-run runs them on GPU 0.

  ./edgec-run --random -n 20 -w 2              # time 20 runs on generated inputs
  ./edgec-run -o out {example}         # run on .npy inputs, write out/<output>.npy

Inputs (checked by edgec-run against manifest.json):
{inputs}
Outputs:
{outputs}
edgec-run copies the inputs to the GPU, prints the latency of each run (up to the end of its GPU
work) and the median, min and max, and copies the outputs back.
Copy the whole directory to the board, e.g. `scp -r {name} user@jetson.local:`.

Which JetPack: JetPack 7 (L4T R38, CUDA 13) as shipped, on a board it supports.
The TVM runtime here (libtvm_runtime_cuda.so of PyPI's aarch64 apache-tvm {tvm}) is built
against CUDA 13. Its CUDA runtime is in this directory (libcudart.so.13, CUDA {cudart}, from
PyPI's aarch64 nvidia-cuda-runtime), so the board needs only a CUDA 13 driver (libcuda.so.1, part
of JetPack/L4T), which JetPack 7 has. `cat /etc/nv_tegra_release` tells the release: R38 is
JetPack 7, R36 JetPack 6, R35 JetPack 5.

JetPack 5 and 6 (CUDA 11.4 and 12.x drivers) do not run this bundle: edgec-run stops with
  CUDA device init failed: cudaErrorInsufficientDriver (35): the board's driver is older than CUDA 13
There it would need a TVM {tvm} runtime built on the board against that JetPack's CUDA (TVM from
source with CUDA enabled) in place of libtvm_runtime.so, libtvm_runtime_cuda.so and
libtvm_ffi.so here, and libcudart.so.13 removed. edgec has not tried that, and the kernels were
compiled with a CUDA 13 toolchain, which an older driver may refuse as well.
"""


def _describe(entries: list[dict]) -> str:
    return "".join(f"  {e['name']}: {e['dtype']}{e['shape']}\n" for e in entries)


def write_bundle(path: str | Path, toolchain: Toolchain | None = None, name: str | None = None) -> Path:
    """Turn the aarch64 artifact at `path` into a self-contained bundle (see the module docstring);
    `name`: the directory's name in README.txt (default: its name now)."""
    from edgec.driver import Artifact
    from edgec.targets import get_target
    art = Artifact(path)
    if art.manifest.get("arch") != "aarch64":
        raise EdgecError(f"{art.path}: --bundle needs an ARM target (--target arm-a72, ...) or a Jetson one "
                         f"(jetson-orin, ...); this artifact is for '{art.manifest.get('target')}'")
    target = get_target(art.manifest["target"])
    check_bundle_target(target)
    cuda = is_cuda_artifact(art.manifest)
    rt = runtime_dir(toolchain)
    for f in [*RUNTIME_LIBS, RUNNER]:
        shutil.copy2(rt / f, art.path / f)
    if cuda:
        for f in CUDA_LIBS:
            shutil.copy2(cuda_runtime_dir() / f, art.path / f)
    example = " ".join(f"{e['name']}=FILE.npy" for e in art.manifest["inputs"])
    (art.path / "README.txt").write_text((JETSON_README if cuda else README).format(
        target=target.name, description=target.description, example=example, name=name or art.path.name,
        inputs=_describe(art.manifest["inputs"]), outputs=_describe(art.manifest["outputs"]),
        cuda_arch=target.cuda_arch, tvm=pinned_versions()["apache-tvm"], cudart=CUDA_RUNTIME[1]))
    return art.path


def is_bundle(path: str | Path) -> bool:
    p = Path(path)
    return all((p / f).is_file() for f in [*RUNTIME_LIBS, RUNNER])


def make_bundle(artifact) -> Path:
    """`write_bundle` for an edgec.driver.Artifact (or an artifact directory path)."""
    return write_bundle(getattr(artifact, "path", artifact))
