#!/usr/bin/env python3
"""Writes a `<key> <value>` text file as Parquet the way pyarrow users do (string columns `key` and `value`,
snappy, pyarrow's default row groups of 1Mi rows), for scripts/bench-inputs.sh.

usage: to-parquet.py IN OUT  (needs pyarrow)
"""
import sys

import pyarrow as pa
import pyarrow.parquet as pq

src, out = sys.argv[1], sys.argv[2]
schema = pa.schema([("key", pa.string()), ("value", pa.string())])
with open(src, "rb") as f, pq.ParquetWriter(out, schema) as w:
    while True:
        lines = f.readlines(1 << 27)
        if not lines:
            break
        keys, values = [], []
        for line in lines:
            k, _, v = line.rstrip(b"\n").partition(b" ")
            keys.append(k.decode())
            values.append(v.decode())
        w.write_table(pa.table({"key": keys, "value": values}, schema=schema), row_group_size=1 << 20)
