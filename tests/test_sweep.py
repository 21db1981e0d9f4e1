"""
The sweep: the scheduler's own C{failed} transitions for what nobody ran,
driven by the clock.
"""

from __future__ import annotations

from am.core import states
from tests.core_helpers import NOW, CoreTestCase


class SweepTests(CoreTestCase):
    """
    L{am.core.scheduler.Scheduler.sweep} on the in-memory store.
    """

    def setUp(self) -> None:
        super().setUp()
        self.node1 = self.successResultOf(self.scheduler.addUser(name="Node 1", role="node", fingerprint="1" * 40))
        self.grace = self.policy.reportGrace
        self.seen = []
        self.scheduler.events.subscribe(self.seen.append)

    def schedule(self, sid):
        return self.inTxn(lambda txn: txn.getSchedule(sid))

    def quota(self) -> int:
        return self.inTxn(lambda txn: txn.getQuotas(self.alice.id))["time"].current

    def sweepAt(self, when: int):
        self.clock.advance(when - self.clock.seconds())
        return self.successResultOf(self.scheduler.sweep())

    def test_neverFetched(self) -> None:
        """
        A defined task fails the moment its window has ended, with a reason,
        a full refund and one event; its experiment is archived.
        """
        full = self.quota()
        booked = self.book(nodes=["1"], start=NOW + 100, duration=600)
        sid, stop = booked.schedules[0].id, booked.schedules[0].stop
        self.assertLess(self.quota(), full)
        self.assertEqual(self.sweepAt(stop - 1).total, 0)
        self.assertEqual(self.schedule(sid).status, states.DEFINED)
        del self.seen[:]
        result = self.sweepAt(stop)
        self.assertEqual((result.neverDeployed, result.silent), (1, 0))
        failed = self.schedule(sid)
        self.assertEqual((failed.status, failed.reason), ("failed", "node 1 never deployed the task"))
        self.assertEqual(self.quota(), full)
        self.assertEqual((failed.chargedTime, failed.chargedData, failed.chargedStorage), (0, 0, 0))
        self.assertEqual([(e.kind, getattr(e, "new", None), e.actor) for e in self.seen], [
            ("schedule.status", "failed", "scheduler"), ("experiment.archived", "archived", "scheduler")])
        # A second sweep finds nothing.
        self.assertEqual(self.sweepAt(stop + 60).total, 0)

    def test_requestedWaitsForGrace(self) -> None:
        """
        A task its node fetched but never reported on fails only after the
        grace, again with everything refunded.
        """
        full = self.quota()
        booked = self.book(nodes=["1"], start=NOW + 100, duration=600)
        sid, stop = booked.schedules[0].id, booked.schedules[0].stop
        self.successResultOf(self.scheduler.heartbeat(self.node1.id, "1"))
        self.assertEqual(self.schedule(sid).status, states.REQUESTED)
        self.assertEqual(self.sweepAt(stop + self.grace - 1).total, 0)
        self.assertEqual(self.sweepAt(stop + self.grace).neverDeployed, 1)
        self.assertEqual((self.schedule(sid).status, self.schedule(sid).reason),
                         ("failed", "node 1 never deployed the task"))
        self.assertEqual(self.quota(), full)

    def test_silentNode(self) -> None:
        """
        A started task whose node went silent fails once both its window and
        the node's silence are older than the grace; the time after the
        node's last sign of life is refunded.
        """
        full = self.quota()
        booked = self.book(nodes=["1"], start=NOW + 100, duration=600)
        sid, start, stop = booked.schedules[0].id, booked.schedules[0].start, booked.schedules[0].stop
        self.clock.advance(start + 200 - self.clock.seconds())
        self.successResultOf(self.scheduler.heartbeat(self.node1.id, "1"))
        self.successResultOf(self.scheduler.changeStatus(sid, "started", self.node1.id))
        self.assertEqual(self.sweepAt(stop + self.grace - 1).total, 0)
        result = self.sweepAt(stop + self.grace)
        self.assertEqual((result.neverDeployed, result.silent), (0, 1))
        failed = self.schedule(sid)
        self.assertEqual(failed.status, "failed")
        self.assertEqual(failed.reason, "node 1 went silent (started when last heard of)")
        # Used: from the start to the last sign of life (200 s of 600).
        self.assertEqual(self.quota(), full - 200)

    def test_liveNodeLeftAlone(self) -> None:
        """
        A node that still heartbeats delivers its own reports: its running
        task is not failed, however late.
        """
        booked = self.book(nodes=["1"], start=NOW + 100, duration=600)
        sid, stop = booked.schedules[0].id, booked.schedules[0].stop
        self.successResultOf(self.scheduler.heartbeat(self.node1.id, "1"))
        self.successResultOf(self.scheduler.changeStatus(sid, "deployed", self.node1.id))
        self.clock.advance(stop + self.grace - self.clock.seconds())
        self.successResultOf(self.scheduler.heartbeat(self.node1.id, "1"))
        self.assertEqual(self.sweepAt(stop + self.grace + 60).total, 0)
        self.assertEqual(self.schedule(sid).status, states.DEPLOYED)
        # Once it too falls silent, it fails.
        self.assertEqual(self.sweepAt(stop + 2 * self.grace).silent, 1)

    def test_finalAndUnplacedUntouched(self) -> None:
        """
        Final tasks, unprovisioned allocations and queued tasks are not the
        sweep's (expiry handles the last two).
        """
        done = self.book(nodes=["1"], start=NOW + 100, duration=600)
        self.successResultOf(self.scheduler.changeStatus(done.schedules[0].id, "started", self.node1.id))
        self.successResultOf(self.scheduler.changeStatus(done.schedules[0].id, "finished", self.node1.id))
        allocated = self.book(nodes=["2"], start=NOW + 100, duration=600, allocateOnly=True)
        queued = self.book(nodes=["3"], start=-1, duration=600, until=NOW + 10 * self.grace)
        self.sweepAt(NOW + 5 * self.grace)
        self.assertEqual(self.schedule(done.schedules[0].id).status, states.FINISHED)
        self.assertEqual(self.schedule(allocated.schedules[0].id).status, states.ALLOCATED)
        self.assertEqual(self.schedule(queued.schedules[0].id).status, states.QUEUED)

    def test_lateReportRefused(self) -> None:
        """
        A report arriving after the sweep failed the task is refused like any
        report on a final task (the node drops it as settled).
        """
        booked = self.book(nodes=["1"], start=NOW + 100, duration=600)
        sid, stop = booked.schedules[0].id, booked.schedules[0].stop
        self.sweepAt(stop)
        failure = self.failureResultOf(self.scheduler.changeStatus(sid, "finished", self.node1.id))
        self.assertEqual(failure.value.message, "Status failed cannot be reset.")
