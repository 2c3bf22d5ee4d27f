#!/usr/bin/env bash
# Ingest from where the data lives (issue 19; a benchmark, not a test). For 1M and 10M example-shaped rows,
# the same rows as text, gzip text (gzip -6) and Parquet (pyarrow, snappy, 1Mi-row row groups), each read
# from the local disk and from LocalStack S3 on loopback, ingested with the defaults into a fresh local store.
# One JSON line per run on stdout (wall time, peak RSS, keys); bench_report.py inputs turns them into the
# BENCHMARKS.md section.
#   usage: scripts/bench-inputs.sh [SIZES="1m 10m"] [RUNS=3] > inputs.jsonl
#          python3 scripts/bench_report.py inputs BENCHMARKS.md < inputs.jsonl
set -euo pipefail
cd "$(dirname "$0")/.."
sizes="${1:-1m 10m}"
runs="${2:-3}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}"
work="${CAIRN_BENCH_DIR:-$HOME/.cache/cairn/bench}"
py="${CAIRN_PYTHON:-$HOME/.cache/cairn/pyenv/bin/python}"
mkdir -p "$work"
cargo build --release --locked -p cairn >&2
bin="$CARGO_TARGET_DIR/release"
tag() { python3 scripts/bench_report.py tag "$@"; }

source scripts/bench-datasets.sh
bench_datasets $sizes
for ds in $sizes; do
  [ -f "$work/$ds.data.gz" ] || gzip -6 -c "$work/$ds.data" > "$work/$ds.data.gz"
  bench_parquet "$ds"
done

port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
export CAIRN_LOCALSTACK_STATE="$work/localstack-$port"
endpoint="$(CAIRN_LOCALSTACK_WATCH_PID=$$ localstack/start.sh "$port")"
trap 'localstack/stop.sh "$port" >/dev/null 2>&1; rm -rf "$CAIRN_LOCALSTACK_STATE"' EXIT
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test AWS_REGION=us-east-1 AWS_DEFAULT_REGION=us-east-1 \
  AWS_ENDPOINT_URL="$endpoint" AWS_ALLOW_HTTP=true
aws="$(scripts/install-tools.sh)/aws"
"$aws" s3 mb s3://bench >&2
for ds in $sizes; do
  for f in "$ds.data" "$ds.data.gz" "$ds.parquet"; do "$aws" s3 cp --only-show-errors "$work/$f" "s3://bench/$f" >&2; done
done

for ds in $sizes; do
  keys=$(( ${ds%m} * 1000000 ))
  for src in local s3; do
    for fmt in text gzip parquet; do
      case "$fmt" in text) f="$ds.data" ;; gzip) f="$ds.data.gz" ;; parquet) f="$ds.parquet" ;; esac
      if [ "$src" = local ]; then input="$work/$f"; else input="s3://bench/$f"; fi
      n="$runs"; [ "$ds" = 1m ] || n=1
      for _ in $(seq 1 "$n"); do
        echo "== [$ds] $fmt from $src" >&2
        rm -rf "$work/store-inputs"
        /usr/bin/time -f '{"bench":"ingest_input","wall_s":%e,"maxrss_kb":%M}' -o "$work/time.json" \
          "$bin/cairn" ingest "$input" -k bench --store "$work/store-inputs" 2> "$work/ingest-input.log" \
          || { cat "$work/ingest-input.log" >&2; exit 1; }
        tag "$ds" "format=$fmt" "source=$src" "keys=$keys" "bytes=$(stat -c %s "$work/$f")" < "$work/time.json"
      done
    done
  done
done
rm -rf "$work/store-inputs"
