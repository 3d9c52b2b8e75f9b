#!/usr/bin/env bash
# Issue 18's measurements in one device session (docs/PERFORMANCE.md, "Issue 18, first levers"):
# our engine with and without the fused Adam, the compiled PyTorch peer on the same layer, every
# layer's rate, and a whole ecoset-width seed end to end through `local`. The same GPU and session
# (one warm machine) for all, so that their ratios mean something.
#
# On this machine: build the release binary and put it where the device gets it,
#   make release && mkdir -p .gpu && cp "$CARGO_TARGET_DIR/release/lucid-worker" .gpu/
# then `run` (carry [".gpu"]) once per group, each call under the device's 600 s limit:
#   bash tools/device_issue18.sh bench     # conv5 fused and not, every layer
#   bash tools/device_issue18.sh peer      # the compiled peer: max-autotune compiles 11 graphs first
#   bash tools/device_issue18.sh e2e       # a whole ecoset-width seed through `local`
# Each call's results land in one file, $OUT/issue18-GROUP.tar (one JSON and log per step,
# steps.txt with each step's exit and seconds, and gpu.txt).
#
# A smoke test on the CPU here (small batch, the peer on the CPU):
#   BATCH=2 ALL_BATCH=2 PYTHON=~/.cache/lucid-sweep/torch-venv/bin/python \
#   WORKER=$CARGO_TARGET_DIR/debug/lucid-worker PEER_ARGS="--device cpu --size 64 --timed 2 --precision fp32" \
#   OUT=$(mktemp -d) bash tools/device_issue18.sh bench
set -uo pipefail

GROUP=${1:?name a group: bench, peer or e2e}
PYTHON=${PYTHON:-python3}
BATCH=${BATCH:-512}
read -r -a PEER_ARGS <<<"${PEER_ARGS:-}"
TORCH_LIB=$("$PYTHON" -c 'import torch, os; print(os.path.dirname(torch.__file__))')/lib
export LD_LIBRARY_PATH="$TORCH_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
WORKER=${WORKER:-.gpu/lucid-worker}
OUT=${OUT:?the device run sets OUT}
RESULTS="$OUT/issue18-$GROUP"
mkdir -p "$RESULTS"
MODELS=$(mktemp -d)

# One step: a name, a time limit in seconds, the command; its stdout to NAME.json, stderr to NAME.log.
step() {
  local name=$1 limit=$2
  shift 2
  local started=$SECONDS
  timeout "$limit" "$@" >"$RESULTS/$name.json" 2>"$RESULTS/$name.log"
  echo "$name: exit $? in $((SECONDS - started)) s" | tee -a "$RESULTS/steps.txt"
}

# The spec of one seed's every layer and channel in bf16, into a local folder.
seed_spec() {
  cat <<EOF
run_id = "issue18-e2e"
layers = "all"
channels = "all"
[models]
training_seed_01 = "$SEED"
[render]
precision = "bf16"
[storage]
kind = "local"
local_dir = "$MODELS/out"
EOF
}

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >"$RESULTS/gpu.txt" 2>&1
"$WORKER" demo-models "$MODELS" --seeds 1 --ecoset-widths >/dev/null
SEED="$MODELS/training_seed_01"

case $GROUP in
  bench)
    step conv5-fused 120 "$WORKER" bench --checkpoint "$SEED" --layer conv5 --batch "$BATCH" \
      --precision bf16 --json
    step conv5-unfused 120 "$WORKER" bench --checkpoint "$SEED" --layer conv5 --batch "$BATCH" \
      --precision bf16 --unfused-adam --json
    step all-layers 300 "$WORKER" bench --checkpoint "$SEED" --all-layers --batch "${ALL_BATCH:-0}" \
      --precision bf16 --json
    ;;
  peer)
    step peer-conv5 560 "$PYTHON" tools/compiled_peer.py --layer conv5 --batch "$BATCH" \
      --precision bf16 "${PEER_ARGS[@]}"
    ;;
  e2e)
    seed_spec >"$MODELS/seed.toml"
    step e2e-seed 560 "$WORKER" local --spec "$MODELS/seed.toml" --device cuda --no-gallery --quiet --json
    ;;
  *)
    echo "unknown group $GROUP: bench, peer or e2e" >&2
    exit 2
    ;;
esac

tar -C "$OUT" -cf "$OUT/issue18-$GROUP.tar" "issue18-$GROUP" && rm -rf "$RESULTS"
