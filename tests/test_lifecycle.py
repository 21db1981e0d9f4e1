"""
After booking: heartbeats, status reports, deletion, GENI provisioning, renewal, expiry.
"""

from __future__ import annotations

from am.core import lifecycle, states
from am.core.errors import Conflict, Forbidden, NotFound, TransitionRefused
from tests.core_helpers import NOW, CoreTestCase


class LifecycleTests(CoreTestCase):
    """
    The life of a schedule through the scheduler.
    """

    def setUp(self) -> None:
        super().setUp()
        self.node1 = self.successResultOf(self.scheduler.addUser(name="Node 1", role="node", fingerprint="1" * 40))
        self.node2 = self.successResultOf(self.scheduler.addUser(name="Node 2", role="node", fingerprint="2" * 40))

    def schedule(self, sid):
        return self.inTxn(lambda txn: txn.getSchedule(sid))

    def test_heartbeatDeliversTasks(self) -> None:
        """
        A heartbeat records the time, returns upcoming tasks and marks them requested.
        """
        a = self.book(nodes=["1"], start=NOW + 100)
        self.clock.advance(10)
        reply = self.successResultOf(self.scheduler.heartbeat(self.node1.id, "1", maintenance=False))
        self.assertEqual([t.id for t in reply.tasks], [a.schedules[0].id])
        self.assertEqual(reply.tasks[0].status, states.REQUESTED)
        self.assertEqual(reply.node.heartbeat, NOW + 10)
        self.assertEqual(self.schedule(a.schedules[0].id).status, states.REQUESTED)

    def test_heartbeatWritesChangedInterfacesOnly(self) -> None:
        """
        Interfaces sent again unchanged (in another key order too) are not
        written again; changed ones are, and the reply's node has them.
        """
        from am.store.sqlite import SQLiteTransaction

        written: list[object] = []
        original = SQLiteTransaction.setHeartbeat

        def spy(txn, nodeid, when, status, interfaces):
            written.append(interfaces)
            return original(txn, nodeid, when, status, interfaces)

        self.patch(SQLiteTransaction, "setHeartbeat", spy)
        first = [{"name": "op0", "iccid": "8946", "mode": "lte"}]
        again = [{"mode": "lte", "iccid": "8946", "name": "op0"}]
        changed = [{"name": "op0", "iccid": "8946", "mode": "3g"}]
        replies = [
            self.successResultOf(self.scheduler.heartbeat(self.node1.id, "1", interfaces=i))
            for i in (first, again, changed, None)
        ]
        self.assertEqual(written, [first, None, changed, None])
        self.assertEqual([r.node.interfaces for r in replies], [first, first, changed, changed])
        self.assertEqual(self.inTxn(lambda txn: txn.getNode("1").interfaces), changed)

    def test_heartbeatOnlyOwnNode(self) -> None:
        """
        A node cannot heartbeat for another, and users cannot heartbeat at all.
        """
        self.failureResultOf(self.scheduler.heartbeat(self.node1.id, "2"), Forbidden)
        self.failureResultOf(self.scheduler.heartbeat(self.alice.id, "1"), Forbidden)

    def test_maintenanceFlag(self) -> None:
        """
        A node in maintenance is not scheduled; disabled nodes stay disabled.
        """
        self.successResultOf(self.scheduler.heartbeat(self.node1.id, "1", maintenance=True))
        self.assertEqual(self.inTxn(lambda txn: txn.getNode("1")).status, "maintenance")
        a = self.book(nodecount=4, start=NOW + 100)
        self.assertNotIn("1", [s.nodeid for s in a.schedules])
        self.inTxn(lambda txn: txn.putNode(txn.getNode("2").__class__(id="2", status="disabled")))
        self.successResultOf(self.scheduler.heartbeat(self.node2.id, "2"))
        self.assertEqual(self.inTxn(lambda txn: txn.getNode("2")).status, "disabled")

    def test_allocatedInvisibleToNodes(self) -> None:
        """
        GENI allocations reach nodes only once provisioned.
        """
        a = self.book(nodes=["1"], start=NOW + 100, allocateOnly=True)
        self.assertEqual(self.successResultOf(self.scheduler.heartbeat(self.node1.id, "1")).tasks, [])
        self.successResultOf(self.store.transact(lifecycle.provision, a.schedules, self.alice, NOW, self.policy))
        self.assertEqual(len(self.successResultOf(self.scheduler.heartbeat(self.node1.id, "1")).tasks), 1)

    def test_nodeReportsOnlyOwn(self) -> None:
        """
        Only the node that owns a schedule may report its status.
        """
        a = self.book(nodes=["1"], start=NOW + 100)
        sid = a.schedules[0].id
        self.failureResultOf(self.scheduler.changeStatus(sid, "deployed", self.node2.id), Forbidden)
        schedule, changed = self.successResultOf(self.scheduler.changeStatus(sid, "deployed", self.node1.id))
        self.assertTrue(changed)
        _, changed = self.successResultOf(self.scheduler.changeStatus(sid, "deployed", self.node1.id))
        self.assertFalse(changed)

    def test_finalIsSticky(self) -> None:
        """
        A final status is never overwritten and the refusal says so.
        """
        sid = self.book(nodes=["1"], start=NOW + 100).schedules[0].id
        self.successResultOf(self.scheduler.changeStatus(sid, "failed; image not found", self.node1.id))
        error = self.failureResultOf(self.scheduler.changeStatus(sid, "started", self.node1.id), TransitionRefused)
        self.assertEqual(error.value.message, "Status failed cannot be reset.")
        stored = self.schedule(sid)
        self.assertEqual(stored.statusText, "failed; image not found")

    def test_unknownSchedule(self) -> None:
        """
        Unknown and malformed ids are not found.
        """
        self.failureResultOf(self.scheduler.changeStatus(999, "started", self.node1.id), NotFound)
        self.failureResultOf(self.scheduler.changeStatus("x", "started", self.node1.id), NotFound)

    def test_deleteCancelsAndAborts(self) -> None:
        """
        One delete cancels what no node has, aborts what a node has, archives the experiment.
        """
        a = self.book(nodes=["1", "2"], nodecount=2, start=NOW + 100)
        self.successResultOf(self.scheduler.heartbeat(self.node1.id, "1"))
        result = self.successResultOf(self.scheduler.deleteExperiment(a.experiment.id, self.alice.id))
        self.assertEqual((result.canceled, result.aborted, result.archived), (1, 1, True))
        statuses = {s.nodeid: s.status for s in self.inTxn(lambda txn: txn.schedulesOfExperiment(a.experiment.id))}
        self.assertEqual(statuses, {"1": "aborted", "2": "canceled"})
        self.failureResultOf(self.scheduler.deleteExperiment(a.experiment.id, self.alice.id), NotFound)

    def test_deleteOnlyOwnerOrAdmin(self) -> None:
        """
        Another user may not delete; an admin may.
        """
        a = self.book(start=NOW + 100)
        self.failureResultOf(self.scheduler.deleteExperiment(a.experiment.id, self.bob.id), Forbidden)
        self.failureResultOf(self.scheduler.deleteExperiment(a.experiment.id, self.node1.id), Forbidden)
        self.successResultOf(self.scheduler.deleteExperiment(a.experiment.id, self.admin.id))

    def test_renew(self) -> None:
        """
        Renewal extends into free time, charges it, and stops at the next booking.
        """
        a = self.book(nodes=["1"], start=NOW + 100, duration=600)
        self.book(nodes=["1"], start=NOW + 2000, duration=600)
        renewed = self.successResultOf(
            self.store.transact(lifecycle.renew, a.schedules, NOW + 1880, self.alice, NOW, self.policy))
        self.assertEqual(renewed[0].stop, NOW + 1880)
        self.failureResultOf(
            self.store.transact(lifecycle.renew, a.schedules, NOW + 1881, self.alice, NOW, self.policy), Conflict)
        self.failureResultOf(
            self.store.transact(lifecycle.renew, a.schedules, NOW + 1800, self.bob, NOW, self.policy), Forbidden)

    def test_expireAllocations(self) -> None:
        """
        Unprovisioned allocations are canceled after the allocation expiry and free their window.
        """
        self.book(nodes=["1"], start=NOW + 1000, allocateOnly=True)
        self.assertEqual(self.successResultOf(self.scheduler.expireAllocations()), 0)
        self.clock.advance(self.policy.allocationExpiry + 1)
        self.assertEqual(self.successResultOf(self.scheduler.expireAllocations()), 1)
        self.assertEqual(self.blocking(), [])

    def test_subscribersNotified(self) -> None:
        """
        Changes reach the event stream's subscribers (the GENI advertisement
        cache is one); reads do not.
        """
        calls = []
        self.scheduler.events.subscribe(calls.append)
        self.book(start=NOW + 100)
        self.successResultOf(self.scheduler.find(duration=60))
        self.assertEqual([e.kind for e in calls], ["booking.made"])


class MergeTests(CoreTestCase):
    """
    Merging two of one's own experiments.
    """

    def test_merge(self) -> None:
        a = self.book(start=NOW + 100)
        b = self.book(start=NOW + 2000)
        moved = self.successResultOf(self.scheduler.mergeExperiments(a.experiment.id, b.experiment.id, self.alice.id, "both"))
        self.assertEqual(moved, (1, a.experiment.id, b.experiment.id))
        merged = self.inTxn(lambda txn: txn.getExperiment(a.experiment.id))
        self.assertEqual((merged.name, merged.start, merged.stop), ("both", NOW + 100, NOW + 2600))
        self.assertEqual(len(self.inTxn(lambda txn: txn.schedulesOfExperiment(a.experiment.id))), 2)
        self.assertEqual(self.inTxn(lambda txn: txn.getExperiment(b.experiment.id)).status, "archived")

    def test_mergeOnlyOwn(self) -> None:
        a = self.book(start=NOW + 100)
        c = self.successResultOf(self.scheduler.allocate(self.request(ownerid=self.bob.id, start=NOW + 3000)))
        self.failureResultOf(self.scheduler.mergeExperiments(a.experiment.id, c.experiment.id, self.alice.id, None), Forbidden)
