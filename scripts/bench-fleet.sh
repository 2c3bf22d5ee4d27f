#!/usr/bin/env bash
# The shared cache tier with a fleet of engines (issue 32; a benchmark, not a test): bench/src/bin/cairn-fleet.rs
# on the 1M example-shaped keys in a local store, reads timed like S3 (s3_like.rs), against a redis-server on
# 127.0.0.1 that this script starts (persistence off). One JSON line per configuration;
# scripts/bench_fleet_report.py writes the BENCHMARKS.md section from them.
#   usage: scripts/bench-fleet.sh [fleet|disk|switch]... > fleet.jsonl && python3 scripts/bench_fleet_report.py BENCHMARKS.md < fleet.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}"
work="${CAIRN_BENCH_DIR:-$HOME/.cache/cairn/bench}"
mkdir -p "$work"
cargo build --release --locked -p cairn --bin cairn -p cairn-bench --bin cairn-fleet >&2
source scripts/bench-datasets.sh
bench_datasets
store="$work/fleet-store"
rm -rf "$store"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
redis-server --port "$port" --bind 127.0.0.1 --save '' --appendonly no > /dev/null &
redis=$!
trap 'kill $redis 2>/dev/null; rm -rf "$store"' EXIT
# Two versions: the switch measured is a rollback between them.
"$CARGO_TARGET_DIR/release/cairn" ingest "$work/1m.data" -k bench --store "$store" >&2
"$CARGO_TARGET_DIR/release/cairn" ingest "$work/1m.data" -k bench --store "$store" >&2
sleep 0.5
"$CARGO_TARGET_DIR/release/cairn-fleet" "$store" bench "$work/1m.data" "redis://127.0.0.1:$port" "$work" "$@"
