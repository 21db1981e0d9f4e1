"""
Tests for L{am.ctl.housekeeping.LeaderLoop}: the controller's background
passes run on time, only while leading, and outlive a failing run.
"""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from am.ctl.housekeeping import LeaderLoop


class LeaderLoopTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.clock = Clock()
        self.leading = True
        self.runs = 0
        self.fail = False

    async def work(self) -> None:
        self.runs += 1
        if self.fail:
            raise RuntimeError("database gone")

    def start(self) -> LeaderLoop:
        loop = LeaderLoop("expiry", 60, self.clock, lambda: self.leading, self.work, "expiring allocations")
        loop.startService()
        self.addCleanup(loop.stopService)
        return loop

    def test_runsEveryPeriod(self) -> None:
        """
        The pass runs at start and once per period, under its name.
        """
        loop = self.start()
        self.assertEqual(loop.name, "expiry")
        self.clock.advance(60)
        self.clock.advance(60)
        self.assertEqual(self.runs, 3)

    def test_skippedWhileFollowing(self) -> None:
        """
        While another controller leads, the timer fires and nothing runs;
        taking the lead starts the passes at the next tick.
        """
        self.leading = False
        self.start()
        self.clock.advance(120)
        self.assertEqual(self.runs, 0)
        self.leading = True
        self.clock.advance(60)
        self.assertEqual(self.runs, 1)

    def test_failureLoggedAndRetried(self) -> None:
        """
        A failing pass is logged as a failure naming the pass, and the next
        one comes on time.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.fail = True
        self.start()
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        failures = [e for e in events if e["log_level"] == LogLevel.critical]
        self.assertEqual(len(failures), 1)
        self.assertEqual(failures[0]["what"], "expiring allocations")
        self.fail = False
        self.clock.advance(60)
        self.assertEqual(self.runs, 2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 0)
