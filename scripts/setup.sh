#!/usr/bin/env bash
# Idempotent set-up on a fresh clone: .venv with the pinned packages, the Triton runtime,
# and the tiny random-weight model. Re-running it skips what is already in place.
#
#   scripts/setup.sh          what the service needs
#   scripts/setup.sh --dev    plus the test, lint and type-check tools
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON_FOR_VENV="${I2V_BOOTSTRAP_PYTHON:-python3}"
VENV="$ROOT/.venv"
requirements="requirements/gateway.txt requirements/model.txt"
[[ "${1:-}" == "--dev" ]] && requirements="requirements/dev.txt"

step() { printf '\n==> %s\n' "$*"; }

if [[ ! -x "$VENV/bin/python" ]]; then
  step "creating $VENV"
  "$PYTHON_FOR_VENV" -m venv "$VENV"
fi
PY="$VENV/bin/python"

# Reinstall only when the requirement files change.
stamp="$VENV/.requirements-$(cat $(for f in $requirements; do echo "$f"; grep -h '^-r' "$f" | sed "s#^-r #requirements/#"; done | sort -u) | sha256sum | cut -c1-16)"
if [[ ! -f "$stamp" ]]; then
  step "installing Python packages ($requirements)"
  "$PY" -m pip install --quiet --upgrade pip
  # torch 2.13.0 first: here pip takes the CPU build from the local wheel store, while an
  # unpinned torch would pull a multi-GB CUDA build. The GPU container brings its own.
  if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install --quiet "torch==2.13.0"
  fi
  args=()
  for f in $requirements; do args+=(-r "$f"); done
  "$PY" -m pip install --quiet "${args[@]}"
  rm -f "$VENV"/.requirements-*
  touch "$stamp"
else
  step "Python packages up to date"
fi

step "Triton runtime (nvidia-pytriton wheel, Python backend stub for $("$PY" -c 'import sys;print(sys.version.split()[0])'))"
"$PY" scripts/triton_runtime.py install

step "tiny random-weight I2VGen-XL"
"$PY" scripts/build_model.py 2>&1 | grep -v -e "torchvision" -e "deprecated" -e "Writing model shards" || true
test -f models/tiny-i2vgen-xl/model_index.json

if [[ "${1:-}" == "--dev" ]] && ! command -v redis-server >/dev/null; then
  # The job tests run against a real redis-server (Debian's package).
  step "installing redis-server (tests)"
  SUDO=""; [[ "$(id -u)" != 0 ]] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

step "set-up complete"
