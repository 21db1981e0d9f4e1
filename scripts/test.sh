#!/usr/bin/env bash
# Installs Marvin with its test extras into ./.venv, checks the layer rules
# (lint-imports, contracts in setup.cfg), the types (mypy with mypy-zope) and
# runs the whole test suite.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
. scripts/_postgres.sh
. scripts/_chromium.sh
. scripts/_tools.sh
"$VENV/bin/lint-imports" --no-cache --no-logo
# Types, with zope interfaces understood (config: setup.cfg [mypy]).
"$VENV/bin/mypy" am cli rest_compat rspec node
exec "$VENV/bin/python" -m pytest "$@"
