"""Finding a compiler/linker for aarch64 Linux code built on an x86 machine.

Two toolchains are recognised, in this order:

- the Debian cross compiler `aarch64-linux-gnu-gcc` / `aarch64-linux-gnu-g++` when it is on PATH
  (apt-get install g++-aarch64-linux-gnu);
- the PyPI `ziglang` package (pip install ziglang), which needs no apt and is what a plain
  `pip install edgec` gets: `python -m ziglang cc -target aarch64-linux-gnu.2.28`.

`find_toolchain()` returns the first one found or raises a ToolError naming both ways to install
one. `shared_library_fcompile()` is the `fcompile` TVM's `export_library` takes.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import struct
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from edgec.errors import ToolError

GNU_PREFIX = "aarch64-linux-gnu-"
# glibc 2.28 is what the manylinux_2_28 TVM runtime wheels need anyway; a board older than that
# cannot run the runtime.
ZIG_TARGET = "aarch64-linux-gnu.2.28"
INSTALL_HINT = ("install an aarch64 linker: `pip install ziglang` (no root needed) or "
                "`apt-get install g++-aarch64-linux-gnu`")


@dataclass(frozen=True)
class Toolchain:
    """A C and C++ cross compiler for aarch64 Linux."""

    name: str  # "gnu" | "zig"
    cc: tuple[str, ...]  # command prefix compiling C and linking
    cxx: tuple[str, ...]  # command prefix compiling C++

    def run(self, cmd: list[str], what: str) -> None:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        if proc.returncode != 0:
            raise ToolError(f"{what} failed with the {self.name} aarch64 toolchain:\n{proc.stdout.strip()}\n"
                            f"command: {' '.join(cmd)}")


def gnu_toolchain() -> Toolchain | None:
    gcc, gxx = shutil.which(GNU_PREFIX + "gcc"), shutil.which(GNU_PREFIX + "g++")
    if gcc is None:
        return None
    return Toolchain("gnu", (gcc,), (gxx,) if gxx else ())


def zig_toolchain() -> Toolchain | None:
    if importlib.util.find_spec("ziglang") is None:
        return None
    zig = (sys.executable, "-m", "ziglang")
    return Toolchain("zig", (*zig, "cc", "-target", ZIG_TARGET), (*zig, "c++", "-target", ZIG_TARGET))


def find_toolchain(need_cxx: bool = False) -> Toolchain:
    """The Debian cross compiler when present, else PyPI ziglang; a ToolError if neither is."""
    for tc in (gnu_toolchain(), zig_toolchain()):
        if tc is not None and (tc.cxx or not need_cxx):
            return tc
    raise ToolError(f"no aarch64 cross compiler found; {INSTALL_HINT}")


def shared_library_fcompile(toolchain: Toolchain | None = None):
    """An `fcompile` for `tvm.runtime.Executable.export_library` linking an aarch64 `.so`."""
    tc = toolchain or find_toolchain()

    def fcompile(output: str, objects, options=None):
        objs = [objects] if isinstance(objects, str) else list(objects)
        cmd = [*tc.cc, "-shared", "-fPIC", "-o", str(output), *(options or []), *objs]
        tc.run(cmd, f"linking {Path(output).name} for aarch64")

    fcompile.output_format = "so"
    fcompile.get_target_triple = lambda: "aarch64-linux-gnu"
    return fcompile


ELF_MACHINES = {0xB7: "aarch64", 0x3E: "x86_64"}  # e_machine -> arch


def elf_machine(path: str | Path) -> str:
    """The machine an ELF file is built for: 'aarch64', 'x86_64' or 'unknown'."""
    head = Path(path).read_bytes()[:20]
    if head[:4] != b"\x7fELF":
        return "unknown"
    return ELF_MACHINES.get(int.from_bytes(head[18:20], "little"), "unknown")


def code_bytes(path: str | Path) -> int:
    """Bytes of machine code in an ELF object file (64-bit little-endian): the sizes of its
    sections that hold instructions (SHF_EXECINSTR), read from its section headers."""
    data = Path(path).read_bytes()
    (shoff,) = struct.unpack_from("<Q", data, 40)
    shentsize, shnum = struct.unpack_from("<HH", data, 58)
    total = 0
    for i in range(shnum):
        flags, size = struct.unpack_from("<8xQ16xQ", data, shoff + i * shentsize)
        if flags & 0x4:  # SHF_EXECINSTR
            total += size
    return total


def elf_library_problem(path: str | Path, arch: str) -> str | None:
    """What keeps the file at `path` from being a shared library that the dynamic loader can map
    for `arch` ('x86_64' or 'aarch64'), or None. Read from the ELF header and program headers only:
    not an ELF file, not 64-bit little-endian, not a shared library, another machine, or truncated
    (a program header's range of the file, or the table itself, past the end of the file: the
    loader would map it, and touching those pages is a SIGBUS)."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(64)
        if len(head) < 64 or head[:4] != b"\x7fELF":
            return "is not an ELF shared library"
        if head[4] != 2 or head[5] != 1:
            return "is not a 64-bit little-endian ELF file"
        e_type, e_machine = struct.unpack_from("<HH", head, 16)
        if e_type != 3:  # ET_DYN
            return "is an ELF file but not a shared library"
        machine = ELF_MACHINES.get(e_machine, f"an unknown machine (e_machine {e_machine})")
        if machine != arch:
            return f"is built for {machine}, not {arch}"
        (phoff,) = struct.unpack_from("<Q", head, 32)
        phentsize, phnum = struct.unpack_from("<HH", head, 54)
        if phentsize != 56 or phnum == 0 or phoff + phnum * 56 > size:
            return f"is truncated or damaged: its program header table does not fit in its {size} bytes"
        f.seek(phoff)
        table = f.read(phnum * 56)
    for i in range(phnum):
        offset, filesz = struct.unpack_from("<8xQ16xQ", table, i * 56)
        if offset + filesz > size:
            return (f"is truncated: program header {i} spans bytes {offset} to {offset + filesz}, "
                    f"the file has {size}")
    return None
