#!/usr/bin/env python3
"""Helpers for scripts/bench.sh.

  bench_report.py parse-wrk NAME < wrk-output      -> one JSON line {"bench":"http","server":NAME,...}
  bench_report.py parse-redis < redis-benchmark-csv -> one JSON line {"bench":"http","server":"redis",...}
  bench_report.py report RUNS SECONDS < results.jsonl -> BENCHMARKS.md on stdout
"""
import csv
import datetime
import json
import os
import platform
import re
import statistics
import sys


def ms(value: str) -> float:
    m = re.match(r"([\d.]+)(us|ms|s)", value)
    n, unit = float(m.group(1)), m.group(2)
    return n / 1000 if unit == "us" else n * 1000 if unit == "s" else n


def parse_wrk(name: str) -> None:
    text = sys.stdin.read()
    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
    lat = {p: ms(v) for p, v in re.findall(r"^\s+(50|75|90|99)%\s+(\S+)", text, re.M)}
    non2xx = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", text)
    print(json.dumps({"bench": "http", "server": name, "rps": rps, "p50_ms": lat["50"], "p99_ms": lat["99"],
                      "non_2xx": int(non2xx.group(1)) if non2xx else 0}))


def parse_redis() -> None:
    rows = list(csv.DictReader(sys.stdin))
    row = next(r for r in rows if r["test"].startswith("GET"))
    print(json.dumps({"bench": "http", "server": "redis", "rps": float(row["rps"]),
                      "p50_ms": float(row["p50_latency_ms"]), "p99_ms": float(row["p99_latency_ms"]), "non_2xx": 0}))


def mmm(values, fmt="{:,.0f}"):
    if not values:
        return "n/a"
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def report(runs: str, secs: str) -> None:
    res = [json.loads(line) for line in sys.stdin if line.strip()]
    by = lambda **kw: [r for r in res if all(r.get(k) == v for k, v in kw.items())]
    http = {s: by(bench="http", server=s) for s in ("cairn", "baseline", "redis")}
    med = lambda rows, key: statistics.median(r[key] for r in rows) if rows else float("nan")
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    out = []
    w = out.append
    w("# cairn benchmarks\n")
    w(f"Measured {datetime.date.today()} by `scripts/bench.sh {runs} {secs}` on {os.cpu_count()} cores ({cpu}), "
      f"{platform.system()} {platform.release()}; client and servers share the cores, loopback only. "
      f"Figures are min / median / max over {runs} runs; ratios use medians from this same run.\n")
    w("Dataset: 1,000,000 keys shaped like `examples/example.data` (`scripts/gen-data.py 1000000`, values "
      "20-120 bytes). The 1 KB-value variant is not measured yet.\n")
    w("## HTTP GET, random keys, 50 connections (wrk -t2 -c50 --latency; redis-benchmark -c 50 -r 1000000 -t get)\n")
    w("| server | requests/s | p50 ms (median) | p99 ms (median) |")
    w("|---|---|---|---|")
    for s, label in (("cairn", "`cairn serve` (warm)"), ("baseline", "hash map behind HTTP (baseline)"), ("redis", "redis-server (RESP)")):
        rows = http[s]
        w(f"| {label} | {mmm([r['rps'] for r in rows])} | {med(rows, 'p50_ms'):.2f} | {med(rows, 'p99_ms'):.2f} |")
    c, b, r = med(http["cairn"], "rps"), med(http["baseline"], "rps"), med(http["redis"], "rps")
    w("")
    w(f"- cairn / redis-server throughput: **{c / r:.2f}x** (target >= 1.0)")
    w(f"- cairn / hash-map baseline throughput: **{c / b:.2f}x** (target >= 0.85)")
    bad = sum(x["non_2xx"] for x in http["cairn"] + http["baseline"])
    w(f"- non-2xx HTTP answers during the runs: {bad} (every key requested exists)")
    w("- p99 < 1 ms at 50% of peak load: not measured yet (needs a rate-limited generator, e.g. wrk2).\n")
    inproc = by(bench="inproc")
    w("## In-process lookups, one core, warm caches (`cairn-bench`)\n")
    w("| lookup | per second |")
    w("|---|---|")
    w(f"| hit (cairn engine) | {mmm([x['hits_per_s'] for x in inproc])} |")
    w(f"| miss (bloom filter, no I/O) | {mmm([x['misses_per_s'] for x in inproc])} |")
    w(f"| HashMap get, same keys (baseline) | {mmm([x['hashmap_per_s'] for x in inproc])} |")
    if inproc:
        w(f"\n- cairn hit / HashMap: **{med(inproc, 'hits_per_s') / med(inproc, 'hashmap_per_s'):.3f}x**; target >= 1M hits/s per core: "
          f"**{'met' if med(inproc, 'hits_per_s') >= 1e6 else 'missed'}** ({med(inproc, 'hits_per_s'):,.0f}/s)\n")
    cold = by(bench="cold")
    w("## Cold lookups (object-store requests counted by the engine)\n")
    w("| case | GETs | bytes |")
    w("|---|---|---|")
    w(f"| first lookup in a never-seen shard | {mmm([x['first_gets'] for x in cold])} | {mmm([x['first_bytes'] for x in cold])} |")
    w(f"| next lookup, shard metadata cached | {mmm([x['cached_meta_gets'] for x in cold])} | {mmm([x['cached_meta_bytes'] for x in cold])} |")
    w(f"| absent key in an open shard | {mmm([x['miss_gets_after_open'] for x in cold])} | - |")
    w("\nTargets: <= 2 GETs and <= 64 KiB cold, 1 GET with metadata cached. cairn reads metadata (1 GET), then the key "
      "page and the value page (2 GETs): 3 cold and 2 warm-metadata, so both GET targets are missed by one "
      "request, and the metadata suffix of a 500k-row shard (page index + bloom filter) is far above 64 KiB. "
      "Fixing that needs smaller shards or a key+value layout where one page holds both.\n")
    ing = by(bench="ingest")
    w("## Ingest, 1M keys to the local store (`cairn ingest`, default options)\n")
    w(f"- keys/s: {mmm([1e6 / x['wall_s'] for x in ing])} (target >= 500k; the Python implementation: 1.9k)")
    w(f"- peak RSS: {mmm([x['maxrss_kb'] / 1024 for x in ing], '{:,.0f}')} MiB (bounded by the 64 MiB chunks, "
      "not the input; a 5M-key run measured 174 MiB by hand)\n")
    srss, brss = by(bench="serve_rss"), by(bench="baseline_rss")
    w("## Memory while serving 1M keys\n")
    if srss and brss:
        s_mb, b_mb = srss[0]["rss_kb"] / 1024, brss[0]["rss_kb"] / 1024
        w(f"- `cairn serve` after warm-up: {s_mb:,.0f} MiB RSS = {s_mb / 1100:.0%} of the Python implementation's 1.1 GB "
          f"(target <= 25%); the hash-map baseline: {b_mb:,.0f} MiB.\n")
    w("## Where a warm hit's time goes (perf, 2026-11-24)\n")
    w("`perf record` of `cairn-bench` (warm hits): ~25% moka bookkeeping (bucket lookups, LRU deque moves, the "
      "read-op channel, clock reads) for the pointer, shard-metadata and two page-cache lookups; ~24% "
      "`Page::binary_search` + `memcmp` + `value_bytes`, i.e. cache misses on pages spread over ~100 MB; ~7% bloom "
      "check and page probe. Next steps for the 1M/s target: resolve shard metadata and decoded pages through "
      "per-shard slots instead of hashed cache lookups (keeping moka for eviction), and hold hot shards as "
      "decoded Arrow arrays (~1 µs per lookup measured in shared/notes).\n")
    w("## Not measured yet\n")
    w("- the 1 KB-value dataset, p99 at 50% of peak, Lambda init under the harness (measured once by hand: 4 ms, "
      "debug build, in the cargo lambda test log), a latency plot, 10M-key ingest.\n")
    w("Previous Python implementation (quoted, not re-measured): GET p50 1.2 ms, <= 1.1k requests/s, 1.9k keys/s "
      "ingest, 1.1 GB RSS for 1M keys.\n")
    print("\n".join(out))


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "parse-wrk":
        parse_wrk(sys.argv[2])
    elif cmd == "parse-redis":
        parse_redis()
    else:
        report(sys.argv[2], sys.argv[3])
