"""bulk_load from a Spark Connect client (PySpark 4's `remote("local[2]")`: a Connect server in a JVM of its
own, the client speaking gRPC to it). The client has no SparkContext: no py4j, no RDD API, no plan statistics.
Run in a child process, since this process already holds a classic session (conftest's)."""

import json
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("grpc", reason="Spark Connect needs pyspark[connect] (scripts/test.sh installs it)")

SCRIPT = textwrap.dedent('''
    import json, os, sys
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from pyspark.sql import SparkSession
    import cairn, cairn.spark
    store = sys.argv[1]
    spark = (SparkSession.builder.remote("local[2]").config("spark.driver.bindAddress", "127.0.0.1")
             .config("spark.driver.host", "127.0.0.1").config("spark.ui.enabled", "false").getOrCreate())
    assert type(spark).__module__.startswith("pyspark.sql.connect"), type(spark)
    rows = [(f"{i:08x}-0000-4000-8000-{i:012x}", f"value {i}") for i in range(4000)]
    df = spark.createDataFrame(rows, "key string, value string").repartition(3)
    out = {"given": cairn.spark.bulk_load(df, store, "default", shards=8)}
    # No shard count: sized by the pass (no plan statistics over Connect).
    out["sized"] = cairn.spark.bulk_load(df, store, "default")
    dup = spark.createDataFrame(rows + [(rows[7][0], "again")], "key string, value string")
    try:
        cairn.spark.bulk_load(dup, store, "default", shards=8)
        out["duplicate"] = "published"
    except cairn.InvalidInput as e:
        out["duplicate"] = str(e)
    reader = cairn.open(store)
    out["current"] = reader.info("default")["version"]
    out["served"] = sum(reader.get("default", k) == v.encode() for k, v in rows)
    spark.stop()
    print(json.dumps(out))
''')


def test_bulk_load_from_a_spark_connect_client(tmp_path):
    store = str(tmp_path / "store")
    done = subprocess.run([sys.executable, "-c", SCRIPT, store], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["given"]["rows"] == 4000 and out["given"]["shards"] == 8, out
    assert out["sized"]["rows"] == 4000 and out["sized"]["shards"] == 1, out
    assert out["duplicate"] == 'duplicate key "00000007-0000-4000-8000-000000000007"', out
    # The duplicate published nothing: the sized load is still current, and serves every key.
    assert out["current"] == out["sized"]["version"], out
    assert out["served"] == 4000, out
