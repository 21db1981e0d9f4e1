# -*- test-case-name: tests.test_waiters -*-
"""
Waiting for a change without a thread or a polling loop per waiter: each
waiter is one Deferred registered under the ids it watches (an experiment,
a schedule), woken by the core's committed events (L{am.core.events}) or by
its own timer; a cancelled waiter (its client went away) leaves nothing
behind. A face re-reads its condition after each wake (L{Waiters.wait}).
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime

from am.core.events import Event, EventStream

Key = tuple[str, int]


def keysOf(event: Event) -> list[Key]:
    """
    The ids an event wakes: its experiment and its schedule(s).
    """
    keys: list[Key] = []
    expid = getattr(event, "expid", None)
    if isinstance(expid, int):
        keys.append(("experiment", expid))
    schedid = getattr(event, "schedid", None)
    if isinstance(schedid, int):
        keys.append(("schedule", schedid))
    for other in getattr(event, "schedids", ()) or ():
        keys.append(("schedule", other))
    return keys


class _Waiter:
    """
    One pending wait: its Deferred, its timer and the keys it is filed under.
    """

    __slots__ = ("deferred", "timer", "keys")

    def __init__(self, keys: tuple[Key, ...]) -> None:
        self.keys = keys
        self.deferred: Deferred[bool] = Deferred(lambda d: self.done(False))
        self.timer: Optional[IDelayedCall] = None

    def done(self, woken: bool) -> None:
        """
        Fire once (C{True}: an event, C{False}: timeout or cancel); idempotent.
        """
        timer, self.timer = self.timer, None
        if timer is not None and timer.active():
            timer.cancel()
        if not self.deferred.called:
            self.deferred.callback(woken)


class Waiters:
    """
    Every pending waiter of one scheduler, filed by key.
    """

    def __init__(self, events: EventStream, clock: IReactorTime) -> None:
        self._clock = clock
        self._waiting: dict[Key, set[_Waiter]] = {}
        events.subscribe(self._observe)

    def __len__(self) -> int:
        return len({w for waiters in self._waiting.values() for w in waiters})

    def wait(self, keys: Iterable[Key], timeout: float) -> Deferred[bool]:
        """
        A Deferred firing C{True} at the next committed event touching one of
        C{keys}, or C{False} after C{timeout} seconds; cancelling it fires
        C{False} and forgets the waiter. Register before reading the
        condition, so no event between the read and the wait is missed.
        """
        waiter = _Waiter(tuple(keys))
        for key in waiter.keys:
            self._waiting.setdefault(key, set()).add(waiter)
        waiter.deferred.addBoth(self._forget, waiter)
        waiter.timer = self._clock.callLater(max(0.0, timeout), waiter.done, False)
        return waiter.deferred

    def _forget(self, result: Any, waiter: _Waiter) -> Any:
        for key in waiter.keys:
            filed = self._waiting.get(key)
            if filed is not None:
                filed.discard(waiter)
                if not filed:
                    del self._waiting[key]
        return result

    def _observe(self, event: Event) -> None:
        for key in keysOf(event):
            for waiter in list(self._waiting.get(key, ())):
                waiter.done(True)
