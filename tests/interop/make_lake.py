"""Writes Parquet inputs the way data lakes hold them, for tests/tests/ingest_sources.rs.

usage: make_lake.py lake DIR       pyarrow files (row groups, dictionary values, large_string keys, binary
                                   values with non-UTF-8 bytes), a DuckDB COPY file, Spark's _SUCCESS and
                                   .crc litter; prints the expected rows as JSON {key: value-hex}
       make_lake.py features FILE  a feature table for --value-columns (int, float, string, null, list, binary)
       make_lake.py nullkey DIR    two files of 3 row groups of 2,000 rows; the second file's third row group
                                   has a null key at its row 1,234
"""

import json
import os
import sys
import uuid

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq


def keys(n, seed):
    return [str(uuid.UUID(int=(seed << 64) + i * 7919 + 1, version=4)) for i in range(n)]


def lake(d):
    os.makedirs(d, exist_ok=True)
    expected = {}

    # pyarrow: large_string keys, dictionary-encoded values, 4 row groups.
    k0 = keys(2000, 1)
    v0 = [f"colour-{i % 7}" for i in range(2000)]
    t0 = pa.table({
        "key": pa.array(k0, pa.large_string()),
        "value": pa.array(v0).dictionary_encode(),
        "other": pa.array(range(2000)),
    })
    pq.write_table(t0, os.path.join(d, "part-00000.parquet"), row_group_size=500)
    expected.update({k: v.encode().hex() for k, v in zip(k0, v0)})

    # pyarrow: binary values with non-UTF-8 bytes, zstd pages, 3 row groups.
    k1 = keys(1500, 2)
    v1 = [bytes([0xFF, 0x00, i % 256, 0x80]) + b" tail " + bytes([0xC3]) for i in range(1500)]
    t1 = pa.table({"key": pa.array(k1, pa.string()), "value": pa.array(v1, pa.binary())})
    pq.write_table(t1, os.path.join(d, "part-00001.parquet"), row_group_size=600, compression="zstd")
    expected.update({k: v.hex() for k, v in zip(k1, v1)})

    # DuckDB COPY ... TO ... (FORMAT parquet): VARCHAR key and value, snappy, small row groups.
    k2 = keys(1200, 3)
    v2 = [f"duck {i}  spaced\tvalue ü" for i in range(1200)]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (key VARCHAR, value VARCHAR)")
    con.executemany("INSERT INTO t VALUES (?, ?)", list(zip(k2, v2)))
    path = os.path.join(d, "part-00002.parquet")
    con.execute(f"COPY t TO '{path}' (FORMAT parquet, ROW_GROUP_SIZE 300)")
    expected.update({k: v.encode().hex() for k, v in zip(k2, v2)})

    # What Spark leaves beside its parts: never read.
    open(os.path.join(d, "_SUCCESS"), "w").close()
    with open(os.path.join(d, ".part-00000.parquet.crc"), "wb") as f:
        f.write(b"\x00not parquet")
    json.dump(expected, sys.stdout)


def features(path):
    t = pa.table({
        "id": pa.array(["k1", "k2", "k3"]),
        "i": pa.array([1, -9007199254740993, None], pa.int64()),
        "f": pa.array([1.5, 0.1, float("nan")], pa.float64()),
        "s": pa.array(['a "q"\n', "ü", None]),
        "n": pa.array([None, None, None], pa.null()),
        "l": pa.array([[1, 2], [], None], pa.list_(pa.int32())),
        "b": pa.array([b"\x00\xff", b"", None], pa.binary()),
        "unread": pa.array([0, 0, 0]),
    })
    pq.write_table(t, path)


def nullkey(d):
    os.makedirs(d, exist_ok=True)
    for f in range(2):
        k = keys(6000, 10 + f)
        if f == 1:
            k[2 * 2000 + 1233] = None
        t = pa.table({"key": pa.array(k), "value": pa.array([f"v{i}" for i in range(6000)])})
        pq.write_table(t, os.path.join(d, f"file-{f}.parquet"), row_group_size=2000)


if __name__ == "__main__":
    {"lake": lake, "features": features, "nullkey": nullkey}[sys.argv[1]](sys.argv[2])
