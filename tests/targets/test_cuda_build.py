"""Jetson libraries: SASS for the board's SM only, a device kernel for every computing node.

Cases:
- the parser (targets/cubin.py) on hand-made files: a host ELF holding a TVM module blob whose
  CUDA module is a fatbin (SASS for sm_87 with ELF ABI 8, PTX) or a cubin (sm_53, ABI 7), with
  entry and non-entry functions; CUDA source; a file that is no TVM library; a truncated one;
- the example models (tools/make_models.py --small) built for jetson-orin (nvcc 13 where it is
  installed, else NVRTC) and jetson-nano (NVRTC), mlp also for jetson-xavier and jetson-tx2
  (NVRTC): read back with the parser, only SASS for the target's SM, no PTX and no CUDA source,
  one or more device kernels for each computing node of model.eir (its kernel named in the
  manifest) and none that is no node's; `edgec inspect DIR` lists each kernel with its SM (and
  a CPU artifact's kernels; a directory that is no artifact is refused);
- the compiler choice: nvcc for sm_75 and newer where nvcc 13 is, NVRTC below and where nvcc is
  missing (an orin build through NVRTC), one ToolError when neither builds the SM;
- the compile-time check: a library with SASS for another SM, with PTX only, or with a kernel
  whose device kernel is missing is refused (EdgecError, no artifact and no temporary directory
  left); the same problems found in a built library whose bytes were edited.

Each (model, target) is built once per test process; the builds take about 5 to 70 s each.
"""

import contextlib
import dataclasses
import re
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest

import edgec
from edgec.errors import EdgecError, ToolError
from edgec.targets import cubin, cuda, get_target
from edgec.targets.cubin import DeviceCodeError, read_device_code
from toolchain import cuda_build_problem

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tools"))
import make_models  # noqa: E402

# ---------------------------------------------------------------------------------------------
# hand-made files


def elf(machine: int, sections: list[tuple], e_flags: int = 0, abi_version: int = 0, e_type: int = 3) -> bytes:
    """A 64-bit little-endian ELF file. `sections`: (name, sh_type, data, linked section name or
    None, sh_addr); section 0 is the null section, the names' table comes last."""
    names = b"\0"
    name_offsets = []
    for s in sections:
        name_offsets.append(len(names))
        names += s[0].encode() + b"\0"
    shstr_name = len(names)
    names += b".shstrtab\0"
    all_sections = [*sections, (".shstrtab", 3, names, None, 0)]
    index = {s[0]: i + 1 for i, s in enumerate(all_sections)}
    body, offsets = b"", []
    for s in all_sections:
        offsets.append(64 + len(body))
        body += s[2] + b"\0" * (-len(s[2]) % 8)
    shoff = 64 + len(body)
    headers = b"\0" * 64
    for i, (name, typ, data, link, addr) in enumerate(all_sections):
        sh_name = shstr_name if name == ".shstrtab" else name_offsets[i]
        entsize = 24 if typ in (2, 11) else 0
        headers += struct.pack("<IIQQQQIIQQ", sh_name, typ, 0, addr, offsets[i], len(data),
                               index[link] if link else 0, 0, 1, entsize)
    header = (b"\x7fELF" + bytes([2, 1, 1, 0x33 if machine == 190 else 0, abi_version]) + b"\0" * 7
              + struct.pack("<HHIQQQIHHHHHH", e_type, machine, 1, 0, 0, shoff, e_flags, 64, 0, 0, 64,
                            len(all_sections) + 1, len(all_sections)))
    return header + body + headers


def symbols(entries: list[tuple]) -> tuple[bytes, bytes]:
    """(symbol table, its string table) of (name, st_info, st_other, st_shndx, st_value)."""
    strings, table = b"\0", b"\0" * 24
    for name, info, other, shndx, value in entries:
        table += struct.pack("<IBBHQQ", len(strings), info, other, shndx, value, 0)
        strings += name.encode() + b"\0"
    return table, strings


FUNC, OBJECT = 0x12, 0x11  # GLOBAL FUNC, GLOBAL OBJECT


def cuda_elf(e_flags: int, abi_version: int, kernels: list[str], device_functions: list[str] = ()) -> bytes:
    entries = [(k, FUNC, 0x10, 1, 0) for k in kernels] + [(f, FUNC, 0, 1, 0) for f in device_functions]
    entries.append(("a_constant", OBJECT, 0, 1, 0))
    table, strings = symbols(entries)
    return elf(190, [(".text", 1, b"\0" * 16, None, 0), (".strtab", 3, strings, None, 0),
                     (".symtab", 2, table, ".strtab", 0)], e_flags=e_flags, abi_version=abi_version, e_type=2)


def fatbin(entries: list[tuple[int, int, bytes]]) -> bytes:
    """A fatbin of (kind: 1 PTX / 2 ELF, SM, payload) entries with 64-byte entry headers."""
    body = b""
    for kind, sm, payload in entries:
        body += struct.pack("<HHIQ", kind, 0x0101, 64, len(payload)) + b"\0" * 8
        body += struct.pack("<HHI", 8, 1, sm) + b"\0" * 8 + struct.pack("<Q", 0x11) + b"\0" * 16 + payload
    return struct.pack("<IHHQ", 0xBA55ED50, 1, 16, len(body)) + body


def string(b: bytes | str) -> bytes:
    b = b.encode() if isinstance(b, str) else b
    return struct.pack("<Q", len(b)) + b


def cuda_module(fmt: str, functions: list[str], data: bytes) -> bytes:
    """A TVM CUDA module as TVM serializes it: format, function table, data."""
    table = struct.pack("<Q", len(functions))
    for f in functions:
        table += string(f) + string(f) + struct.pack("<Q", 2) + b"\x03\x40\x01\x00" * 2
        table += struct.pack("<Q", 1) + string("threadIdx.x") + struct.pack("<Q", 2) + b"\0" * 8
    return string(fmt) + table + string(data)


def tvm_library(machine: int, modules: list[tuple[str, bytes]]) -> bytes:
    """A host shared library whose `__tvm_ffi__library_bin` holds `modules` (type key, payload)."""
    blob = struct.pack("<Q", 3) + struct.pack("<3Q", 0, 1, 1) + struct.pack("<Q", 1) + struct.pack("<Q", 1)
    for key, payload in modules:
        blob += string(key) + (b"" if key == "_lib" else string(payload))
    rodata = b"padding!" + struct.pack("<Q", len(blob)) + blob
    addr = 0x3000
    table, strings = symbols([("something_else", FUNC, 0, 1, 0x1000),
                              ("__tvm_ffi__library_bin", OBJECT, 0, 2, addr + 8)])
    return elf(machine, [(".text", 1, b"\xc3" * 16, None, 0x1000), (".rodata", 1, rodata, None, addr),
                         (".dynstr", 3, strings, None, 0), (".dynsym", 11, table, ".dynstr", 0)])


def test_parser_reads_fatbin_and_cubin_libraries(tmp_path):
    sass87 = cuda_elf(0x6005704, 8, ["k1_conv_kernel", "k0_dense_kernel"], ["a_device_function"])
    ptx = b"//\n// Generated by NVIDIA NVVM Compiler\n.version 8.8\n.target sm_87\n"
    path = tmp_path / "fat.so"
    path.write_bytes(tvm_library(0xB7, [("relax.VMExecutable", b"\x50\xed\x55\xba" * 4), ("_lib", b""),
                                         ("cuda", cuda_module("cubin", ["k1_conv_kernel", "k0_dense_kernel"],
                                                              fatbin([(2, 87, sass87), (1, 87, ptx)])))]))
    code = read_device_code(path)
    assert code.machine == "aarch64"
    assert [(i.kind, i.sm, i.kernels, i.container) for i in code.images] == [
        ("sass", 87, ("k0_dense_kernel", "k1_conv_kernel"), "fatbin"), ("ptx", 87, (), "fatbin")]
    assert code.functions == ("k0_dense_kernel", "k1_conv_kernel")
    assert code.has_ptx and not code.has_cuda_source

    path = tmp_path / "cubin.so"
    sass53 = cuda_elf(0x350535, 7, ["k0_dense_kernel", "k0_dense_kernel_1"])
    path.write_bytes(tvm_library(0x3E, [("_lib", b""), ("cuda", cuda_module("cubin", ["k0_dense_kernel"], sass53))]))
    code = read_device_code(path)
    assert code.machine == "x86_64"
    assert [(i.kind, i.sm, i.kernels, i.container, i.size) for i in code.images] == [
        ("sass", 53, ("k0_dense_kernel", "k0_dense_kernel_1"), "cubin", len(sass53))]
    assert code.kernels == {"k0_dense_kernel": [53], "k0_dense_kernel_1": [53]}
    owned, stray = cubin.kernels_by_owner(code, ["k0_dense", "k1_relu"])
    assert owned == {"k0_dense": ["k0_dense_kernel", "k0_dense_kernel_1"], "k1_relu": []} and stray == []
    assert cubin.library_problems(code, 53, ["k0_dense"]) == []
    assert cubin.library_problems(code, 53, ["k0_dense", "k1_relu"]) == ["kernels without a device kernel: k1_relu"]

    source = b'extern "C" __global__ void k0_dense_kernel(float* x) {}\n'
    path.write_bytes(tvm_library(0xB7, [("cuda", cuda_module("cuda", ["k0_dense_kernel"], source))]))
    code = read_device_code(path)
    assert code.has_cuda_source and code.kernels == {}
    assert cubin.library_problems(code, 53, ["k0_dense"]) == ["it holds no SASS",
                                                              "it holds CUDA source, not compiled code"]

    cpu_only = tmp_path / "cpu.so"
    cpu_only.write_bytes(tvm_library(0x3E, [("relax.VMExecutable", b"x" * 10), ("_lib", b"")]))
    assert read_device_code(cpu_only).images == []


def test_parser_refuses_what_is_no_tvm_library(tmp_path):
    plain = tmp_path / "plain.so"
    plain.write_bytes(elf(0x3E, [(".text", 1, b"\xc3" * 16, None, 0x1000)]))
    with pytest.raises(DeviceCodeError, match="no __tvm_ffi__library_bin symbol"):
        read_device_code(plain)
    text = tmp_path / "text.so"
    text.write_text("not an ELF file")
    with pytest.raises(DeviceCodeError, match="is not an ELF file"):
        read_device_code(text)
    full = tvm_library(0xB7, [("cuda", cuda_module("cubin", ["k0_kernel"], cuda_elf(0x350535, 7, ["k0_kernel"])))])
    cut = tmp_path / "cut.so"
    cut.write_bytes(full[:len(full) // 2])
    with pytest.raises(DeviceCodeError, match="truncated"):
        read_device_code(cut)
    # the blob says it is longer than its section
    start = full.index(b"padding!") + 8
    (size,) = struct.unpack_from("<Q", full, start)
    cut.write_bytes(full[:start] + struct.pack("<Q", size + 100) + full[start + 8:])
    with pytest.raises(DeviceCodeError, match="its section ends first"):
        read_device_code(cut)


# ---------------------------------------------------------------------------------------------
# the compiler choice


def test_nvcc_for_new_sms_nvrtc_below_and_one_error_without_either(monkeypatch):
    orin, nano = get_target("jetson-orin"), get_target("jetson-nano")
    monkeypatch.setattr(cuda, "nvcc_path", lambda: "/opt/cuda/bin/nvcc")
    monkeypatch.setattr(cuda, "nvcc_version", lambda nvcc: (13, 0))
    monkeypatch.setattr(cuda, "nvrtc_archs", lambda: ((12, 9), (50, 53, 62, 72, 87, 90)))
    monkeypatch.setattr(cuda, "_package_include", lambda module: Path("/include"))
    assert cuda.cuda_compiler(orin) == "nvcc" and cuda.cuda_compiler(nano) == "nvrtc"
    monkeypatch.setattr(cuda, "nvcc_path", lambda: None)
    assert cuda.cuda_compiler(orin) == "nvrtc"
    with pytest.raises(ToolError) as e:  # NVRTC 12.9 builds no sm_110
        cuda.cuda_compiler(get_target("jetson-thor"))
    assert "no nvcc was found" in str(e.value) and "NVRTC 12.9 does not build sm_110" in str(e.value)
    monkeypatch.setattr(cuda, "nvcc_path", lambda: "/opt/cuda/bin/nvcc")
    monkeypatch.setattr(cuda, "nvrtc_archs", lambda: "NVRTC is not installed (no cuda-bindings)")
    with pytest.raises(ToolError) as e:
        cuda.cuda_compiler(nano)
    message = str(e.value)
    assert "nvcc 13.0 at /opt/cuda/bin/nvcc does not build sm_53" in message
    assert "NVRTC is not installed" in message and "pip install 'edgec[cuda]'" in message
    monkeypatch.setattr(cuda, "nvrtc_archs", lambda: ((12, 9), (53,)))
    monkeypatch.setattr(cuda, "_package_include", lambda module: None if module == "nvidia.cuda_cccl" else Path("/i"))
    with pytest.raises(ToolError, match="the CUDA headers of nvidia.cuda_cccl are not"):
        cuda.cuda_compiler(nano)


def test_nvrtc_headers_are_merged_once(tmp_path, monkeypatch):
    if not cuda.nvrtc_available():
        pytest.skip(f"needs NVRTC and its headers (pip install 'edgec[cuda]'): {cuda.nvrtc_archs()}")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    root = cuda.nvrtc_cuda_path()
    assert root.parent == tmp_path / "edgec"
    for header in ("cuda_runtime.h", "cuda_fp16.h", "crt/host_config.h", "cuda/std/cstdint"):
        assert (root / "include" / header).is_file(), header
    assert cuda.nvrtc_cuda_path() == root and len(list(root.parent.iterdir())) == 1


# ---------------------------------------------------------------------------------------------
# built libraries

MODEL_BUILDS = [(m, t) for m in make_models.NAMES for t in ("jetson-orin", "jetson-nano")]
BUILDS = MODEL_BUILDS + [("mlp", "jetson-xavier"), ("mlp", "jetson-tx2")]
VIEW_OPS = {"reshape", "flatten", "squeeze", "unsqueeze"}  # a node without a kernel is one of these


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    return make_models.build_all(tmp_path_factory.mktemp("models"), small=True)


@pytest.fixture(scope="module")
def built(models, tmp_path_factory):
    """built(model, target) -> (artifact directory, build seconds), each built once."""
    done = {}

    def build(model: str, target: str):
        if (model, target) not in done:
            problem = cuda_build_problem(target)
            if problem:
                pytest.skip(problem)
            out = tmp_path_factory.mktemp(f"{model}-{target}") / "art"
            start = time.perf_counter()
            edgec.compile(models[model], target=target, output=out)
            done[model, target] = out, time.perf_counter() - start
        return done[model, target]
    return build


def eir_nodes(path: Path) -> dict[str, str]:
    """{"%N": op} of the nodes of a model.eir, read from its text."""
    return {f"%{n}": op for n, op in re.findall(r"^\s*%(\d+) = ([a-z_0-9]+)\(", path.read_text(), re.M)}


@pytest.mark.parametrize("model,target", BUILDS, ids=[f"{m}-{t}" for m, t in BUILDS])
def test_library_holds_sass_for_the_board_and_a_device_kernel_per_node(built, model, target):
    out, seconds = built(model, target)
    sm = get_target(target).sm
    code = read_device_code(out / "model.so")
    assert code.machine == "aarch64"
    assert code.images and all(i.kind == "sass" and i.sm == sm and not i.compressed for i in code.images), \
        [i.describe() for i in code.images]
    assert not code.has_ptx and not code.has_cuda_source and b"__global__" not in (out / "model.so").read_bytes()

    import json
    manifest = json.loads((out / "manifest.json").read_text())
    nodes = eir_nodes(out / "model.eir")
    kernel_nodes = {k["name"]: k["node"] for k in manifest["kernels"]}
    view_nodes = {v["node"] for v in manifest["views"]}
    assert set(kernel_nodes.values()) | view_nodes == set(nodes) and not set(kernel_nodes.values()) & view_nodes
    assert {nodes[n] for n in view_nodes} <= VIEW_OPS
    by_node = {n: [] for n in kernel_nodes.values()}
    for device_kernel in code.kernels:
        m = re.fullmatch(r"(.+)_kernel(_\d+)?", device_kernel)
        assert m and m.group(1) in kernel_nodes, f"device kernel {device_kernel} is no node's"
        by_node[kernel_nodes[m.group(1)]].append(device_kernel)
    assert all(by_node.values()), {n: ks for n, ks in by_node.items() if not ks}
    assert set(code.functions) == set(code.kernels)  # what the host code launches is in the SASS
    print(f"{model} {target}: built in {seconds:.1f} s, {len(code.kernels)} device kernels for "
          f"{len(kernel_nodes)} kernels of {len(nodes)} nodes")


def inspect(path: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "edgec", "inspect", str(path)], capture_output=True, text=True)


def test_inspect_lists_each_kernel_with_its_sm_and_node(built):
    out, _ = built("mlp", "jetson-nano")
    r = inspect(out)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert "device code: SASS for sm_53 (cubin" in r.stdout
    assert "PTX embedded: no; CUDA source embedded: no" in lines and "problems: none" in lines
    rows = {line.split()[0]: line.split() for line in lines if re.match(r"  k\d", line)}
    assert sorted(rows) == ["k0_dense_relu", "k1_dense_relu", "k2_dense"]
    assert rows["k2_dense"][1:3] == ["%2", "dense"] and rows["k2_dense"][4:6] == ["sm_53", "k2_dense_kernel"]
    assert "fc3.matmul, fc3.add" in next(line for line in lines if line.startswith("  k2_dense"))


def test_inspect_of_a_cpu_artifact_and_of_a_directory_that_is_none(models, tmp_path):
    edgec.compile(models["mlp"], target="host", output=tmp_path / "host")
    r = inspect(tmp_path / "host")
    assert r.returncode == 0, r.stderr
    assert "device code: none (a CPU library)" in r.stdout and "kernels: 3" in r.stdout
    assert re.search(r"^  k2_dense +%2 +dense +\S+ +fc3.matmul, fc3.add$", r.stdout, re.M), r.stdout
    (tmp_path / "empty").mkdir()
    r = inspect(tmp_path / "empty")
    assert r.returncode == 2 and "is not an edgec artifact (no manifest.json)" in r.stderr, r.stderr


def test_nvrtc_builds_orin_where_nvcc_is_missing(models, tmp_path, monkeypatch):
    monkeypatch.setattr(cuda, "nvcc_path", lambda: None)
    problem = cuda_build_problem("jetson-orin")
    if problem:
        pytest.skip(problem)
    edgec.compile(models["mlp"], target="jetson-orin", output=tmp_path / "art")
    images = read_device_code(tmp_path / "art" / "model.so").images
    assert [(i.kind, i.sm, i.container) for i in images] == [("sass", 87, "cubin")]


# ---------------------------------------------------------------------------------------------
# the compile-time check refuses what would not run on the board


def _compiling_with(monkeypatch, compile_cuda=None, edit_source=None, sm=None):
    """Make the CUDA build compile with `compile_cuda(code)`, or with edgec's own compiler for
    SM `sm` (default: the target's) on the source changed by `edit_source`."""
    import tvm_ffi
    real = cuda.compiling_for

    @contextlib.contextmanager
    def compiling_for(target):
        with real(dataclasses.replace(target, sm=sm or target.sm)) as compiler:
            ours = tvm_ffi.get_global_func("tvm_callback_cuda_compile")
            replacement = compile_cuda or (lambda code: ours(edit_source(code) if edit_source else code))
            tvm_ffi.register_global_func("tvm_callback_cuda_compile", replacement, override=True)
            yield compiler
    monkeypatch.setattr(cuda, "compiling_for", compiling_for)


def _refused(models, tmp_path, *expected):
    out = tmp_path / "out" / "art"
    with pytest.raises(EdgecError) as e:
        edgec.compile(models["mlp"], target="jetson-nano", output=out)
    message = str(e.value)
    assert "would not run on the board" in message and "writes no artifact" in message
    for part in expected:
        assert part in message, message
    assert not any(tmp_path.iterdir())  # no artifact, no temporary directory, no parent made for it


@pytest.fixture
def nano_builds():
    problem = cuda_build_problem("jetson-nano")
    if problem:
        pytest.skip(problem)


def test_compile_refuses_sass_for_another_sm(models, tmp_path, monkeypatch, nano_builds):
    _compiling_with(monkeypatch, sm=72)
    _refused(models, tmp_path, "jetson-nano (sm_53)", "it holds SASS for sm_72, not only for sm_53")


def test_compile_refuses_ptx(models, tmp_path, monkeypatch, nano_builds):
    from tvm.support import nvcc

    def ptx(code):
        with cuda._environ(CUDA_PATH=str(cuda.nvrtc_cuda_path())):
            return nvcc.compile_cuda(code, target_format="ptx", arch="compute_53", compiler="nvrtc")
    _compiling_with(monkeypatch, compile_cuda=ptx)
    _refused(models, tmp_path, "it holds no SASS", "it holds PTX",
             "kernels without a device kernel: k0_dense_relu, k1_dense_relu, k2_dense")


def test_compile_refuses_a_kernel_without_device_kernel(models, tmp_path, monkeypatch, nano_builds):
    _compiling_with(monkeypatch, edit_source=lambda code: code.replace("k2_dense_kernel", "k2_dense_kernex"))
    _refused(models, tmp_path, "kernels without a device kernel: k2_dense",
             "device kernels that are no kernel's: k2_dense_kernex",
             "device functions the host code launches but the SASS lacks: k2_dense_kernel")


def test_check_finds_the_problems_of_an_edited_library(built, tmp_path):
    out, _ = built("mlp", "jetson-nano")
    data = (out / "model.so").read_bytes()
    kernels = ["k0_dense_relu", "k1_dense_relu", "k2_dense"]
    assert cubin.check_library(out / "model.so", get_target("jetson-nano"), kernels).sass_sms == [53]
    with pytest.raises(EdgecError, match="it holds SASS for sm_53, not only for sm_87"):
        cubin.check_library(out / "model.so", get_target("jetson-orin"), kernels)
    # the kernel's name changed everywhere (host code, TVM's table, the cubin's symbols)
    renamed = tmp_path / "renamed.so"
    renamed.write_bytes(data.replace(b"k1_dense_relu_kernel", b"k1_dense_relu_kernex"))
    with pytest.raises(EdgecError, match="kernels without a device kernel: k1_dense_relu; "
                                         "device kernels that are no kernel's: k1_dense_relu_kernex"):
        cubin.check_library(renamed, get_target("jetson-nano"), kernels)
    # the cubin's ELF header says sm_62 (ABI 7: the SM is the low byte of e_flags)
    start = data.index(b"\x7fELF\x02\x01", 4)
    (e_flags,) = struct.unpack_from("<I", data, start + 0x30)
    assert data[start + 8] == 7 and e_flags & 0xFF == 53
    other = tmp_path / "sm62.so"
    other.write_bytes(data[:start + 0x30] + struct.pack("<I", e_flags & ~0xFF | 62) + data[start + 0x34:])
    with pytest.raises(EdgecError, match="it holds SASS for sm_62, not only for sm_53"):
        cubin.check_library(other, get_target("jetson-nano"), kernels)
