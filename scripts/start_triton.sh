#!/usr/bin/env bash
# Run tritonserver (from the nvidia-pytriton wheel) on the project's model_repository/.
#
#   scripts/start_triton.sh            foreground: start, wait until i2vgen_xl is ready, run until Ctrl-C
#   scripts/start_triton.sh --detach   start, wait until ready, leave it running (pid in logs/triton.pid)
#   scripts/start_triton.sh --stop     stop the server a --detach run started
#
# Environment: TRITON_HTTP_PORT (8010), TRITON_GRPC_PORT (8011), TRITON_METRICS_PORT (8012),
# TRITON_BIND_ADDRESS (127.0.0.1), TRITON_MODEL_CONFIG_NAME (empty = config.pbtxt; "gpu"),
# TRITON_READY_TIMEOUT seconds (300), TRITON_MODEL_REPOSITORY (model_repository/),
# I2V_MODEL_PATH (weights folder or hub id), I2V_PYTHON (the interpreter that runs the model;
# default .venv/bin/python), I2V_LOG_DIR (logs), TRITON_ADMIN_KEY (admin APIs then need the
# header "admin-key: <key>"; required to bind beyond loopback; unset, a random key only the
# stub watch knows).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_DIR="${I2V_LOG_DIR:-$ROOT/logs}"
PID_FILE="$LOG_DIR/triton.pid"
LOG_FILE="$LOG_DIR/triton.log"
HTTP_PORT="${TRITON_HTTP_PORT:-8010}"
GRPC_PORT="${TRITON_GRPC_PORT:-8011}"
METRICS_PORT="${TRITON_METRICS_PORT:-8012}"
BIND="${TRITON_BIND_ADDRESS:-127.0.0.1}"
READY_TIMEOUT="${TRITON_READY_TIMEOUT:-300}"
MODEL="i2vgen_xl"
MODEL_REPOSITORY="${TRITON_MODEL_REPOSITORY:-$ROOT/model_repository}"
mode="${1:-foreground}"

stop_pid() {
  local pid="$1"
  kill -TERM "$pid" 2>/dev/null || return 0
  for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.1; done
  kill -KILL "$pid" 2>/dev/null || true
}

if [[ "$mode" == "--stop" ]]; then
  if [[ -f "$PID_FILE" ]]; then
    stop_pid "$(cat "$PID_FILE")"; rm -f "$PID_FILE"; echo "tritonserver stopped"
  else
    echo "no tritonserver started by this script (no $PID_FILE)"
  fi
  exit 0
fi

PYTHON="${I2V_PYTHON:-$ROOT/.venv/bin/python}"
if [[ ! -x "$PYTHON" ]]; then
  echo "error: $PYTHON not found; run scripts/setup.sh first" >&2
  exit 1
fi
"$PYTHON" "$ROOT/scripts/triton_runtime.py" install >/dev/null
eval "$("$PYTHON" "$ROOT/scripts/triton_runtime.py" env)"

for port in "$HTTP_PORT" "$GRPC_PORT" "$METRICS_PORT"; do
  if "$PYTHON" -c "import socket,sys; s=socket.socket(); sys.exit(s.connect_ex(('$BIND', $port)) != 0)"; then
    echo "error: port $port on $BIND is already in use (set TRITON_HTTP_PORT / TRITON_GRPC_PORT / TRITON_METRICS_PORT)" >&2
    exit 1
  fi
done

# Loading and unloading models, shared-memory regions, trace and log settings are admin
# APIs: always behind a key, and never open on an address others can reach without one set.
# Models load under explicit model control, so that the stub watch below can reload a model
# whose process died; a repository API that loads models (and can write model files) is code
# execution, so without TRITON_ADMIN_KEY this run makes up a key that only its watch knows.
ADMIN_APIS="model-repository,shared-memory,trace,logging"
if [[ -z "${TRITON_ADMIN_KEY:-}" ]]; then
  if [[ "$BIND" != "127.0.0.1" && "$BIND" != "localhost" && "$BIND" != "::1" ]]; then
    echo "error: binding Triton to $BIND would expose its admin APIs; set TRITON_ADMIN_KEY" >&2
    exit 1
  fi
  TRITON_ADMIN_KEY="$("$PYTHON" -c 'import secrets; print(secrets.token_hex(24))')"
fi
export TRITON_ADMIN_KEY
admin_args=("--http-restricted-api=$ADMIN_APIS:admin-key=$TRITON_ADMIN_KEY"
            "--grpc-restricted-protocol=$ADMIN_APIS:admin-key=$TRITON_ADMIN_KEY")

mkdir -p "$LOG_DIR"
# Shared-memory regions of stubs that died with an earlier server (a SIGKILL, the OOM killer)
# stay in /dev/shm; those no process maps any more go now.
"$PYTHON" -m i2v_tools.stub_watch clean-shm >>"$LOG_FILE" 2>&1 || true
config_args=()
[[ -n "${TRITON_MODEL_CONFIG_NAME:-}" ]] && config_args+=("--model-config-name=$TRITON_MODEL_CONFIG_NAME")
# GPU metrics only where there is a GPU: on a CPU-only machine Triton would otherwise log
# "Failed to initialize NVML" and "DCGM unable to start", which read like failures and are not.
# TRITON_GPU_METRICS=true|false overrides the guess.
gpu_metrics="${TRITON_GPU_METRICS:-}"
if [[ -z "$gpu_metrics" ]]; then
  gpu_metrics=false
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then gpu_metrics=true; fi
fi
config_args+=("--allow-gpu-metrics=$gpu_metrics")

# The stub runs the model with the first python on PATH: make it the project's.
export PATH="$TRITON_PYTHON_BIN_DIR:$PATH"
export LD_LIBRARY_PATH="$TRITON_LD_LIBRARY_PATH${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

"$TRITONSERVER_BIN" \
  --model-repository="$MODEL_REPOSITORY" \
  --model-control-mode=explicit --load-model='*' \
  --backend-directory="$TRITON_BACKEND_DIR" \
  "${config_args[@]}" "${admin_args[@]}" \
  --http-address="$BIND" --http-port="$HTTP_PORT" \
  --grpc-address="$BIND" --grpc-port="$GRPC_PORT" \
  --metrics-address="$BIND" --metrics-port="$METRICS_PORT" \
  --allow-cpu-metrics=true \
  --backend-config=python,shm-default-byte-size=16777216 \
  --backend-config=python,shm-growth-byte-size=16777216 \
  --log-info=true \
  >>"$LOG_FILE" 2>&1 &
server_pid=$!
echo "$server_pid" >"$PID_FILE"
echo "tritonserver starting (pid $server_pid, log $LOG_FILE)"

cleanup() { stop_pid "$server_pid"; rm -f "$PID_FILE"; }
[[ "$mode" == "--detach" ]] || trap 'cleanup; exit 130' INT TERM

ready_url="http://$BIND:$HTTP_PORT/v2/models/$MODEL/ready"
deadline=$((SECONDS + READY_TIMEOUT))
until curl -sf -o /dev/null "$ready_url"; do
  if ! kill -0 "$server_pid" 2>/dev/null; then
    echo "error: tritonserver exited before $MODEL was ready; last lines of $LOG_FILE:" >&2
    tail -n 30 "$LOG_FILE" >&2
    rm -f "$PID_FILE"
    exit 1
  fi
  if (( SECONDS >= deadline )); then
    echo "error: $MODEL not ready after ${READY_TIMEOUT}s; see $LOG_FILE" >&2
    cleanup
    exit 1
  fi
  sleep 0.5
done
echo "tritonserver ready: HTTP $BIND:$HTTP_PORT  gRPC $BIND:$GRPC_PORT  metrics http://$BIND:$METRICS_PORT/metrics"

# The stub watch: a model whose process dies is reloaded (it ends with tritonserver).
watch_host="$BIND"
[[ "$watch_host" == "0.0.0.0" || "$watch_host" == "::" ]] && watch_host=127.0.0.1
"$PYTHON" -m i2v_tools.stub_watch watch --server-pid "$server_pid" --http "$watch_host:$HTTP_PORT" \
  --load-timeout "$READY_TIMEOUT" >>"$LOG_FILE" 2>&1 &

if [[ "$mode" == "--detach" ]]; then
  exit 0
fi
trap 'cleanup; exit 0' INT TERM
wait "$server_pid"
status=$?
rm -f "$PID_FILE"
exit "$status"
