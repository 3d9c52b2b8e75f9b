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
CACHE_ROOT=${LUCID_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lucid-sweep}
VENV="$CACHE_ROOT/libtorch-$TORCH_VERSION"
MARKER="$VENV/.lucid-installed"
PY=${PYTHON:-python3}

if [[ ! -f "$MARKER" ]]; then
  echo "installing torch $TORCH_VERSION into $VENV (one time, ~550 MB download)" >&2
  mkdir -p "$CACHE_ROOT"
  rm -rf "$VENV.partial"
  "$PY" -m venv "$VENV.partial"
  if [[ "${LUCID_TORCH_FULL:-0}" == "1" ]]; then
    "$VENV.partial/bin/pip" install --quiet --disable-pip-version-check "torch==$TORCH_VERSION"
  else
    "$VENV.partial/bin/pip" install --quiet --disable-pip-version-check --no-deps \
      "torch==$TORCH_VERSION" 'nvidia-cuda-runtime==13.0.96.*' 'nvidia-cuda-cupti==13.0.85.*'
  fi
  rm -rf "$VENV"
  mv "$VENV.partial" "$VENV"
  # the venv's scripts hard-code the .partial path; only site-packages is used, so that is harmless
  touch "$MARKER"
fi

LIBTORCH=$(echo "$VENV"/lib/python3*/site-packages/torch)
if [[ ! -f "$LIBTORCH/lib/libtorch_cpu.so" ]]; then
  echo "error: $LIBTORCH/lib/libtorch_cpu.so is missing; remove $VENV and run again" >&2
  exit 1
fi
echo "$LIBTORCH"
