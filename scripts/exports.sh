#!/usr/bin/env bash
# The PyTorch side of the tests (issue 14): installs the exporter's Python environment once, runs its
# own tests, and writes the TorchScript exports the Rust tests read into the folder given (by
# `make test`: $CARGO_TARGET_DIR/exports). Tests never install or build anything themselves.
#
#   scripts/exports.sh OUT_DIR
#
# The environment is a virtual environment in the cache folder outside the checkout (full PyPI torch
# 2.11.0 with torchvision 0.26.0: ≈ 3 GB, 2.5 min to install here); the exporter is installed into it
# in editable mode, so its code is always the checkout's.
set -euo pipefail
cd "$(dirname "$0")/.."

OUT=${1:?usage: scripts/exports.sh OUT_DIR}
LOG_NAME=exports
source scripts/lib.sh
VENV="$CACHE_ROOT/torch-venv"

venv_once "$VENV" "torch 2.11.0 + torchvision 0.26.0 (~3 GB download)" \
  torch==2.11.0 torchvision==0.26.0 'safetensors>=0.4' 'pytest>=8' 'setuptools>=61' wheel \
  'scikit-image>=0.24'
"$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e exporter

log "exporter tests"
"$VENV/bin/python" -m pytest -q -p no:warnings -p no:cacheprovider exporter/tests

rm -rf "$OUT"
mkdir -p "$OUT"
export PYTHONWARNINGS=ignore
# torchvision's resnet18 with random weights (seed 0): three layers for the sweep test
"$VENV/bin/lucid-export" export --model torchvision:resnet18 --seed 0 \
  --layers conv1,layer1,layer2.0.conv1 --out "$OUT/resnet18" >/dev/null
# torchvision's vgg11_bn and googlenet (random weights): three layers each, swept by local
"$VENV/bin/lucid-export" export --model torchvision:vgg11_bn --seed 0 \
  --layers features.2,features.6,features.10 --out "$OUT/vgg11_bn" >/dev/null
"$VENV/bin/lucid-export" export --model torchvision:googlenet --seed 0 \
  --layers conv1,conv2,inception3a --out "$OUT/googlenet" >/dev/null
# ground truth: resnet18 whose conv1 holds four oriented Gabor filters, tapped after its ReLU
"$VENV/bin/lucid-export" export --model lucid_export.gabor:resnet18_gabor \
  --layers relu --name resnet18_gabor --mean 0.5,0.5,0.5 --std 0.25,0.25,0.25 --out "$OUT/resnet18_gabor" >/dev/null
# the fixture alexnet_v2 (training_seed_01) as a PyTorch module: the equivalence test
"$VENV/bin/python" -c 'import sys; from lucid_export.alexnet_v2 import convert; convert(sys.argv[1], sys.argv[2])' \
  fixtures/alexnet_small/safetensors/training_seed_01.safetensors "$OUT/alexnet_small.safetensors"
"$VENV/bin/lucid-export" export --model lucid_export.alexnet_v2:build_small \
  --weights "$OUT/alexnet_small.safetensors" --name alexnet_v2 --range=-1,1 \
  --layers conv1,conv2,conv3,conv4,conv5,fc6,fc7,fc8 --out "$OUT/alexnet_small" >/dev/null
# scikit-image's public-domain / CC0 photographs (in its wheel; licences in probe-photos.licences.json)
"$VENV/bin/lucid-export" probe-photos --out "$OUT/probe-photos" >/dev/null
log "exports written to $OUT"
