# -*- test-case-name: tests.test_cli_units -*-
"""
Following an experiment until every schedule is final: the one place that
polls, so a server-side wait can replace the loop later without touching the
commands.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Callable, Iterator

__all__ = ["FINAL", "Snapshot", "follow", "statusCode"]

#: Statuses after which a schedule never changes (am.core.states.FINAL_STATES).
FINAL = frozenset({"stopped", "finished", "failed", "canceled", "aborted"})


def statusCode(status: str) -> str:
    """
    C{"failed; image not found"} -> C{"failed"}.
    """
    return (status or "").split(";", 1)[0].strip()


class Snapshot:
    """
    One look at an experiment: its schedules and how many are final.
    """

    def __init__(self, experiment: dict[str, Any]) -> None:
        self.experiment = experiment
        self.schedules: dict[str, dict[str, Any]] = experiment.get("schedules") or {}
        self.counts = Counter(statusCode(s.get("status", "")) for s in self.schedules.values())
        self.final = sum(n for code, n in self.counts.items() if code in FINAL)

    @property
    def done(self) -> bool:
        return self.final == len(self.schedules)

    def statuses(self) -> dict[str, str]:
        return {sid: s.get("status", "") for sid, s in self.schedules.items()}

    def progress(self, width: int = 20) -> str:
        """
        C{[########------------] 2/5 final  deployed 1, finished 2, started 2}.
        """
        total = len(self.schedules)
        filled = width if total == 0 else (width * self.final) // total
        counts = ", ".join(f"{code} {n}" for code, n in sorted(self.counts.items()))
        return f"[{'#' * filled}{'-' * (width - filled)}] {self.final}/{total} final  {counts}".rstrip()


def follow(
    fetch: Callable[[], dict[str, Any]],
    interval: float = 10.0,
    maxInterval: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[Snapshot]:
    """
    Yield a L{Snapshot} first and then each time a status changes, until all
    are final (the last one yielded is done). Polite: the wait between polls
    grows by half while nothing changes, up to C{maxInterval}, and drops back
    to C{interval} on a change.

    @param fetch: one C{GET /v1/experiments/<id>/schedules}.
    @param sleep: how to wait (tests pass one that drives the other side).
    """
    snapshot = Snapshot(fetch())
    yield snapshot
    wait = interval
    while not snapshot.done:
        sleep(wait)
        latest = Snapshot(fetch())
        if latest.statuses() != snapshot.statuses():
            snapshot, wait = latest, interval
            yield snapshot
        else:
            wait = min(maxInterval, wait * 1.5)
