#!/usr/bin/env bash
# Set up (scripts/setup.sh --dev) and run the whole suite: lint, type checks, unit and
# integration tests against a real tritonserver and the real gateway.
#   scripts/test.sh [pytest args...]
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/setup.sh --dev
# shellcheck disable=SC1091
source .venv/bin/activate

printf '\n==> ruff\n'
ruff check .
printf '\n==> mypy\n'
mypy gateway client/i2v_client
printf '\n==> pytest\n'
python -m pytest "$@"
