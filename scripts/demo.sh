#!/usr/bin/env bash
# README's first command (via `make demo`): a whole sweep on the embedded default — the two synthetic
# demo models in fixtures/demo, an in-process queue, results and an HTML gallery under out/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${CARGO_TARGET_DIR:-target}/release/lucid-worker
"$BIN" inspect fixtures/demo
"$BIN" local --spec examples/demo.toml "$@"
echo
echo "open the gallery: file://$PWD/out/demo/demo/gallery/index.html"
