"""Whether this machine can build and run ARM code: `needs_arm_build` skips a test that builds
(and links) a library for an ARM target when the cross toolchain is missing, `needs_arm_run` one
that also runs it under qemu when qemu-user is missing too; `cuda_build_problem(target)` says why a
Jetson target's library cannot be built here (no CUDA compiler for its SM, no linker)."""

import pytest

from edgec.errors import ToolError


def can_build_arm() -> bool:
    from edgec.targets import crosslink
    try:
        crosslink.find_toolchain(need_cxx=True)
        return True
    except ToolError:
        return False


def can_run_arm() -> bool:
    from edgec.targets import runners
    try:
        runners.qemu_path()
    except ToolError:
        return False
    return can_build_arm()


needs_arm_build = pytest.mark.skipif(not can_build_arm(), reason="needs an aarch64 cross compiler to link the "
                                     "library (apt-get install g++-aarch64-linux-gnu, or pip install ziglang)")
needs_arm_run = pytest.mark.skipif(not can_run_arm(), reason="needs qemu-user, the aarch64 libc in "
                                   "/usr/aarch64-linux-gnu and a cross compiler "
                                   "(apt-get install qemu-user g++-aarch64-linux-gnu)")


def cuda_build_problem(target_name: str) -> str | None:
    """Why this machine cannot build and link a library for the Jetson target `target_name`
    (TVM's CUDA runtime library, nvcc or NVRTC for its SM, an aarch64 linker), or None."""
    from edgec.targets import cuda, get_target
    if not can_build_arm():
        return ("needs an aarch64 linker for the host code (apt-get install g++-aarch64-linux-gnu, "
                "or pip install ziglang)")
    try:
        cuda.load_cuda_runtime()
        cuda.cuda_compiler(get_target(target_name))
    except ToolError as e:
        return str(e)
    return None
