#!/usr/bin/env bash
# README's first command (via `make demo`): a whole sweep on the embedded default — the two synthetic
# demo models in fixtures/demo, an in-process queue, results, the probe pass over generated stimuli
# and an HTML gallery with dataset examples under out/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release/lucid-worker
"$BIN" inspect fixtures/demo
# the demo's probe set: generated gratings and colour fields (dataset examples with known answers)
"$BIN" demo-probe-set out/demo-probe
"$BIN" local --spec examples/demo.toml "$@"
echo
echo "open the gallery: file://$PWD/out/demo/demo/gallery/index.html"
