"""The deployable bundle: an artifact directory that runs on an aarch64 board with nothing installed.

`write_bundle(DIR)` adds to a compiled aarch64 artifact (model.so, manifest.json, model.eir):

    DIR/libtvm_runtime.so   the aarch64 TVM runtime of the pinned apache-tvm wheel
    DIR/libtvm_ffi.so       the aarch64 TVM FFI library of the pinned apache-tvm-ffi wheel
    DIR/edgec-run           the C++ runner (targets/runtime/edgec_run.cc) cross-built for aarch64,
                            with RUNPATH $ORIGIN so it finds the two libraries beside it
    DIR/README.txt          how to run it on the board

The runtime libraries come from PyPI's manylinux aarch64 wheels of the TVM versions installed here
(`pip download`), are never committed, and are cached with the built runner in
`$XDG_CACHE_HOME/edgec/` (default `~/.cache/edgec/`). `runtime_dir()` returns that cache
directory, fetching and building on first use; a failed download or a missing cross compiler is
a ToolError saying what to do.
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


def _extract_libs(wheels: dict[str, Path], dest: Path) -> None:
    for lib, (pkg, member) in RUNTIME_LIBS.items():
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
           "-Wl,--no-as-needed", "-ltvm_runtime", "-ltvm_ffi", "-Wl,--as-needed", "-Wl,-rpath,$ORIGIN"]
    if toolchain.name == "zig":
        # zig links its own libc++ statically; libtvm_runtime's libstdc++ comes from the board.
        cmd += ["-Wl,--allow-shlib-undefined"]
    toolchain.run(cmd, "building edgec-run")


def runtime_dir(toolchain: Toolchain | None = None) -> Path:
    """The cache directory holding the aarch64 runtime libraries and a built edgec-run."""
    tc = toolchain or find_toolchain(need_cxx=True)
    versions = pinned_versions()
    key = hashlib.sha256((RUNNER_SOURCE.read_bytes() + tc.name.encode() + json.dumps(versions).encode())).hexdigest()[:12]
    d = cache_root() / f"aarch64-runtime-tvm{versions['apache-tvm']}-ffi{versions['apache-tvm-ffi']}-{tc.name}-{key}"
    if all((d / f).is_file() for f in [*RUNTIME_LIBS, RUNNER]):
        return d
    d.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".runtime.", dir=d.parent))
    try:
        _extract_libs({pkg: fetch_wheel(pkg, v) for pkg, v in versions.items()}, tmp)
        build_runner(tc, tmp, tmp / RUNNER)
        try:
            os.replace(tmp, d)
        except OSError:  # another process finished first: use its directory
            if not all((d / f).is_file() for f in [*RUNTIME_LIBS, RUNNER]):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return d


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


def _describe(entries: list[dict]) -> str:
    return "".join(f"  {e['name']}: {e['dtype']}{e['shape']}\n" for e in entries)


def write_bundle(path: str | Path, toolchain: Toolchain | None = None) -> Path:
    """Turn the aarch64 artifact at `path` into a self-contained bundle (see the module docstring)."""
    from edgec.driver import Artifact
    from edgec.targets import get_target
    art = Artifact(path)
    if art.manifest.get("arch") != "aarch64":
        raise EdgecError(f"{art.path}: --bundle needs an ARM target (--target arm-a72 ...); this artifact is "
                         f"for '{art.manifest.get('target')}'")
    rt = runtime_dir(toolchain)
    for f in [*RUNTIME_LIBS, RUNNER]:
        shutil.copy2(rt / f, art.path / f)
    target = get_target(art.manifest["target"])
    example = " ".join(f"{e['name']}=FILE.npy" for e in art.manifest["inputs"])
    (art.path / "README.txt").write_text(README.format(
        target=target.name, description=target.description, example=example, name=art.path.name,
        inputs=_describe(art.manifest["inputs"]), outputs=_describe(art.manifest["outputs"])))
    return art.path


def is_bundle(path: str | Path) -> bool:
    p = Path(path)
    return all((p / f).is_file() for f in [*RUNTIME_LIBS, RUNNER])


def make_bundle(artifact) -> Path:
    """`write_bundle` for an edgec.driver.Artifact (or an artifact directory path)."""
    return write_bundle(getattr(artifact, "path", artifact))
