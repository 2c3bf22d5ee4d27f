"""cairn.spark.bulk_load on a local Spark (local[2,2], the machine's JDK): into a local store and into
LocalStack S3 with a replica bucket; the same rows through `cairn ingest` land on the same shards; a
retried task still publishes the right data; a duplicate or null fails the job and publishes nothing."""

import json
import pathlib

import pyarrow.parquet as pq
import pytest

import cairn
import cairn.spark
from conftest import example_rows, run


def frame(spark, rows, partitions=3):
    return spark.createDataFrame(rows, "key string, value string").repartition(partitions)


def check_served(server, rows, ks="default"):
    keys = [k for k, _ in rows]
    values = server.mget(ks, keys)
    wrong = [k for (k, v), got in zip(rows, values) if got != (v if isinstance(v, bytes) else v.encode())]
    assert wrong == [], f"{len(wrong)} keys answered wrongly, e.g. {wrong[:3]}"


def shard_rows(store, version):
    """{shard: [(key, value), ...]} read straight from a local store's shard objects."""
    root = pathlib.Path(store) / "keyspace=default"
    m = json.loads((root / "manifests" / f"{version}.json").read_text())
    out = {}
    for e in m["shards"]:
        t = pq.read_table(pathlib.Path(store) / e["path"])
        out[e["shard"]] = list(zip(t.column("key").to_pylist(), t.column("value").to_pylist()))
    return m, out


def test_bulk_load_into_a_local_store_serves_every_key(spark, tmp_path, serve):
    rows = example_rows(20_000)
    store = str(tmp_path / "store")
    report = cairn.spark.bulk_load(frame(spark, rows), store, "default")
    assert report["rows"] == 20_000
    assert report["shards"] == cairn.default_shards(sum(len(k) + len(v.encode()) + 2 for k, v in rows))
    check_served(serve(store), rows)
    assert run("health", "--store", store, "-k", "default", "--deep").returncode == 0
    # A second load is a new version; rollback returns to the first.
    more = rows + example_rows(100, seed=8)
    second = cairn.spark.bulk_load(frame(spark, more), store, "default")
    assert second["version"] != report["version"]
    run("rollback", "--store", store, "-k", "default")
    assert cairn.open(store).info("default")["version"] == report["version"]


def test_bulk_load_into_s3_with_a_replica(spark, s3, serve):
    rows = example_rows(10_000, seed=3)
    primary, replica = f"s3://{s3('primary')}/data", f"s3://{s3('replica')}"
    report = cairn.spark.bulk_load(frame(spark, rows), primary, "default", shards=8, replicas=[replica])
    assert report["shards"] == 8
    check_served(serve(primary), rows)
    check_served(serve(replica), rows)
    health = run("health", "--store", primary, "-k", "default", "--deep", "--json")
    assert json.loads(health.stdout)["status"] == "GREEN", health.stdout


def test_the_same_rows_through_cairn_ingest_land_on_the_same_shards(spark, tmp_path):
    rows = example_rows(8_000, seed=5)
    data = tmp_path / "rows.data"
    data.write_text("".join(f"{k} {v}\n" for k, v in rows))
    by_cli, by_spark = str(tmp_path / "cli"), str(tmp_path / "spark")
    run("ingest", str(data), "--store", by_cli, "-k", "default")
    cli_version = cairn.open(by_cli).info("default")["version"]
    spark_version = cairn.spark.bulk_load(frame(spark, rows, 4), by_spark, "default")["version"]
    cli_m, cli_rows = shard_rows(by_cli, cli_version)
    spark_m, spark_rows = shard_rows(by_spark, spark_version)
    assert spark_m["placement"] == cli_m["placement"]
    assert spark_m["format"] == cli_m["format"] and spark_m["rows"] == cli_m["rows"]
    assert sorted(spark_m) == sorted(cli_m)  # the same manifest fields
    assert len(spark_m["shards"]) == len(cli_m["shards"]) == cli_m["placement"]["shards"]
    assert spark_rows == cli_rows
    # Same rows, same writer: the objects differ only in the version their footer names.
    for a, b in zip(cli_m["shards"], spark_m["shards"]):
        assert (a["rows"], a["min_key"], a["max_key"], a["bytes"]) == (b["rows"], b["min_key"], b["max_key"], b["bytes"])


def test_the_jvm_placement_is_cairns(spark):
    """The UDFs bulk_load runs inside Spark (python/jvm/) place every key where the Rust placement does:
    strings (UTF-8, of every length around XXH64's 4-, 8- and 32-byte steps) and arbitrary bytes."""
    import random

    import pyarrow as pa
    from cairn import _cairn

    rnd = random.Random(11)
    strings = [k for k, _ in example_rows(2000, seed=9)] + ["x" * n for n in range(0, 70)] + ["é" * 40, "日本"]
    blobs = [bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 80))) for _ in range(1000)]
    assert cairn.spark._jvm_placement(spark, False) == "cairn_shard_of_string"
    assert cairn.spark._jvm_placement(spark, True) == "cairn_shard_of_binary"
    for keys, kind, fn in ((strings, "string", "cairn_shard_of_string"), (blobs, "binary", "cairn_shard_of_binary")):
        df = spark.createDataFrame([(i, k) for i, k in enumerate(keys)], f"i long, key {kind}")
        for shards in (1, 2, 7, 1000, 65536):
            got = {r[0]: r[1] for r in df.selectExpr("i", f"{fn}(key, {shards})").collect()}
            want = _cairn.placement(pa.array(keys, pa.binary() if kind == "binary" else pa.string()), shards)
            assert [got[i] for i in range(len(keys))] == want.to_pylist(), (kind, shards)


def test_bulk_load_places_rows_in_its_stagers_like_cairn_ingest(spark, tmp_path):
    rows = example_rows(6_000, seed=6)
    data = tmp_path / "rows.data"
    data.write_text("".join(f"{k} {v}\n" for k, v in rows))
    by_cli, by_spark = str(tmp_path / "cli"), str(tmp_path / "spark")
    run("ingest", str(data), "--store", by_cli, "-k", "default", "--shards", "7")
    loaded = cairn.spark.bulk_load(frame(spark, rows, 3), by_spark, "default", shards=7)
    assert loaded["placement"] == "writer"
    # The runs it staged for its reducers are gone once it is published.
    assert list(pathlib.Path(by_spark).glob("keyspace=default/groups/*/runs/*")) == []
    cli_m, cli_rows = shard_rows(by_cli, cairn.open(by_cli).info("default")["version"])
    spark_m, spark_rows = shard_rows(by_spark, loaded["version"])
    assert spark_m["placement"] == cli_m["placement"] and spark_rows == cli_rows


@pytest.mark.parametrize("when", ["staged", "before", "after"])
def test_a_task_that_fails_its_first_attempt_is_retried_and_the_data_is_right(spark, tmp_path, when):
    rows = example_rows(6_000, seed=11)
    store = str(tmp_path / "store")
    group = f"retry-{when}"
    spark.sparkContext.setJobGroup(group, "a writer task fails its first attempt")
    try:
        report = cairn.spark.bulk_load(frame(spark, rows), store, "default", shards=16, _fail_first_attempt=when)
    finally:
        spark.sparkContext.setJobGroup("", "")
    assert report["rows"] == 6_000
    # The failure happened, and Spark retried it.
    tracker = spark.sparkContext.statusTracker()
    stages = [s for j in tracker.getJobIdsForGroup(group) for s in tracker.getJobInfo(j).stageIds]
    assert sum(tracker.getStageInfo(s).numFailedTasks for s in stages if tracker.getStageInfo(s)) >= 1
    reader = cairn.open(store)
    assert reader.mget("default", [k for k, _ in rows]) == [v.encode() for _, v in rows]
    assert run("health", "--store", store, "-k", "default", "--deep").returncode == 0


def test_a_duplicate_key_fails_the_job_names_the_key_and_publishes_nothing(spark, tmp_path):
    rows = example_rows(5_000, seed=13)
    store = str(tmp_path / "store")
    first = cairn.spark.bulk_load(frame(spark, rows), store, "default", shards=8)
    dup = rows + [(rows[1234][0], "another value")]
    with pytest.raises(cairn.InvalidInput, match=f'^duplicate key "{rows[1234][0]}"$'):
        cairn.spark.bulk_load(frame(spark, dup, 5), store, "default", shards=8)
    assert cairn.open(store).info("default")["version"] == first["version"]
    # The failed version's objects and checkpoint are gone.
    versions = {p.stem for p in pathlib.Path(store).glob("keyspace=default/shard=*/*.parquet")}
    assert versions == {first["version"]}
    assert list(pathlib.Path(store).glob("keyspace=default/_ingest/*")) == []
    assert list(pathlib.Path(store).glob("keyspace=default/groups/*/runs/*")) == []


def test_null_keys_and_values_publish_nothing(spark, tmp_path):
    store = str(tmp_path / "store")
    df = spark.createDataFrame([("a", "1"), (None, "2")], "key string, value string")
    with pytest.raises(cairn.InvalidInput, match="1 rows have a null key"):
        cairn.spark.bulk_load(df, store, "default")
    df = spark.createDataFrame([("a", "1"), ("b", None)], "key string, value string")
    with pytest.raises(cairn.InvalidInput, match="null value .* for key 'b'"):
        cairn.spark.bulk_load(df, store, "default")
    # With the shard count given there is no sizing pass: the writers refuse the null themselves.
    df = spark.createDataFrame([("a", "1"), ("b", None)], "key string, value string")
    wanted = '^a null value for key "b" \\(column \'value\'\\); nothing was published$'
    with pytest.raises(cairn.InvalidInput, match=wanted):
        cairn.spark.bulk_load(df, store, "default", shards=2)
    df = spark.createDataFrame([("a", "1"), (None, "2")], "key string, value string")
    with pytest.raises(cairn.InvalidInput, match="^a null key \\(column 'key'\\); nothing was published$"):
        cairn.spark.bulk_load(df, store, "default", shards=2)
    df = spark.createDataFrame([("a", 1)], "key string, value int")
    with pytest.raises(cairn.InvalidInput, match="is int; expected string or binary"):
        cairn.spark.bulk_load(df, store, "default")
    assert not (pathlib.Path(store) / "keyspace=default" / "CURRENT").exists()


def test_a_dataframe_read_from_files_is_sized_by_them_without_a_pass(spark, tmp_path):
    """As `cairn ingest` sizes by its input files, a DataFrame read straight from files is sized by Spark's
    listing of them: no job reads it twice. Its values compress ~1000x, so the files' size and the rows'
    size as text pick different shard counts."""
    import pyarrow as pa
    from pyspark.sql import functions as F

    rows = [(k, "x" * 2000) for k, _ in example_rows(2_000, seed=31)]
    files = tmp_path / "in"
    files.mkdir()
    for i in range(2):
        part = rows[i::2]
        pq.write_table(pa.table({"key": [k for k, _ in part], "value": [v for _, v in part]}), files / f"{i}.parquet")
    stored = sum(f.stat().st_size for f in files.iterdir())
    as_text = sum(len(k) + len(v) + 2 for k, v in rows)
    assert cairn.default_shards(stored) != cairn.default_shards(as_text)
    store = str(tmp_path / "store")
    report = cairn.spark.bulk_load(spark.read.parquet(str(files)), store, "default")
    assert report["shards"] == cairn.default_shards(stored), report
    assert cairn.open(store).mget("default", [k for k, _ in rows[:50]]) == [v.encode() for _, v in rows[:50]]
    # Columns renamed and reordered are still a plain read; a filter makes the files' size no measure of the
    # rows, and the pass sizes what is left.
    renamed = spark.read.parquet(str(files)).select(F.col("value").alias("v"), F.col("key").alias("k"))
    again = cairn.spark.bulk_load(renamed, str(tmp_path / "renamed"), "default", key="k", value="v")
    assert again["shards"] == cairn.default_shards(stored), again
    kept = spark.read.parquet(str(files)).filter("key < '8'")
    left = [r for r in rows if r[0] < "8"]
    filtered = cairn.spark.bulk_load(kept, str(tmp_path / "filtered"), "default")
    assert filtered["shards"] == cairn.default_shards(sum(len(k) + len(v) + 2 for k, v in left)), filtered
    # A null in such a DataFrame is refused by the writers, and nothing is published.
    pq.write_table(pa.table({"key": ["a", None], "value": ["1", "2"]}), files / "2.parquet")
    with pytest.raises(cairn.InvalidInput, match="^a null key \\(column 'key'\\)"):
        cairn.spark.bulk_load(spark.read.parquet(str(files)), store, "default")
    assert cairn.open(store).info("default")["version"] == report["version"]
    # Anything but a plain read of files (here a join) is sized by the pass, as before.
    joined = spark.read.parquet(str(files / "0.parquet")).join(spark.createDataFrame([("k",)], "other string"))
    again = cairn.spark.bulk_load(joined.select("key", "value"), str(tmp_path / "joined"), "default")
    assert again["shards"] == cairn.default_shards(sum(len(k) + len(v) + 2 for k, v in rows[0::2])), again


def test_binary_columns_and_other_column_names(spark, tmp_path, serve):
    rows = [(f"user-{i:05d}".encode(), bytes([i % 256, 0, 255]) + b"\n tail") for i in range(3_000)]
    df = spark.createDataFrame(rows, "id binary, payload binary")
    store = str(tmp_path / "store")
    cairn.spark.bulk_load(df, store, "blobs", key="id", value="payload")
    reader = cairn.open(store)
    assert reader.mget("blobs", [k.decode() for k, _ in rows]) == [v for _, v in rows]
    check_served(serve(store), [(k.decode(), v) for k, v in rows], ks="blobs")


def test_an_empty_dataframe_does_not_replace_a_live_keyspace(spark, tmp_path):
    rows = example_rows(2_000, seed=21)
    store = str(tmp_path / "store")
    first = cairn.spark.bulk_load(frame(spark, rows), store, "default")
    empty = spark.createDataFrame([], "key string, value string")
    for shards in (None, 4):  # with the sizing pass, and without (the publish refuses)
        with pytest.raises(cairn.InvalidInput, match="no rows|holds no keys"):
            cairn.spark.bulk_load(empty, store, "default", shards=shards)
        assert cairn.open(store).info("default")["version"] == first["version"]
    # Filtered down to nothing (Spark's footer-only files for empty partitions): the same.
    with pytest.raises(cairn.InvalidInput, match="no rows|holds no keys"):
        cairn.spark.bulk_load(frame(spark, rows).filter("key = 'none'"), store, "default", shards=4)
    assert list(pathlib.Path(store).glob("keyspace=default/_ingest/*")) == []
    report = cairn.spark.bulk_load(empty, store, "default", shards=4, allow_empty=True)
    assert report["rows"] == 0 and cairn.open(store).get("default", rows[0][0]) is None


def data_bytes(store, m):
    """{shard: bytes of its object before the Parquet footer} (blocks and index pieces)."""
    out = {}
    for e in m["shards"]:
        b = (pathlib.Path(store) / e["path"]).read_bytes()
        out[e["shard"]] = b[: e["bytes"] - e["meta_bytes"]]
    return out


def test_delta_mode_and_spark_compact_match_cairn_ingest_delta_and_cairn_compact(spark, tmp_path, serve):
    """bulk_load(mode="delta") answers what `cairn ingest --delta` answers for the same rows (deletions
    through a boolean column), and cairn.spark.compact writes the shards `cairn compact` writes."""
    base = example_rows(3000)
    changes = [(k, "changed " + v) for k, v in base[::5]] + example_rows(200, seed=11)
    changed = {k for k, _ in changes}
    deleted = [k for k, _ in base[1::7] if k not in changed]
    stores = {name: str(tmp_path / name) for name in ("spark", "cli")}
    src = tmp_path / "base.txt"
    src.write_text("".join(f"{k} {v}\n" for k, v in base))
    for store in stores.values():
        run("ingest", str(src), "-k", "default", "--store", store, "--shards", "6")

    rows = [(k, v, False) for k, v in changes] + [(k, None, True) for k in deleted]
    df = spark.createDataFrame(rows, "key string, value string, gone boolean").repartition(3)
    out = cairn.spark.bulk_load(df, stores["spark"], "default", mode="delta", deleted="gone")
    assert out["layers"] == 2 and out["tombstones"] == len(deleted), out

    import pyarrow as pa
    table = pa.table({"key": [k for k, _, _ in rows], "value": [v for _, v, _ in rows], "gone": [g for _, _, g in rows]})
    pq.write_table(table, tmp_path / "delta.parquet")
    run("ingest", str(tmp_path / "delta.parquet"), "-k", "default", "--store", stores["cli"], "--delta",
        "--deleted-column", "gone")

    want = dict(base)
    want.update(dict(changes))
    for k in deleted:
        want.pop(k)
    for store in stores.values():
        server = serve(store)
        check_served(server, sorted(want.items()))
        assert server.mget("default", deleted) == [None] * len(deleted)

    compacted = cairn.spark.compact(spark, stores["spark"], "default")
    assert compacted["compacted"] and compacted["rows"] == len(want), compacted
    run("compact", "-k", "default", "--store", stores["cli"])
    ms = {}
    for name, store in stores.items():
        current = (pathlib.Path(store) / "keyspace=default" / "CURRENT").read_text()
        version = json.loads(current)["version"]
        ms[name] = json.loads((pathlib.Path(store) / "keyspace=default" / "manifests" / f"{version}.json").read_text())
        assert "layers" not in ms[name] and ms[name]["rows"] == len(want)
    assert data_bytes(stores["spark"], ms["spark"]) == data_bytes(stores["cli"], ms["cli"])
    assert cairn.spark.compact(spark, stores["spark"], "default")["compacted"] is False
