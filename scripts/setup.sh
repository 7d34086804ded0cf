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
# The roles are pyproject.toml's extras; requirements/*.txt pin their versions, as constraints.
variant="plain" extras="ui,model"
[[ "${1:-}" == "--dev" ]] && variant="dev" extras="dev"
constraints=(-c requirements/gateway.txt -c requirements/model.txt -c requirements/dev.txt)

step() { printf '\n==> %s\n' "$*"; }

if [[ ! -x "$VENV/bin/python" ]]; then
  step "creating $VENV"
  "$PYTHON_FOR_VENV" -m venv "$VENV"
fi
PY="$VENV/bin/python"

# Reinstall only when what decides the install changes: the pins, either pyproject.toml (the
# extras, the packages) or the checkout's place (editable installs point at it). One marker for
# both variants holds that hash and the variant installed; dev is a superset of plain, so
# scripts/start_app.sh after scripts/test.sh finds the packages up to date.
marker="$VENV/.installed-requirements"
hash="$( (echo "$ROOT"; cat requirements/*.txt pyproject.toml client/pyproject.toml) | sha256sum | cut -c1-16)"
installed="$(cat "$marker" 2>/dev/null || true)"
if [[ "$installed" == "$hash dev" || "$installed" == "$hash $variant" ]]; then
  step "Python packages up to date (${installed#* })"
else
  step "installing the project, editable, with its packages: .[$extras] (i2v-serving) and client/ (i2v-client)"
  "$PY" -m pip install --quiet --upgrade pip
  # torch 2.13.0 first: here pip takes the CPU build from the local wheel store, while an
  # unpinned torch would pull a multi-GB CUDA build. The GPU container brings its own.
  if ! "$PY" -c "import torch" 2>/dev/null; then
    "$PY" -m pip install --progress-bar on -c requirements/model.txt "torch==2.13.0"
  fi
  # Editable: gateway, i2v_model and i2v_tools from pyproject.toml, i2v_client from
  # client/pyproject.toml, importable from any folder. (PYTHONWARNINGS: without setuptools'
  # warning that every editable install prints, about same-named folders in the cwd.)
  PYTHONWARNINGS=ignore "$PY" -m pip install --progress-bar on "${constraints[@]}" -e ".[$extras]" -e client
  rm -f "$VENV"/.requirements-* "$VENV/.installed-editable"  # the stamps of earlier versions
  echo "$hash $variant" >"$marker"
fi

step "Triton runtime (nvidia-pytriton wheel, Python backend stub for $("$PY" -c 'import sys;print(sys.version.split()[0])'))"
"$PY" scripts/triton_runtime.py install

step "tiny random-weight I2VGen-XL"
"$PY" scripts/build_model.py 2>&1 | grep -v -e "torchvision" -e "deprecated" -e "Writing model shards" || true
test -f models/tiny-i2vgen-xl/model_index.json

if [[ "${1:-}" == "--dev" ]]; then
  # What the tests run for real, from Debian (the tests start their own instances on loopback,
  # never the system services): a command each package provides, and the package.
  #   redis-server  the job store for replicas
  #   chromium      browser tests through Playwright (`playwright install` would download a
  #                 browser, which offline machines cannot)
  #   prometheus    scrapes the gateway and Triton; haproxy balances two gateway replicas
  #   ffprobe       decodes every output format with a decoder other than the one that wrote it
  #   fonts         Chinese text in the web UI's screenshots
  missing=()
  for pair in redis-server:redis-server chromium:chromium prometheus:prometheus haproxy:haproxy \
      ffprobe:ffmpeg; do
    command -v "${pair%%:*}" >/dev/null || missing+=("${pair##*:}")
  done
  [[ -e /usr/share/fonts/truetype/wqy/wqy-zenhei.ttc ]] || missing+=(fonts-wqy-zenhei)
  if (( ${#missing[@]} )); then
    step "installing ${missing[*]} (tests)"
    SUDO=""; [[ "$(id -u)" != 0 ]] && SUDO="sudo"
    # Wait for another apt (unattended upgrades, a parallel set-up) instead of failing at once.
    $SUDO apt-get -o DPkg::Lock::Timeout=300 update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get -o DPkg::Lock::Timeout=300 install -y -qq "${missing[@]}" >/dev/null
  fi
fi

if [[ "${1:-}" == "--dev" ]]; then
  # The Node SDK's packages (typescript, openapi-typescript, standardwebhooks), from its lock file;
  # its tests build it and run `node --test` against a real gateway.
  if ! command -v npm >/dev/null; then
    step "npm not found: skipping client/node (its tests are skipped; Node.js 20+ with npm runs them)"
  elif [[ ! -d client/node/node_modules ]] || [[ client/node/package-lock.json -nt client/node/node_modules ]]; then
    step "Node SDK packages (npm ci in client/node)"
    (cd client/node && npm ci --no-audit --no-fund --loglevel=error)
  else
    step "Node SDK packages up to date"
  fi
fi

step "set-up complete"
