#!/usr/bin/env bash
# Ingest at scale (issue 30; a benchmark, not a test): `cairn ingest` of 1M, 10M and 100M example-shaped keys
# as text, Parquet (pyarrow, snappy, 1Mi-row row groups) and gzip text (gzip -6; 1M and 10M: compressing
# 8 GB with one core takes longer than the rest of the run), with the default --memory (512MiB) and with
# --memory 256MiB, each into a fresh local store on this machine's disk, after `sync` and dropping the page
# cache where allowed (so every size reads its input from the disk). One JSON line per run
# (scripts/time_ingest.py); scripts/bench_ingest_report.py writes the BENCHMARKS.md section from them.
#   usage: scripts/bench-ingest.sh [SIZES="1m 10m 100m"] [RUNS_1M=3] > ingest-scale.jsonl
#          python3 scripts/bench_ingest_report.py BENCHMARKS.md < ingest-scale.jsonl
# Datasets are made once and cached under ~/.cache/cairn/bench (100M: ~8 GB text, ~8 GB Parquet).
set -euo pipefail
cd "$(dirname "$0")/.."
sizes="${1:-1m 10m 100m}"
runs_1m="${2:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}"
work="${CAIRN_BENCH_DIR:-$HOME/.cache/cairn/bench}"
py="${CAIRN_PYTHON:-$HOME/.cache/cairn/pyenv/bin/python}"
mkdir -p "$work"
cargo build --release --locked -p cairn >&2
bin="$CARGO_TARGET_DIR/release/cairn"
tag() { python3 scripts/bench_report.py tag "$@"; }

source scripts/bench-datasets.sh
bench_datasets $sizes
for ds in $sizes; do
  bench_parquet "$ds"
  if [ "$ds" != 100m ] && [ ! -f "$work/$ds.data.gz" ]; then gzip -6 -c "$work/$ds.data" > "$work/$ds.data.gz"; fi
done

tmp="$work/ingest-scale-tmp"
trap 'rm -rf "$work/ingest-scale-store" "$tmp"' EXIT
for ds in $sizes; do
  keys=$(( ${ds%m} * 1000000 ))
  n=1; [ "$ds" = 1m ] && n="$runs_1m"
  for fmt in text parquet gzip; do
    case "$fmt" in text) f="$ds.data" ;; parquet) f="$ds.parquet" ;; gzip) f="$ds.data.gz" ;; esac
    [ -f "$work/$f" ] || continue
    for memory in 512MiB 256MiB; do
      for _ in $(seq 1 "$n"); do
        echo "== [$ds] $fmt --memory $memory" >&2
        rm -rf "$work/ingest-scale-store" "$tmp"; mkdir -p "$tmp"
        sync; { echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null || true
        python3 scripts/time_ingest.py "$bin" ingest "$work/$f" -k bench --store "$work/ingest-scale-store" \
          --memory "$memory" --tmp-dir "$tmp" \
          | tag "$ds" "format=$fmt" "memory=$memory" "keys=$keys" "bytes=$(stat -c %s "$work/$f")"
      done
    done
  done
done
