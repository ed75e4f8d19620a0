#!/usr/bin/env bash
# Build a qemu TCG plugin of tools/qemu_insn_count/ with the host C compiler.
# Usage: tools/build_qemu_plugin.sh [OUTPUT] [SOURCE]
#   OUTPUT default: build/qemu_insn_count/libinsn_count.so
#   SOURCE default: tools/qemu_insn_count/insn_count.c (the instruction counter of tools/arm_bench.py);
#          tools/qemu_insn_count/insn_profile.c is the per-block profiler of tools/arm_profile.py.
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/qemu_insn_count/libinsn_count.so}"
src="${2:-tools/qemu_insn_count/insn_count.c}"
mkdir -p "$(dirname "$out")"
# qemu 9 dropped plugin API version 1 (the minimum became 2); the calls used here exist in both.
major=$(qemu-aarch64 --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p')
version=1
if [ "${major:-0}" -ge 9 ]; then version=2; fi
cc="${CC:-cc}"
"$cc" -O2 -shared -fPIC -fvisibility=hidden -DEDGEC_QEMU_PLUGIN_VERSION="$version" \
    -o "$out" "$src"
echo "$out"
