"""The device registry: each target names its TVM target, its properties and its pipelines.

`get_target(name)` resolves a name or alias. `Target.pipeline(level)` is the pass pipeline string
for `-O<level>`; the pass manager runs it before lowering.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from edgec.errors import EdgecError

# Pipelines by level: -O0 imports and lowers only; -O1 clean-ups; -O2 adds recognition and
# fusion; -O3 adds the target's preferred layout (see `level_pipelines`).
CLEANUP = "fold-constants,eliminate-noop,simplify-shapes,cse,dce"
RECOGNIZE = "recognize-layernorm,recognize-gelu,recognize-silu,recognize-hardswish"
FUSE = "fuse-conv-bn,fuse-matmul-add,fuse-bias,fuse-activation"


def level_pipelines(layout: str) -> dict[int, str]:
    """The pipeline of each level for a target whose convs and pools prefer `layout`."""
    o2 = f"{CLEANUP},{RECOGNIZE},{FUSE},fold-constants,cse,fuse-elementwise,dce"
    o3 = f"{CLEANUP},{RECOGNIZE},{FUSE},convert-layout{{to={layout}}},fold-constants,cse,fuse-elementwise,dce"
    return {0: "", 1: CLEANUP, 2: o2, 3: o3}


DEFAULT_PIPELINES = level_pipelines("NCHW")


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
    aliases: tuple[str, ...] = ()
    pipelines: dict[int, str] | None = None  # None: level_pipelines(layout)

    def __post_init__(self):
        if self.pipelines is None:
            object.__setattr__(self, "pipelines", level_pipelines(self.layout))

    def pipeline(self, level: int) -> str:
        if level not in self.pipelines:
            raise EdgecError(f"optimization level -O{level} does not exist; use -O0 to -O{max(self.pipelines)}")
        return self.pipelines[level]

    def tvm_target(self):
        import tvm
        return tvm.target.Target(self.tvm)

    @property
    def runs_here(self) -> bool:
        """Whether a compiled library loads in this Python process."""
        return self.name == "host"


def _host() -> Target:
    from tvm.target import codegen
    import tvm
    cpu = codegen.llvm_get_system_cpu()
    features = codegen.llvm_get_cpu_features(tvm.target.Target({"kind": "llvm", "mcpu": cpu}))
    bits = 512 if "avx512f" in features else 256
    return Target("host", f"this machine's CPU ({cpu})", {"kind": "llvm", "mcpu": cpu},
                  vector_bits=bits)


TARGETS: dict[str, Target] = {}
_HOST: list[Target] = []


def register_target(t: Target) -> Target:
    for n in (t.name, *t.aliases):
        if n in TARGETS:
            raise ValueError(f"target {n!r} is defined twice")
        TARGETS[n] = t
    return t


def get_target(name: str) -> Target:
    if name == "host":
        if not _HOST:
            _HOST.append(_host())
        return _HOST[0]
    if name not in TARGETS:
        raise EdgecError(f"unknown target '{name}'; known targets: {', '.join(all_target_names())} "
                         "(see `edgec targets`)")
    return TARGETS[name]


def all_target_names() -> list[str]:
    return ["host", *sorted({t.name for t in TARGETS.values()})]


# The target `edgec compile` uses when --target is omitted: the project's reference board.
DEFAULT_TARGET = "arm-a72"

from . import arm  # noqa: E402,F401 - registers the ARM Cortex-A targets
