"""The write-side building blocks without Spark: placement as `cairn ingest` places keys, shard objects
from sorted rows, and a publish that is all or nothing."""

import json
import pathlib
import shutil

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

import cairn
from conftest import example_rows, run


def manifest(store, ks="default"):
    root = pathlib.Path(store) / f"keyspace={ks}"
    version = json.loads((root / "CURRENT").read_text())["version"]
    return json.loads((root / "manifests" / f"{version}.json").read_text())


def shard_keys(store, entry):
    return pq.read_table(pathlib.Path(store) / entry["path"]).column("key").to_pylist()


def test_placement_is_the_one_cairn_ingest_uses(tmp_path):
    rows = example_rows(5_000)
    data = tmp_path / "rows.data"
    data.write_text("".join(f"{k} {v}\n" for k, v in rows))
    for extra, kwargs in [([], {}), (["--ring-vnodes", "64"], {"vnodes": 64})]:
        store = str(tmp_path / f"store{len(extra)}")
        run("ingest", str(data), "--store", store, "-k", "default", "--shards", "7", *extra)
        m = manifest(store)
        placed = cairn.placement(pa.array([k for k, _ in rows]), 7, **kwargs).to_pylist()
        assert cairn.placement(pa.array([k for k, _ in rows]), spec=json.dumps(m)).to_pylist() == placed
        on_shard = {}
        for entry in m["shards"]:
            for key in shard_keys(store, entry):
                on_shard[key] = entry["shard"]
        assert [on_shard[k] for k, _ in rows] == placed
    # Binary keys place as their bytes; nulls stay null; other types are refused.
    keys = pa.array([b"a", None, "é".encode()], pa.binary())
    assert cairn.placement(keys, 3).to_pylist()[1] is None
    assert cairn.placement(keys, 3).to_pylist()[::2] == cairn.placement(pa.array(["a", "é"]), 3).to_pylist()
    with pytest.raises(cairn.InvalidInput, match="expected strings or binary"):
        cairn.placement(pa.array([1, 2]), 3)
    with pytest.raises(cairn.InvalidInput):
        cairn.placement(pa.array(["a"]))
    assert cairn.default_shards(0) == 1 and cairn.default_shards(10 << 20) == 20


def build_by_hand(store, rows, shards, **kw):
    """What bulk_load does, without Spark: place, group, sort, write each shard, publish."""
    build = cairn.begin(store, "default", shards=shards, **kw)
    keys = pa.array([k for k, _ in rows])
    placed = cairn.placement(keys, spec=build.target).to_pylist()
    by_shard = {}
    for (k, v), s in zip(rows, placed):
        by_shard.setdefault(s, []).append((k, v))
    entries = []
    for s, part in sorted(by_shard.items()):
        part.sort()
        entries.append(cairn.write_shard(build.target, s, pa.array([k for k, _ in part]),
                                         pa.array([v.encode() for _, v in part], pa.binary())))
    return build, entries


def test_a_hand_built_version_reads_like_an_ingested_one(tmp_path):
    rows = example_rows(3_000)
    store = str(tmp_path / "store")
    build, entries = build_by_hand(store, rows, 4_000)  # more shards than rows: most are empty
    assert len(entries) < 4_000
    written = {e["shard"] for e in entries}
    report = build.publish(entries, empty=[s for s in range(4_000) if s not in written])
    assert report["rows"] == 3_000 and report["shards"] == 4_000 and report["version"] == build.version
    m = manifest(store)
    assert m["version"] == build.version and m["rows"] == 3_000
    # Over 1,024 shards the manifest lists its entries in groups (docs/FORMAT.md).
    assert sum(g["count"] for g in m["groups"]) == 4_000
    reader = cairn.open(store)
    assert reader.mget("default", [k for k, _ in rows]) == [v.encode() for _, v in rows]
    assert run("health", "--store", store, "-k", "default", "--deep").returncode == 0


def test_a_shard_whose_entry_is_missing_is_not_published_empty(tmp_path):
    rows = example_rows(2_000)
    store = str(tmp_path / "store")
    build, entries = build_by_hand(store, rows, 4)
    # Its writer has not reported (still running, or its report was lost): never published as empty.
    with pytest.raises(cairn.InvalidInput, match="shard 3 has no entry.*nothing was published"):
        build.publish(entries[:-1])
    # Named as empty while a writer did write it: refused too, the object left as it is.
    with pytest.raises(cairn.InvalidInput, match="shard 3 was given as empty but has an object"):
        build.publish(entries[:-1], empty=[3])
    assert not (pathlib.Path(store) / "keyspace=default" / "CURRENT").exists()
    assert build.publish(entries)["rows"] == 2_000


def test_an_empty_build_is_refused_unless_allowed(tmp_path):
    store = str(tmp_path / "store")
    build = cairn.begin(store, "default", shards=2)
    with pytest.raises(cairn.InvalidInput, match="holds no keys.*allow_empty=True"):
        build.publish([], empty=[0, 1])
    assert not (pathlib.Path(store) / "keyspace=default" / "CURRENT").exists()
    assert build.publish([], empty=[0, 1], allow_empty=True)["rows"] == 0


def test_publish_checks_every_object_and_publishes_nothing_on_a_bad_entry(tmp_path):
    rows = example_rows(2_000)
    store = str(tmp_path / "store")
    build, entries = build_by_hand(store, rows, 4)
    (pathlib.Path(store) / entries[1]["path"]).unlink()
    with pytest.raises(cairn.InvalidInput, match="is missing; nothing was published"):
        build.publish(entries)
    assert not (pathlib.Path(store) / "keyspace=default" / "CURRENT").exists()
    # Nothing was visible, so the build can still be given up, and that removes what it wrote.
    build.abort()
    assert list(pathlib.Path(store).glob(f"keyspace=default/shard=*/{build.version}.parquet")) == []
    assert list(pathlib.Path(store).glob("keyspace=default/_ingest/*")) == []
    with pytest.raises(cairn.InvalidInput, match="already published or aborted"):
        build.publish(entries)

    build, entries = build_by_hand(store, rows, 4)
    forged = dict(entries[0], path="keyspace=default/shard=00000/other.parquet")
    with pytest.raises(cairn.InvalidInput, match="not this version's"):
        build.publish([forged] + entries[1:])
    build.abort()
    twice = dict(entries[0], checksum="xxh3-64:0000000000000000")
    build, entries = build_by_hand(store, rows, 4)
    with pytest.raises(cairn.InvalidInput, match="written twice with different rows"):
        build.publish(entries + [dict(entries[0], checksum=twice["checksum"])])
    build.abort()
    assert list(pathlib.Path(store).glob("keyspace=default/shard=*/*.parquet")) == []
    assert not (pathlib.Path(store) / "keyspace=default" / "CURRENT").exists()


def test_two_builds_at_once_publish_one_and_clean_up_the_other(tmp_path):
    rows = example_rows(2_000)
    store = str(tmp_path / "store")
    first, first_entries = build_by_hand(store, rows, 4)
    second, second_entries = build_by_hand(store, rows[:1_000], 4)
    first.publish(first_entries)
    with pytest.raises(cairn.Conflict, match="published by someone else"):
        second.publish(second_entries)
    assert manifest(store)["version"] == first.version
    left = list(pathlib.Path(store).glob(f"keyspace=default/shard=*/{second.version}.parquet"))
    assert left == []
    assert cairn.open(store).get("default", rows[1500][0]) == rows[1500][1].encode()


def test_abort_deletes_what_the_writers_wrote(tmp_path):
    rows = example_rows(1_000)
    store = str(tmp_path / "store")
    build, entries = build_by_hand(store, rows, 4)
    assert len(list(pathlib.Path(store).glob(f"keyspace=default/shard=*/{build.version}.parquet"))) == 4
    build.abort()
    assert list(pathlib.Path(store).glob(f"keyspace=default/shard=*/{build.version}.parquet")) == []
    assert list(pathlib.Path(store).glob("keyspace=default/_ingest/*")) == []
    with pytest.raises(cairn.InvalidInput, match="already published or aborted"):
        build.publish(entries)


@pytest.mark.parametrize("rows, message", [
    ([("b", "1"), ("a", "2")], "not sorted"),
    ([("a", "1"), ("a", "2")], 'duplicate key "a"'),
    ([("a b", "1")], "contains a space"),
])
def test_a_shard_writer_refuses_rows_it_cannot_store_as_given(tmp_path, rows, message):
    store = str(tmp_path / "store")
    build = cairn.begin(store, "default", shards=1)
    with pytest.raises(cairn.InvalidInput, match=message):
        cairn.write_shard(build.target, 0, pa.array([k for k, _ in rows]), pa.array([v for _, v in rows]))
    w = cairn.PartitionWriter(build.target)
    with pytest.raises(cairn.InvalidInput, match="places it on shard"):
        w.write(pa.array([1], pa.int32()), pa.array(["k"]), pa.array(["v"]))
    with pytest.raises(cairn.InvalidInput, match="null value"):
        cairn.write_shard(build.target, 0, pa.array(["k"]), pa.array([None], pa.string()))
    with pytest.raises(cairn.InvalidInput, match="not a build target"):
        cairn.PartitionWriter("{}")
    build.abort()


def test_a_second_attempt_with_the_same_rows_is_accepted_and_with_other_rows_refused(tmp_path):
    store = str(tmp_path / "store")
    build = cairn.begin(store, "default", shards=1)
    keys, values = pa.array(["a", "b", "c"]), pa.array(["1", "2", "3"])
    first = cairn.write_shard(build.target, 0, keys, values)
    assert cairn.write_shard(build.target, 0, keys, values) == first  # a retry or speculative duplicate
    with pytest.raises(cairn.InvalidInput, match="already written .* with other rows.*not deterministic"):
        cairn.write_shard(build.target, 0, keys, pa.array(["1", "2", "changed"]))
    with pytest.raises(cairn.InvalidInput, match="other rows"):  # an empty shard cannot replace it either
        cairn.write_shard(build.target, 0, pa.array([], pa.string()), pa.array([], pa.string()))
    assert build.publish([first])["rows"] == 3
    assert cairn.open(store).get("default", "c") == b"3"


def test_a_partition_writer_sees_across_batches_and_is_done_after_an_error(tmp_path):
    store = str(tmp_path / "store")
    build = cairn.begin(store, "default", shards=3)
    keys = sorted(k for k, _ in example_rows(300))
    shards = cairn.placement(pa.array(keys), spec=build.target).to_pylist()
    rows = sorted(zip(shards, keys))
    one = [r for r in rows if r[0] == rows[0][0]]
    for shard_type in (pa.int32(), pa.int64(), pa.uint32()):
        w = cairn.PartitionWriter(build.target)
        w.write(pa.array([s for s, _ in one[:5]], shard_type), pa.array([k for _, k in one[:5]]),
                pa.array(["v"] * 5))
        # The next batch repeats the last key of the previous one.
        with pytest.raises(cairn.InvalidInput, match=f'duplicate key "{one[4][1]}"'):
            w.write(pa.array([one[4][0]], shard_type), pa.array([one[4][1]]), pa.array(["v"]))
        with pytest.raises(cairn.InvalidInput, match="finished, failed"):
            w.finish()
    w = cairn.PartitionWriter(build.target)
    with pytest.raises(cairn.InvalidInput, match="no shard for key"):
        w.write(pa.array([None], pa.int32()), pa.array([keys[0]]), pa.array(["v"]))
    w = cairn.PartitionWriter(build.target)
    with pytest.raises(cairn.InvalidInput, match="places it on shard"):
        w.write(pa.array([-1], pa.int64()), pa.array([keys[0]]), pa.array(["v"]))
    w = cairn.PartitionWriter(build.target)
    with pytest.raises(cairn.InvalidInput, match="the shard column is Float64"):
        w.write(pa.array([0.0]), pa.array([keys[0]]), pa.array(["v"]))
    build.abort()


def test_an_unsorted_partition_writer_sorts_spills_and_names_a_duplicate(tmp_path):
    """What bulk_load's writers get: rows in any order, more than one run of them (spilled), sorted by the
    writer itself; a key seen twice in two runs is a duplicate, named."""
    import random

    store = str(tmp_path / "store")
    build = cairn.begin(store, "default", shards=3)
    rows = example_rows(3000)
    random.Random(3).shuffle(rows)
    keys = [k for k, _ in rows]
    shards = cairn.placement(pa.array(keys), spec=build.target)
    w = cairn.PartitionWriter(build.target, sorted=False, _run_bytes=64 << 10)
    for i in range(0, len(rows), 500):
        w.write(shards[i:i + 500], pa.array(keys[i:i + 500]), pa.array([v for _, v in rows[i:i + 500]]))
    entries = w.finish()
    assert sorted(e["shard"] for e in entries) == [0, 1, 2]
    assert build.publish(entries)["rows"] == len(rows)
    reader = cairn.open(store)
    assert all(reader.get("default", k) == v.encode() for k, v in rows)

    build = cairn.begin(store, "dup", shards=3)
    w = cairn.PartitionWriter(build.target, sorted=False, _run_bytes=64 << 10)
    w.write(shards, pa.array(keys), pa.array([v for _, v in rows]))
    w.write(shards[:1], pa.array(keys[:1]), pa.array(["again"]))
    with pytest.raises(cairn.InvalidInput, match=f'duplicate key "{keys[0]}"'):
        w.finish()
    build.abort()


def test_a_replica_standing_in_for_a_lost_primary_is_no_replica_of_itself(tmp_path):
    """What `cairn.spark.compact` reads of a keyspace: its replica list, which it passes to the build. On a
    replica standing in for a lost primary the manifest lists that replica itself; passed as given it was
    refused as a root named twice, so the list comes without it. A build there is not refused."""
    store, replica = tmp_path / "primary", tmp_path / "replica"
    rows = example_rows(100)
    data = tmp_path / "rows.data"
    data.write_text("".join(f"{k} {v}\n" for k, v in rows))
    run("ingest", str(data), "--store", str(store), "-k", "default", "--replicas", str(replica), "--shards", "2")
    listed = json.loads(cairn._cairn.layers(str(store), "default"))["replicas"]
    assert listed == [f"file://{replica.resolve()}"]
    shutil.rmtree(store)  # the primary is lost
    info = json.loads(cairn._cairn.layers(str(replica), "default"))
    assert info["replicas"] == []
    build = cairn.begin(str(replica), "default", shards=2, replicas=info["replicas"])
    build.abort()
