#!/usr/bin/env bash
# Builds python/cairn/jars/cairn-spark.jar: cairn's placement as Spark SQL UDFs (python/jvm/), so that
# cairn.spark.bulk_load places rows inside Spark's JVM. Compiled against the pyspark that PYTHON imports
# (its jars), for Java 8+ (Spark 3.5 and 4.x). Start Spark with spark.jars=$(python -c 'import cairn.spark;
# print(cairn.spark.jar_path())') to use it; without it bulk_load places rows in Python workers.
#   usage: python/build-jar.sh [PYTHON]
set -euo pipefail
cd "$(dirname "$0")"
py="${1:-python3}"
jars="$("$py" -c 'import os, pyspark; print(os.path.join(os.path.dirname(pyspark.__file__), "jars"))')"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
javac -nowarn --release 8 -Xlint:-options -cp "$jars/*" -d "$out" jvm/cairn/spark/*.java
mkdir -p cairn/jars
jar --create --file cairn/jars/cairn-spark.jar -C "$out" .
echo "$(pwd)/cairn/jars/cairn-spark.jar"
