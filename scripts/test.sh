#!/usr/bin/env bash
# Runs every cairn test on a fresh machine (Rust and Python 3.11 preinstalled, no Docker needed):
#   1. installs the Python tools the interop test uses (pyarrow, duckdb) into a cached venv,
#   2. builds the `cairn` binary the CLI tests drive,
#   3. runs the whole workspace's tests (unit, embedded end-to-end, interop, CLI).
# Exits non-zero on any failure. The cargo target dir is kept between runs (~/.cache/cairn/target) so
# repeated runs, CI included, only rebuild what changed.
set -euo pipefail
cd "$(dirname "$0")/.."

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/cairn/target}"
venv="${CAIRN_VENV:-$HOME/.cache/cairn/pyenv}"

if ! "$venv/bin/python" -c "import pyarrow, duckdb" 2>/dev/null; then
  echo "== installing pyarrow and duckdb into $venv"
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'pyarrow==26.0.1' 'duckdb==2.0.0'
fi
export CAIRN_PYTHON="$venv/bin/python"

echo "== building"
cargo build --locked -p cairn --bin cairn
echo "== testing"
cargo test --locked --workspace
