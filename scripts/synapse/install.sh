#!/usr/bin/env bash
# Installs the pinned Synapse (scripts/synapse/requirements.txt, transitive pins in constraints.txt)
# into a virtualenv under .cache/synapse/venv, for `npm start` without a config and the e2e tests.
#
# Needs only python3 (>= 3.10) and network access to PyPI. Idempotent: when the stamp file in the
# venv matches the sha256 of requirements.txt + constraints.txt, it returns at once.
#
# Environment:
#   SYNAPSE_PYTHON    interpreter to build the venv with (default: python3)
#   SYNAPSE_VENV      venv directory (default: <repo>/.cache/synapse/venv)
#   SYNAPSE_REFREEZE  =1: install without constraints.txt, then rewrite constraints.txt from
#                     `pip freeze` (use after bumping the pin in requirements.txt)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
venv="${SYNAPSE_VENV:-$root/.cache/synapse/venv}"
python="${SYNAPSE_PYTHON:-python3}"
req="$here/requirements.txt"
cons="$here/constraints.txt"
stamp="$venv/.courier-install-stamp"
lock="$venv.lock"

log() { echo "[synapse-install] $*" >&2; }

if ! command -v "$python" >/dev/null 2>&1; then
  log "error: '$python' not found; install Python >= 3.10 or set SYNAPSE_PYTHON"
  exit 1
fi
if ! "$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)'; then
  log "error: Synapse needs Python >= 3.10, '$python' is $("$python" -V 2>&1)"
  exit 1
fi

# The stamp is the sha256 of requirements.txt followed by constraints.txt (LocalSynapse.ts
# computes the same hash to skip running this script at all).
want="$("$python" - "$req" "$cons" <<'PY'
import hashlib, sys
h = hashlib.sha256()
for path in sys.argv[1:]:
    with open(path, "rb") as f:
        h.update(f.read())
print(h.hexdigest())
PY
)"

is_current() { [[ -x "$venv/bin/python" && -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; }

if [[ "${SYNAPSE_REFREEZE:-}" != "1" ]] && is_current; then
  log "pinned Synapse already installed in $venv"
  exit 0
fi

# Cross-process lock (several jest workers or `npm start`s may call this at once). mkdir is atomic
# and portable (no flock on macOS); a lock left by a dead process is taken over.
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
  if ((waited >= 900)); then
    log "error: gave up waiting for $lock after 900 s"
    exit 1
  fi
  sleep 1
  waited=$((waited + 1))
done
echo $$ >"$lock/pid"
trap 'rm -rf "$lock"' EXIT

if [[ "${SYNAPSE_REFREEZE:-}" != "1" ]] && is_current; then
  log "pinned Synapse installed by another process"
  exit 0
fi

started=$(date +%s)
log "creating venv $venv with $("$python" -V 2>&1)"
rm -rf "$venv"
"$python" -m venv "$venv"

pip_args=(install --disable-pip-version-check --no-input --quiet --prefer-binary
  # Synapse's Rust extension: only ever take the wheel, never build it.
  --only-binary matrix-synapse
  -r "$req")
if [[ "${SYNAPSE_REFREEZE:-}" != "1" ]]; then
  pip_args+=(-c "$cons")
fi
log "pip installing $(grep -E '^[A-Za-z]' "$req" | tr '\n' ' ')"
"$venv/bin/python" -m pip "${pip_args[@]}"

version="$("$venv/bin/python" -c 'from importlib.metadata import version; print(version("matrix-synapse"))')"
pinned="$(sed -n 's/^matrix-synapse==\([^ ;#]*\).*/\1/p' "$req")"
if [[ "$version" != "$pinned" ]]; then
  log "error: installed Synapse $version, expected $pinned"
  exit 1
fi

if [[ "${SYNAPSE_REFREEZE:-}" == "1" ]]; then
  {
    echo "# Transitive dependencies of matrix-synapse==$pinned as resolved on $("$python" -V 2>&1) (pip freeze)."
    echo "# Pinned so that a future release of Twisted, pydantic … cannot break the dev/e2e homeserver."
    echo "# Regenerate: SYNAPSE_REFREEZE=1 scripts/synapse/install.sh"
    "$venv/bin/python" -m pip freeze --disable-pip-version-check | grep -v '^matrix-synapse=='
  } >"$cons.tmp"
  mv "$cons.tmp" "$cons"
  log "rewrote $cons"
  want="$("$python" -c 'import hashlib, sys; h = hashlib.sha256(); [h.update(open(p, "rb").read()) for p in sys.argv[1:]]; print(h.hexdigest())' "$req" "$cons")"
fi

echo "$want" >"$stamp"
log "installed Synapse $version in $(($(date +%s) - started)) s"
