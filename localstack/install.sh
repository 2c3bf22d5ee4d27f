#!/usr/bin/env bash
# Installs LocalStack (S3, IAM, STS, CloudFormation) into a venv so it runs on the host without Docker.
# Measured recipe for Python 3.11: localstack-core 4.13.1 (newer needs Python >= 3.12) with these pins,
# without which startup fails with "No component plugins found". Idempotent; ~35 s, ~500 MB.
set -euo pipefail
venv="${CAIRN_LOCALSTACK_VENV:-$HOME/.cache/cairn/localstack-venv}"
if "$venv/bin/python" -c "import localstack.runtime.main" 2>/dev/null; then
  exit 0
fi
python="${PYTHON:-python3}"
"$python" -c 'import sys; assert sys.version_info >= (3, 10), sys.version' || { echo "need Python >= 3.10" >&2; exit 1; }
echo "installing LocalStack into $venv" >&2
"$python" -m venv "$venv"
constraints="$(mktemp)"
trap 'rm -f "$constraints"' EXIT
printf '%s\n' 'cbor2<6' 'pyopenssl==25.3.0' 'cryptography>=45.0.1,<47' > "$constraints"
"$venv/bin/pip" install --quiet --disable-pip-version-check -c "$constraints" \
  'localstack-core[runtime]==4.13.1' service-identity
"$venv/bin/python" -c "import localstack.runtime.main"
