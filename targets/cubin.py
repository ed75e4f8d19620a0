"""The CUDA device code inside a built library, read in pure Python (no CUDA tools needed).

CUDA 13's cuobjdump and nvdisasm no longer read sm_53/62/72 cubins, so edgec reads the files
itself. A library TVM exports (a 64-bit little-endian ELF `.so` for x86_64 or aarch64) holds its
modules in the data symbol `__tvm_ffi__library_bin`: a u64 byte count, the import tree (two u64
vectors), then each module as a type key string and, except for `_lib` (the library itself), a
byte string of its own serialization. Strings and vectors are a u64 count then the items. The
CUDA module (type key `cuda`) is its format string, its function table ({name: (name, argument
types, launch parameter tags, argument tags)}, the device functions the host code launches) and
its data, which is one of:

- a fatbin (nvcc): a header (magic 0xBA55ED50, version, header size, size of the entries), then
  entries of a 64-byte-or-longer header (kind: 1 PTX, 2 ELF; its size; the SM; flags, 0x2000
  meaning compressed) and a payload;
- a cubin (NVRTC): one CUDA ELF (e_machine 190). Its SM is `e_flags & 0xff` up to ELF ABI
  version 7 (before CUDA 12.8) and `(e_flags >> 8) & 0xff` from version 8 on; its kernels are
  the function symbols marked STO_CUDA_ENTRY (st_other 0x10);
- PTX text, or CUDA C source when the build had no CUDA runtime module (DESIGN.md section 4).

`read_device_code(path)` gives a `DeviceCode`; `library_problems(code, sm, kernels)` says what
keeps it from being a deployable library for sm_`sm` holding the kernels `kernels`.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass, field
from pathlib import Path

from edgec.errors import EdgecError

from .crosslink import ELF_MACHINES

LIBRARY_SYMBOL = "__tvm_ffi__library_bin"
CUDA_MODULE = "cuda"  # TVM's type key of a CUDA module (binary or source alike)
EM_CUDA = 190
STO_CUDA_ENTRY = 0x10
STT_FUNC = 2
SHT_SYMTAB, SHT_DYNSYM, SHT_NOBITS = 2, 11, 8
FATBIN_MAGIC = 0xBA55ED50
FATBIN_PTX, FATBIN_ELF = 1, 2
FATBIN_COMPRESSED = 0x2000


class DeviceCodeError(EdgecError):
    """A file's device code cannot be read: not a TVM library, or damaged."""


@dataclass(frozen=True)
class Image:
    """One piece of device code: SASS for one SM, PTX, or CUDA C source."""

    kind: str  # "sass" | "ptx" | "cuda"
    sm: int | None  # SASS: from the ELF header; PTX in a fatbin: its entry's SM; None otherwise
    kernels: tuple[str, ...]  # SASS: its entry functions, sorted; () for the others
    container: str  # "fatbin" | "cubin" | "text"
    size: int  # bytes
    compressed: bool = False  # a compressed fatbin entry: its kernels are not read

    def describe(self) -> str:
        what = {"sass": f"SASS for sm_{self.sm}", "ptx": "PTX" + (f" for compute_{self.sm}" if self.sm else ""),
                "cuda": "CUDA C source"}[self.kind]
        return f"{what} ({self.container}, {self.size} bytes{', compressed' if self.compressed else ''})"


@dataclass
class DeviceCode:
    """The device code of a library: `machine` of the host ELF, the `images` of every CUDA
    module, `functions`: the device functions the modules' tables name (what the host code
    launches), sorted."""

    machine: str
    images: list[Image] = field(default_factory=list)
    functions: tuple[str, ...] = ()

    @property
    def sass_sms(self) -> list[int]:
        return sorted({i.sm for i in self.images if i.kind == "sass"})

    @property
    def kernels(self) -> dict[str, list[int]]:
        """{device kernel in SASS: [the SMs it is built for]}."""
        out: dict[str, list[int]] = {}
        for image in self.images:
            if image.kind == "sass":
                for k in image.kernels:
                    out.setdefault(k, []).append(image.sm)
        return dict(sorted(out.items()))

    @property
    def has_ptx(self) -> bool:
        return any(i.kind == "ptx" for i in self.images)

    @property
    def has_cuda_source(self) -> bool:
        return any(i.kind == "cuda" for i in self.images)


class _Reader:
    """Little-endian reads of `data` from `pos`, a DeviceCodeError past the end."""

    def __init__(self, data: bytes, pos: int = 0, end: int | None = None, what: str = ""):
        self.data, self.pos, self.end, self.what = data, pos, len(data) if end is None else end, what

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > self.end:
            raise DeviceCodeError(f"{self.what} ends inside a field (at byte {self.pos}, {n} more wanted)")
        out = self.data[self.pos:self.pos + n]
        self.pos += n
        return out

    def u64(self) -> int:
        return struct.unpack("<Q", self.take(8))[0]

    def string(self) -> bytes:
        return self.take(self.u64())

    def vector(self, item_bytes: int) -> list[bytes]:
        return [self.take(item_bytes) for _ in range(self.u64())]


@dataclass(frozen=True)
class _Section:
    name: str
    type: int
    addr: int
    offset: int
    size: int
    link: int


def _elf_sections(data: bytes, what: str) -> list[_Section]:
    """The section headers of a 64-bit little-endian ELF file."""
    if data[:4] != b"\x7fELF" or len(data) < 64:
        raise DeviceCodeError(f"{what} is not an ELF file")
    if data[4] != 2 or data[5] != 1:
        raise DeviceCodeError(f"{what} is not a 64-bit little-endian ELF file")
    (shoff,) = struct.unpack_from("<Q", data, 0x28)
    shentsize, shnum, shstrndx = struct.unpack_from("<HHH", data, 0x3A)
    if shentsize != 64 or shoff + shnum * 64 > len(data) or shstrndx >= shnum:
        raise DeviceCodeError(f"{what} is truncated or damaged: its section table does not fit in its "
                              f"{len(data)} bytes")
    raw = [struct.unpack_from("<IIQQQQII", data, shoff + i * 64) for i in range(shnum)]
    for name, typ, _, addr, offset, size, link, _ in raw:
        if typ != SHT_NOBITS and offset + size > len(data):
            raise DeviceCodeError(f"{what} is truncated: a section spans bytes {offset} to {offset + size}, "
                                  f"the file has {len(data)}")
    names = raw[shstrndx]

    def name_at(i: int) -> str:
        start = names[4] + i
        return data[start:data.index(b"\0", start)].decode("utf-8", "replace")
    return [_Section(name_at(r[0]), r[1], r[3], r[4], r[5], r[6]) for r in raw]


def _elf_symbols(data: bytes, sections: list[_Section], table_type: int):
    """(name, st_info, st_other, st_shndx, st_value) of each symbol in the tables of `table_type`."""
    for sec in sections:
        if sec.type != table_type or sec.link >= len(sections):
            continue
        strings = sections[sec.link]
        for i in range(sec.size // 24):
            st_name, info, other, shndx, value, _ = struct.unpack_from("<IBBHQQ", data, sec.offset + i * 24)
            start = strings.offset + st_name
            end = data.find(b"\0", start, strings.offset + strings.size)
            yield data[start:end if end >= 0 else start].decode("utf-8", "replace"), info, other, shndx, value


def cubin_info(data: bytes) -> tuple[int, tuple[str, ...]]:
    """(SM, sorted kernel names) of a CUDA ELF (cubin)."""
    sections = _elf_sections(data, "the cubin")
    if struct.unpack_from("<H", data, 18)[0] != EM_CUDA:
        raise DeviceCodeError("the cubin is an ELF file but not CUDA code (e_machine is not 190)")
    abi_version, (e_flags,) = data[8], struct.unpack_from("<I", data, 0x30)
    sm = (e_flags >> 8) & 0xFF if abi_version >= 8 else e_flags & 0xFF
    kernels = sorted({name for name, info, other, _, _ in _elf_symbols(data, sections, SHT_SYMTAB)
                      if info & 0xF == STT_FUNC and other & STO_CUDA_ENTRY})
    return sm, tuple(kernels)


def fatbin_images(data: bytes) -> list[Image]:
    """The entries of a fatbin."""
    r = _Reader(data, what="the fatbin")
    magic, version, header_size, entries_size = struct.unpack("<IHHQ", r.take(16))
    if magic != FATBIN_MAGIC:
        raise DeviceCodeError(f"the fatbin starts with {magic:#x}, not the fatbin magic {FATBIN_MAGIC:#x}")
    r.pos, r.end = header_size, header_size + entries_size
    if r.end > len(data):
        raise DeviceCodeError(f"the fatbin says it holds {entries_size} bytes of entries; "
                              f"it has {len(data) - header_size}")
    images = []
    while r.pos < r.end:
        start = r.pos
        kind, _, entry_header, payload_size = struct.unpack("<HHIQ", r.take(16))
        if entry_header < 0x30:
            raise DeviceCodeError(f"the fatbin entry at byte {start} has a {entry_header}-byte header")
        r.pos = start + 0x18
        _, _, sm = struct.unpack("<HHI", r.take(8))
        r.pos = start + 0x28
        (flags,) = struct.unpack("<Q", r.take(8))
        r.pos = start + entry_header
        payload = r.take(payload_size)
        compressed = bool(flags & FATBIN_COMPRESSED)
        if kind == FATBIN_ELF:
            if compressed:
                images.append(Image("sass", sm, (), "fatbin", payload_size, compressed=True))
            else:
                elf_sm, kernels = cubin_info(payload)
                images.append(Image("sass", elf_sm, kernels, "fatbin", payload_size))
        elif kind == FATBIN_PTX:
            images.append(Image("ptx", sm, (), "fatbin", payload_size, compressed=compressed))
        else:
            raise DeviceCodeError(f"the fatbin entry at byte {start} is of kind {kind}, neither PTX (1) nor ELF (2)")
    return images


def device_images(data: bytes) -> list[Image]:
    """The device code of a CUDA module's data: a fatbin, a cubin, PTX or CUDA source."""
    if data[:4] == struct.pack("<I", FATBIN_MAGIC):
        return fatbin_images(data)
    if data[:4] == b"\x7fELF":
        sm, kernels = cubin_info(data)
        return [Image("sass", sm, kernels, "cubin", len(data))]
    text = data.decode("utf-8", "replace")
    if re.search(r"^\s*\.target\s+sm_\d+", text, re.M):
        m = re.search(r"^\s*\.target\s+sm_(\d+)", text, re.M)
        return [Image("ptx", int(m.group(1)), (), "text", len(data))]
    if "__global__" in text:
        return [Image("cuda", None, (), "text", len(data))]
    raise DeviceCodeError(f"a CUDA module holds {len(data)} bytes that are neither a fatbin, a cubin, PTX "
                          "nor CUDA source")


def cuda_module(payload: bytes) -> tuple[str, tuple[str, ...], bytes]:
    """(format, device function names, data) of a serialized TVM CUDA module."""
    r = _Reader(payload, what="TVM's CUDA module")
    fmt = r.string().decode("utf-8", "replace")
    functions = []
    for _ in range(r.u64()):
        r.string()  # the table's key: the function's name again
        functions.append(r.string().decode("utf-8", "replace"))
        r.vector(4)  # argument types (DLDataType)
        for _ in range(r.u64()):  # launch parameter tags
            r.string()
        r.vector(4)  # argument extra tags
    data = r.string()
    if r.pos != len(payload):
        raise DeviceCodeError(f"TVM's CUDA module has {len(payload) - r.pos} bytes after its data "
                              "(a module format edgec does not know)")
    return fmt, tuple(sorted(functions)), data


def tvm_modules(blob: bytes) -> list[tuple[str, bytes]]:
    """(type key, serialized module) of each module in a TVM library blob (after its u64 size)."""
    r = _Reader(blob, what="TVM's module blob")
    r.vector(8)  # import tree: row pointers
    r.vector(8)  # import tree: child indices
    modules = []
    while r.pos < r.end:
        key = r.string().decode("utf-8", "replace")
        modules.append((key, b"" if key == "_lib" else r.string()))
    return modules


def library_blob(data: bytes, what: str) -> tuple[str, bytes]:
    """(host machine, TVM module blob) of a TVM library's bytes."""
    sections = _elf_sections(data, what)
    machine = ELF_MACHINES.get(struct.unpack_from("<H", data, 18)[0], "unknown")
    for table in (SHT_DYNSYM, SHT_SYMTAB):
        for name, _, _, shndx, value in _elf_symbols(data, sections, table):
            if name == LIBRARY_SYMBOL and 0 < shndx < len(sections):
                sec = sections[shndx]
                start = sec.offset + value - sec.addr
                if not sec.offset <= start <= sec.offset + sec.size - 8:
                    break
                (size,) = struct.unpack_from("<Q", data, start)
                if start + 8 + size > sec.offset + sec.size:
                    raise DeviceCodeError(f"{what}: TVM's module blob says it has {size} bytes; its section ends first")
                return machine, data[start + 8:start + 8 + size]
    raise DeviceCodeError(f"{what} holds no TVM modules (no {LIBRARY_SYMBOL} symbol): it is not a library "
                          "edgec or TVM exported")


def read_device_code(path: str | Path) -> DeviceCode:
    """The CUDA device code of the TVM library at `path` (a DeviceCodeError when the file is not
    one, or is damaged; a library without CUDA modules has no images)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise DeviceCodeError(f"{path}: cannot be read ({e.strerror})") from None
    try:
        machine, blob = library_blob(data, str(path))
        code = DeviceCode(machine)
        functions: set[str] = set()
        for key, payload in tvm_modules(blob):
            if key == CUDA_MODULE:
                _, names, module_data = cuda_module(payload)
                functions.update(names)
                code.images.extend(device_images(module_data))
        code.functions = tuple(sorted(functions))
        return code
    except DeviceCodeError as e:
        message = str(e)
        raise DeviceCodeError(message if message.startswith(str(path)) else f"{path}: {message}") from None
    except (struct.error, ValueError, IndexError) as e:
        raise DeviceCodeError(f"{path}: the device code is damaged ({e})") from None


def device_kernel_owner(device_kernel: str) -> str | None:
    """The kernel (PrimFunc, the manifest's "name") a device kernel belongs to: TVM names the
    device kernels of kernel K `K_kernel`, or `K_kernel_<i>` when K launches several."""
    m = re.fullmatch(r"(.+)_kernel(?:_\d+)?", device_kernel)
    return m.group(1) if m else None


def kernels_by_owner(code: DeviceCode, kernels: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """({kernel: its device kernels in SASS, sorted}, the device kernels that are no kernel's)."""
    owned: dict[str, list[str]] = {k: [] for k in kernels}
    stray = []
    for device_kernel in code.kernels:
        owner = device_kernel_owner(device_kernel)
        if owner in owned:
            owned[owner].append(device_kernel)
        else:
            stray.append(device_kernel)
    return owned, stray


def library_problems(code: DeviceCode, sm: int, kernels: list[str]) -> list[str]:
    """What keeps the library from running as built for sm_`sm` on a board: no SASS, SASS for
    another SM, SASS whose kernels cannot be read (compressed), PTX or CUDA source left (the
    board's driver would compile it, or cannot), a kernel of `kernels` (the computing ones, by
    name) without a device kernel, a device kernel that is no kernel's, a device function the
    host code launches that the SASS lacks. Empty: none."""
    problems = []
    if not any(i.kind == "sass" for i in code.images):
        problems.append("it holds no SASS")
    other = [s for s in code.sass_sms if s != sm]
    if other:
        problems.append(f"it holds SASS for {', '.join(f'sm_{s}' for s in other)}, not only for sm_{sm}")
    if any(i.compressed for i in code.images):
        problems.append("its SASS is compressed, so its kernels cannot be checked")
    if code.has_ptx:
        problems.append("it holds PTX")
    if code.has_cuda_source:
        problems.append("it holds CUDA source, not compiled code")
    owned, stray = kernels_by_owner(code, kernels)
    missing = [k for k, devs in owned.items() if not devs]
    if missing and not code.has_cuda_source:
        problems.append(f"kernels without a device kernel: {', '.join(missing)}")
    if stray:
        problems.append(f"device kernels that are no kernel's: {', '.join(stray)}")
    unbuilt = sorted(set(code.functions) - set(code.kernels))
    if unbuilt and any(i.kind == "sass" for i in code.images):
        problems.append(f"device functions the host code launches but the SASS lacks: {', '.join(unbuilt)}")
    return problems


def check_library(path: str | Path, target, kernels: list[str]) -> DeviceCode:
    """The device code of the library at `path`, built for the CUDA `target` with the kernels
    `kernels` (the built module's PrimFuncs, each a computing IR node's); an EdgecError naming
    every `library_problems` when there are any."""
    code = read_device_code(path)
    problems = library_problems(code, target.sm, kernels)
    if problems:
        raise EdgecError(f"the library built for {target.name} ({target.cuda_arch}) would not run on the board: "
                         f"{'; '.join(problems)}. edgec writes no artifact from it; this is a bug in edgec's CUDA "
                         "build or in the CUDA compiler (see `edgec inspect` of a good artifact): please report it "
                         "with the model")
    return code
