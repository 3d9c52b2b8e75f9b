#!/usr/bin/env bash
# Idempotent libtorch installer for tch 0.24 (PyTorch 2.11.0).
#
# Installs the pinned torch wheel into a virtual environment in a cache folder outside the checkout
# (default ~/.cache/lucid-sweep/libtorch-2.11.0) and prints the LIBTORCH path to use for the build.
# A second run finds the marker file and does nothing. CPU boxes get the small install (torch without its
# CUDA dependencies except the two runtime libraries libtorch_cpu.so needs); set LUCID_TORCH_FULL=1 for a
# full install with CUDA libraries (GPU build hosts).
set -euo pipefail

TORCH_VERSION=2.11.0
LOG_NAME=install-libtorch
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
VENV="$CACHE_ROOT/libtorch-$TORCH_VERSION"

if [[ "${LUCID_TORCH_FULL:-0}" == "1" ]]; then
  venv_once "$VENV" "torch $TORCH_VERSION with CUDA (~3 GB download)" "torch==$TORCH_VERSION"
else
  venv_once "$VENV" "torch $TORCH_VERSION (~550 MB download)" --no-deps \
    "torch==$TORCH_VERSION" 'nvidia-cuda-runtime==13.0.96.*' 'nvidia-cuda-cupti==13.0.85.*'
fi

LIBTORCH=$(echo "$VENV"/lib/python3*/site-packages/torch)
if [[ ! -f "$LIBTORCH/lib/libtorch_cpu.so" ]]; then
  die "$LIBTORCH/lib/libtorch_cpu.so is missing; remove $VENV and run again"
fi
echo "$LIBTORCH"
