"""NVIDIA Jetson targets: CUDA kernels for the board's GPU, host code for its aarch64 cores.

Each target names the GPU's CUDA architecture (`sm`), the host CPU (given explicitly: TVM's tags
give none for the Nano and TX2, and name `carmel` for the Orin Nano), the JetPack releases it is
built for, and whether fp16 and the int8 dot product (`dp4a`, the `dotprod` field) may be used.
The TVM target is the CUDA dict of DESIGN.md section 4 with the host's LLVM dict inside.

Which compiler makes the SASS (targets/cuda.py): nvcc 13 builds sm_75 and newer; sm_53, 62 and 72
need NVRTC 12 from PyPI (`pip install 'edgec[cuda]'`), which builds the others too.
`qemu_cpus`: the qemu-aarch64 CPU models of the host cores, for the bundle's load test.
"""

from __future__ import annotations

from . import Target, level_pipelines, register_target
from .arm import ARM_TRIPLE

# The device limits every Jetson GPU shares (TVM reads them from the target, not from a device).
GPU_LIMITS = {"max_shared_memory_per_block": 49152, "max_threads_per_block": 1024, "thread_warp_size": 32}


def _jetson(name: str, sm: int, host_cpu: str, host_mattr: list[str], description: str, jetpack: str,
            dp4a: bool, qemu: tuple[str, ...], aliases: tuple[str, ...] = ()) -> Target:
    host = {"kind": "llvm", "mtriple": ARM_TRIPLE, "mcpu": host_cpu, "mattr": host_mattr}
    tvm = {"kind": "cuda", "arch": f"sm_{sm}", **GPU_LIMITS, "host": host}
    # GPU kernels read NCHW as well as NHWC (dlight schedules either); NCHW keeps convert-layout
    # from adding transposes around the model's own layout.
    return Target(name, description, tvm, kind="cuda", arch="aarch64", layout="NCHW", vector_bits=128,
                  dotprod=dp4a, aliases=aliases, pipelines=level_pipelines("NCHW"), qemu_cpus=qemu,
                  sm=sm, host_cpu=host_cpu, fp16=True, jetpack=jetpack)


NEON = ["+neon"]
NEON_FP16 = ["+neon", "+fullfp16"]
NEON_DOT = ["+neon", "+dotprod", "+fullfp16"]

JETSON_TARGETS = [
    _jetson("jetson-orin", 87, "cortex-a78ae", NEON_DOT,
            "NVIDIA Jetson Orin (Ampere GPU sm_87, Cortex-A78AE host): Orin Nano, Orin NX, AGX Orin",
            "JetPack 6 (CUDA 12.2-12.6) and 7 (CUDA 13)", True, ("cortex-a76",),
            ("orin", "jetson-orin-nano", "jetson-orin-nx", "jetson-agx-orin", "orin-nano", "orin-nx", "agx-orin")),
    _jetson("jetson-xavier", 72, "carmel", NEON_FP16,
            "NVIDIA Jetson Xavier (Volta GPU sm_72, Carmel host): Xavier NX, AGX Xavier",
            "JetPack 5 (CUDA 11.4)", True, ("cortex-a76",), ("xavier", "jetson-xavier-nx", "jetson-agx-xavier")),
    _jetson("jetson-nano", 53, "cortex-a57", NEON,
            "NVIDIA Jetson Nano (Maxwell GPU sm_53, Cortex-A57 host)",
            "JetPack 4 (CUDA 10.2)", False, ("cortex-a57",)),
    _jetson("jetson-tx2", 62, "cortex-a57", NEON,
            "NVIDIA Jetson TX2 (Pascal GPU sm_62, Cortex-A57 host; the Denver cores are not targeted)",
            "JetPack 4 (CUDA 10.2)", True, ("cortex-a57",)),
    _jetson("jetson-thor", 110, "neoverse-v3ae", ["+neon", "+dotprod", "+fullfp16", "+i8mm", "+sve", "+sve2"],
            "NVIDIA Jetson Thor (Blackwell GPU sm_110, Neoverse-V3AE host)",
            "JetPack 7 (CUDA 13)", True, ("max",)),
]

for _t in JETSON_TARGETS:
    register_target(_t)
