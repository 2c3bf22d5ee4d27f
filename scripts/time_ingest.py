#!/usr/bin/env python3
"""Runs one `cairn ingest ...` and prints a JSON line: wall seconds, when reading ended (the "keys over N
shards" note: phase 1, reading and sorting, against phase 2, merging and writing), peak RSS of the ingest
alone (wait4), user and system CPU seconds. For scripts/bench-ingest.sh.

usage: time_ingest.py CMD [ARGS...]
"""
import json
import os
import re
import subprocess
import sys
import time

start = time.monotonic()
proc = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
read_s, log = None, []
buf = b""
while True:
    chunk = os.read(proc.stderr.fileno(), 65536)
    if not chunk:
        break
    buf += chunk
    *lines, buf = re.split(rb"[\r\n]", buf)
    for line in lines:
        text = line.decode("utf-8", "replace")
        if read_s is None and " keys over " in text:
            read_s = time.monotonic() - start
        if text.strip():
            log.append(text)
_, status, usage = os.wait4(proc.pid, 0)
wall = time.monotonic() - start
code = os.waitstatus_to_exitcode(status)
if code != 0:
    sys.stderr.write("\n".join(log[-20:]) + "\n")
    sys.exit(f"ingest failed ({code})")
runs = re.search(r"(\d+) sorted runs spilled", "\n".join(log))
print(json.dumps({"bench": "ingest_scale", "wall_s": round(wall, 3), "read_s": round(read_s or 0, 3),
                  "maxrss_kb": usage.ru_maxrss, "user_s": round(usage.ru_utime, 2),
                  "sys_s": round(usage.ru_stime, 2), "runs": int(runs.group(1)) if runs else 0}))
