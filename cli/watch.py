# -*- test-case-name: tests.test_cli_units -*-
"""
Following an experiment until every schedule is final: with the server's
wait (C{?wait=change&from=<state>}, docs/rest.md) when it has one, each
change arrives as it commits and nothing polls; otherwise (an older server,
or C{--poll}) by polling politely.
"""

from __future__ import annotations

import time
from collections import Counter
from typing import Any, Callable, Iterator, Optional

__all__ = ["FINAL", "HeldFetch", "Snapshot", "follow", "statusCode"]

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
    held: Optional[Callable[[], Optional[dict[str, Any]]]] = None,
) -> Iterator[Snapshot]:
    """
    Yield a L{Snapshot} first and then each time a status changes, until all
    are final (the last one yielded is done). Polite: the wait between polls
    grows by half while nothing changes, up to C{maxInterval}, and drops back
    to C{interval} on a change.

    @param fetch: one C{GET /v1/experiments/<id>/schedules}.
    @param sleep: how to wait (tests pass one that drives the other side).
    @param held: one held C{GET} that answers at the next change (or its
        timeout); C{None} from it (the server does not hold) falls back to
        polling for good.
    """
    snapshot = Snapshot(fetch())
    yield snapshot
    wait = interval
    while not snapshot.done:
        answer = held() if held is not None else None
        if answer is None:
            held = None
            sleep(wait)
            answer = fetch()
        latest = Snapshot(answer)
        if latest.statuses() != snapshot.statuses():
            snapshot, wait = latest, interval
            yield snapshot
        else:
            wait = min(maxInterval, wait * 1.5)


class HeldFetch:
    """
    The two reads of L{follow} over a client: a plain one that notes the
    state the server says it showed (C{X-Marvin-State}), and a held one
    (C{wait=change&from=<that state>}) that the server answers at the next
    change or after C{timeout} seconds.
    """

    def __init__(self, exchange: Callable[..., tuple[Any, dict[str, str]]], path: str, timeout: int) -> None:
        self.exchange, self.path, self.timeout = exchange, path, timeout
        self.state: Optional[str] = None

    def fetch(self) -> dict[str, Any]:
        body, headers = self.exchange("GET", self.path)
        self.state = headers.get("x-marvin-state")
        return body

    def held(self) -> Optional[dict[str, Any]]:
        if not self.state:
            return None
        query = {"wait": "change", "from": self.state, "timeout": self.timeout}
        body, headers = self.exchange("GET", self.path, query)
        if "x-marvin-wait" not in headers:
            return None
        self.state = headers.get("x-marvin-state")
        return body
