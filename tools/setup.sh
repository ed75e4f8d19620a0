#!/usr/bin/env bash
# Set up edgec on a fresh Debian machine: Python packages (edgec editable, pinned TVM), and with
# --test what the test suite needs (test packages, NVRTC 12 for the Jetson targets, qemu-user, the
# aarch64 cross toolchain, chromium).
# Idempotent: re-running installs nothing new.
set -euo pipefail
cd "$(dirname "$0")/.."

want_test=0
[[ "${1:-}" == "--test" ]] && want_test=1

PIP="python3 -m pip install --quiet --disable-pip-version-check"
if (( want_test )); then
    $PIP -e ".[test,cuda]"  # cuda: NVRTC 12, so the Jetson tests build SASS without a CUDA toolkit
else
    $PIP -e .
fi
# The PyPI zig toolchain cross-links aarch64 libraries with no apt step.
$PIP "ziglang>=0.13"
command -v pyenv >/dev/null 2>&1 && pyenv rehash || true

if (( want_test )); then
    need=()
    command -v qemu-aarch64 >/dev/null 2>&1 || need+=(qemu-user)
    command -v aarch64-linux-gnu-g++ >/dev/null 2>&1 || need+=(g++-aarch64-linux-gnu)
    command -v aarch64-linux-gnu-objdump >/dev/null 2>&1 || need+=(binutils-aarch64-linux-gnu)
    command -v chromium >/dev/null 2>&1 || need+=(chromium)  # tests/test_view.py, through playwright
    if (( ${#need[@]} )); then
        if [[ $(id -u) -ne 0 ]]; then
            echo "setup: need root to install ${need[*]} (apt-get); ARM and browser tests will skip without them" >&2
        else
            apt-get update -qq
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
        fi
    fi
fi
if (( want_test )); then
    # The aarch64 TVM runtime and the edgec-run runner, and the CUDA libraries of a Jetson bundle,
    # cached in ~/.cache/edgec (downloads the aarch64 wheels of the pinned TVM and of
    # nvidia-cuda-runtime once).
    python3 -c "from edgec.targets import bundle; print('setup: aarch64 runtime in', bundle.runtime_dir())"
    python3 -c "from edgec.targets import bundle; print('setup: aarch64 CUDA runtime in', bundle.cuda_runtime_dir())"
fi
echo "setup: done"
