#!/usr/bin/env bash
# Offline checks of the Kubernetes deployment: the Helm chart (charts/lucid-sweep), the Grafana dashboard and
# the Prometheus alert rules (deploy/). Called by `make test`; needs no cluster and no container engine.
#
# Usage: scripts/check-deploy.sh [pytest arguments...]
#
# Installs what it uses, idempotently:
#   - a virtual environment at $LUCID_CACHE_DIR/deploy-venv (default ~/.cache/lucid-sweep/deploy-venv) with
#     the pinned PyPI packages below (helm-python-sdk wraps Helm v4's Go code: lint, render, schema checks)
#   - promtool, from Debian's prometheus package, when it is not on PATH
# then runs deploy/tests/test_chart.py with pytest, whose last line is the summary.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOG_NAME=check-deploy
source "$ROOT/scripts/lib.sh"
VENV="$CACHE_ROOT/deploy-venv"
REQUIREMENTS=(
  "helm-python-sdk==0.2.2"
  "kubernetes-validate==1.37.0"
  "yamllint==1.38.0"
  "PyYAML==6.0.4"
  "jsonschema==4.26.0"
  "pytest==9.2.0"
)
STAMP="$VENV/.lucid-requirements"

install_venv() {
  local wanted
  wanted=$(printf '%s\n' "${REQUIREMENTS[@]}")
  if [[ -x "$VENV/bin/python" && -f "$STAMP" && "$(cat "$STAMP")" == "$wanted" ]]; then
    return
  fi
  "$PY" -c 'import sys; sys.exit(sys.version_info < (3, 11))' || die "$PY is older than 3.11 (tomllib)"
  log "installing ${REQUIREMENTS[*]} into $VENV"
  mkdir -p "$CACHE_ROOT"
  [[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
  "$VENV/bin/pip" install --quiet --disable-pip-version-check "${REQUIREMENTS[@]}" >&2
  echo "$wanted" >"$STAMP"
}

install_promtool() {
  command -v promtool >/dev/null && return
  apt_install prometheus
  command -v promtool >/dev/null || die "promtool is still missing after installing prometheus"
}

install_venv
install_promtool

cd "$ROOT"
# -p no:cacheprovider and PYTHONDONTWRITEBYTECODE keep the checkout clean; -c /dev/null ignores any ini file.
PYTHONDONTWRITEBYTECODE=1 exec "$VENV/bin/python" -m pytest -c /dev/null --rootdir "$ROOT" -p no:cacheprovider \
  -ra "$ROOT/deploy/tests" "$@"
