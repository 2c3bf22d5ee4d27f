#!/usr/bin/env bash
# The benchmark harness (not a test). Measures, in one run on this machine, cairn against two baselines —
# the assignment's "hash map behind HTTP" server (bench/src/bin/baseline-server.rs) and redis-server — with the
# same data (1M keys shaped like examples/example.data) and the same client concurrency, then writes
# BENCHMARKS.md with min/median/max over RUNS runs and the ratios.
#   usage: scripts/bench.sh [RUNS=5] [SECONDS=10]
# Needs wrk, redis-server and redis-tools (installed with apt-get if missing). Ports: 127.0.0.1 only.
set -euo pipefail
cd "$(dirname "$0")/.."
runs="${1:-5}" secs="${2:-10}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}"
work="${CAIRN_BENCH_DIR:-$HOME/.cache/cairn/bench}"
mkdir -p "$work"
if ! command -v wrk >/dev/null || ! command -v redis-server >/dev/null || ! command -v redis-benchmark >/dev/null; then
  apt-get update -qq && apt-get install -y -qq wrk redis-server redis-tools >/dev/null
fi
cargo build --release --locked -p cairn -p cairn-bench >&2
bin="$CARGO_TARGET_DIR/release"
data="$work/1m.data"
[ -f "$data" ] || python3 scripts/gen-data.py 1000000 "$data"
cut -d' ' -f1 "$data" > "$work/keys.txt"
out="$work/results.jsonl"
: > "$out"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; }
trap cleanup EXIT

echo "== ingest ($runs runs)" >&2
for i in $(seq 1 "$runs"); do
  rm -rf "$work/store-ingest"
  /usr/bin/time -f '{"bench":"ingest","wall_s":%e,"maxrss_kb":%M}' -o "$work/time.json" \
    "$bin/cairn" ingest "$data" -k bench --store "$work/store-ingest" 2> "$work/ingest.log"
  cat "$work/time.json" >> "$out"
done
rm -rf "$work/store"; mv "$work/store-ingest" "$work/store"

echo "== in-process lookups and cold reads" >&2
"$bin/cairn-bench" "$work/store" bench "$data" "$runs" >> "$out"

cat > "$work/random-key.lua" <<'LUA'
local keys = {}
for line in io.lines(os.getenv("KEYS_FILE")) do keys[#keys + 1] = line end
math.randomseed(os.time())
request = function()
  return wrk.format("GET", "/v1/keyspaces/bench/keys/" .. keys[math.random(#keys)])
end
LUA

wait_port() { for _ in $(seq 1 100); do (echo > /dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0; sleep 0.1; done; return 1; }
run_wrk() { # name port
  for i in $(seq 1 "$runs"); do
    KEYS_FILE="$work/keys.txt" wrk -t2 -c50 -d"${secs}s" --latency -s "$work/random-key.lua" "http://127.0.0.1:$2" > "$work/wrk.txt"
    python3 scripts/bench_report.py parse-wrk "$1" < "$work/wrk.txt" >> "$out"
  done
}

echo "== cairn serve under wrk" >&2
CAIRN_PORT=7971 "$bin/cairn" serve --store "$work/store" 2> "$work/serve.log" & pids+=($!)
wait_port 7971
KEYS_FILE="$work/keys.txt" wrk -t2 -c50 -d5s -s "$work/random-key.lua" http://127.0.0.1:7971 > /dev/null  # warm the caches
rss=$(ps -o rss= -p "${pids[-1]}"); echo "{\"bench\":\"serve_rss\",\"rss_kb\":$rss}" >> "$out"
run_wrk cairn 7971
kill "${pids[-1]}"

echo "== baseline hash-map server under wrk" >&2
"$bin/baseline-server" "$data" 7972 2> /dev/null & pids+=($!)
wait_port 7972
rss=$(ps -o rss= -p "${pids[-1]}"); echo "{\"bench\":\"baseline_rss\",\"rss_kb\":$rss}" >> "$out"
run_wrk baseline 7972
kill "${pids[-1]}"

echo "== redis-server under redis-benchmark" >&2
redis-server --port 7973 --bind 127.0.0.1 --save '' --appendonly no --daemonize no > /dev/null & pids+=($!)
wait_port 7973
# The same 1M values under redis-benchmark's key pattern (key:<12 digits>).
python3 -c '
import sys
for i, line in enumerate(open(sys.argv[1], "rb")):
    v = line.rstrip(b"\n").split(b" ", 1)[1]
    k = b"key:%012d" % i
    sys.stdout.buffer.write(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(v), v))
' "$data" | redis-cli -p 7973 --pipe > /dev/null
for i in $(seq 1 "$runs"); do
  redis-benchmark -p 7973 -c 50 -n 1000000 -r 1000000 -t get --csv 2>/dev/null | python3 scripts/bench_report.py parse-redis >> "$out"
done
kill "${pids[-1]}"

python3 scripts/bench_report.py report "$runs" "$secs" < "$out" > BENCHMARKS.md
echo "wrote BENCHMARKS.md" >&2
