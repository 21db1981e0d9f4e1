"""
The core's results rules (am/core/results.py): who uploads, when, how much,
the upload window after the end, the refund of unused storage, retention.
"""

from __future__ import annotations

from am.core import states
from am.core.errors import BadRequest, Conflict, Forbidden
from am.core.policy import Policy
from am.core.results import checkPath
from tests.core_helpers import NOW, CoreTestCase

DIGEST = "ab" * 32


class ResultRulesTests(CoreTestCase):
    policy = Policy(maintenance=(), resultsGrace=600, resultsRetention=3600)

    def setUp(self) -> None:
        super().setUp()
        self.node1 = self.successResultOf(self.scheduler.addUser(name="Node 1", role="node", fingerprint="1" * 40))
        self.node2 = self.successResultOf(self.scheduler.addUser(name="Node 2", role="node", fingerprint="2" * 40))
        booked = self.book(nodes=["1"], start=NOW + 100, storage=1000)
        self.sid = booked.schedules[0].id
        self.successResultOf(self.scheduler.heartbeat(self.node1.id, "1"))
        self.successResultOf(self.scheduler.changeStatus(self.sid, "deployed", self.node1.id))

    def storageQuota(self) -> int:
        return self.inTxn(lambda txn: txn.getQuotas(self.alice.id))["storage"].current

    def test_onlyItsNodeWhileLive(self) -> None:
        """
        The task's own node uploads; another node, its owner and a task not
        on the node yet are refused.
        """
        admission = self.successResultOf(self.scheduler.admitUpload(self.sid, self.node1.id, "a/b.txt", 10, DIGEST))
        self.assertEqual((admission.path, admission.allowance, admission.used), ("a/b.txt", 1000, 0))
        self.failureResultOf(self.scheduler.admitUpload(self.sid, self.node2.id, "a", 1, DIGEST), Forbidden)
        self.failureResultOf(self.scheduler.admitUpload(self.sid, self.alice.id, "a", 1, DIGEST), Forbidden)
        other = self.book(nodes=["2"], start=NOW + 5000, storage=10).schedules[0].id
        self.failureResultOf(self.scheduler.admitUpload(other, self.node2.id, "a", 1, DIGEST), Conflict)

    def test_allowance(self) -> None:
        """
        Files add up to at most the allowance; a new version of a file
        replaces the old one in the sum.
        """
        self.successResultOf(self.scheduler.recordResult(self.sid, self.node1.id, "a", 600, DIGEST))
        failure = self.failureResultOf(self.scheduler.admitUpload(self.sid, self.node1.id, "b", 401, DIGEST), Conflict)
        self.assertEqual(failure.value.extra, {"allowance": 1000, "used": 600, "size": 401})
        self.successResultOf(self.scheduler.admitUpload(self.sid, self.node1.id, "b", 400, DIGEST))
        self.successResultOf(self.scheduler.admitUpload(self.sid, self.node1.id, "a", 1000, DIGEST))
        self.failureResultOf(self.scheduler.recordResult(self.sid, self.node1.id, "b", 401, DIGEST), Conflict)
        self.failureResultOf(self.scheduler.recordResult(self.sid, self.node1.id, "b", 4, "xyz"), BadRequest)
        files = self.inTxn(lambda txn: txn.resultFiles(self.sid))
        self.assertEqual([(f.path, f.size, f.sha256) for f in files], [("a", 600, DIGEST)])

    def test_paths(self) -> None:
        """
        Paths stay inside the results directory.
        """
        for bad in ("", "/etc/passwd", "a//b", "../x", "a/./b", "a\\b", "a\x00b", "x" * 1025, 5):
            with self.assertRaises(BadRequest):
                checkPath(bad)
        self.assertEqual(checkPath("dir/file.csv"), "dir/file.csv")

    def test_windowAfterTheEndThenRefund(self) -> None:
        """
        After the task ends its node may upload for the grace period; then
        the window closes and the storage not filled is refunded, once.
        """
        before = self.storageQuota()
        self.successResultOf(self.scheduler.changeStatus(self.sid, "started", self.node1.id))
        self.clock.advance(200)
        self.successResultOf(self.scheduler.changeStatus(self.sid, "finished", self.node1.id))
        self.successResultOf(self.scheduler.recordResult(self.sid, self.node1.id, "late", 300, DIGEST))
        self.assertEqual(self.successResultOf(self.scheduler.settleResults()), 0)
        self.clock.advance(600)
        self.failureResultOf(self.scheduler.admitUpload(self.sid, self.node1.id, "later", 1, DIGEST), Conflict)
        self.assertEqual(self.successResultOf(self.scheduler.settleResults()), 1)
        self.assertEqual(self.storageQuota(), before + 700)
        self.assertEqual(self.inTxn(lambda txn: txn.getSchedule(self.sid)).chargedStorage, 300)
        self.assertEqual(self.successResultOf(self.scheduler.settleResults()), 0)
        self.assertEqual(self.storageQuota(), before + 700)

    def test_neverRanHasNoWindow(self) -> None:
        """
        A task canceled before it ran was refunded everything: no uploads.
        """
        booked = self.book(nodes=["2"], start=NOW + 5000, storage=10)
        sid = booked.schedules[0].id
        self.successResultOf(self.scheduler.deleteExperiment(booked.experiment.id, self.alice.id))
        self.assertEqual(self.inTxn(lambda txn: txn.getSchedule(sid)).status, states.CANCELED)
        self.assertIsNone(self.inTxn(lambda txn: txn.resultWindow(sid)))
        self.failureResultOf(self.scheduler.admitUpload(sid, self.node2.id, "a", 1, DIGEST), Conflict)

    def test_retention(self) -> None:
        """
        Files older than the retention are forgotten and handed back for deletion.
        """
        self.successResultOf(self.scheduler.recordResult(self.sid, self.node1.id, "old", 1, DIGEST))
        self.clock.advance(3000)
        self.successResultOf(self.scheduler.recordResult(self.sid, self.node1.id, "new", 1, DIGEST))
        self.assertEqual(self.successResultOf(self.scheduler.expireResults()), [])
        self.clock.advance(700)
        gone = self.successResultOf(self.scheduler.expireResults())
        self.assertEqual([f.path for f in gone], ["old"])
        self.assertEqual([f.path for f in self.inTxn(lambda txn: txn.resultFiles(self.sid))], ["new"])
