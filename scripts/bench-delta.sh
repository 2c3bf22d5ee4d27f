#!/usr/bin/env bash
# Delta layers at scale (issue 31; a benchmark, not a test): bench/src/bin/cairn-delta.rs on a base of the
# 10M example-shaped keys (or SIZE: 1m), in a fresh local store on this machine's disk: a 1% delta (10% of
# it deletions) against a full rebuild of the same final data; lookups at 1, 2, 5 and 8 layers (cold
# requests and bytes per key class, warm in-process and warm HTTP through cairn's server and cairn-load,
# closed loop, 50 connections); cache hit rates right after a delta publish and after a full republish;
# `cairn compact` against `cairn ingest`. One JSON line per measurement; scripts/bench_delta_report.py
# writes the BENCHMARKS.md section from them.
#   usage: scripts/bench-delta.sh [SIZE=10m] > delta.jsonl
#          python3 scripts/bench_delta_report.py BENCHMARKS.md < delta.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
size="${1:-10m}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}"
work="${CAIRN_BENCH_DIR:-$HOME/.cache/cairn/bench}"
mkdir -p "$work"
cargo build --release --locked -p cairn-bench --bin cairn-delta --bin cairn-load >&2
source scripts/bench-datasets.sh
bench_datasets
store="$work/delta-store"
scratch="$work/delta-work"
rm -rf "$store" "$scratch"
trap 'rm -rf "$store" "$scratch"' EXIT
"$CARGO_TARGET_DIR/release/cairn-delta" "$store" "$work/$size.data" "$scratch" "$CARGO_TARGET_DIR/release/cairn-load"
