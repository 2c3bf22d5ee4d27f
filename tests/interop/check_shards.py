"""Opens cairn shard files with pyarrow and DuckDB, unchanged, and checks them against expectations.

usage: check_shards.py EXPECTED.json
EXPECTED: {"shards": [{"path": ..., "rows": N}], "samples": {key: value (latin-1 string of the bytes)}}
Exits non-zero with a message on the first mismatch.
"""
import json
import sys

import duckdb
import pyarrow.parquet as pq


def main() -> None:
    expected = json.load(open(sys.argv[1]))
    samples = {k: v.encode("latin-1") for k, v in expected["samples"].items()}
    found = {}
    con = duckdb.connect()
    for shard in expected["shards"]:
        path, rows = shard["path"], shard["rows"]
        f = pq.ParquetFile(path)
        schema = f.schema_arrow
        assert [str(t) for t in schema.types] == ["string", "binary"], schema
        assert schema.names == ["key", "value"], schema
        assert f.metadata.num_rows == rows, (path, f.metadata.num_rows, rows)
        table = f.read()
        keys = table.column("key").to_pylist()
        assert keys == sorted(keys, key=lambda k: k.encode()), f"{path}: keys not sorted"
        for rg in range(f.metadata.num_row_groups):
            col = f.metadata.row_group(rg).column(0)
            assert col.has_column_index and col.has_offset_index, f"{path}: row group {rg} lacks a page index"
            assert not col.has_dictionary_page, f"{path}: dictionary page on the key"
        for k, v in zip(keys, table.column("value").to_pylist()):
            if k in samples:
                found[k] = v
        # DuckDB: same count, point lookup, and a bloom filter on every key column chunk.
        n, = con.execute("select count(*) from read_parquet(?)", [path]).fetchone()
        assert n == rows, (path, n, rows)
        blooms = con.execute(
            "select count(*) filter (where bloom_filter_offset is not null), count(*) "
            "from parquet_metadata(?) where path_in_schema = 'key'", [path]).fetchone()
        assert rows == 0 or blooms[0] == blooms[1] > 0, f"{path}: bloom filters {blooms}"
        for k in keys[:: max(1, len(keys) // 5)]:
            got = con.execute("select value from read_parquet(?) where key = ?", [path, k]).fetchall()
            assert len(got) == 1, (path, k, got)
    assert found == samples, "sample values differ between cairn's input and what pyarrow reads"
    print(f"ok: {len(expected['shards'])} shards, {sum(s['rows'] for s in expected['shards'])} rows")


if __name__ == "__main__":
    main()
