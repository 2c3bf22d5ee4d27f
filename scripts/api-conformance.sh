#!/usr/bin/env bash
# The HTTP API against its OpenAPI document: `cairn serve` of the reference data on a free 127.0.0.1 port,
# then schemathesis generates requests for every operation (seeded, so a run is reproducible) and checks
# that each gets a documented status, content type and headers, a body matching the schema, and no 5xx.
# Then /metrics, scraped as Prometheus scrapes it, must parse with the Prometheus project's own parsers
# (prometheus_client: OpenMetrics strictly, and the 0.0.4 text format) and count the requests just made.
#   usage: scripts/api-conformance.sh [CAIRN_BIN] [SCHEMATHESIS]
set -euo pipefail
cd "$(dirname "$0")/.."
bin="${1:-${CARGO_TARGET_DIR:-target}/debug/cairn}"
st="${2:-schemathesis}"
dir="$(mktemp -d)"
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$bin" ingest examples/example.data -k default --store "$dir/store" >/dev/null 2>&1
"$bin" serve --store "$dir/store" --host 127.0.0.1 --port "$port" >"$dir/serve.log" 2>&1 &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 100); do
  curl -fsS "http://127.0.0.1:$port/v1/openapi.json" >/dev/null 2>&1 && break
  sleep 0.1
done
(cd "$dir" && "$st" run "http://127.0.0.1:$port/v1/openapi.json" --seed 20261202 --max-examples 100 \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance)
"$(dirname "$st")/python" scripts/check-metrics.py "http://127.0.0.1:$port/metrics"
