#!/usr/bin/env bash
# Stops the LocalStack that start.sh started on PORT (default 4566).
set -euo pipefail
port="${1:-4566}"
state="${CAIRN_LOCALSTACK_STATE:-$HOME/.cache/cairn/localstack-$port}"
[ -f "$state/pid" ] || exit 0
pid="$(cat "$state/pid")"
kill "$pid" 2>/dev/null || true
for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
kill -9 "$pid" 2>/dev/null || true
rm -f "$state/pid"
