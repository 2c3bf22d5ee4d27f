#!/usr/bin/env python3
"""Turns scripts/bench-ingest.sh's JSON lines into the "Ingest at scale" section of BENCHMARKS.md (replaced
in place between its markers), with issue 30's targets marked met or missed.

usage: python3 scripts/bench_ingest_report.py BENCHMARKS.md < ingest-scale.jsonl
"""
import datetime
import json
import os
import platform
import statistics
import sys

BEGIN, END = "<!-- ingest-scale:begin -->", "<!-- ingest-scale:end -->"
# Peak RSS may exceed --memory by this much plus this much per writer thread (docs/OPERATIONS.md).
RSS_CONSTANT_MIB, RSS_PER_THREAD_MIB = 64, 32


def mib(s: str) -> int:
    return int(s.removesuffix("MiB"))


def main(md_path: str) -> None:
    rows = [json.loads(line) for line in sys.stdin if line.strip()]
    rows = [r for r in rows if r.get("bench") == "ingest_scale"]
    by = {}
    for r in rows:
        by.setdefault((r["dataset"], r["format"], r["memory"]), []).append(r)

    def kps(k):
        return statistics.median(int(r["keys"]) / r["wall_s"] for r in by[k])

    def med(k, f):
        return statistics.median(r[f] for r in by[k])

    threads = os.cpu_count()
    allowed = lambda memory: mib(memory) + RSS_CONSTANT_MIB + RSS_PER_THREAD_MIB * threads
    sizes = sorted({k[0] for k in by}, key=lambda d: float(d.rstrip("m")))
    out = ["## Ingest at scale (issue 30)\n",
           f"`scripts/bench-ingest.sh` on {datetime.date.today().isoformat()} ({platform.machine()}, {threads} "
           "cores, the store and scratch space on the same virtio disk), one command per row: `cairn ingest` of "
           "example-shaped keys into a fresh local store after the page cache was dropped, so every size reads "
           "its input from the disk. Keys/s over the whole command (median of 3 runs at 1M, one run above); "
           "\"read\" is phase 1 (read, validate, place, sort and spill), the rest phase 2 (merge, write, "
           "publish). Peak RSS is the ingest process's own (wait4). Text and gzip are `<key> <value>` lines "
           "(gzip -6), Parquet is pyarrow's (snappy, 1Mi-row row groups). The baseline of each row is the same "
           "format and budget at 1M keys.\n",
           "| keys | format | --memory | stored MiB | keys/s | vs 1M | read s | merge+write s | runs | "
           "peak RSS MiB | within budget + constant |",
           "|---|---|---|---|---|---|---|---|---|---|---|"]
    for ds in sizes:
        for fmt in ("text", "parquet", "gzip"):
            for memory in ("512MiB", "256MiB"):
                k = (ds, fmt, memory)
                if k not in by:
                    continue
                base = ("1m", fmt, memory)
                vs = f"{kps(k) / kps(base):.2f}x" if base in by else "-"
                rss = max(r["maxrss_kb"] for r in by[k]) / 1024
                ok = "yes" if rss <= allowed(memory) else "**no**"
                out.append(f"| {ds.upper()} | {fmt} | {memory} | {int(by[k][0]['bytes']) / 2**20:,.0f} | "
                           f"{kps(k):,.0f} | {vs} | {med(k, 'read_s'):.1f} | "
                           f"{med(k, 'wall_s') - med(k, 'read_s'):.1f} | {int(med(k, 'runs'))} | {rss:.0f} | {ok} |")
    out += ["", "| target | figure | result |", "|---|---|---|"]
    top = sizes[-1] if sizes else None
    for fmt in ("text", "parquet"):
        k, base = (top, fmt, "512MiB"), ("1m", fmt, "512MiB")
        if top and k in by and base in by and top != "1m":
            r = kps(k) / kps(base)
            out.append(f"| {fmt}: keys/s at {top.upper()} >= 0.85x the 1M figure | {r:.2f}x | "
                       f"{'met' if r >= 0.85 else 'missed'} |")
    for ds in sizes:
        t, p = (ds, "text", "512MiB"), (ds, "parquet", "512MiB")
        if t in by and p in by:
            r = kps(p) / kps(t)
            out.append(f"| {ds.upper()}: Parquet >= 1.0x the same rows as text | {r:.2f}x | "
                       f"{'met' if r >= 1.0 else 'missed'} |")
    worst = max(((max(r["maxrss_kb"] for r in v) / 1024) - allowed(k[2]) for k, v in by.items()), default=0)
    out.append(f"| peak RSS <= --memory + {RSS_CONSTANT_MIB} MiB + {RSS_PER_THREAD_MIB} MiB x {threads} threads, "
               f"every row | worst margin {-worst:,.0f} MiB | {'met' if worst <= 0 else 'missed'} |")
    out.append("")
    text = "\n".join(out) + "\n"
    md = open(md_path).read() if os.path.exists(md_path) else ""
    block = BEGIN + "\n" + text + END
    if BEGIN in md:
        md = md[:md.index(BEGIN)] + block + md[md.index(END) + len(END):]
    else:
        md = md.rstrip("\n") + "\n\n" + block + "\n"
    open(md_path, "w").write(md)


if __name__ == "__main__":
    main(sys.argv[1])
