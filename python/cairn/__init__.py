"""cairn: a serverless key-value store for immutable data in object storage.

Read a published keyspace in-process with the same engine as ``cairn serve``::

    store = cairn.open("s3://bucket/prefix")      # or a path, file:///abs/path, memory://name
    store.get("default", "8a35eb59-...")          # -> bytes | None
    store.mget("default", [k1, k2])               # -> [bytes | None, ...]
    store.info("default")                         # -> dict

Build keyspaces beyond one machine with Spark (``cairn.spark.bulk_load``), or from the building blocks
it is made of: ``placement`` (key -> shard, as ``cairn ingest`` places keys), ``begin`` (a new version),
``write_shard`` / ``PartitionWriter`` (shard objects from sorted rows), ``RunStager`` / ``merge_staged``
(cairn's exchange: rows in any order staged as sorted runs, then merged a range of shards at a time) and
``Build.publish``.
See docs/PYTHON.md and docs/SPARK.md.
"""

from ._cairn import (  # noqa: F401
    Build,
    Conflict,
    Corrupt,
    DataLoss,
    Error,
    InvalidInput,
    NotFound,
    PartitionWriter,
    RunStager,
    Store,
    Unavailable,
    __version__,
    begin,
    default_shards,
    discard_staged,
    merge_staged,
    open,
    placement,
    write_shard,
)

__all__ = [
    "Build",
    "Conflict",
    "Corrupt",
    "DataLoss",
    "Error",
    "InvalidInput",
    "NotFound",
    "PartitionWriter",
    "RunStager",
    "Store",
    "Unavailable",
    "begin",
    "default_shards",
    "discard_staged",
    "merge_staged",
    "open",
    "placement",
    "write_shard",
]
