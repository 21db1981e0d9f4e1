"""
Boundaries of the quota, padding, limit and expiry rules, each checked one
below, at and one above the limit, so that moving a comparison by one fails a
test. (The padding between schedules is covered the same way in
L{tests.test_slots}.)
"""

from __future__ import annotations

from am.core import quotas
from am.core.errors import Conflict
from am.core.model import Quota
from tests.core_helpers import NOW, CoreTestCase


class QuotaBoundaryTests(CoreTestCase):
    """
    A request may use a quota up to exactly what is left, not one unit more.
    """

    def left(self, kind: str) -> int:
        return self.inTxn(lambda txn: txn.getQuotas(self.alice.id))[kind].current

    def test_checkEveryKind(self) -> None:
        """
        L{quotas.check} accepts an amount equal to what is left and refuses
        one more, for each kind, naming that quota.
        """
        left = {kind: Quota(kind, 1000, 1000, NOW + 10, NOW) for kind in ("time", "data", "storage")}
        for kind in left:
            quotas.check(left, {kind: 999})
            quotas.check(left, {kind: 1000})
            error = self.assertRaises(Conflict, quotas.check, left, {kind: 1001})
            self.assertEqual(error.message, f"Insufficient {kind} quota.")
            self.assertEqual((error.extra[f"quota_{kind}"], error.extra["required"]), (1000, 1001))

    def test_timeThroughTheScheduler(self) -> None:
        """
        Two nodes for 600 s need 1,200 s of node-time: a quota of 1,199 is
        refused, 1,200 books and leaves 0.
        """
        self.successResultOf(self.scheduler.updateUser(self.alice.id, quota={"time": 1199}))
        error = self.refused(Conflict, nodecount=2, duration=600, start=NOW + 200)
        self.assertEqual(error.message, "Insufficient time quota.")
        self.assertEqual(self.left("time"), 1199)
        self.successResultOf(self.scheduler.updateUser(self.alice.id, quota={"time": 1200}))
        self.book(nodecount=2, duration=600, start=NOW + 200)
        self.assertEqual(self.left("time"), 0)

    def test_storageThroughTheScheduler(self) -> None:
        """
        Storage is charged per node: two nodes with 1,000 bytes each need
        2,000.
        """
        self.successResultOf(self.scheduler.updateUser(self.alice.id, quota={"storage": 1999}))
        error = self.refused(Conflict, nodecount=2, storage=1000, start=NOW + 200)
        self.assertEqual(error.message, "Insufficient storage quota.")
        self.successResultOf(self.scheduler.updateUser(self.alice.id, quota={"storage": 2000}))
        self.book(nodecount=2, storage=1000, start=NOW + 200)
        self.assertEqual(self.left("storage"), 0)

    def test_monthlyResetAtItsDate(self) -> None:
        """
        The reset happens when its date is reached, not a second before.
        """
        due = NOW + 5000

        def setUp(txn):
            txn.putQuota(self.alice.id, Quota("time", 10, 500, due, NOW))

        self.inTxn(setUp)
        before = self.inTxn(lambda txn: quotas.currentQuotas(txn, self.alice.id, due - 1, self.policy))
        self.assertEqual(before["time"].current, 10)
        at = self.inTxn(lambda txn: quotas.currentQuotas(txn, self.alice.id, due, self.policy))
        self.assertEqual(at["time"].current, 500)
        self.assertEqual(at["time"].lastReset, due)
        self.assertEqual(quotas.effective({"time": Quota("time", 10, 500, due, NOW)}, due - 1)["time"].current, 10)
        self.assertEqual(quotas.effective({"time": Quota("time", 10, 500, due, NOW)}, due)["time"].current, 500)


class LimitBoundaryTests(CoreTestCase):
    """
    The policy's per-task limits: at the limit accepted, one past refused.
    """

    def test_minimumRuntime(self) -> None:
        minimum = self.policy.minRuntime
        error = self.refused(Conflict, duration=minimum - 1, start=NOW + 200)
        self.assertEqual(error.message, f"Tasks must run for a minimum of {minimum} seconds.")
        self.book(duration=minimum, start=NOW + 200)

    def test_maximumStorage(self) -> None:
        maximum = self.policy.maxStorage
        self.successResultOf(self.scheduler.updateUser(self.alice.id, quota={"storage": 10 * maximum}))
        error = self.refused(Conflict, storage=maximum + 1, start=NOW + 200)
        self.assertEqual(error.message, "Too much storage requested.")
        self.book(storage=maximum, start=NOW + 200)


class RefundBoundaryTests(CoreTestCase):
    """
    What comes back when a schedule ends: storage only if the task never ran.
    """

    def setUp(self) -> None:
        super().setUp()
        self.node1 = self.successResultOf(self.scheduler.addUser(name="Node 1", role="node", fingerprint="1" * 40))

    def storageLeft(self) -> int:
        return self.inTxn(lambda txn: txn.getQuotas(self.alice.id))["storage"].current

    def test_storageKeptAfterTheTaskRan(self) -> None:
        """
        A task that started and stopped used its storage: none is refunded,
        while the node-time after the stop is.
        """
        full = self.storageLeft()
        booked = self.book(nodes=["1"], storage=1000, duration=600, start=NOW + 200)
        sid = booked.schedules[0].id
        self.assertEqual(self.storageLeft(), full - 1000)
        self.clock.advance(200)
        self.successResultOf(self.scheduler.changeStatus(sid, "started", self.node1.id))
        self.clock.advance(100)
        self.successResultOf(self.scheduler.changeStatus(sid, "stopped", self.node1.id))
        self.assertEqual(self.storageLeft(), full - 1000)
        time = self.inTxn(lambda txn: txn.getQuotas(self.alice.id))["time"]
        self.assertEqual(time.current, self.policy.defaultQuotaTime - 100)

    def test_storageRefundedWhenCanceledBeforeStart(self) -> None:
        """
        Canceled one second before its start, the task never ran: all of its
        storage and time come back.
        """
        full = self.storageLeft()
        booked = self.book(nodes=["1"], storage=1000, duration=600, start=NOW + 200)
        self.clock.advance(199)
        self.successResultOf(self.scheduler.deleteExperiment(booked.experiment.id, self.alice.id))
        self.assertEqual(self.storageLeft(), full)
        time = self.inTxn(lambda txn: txn.getQuotas(self.alice.id))["time"]
        self.assertEqual(time.current, self.policy.defaultQuotaTime)


class ExpiryBoundaryTests(CoreTestCase):
    """
    An unprovisioned GENI allocation lives exactly C{allocationExpiry} seconds.
    """

    def test_allocationExpiry(self) -> None:
        self.book(nodes=["1"], start=NOW + 5000, allocateOnly=True)
        self.clock.advance(self.policy.allocationExpiry - 1)
        self.assertEqual(self.successResultOf(self.scheduler.expireAllocations()), 0)
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(self.scheduler.expireAllocations()), 0)
        self.assertEqual(len(self.blocking()), 1)
        self.clock.advance(1)
        self.assertEqual(self.successResultOf(self.scheduler.expireAllocations()), 1)
        self.assertEqual(self.blocking(), [])


class RenewBoundaryTests(CoreTestCase):
    """
    A renewal may shorten a window, never below the minimum runtime (found
    by the core state machine: a Renew to a time before the sliver's start
    wrote a window that ended before it began, and blocked nothing).
    """

    def test_shortenToMinimum(self) -> None:
        from am.core import lifecycle

        booked = self.book(nodes=["1"], start=NOW + 1200, duration=600)
        sid = booked.schedules[0].id
        minimum = self.policy.minRuntime
        schedule = self.inTxn(lambda txn: txn.getSchedule(sid))
        self.assertRaises(
            Conflict, self.inTxn, lifecycle.renew, [schedule], NOW + 1200 + minimum - 1, self.alice, NOW, self.policy
        )
        self.assertRaises(Conflict, self.inTxn, lifecycle.renew, [schedule], NOW + 300, self.alice, NOW, self.policy)
        self.assertEqual(self.blocking(), [("1", NOW + 1200, NOW + 1800)])
        schedule = self.inTxn(lambda txn: txn.getSchedule(sid))
        self.inTxn(lifecycle.renew, [schedule], NOW + 1200 + minimum, self.alice, NOW, self.policy)
        self.assertEqual(self.blocking(), [("1", NOW + 1200, NOW + 1200 + minimum)])
