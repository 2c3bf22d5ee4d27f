"""Fixtures for the Python package's tests: the `cairn` binary, `cairn serve` on 127.0.0.1, LocalStack S3
(CAIRN_TEST_S3_ENDPOINT, started by scripts/test.sh) and one local Spark session for the run."""

import base64
import json
import os
import pathlib
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid

import pytest

REPO = pathlib.Path(__file__).resolve().parents[2]
REGION = "us-east-1"


def cairn_bin():
    path = os.environ.get("CAIRN_BIN") or str(
        pathlib.Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target")) / "debug" / "cairn")
    if not os.path.exists(path):
        pytest.fail(f"no cairn binary at {path}: build it (cargo build -p cairn) or set CAIRN_BIN")
    return path


def s3_env():
    """The standard AWS environment pointing at LocalStack, or None when no endpoint is configured."""
    endpoint = os.environ.get("CAIRN_TEST_S3_ENDPOINT")
    if not endpoint:
        return None
    return {
        "AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_REGION": REGION,
        "AWS_DEFAULT_REGION": REGION, "AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true",
    }


@pytest.fixture(scope="session")
def s3():
    """Sets the AWS environment for this process (and the Spark workers it starts) and makes buckets."""
    env = s3_env()
    if env is None:
        pytest.fail("CAIRN_TEST_S3_ENDPOINT is not set: run the tests through scripts/test.sh, which starts LocalStack")
    os.environ.update(env)

    def bucket(purpose):
        name = f"cairn-py-{purpose}-{uuid.uuid4().hex[:10]}"
        req = urllib.request.Request(f"{env['AWS_ENDPOINT_URL']}/{name}", method="PUT")
        urllib.request.urlopen(req, timeout=30).read()
        return name

    return bucket


def run(*args, check=True, env=None, timeout=600):
    full_env = dict(os.environ, **(env or {}))
    p = subprocess.run([cairn_bin(), *args], capture_output=True, text=True, env=full_env, timeout=timeout)
    if check and p.returncode != 0:
        raise AssertionError(f"cairn {' '.join(args)} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
    return p


class Server:
    """`cairn serve --store URL` on a free 127.0.0.1 port."""

    def __init__(self, store):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen(
            [cairn_bin(), "serve", "--store", store, "--port", str(self.port), "--host", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=dict(os.environ, CAIRN_POINTER_TTL="100ms"))
        self.base = f"http://127.0.0.1:{self.port}"
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(f"{self.base}/v1/health", timeout=5).read()
                return
            except urllib.error.HTTPError:
                return
            except OSError:
                if self.proc.poll() is not None or time.time() > deadline:
                    raise AssertionError(f"cairn serve did not start: {self.proc.stderr.read().decode()}")
                time.sleep(0.1)

    def get(self, ks, key):
        """(status, body bytes) of GET /v1/keyspaces/{ks}/keys/{key}."""
        url = f"{self.base}/v1/keyspaces/{ks}/keys/{urllib.request.quote(key, safe='')}"
        try:
            with urllib.request.urlopen(url, timeout=30) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def mget(self, ks, keys):
        """Values of `keys` (bytes or None) through POST /v1/keyspaces/{ks}/mget, 1,000 at a time."""
        out = []
        for i in range(0, len(keys), 1000):
            body = json.dumps(keys[i:i + 1000]).encode()
            req = urllib.request.Request(f"{self.base}/v1/keyspaces/{ks}/mget?encoding=base64", data=body,
                                         method="POST")
            with urllib.request.urlopen(req, timeout=60) as r:
                out += [None if v is None else base64.b64decode(v) for v in json.loads(r.read())]
        return out

    def info(self, ks):
        with urllib.request.urlopen(f"{self.base}/v1/keyspaces/{ks}", timeout=30) as r:
            return json.loads(r.read())

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.fixture
def serve():
    servers = []

    def start(store):
        s = Server(store)
        servers.append(s)
        return s

    yield start
    for s in servers:
        s.stop()


@pytest.fixture(scope="session")
def spark(s3):
    """One local Spark session for the run: 2 threads, a task may fail once and be retried (local[2,2])."""
    import pyspark
    from pyspark.sql import SparkSession

    os.environ["PYSPARK_PYTHON"] = sys.executable
    os.environ["SPARK_LOCAL_IP"] = "127.0.0.1"
    os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    # cairn's placement UDFs (python/build-jar.sh; scripts/test.sh builds them): bulk_load places rows in the JVM.
    import cairn.spark

    jar = cairn.spark.jar_path() or os.path.join(os.path.dirname(__file__), "..", "cairn", "jars", "cairn-spark.jar")
    assert os.path.exists(jar), f"{jar} is missing: build it with python/build-jar.sh"
    session = (SparkSession.builder.master("local[2,2]").appName("cairn-tests")
               .config("spark.jars", os.path.abspath(jar))
               .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
               .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", "4")
               .config("spark.sql.execution.arrow.maxRecordsPerBatch", "2000")
               .getOrCreate())
    session.sparkContext.setLogLevel("ERROR")
    assert pyspark.__version__
    yield session
    session.stop()


def example_rows(n, seed=7):
    """`n` example-shaped rows: UUID keys, values of words with spaces, some non-ASCII."""
    import random

    rnd = random.Random(seed)
    words = ["alpha", "beta", "gamma", "δέλτα", "epsilon", "ζ", "eta", "théta", "iota", "kappa"]
    rows = []
    for _ in range(n):
        key = str(uuid.UUID(int=rnd.getrandbits(128), version=4))
        value = " ".join(rnd.choice(words) for _ in range(rnd.randint(1, 12)))
        rows.append((key, value))
    return rows
