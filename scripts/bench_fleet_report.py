#!/usr/bin/env python3
"""Turns scripts/bench-fleet.sh's JSON lines into the "Shared cache tier" section of BENCHMARKS.md (replaced
in place between its markers, appended if absent), with issue 32's targets marked met or missed.

usage: python3 scripts/bench_fleet_report.py BENCHMARKS.md < fleet.jsonl
"""
import datetime
import json
import os
import platform
import sys

from md_section import write_section

BEGIN, END = "<!-- shared-tier:begin -->", "<!-- shared-tier:end -->"


def verdict(ok):
    return "met" if ok else "**missed**"


def main(md_path):
    rows = [json.loads(line) for line in sys.stdin if line.strip().startswith("{")]
    tier = next(r for r in rows if r["bench"] == "tier_get")
    fleet = [r for r in rows if r["bench"] == "fleet"]
    at = {(r["keys"], r["tier"], r["engines"]): r for r in fleet}
    out = [
        "## Shared cache tier (issue 32)\n",
        f"`scripts/bench-fleet.sh` on {datetime.date.today().isoformat()} ({platform.machine()}, {os.cpu_count()} "
        "cores): 1M example-shaped keys in a local store whose reads are timed like S3 (`bench/src/s3_like.rs`: "
        "first byte 20 ms median, 80 ms p99), 1, 2, 4 and 8 engines in one process, each with memory caches "
        "smaller than the working set (8 MiB data, 4 MiB metadata), 8,000 lookups spread over them round-robin, "
        "32 at once; with and without a shared tier on a redis-server on 127.0.0.1. One run.\n",
        "| target | measured | |",
        "|---|---|---|",
    ]
    for keys in ("uniform", "zipf-0.99"):
        one, eight = at[(keys, True, 1)], at[(keys, True, 8)]
        ratio = eight["gets_per_lookup"] / one["gets_per_lookup"]
        out.append(f"| with the tier, store GETs per lookup at 8 engines ≤ 1.2× 1 engine ({keys}) | "
                   f"{one['gets_per_lookup']:.3f} → {eight['gets_per_lookup']:.3f}: **{ratio:.2f}×** "
                   f"(without the tier: {at[(keys, False, 1)]['gets_per_lookup']:.3f} → "
                   f"{at[(keys, False, 8)]['gets_per_lookup']:.3f}) | {verdict(ratio <= 1.2)} |")
    out.append(f"| the tier's own hit latency p99 < 2 ms (16 KiB entry) | p50 {tier['p50_ms']:.3f} ms, "
               f"**p99 {tier['p99_ms']:.3f} ms** | {verdict(tier['p99_ms'] < 2)} |")
    out += ["", "| keys | engines | tier | store GETs per lookup | p50 | p99 |", "|---|---|---|---|---|---|"]
    for r in fleet:
        out.append(f"| {r['keys']} | {r['engines']} | {'on' if r['tier'] else 'off'} | {r['gets_per_lookup']:.3f} | "
                   f"{r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms |")
    out += ["", "Not measured yet: engines as separate processes (here one process, each engine with its own "
            "caches and tier connection), lookups after a restart with a disk tier, and p99 during a version "
            "switch with warming (neither is built).\n"]
    write_section(md_path, BEGIN, END, out)


if __name__ == "__main__":
    main(sys.argv[1])
