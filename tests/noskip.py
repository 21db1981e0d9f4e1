"""
A pytest plugin (loaded by setup.cfg's addopts) that fails the run when any
test was skipped or expected to fail: a skipped test is a test that did not
run, and CI must not pass on it.
"""

from __future__ import annotations

from typing import Any

import pytest

_NOT_RUN = ("skipped", "xfailed", "xpassed")


def _notRun(config: pytest.Config) -> list[Any]:
    reporter = config.pluginmanager.get_plugin("terminalreporter")
    if reporter is None:
        return []
    return [report for kind in _NOT_RUN for report in reporter.stats.get(kind, [])]


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if exitstatus == pytest.ExitCode.OK and _notRun(session.config):
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    reports = _notRun(config)
    if reports:
        terminalreporter.section("tests that did not run", sep="=", red=True, bold=True)
        for report in reports:
            terminalreporter.write_line(f"{report.nodeid}: not run ({report.outcome}); the run fails")
