"""
Tests for L{am.ctl.housekeeping.LeaderLoop}: the controller's background
passes run on time, only while leading, and outlive a failing run; and the
outbox's prune pass (chunks until done or its cap, logged when it deleted).
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from am.ctl.housekeeping import LeaderLoop, pruneNotifications, prunePeriod


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


class FakeScheduler:
    """
    Answers each C{pruneNotifications} with the next of C{counts} (then 0).
    """

    def __init__(self, counts: list[int]) -> None:
        self.counts = counts
        self.calls: list[tuple[int, int]] = []

    def now(self) -> int:
        return 1_000_000

    def pruneNotifications(self, before: int, limit: int) -> Deferred:
        self.calls.append((before, limit))
        return succeed(self.counts.pop(0) if self.counts else 0)


class PruneTests(SynchronousTestCase):
    def prune(self, scheduler: FakeScheduler, **kwargs: int) -> int:
        return self.successResultOf(Deferred.fromCoroutine(pruneNotifications(scheduler, 3600, **kwargs)))

    def test_chunksUntilDone(self) -> None:
        """
        Full chunks are followed by another; a short one ends the pass. The
        cut is the retention before now; the total is logged.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        scheduler = FakeScheduler([10, 10, 3])
        self.assertEqual(self.prune(scheduler, chunk=10), 23)
        self.assertEqual(scheduler.calls, [(1_000_000 - 3600, 10)] * 3)
        [logged] = [e for e in events if e.get("count") is not None]
        self.assertEqual((logged["count"], logged["log_level"]), (23, LogLevel.info))

    def test_capPerPass(self) -> None:
        """
        A backlog larger than C{chunks} full chunks waits for the next pass.
        """
        scheduler = FakeScheduler([5] * 10)
        self.assertEqual(self.prune(scheduler, chunk=5, chunks=3), 15)
        self.assertEqual(len(scheduler.calls), 3)

    def test_nothingQuiet(self) -> None:
        """
        A pass that deleted nothing logs nothing.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        self.assertEqual(self.prune(FakeScheduler([])), 0)
        self.assertEqual([e for e in events if e.get("count") is not None], [])

    def test_period(self) -> None:
        """
        A 24th of the retention, between a minute and an hour.
        """
        self.assertEqual([prunePeriod(k) for k in (60, 2400, 86400, 30 * 86400)], [60.0, 100.0, 3600.0, 3600.0])
