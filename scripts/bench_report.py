#!/usr/bin/env python3
"""Helpers for scripts/bench.sh.

  bench_report.py parse-wrk NAME < wrk-output      -> one JSON line {"bench":"http","server":NAME,...}
  bench_report.py parse-redis < redis-benchmark-csv -> one JSON line {"bench":"http","server":"redis",...}
  bench_report.py parse-init < cairn-query log line -> one JSON line {"bench":"init",...}
  bench_report.py tag DATASET [K=V...] < json lines -> the lines with "dataset" (and K=V) added
  bench_report.py median DATASET BENCH SERVER FIELD < results.jsonl -> the median of FIELD
  bench_report.py report RUNS SECONDS MD SVG < results.jsonl -> writes BENCHMARKS.md and the latency plot
  bench_report.py inputs MD < inputs.jsonl          -> writes bench/inputs.md (scripts/bench-inputs.sh's
                                                       runs) and puts it in MD between its markers
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


def parse_init() -> None:
    line = sys.stdin.read()
    m = re.search(r'"init_ms":\s*([\d.]+)', line)
    c = re.search(r'"clients_ms":\s*([\d.]+)', line)
    print(json.dumps({"bench": "init", "init_ms": float(m.group(1)), "clients_ms": float(c.group(1)) if c else None}))


def tag(dataset: str, extra: list) -> None:
    for line in sys.stdin:
        if line.strip():
            r = json.loads(line)
            r["dataset"] = dataset
            r.update(kv.split("=", 1) for kv in extra)
            print(json.dumps(r))


def load() -> list:
    return [json.loads(line) for line in sys.stdin if line.strip()]


def select(res, **kw):
    return [r for r in res if all(r.get(k) == v for k, v in kw.items())]


def median(dataset, bench, server, field) -> None:
    print(statistics.median(r[field] for r in select(load(), dataset=dataset, bench=bench, server=server)))


def mmm(values, fmt="{:,.0f}"):
    values = [v for v in values if v is not None]
    if not values:
        return "n/a"
    return " / ".join(fmt.format(v) for v in (min(values), statistics.median(values), max(values)))


def med(rows, key):
    return statistics.median(r[key] for r in rows) if rows else float("nan")


LABELS = (("cairn", "`cairn serve` (warm)"), ("baseline", "hash map behind hyper (baseline)"), ("redis", "redis-server (RESP)"))
COLORS = {"cairn": "#1b6ac9", "baseline": "#d9822b", "redis": "#3a9c4a"}


def client_nice(rows) -> str:
    """The load generator's nice value(s) over these half-load runs, as the report prints them."""
    return "/".join(str(n) for n in sorted({r.get("client_nice") for r in rows} - {None})) or "?"


def cpu_us(rows) -> list:
    """The server's CPU time per request (µs) in each half-load run that recorded it."""
    return [int(x["server_ticks"]) / int(x["ticks_per_s"]) * 1e6 / x["requests"]
            for x in rows if "server_ticks" in x and x.get("requests")]


def paired_ratios(mine, theirs) -> list:
    """cairn's peak over the other server's in each round both ran in (runs tagged with the same round)."""
    by_round = {x.get("round"): x["rps"] for x in theirs if x.get("round")}
    return [x["rps"] / by_round[x["round"]] for x in mine if x.get("round") in by_round]


def kept_sections(md_path) -> list:
    """The `<!-- NAME:begin -->` ... `<!-- NAME:end -->` sections other scripts wrote into MD, kept as they are."""
    if not os.path.exists(md_path):
        return []
    text = open(md_path).read()
    return [m.group(0) for m in re.finditer(r"<!-- ([\w-]+):begin -->.*?<!-- \1:end -->", text, re.S)]


def latency_svg(res, path) -> bool:
    """Latency by percentile at 50% of each server's peak (example dataset): median over runs per point."""
    W, H, L, B = 640, 360, 60, 40
    series = {}
    for s, _ in LABELS:
        rows = select(res, dataset="example", bench="half_load", server=s)
        if rows:
            pts = list(zip(*[r["spectrum"] for r in rows]))
            series[s] = [(p[0][0], statistics.median(x[1] for x in p)) for p in pts]
    if not series:
        return False
    import math
    ymax = max(v for pts in series.values() for _, v in pts) * 1.1
    xs = lambda p: L + (W - L - 20) * math.log10(100 / (100 - p)) / 4  # 50% .. 99.99% on a log(1/(1-p)) axis
    ys = lambda v: H - B - (H - B - 20) * v / ymax
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="11">',
           f'<rect width="{W}" height="{H}" fill="white"/>',
           f'<text x="{W / 2}" y="14" text-anchor="middle">GET latency at 50% of each server\'s peak (1M keys, 50 connections, client at nice {client_nice(select(res, bench="half_load"))})</text>']
    for p in (50, 90, 99, 99.9, 99.99):
        x = xs(p)
        out.append(f'<line x1="{x:.1f}" y1="20" x2="{x:.1f}" y2="{H - B}" stroke="#ddd"/>')
        out.append(f'<text x="{x:.1f}" y="{H - B + 14}" text-anchor="middle">p{p:g}</text>')
    for i in range(6):
        v = ymax * i / 5
        out.append(f'<line x1="{L}" y1="{ys(v):.1f}" x2="{W - 20}" y2="{ys(v):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{L - 6}" y="{ys(v) + 4:.1f}" text-anchor="end">{v:.2f}</text>')
    out.append(f'<text x="14" y="{H / 2}" transform="rotate(-90 14 {H / 2})" text-anchor="middle">ms</text>')
    for n, (s, pts) in enumerate(series.items()):
        d = " ".join(f"{xs(p):.1f},{ys(v):.1f}" for p, v in pts)
        out.append(f'<polyline fill="none" stroke="{COLORS[s]}" stroke-width="2" points="{d}"/>')
        out.append(f'<text x="{L + 10}" y="{36 + 14 * n}" fill="{COLORS[s]}">{dict(LABELS)[s]}</text>'.replace("`", ""))
    out.append("</svg>")
    open(path, "w").write("\n".join(out) + "\n")
    return True


def report(runs: str, secs: str, md_path: str, svg_path: str) -> None:
    res = load()
    placement = next(iter(select(res, bench="placement")), {})
    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    out = []
    w = out.append
    w("# cairn benchmarks\n")
    w(f"Measured {datetime.date.today()} by `scripts/bench.sh {runs} {secs}` on {os.cpu_count()} cores ({cpu}), "
      f"{platform.system()} {platform.release()}; client and servers share the cores, loopback only. "
      f"Figures are min / median / max over {runs} runs; ratios are taken from this same run. "
      "Reproduce: `scripts/bench.sh 5 10` (installs wrk and redis with apt if missing, generates the data).\n")
    w("Datasets: **example** = 1,000,000 keys shaped like `examples/example.data` (`scripts/gen-data.py 1000000`, "
      "values 20-120 bytes, 82 MB); **1k** = 1,000,000 keys with 1,000-byte values (`--value-bytes 1000`, 1 GB). "
      "`cairn serve` runs with its defaults, except `CAIRN_DATA_CACHE=2GiB` for the 1k set so the warm set fits, "
      f"and `CAIRN_WORKERS={placement.get('workers', 1)}`: the clients take the other core (one worker gave the same peak as two here, and a "
      "shorter tail at half load; docs/benchmark-notes.md). The baseline is the strongest honest server of the same "
      "data: a std `HashMap` answered by hyper directly (bench/src/bin/baseline-server.rs: no router, the same hyper "
      f"connection settings), on the same {placement.get('workers', 1)} tokio worker(s) as `cairn serve`; core placement "
      f"for cairn, the baseline and redis-server: {placement.get('cpus', 'unpinned')} "
      "(`CAIRN_BENCH_SERVER_CPUS` pins all three alike).\n")
    for ds, title in (("example", "example-shaped values"), ("1k", "1 KB values")):
        http = {s: select(res, dataset=ds, bench="http", server=s) for s, _ in LABELS}
        half = {s: select(res, dataset=ds, bench="half_load", server=s) for s, _ in LABELS}
        plain = {s: select(res, dataset=ds, bench="half_load_plain", server=s) for s, _ in LABELS}
        if not any(http.values()):
            continue
        w(f"## HTTP GET, {title}: random keys, 50 connections\n")
        w("`cairn serve`, the baseline and redis-server run side by side and are measured in turn, a run of each "
          "followed by a run of the next, so a drift of the machine between minutes moves all three alike. "
          "Peak: `wrk -t2 -c50 --latency` (HTTP), `redis-benchmark -c 50 -r 1000000 -t get` (RESP). At 50% load: "
          "`cairn-load` (bench/), open loop at half of the server's median peak, latency from each request's "
          f"scheduled time, run {runs} times with the client at nice {client_nice([x for v in half.values() for x in v])} (it stands in "
          f"for a client on cores of its own) and {runs} times at the default priority, alternating.\n")
        w("| server | peak requests/s | p50 / p99 ms at peak (median) | p50 / p99 / p99.9 ms at 50% of peak (median) | p99 ms at 50% of peak, client at default priority (min / median / max) | server CPU µs per request at 50% of peak (min / median / max) |")
        w("|---|---|---|---|---|---|")
        for s, label in LABELS:
            rows, h = http[s], half[s]
            hl = f"{med(h, 'p50_ms'):.2f} / {med(h, 'p99_ms'):.2f} / {med(h, 'p999_ms'):.2f}" if h else "n/a"
            w(f"| {label} | {mmm([r['rps'] for r in rows])} | {med(rows, 'p50_ms'):.2f} / {med(rows, 'p99_ms'):.2f} | {hl} | "
              f"{mmm([x['p99_ms'] for x in plain[s]], '{:.2f}')} | {mmm(cpu_us(h), '{:.2f}') if cpu_us(h) else 'n/a'} |")
        c, b, r = med(http["cairn"], "rps"), med(http["baseline"], "rps"), med(http["redis"], "rps")
        p99 = med(half["cairn"], "p99_ms")
        w("")
        for other, name, target in (("redis", "redis-server", 1.1), ("baseline", "hash-map baseline", 1.0)):
            whole = c / med(http[other], "rps")
            rounds = paired_ratios(http["cairn"], http[other])
            paired = statistics.median(rounds) if rounds else float("nan")
            met = "met" if whole >= target and paired >= target else "**missed**"
            w(f"- cairn / {name} throughput: **{whole:.2f}x** the medians, **{paired:.2f}x** the median of the rounds' "
              f"ratios ({mmm(rounds, '{:.2f}')}) (target >= {target}, issue 29, both estimates: {met})")
        w(f"- cairn p99 at 50% of peak: **{p99:.2f} ms** (target < 1 ms; p99 over runs {mmm([x['p99_ms'] for x in half['cairn']], '{:.2f}')}); "
          f"with the client at the default priority: {med(plain['cairn'], 'p99_ms'):.2f} ms")
        cc, cb = cpu_us(half["cairn"]), cpu_us(half["baseline"])
        if cc and cb:
            w(f"- server CPU per request at 50% of peak, cairn / hash-map baseline: **{statistics.median(cc) / statistics.median(cb):.2f}x** "
              "(lower is cheaper; each server at half of its own peak, so the rates differ by the peaks' ratio)")
        bad = sum(x["non_2xx"] for x in http["cairn"] + http["baseline"]) + sum(
            x["errors"] for v in (*half.values(), *plain.values()) for x in v)
        w(f"- non-2xx answers / errors during the runs: {bad} (every key requested exists)\n")
    scrape = [(ds, select(res, dataset=ds, bench="scrape", scraped="0"), select(res, dataset=ds, bench="scrape", scraped="1"))
              for ds in ("example", "1k")]
    if any(a and b for _, a, b in scrape):
        w("## What `/metrics` costs\n")
        w(f"`cairn serve` at peak (`wrk -t2 -c50`), {runs} runs without and {runs} runs with a scraper fetching "
          "`/metrics` (OpenMetrics, as Prometheus asks) every second, alternating. Requests are counted per worker "
          "thread and summed at scrape time, so the GET path takes no lock and shares no counter.\n")
        w("| dataset | peak requests/s, not scraped | peak requests/s, scraped every second | scraped / not scraped (medians) | p99 ms at peak, not scraped / scraped (medians) |")
        w("|---|---|---|---|---|")
        for ds, a, b in scrape:
            if a and b:
                w(f"| {ds} | {mmm([x['rps'] for x in a])} | {mmm([x['rps'] for x in b])} | "
                  f"**{med(b, 'rps') / med(a, 'rps'):.3f}x** | {med(a, 'p99_ms'):.2f} / {med(b, 'p99_ms'):.2f} |")
        w("")
    if latency_svg(res, svg_path):
        w(f"![latency by percentile at 50% load]({svg_path})\n")
    w("## In-process lookups, one core, warm (`cairn-bench`: every key of the dataset, hot shards)\n")
    w("| dataset | hits/s (cairn engine) | misses/s (no I/O) | HashMap gets/s, same keys, owned `Bytes` | hit / HashMap "
      "| hits/s, value read | HashMap gets/s, value read | hit / HashMap, value read |")
    w("|---|---|---|---|---|---|---|---|")
    for ds in ("example", "1k"):
        ip = select(res, dataset=ds, bench="inproc")
        if ip:
            w(f"| {ds} | {mmm([x['hits_per_s'] for x in ip])} | {mmm([x['misses_per_s'] for x in ip])} | "
              f"{mmm([x['hashmap_per_s'] for x in ip])} | {med(ip, 'hits_per_s') / med(ip, 'hashmap_per_s'):.2f}x | "
              f"{mmm([x['hits_read_per_s'] for x in ip])} | {mmm([x['hashmap_read_per_s'] for x in ip])} | "
              f"{med(ip, 'hits_read_per_s') / med(ip, 'hashmap_read_per_s'):.2f}x |")
    w("\nKeys are probed in a fixed shuffled order. A hit returns the value as a `Bytes` (a slice of the hot "
      "shard, not copied), and so does the HashMap (a clone of the `Bytes` it holds: a reference count taken); "
      "it holds every key cairn holds warm, so both look up in a table of the same size. \"value read\" also "
      "reads its first and last byte, as a caller that uses it does.")
    w("\nTargets: >= 1M hits/s per core; hit / HashMap >= 0.5x (issue 29).\n")
    w("## Cold lookups (object-store GETs and bytes counted by the engine)\n")
    w("| dataset | first lookup in a never-seen shard: GETs | bytes | next lookup, its index piece cached: GETs | bytes | 100 absent keys in that shard: GETs |")
    w("|---|---|---|---|---|---|")
    for ds in ("example", "1k"):
        cold = select(res, dataset=ds, bench="cold")
        if cold:
            w(f"| {ds} | {mmm([x['first_gets'] for x in cold])} | {mmm([x['first_bytes'] for x in cold])} | "
              f"{mmm([x['cached_meta_gets'] for x in cold])} | {mmm([x['cached_meta_bytes'] for x in cold])} | "
              f"{mmm([x['miss_gets_after_open'] for x in cold])} |")
    w("\nTargets: <= 2 GETs and <= 32 KiB cold, 1 GET with the key's index piece cached. Absent keys are ruled "
      "out by the blocks' bloom filters, kept in the index pieces: a GET for the shard's other piece the first "
      "time, then only for a false positive. The 1k set has 2,000 shards, so its manifest lists them in groups "
      "(docs/FORMAT.md): the first lookup into a group also reads the group (~55 KB, once per 128 shards and "
      "reader), which is the third GET above.\n")
    w("## Ingest to the local store (`cairn ingest`, default options, `/usr/bin/time`)\n")
    w("| input | keys/s | peak RSS MiB |")
    w("|---|---|---|")
    for ds, label in (("example", "1M example-shaped keys"), ("1k", "1M keys, 1 KB values"), ("10m", "10M example-shaped keys (1 run)")):
        ing = select(res, dataset=ds, bench="ingest")
        if ing:
            w(f"| {label} | {mmm([x['keys'] / x['wall_s'] for x in ing])} | {mmm([x['maxrss_kb'] / 1024 for x in ing])} |")
    w("\nTarget >= 500k keys/s for 1M example-shaped keys; the Python implementation: 1.9k keys/s.\n")
    w("## Memory while serving 1M keys (RSS after the warm-up)\n")
    w("| dataset | cairn serve | hash-map baseline | redis-server |")
    w("|---|---|---|---|")
    for ds in ("example", "1k"):
        rss = {s: select(res, dataset=ds, bench="rss", server=s) for s, _ in LABELS}
        if rss["cairn"]:
            cells = [f"{rss[s][0]['rss_kb'] / 1024:,.0f} MiB" if rss[s] else "n/a" for s, _ in LABELS]
            huge = rss["cairn"][0].get("huge_kb")
            if huge is not None:
                cells[0] += f" ({huge / 1024:,.0f} MiB on huge pages)"
            w(f"| {ds} | {' | '.join(cells)} |")
    ex = select(res, dataset="example", bench="rss", server="cairn")
    if ex:
        w(f"\ncairn serve on the example set: {ex[0]['rss_kb'] / 1024 / 1100:.0%} of the Python implementation's 1.1 GB (target <= 25%).\n")
    init = select(res, bench="init")
    w("## Query function init\n")
    w(f"`cairn-query` (release) from process start to ready for its first event — config, store client, caches, and the "
      f"first pointer + manifest read of the example keyspace (`CAIRN_WARM_KEYSPACES`), local store: "
      f"**{mmm([x['init_ms'] for x in init], '{:.2f}')} ms** (target < 50 ms). The Lambda runtime's own start and an S3 "
      "round trip (~20-50 ms for the pointer and manifest GETs) come on top on AWS.\n")
    w("Previous Python implementation (quoted, not re-measured): GET p50 1.2 ms, <= 1.1k requests/s, 1.9k keys/s "
      "ingest, 1.1 GB RSS for 1M keys.\n")
    section = os.path.join(os.path.dirname(md_path) or ".", "bench", "inputs.md")
    if os.path.exists(section):
        w(INPUTS_BEGIN + "\n" + open(section).read() + INPUTS_END + "\n")
    # scripts/bench-spark.sh's section (bench/spark_bench.py splices it between the same markers).
    spark = os.path.join(os.path.dirname(md_path) or ".", "bench", "spark.md")
    if os.path.exists(spark):
        w(SPARK_BEGIN + "\n" + open(spark).read() + SPARK_END + "\n")
    notes = os.path.join(os.path.dirname(md_path) or ".", "docs", "benchmark-notes.md")
    if os.path.exists(notes):
        w(open(notes).read())
    for section in kept_sections(md_path):
        w(section + "\n")
    open(md_path, "w").write("\n".join(out) + "\n")


INPUTS_BEGIN = "<!-- bench/inputs.md: scripts/bench-inputs.sh, bench_report.py inputs -->"
INPUTS_END = "<!-- end of bench/inputs.md -->"
SPARK_BEGIN = "<!-- bench/spark.md: scripts/bench-spark.sh -->"
SPARK_END = "<!-- end of bench/spark.md -->"


def inputs(md_path: str) -> None:
    rows = [r for r in load() if r.get("bench") == "ingest_input"]
    by = {}
    for r in rows:
        by.setdefault((r["dataset"], r["format"], r["source"]), []).append(r)

    def kps(key):
        return statistics.median(int(r["keys"]) / float(r["wall_s"]) for r in by[key])

    def rss(key):
        return max(int(r["maxrss_kb"]) for r in by[key]) / 1024

    out = ["## Ingest from where the data lives\n",
           f"`scripts/bench-inputs.sh` on {datetime.date.today().isoformat()} ({platform.machine()}, "
           f"{os.cpu_count()} cores): the same example-shaped rows as text, gzip text (gzip -6) and Parquet "
           "(pyarrow, snappy, 1Mi-row row groups), read from the local disk and from LocalStack S3 on loopback, "
           "`cairn ingest` with the defaults into a fresh local store. Keys/s is the median of the runs "
           "(1M: 3 runs, 10M: 1), over the whole command: listing, reading, sorting, writing and publishing. "
           "The baseline for each format is the same rows as text from the local disk, and for each "
           "source it is the same file read locally.\n",
           "| rows | format | source | stored MiB | keys/s | vs text, local | S3 vs local | peak RSS MiB |",
           "|---|---|---|---|---|---|---|---|"]
    for ds in sorted({k[0] for k in by}, key=lambda d: float(d.rstrip("m"))):
        for fmt in ("text", "gzip", "parquet"):
            for src in ("local", "s3"):
                k = (ds, fmt, src)
                if k not in by:
                    continue
                base, local = (ds, "text", "local"), (ds, fmt, "local")
                vs_text = f"{kps(k) / kps(base):.2f}x" if base in by else "-"
                vs_local = f"{kps(k) / kps(local):.2f}x" if src == "s3" and local in by else "-"
                out.append(f"| {ds.upper()} | {fmt} | {src} | {int(by[k][0]['bytes']) / 2**20:.0f} | {kps(k):,.0f} | "
                           f"{vs_text} | {vs_local} | {rss(k):.0f} |")
    out.append("")
    text = "\n".join(out) + "\n"
    section = os.path.join(os.path.dirname(md_path) or ".", "bench", "inputs.md")
    open(section, "w").write(text)
    md = open(md_path).read() if os.path.exists(md_path) else ""
    block = INPUTS_BEGIN + "\n" + text + INPUTS_END
    if INPUTS_BEGIN in md:
        start, end = md.index(INPUTS_BEGIN), md.index(INPUTS_END) + len(INPUTS_END)
        md = md[:start] + block + md[end:]
    else:
        md = md.rstrip("\n") + "\n\n" + block + "\n"
    open(md_path, "w").write(md)


if __name__ == "__main__":
    cmd = sys.argv[1]
    if cmd == "parse-wrk":
        parse_wrk(sys.argv[2])
    elif cmd == "parse-redis":
        parse_redis()
    elif cmd == "parse-init":
        parse_init()
    elif cmd == "tag":
        tag(sys.argv[2], sys.argv[3:])
    elif cmd == "median":
        median(*sys.argv[2:6])
    elif cmd == "inputs":
        inputs(sys.argv[2])
    else:
        report(*sys.argv[2:6])
