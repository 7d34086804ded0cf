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
# A test run must leave the checkout as it found it (no tracked file changed, nothing new that
# git would pick up): compare git's view before and after.
tree_before="$(git status --porcelain 2>/dev/null || true)"
status=0
python -m pytest "$@" || status=$?
tree_after="$(git status --porcelain 2>/dev/null || true)"
if [[ "$tree_before" != "$tree_after" ]]; then
  printf '\n==> the test run changed the checkout (git status --porcelain):\n' >&2
  diff <(printf '%s\n' "$tree_before") <(printf '%s\n' "$tree_after") >&2 || true
  [[ $status -eq 0 ]] && status=1
fi
exit $status
