"""
Quotas: checked and charged at allocation, refunded on cancel or early end,
journalled, reset monthly without undoing an admin's value.
"""

from __future__ import annotations

from am.core import quotas
from am.core.errors import Conflict
from am.core.policy import Policy
from tests.core_helpers import NOW, CoreTestCase


class QuotaTests(CoreTestCase):
    """
    Quota accounting through the scheduler.
    """

    def quota(self, kind: str, user=None) -> int:
        user = user or self.alice
        return self.inTxn(lambda txn: txn.getQuotas(user.id))[kind].current

    def journal(self, user=None):
        user = user or self.alice
        return self.inTxn(lambda txn: txn.listJournal(user.id))

    def test_defaults(self) -> None:
        """
        New users get the legacy defaults, journalled as created.
        """
        self.assertEqual(self.quota("time"), 8640000)
        self.assertEqual(self.quota("data"), 10**11)
        self.assertEqual(self.quota("storage"), 2 * 10**11)
        self.assertEqual({e.reason for e in self.journal()}, {"user created"})

    def test_chargeAtAllocation(self) -> None:
        """
        node-time, data and storage are charged per node and instance (worked example F, one interface).
        """
        self.book(nodecount=4, duration=3600, start=NOW + 100, traffic=10**8, storage=5 * 10**8)
        self.assertEqual(self.quota("time"), 8640000 - 14400)
        self.assertEqual(self.quota("data"), 10**11 - 4 * 10**8)
        self.assertEqual(self.quota("storage"), 2 * 10**11 - 2 * 10**9)
        charged = [e for e in self.journal() if e.reason.startswith("experiment #")]
        self.assertEqual(sorted((e.kind, e.delta) for e in charged),
                         [("data", -4 * 10**8), ("storage", -2 * 10**9), ("time", -14400)])

    def test_insufficient(self) -> None:
        """
        A request above the quota is refused with the amounts, and nothing is booked.
        """
        self.successResultOf(self.scheduler.updateUser(self.alice.id, quota={"time": 1000}))
        error = self.refused(Conflict, duration=600, nodecount=2, start=NOW + 100)
        self.assertEqual(error.message, "Insufficient time quota.")
        self.assertEqual((error.extra["quota_time"], error.extra["required"]), (1000, 1200))
        self.assertEqual(self.blocking(), [])
        self.assertEqual(self.quota("time"), 1000)

    def test_limitsPerTask(self) -> None:
        """
        Storage and traffic per task have hard limits.
        """
        self.assertEqual(self.refused(Conflict, storage=1048576001).extra["max_storage"], 1048576000)
        self.assertEqual(self.refused(Conflict, traffic=3145728001).extra["max_data"], 3145728000)

    def test_refundOnCancel(self) -> None:
        """
        Canceling before the node got the task refunds everything.
        """
        a = self.book(nodecount=2, duration=600, start=NOW + 100, traffic=1000, storage=2000)
        self.successResultOf(self.scheduler.deleteExperiment(a.experiment.id, self.alice.id))
        self.assertEqual(self.quota("time"), 8640000)
        self.assertEqual(self.quota("data"), 10**11)
        self.assertEqual(self.quota("storage"), 2 * 10**11)

    def test_refundOnEarlyEnd(self) -> None:
        """
        A task that finishes early gets the unused node-time back.
        """
        a = self.book(duration=3600, start=NOW + 100)
        node = self.successResultOf(self.scheduler.addUser(name="Node 1", role="node", fingerprint="d" * 40))
        sid = a.schedules[0].id
        self.successResultOf(self.scheduler.changeStatus(sid, "started", node.id))
        self.clock.advance(100 + 600)
        self.successResultOf(self.scheduler.changeStatus(sid, "finished", node.id))
        self.assertEqual(self.quota("time"), 8640000 - 600)
        # A second final report refunds nothing more.
        self.failureResultOf(self.scheduler.changeStatus(sid, "stopped", node.id), Conflict)
        self.assertEqual(self.quota("time"), 8640000 - 600)

    def test_monthlyResetKeepsAdminValue(self) -> None:
        """
        The monthly reset restores what an admin set, not the default.
        """
        self.successResultOf(self.scheduler.updateUser(self.alice.id, quota={"time": 5000}))
        self.book(duration=600, start=NOW + 100)
        self.assertEqual(self.quota("time"), 4400)
        self.clock.advance(32 * 86400)
        self.scheduler.policy = Policy(maintenance=(), requireHeartbeat=False)
        self.successResultOf(self.scheduler.allocate(self.request(duration=600)))
        self.assertEqual(self.quota("time"), 4400)  # reset to 5000, then charged 600
        reasons = [e.reason for e in self.journal() if e.kind == "time"]
        self.assertIn("set by admin", reasons)
        self.assertIn("scheduled reset", reasons)

    def test_zeroAmountsJournalledResetKept(self) -> None:
        """
        A zero amount is journalled (as the legacy server did) and leaves the
        quota as it was, including a monthly reset written in the same booking.
        """
        self.book(duration=600, start=NOW + 100, traffic=10**8)
        self.assertEqual(self.quota("data"), 10**11 - 10**8)
        self.clock.advance(32 * 86400)
        self.scheduler.policy = Policy(maintenance=(), requireHeartbeat=False)
        result = self.book(duration=600, traffic=0, storage=0)
        self.assertEqual(self.quota("data"), 10**11)
        self.assertEqual(self.quota("storage"), 2 * 10**11)
        self.assertEqual(self.quota("time"), 8640000 - 600)
        charged = [e for e in self.journal() if e.reason.startswith(f"experiment #{result.experiment.id} ")]
        self.assertEqual(sorted((e.kind, e.delta, e.newValue) for e in charged),
                         [("data", 0, 10**11), ("storage", 0, 2 * 10**11), ("time", -600, 8640000 - 600)])

    def test_firstOfNextMonth(self) -> None:
        """
        Resets fall on the first of the month, UTC, including across a year.
        """
        self.assertEqual(quotas.firstOfNextMonth(1703980800), 1704067200)  # 2023-12-31 -> 2024-01-01
        self.assertEqual(quotas.firstOfNextMonth(1704067200), 1706745600)  # 2024-01-01 -> 02-01

    def test_whenHonoured(self) -> None:
        """
        A final report queued during an outage is refunded as of when it happened.
        """
        a = self.book(duration=3600, start=NOW + 100)
        node = self.successResultOf(self.scheduler.addUser(name="Node 1", role="node", fingerprint="d" * 40))
        sid = a.schedules[0].id
        self.successResultOf(self.scheduler.changeStatus(sid, "started", node.id))
        self.clock.advance(100 + 600)
        happened = int(self.clock.seconds())
        self.clock.advance(1200)  # the controller was unreachable
        self.successResultOf(self.scheduler.changeStatus(sid, "finished", node.id, when=str(happened)))
        self.assertEqual(self.quota("time"), 8640000 - 600)

    def test_whenClamped(self) -> None:
        """
        A report time before the schedule's last change is clamped to it.
        """
        a = self.book(duration=3600, start=NOW + 100)
        node = self.successResultOf(self.scheduler.addUser(name="Node 1", role="node", fingerprint="d" * 40))
        sid = a.schedules[0].id
        self.clock.advance(700)
        self.successResultOf(self.scheduler.changeStatus(sid, "started", node.id))
        self.clock.advance(600)
        # A report claiming a time before the last change, or garbage, is clamped or ignored.
        self.successResultOf(self.scheduler.changeStatus(sid, "finished", node.id, when="1"))
        self.assertEqual(self.quota("time"), 8640000 - 3600 + (NOW + 3700 - (NOW + 700)))

    def test_dataRefundFromTrafficReports(self) -> None:
        """
        Data a node reports not to have used comes back when the task ends, and
        a report arriving after the end refunds then; no refund twice.
        """
        node = self.successResultOf(self.scheduler.addUser(name="Node 1", role="node", fingerprint="d" * 40))
        a = self.book(nodes=["1"], duration=600, start=NOW + 100, traffic=1000)
        b = self.book(nodes=["1"], duration=600, start=NOW + 1000, traffic=1000)
        self.assertEqual(self.quota("data"), 10**11 - 2000)
        first, second = a.schedules[0].id, b.schedules[0].id
        self.clock.advance(200)
        self.successResultOf(self.scheduler.changeStatus(first, "started", node.id))
        report = {"deployment": 5, "results": 7, "interfaces": {"89460000000000000001": 300}}
        self.successResultOf(self.scheduler.reportTraffic(first, report, node.id))
        self.successResultOf(self.scheduler.changeStatus(first, "stopped", node.id))
        self.assertEqual(self.quota("data"), 10**11 - 2000 + 700)
        self.successResultOf(self.scheduler.reportTraffic(first, report, node.id))
        self.assertEqual(self.quota("data"), 10**11 - 2000 + 700)
        self.clock.advance(1000)
        self.successResultOf(self.scheduler.changeStatus(second, "started", node.id))
        self.successResultOf(self.scheduler.changeStatus(second, "finished", node.id))
        self.successResultOf(self.scheduler.reportTraffic(second, {"interfaces": {"eth0": 100}}, node.id))
        self.assertEqual(self.quota("data"), 10**11 - 2000 + 700 + 900)
        self.assertEqual(self.inTxn(lambda txn: txn.trafficOf(first)),
                         {"deployment": 5, "results": 7, "89460000000000000001": 300})

    def test_trafficOnlyFromOwnNode(self) -> None:
        """
        Another node, or a user, cannot report traffic for a schedule.
        """
        from am.core.errors import Forbidden

        other = self.successResultOf(self.scheduler.addUser(name="Node 2", role="node", fingerprint="d" * 40))
        a = self.book(nodes=["1"], duration=600, start=NOW + 100, traffic=1000)
        for who in (other, self.alice):
            self.failureResultOf(self.scheduler.reportTraffic(a.schedules[0].id, {"results": 1}, who.id), Forbidden)

