# shellcheck shell=bash
# What the scripts share: the install cache outside the checkout, logging, root access, apt-get and
# the one-time virtual environments. Source it after setting LOG_NAME (the prefix of every message).

CACHE_ROOT=${LUCID_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/lucid-sweep}
PY=${PYTHON:-python3}

log() { echo "${LOG_NAME:?}: $*" >&2; }
die() { echo "${LOG_NAME:?}: error: $*" >&2; exit 1; }

# root runs apt-get directly; anyone else goes through sudo when it is there
as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; elif command -v sudo >/dev/null; then sudo "$@"; else
    die "need root to run: $*"
  fi
}

# apt_install PACKAGE...: install the packages in one apt-get run, updating the lists once on failure
apt_install() {
  log "installing $* with apt-get"
  if ! as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2; then
    log "apt-get install $* failed; running apt-get update and retrying"
    as_root apt-get update >&2
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" >&2
  fi
}

# venv_once VENV WHAT PIP_ARGUMENTS...: make the virtual environment VENV with pip's packages once.
# Its marker file, written last, holds the arguments installed: an install cut short is started
# again from nothing next time, and a list that grew installs what is new into the environment
# (pip keeps what is already satisfied) instead of rebuilding it.
venv_once() {
  local venv=$1 what=$2
  shift 2
  local marker="$venv/.lucid-installed" want="$*"
  if [[ -f "$marker" ]]; then
    [[ "$(cat "$marker")" == "$want" ]] && return 0
    log "updating $venv: $want"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$@" >&2
    printf '%s' "$want" >"$marker"
    return 0
  fi
  log "installing $what into $venv (one time)"
  mkdir -p "$(dirname "$venv")"
  rm -rf "$venv"
  "$PY" -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "$@" >&2
  printf '%s' "$want" >"$marker"
}
