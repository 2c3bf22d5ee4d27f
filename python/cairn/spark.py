"""Bulk-load a Spark DataFrame into a cairn keyspace (PySpark 3.5+ and 4.x).

Spark schedules the distributed work; the rows move through cairn's own exchange instead of a Spark
shuffle. Each input partition's rows are handed to cairn once: it places them on their shards (the rule
``cairn ingest`` uses), sorts them in runs as ``cairn ingest`` does, and stages the runs in the store. Then
each task of a second job merges a range of shards from every staged run and writes those shard objects
straight to the store. The driver then publishes the version atomically (manifest, conditional pointer
switch, replica copies), so readers see all of it or none of it. See docs/SPARK.md.
"""

import json
import math
import os
import re

import pyarrow as pa

from . import _cairn, _plan

# Spark partitions are sized to about this much data (shards per partition vary; a writer holds one).
PARTITION_BYTES = 128 << 20

_JAR = os.path.join(os.path.dirname(__file__), "jars", "cairn-spark.jar")


def jar_path():
    """The jar holding cairn's placement as Spark SQL UDFs (python/build-jar.sh builds it into the package), or
    None. ``bulk_load`` does not need it (its stagers place rows); with ``spark.jars`` naming it
    (``--jars`` for spark-submit), ``cairn_shard_of_string(key, shards)`` and ``cairn_shard_of_binary`` give
    a key's shard in SQL, for looking at how a dataset spreads before loading it."""
    return _JAR if os.path.exists(_JAR) else None


def _jvm_placement(spark, binary):
    """Registers the JVM placement UDF for string or binary keys and returns its name; None when the jar is
    not on Spark's classpath (or under Spark Connect)."""
    from pyspark.sql.types import IntegerType

    name, cls = (("cairn_shard_of_binary", "cairn.spark.ShardOfBinary") if binary
                 else ("cairn_shard_of_string", "cairn.spark.ShardOfString"))
    try:
        spark.udf.registerJavaFunction(name, cls, IntegerType())
    except Exception:  # the class is not on the classpath, or no JVM session (Spark Connect)
        return None
    return name

_RAISED = re.compile(r"cairn\.(InvalidInput|NotFound|Conflict|Corrupt|Unavailable|DataLoss|Error): ([^\n]*)")


def bulk_load(df, store, keyspace, key="key", value="value", shards=None, replicas=None, *,
              allow_empty=False, mode="full", deleted=None, max_layers=8, _over=None, _fail_first_attempt=None):
    """Publishes the rows of ``df`` as a new version of ``keyspace``.

    ``mode="delta"`` publishes them as a delta layer over the current version instead (``cairn ingest
    --delta``): its keys override the older layers', the others keep their values; ``deleted`` names a
    boolean column whose true rows delete their key (their value may be null). A delta that would give the
    version more than ``max_layers`` layers is refused: :func:`compact` first. Over a keyspace with no
    version, a delta is published as its first full version (deletions dropped). The result's ``layers``
    says how many layers the published version has.

    ``store``: the primary store URL, as the CLI takes it (a path, ``file:///abs/path``, ``s3://bucket/prefix``
    configured by the standard AWS environment on the driver and every executor). ``replicas``: further
    store URLs that get a copy of every shard. ``key``/``value``: the columns (strings or binary). ``shards``:
    the shard count; by default the one ``cairn ingest`` picks for this much data: for a plain read of files
    (columns kept or renamed, nothing else) measured from Spark's listing of them, otherwise by one more pass
    over ``df`` (given, the load reads ``df`` once).

    Returns a dict: ``version``, ``rows``, ``shards``, ``bytes``, ``imbalance``, and ``placement``:
    ``"writer"`` (rows are placed by cairn's stagers, where they are handed over once). A duplicate key, a null key
    or value, or a failed job raises a ``cairn.Error`` subclass and publishes nothing. So does a DataFrame
    with no rows, unless ``allow_empty=True``: an empty version answers "not found" for every key of the
    keyspace it replaces, which is rarely what an empty input meant.

    The load's Spark jobs carry the tag ``cairn-bulk-load-<version>`` (Spark 3.5+); if the load fails they
    are cancelled, and their tasks waited for (at most 60 s), before the version is deleted. Under Spark
    Connect the session's operations carry the tag, and are interrupted (not waited for).

    ``_fail_first_attempt`` (tests only): ``"before"`` or ``"after"`` makes the first attempt of the first
    writer task fail before it writes or after it has written its shards; ``"staged"`` makes the first
    attempt of the first map task fail after it staged its runs.
    """
    from pyspark.sql import functions as F
    from pyspark.sql import types as T

    if mode not in ("full", "delta"):
        raise _cairn.InvalidInput(f"mode must be \"full\" or \"delta\", not {mode!r}")
    if deleted is not None and mode != "delta":
        raise _cairn.InvalidInput("deleted= marks deletions in a delta: pass mode=\"delta\"")
    fields = {f.name: f.dataType for f in df.schema.fields}
    if deleted is not None and not isinstance(fields.get(deleted), T.BooleanType):
        raise _cairn.InvalidInput(f"the deleted column {deleted!r} must be a boolean column of the DataFrame")
    for column, role in ((key, "key"), (value, "value")):
        if column not in fields:
            raise _cairn.InvalidInput(
                f"the DataFrame has no {role} column {column!r} (its columns: {', '.join(fields)})")
        if not isinstance(fields[column], (T.StringType, T.BinaryType)):
            raise _cairn.InvalidInput(
                f"the {role} column {column!r} is {fields[column].simpleString()}; expected string or binary")
    gone = F.coalesce(F.col(deleted), F.lit(False)) if deleted is not None else F.lit(False)
    rows = df.select(F.col(key).alias("key"), F.col(value).alias("value"), gone.alias("deleted"))

    stored = _plan.file_bytes(df) if shards is None else None
    if stored is not None:
        # Read straight from files: sized by them, as `cairn ingest` sizes by its inputs, from Spark's own
        # listing (no job reads the data twice). The writers refuse null keys and values themselves.
        data_bytes = stored
        n_shards = _cairn.default_shards(data_bytes)
    elif shards is None:
        # One pass in the JVM: the row count, the nulls, and the size as text (what `cairn ingest` sizes by).
        stats = rows.agg(
            F.count(F.lit(1)).alias("rows"),
            F.count("key").alias("keys"),
            F.count(F.when(F.col("deleted") | F.col("value").isNotNull(), 1)).alias("values"),
            F.sum(F.octet_length("key") + F.octet_length("value") + F.lit(2)).alias("bytes"),
        ).first()
        if stats["rows"] > stats["keys"]:
            raise _cairn.InvalidInput(
                f"{stats['rows'] - stats['keys']} rows have a null key (column {key!r}); nothing was published")
        if stats["rows"] > stats["values"]:
            first = rows.filter(F.col("value").isNull() & ~F.col("deleted")).select("key").first()[0]
            raise _cairn.InvalidInput(
                f"{stats['rows'] - stats['values']} rows have a null value (column {value!r}), the first for key "
                f"{_shown(first)}; nothing was published")
        if stats["rows"] == 0 and not allow_empty:
            raise _cairn.InvalidInput(
                f"the DataFrame has no rows: nothing was published. Publishing it would make keyspace {keyspace!r} "
                "answer \"not found\" for every key; if that is what you want, pass allow_empty=True")
        data_bytes = int(stats["bytes"] or 0)
        n_shards = _cairn.default_shards(data_bytes)
    else:
        # No sizing pass: the writers refuse null keys and values themselves (and the job publishes nothing).
        n_shards = int(shards)
        data_bytes = None

    if data_bytes is not None and data_bytes / n_shards > _cairn.STAGED_MAX:
        raise _cairn.InvalidInput(
            f"shards of ~{data_bytes // n_shards >> 20} MiB exceed {_cairn.STAGED_MAX >> 20} MiB, the most a shard "
            "can be protected from being replaced by a retried task (docs/SPARK.md); pass more shards")

    build = _cairn.begin(store, keyspace, shards=n_shards, replicas=list(replicas or []), delta=mode == "delta",
                         max_layers=max_layers, over=_over)
    if build.delta:
        # A delta layer's values carry a tag: 0 then the value, or a lone 1 for a deletion (docs/FORMAT.md).
        live = F.concat(F.lit(bytearray(b"\x00")), F.col("value").cast("binary"))
        rows = rows.select("key", F.when(F.col("deleted"), F.lit(bytearray(b"\x01"))).otherwise(live).alias("value"))
    else:
        rows = rows.filter(~F.col("deleted")).select("key", "value")
    n_shards = build.shards  # a delta's: capped at its base's shard count
    if data_bytes is not None and data_bytes / n_shards > _cairn.STAGED_MAX:
        build.abort()
        raise _cairn.InvalidInput(
            f"shards of ~{data_bytes // n_shards >> 20} MiB exceed {_cairn.STAGED_MAX >> 20} MiB, the most a shard "
            "can be protected from being replaced by a retried task (docs/SPARK.md); the base has too few shards "
            "for this delta: compact it with more shards, or load it as a full version")
    sc = _context(df.sparkSession)
    tag = f"cairn-bulk-load-{build.version}"
    tagged = sc is not None and hasattr(sc, "addJobTag")
    # Spark Connect: no SparkContext on the client; the session tags its operations instead.
    connect = None if sc is not None or not hasattr(df.sparkSession, "interruptTag") else df.sparkSession
    if tagged:
        sc.addJobTag(tag)
    elif connect is not None:
        connect.addTag(tag)
    try:
        entries, where = _write(rows, build.target, n_shards, data_bytes, df.sparkSession, _fail_first_attempt)
        try:
            files = df.inputFiles()
        except Exception:  # a DataFrame not read from files
            files = []
        # The job succeeded, so every task reported its shards: those with no entry hold no rows.
        reported = {e["shard"] for e in entries}
        empty = [s for s in range(n_shards) if s not in reported]
        published = build.publish(entries, files=files, empty=empty, allow_empty=allow_empty)
        try:
            _cairn.discard_staged(build.target)
        except _cairn.Error as e:  # left under the version's own prefix: gc collects them with it
            import warnings

            warnings.warn(f"cairn: the staged runs of {build.version} were not all deleted ({e}); "
                          "`cairn gc` deletes them with the version")
        published["placement"] = where
        published["layers"] = published.get("layers", 1)
        return published
    except BaseException as e:
        try:
            # Tasks of a failed job may still be writing: stop them first, so abort finds what they wrote
            # (anything written after it is an orphan that `cairn gc` collects).
            if tagged:
                _stop_jobs(sc, tag)
            elif connect is not None:
                connect.interruptTag(tag)
        except Exception:  # a dying SparkContext: clean up what can be cleaned up anyway
            pass
        finally:
            try:
                build.abort()  # refused while a publish runs; a no-op once it wrote the manifest
            except _cairn.Error:
                pass
        if isinstance(e, _cairn.Error) or not isinstance(e, Exception):
            raise
        raise _named(_translated(e), key, value) from e
    finally:
        try:
            if tagged:
                sc.removeJobTag(tag)
            elif connect is not None:
                connect.removeTag(tag)
        except Exception:  # a stopped session: nothing left to untag
            pass


def compact(spark, store, keyspace):
    """Merges every layer of ``keyspace``'s current version into one base layer, with Spark: the layers'
    shards are read as the Parquet files they are, the newest row of each key kept (a deletion dropping it),
    and the result published with :func:`bulk_load` over the base's shard count, only over the version that
    was read (a delta published meanwhile makes it fail, publishing nothing). Its shards are those ``cairn
    compact`` writes. Returns :func:`bulk_load`'s result, with ``compacted``: False when the version was one
    layer already (nothing published)."""
    from functools import reduce

    from pyspark.sql import functions as F

    info = json.loads(_cairn.layers(store, keyspace))
    if len(info["layers"]) == 1:
        return {"version": info["version"], "compacted": False, "layers": 1}
    base = info["placement"]
    if (base.get("algorithm"), base.get("hash"), base.get("seed")) != ("jump", "xxhash64", 0):
        raise _cairn.InvalidInput(f"the base layer is placed by {base.get('algorithm')!r}, which bulk_load does not "
                                  "write: compact it with `cairn compact`")
    root = _root_path(store)
    frames = []
    for rank, layer in enumerate(info["layers"]):
        paths = [f"{root}/{s['path']}" for s in layer["shards"] if s["rows"] > 0]
        if not paths:
            continue
        df = spark.read.parquet(*paths).select("key", "value")
        if layer["delta"]:
            deleted = F.substring("value", 1, 1) == F.lit(bytearray(b"\x01"))
            value = F.expr("substring(value, 2)")
        else:
            deleted, value = F.lit(False), F.col("value")
        frames.append(df.select("key", F.lit(rank).alias("rank"), deleted.alias("deleted"), value.alias("value")))
    if not frames:  # every layer empty
        frames.append(spark.createDataFrame([], "key string, rank int, deleted boolean, value binary"))
    rows = reduce(lambda a, b: a.unionByName(b), frames)
    newest = rows.groupBy("key").agg(F.min_by(F.struct("deleted", "value"), "rank").alias("newest"))
    live = newest.filter(~F.col("newest.deleted")).select("key", F.col("newest.value").alias("value"))
    out = bulk_load(live, store, keyspace, shards=int(info["placement"]["shards"]), replicas=info["replicas"],
                    allow_empty=True, _over=info["version"])
    out["compacted"] = True
    return out


def _root_path(store):
    """The store root as Spark reads files under it."""
    if store.startswith("s3://"):
        return "s3a://" + store[len("s3://"):].rstrip("/")
    if store.startswith("file://"):
        return store[len("file://"):].rstrip("/")
    if "://" in store:
        raise _cairn.InvalidInput(f"compact reads the layers with Spark: {store} is not a path or s3:// URL")
    return os.path.abspath(store).rstrip("/")


def _context(spark):
    try:
        return spark.sparkContext
    except Exception:  # Spark Connect: no SparkContext on the client
        return None


def _stop_jobs(sc, tag, timeout=60.0):
    """Cancels the load's jobs and waits (bounded) until no task of the application runs."""
    import time

    sc.cancelJobsWithTag(tag)
    tracker = sc.statusTracker()
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        infos = [tracker.getStageInfo(s) for s in tracker.getActiveStageIds()]
        if not any(i is not None and i.numActiveTasks > 0 for i in infos):
            return
        time.sleep(0.2)


def _write(rows, target, n_shards, data_bytes, spark, fail):
    """Runs the load's two jobs, cairn's own exchange in place of a Spark shuffle and sort: each input
    partition's rows go to a cairn stager once, which places them on their shards, sorts them and stages
    them in the store as one run; then each reduce task merges a range of shards from every run and writes
    those shards. Returns the shards' entries and where rows were placed."""
    try:
        parallelism = spark.sparkContext.defaultParallelism
    except Exception:  # Spark Connect has no SparkContext on the client
        parallelism = int(spark.conf.get("spark.default.parallelism", "8"))
    size = data_bytes if data_bytes is not None else _plan.estimated_bytes(rows)
    by_size = min(math.ceil(size / PARTITION_BYTES), 1 << 20) if size is not None else 0
    # Whole waves: a last wave with fewer tasks than cores leaves cores idle while it runs.
    waves = math.ceil(max(2 * parallelism, by_size) / parallelism)
    partitions = max(1, min(n_shards, waves * parallelism))

    def stage(batches):
        from pyspark import TaskContext

        ctx = TaskContext.get()
        stager = _cairn.RunStager(target, ctx.partitionId(), ctx.taskAttemptId())
        for batch in batches:
            stager.write_batch(batch)
        runs = stager.finish()
        if fail == "staged" and ctx.attemptNumber() == 0 and ctx.partitionId() == 0:
            raise RuntimeError("injected failure of the first attempt, after staging its runs")
        yield pa.RecordBatch.from_arrays([pa.array(runs, pa.string())], names=["run"])

    # A run's JSON, from the attempt of each map task that succeeded (a failed or duplicate attempt's runs
    # stay unread, and go with the staging area).
    runs = [r["run"] for r in rows.mapInArrow(stage, "run string").collect()]
    staged_rows = sum(json.loads(r)["rows"] for r in runs)
    # Jump hashing spreads keys evenly over shards, so equal shard ranges are equal work.
    ranges = [(i * n_shards // partitions, (i + 1) * n_shards // partitions) for i in range(partitions)]

    def merge(batches):
        from pyspark import TaskContext

        ctx = TaskContext.get()
        injected = fail is not None and ctx is not None and ctx.attemptNumber() == 0 and ctx.partitionId() == 0
        if injected and fail == "before":
            raise RuntimeError("injected failure of the first attempt, before writing")
        for batch in batches:
            for i in batch.column(0).to_pylist():
                start, end = ranges[i]
                written = _cairn.merge_staged(target, runs, start, end)
                if injected and fail == "after":
                    raise RuntimeError("injected failure of the first attempt, after writing its shards")
                if written:
                    yield pa.RecordBatch.from_arrays([pa.array([json.dumps(e) for e in written], pa.string())],
                                                     names=["entry"])

    # One range to a task: spark.range splits 0..partitions evenly over as many partitions.
    out = rows.sparkSession.range(0, partitions, 1, partitions).mapInArrow(merge, "entry string")
    entries = [json.loads(r["entry"]) for r in out.collect()]
    # Every staged row must be in a shard: a check of the whole exchange before anything is published.
    written = sum(e["rows"] for e in entries)
    if written != staged_rows:
        raise _cairn.Error(f"the map tasks staged {staged_rows} rows but the shards hold {written}; nothing was "
                           "published")
    return entries, "writer"


def _shown(key):
    return repr(key.decode("utf-8", "replace") if isinstance(key, (bytes, bytearray)) else key)


def _named(e, key, value):
    """A writer's null-key or null-value error, with the column the user named (the writers see their own
    names for them)."""
    if isinstance(e, _cairn.InvalidInput):
        message = str(e)
        if message == "a null key":
            return _cairn.InvalidInput(f"a null key (column {key!r}); nothing was published")
        if message.startswith("a null value for key "):
            return _cairn.InvalidInput(f"{message} (column {value!r}); nothing was published")
    return e


def _translated(e):
    """A cairn error raised in an executor reaches the driver inside Spark's; raise it as itself, with
    its message unchanged."""
    if isinstance(e, _cairn.Error):
        return e
    found = _RAISED.search(str(e))
    if found is None:
        first = next((line for line in str(e).strip().splitlines() if line.strip()), type(e).__name__)
        return _cairn.Error(f"the Spark job failed, nothing was published: {first}")
    return getattr(_cairn, found.group(1))(found.group(2))
