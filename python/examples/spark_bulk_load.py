"""Example Spark job: build a cairn keyspace from Parquet in S3 (EMR Serverless, Glue, EMR, Databricks).

    spark-submit spark_bulk_load.py s3://lake/features/ s3://cairn-data/prod features \
        --replica s3://cairn-replica-1/prod --key-column id --value-column payload

Submit it with the cairn wheel (built once with `pip wheel ./python` or `maturin build --release` in
python/) on the executors' Python path: see docs/SPARK.md.
"""

import argparse

from pyspark.sql import SparkSession

import cairn.spark


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("source", help="input readable by Spark (Parquet; e.g. s3://lake/features/)")
    p.add_argument("store", help="cairn store URL (s3://bucket/prefix)")
    p.add_argument("keyspace")
    p.add_argument("--replica", action="append", default=[], help="replica store URL (repeatable)")
    p.add_argument("--key-column", default="key")
    p.add_argument("--value-column", default="value")
    p.add_argument("--shards", type=int, default=None, help="default: as `cairn ingest` picks for the size")
    args = p.parse_args()

    spark = SparkSession.builder.appName(f"cairn bulk load {args.keyspace}").getOrCreate()
    df = spark.read.parquet(args.source)
    report = cairn.spark.bulk_load(df, args.store, args.keyspace, key=args.key_column, value=args.value_column,
                                   shards=args.shards, replicas=args.replica)
    print(f"published version {report['version']} of {args.keyspace}: {report['rows']} keys over "
          f"{report['shards']} shards, {report['bytes']} bytes")
    spark.stop()


if __name__ == "__main__":
    main()
