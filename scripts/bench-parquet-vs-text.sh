#!/usr/bin/env bash
# Parquet against text at one size (issue 30; a benchmark, not a test): RUNS rounds, each ingesting the same
# rows as text and as Parquet, alternating, with --memory 512MiB and 256MiB, into a fresh local store after
# `sync` and dropping the page cache where allowed (both formats read from the disk). One JSON line per run
# (scripts/time_ingest.py), then the medians and their ratio on stderr.
#   usage: scripts/bench-parquet-vs-text.sh [SIZE=1m] [RUNS=7] > bench/ingest-1m-parquet-vs-text.jsonl
# Datasets as scripts/bench-ingest.sh makes them (~/.cache/cairn/bench).
set -euo pipefail
cd "$(dirname "$0")/.."
size="${1:-1m}" runs="${2:-7}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}"
work="${CAIRN_BENCH_DIR:-$HOME/.cache/cairn/bench}"
py="${CAIRN_PYTHON:-$HOME/.cache/cairn/pyenv/bin/python}"
cargo build --release --locked -p cairn >&2
bin="$CARGO_TARGET_DIR/release/cairn"
source scripts/bench-datasets.sh
bench_datasets "$size"
bench_parquet "$size"
store="$work/parquet-vs-text-store" tmp="$work/parquet-vs-text-tmp"
trap 'rm -rf "$store" "$tmp"' EXIT
out=$(mktemp); trap 'rm -rf "$store" "$tmp" "$out"' EXIT
for run in $(seq 1 "$runs"); do
  for memory in 512MiB 256MiB; do
    for f in "$size.data" "$size.parquet"; do
      rm -rf "$store" "$tmp"; mkdir -p "$tmp"
      sync; { echo 3 > /proc/sys/vm/drop_caches; } 2>/dev/null || true
      python3 scripts/time_ingest.py "$bin" ingest "$work/$f" -k bench --store "$store" --memory "$memory" \
        --tmp-dir "$tmp" | python3 -c "import json,sys; d=json.loads(sys.stdin.read()); \
d.update(file='$f', memory='$memory', run=$run); print(json.dumps(d))" | tee -a "$out"
    done
  done
done
python3 - "$out" >&2 <<'PY'
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
for memory in ("512MiB", "256MiB"):
    med = {f: statistics.median(r["wall_s"] for r in rows if r["memory"] == memory and r["file"].endswith(f))
           for f in (".data", ".parquet")}
    print(f"--memory {memory}: text {med['.data']:.3f} s, Parquet {med['.parquet']:.3f} s: "
          f"Parquet/text throughput {med['.data'] / med['.parquet']:.2f}x")
PY
