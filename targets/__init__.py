"""The device registry: each target names its TVM target, its properties and its pipelines.

`get_target(name)` resolves a name or alias. `Target.pipeline(level)` is the pass pipeline string
for `-O<level>`; the pass manager runs it before lowering. The host target is detected (its LLVM
CPU and vector width, through TVM) when first asked for; `get_target("host", detect=False)` gives
what is known without TVM: its pipelines, layout and arch.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edgec.errors import EdgecError, did_you_mean

# Pipelines by level: -O0 imports and lowers only; -O1 clean-ups; -O2 adds recognition, fusion
# and the target's preferred layout; -O3 is -O2 for now (see `level_pipelines`). The IR's
# layout is the kernels': below -O2 convolutions run in the model's own layout.
CLEANUP = "fuse-qdq,fold-constants,eliminate-noop,simplify-shapes,cse,dce"
RECOGNIZE = "recognize-layernorm,recognize-gelu,recognize-silu,recognize-hardswish"
FUSE = "fuse-pad,fuse-conv-bn,fuse-matmul-add,fuse-bias,fuse-activation"


def level_pipelines(layout: str) -> dict[int, str]:
    """The pipeline of each level for a target whose convs and pools prefer `layout`."""
    o2 = f"{CLEANUP},{RECOGNIZE},{FUSE},convert-layout{{to={layout}}},fold-constants,cse,fuse-elementwise,fuse-epilogue,dce"
    return {0: "", 1: CLEANUP, 2: o2, 3: o2}


DEFAULT_PIPELINES = level_pipelines("NCHW")
# `--precision`: float16 storage and math (fp16), or only conv, dense and matmul in float16 (mixed);
# see passes/convert_precision.py and `Target.precision_pipeline`.
PRECISIONS = ("fp16", "mixed")


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    tvm: dict[str, Any]  # the JSON dict for tvm.target.Target
    kind: str = "cpu"  # cpu | cuda
    arch: str = "x86_64"  # machine of the compiled library: x86_64 | aarch64
    layout: str = "NCHW"  # preferred data layout for convs and pools
    vector_bits: int = 128  # vector width the schedules assume
    dotprod: bool = False  # int8 dot-product instructions allowed
    avx2: bool = False  # x86 AVX2: int8 products as exact int16 ones (vpmaddwd)
    aliases: tuple[str, ...] = ()
    pipelines: dict[int, str] | None = None  # None: level_pipelines(layout)
    qemu_cpus: tuple[str, ...] = ()  # qemu-aarch64 -cpu models that run exactly its instructions, best first
    # CUDA targets (kind "cuda", see targets/jetson.py); `dotprod` is then the GPU's int8 dp4a
    sm: int = 0  # CUDA compute capability, 87 for sm_87
    host_cpu: str = ""  # LLVM CPU of the board's host (aarch64) cores
    fp16: bool = False  # fp16 storage and arithmetic allowed
    jetpack: str = ""  # the JetPack releases (and their CUDA) the artifact is built for

    def __post_init__(self):
        if self.pipelines is None:
            object.__setattr__(self, "pipelines", level_pipelines(self.layout))

    def pipeline(self, level: int) -> str:
        if level not in self.pipelines:
            raise EdgecError(f"optimization level -O{level} does not exist; use -O0 to -O{max(self.pipelines)}")
        return self.pipelines[level]

    def precision_pipeline(self, pipeline: str, precision: str) -> str:
        """`pipeline` with `convert-precision{to=<precision>}` ("fp16" or "mixed") after its
        convert-layout (so that the casts it adds fuse with their neighbours), or at its end when
        it has none; an EdgecError for a target that does not compute in float16 (CPU targets)."""
        if precision not in PRECISIONS:
            raise EdgecError(f"precision '{precision}' does not exist; use one of {', '.join(PRECISIONS)}")
        if not self.fp16:
            gpus = ", ".join(sorted({t.name for t in TARGETS.values() if t.fp16}))
            raise EdgecError(f"--precision {precision}: target '{self.name}' computes in float32 only; float16 "
                             f"is for GPU targets ({gpus}). Omit --precision, or choose a GPU target")
        from edgec.passmanager import format_pipeline, parse_pipeline
        items = parse_pipeline(pipeline)
        at = next((i + 1 for i, (name, _) in enumerate(items) if name == "convert-layout"), len(items))
        return format_pipeline([*items[:at], ("convert-precision", {"to": precision}), *items[at:]])

    def tvm_target(self):
        import tvm
        return tvm.target.Target(self.tvm)

    def int8_accumulator(self, ctx, kind: str, x, w, x_zero_points: list[int], w_zero_points: list[int],
                         attrs: dict | None = None):
        """A hook of the quantized lowering (compiler/ops/quant.py): the target's own int32
        accumulator for an integer matmul (`kind` "matmul") or 2-D conv ("conv") of the Relax
        operands `x`, `w` and their zero points, padded on its last axis, as (acc, padded size);
        None: the generic lowering. For constant weights, targets with `dotprod` use the sdot
        kernels (targets/schedules/int8.py), targets with `avx2` the vpmaddwd ones (int16.py);
        CUDA targets the generic lowering (no dp4a kernels yet)."""
        if self.kind != "cpu":
            return None
        if self.dotprod:
            from .schedules import int8
            return int8.accumulator(ctx, kind, x, w, x_zero_points, w_zero_points, attrs)
        if self.avx2:
            from .schedules import int16
            return int16.accumulator(ctx, kind, x, w, x_zero_points, w_zero_points, attrs)
        return None

    @property
    def runs_here(self) -> bool:
        """Whether a compiled library loads in this Python process."""
        return self.name == "host"

    @property
    def cuda_arch(self) -> str:
        """"sm_87" for a CUDA target, "" otherwise."""
        return f"sm_{self.sm}" if self.sm else ""


# The host before detection: the LLVM CPU and vector width are filled in by `_host`.
HOST = Target("host", "this machine's x86 CPU", {"kind": "llvm"}, layout="NHWC")


def _host() -> Target:
    from tvm.target import codegen
    import tvm
    cpu = codegen.llvm_get_system_cpu()
    features = codegen.llvm_get_cpu_features(tvm.target.Target({"kind": "llvm", "mcpu": cpu}))
    bits = 512 if "avx512f" in features else 256
    return dataclasses.replace(HOST, description=f"{HOST.description} ({cpu})", tvm={"kind": "llvm", "mcpu": cpu},
                               vector_bits=bits, avx2="avx2" in features)


TARGETS: dict[str, Target] = {}
_HOST: list[Target] = []


def register_target(t: Target) -> Target:
    for n in (t.name, *t.aliases):
        if n in TARGETS:
            raise ValueError(f"target {n!r} is defined twice")
        TARGETS[n] = t
    return t


def get_target(name: str, detect: bool = True) -> Target:
    """The target called `name` (or an alias of it). `detect=False`: the host as `HOST`, without
    detecting its CPU (which loads TVM)."""
    if name == "host":
        if not detect:
            return HOST
        if not _HOST:
            _HOST.append(_host())
        return _HOST[0]
    if name not in TARGETS:
        aliases = ", ".join(f"{a} ({t.name})" for a, t in sorted(TARGETS.items()) if a != t.name)
        raise EdgecError(f"unknown target '{name}'{did_you_mean(name, ['host', *TARGETS])}; known targets: "
                         f"{', '.join(all_target_names())}; aliases: {aliases} (see `edgec targets`)")
    return TARGETS[name]


def all_target_names() -> list[str]:
    return ["host", *sorted({t.name for t in TARGETS.values()})]


# The target `edgec compile` uses when --target is omitted: the project's reference board.
DEFAULT_TARGET = "arm-a72"

from . import arm  # noqa: E402,F401 - registers the ARM Cortex-A targets
from . import jetson  # noqa: E402,F401 - registers the NVIDIA Jetson targets
