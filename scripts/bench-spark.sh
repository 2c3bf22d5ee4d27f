#!/usr/bin/env bash
# Spark bulk load vs `cairn ingest`, and the embedded Python reader vs a dict (issue 20; a benchmark, not a
# test), in one run on 10M example-shaped rows: `cairn ingest` of the text and of the Parquet copy, then
# cairn.spark.bulk_load of the Parquet copy in local[1] and local[2], then warm lookups through
# cairn.open(...) against a Python dict of the same data. Writes bench/spark.md and its BENCHMARKS.md section.
#   usage: scripts/bench-spark.sh [ROWS=10m]
# Needs the release wheel in $CAIRN_BENCH_VENV (default ~/.cache/cairn/bench-venv: pip install ./python
# 'pyspark==4.3.0' 'pandas<3'); the script installs it there if missing.
set -euo pipefail
cd "$(dirname "$0")/.."
ds="${1:-10m}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}"
work="${CAIRN_BENCH_DIR:-$HOME/.cache/cairn/bench}"
venv="${CAIRN_BENCH_VENV:-$HOME/.cache/cairn/bench-venv}"
mkdir -p "$work"
if ! "$venv/bin/python" -c "import pyspark, pandas, pyarrow" 2>/dev/null; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'pyspark==4.3.0' 'pandas>=2.2,<3' 'pyarrow>=14'
fi
# The package of this checkout, as users install it (release build; only cairn's crates rebuild), with
# cairn's placement UDFs for Spark's JVM.
python/build-jar.sh "$venv/bin/python" >&2
"$venv/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps ./python
py="$venv/bin/python"
cargo build --release --locked -p cairn >&2
bin="$CARGO_TARGET_DIR/release/cairn"
source scripts/bench-datasets.sh
bench_datasets "$ds"
bench_parquet "$ds"
keys=$(wc -l < "$work/$ds.data")
run="$work/spark-run.jsonl"
echo "{\"bench\":\"meta\",\"date\":\"$(date -u +%Y-%m-%d)\",\"rows\":$keys}" > "$run"

for fmt in text parquet text parquet; do
  f="$ds.data"; [ "$fmt" = parquet ] && f="$ds.parquet"
  echo "== cairn ingest ($fmt)" >&2
  rm -rf "$work/store-spark-cli"
  /usr/bin/time -f '%e %M' -o "$work/time.txt" "$bin" ingest "$work/$f" -k bench --store "$work/store-spark-cli" 2>/dev/null
  read -r wall rss < "$work/time.txt"
  echo "{\"bench\":\"cli_ingest\",\"format\":\"$fmt\",\"keys\":$keys,\"wall_s\":$wall,\"maxrss_kb\":$rss}" >> "$run"
done
# The count the default load picks from the Parquet file's size, given up front: a control for the default's
# sizing (it reads the listing Spark holds, no job).
shards=$("$py" -c "import cairn,sys; print(cairn.default_shards(int(sys.argv[1])))" "$(stat -c %s "$work/$ds.parquet")")
for run_conf in "local[1]||" "local[2]||" "local[2]||$shards"; do
  IFS='|' read -r master conf given <<< "$run_conf"
  echo "== Spark $master $conf ${given:+shards=$given}" >&2
  rm -rf "$work/store-spark"
  CAIRN_SPARK_CONF="$conf" CAIRN_BENCH_SHARDS="$given" /usr/bin/time -f '%M' -o "$work/time.txt" "$py" bench/spark_bench.py load "$master" \
    "$work/$ds.parquet" "$work/store-spark" > "$work/spark-load.json" 2> "$work/spark-load.log" \
    || { tail -30 "$work/spark-load.log" >&2; exit 1; }
  rss=$(tail -1 "$work/time.txt")
  python3 -c "import json,sys; r=json.loads(open(sys.argv[1]).read().splitlines()[-1]); r['maxrss_kb']=int(sys.argv[2]); print(json.dumps(r))" \
    "$work/spark-load.json" "$rss" >> "$run"
done
echo "== embedded reader vs dict" >&2
# The 100k sampled keys span every shard: the cache is sized to hold them (the README's advice).
CAIRN_DATA_CACHE=4GiB "$py" bench/spark_bench.py reader "$work/store-spark-cli" "$work/$ds.data" >> "$run"
"$py" bench/spark_bench.py report "$run" BENCHMARKS.md
