#!/usr/bin/env bash
# Installs what the gallery's browser test needs, if missing: Debian's Chromium and Node.js.
# Idempotent; needs root (or passwordless apt) only when something is missing.
set -euo pipefail

missing=()
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
command -v node >/dev/null 2>&1 || missing+=(nodejs)
if [ ${#missing[@]} -eq 0 ]; then
    exit 0
fi

echo "setup-browser: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
if ! apt-get install -y --no-install-recommends "${missing[@]}" >&2; then
    apt-get update >&2
    apt-get install -y --no-install-recommends "${missing[@]}" >&2
fi
command -v chromium >/dev/null 2>&1
command -v node >/dev/null 2>&1
