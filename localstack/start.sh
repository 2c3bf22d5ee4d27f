#!/usr/bin/env bash
# Starts LocalStack on the host (no Docker) bound to 127.0.0.1 only, waits until S3 answers, and prints the
# endpoint URL. usage: localstack/start.sh [PORT] (default 4566). State lives in a temp dir; stop.sh stops it.
# With CAIRN_LOCALSTACK_WATCH_PID=<pid>, LocalStack also stops when that process exits.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
port="${1:-4566}"
venv="${CAIRN_LOCALSTACK_VENV:-$HOME/.cache/cairn/localstack-venv}"
state="${CAIRN_LOCALSTACK_STATE:-$HOME/.cache/cairn/localstack-$port}"
"$here/install.sh"
mkdir -p "$state"
if [ -f "$state/pid" ] && kill -0 "$(cat "$state/pid")" 2>/dev/null; then
  echo "http://127.0.0.1:$port"
  exit 0
fi
rm -rf "$state/volume"
# GATEWAY_SERVER=hypercorn honours the listen address (the default binds 0.0.0.0); DNS_ADDRESS=0 keeps it
# off port 53.
GATEWAY_LISTEN="127.0.0.1:$port" GATEWAY_SERVER=hypercorn DNS_ADDRESS=0 \
  SERVICES=s3,iam,sts,cloudformation,lambda,logs,cloudwatch LOCALSTACK_VOLUME_DIR="$state/volume" DISABLE_EVENTS=1 \
  SKIP_INFRA_DOWNLOADS=1 \
  nohup "$venv/bin/python" -m localstack.runtime.main > "$state/log" 2>&1 &
pid=$!
echo "$pid" > "$state/pid"
if [ -n "${CAIRN_LOCALSTACK_WATCH_PID:-}" ]; then
  watched="$CAIRN_LOCALSTACK_WATCH_PID"
  nohup bash -c "while kill -0 $watched 2>/dev/null && kill -0 $pid 2>/dev/null; do sleep 1; done; kill $pid 2>/dev/null; sleep 5; kill -9 $pid 2>/dev/null" >/dev/null 2>&1 &
fi
for _ in $(seq 1 600); do
  if curl -fsS "http://127.0.0.1:$port/_localstack/health" 2>/dev/null | grep -q '"s3": "\(available\|running\)"'; then
    echo "http://127.0.0.1:$port"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "LocalStack exited during startup; log:" >&2
    tail -40 "$state/log" >&2
    exit 1
  fi
  sleep 0.1
done
echo "LocalStack did not become ready within 60 s; log: $state/log" >&2
exit 1
