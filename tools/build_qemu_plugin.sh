#!/usr/bin/env bash
# Build the qemu instruction-counting plugin (tools/qemu_insn_count/insn_count.c) with the host C
# compiler. Usage: tools/build_qemu_plugin.sh [OUTPUT]   (default: build/qemu_insn_count/libinsn_count.so)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-build/qemu_insn_count/libinsn_count.so}"
mkdir -p "$(dirname "$out")"
# qemu 9 dropped plugin API version 1 (the minimum became 2); the calls used here exist in both.
major=$(qemu-aarch64 --version | sed -n 's/.*version \([0-9]*\)\..*/\1/p')
version=1
if [ "${major:-0}" -ge 9 ]; then version=2; fi
cc="${CC:-cc}"
"$cc" -O2 -shared -fPIC -fvisibility=hidden -DEDGEC_QEMU_PLUGIN_VERSION="$version" \
    -o "$out" tools/qemu_insn_count/insn_count.c
echo "$out"
