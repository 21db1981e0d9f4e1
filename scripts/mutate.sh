#!/usr/bin/env bash
# Mutation testing (not part of the test command: about 10 minutes on 2 cores).
# Mutates the rules named in setup.cfg's [mutmut] section (credential
# verification, the trust gate, speaks-for, quotas, the state tables, REST
# access), runs their unit tests against each mutant, and lists the survivors:
# each one is a change to a rule that no test notices. Inspect one with
# `.venv/bin/mutmut show NAME`.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/_venv.sh
"$VENV/bin/python" -m pip install -q --disable-pip-version-check 'mutmut==3.8.1'
rm -rf mutants
"$VENV/bin/mutmut" run --max-children "${JOBS:-2}" >/dev/null 2>&1 || true
"$VENV/bin/mutmut" results | grep -v '^$' | sort > mutants/survivors.txt || true
echo "survivors by function:"
sed 's/__mutmut_[0-9]*: .*//' mutants/survivors.txt | sort | uniq -c | sort -rn
echo "$(wc -l < mutants/survivors.txt) survivors; the list is in mutants/survivors.txt"
