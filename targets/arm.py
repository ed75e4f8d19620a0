"""ARM Cortex-A targets (64-bit Linux, NEON).

Each target names the TVM LLVM target (triple, CPU, features), the preferred layout (NHWC),
the vector width the schedules assume (128-bit NEON) and whether int8 dot-product instructions
(`sdot`/`udot`) may be used. The feature lists repeat what LLVM's CPU tables set for each core:

- Cortex-A53, A57, A72: ARMv8.0-A, NEON only.
- Cortex-A55, A76, A78, Neoverse-N1: ARMv8.2-A, NEON plus dotprod and fp16.

`qemu_cpus` gives, per target, the `qemu-aarch64 -cpu` models that execute exactly the
instructions the core has, best first: the core itself, or (qemu 7.2 has no A55 or A78 model) a
core with the same instruction set, so that an instruction the core lacks still stops with SIGILL.
"""

from __future__ import annotations

from . import Target, register_target

ARM_TRIPLE = "aarch64-linux-gnu"


def _arm(name: str, cpu: str, description: str, dotprod: bool, aliases: tuple[str, ...] = (),
         qemu: tuple[str, ...] = ()) -> Target:
    mattr = ["+neon", "+dotprod", "+fullfp16"] if dotprod else ["+neon"]
    tvm = {"kind": "llvm", "mtriple": ARM_TRIPLE, "mcpu": cpu, "mattr": mattr}
    return Target(name, description, tvm, kind="cpu", arch="aarch64", layout="NHWC",
                  vector_bits=128, dotprod=dotprod, aliases=aliases, qemu_cpus=qemu or (cpu,))


ARM_TARGETS = [
    _arm("arm-a72", "cortex-a72", "ARM Cortex-A72, ARMv8.0-A NEON (Raspberry Pi 4)", False, ("rpi4",)),
    _arm("arm-a53", "cortex-a53", "ARM Cortex-A53, ARMv8.0-A NEON (Raspberry Pi 3, many SoCs)", False),
    _arm("arm-a55", "cortex-a55", "ARM Cortex-A55, ARMv8.2-A NEON + dotprod + fp16", True,
         qemu=("cortex-a55", "cortex-a76")),
    _arm("arm-a57", "cortex-a57", "ARM Cortex-A57, ARMv8.0-A NEON (Jetson Nano/TX2 CPU)", False),
    _arm("arm-a76", "cortex-a76", "ARM Cortex-A76, ARMv8.2-A NEON + dotprod + fp16 (Raspberry Pi 5)", True,
         ("rpi5",)),
    _arm("arm-a78", "cortex-a78", "ARM Cortex-A78, ARMv8.2-A NEON + dotprod + fp16", True,
         qemu=("cortex-a78", "cortex-a76")),
    _arm("arm-neoverse-n1", "neoverse-n1", "ARM Neoverse-N1, ARMv8.2-A NEON + dotprod + fp16 (Graviton2, Ampere Altra)",
         True),
]

for _t in ARM_TARGETS:
    register_target(_t)

def is_arm(target: Target) -> bool:
    return target.arch == "aarch64"
