#!/usr/bin/env bash
# Installs Marvin with its test extras into ./.venv, checks the layer rules
# (lint-imports, contracts in setup.cfg) and runs the whole test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
. scripts/_postgres.sh
. scripts/_tools.sh
"$VENV/bin/lint-imports" --no-cache --no-logo
exec "$VENV/bin/python" -m pytest "$@"
