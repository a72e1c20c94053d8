#!/usr/bin/env bash
# Installs the pinned matrix-nio with its `e2e` extra (scripts/e2ee-client/requirements.txt,
# transitive pins in constraints.txt) into a virtualenv under .cache/e2ee-client/venv, for the
# independent E2EE client (client.py, driven by test/support/E2eeClient.ts) of the e2e tests.
#
# Needs only python3 (>= 3.10) and network access to PyPI. Binary wheels only (--only-binary
# :all:): nothing is compiled. Idempotent: when the stamp file in the venv matches the sha256 of
# requirements.txt + constraints.txt, it returns at once.
#
# Environment:
#   E2EE_CLIENT_PYTHON    interpreter to build the venv with (default: python3)
#   E2EE_CLIENT_VENV      venv directory (default: <repo>/.cache/e2ee-client/venv)
#   E2EE_CLIENT_REFREEZE  =1: install without constraints.txt, then rewrite constraints.txt from
#                         `pip freeze` (use after bumping the pin in requirements.txt)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${E2EE_CLIENT_VENV:-$root/.cache/e2ee-client/venv}"
python="${E2EE_CLIENT_PYTHON:-python3}"
req="$here/requirements.txt"
cons="$here/constraints.txt"
stamp="$venv/.courier-install-stamp"
lock="$venv.lock"

log() { echo "[e2ee-client-install] $*" >&2; }

if ! command -v "$python" >/dev/null 2>&1; then
  log "error: '$python' not found; install Python >= 3.10 or set E2EE_CLIENT_PYTHON"
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  log "error: matrix-nio needs Python >= 3.10, '$python' is $("$python" -V 2>&1)"
  exit 1
fi

# The stamp is the sha256 of requirements.txt followed by constraints.txt (E2eeClient.ts and
# test/setup/installE2eeClient.js compute the same hash to skip running this script at all).
hash_files() {
  "$python" -c 'import hashlib, sys; h = hashlib.sha256(); [h.update(open(p, "rb").read()) for p in sys.argv[1:]]; print(h.hexdigest())' "$req" "$cons"
}
want="$(hash_files)"

is_current() { [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; }

if [[ "${E2EE_CLIENT_REFREEZE:-}" != "1" ]] && is_current; then
  log "pinned matrix-nio already installed in $venv"
  exit 0
fi

# Cross-process lock (several jest workers may call this at once). mkdir is atomic and portable
# (no flock on macOS); a lock left by a dead process is taken over.
mkdir -p "$(dirname "$venv")"
waited=0
until mkdir "$lock" 2>/dev/null; do
  holder="$(cat "$lock/pid" 2>/dev/null || true)"
  if [[ -n "$holder" ]] && ! kill -0 "$holder" 2>/dev/null; then
    log "removing stale lock of dead process $holder"
    rm -rf "$lock"
    continue
  fi
  if ((waited == 0)); then log "another install is running (pid ${holder:-?}), waiting"; fi
  if ((waited >= 600)); then
    log "error: gave up waiting for $lock after 600 s"
    exit 1
  fi
  sleep 1
  waited=$((waited + 1))
done
echo $$ >"$lock/pid"
trap 'rm -rf "$lock"' EXIT

if [[ "${E2EE_CLIENT_REFREEZE:-}" != "1" ]] && is_current; then
  log "pinned matrix-nio installed by another process"
  exit 0
fi

started=$(date +%s)
log "creating venv $venv with $("$python" -V 2>&1)"
rm -rf "$venv"
"$python" -m venv "$venv"

pip_args=(install --disable-pip-version-check --no-input --quiet
  # Wheels only: vodozemac is Rust, aiohttp & co. have C extensions; never build any of them.
  --only-binary :all:
  -r "$req")
if [[ "${E2EE_CLIENT_REFREEZE:-}" != "1" ]]; then
  pip_args+=(-c "$cons")
fi
log "pip installing $(grep -E '^[A-Za-z]' "$req" | tr '\n' ' ')"
if ! "$venv/bin/python" -m pip "${pip_args[@]}"; then
  log "error: pip install failed (output above); needs PyPI and binary wheels for $("$python" -V 2>&1) on $(uname -sm)"
  exit 1
fi

version="$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("matrix-nio"))')"
pinned="$(sed -n 's/^matrix-nio\(\[[^]]*\]\)\{0,1\}==\([^ ;#]*\).*/\2/p' "$req")"
if [[ "$version" != "$pinned" ]]; then
  log "error: installed matrix-nio $version, expected $pinned"
  exit 1
fi
if ! "$venv/bin/python" -c 'import sys, nio.crypto; sys.exit(0 if nio.crypto.ENCRYPTION_ENABLED else 1)'; then
  log "error: matrix-nio $version installed without encryption support (vodozemac missing)"
  exit 1
fi

if [[ "${E2EE_CLIENT_REFREEZE:-}" == "1" ]]; then
  {
    echo "# Transitive dependencies of matrix-nio[e2e]==$pinned as resolved on $("$python" -V 2>&1) (pip freeze)."
    echo "# Pinned so that a future release of aiohttp, vodozemac … cannot change the test client."
    echo "# Regenerate: E2EE_CLIENT_REFREEZE=1 scripts/e2ee-client/install.sh"
    "$venv/bin/python" -m pip freeze --disable-pip-version-check | grep -v '^matrix-nio=='
  } >"$cons.tmp"
  mv "$cons.tmp" "$cons"
  log "rewrote $cons"
  want="$(hash_files)"
fi

echo "$want" >"$stamp"
log "installed matrix-nio $version in $(($(date +%s) - started)) s"
