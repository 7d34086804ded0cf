#!/usr/bin/env bash
# The product in one command: set up on first run, start Triton and the gateway, print the
# URLs, and stop both on Ctrl-C.
#
#   I2V_API_TOKEN=... scripts/start_app.sh
#   scripts/start_app.sh 7860 8000     # the original form: the web UI also on 7860, the API on 8000
#
# The token: I2V_API_TOKEN if set, else the one in .api_token, else a new random one. Once the
# gateway is ready, the token it serves with is in .api_token (git-ignored, mode 600) either
# way, and the banner prints the line that exports it in another terminal, so the README's
# commands work there whichever way the app was started. I2V_API_PORT (8000) is the gateway
# port; Triton uses TRITON_*_PORT (8010-8012) on 127.0.0.1. Logs go to logs/.
# I2V_MODEL_PATH selects other weights.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# The original launcher's form, `scripts/start_app.sh PORT API_PORT` (7860 8000): the web UI also
# on its own port PORT, served by the same gateway process as the API.
if [[ $# -ge 1 ]]; then export I2V_UI_PORT="$1"; fi
if [[ $# -ge 2 ]]; then export I2V_API_PORT="$2"; fi
export I2V_API_PORT="${I2V_API_PORT:-8000}"
export I2V_API_HOST="${I2V_API_HOST:-127.0.0.1}"
export TRITON_GRPC_PORT="${TRITON_GRPC_PORT:-8011}"
export I2V_TRITON_GRPC_URL="${I2V_TRITON_GRPC_URL:-127.0.0.1:$TRITON_GRPC_PORT}"
LOG_DIR="${I2V_LOG_DIR:-$ROOT/logs}"
export I2V_LOG_DIR="$LOG_DIR"
mkdir -p "$LOG_DIR"

bash scripts/setup.sh
PY="$ROOT/.venv/bin/python"

TOKEN_FILE="$ROOT/.api_token"
if [[ -n "${I2V_API_TOKEN:-}" ]]; then
  token_source="from I2V_API_TOKEN"
elif [[ "${I2V_INSECURE_NO_AUTH:-}" == "true" ]]; then
  token_source=""
elif [[ -s "$TOKEN_FILE" ]]; then
  I2V_API_TOKEN="$(cat "$TOKEN_FILE")"
  token_source="from .api_token (made by an earlier run)"
else
  I2V_API_TOKEN="$("$PY" -c 'import secrets; print(secrets.token_urlsafe(32))')"
  token_source="generated"
fi
if [[ -n "${I2V_API_TOKEN:-}" ]]; then export I2V_API_TOKEN; fi

for port in "$I2V_API_PORT" ${I2V_UI_PORT:-}; do
  if "$PY" -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('$I2V_API_HOST', $port)) != 0)"; then
    echo "error: port $port is in use; choose a free port (I2V_API_PORT, or the PORT API_PORT arguments)" >&2
    exit 1
  fi
done

triton_pid="" gateway_pid=""
stop_all() {
  trap - INT TERM EXIT
  echo; echo "stopping..."
  [[ -n "$gateway_pid" ]] && kill -TERM "$gateway_pid" 2>/dev/null || true
  [[ -n "$triton_pid" ]] && kill -TERM "$triton_pid" 2>/dev/null || true
  wait 2>/dev/null || true
  echo "stopped"
}
trap 'stop_all; exit 0' INT TERM
trap stop_all EXIT

echo "==> starting Triton (log: $LOG_DIR/triton.log)"
scripts/start_triton.sh >"$LOG_DIR/start_triton.out" 2>&1 &
triton_pid=$!
until grep -q "tritonserver ready" "$LOG_DIR/start_triton.out" 2>/dev/null; do
  if ! kill -0 "$triton_pid" 2>/dev/null; then
    cat "$LOG_DIR/start_triton.out" >&2
    exit 1
  fi
  sleep 0.5
done

echo "==> starting the gateway (log: $LOG_DIR/gateway.log)"
"$PY" -m gateway >>"$LOG_DIR/gateway.log" 2>&1 &
gateway_pid=$!
base="http://$I2V_API_HOST:$I2V_API_PORT"
for _ in $(seq 1 120); do
  curl -sf -o /dev/null "$base/readyz" && break
  if ! kill -0 "$gateway_pid" 2>/dev/null; then
    tail -n 20 "$LOG_DIR/gateway.log" >&2
    exit 1
  fi
  sleep 0.5
done

# Only a token the gateway accepted is kept: a refused one would come back on the next start.
token_line="none: I2V_INSECURE_NO_AUTH=true"
use_line=""
if [[ -n "${I2V_API_TOKEN:-}" ]]; then
  (umask 077; : >>"$TOKEN_FILE")
  chmod 600 "$TOKEN_FILE"
  printf '%s\n' "$I2V_API_TOKEN" >"$TOKEN_FILE"
  token_line="$token_source; kept in $TOKEN_FILE (mode 600)"
  use_line="  in another terminal:  export I2V_API_TOKEN=\$(cat $(printf %q "$TOKEN_FILE"))"
fi

ui_line="$base/ui/"
if [[ -n "${I2V_UI_PORT:-}" ]]; then ui_line="$ui_line   http://$I2V_API_HOST:$I2V_UI_PORT/ui/"; fi

cat <<INFO

  web UI       $ui_line   (sign in with the API token)
  API          $base/api/v1/generate
  API docs     $base/docs
  health       $base/healthz   $base/readyz
  videos       $base/outputs/
  Triton       HTTP 127.0.0.1:${TRITON_HTTP_PORT:-8010}  gRPC 127.0.0.1:$TRITON_GRPC_PORT  metrics http://127.0.0.1:${TRITON_METRICS_PORT:-8012}/metrics
  API token    $token_line
$use_line

Press Ctrl-C to stop.
INFO

# Exit (and stop the other) as soon as either process ends.
wait -n "$triton_pid" "$gateway_pid" || true
echo "a service exited; see $LOG_DIR" >&2
exit 1
