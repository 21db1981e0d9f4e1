"""
Tests for L{tests.noskip}: a run with a skipped test fails.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def runPytest(tmp_path: object, source: str) -> subprocess.CompletedProcess[str]:
    directory = str(tmp_path)
    with open(os.path.join(directory, "test_sample.py"), "w") as f:
        f.write(textwrap.dedent(source))
    env = dict(os.environ, PYTHONPATH=ROOT)
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "tests.noskip", "-p", "no:cacheprovider", "test_sample.py"],
        cwd=directory, env=env, capture_output=True, text=True, timeout=120,
    )


SKIPPING = """
import pytest
from twisted.trial.unittest import SynchronousTestCase


def test_ran():
    pass


@pytest.mark.skip(reason="later")
def test_marked():
    pass


def test_skipsItself():
    pytest.skip("no server")


@pytest.mark.xfail
def test_expectedToFail():
    assert False


class TrialSkip(SynchronousTestCase):
    skip = "later"

    def test_trial(self):
        pass
"""


def test_skipFailsTheRun(tmp_path: object) -> None:
    """
    A skip (pytest's or trial's) or an expected failure makes the run fail
    and names each test that did not run.
    """
    result = runPytest(tmp_path, SKIPPING)
    assert result.returncode == 1, result.stdout
    assert "tests that did not run" in result.stdout
    for name in ("test_marked", "test_skipsItself", "test_expectedToFail", "TrialSkip::test_trial"):
        assert f"test_sample.py::{name}: not run" in result.stdout, (name, result.stdout)
    assert "test_ran: not run" not in result.stdout


def test_cleanRunPasses(tmp_path: object) -> None:
    """
    A run where every test ran passes as usual.
    """
    result = runPytest(tmp_path, "def test_a():\n    pass\n")
    assert result.returncode == 0, result.stdout
    assert "did not run" not in result.stdout
