#!/usr/bin/env bash
# The main job on the embedded default: renders the demo models shipped in fixtures/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${LUCID_DEMO_OUT:-out/demo}
BIN=target/release/lucid-worker
"$BIN" inspect fixtures/demo
echo "rendering the demo models' conv2 channels 0-7 (they mirror the Gabor and colour-opponent conv1 filters)"
"$BIN" render --checkpoint fixtures/demo --layer conv2 --channels 0-7 --steps "${LUCID_DEMO_STEPS:-256}" \
  --size "${LUCID_DEMO_SIZE:-128}" --out "$OUT"
echo "images written under $OUT/"
