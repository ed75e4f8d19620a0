"""Whether this machine can build and run ARM code: `needs_arm_run` skips a test that builds for
an ARM target and runs it under qemu when the cross toolchain or qemu-user is missing."""

import pytest

from edgec.errors import ToolError


def can_run_arm() -> bool:
    from edgec.targets import crosslink, runners
    try:
        crosslink.find_toolchain(need_cxx=True)
        runners.qemu_path()
        return True
    except ToolError:
        return False


needs_arm_run = pytest.mark.skipif(not can_run_arm(), reason="needs qemu-user, the aarch64 libc in "
                                   "/usr/aarch64-linux-gnu and a cross compiler "
                                   "(apt-get install qemu-user g++-aarch64-linux-gnu)")
