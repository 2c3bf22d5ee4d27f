"""The embedded reader agrees with the HTTP API on the same keyspace, fails over to a replica, and raises
cairn's errors with the server's messages."""

import json
import os
import pathlib
import shutil

import pytest

import cairn
from conftest import run

EXAMPLE = pathlib.Path(__file__).resolve().parents[2] / "examples" / "example.data"


def ingest_example(tmp_path, store, *extra):
    data = EXAMPLE
    run("ingest", str(data), "--store", store, "-k", "default", *extra)
    return [line.split(" ", 1) for line in data.read_text().splitlines()]


def test_get_and_mget_agree_with_the_http_api(tmp_path, serve):
    store = str(tmp_path / "store")
    rows = ingest_example(tmp_path, store)
    server = serve(store)
    reader = cairn.open(store)
    keys = [k for k, _ in rows] + ["00000000-0000-4000-8000-000000000000", "missing-key"]
    over_http = server.mget("default", keys)
    embedded = reader.mget("default", keys)
    assert embedded == over_http
    assert embedded[:-2] == [v.encode() for _, v in rows]
    assert embedded[-2:] == [None, None]
    for k, v in rows[:500]:
        assert reader.get("default", k) == v.encode() == server.get("default", k)[1]
    assert reader.get("default", "missing-key") is None
    assert server.get("default", "missing-key")[0] == 404
    info, http_info = reader.info("default"), server.info("default")
    for field in ("keyspace", "version", "created_at", "shards", "keys", "bytes", "placement", "replicas"):
        assert info[field] == http_info[field], field
    assert info["keys"] == len(rows)
    assert reader.keyspaces() == ["default"]


def test_errors_are_cairn_exceptions_with_the_servers_messages(tmp_path, serve):
    store = str(tmp_path / "store")
    ingest_example(tmp_path, store)
    server = serve(store)
    reader = cairn.open(store)
    for ks, key, kind in [("nope", "k", cairn.NotFound), ("default", "has space", cairn.InvalidInput),
                          ("BadName", "k", cairn.InvalidInput)]:
        with pytest.raises(kind) as raised:
            reader.get(ks, key)
        assert isinstance(raised.value, cairn.Error)
        status, body = server.get(ks, key)
        assert status in (400, 404)
        assert str(raised.value) == json.loads(body)["message"]
    with pytest.raises(cairn.InvalidInput, match="invalid store URL"):
        cairn.open("ftp://nowhere")


def test_a_deleted_primary_copy_is_read_from_the_replica(tmp_path):
    store, replica = str(tmp_path / "primary"), str(tmp_path / "replica")
    rows = ingest_example(tmp_path, store, "--replicas", replica, "--shards", "4")
    # Every shard object of the primary goes; the replica still has them all.
    shards = list(pathlib.Path(store).glob("keyspace=default/shard=*/*.parquet"))
    assert len(shards) == 4
    for p in shards:
        p.unlink()
    reader = cairn.open(store)
    keys = [k for k, _ in rows]
    assert reader.mget("default", keys) == [v.encode() for _, v in rows]
    info = reader.info("default")
    assert info["failover"] is not None
    # A store with neither copy reports data loss, not a wrong answer.
    shutil.rmtree(pathlib.Path(replica) / "keyspace=default")
    fresh = cairn.open(store)
    with pytest.raises(cairn.DataLoss, match="missing from every root"):
        fresh.get("default", keys[0])


def test_one_store_serves_several_threads_at_once(tmp_path):
    import threading

    store = str(tmp_path / "store")
    rows = ingest_example(tmp_path, store)
    reader = cairn.open(store)
    errors = []

    def worker(part):
        try:
            for k, v in part:
                assert reader.get("default", k) == v.encode()
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(rows[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
