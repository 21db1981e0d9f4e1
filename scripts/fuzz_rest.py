#!/usr/bin/env python3
"""
The longer schema-driven fuzzing run (issue 13, item 6): the suite's
C{tests/test_rest_fuzz.py} (schemathesis against a real marvinctld on SQLite,
every operation of the served OpenAPI document, as an experimenter and as an
admin, positive and negative cases) with a bigger budget.

    .venv/bin/python scripts/fuzz_rest.py [EXAMPLES [SEED]] [pytest arguments]

EXAMPLES is the number of cases per operation and identity (default 25; the
suite runs 2), SEED the Hypothesis seed (default 13, as in the suite). Exit
status 0 when no case failed.
"""

from __future__ import annotations

import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main(argv: list[str]) -> int:
    numbers = []
    while argv and argv[0].isdigit() and len(numbers) < 2:
        numbers.append(argv.pop(0))
    os.environ["MARVIN_FUZZ_EXAMPLES"] = numbers[0] if numbers else "25"
    if len(numbers) > 1:
        os.environ["MARVIN_FUZZ_SEED"] = numbers[1]
    os.chdir(ROOT)
    sys.path.insert(0, ROOT)
    import pytest

    return int(pytest.main(["-p", "no:randomly", "-q", "tests/test_rest_fuzz.py", *argv]))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
