#!/usr/bin/env bash
# Installs the command-line tools cairn's tests and deploy scripts use into one cached venv and prints its bin
# directory: cargo-lambda (Lambda emulator and builder; bundles zig, builds x86_64 offline) and the AWS CLI.
# Idempotent; ~30 s the first time.
set -euo pipefail
venv="${CAIRN_TOOLS_VENV:-$HOME/.cache/cairn/tools-venv}"
if ! { [ -x "$venv/bin/cargo-lambda" ] && [ -x "$venv/bin/aws" ]; }; then
  echo "installing cargo-lambda and awscli into $venv" >&2
  python3 -m venv "$venv"
  "$venv/bin/pip" install --quiet --disable-pip-version-check 'cargo-lambda==1.9.2' 'awscli==1.46.3' >&2
fi
echo "$venv/bin"
