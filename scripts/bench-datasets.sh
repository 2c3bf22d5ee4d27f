# Sourced by the benchmark scripts: the example-shaped datasets under $work, made once and the same way for
# every script (which one runs first must not decide what "10m.data" holds).
#   bench_datasets SIZES...   (1m and 10m always; 100m when asked for)
bench_datasets() {
  [ -f "$work/1m.data" ] || python3 scripts/gen-data.py 1000000 "$work/1m.data" >&2
  [ -f "$work/10m.data" ] || python3 scripts/gen-data.py 10000000 "$work/10m.data" --seed 10 >&2
  if [[ " $* " == *" 100m "* ]] && [ ! -f "$work/100m.data" ]; then
    # 10 copies of the 10M set, each with its own UUID version digit (position 14): distinct keys, the same
    # shape, in a minute (gen-data.py needs ~45 minutes for 100M lines here).
    for c in 0 1 2 3 5 6 7 8 9 a; do LC_ALL=C sed "s/^\(.\{14\}\)./\1$c/" "$work/10m.data"; done > "$work/100m.data"
  fi
}

# The Parquet copy of a dataset (pyarrow, snappy, 1Mi-row row groups), made once with the Python at $py.
#   bench_parquet SIZE
bench_parquet() {
  [ -f "$work/$1.parquet" ] || "$py" scripts/to-parquet.py "$work/$1.data" "$work/$1.parquet"
}
