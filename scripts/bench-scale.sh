#!/usr/bin/env bash
# Cost per lookup as the keyspace grows (issue 18; a benchmark, not a test): for 1M, 10M and 100M example-
# shaped keys, ingests with the defaults (timed, peak RSS), then runs bench's cairn-scale (GETs and bytes per
# cold lookup, under a working set 10x the data cache, warm; the top level a reader loads) and, on 1M keys
# with a replica root, cairn-latency (p50/p99/p99.9 behind a store with S3's timing, hedging on and off);
# last, the same figures for a synthetic 1B-key keyspace (real metadata; every shard reads as one template
# shard of 15k keys: bench/src/template_store.rs). One JSON line per figure
# on stdout, tagged with the dataset; docs/benchmark-notes.md has the tables of the last run.
#   usage: scripts/bench-scale.sh [SIZES="1m 10m 100m"] > scale.jsonl
# Datasets are generated once and cached (~9 GB for 100m: made from the 10m one, see below).
set -euo pipefail
cd "$(dirname "$0")/.."
sizes="${1:-1m 10m 100m}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}"
work="${CAIRN_BENCH_DIR:-$HOME/.cache/cairn/bench}"
mkdir -p "$work"
cargo build --release --locked -p cairn -p cairn-bench >&2
bin="$CARGO_TARGET_DIR/release"
tag() { python3 scripts/bench_report.py tag "$@"; }

source scripts/bench-datasets.sh
bench_datasets $sizes

for ds in $sizes; do
  rm -rf "$work/scale-$ds"
  echo "== [$ds] ingest" >&2
  /usr/bin/time -f '{"bench":"scale_ingest","wall_s":%e,"maxrss_kb":%M}' -o "$work/time.json" \
    "$bin/cairn" ingest "$work/$ds.data" -k bench --store "$work/scale-$ds" 2> "$work/ingest-$ds.log"
  tag "$ds" < "$work/time.json"
  echo "== [$ds] cairn-scale" >&2
  sync; { echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null || true
  "$bin/cairn-scale" "$work/scale-$ds" bench "$work/$ds.data" | tag "$ds"
  [ "$ds" = 1m ] || rm -rf "$work/scale-$ds"
done

echo "== [1m] cairn-latency (a replica root: hedging has a second copy)" >&2
rm -rf "$work/scale-1m-a" "$work/scale-1m-b"
"$bin/cairn" ingest "$work/1m.data" -k bench --store "$work/scale-1m-a" --replicas "$work/scale-1m-b" 2> /dev/null
"$bin/cairn-latency" "$work/scale-1m-a" bench "$work/1m.data" | tag 1m
rm -rf "$work/scale-1m" "$work/scale-1m-a" "$work/scale-1m-b"

echo "== a synthetic 1B-key keyspace: real metadata, 65,536 shards that all read as one template shard" >&2
"$bin/cairn-scale" --synthetic 1000000000 65536 | tag 1b
