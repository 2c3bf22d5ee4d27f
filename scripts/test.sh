#!/usr/bin/env bash
# Runs every cairn test on a fresh machine (Rust and Python 3.11 preinstalled, no Docker needed):
#   1. installs redis-server and openssl if missing (apt; the shared cache tier's tests start one, with TLS) and the tools the tests
#      use into cached venvs: pyarrow + duckdb (Parquet interop), pyspark +
#      pandas + pytest + maturin (the Python package and its Spark loader; Spark runs on the machine's JDK), LocalStack
#      (S3, IAM, CloudFormation, Lambda API on the host: localstack/install.sh), cargo-lambda and the AWS CLI
#      (scripts/install-tools.sh),
#   2. starts one LocalStack on a free 127.0.0.1 port for the whole run (CAIRN_TEST_S3_ENDPOINT; set that
#      variable yourself to use another endpoint, e.g. the docker-compose one),
#   3. builds the `cairn` binary the CLI tests drive and runs the whole workspace's tests (unit, embedded,
#      LocalStack, interop, CLI, and the replay of the fuzz corpus: tests/fuzz is a member),
#   4. builds the Python package (python/, a maturin wheel) and runs its pytest suite: the embedded reader,
#      the write-side building blocks, and cairn.spark.bulk_load on a local[2] Spark against the local store
#      and LocalStack (PySpark 4.3, then the Spark tests again on PySpark 3.5 in a venv of their own),
#   5. runs schemathesis against a `cairn serve` of the reference data: every generated request must get a
#      status, content type, headers and body the OpenAPI document (docs/openapi.json) allows, and no 5xx,
#   6. validates the deployment (scripts/check-deploy.sh: Kubernetes manifests, ECS task definitions, the
#      CloudFormation template) and builds the container image from the debug binary (podman, installed
#      with apt if missing) and serves the example data from its filesystem (scripts/check-image.sh),
#   7. trims the build cache of what this run did not use (stale test executables, incremental state), and
#      stops LocalStack. Exits non-zero on any failure.
# The cargo target dir is kept between runs (~/.cache/cairn/target) so repeated runs, CI included, only
# rebuild what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}"
# The fuzz corpus (tests/fuzz, docs/fuzzing.md) is replayed by the workspace's tests: cairn-fuzz is a member.
# The target dir it had when it was a workspace of its own (every dependency built twice) goes.
rm -rf "$HOME/.cache/cairn/fuzz-target"
# When this run began: the build cache it did not touch is trimmed at the end.
run_started="$(mktemp)"
venv="${CAIRN_VENV:-$HOME/.cache/cairn/pyenv}"

# The shared cache tier's tests start a redis-server on 127.0.0.1 (an OS package, no Docker), one of them
# with TLS, its certificates made with openssl.
if ! command -v redis-server >/dev/null || ! command -v openssl >/dev/null; then
  echo "== installing redis-server and openssl"
  sudo_=""; [ "$(id -u)" = 0 ] || sudo_="sudo"
  $sudo_ apt-get update -qq && $sudo_ apt-get install -y -qq redis-server openssl >/dev/null
fi

if ! "$venv/bin/python" -c "import pyarrow, duckdb, pyspark, pandas, pytest, grpc" 2>/dev/null || [ ! -x "$venv/bin/maturin" ]; then
  echo "== installing pyarrow, duckdb, pyspark (with Spark Connect), pandas, pytest and maturin into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'pyarrow==26.0.1' 'duckdb==2.0.0' \
    'pyspark[connect]==4.3.0' 'pandas>=2.2,<3' 'pytest>=8' 'maturin>=1.7,<2'
fi
# Spark 3.5 too: bulk_load has a placement path of its own there (no arrow_udf before 4.1).
venv35="${CAIRN_SPARK35_VENV:-$HOME/.cache/cairn/spark35-venv}"
if ! "$venv35/bin/python" -c "import pyarrow, pyspark, pandas, pytest" 2>/dev/null; then
  echo "== installing pyspark 3.5, pyarrow, pandas and pytest into $venv35"
  python3 -m venv "$venv35"
  "$venv35/bin/pip" install --quiet --disable-pip-version-check 'pyspark==3.5.9' 'pyarrow==26.0.1' \
    'pandas>=2.2,<3' 'pytest>=8'
fi
# schemathesis checks the running API against docs/openapi.json, and prometheus-client's parsers check a
# live /metrics scrape (their own venv: their pins are their own).
stvenv="${CAIRN_SCHEMATHESIS_VENV:-$HOME/.cache/cairn/schemathesis-venv}"
if ! "$stvenv/bin/schemathesis" --version >/dev/null 2>&1 || ! "$stvenv/bin/python" -c 'import prometheus_client' 2>/dev/null; then
  echo "== installing schemathesis and prometheus-client into $stvenv"
  python3 -m venv "$stvenv"
  "$stvenv/bin/pip" install --quiet --disable-pip-version-check 'schemathesis>=4.32,<5' 'prometheus-client>=0.21,<1'
fi
export CAIRN_PYTHON="$venv/bin/python"
PATH="$(scripts/install-tools.sh):$PATH"
export PATH
localstack/install.sh

if [ -z "${CAIRN_TEST_S3_ENDPOINT:-}" ]; then
  echo "== starting LocalStack"
  port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
  export CAIRN_LOCALSTACK_STATE="$HOME/.cache/cairn/localstack-test-$port"
  CAIRN_TEST_S3_ENDPOINT="$(CAIRN_LOCALSTACK_WATCH_PID=$$ localstack/start.sh "$port")"
  export CAIRN_TEST_S3_ENDPOINT
  trap 'localstack/stop.sh "$port"; rm -rf "$CAIRN_LOCALSTACK_STATE"' EXIT
  echo "   $CAIRN_TEST_S3_ENDPOINT"
fi

echo "== building"
cargo build --locked -p cairn --bin cairn
echo "== testing"
# The Python extension is tested through pytest below (a Rust test binary of it would link libpython).
cargo test --locked --workspace --exclude cairn-python --no-fail-fast
echo "== building the Python package (python/) and running its tests"
wheels="$(mktemp -d)"
# cairn's placement as Spark SQL UDFs (the JDK's javac, against the venv's pyspark jars), packaged in the wheel.
python/build-jar.sh "$venv/bin/python" > /dev/null
(cd python && "$venv/bin/maturin" build --locked --profile dev --quiet -o "$wheels")
for v in "$venv" "$venv35"; do
  "$v/bin/pip" install --quiet --disable-pip-version-check --force-reinstall --no-deps "$wheels"/cairn-*.whl
done
rm -rf "$wheels"
(cd python/tests && CAIRN_BIN="$CARGO_TARGET_DIR/debug/cairn" "$venv/bin/python" -m pytest -q -p no:cacheprovider)
echo "== the Spark loader on PySpark 3.5"
(cd python/tests && CAIRN_BIN="$CARGO_TARGET_DIR/debug/cairn" "$venv35/bin/python" -m pytest -q -p no:cacheprovider \
  -W ignore::DeprecationWarning test_spark.py)
echo "== the HTTP API against its OpenAPI document (schemathesis, docs/openapi.json)"
scripts/api-conformance.sh "$CARGO_TARGET_DIR/debug/cairn" "$stvenv/bin/schemathesis"
echo "== the deployment: Kubernetes manifests, ECS task definitions, CloudFormation (offline; docs/DEPLOY.md)"
scripts/check-deploy.sh
echo "== the container image: built with podman, served from the image's own filesystem"
img="$(CAIRN_BIN="$CARGO_TARGET_DIR/debug/cairn" scripts/image.sh | tail -n1)"
scripts/check-image.sh "$img"
echo "== trimming the build cache (what this run's configuration no longer uses)"
# Every differently-featured `cargo test -p ...` leaves test executables of its own (~50 MB each) and
# incremental state: kept, they filled ~/.cache/cairn past 50 GB. Keep this configuration's executables and
# the incremental state this run touched; a later run of another configuration rebuilds what it needs.
keep="$(mktemp)"
{
  cargo test --locked --workspace --exclude cairn-python --no-run --message-format=json 2>/dev/null
  cargo build --locked -p cairn --bin cairn --message-format=json 2>/dev/null
} | python3 -c '
import json, sys
for line in sys.stdin:
    try:
        m = json.loads(line)
    except ValueError:
        continue
    if m.get("reason") == "compiler-artifact" and m.get("executable"):
        print(m["executable"])
' > "$keep"
if [ -s "$keep" ]; then
  # (-links 1: a binary's copy under deps/ is hard-linked to target/debug/<name>, which stays.)
  find "$CARGO_TARGET_DIR/debug/deps" -maxdepth 1 -type f -links 1 -perm -u+x ! -name '*.so' ! -name '*.rlib' \
    | { grep -vxFf "$keep" || true; } | xargs -r rm -f
fi
rm -f "$keep"
find "$CARGO_TARGET_DIR/debug/incremental" -mindepth 1 -maxdepth 1 -type d ! -newer "$run_started" -exec rm -rf {} +
rm -f "$run_started"
