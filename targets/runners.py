"""Running aarch64 artifacts on this x86 machine under qemu user-mode emulation.

`run_artifact(artifact, arrays)` is what `edgec.driver.Artifact.run` calls for a non-host artifact:
it writes the inputs as .npy files, runs edgec-run (the bundle's own, or the cached one from
targets/bundle.py for a plain artifact) under

    qemu-aarch64 -cpu <the target's core> -L /usr/aarch64-linux-gnu edgec-run -d DIR ...

and reads the outputs back. `-cpu <exact core>` makes any instruction the core lacks a SIGILL,
so a passing run also shows that the code fits the core. Without qemu or the aarch64 C library
the error says what to install (`apt-get install qemu-user libc6-arm64-cross libstdc++6-arm64-cross`).
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgec.driver import output_files
from edgec.errors import EdgecError, ToolError

from .bundle import RUNNER, is_bundle, is_cuda_artifact, runtime_dir

QEMU = "qemu-aarch64"
SYSROOT = Path("/usr/aarch64-linux-gnu")
QEMU_HINT = "apt-get install qemu-user"
SYSROOT_HINT = "apt-get install libc6-arm64-cross libstdc++6-arm64-cross (or g++-aarch64-linux-gnu)"
RUN_TIMEOUT_S = 600


@dataclass
class RunResult:
    outputs: dict[str, np.ndarray]
    latencies_ms: list[float]  # per measured run, as printed by edgec-run (qemu wall time: not a benchmark)
    stdout: str


def qemu_path() -> str:
    path = shutil.which(QEMU)
    if path is None:
        raise ToolError(f"running aarch64 code on this machine needs qemu user-mode emulation: {QEMU_HINT}")
    if not (SYSROOT / "lib" / "ld-linux-aarch64.so.1").exists() or not list((SYSROOT / "lib").glob("libstdc++.so.6*")):
        raise ToolError(f"qemu needs the aarch64 C and C++ libraries in {SYSROOT}: {SYSROOT_HINT}")
    return path


@functools.lru_cache(maxsize=None)
def qemu_cpu_models() -> tuple[str, ...]:
    out = subprocess.run([qemu_path(), "-cpu", "help"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                         text=True).stdout
    return tuple(line.split()[0] for line in out.splitlines()[1:] if line.strip())


def qemu_cpu(target_name: str) -> str:
    """The qemu CPU model that runs exactly the instructions of the target's core."""
    from . import TARGETS
    wanted = TARGETS[target_name].qemu_cpus if target_name in TARGETS else ()
    if not wanted:
        raise EdgecError(f"target '{target_name}' is not an ARM target; qemu cannot run it")
    models = qemu_cpu_models()
    for model in wanted:
        if model in models:
            return model
    raise ToolError(f"this qemu-aarch64 has none of the CPU models {list(wanted)} for '{target_name}' "
                    f"(it has {', '.join(models)}); install a newer qemu-user")


def qemu_command(target_name: str, sysroot: Path = SYSROOT) -> list[str]:
    return [qemu_path(), "-cpu", qemu_cpu(target_name), "-L", str(sysroot)]


def runner_for(path: Path) -> Path:
    """The bundle's own edgec-run, or the cached one for a plain artifact directory."""
    return path / RUNNER if is_bundle(path) else runtime_dir() / RUNNER


def parse_latencies(stdout: str) -> list[float]:
    """The per-run times edgec-run prints as `run N: X ms`."""
    return [float(line.split(":")[1].split()[0]) for line in stdout.splitlines() if line.startswith("run ")]


def run_bundle(artifact, arrays: list[np.ndarray], runs: int = 1, warmup: int = 0,
               timeout_s: float = RUN_TIMEOUT_S) -> RunResult:
    """Run an aarch64 artifact under qemu on inputs in manifest order; outputs by name. The
    artifact's `threads` (None: TVM's default, every core; capped to the cores by `Artifact`) reach
    edgec-run as TVM_NUM_THREADS."""
    if artifact.manifest.get("arch") != "aarch64":
        raise EdgecError(f"{artifact.path}: artifacts for '{artifact.manifest.get('target')}' "
                         f"({artifact.manifest.get('arch')}) cannot run on this machine")
    if is_cuda_artifact(artifact.manifest):
        raise EdgecError(f"{artifact.path}: the kernels of '{artifact.manifest['target']}' run on the Jetson's GPU, "
                         "which qemu cannot emulate; run it on the board with the edgec-run of a bundle (edgec compile "
                         "--bundle)")
    cmd = qemu_command(artifact.manifest["target"])
    runner = runner_for(artifact.path)
    with tempfile.TemporaryDirectory(prefix="edgec-run.") as tmp:
        tmpdir = Path(tmp)
        files = []
        for i, a in enumerate(arrays):
            f = tmpdir / f"input{i}.npy"
            np.save(f, np.array(a, order="C"))  # ascontiguousarray would make 0-d inputs 1-d
            files.append(str(f))
        out_dir = tmpdir / "out"
        out_dir.mkdir()
        cmd += [str(runner), "-d", str(artifact.path.resolve()), "-n", str(runs), "-w", str(warmup),
                "-o", str(out_dir), *files]
        try:
            env = {**os.environ, "TVM_NUM_THREADS": str(artifact.threads)} if artifact.threads else None
            proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                  timeout=timeout_s, env=env)
        except subprocess.TimeoutExpired:
            raise ToolError(f"edgec-run under qemu did not finish in {timeout_s:.0f} s: {' '.join(cmd)}") from None
        if proc.returncode != 0:
            how = "was killed by SIGILL: the code uses an instruction the core lacks" if proc.returncode in (-4, 132) \
                else f"failed (exit status {proc.returncode})"
            raise ToolError(f"edgec-run under qemu {how}:\n{proc.stderr.strip()}\ncommand: {' '.join(cmd)}")
        names = [name for name, _ in artifact.outputs]
        outputs = {name: np.load(out_dir / file) for name, file in zip(names, output_files(names))}
    return RunResult(outputs, parse_latencies(proc.stdout), proc.stdout)


def run_artifact(artifact, arrays: list[np.ndarray]) -> dict[str, np.ndarray]:
    """Outputs of one run of a non-host artifact (Artifact.run calls this)."""
    return run_bundle(artifact, arrays).outputs
