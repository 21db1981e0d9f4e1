#!/usr/bin/env bash
# Installs Marvin with its test extras into ./.venv and runs the whole test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
. scripts/_postgres.sh
exec "$VENV/bin/python" -m pytest "$@"
