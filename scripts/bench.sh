#!/usr/bin/env bash
# Runs every benchmark in bench/ and prints their figures (not a test).
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
for b in bench/bench_*.py; do
  echo "== $b"
  "$VENV/bin/python" "$b"
done
