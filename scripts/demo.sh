#!/usr/bin/env bash
# Quick start: installs Marvin into ./.venv (first run only takes a while) and runs
# marvinctld on embedded defaults: SQLite, the demo inventory and a development CA
# in ./marvin-demo (or --dir DIR), made on first start and reused afterwards.
# It prints curl commands to try.  Extra arguments go to marvinctld.  Ctrl-C stops it.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
exec "$VENV/bin/marvinctld" --demo "$@"
