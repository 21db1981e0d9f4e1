"""
L{am.core.waiters}: one Deferred per waiter, filed under the ids it
watches, woken by committed events or by its own timer on the injected
clock; cancelled waiters leave nothing behind.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from am.core.events import EventStream, ExperimentArchived, ScheduleStatusChanged
from am.core.waiters import Waiters


def status(schedid: int = 7, expid: int = 3) -> ScheduleStatusChanged:
    return ScheduleStatusChanged(
        time=0, actor="node", schedid=schedid, expid=expid, ownerid=1, nodeid="1", old="defined", new="deployed",
    )


class WaitersTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.events = EventStream()
        self.waiters = Waiters(self.events, self.clock)

    def test_wokenByItsEvent(self) -> None:
        """
        An event of the watched experiment or schedule fires C{True}; others do not.
        """
        byExperiment = self.waiters.wait([("experiment", 3)], 60)
        bySchedule = self.waiters.wait([("schedule", 7)], 60)
        other = self.waiters.wait([("experiment", 4)], 60)
        self.events.deliver([status()])
        self.assertIs(self.successResultOf(byExperiment), True)
        self.assertIs(self.successResultOf(bySchedule), True)
        self.assertNoResult(other)
        self.assertEqual(len(self.waiters), 1)
        self.events.deliver([ExperimentArchived(time=0, actor="owner", expid=4, ownerid=1, old="active", new="archived")])
        self.assertIs(self.successResultOf(other), True)
        self.assertEqual((len(self.waiters), self.clock.getDelayedCalls()), (0, []))

    def test_timeout(self) -> None:
        """
        Without an event the waiter fires C{False} at its timeout, not before.
        """
        d = self.waiters.wait([("experiment", 3)], 30)
        self.clock.advance(29)
        self.assertNoResult(d)
        self.clock.advance(1)
        self.assertIs(self.successResultOf(d), False)
        self.assertEqual(len(self.waiters), 0)
        self.events.deliver([status()])  # nothing left to wake

    def test_cancelForgets(self) -> None:
        """
        Cancelling (the client went away) fires C{False}, cancels the timer
        and unfiles the waiter.
        """
        d = self.waiters.wait([("experiment", 3), ("schedule", 7)], 30)
        d.cancel()
        self.assertIs(self.successResultOf(d), False)
        self.assertEqual((len(self.waiters), self.clock.getDelayedCalls()), (0, []))
        self.assertEqual(self.waiters._waiting, {})
