#!/usr/bin/env python3
"""Turns scripts/bench-delta.sh's JSON lines into the "Delta layers" section of BENCHMARKS.md (replaced in
place between its markers, appended if absent), with issue 31's targets marked met or missed.

usage: python3 scripts/bench_delta_report.py BENCHMARKS.md < delta.jsonl
"""
import datetime
import json
import os
import platform
import sys

from md_section import write_section

BEGIN, END = "<!-- delta-layers:begin -->", "<!-- delta-layers:end -->"


def verdict(ok):
    return "met" if ok else "**missed**"


def main(md_path):
    rows = [json.loads(line) for line in sys.stdin if line.strip().startswith("{")]
    by = {r["bench"]: r for r in rows if r["bench"] != "lookups"}
    lookups = [r for r in rows if r["bench"] == "lookups"]
    base, dv, cache, comp = by["base_ingest"], by["delta_vs_rebuild"], by["cache_after_publish"], by["compact"]
    one = next(r for r in lookups if r["layers"] == 1)
    eight = next(r for r in lookups if r["layers"] == 8)
    extra = {c: eight["cold"][c]["gets_per_key"] / one["cold"][c]["gets_per_key"] - 1 for c in ("base", "absent")}
    http_ratio = eight["http"]["achieved_rate"] / one["http"]["achieved_rate"]
    out = [
        "## Delta layers (issue 31)\n",
        f"`scripts/bench-delta.sh` on {datetime.date.today().isoformat()} ({platform.machine()}, {os.cpu_count()} "
        f"cores, a local directory store on this machine's disk): a base of {base['keys']:,} example-shaped keys "
        f"({base['shards']:,} shards, ingested in {base['seconds']:.1f} s). Every figure is from one run; the "
        "strongest baseline (a full rebuild, one layer, a full republish) is measured in the same run.\n",
        "| target | measured | |",
        "|---|---|---|",
        f"| publishing a 1% delta ({dv['delta_keys']:,} keys, {dv['deletes']:,} of them deletions) ≥ 50× faster than "
        f"a full rebuild of the same final data | {dv['delta_s']:.2f} s against {dv['rebuild_s']:.1f} s: "
        f"**{dv['speedup']:.0f}×** | {verdict(dv['speedup'] >= 50)} |",
        f"| ≈ 1% of the bytes written | {dv['delta_bytes'] / 2**20:.1f} MiB against {dv['rebuild_bytes'] / 2**20:.0f} MiB: "
        f"**{dv['bytes_ratio'] * 100:.2f}%** | {verdict(dv['bytes_ratio'] <= 0.015)} |",
        f"| a cold lookup at 8 layers: ≤ 1% extra requests over one layer (keys of the base; absent keys) | "
        f"{one['cold']['base']['gets_per_key']:.3f} → {eight['cold']['base']['gets_per_key']:.3f} requests per key: "
        f"**{extra['base'] * 100:+.2f}%**; {one['cold']['absent']['gets_per_key']:.3f} → "
        f"{eight['cold']['absent']['gets_per_key']:.3f}: **{extra['absent'] * 100:+.2f}%** | "
        f"{verdict(max(extra.values()) <= 0.01)} |",
        f"| warm HTTP throughput at 8 layers ≥ 0.8× one layer | {one['http']['achieved_rate']:,.0f} → "
        f"{eight['http']['achieved_rate']:,.0f} requests/s: **{http_ratio:.2f}×** | {verdict(http_ratio >= 0.8)} |",
        "",
        "Lookups by layer count (deltas of 1% each, 10% of each deletions; cold: one engine per key that has "
        "loaded the version and nothing else, up to 1,000 keys per class; warm: 200k keys looked up until their shards "
        "are hot, then in-process lookups for 3 s and HTTP through cairn's server with `cairn-load`, closed "
        "loop, 50 connections, 5 s, client and server on the same 2 cores):\n",
        "| layers | cold base key: requests, bytes | newest delta's key | deleted key | absent key | warm in-process lookups/s | warm HTTP requests/s | HTTP p99 |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in lookups:
        def c(cls):
            x = r["cold"].get(cls)
            return "—" if x is None else f"{x['gets_per_key']:.3f}, {x['bytes_per_key'] / 1024:.1f} KiB"
        out.append(f"| {r['layers']} | {c('base')} | {c('newest_delta')} | {c('deleted')} | {c('absent')} | "
                   f"{r['warm_in_process_per_s']:,.0f} ({r['warm_in_process_per_s'] / one['warm_in_process_per_s']:.2f}×) | "
                   f"{r['http']['achieved_rate']:,.0f} ({r['http']['achieved_rate'] / one['http']['achieved_rate']:.2f}×) | "
                   f"{r['http']['p99_ms']:.2f} ms |")
    a, f = cache["results"]["after_delta"], cache["results"]["after_full_republish"]
    out += [
        "",
        f"Caches right after a publish ({cache['keys']:,} keys read twice by a running engine, a publish, then "
        f"the same keys): after a 1% delta the hit rate is **{a['hit_rate'] * 100:.2f}%** and the keys cost "
        f"{a['object_gets']:,} requests; after a full republish of the same data, {f['hit_rate'] * 100:.2f}% and "
        f"{f['object_gets']:,} requests (every block of the new version is read again).\n",
        f"`cairn compact` of the base plus one delta: {comp['keys']:,} keys in {comp['seconds']:.1f} s, "
        f"**{comp['keys_per_s']:,.0f} keys/s, {comp['ratio']:.2f}× `cairn ingest`** of the base "
        f"({comp['ingest_keys_per_s']:,.0f} keys/s): it merges sorted shards instead of sorting.\n",
        "A cold key of the base costs 3 requests at 10M keys: the manifest group of its shard (first use; over "
        "1,024 shards a manifest lists its shards in groups), its index piece and its block; a deleted or changed "
        "key 2, in its small delta layer, whose manifest lists its shards itself. "
        "What bounds them: a delta publish is its input's read and sort plus one object per delta shard, the key "
        "filters gathered (one range read per delta shard) and the manifest; the rebuild rewrites every shard. "
        "Warm lookups at 8 layers probe 7 key filters and hash the key once more per lookup (in-process cost "
        "grows with the layers; over HTTP the request's own cost dominates). A cold base key pays a delta's "
        "false positive (0.1% per layer) with one index-piece read.\n",
    ]
    write_section(md_path, BEGIN, END, out)


if __name__ == "__main__":
    main(sys.argv[1])
