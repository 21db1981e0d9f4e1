"""
The low-priority queue (legacy C{start=-1}, legacy reference §5.5): queued
schedules never block and never show as booked; a heartbeat of the node
places its oldest queued task when the node is free (a real check, not the
legacy first-three-rows look); expiry, deletion and cancellation refund; the
store's queue queries on SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

from am.core import states
from am.core.errors import BadRequest, Conflict, TransitionRefused
from am.core.model import Experiment, Node, Schedule, User
from am.core.policy import MaintenanceWindow, Policy
from tests.core_helpers import NOW, CoreTestCase
from tests.storefixtures import Backend, postgres, store  # noqa: F401 (fixtures)

PADDING = 120


# -- the store, on both databases --------------------------------------------------


def _queue(txn: Any) -> list[Schedule]:
    for nodeid in ("1", "2"):
        txn.putNode(Node(id=nodeid))
    owner = txn.addUser(User(name="o", role="user", fingerprint="0" * 40))
    expid = txn.addExperiment(Experiment(name="q", ownerid=owner, script="img"))
    schedules = [
        Schedule(expid=expid, nodeid="1", start=-1, stop=600, status=states.QUEUED, expires=NOW + 100),
        Schedule(expid=expid, nodeid="2", start=-1, stop=600, status=states.QUEUED, expires=NOW + 50),
        Schedule(expid=expid, nodeid="1", start=-1, stop=900, status=states.QUEUED, expires=NOW + 10),
        Schedule(expid=expid, nodeid="1", start=0, stop=300, status=states.DEFINED),
    ]
    txn.addSchedules(schedules)
    return schedules


def test_storeQueue(store: Backend) -> None:  # noqa: F811
    """
    A node's queued schedules come oldest first; expired ones by C{expires};
    they (start -1) are never blocking nor returned by interval queries,
    however wide, not even once canceled.
    """
    made = store.run(_queue)
    ids = [s.id for s in made]
    assert [s.id for s in store.run(lambda txn: txn.queuedSchedules("1"))] == [ids[0], ids[2]]
    assert [s.id for s in store.run(lambda txn: txn.queuedSchedules("1", 1))] == [ids[0]]
    assert store.run(lambda txn: txn.queuedSchedules("9")) == []

    def both(nodeid, start, stop, queued):
        return store.run(lambda txn: (
            txn.tasksOfNode(nodeid, start, stop, queued),
            (txn.queuedSchedules(nodeid, queued), txn.schedulesOfNode(nodeid, start, stop)),
        ))

    for args in (("1", -2**62, 2**62, 16), ("1", -2**62, 2**62, 1), ("1", 301, 2**62, 16), ("9", 0, 10, 16)):
        combined, apart = both(*args)
        assert combined == apart, args
    assert [[s.id for s in part] for part in both("1", -2**62, 2**62, 16)[0]] == [[ids[0], ids[2]], [ids[3]]]
    assert sorted(s.id for s in store.run(lambda txn: txn.expiredQueue(NOW + 60))) == [ids[1], ids[2]]
    assert store.run(lambda txn: txn.expiredQueue(NOW)) == []
    wide = (-2**62, 2**62)
    assert [i.stop for i in store.run(lambda txn: txn.blockingIntervals(*wide))] == [300]
    assert [s.id for s in store.run(lambda txn: txn.schedulesOverlapping(*wide))] == [ids[3]]
    assert [s.id for s in store.run(lambda txn: txn.schedulesOfNode("1", *wide))] == [ids[3]]
    canceled = made[2]
    canceled.status = states.CANCELED
    store.run(lambda txn: txn.updateSchedule(canceled))
    assert [s.id for s in store.run(lambda txn: txn.schedulesOfNode("1", -10, 2**62))] == [ids[3]]
    # Placed, a queued schedule becomes an ordinary one in every query.
    placed = made[0]
    placed.start, placed.stop, placed.status = NOW, NOW + 600, states.DEFINED
    store.run(lambda txn: txn.updateSchedule(placed))
    assert store.run(lambda txn: txn.queuedSchedules("1")) == []
    assert sorted(i.stop for i in store.run(lambda txn: txn.blockingIntervals(*wide))) == [300, NOW + 600]
    assert [s.id for s in store.reopen().run(lambda txn: txn.expiredQueue(2**62))] == [ids[1]]


# -- the core ------------------------------------------------------------------------


class QueueTestCase(CoreTestCase):
    """
    Five nodes and the node users of nodes 1 and 2.
    """

    def setUp(self) -> None:
        super().setUp()
        self.node1 = self.successResultOf(self.scheduler.addUser(name="Node 1", role="node", fingerprint="1" * 40))
        self.node2 = self.successResultOf(self.scheduler.addUser(name="Node 2", role="node", fingerprint="2" * 40))

    def queue(self, **kwargs: Any):
        kwargs.setdefault("nodes", ["1"])
        return self.book(start=-1, **kwargs)

    def schedules(self, allocation: Any) -> list[Schedule]:
        return self.inTxn(lambda txn: txn.schedulesOfExperiment(allocation.experiment.id))

    def heartbeat(self, user: Any = None, nodeid: str = "1", **kwargs: Any):
        return self.successResultOf(self.scheduler.heartbeat((user or self.node1).id, nodeid, **kwargs))

    def quota(self, kind: str = "time") -> int:
        return self.inTxn(lambda txn: txn.getQuotas(self.alice.id))[kind].current

    def advance(self, seconds: int) -> int:
        self.clock.advance(seconds)
        return int(self.clock.seconds())


class SubmissionTests(QueueTestCase):
    """
    What C{start=-1} books.
    """

    def test_oneQueuedSchedulePerNode(self) -> None:
        """
        One C{queued} schedule per node, without a window (legacy form: start
        -1, stop = duration), expiring at C{until}; the experiment spans now to C{until}; quotas
        are charged once (recurrence ignored).
        """
        until = NOW + 86400
        allocation = self.book(start=-1, nodecount=3, duration=600, traffic=10, storage=20,
                               recurrence="simple", period=1200, until=until)
        self.assertEqual((allocation.intervals, allocation.nodecount), (1, 3))
        queued = self.schedules(allocation)
        self.assertEqual({(s.status, s.start, s.stop, s.expires) for s in queued},
                         {(states.QUEUED, -1, 600, until)})
        self.assertEqual(len({s.nodeid for s in queued}), 3)
        experiment = allocation.experiment
        self.assertEqual((experiment.start, experiment.stop, experiment.recurringUntil), (NOW, until, 0))
        self.assertEqual(experiment.options["queued"], True)
        self.assertNotIn("recurrence", experiment.options)
        self.assertEqual(allocation.charged, {"time": 1800, "data": 30, "storage": 60})
        self.assertEqual(self.quota(), 100 * 86400 - 1800)
        journal = self.inTxn(lambda txn: txn.listJournal(self.alice.id))
        self.assertIn(f"experiment #{experiment.id} queued 3 nodes x 600 s", journal[-1].reason)

    def test_neverBlocksNorShows(self) -> None:
        """
        Queued schedules leave every window free and appear in no listing.
        """
        self.queue(nodes=["1"], duration=3600)
        self.assertEqual(self.blocking(), [])
        self.book(nodes=["1"], start=0, duration=600)
        slots = self.successResultOf(self.scheduler.find(nodes=["1"], duration=600))
        self.assertEqual(slots[0]["start"], NOW + 60 + 600 + PADDING)
        self.assertEqual(len(self.inTxn(lambda txn: txn.schedulesOverlapping(-2**62, 2**62))), 1)

    def test_nodeSelectionIgnoresTimeButNotStatus(self) -> None:
        """
        Any active node matching the filter, however long unheard and however
        busy; never one out of service.
        """
        self.putNode(Node(id="6", heartbeat=0, inventoryTags={"site": "far"}))
        allocation = self.book(start=-1, nodetypes="site:far")
        self.assertEqual([s.nodeid for s in allocation.schedules], ["6"])
        self.successResultOf(self.scheduler.setNodeStatus("6", "disabled"))
        error = self.refused(Conflict, start=-1, nodetypes="site:far")
        self.assertEqual(error.message, "Only 0/1 nodes are available for scheduling this task.")
        self.assertEqual((error.extra["code"], error.extra["available"], error.extra["requested"],
                          error.extra["start"], error.extra["stop"]), ("sc1", 0, 1, -1, 600))
        self.book(nodes=["2"], start=NOW + 60, duration=3600)
        self.assertEqual([s.nodeid for s in self.queue(nodes=["2"]).schedules], ["2"])

    def test_refusals(self) -> None:
        """
        Pairs, GENI allocations, runtimes out of bounds and an expiry in the
        past are refused; a bad C{until} is named.
        """
        self.successResultOf(self.scheduler.setNodePair("1", "2"))
        cases = [
            (dict(nodecount=2, interfaceCount=3), "Node pairs cannot be queued (start=-1)"),
            (dict(nodecount=2, script="a/b|c/d"), "Node pairs cannot be queued (start=-1)"),
            (dict(allocateOnly=True), "The low-priority queue (start=-1) is not available to GENI allocations."),
            (dict(duration=30), "Tasks must run for a minimum of 60 seconds."),
            (dict(duration=90001), "Tasks may not run for more than 90000 seconds."),
            (dict(until=NOW), "The queue expiry (until) must be in the future."),
        ]
        for kwargs, message in cases:
            error = self.refused(Conflict, start=-1, **kwargs)
            self.assertTrue(error.message.startswith(message), (kwargs, error.message))
        self.assertEqual(self.refused(BadRequest, start=-1, until="soon").extra["parameter"], "until")
        error = self.refused(Conflict, start=-2)
        self.assertTrue(error.message.startswith("Tasks may not be scheduled immediately or in the past"))

    def test_untilDefaultsAndClamps(self) -> None:
        """
        Without C{until} the queue keeps a request up to the horizon (legacy:
        dropped within the hour), and never longer.
        """
        horizon = NOW + self.policy.horizon
        for until in (None, "", horizon + 10**6):
            [schedule] = self.queue(until=until).schedules
            self.assertEqual(schedule.expires, horizon, until)

    def test_interfaceCountModes(self) -> None:
        """
        Heads and tails are chosen as for any booking.
        """
        self.successResultOf(self.scheduler.setNodePair("1", "2"))
        chosen = {s.nodeid for s in self.book(start=-1, nodecount=4).schedules}
        self.assertEqual(chosen, {"2", "3", "4", "5"})
        self.refused(Conflict, start=-1, nodecount=5)
        chosen = {s.nodeid for s in self.book(start=-1, nodecount=4, interfaceCount=2).schedules}
        self.assertEqual(chosen, {"1", "3", "4", "5"})

    def test_dryRun(self) -> None:
        """
        A dry run books nothing and charges nothing.
        """
        allocation = self.queue(dryrun=True)
        self.assertEqual(allocation.schedules[0].status, states.QUEUED)
        self.assertEqual(self.inTxn(lambda txn: txn.queuedSchedules("1")), [])
        self.assertEqual(self.quota(), 100 * 86400)


class PlacementTests(QueueTestCase):
    """
    Heartbeats place queued tasks.
    """

    def test_placedAtNowPlusPadding(self) -> None:
        """
        The oldest queued task gets C{[now + 120, now + 120 + duration)} and is
        handed over as an ordinary task (C{requested}); the next one waits
        while the node is busy.
        """
        first = self.queue(duration=600)
        second = self.queue(duration=900)
        now = self.advance(30)
        reply = self.heartbeat()
        [task] = reply.tasks
        self.assertEqual(task.id, first.schedules[0].id)
        self.assertEqual((task.start, task.stop, task.status, task.expires),
                         (now + PADDING, now + PADDING + 600, states.REQUESTED, 0))
        self.assertEqual(self.blocking(), [("1", now + PADDING, now + PADDING + 600)])
        self.advance(60)
        self.assertEqual([t.id for t in self.heartbeat().tasks], [task.id])
        self.assertEqual(self.schedules(second)[0].status, states.QUEUED)
        # The first task ends early: the second is placed at the next heartbeat.
        self.successResultOf(self.scheduler.changeStatus(task.id, "started", self.node1.id))
        self.successResultOf(self.scheduler.changeStatus(task.id, "finished", self.node1.id))
        now = self.advance(10)
        tasks = self.heartbeat().tasks
        placed = [t for t in tasks if t.id == second.schedules[0].id]
        self.assertEqual([(t.start, t.stop) for t in placed], [(now + PADDING, now + PADDING + 900)])

    def test_waitsForABookedWindow(self) -> None:
        """
        A booked window closer than the padding keeps the task queued, however
        many tasks come before it (legacy looked at three rows only); a task
        ending exactly at the padded start of the booking is placed.
        """
        for nodeid in ("1", "2"):
            for k in range(3):
                self.book(nodes=[nodeid], start=NOW + 60, duration=60, shared=True)
            self.book(nodes=[nodeid], start=NOW + 1000, duration=600)
        self.queue(nodes=["1"], duration=761)  # [NOW+120, NOW+881): 881 + 120 > 1000
        self.queue(nodes=["2"], duration=760)  # [NOW+120, NOW+880): 880 + 120 = 1000
        self.heartbeat()
        self.assertEqual(len(self.inTxn(lambda txn: txn.queuedSchedules("1"))), 1)
        tasks = self.heartbeat(self.node2, "2", limit=10).tasks
        self.assertIn((NOW + PADDING, NOW + 880), [(t.start, t.stop) for t in tasks])
        self.assertEqual(self.inTxn(lambda txn: txn.queuedSchedules("2")), [])

    def test_placedTaskAlwaysDelivered(self) -> None:
        """
        With the reply limit full of shared tasks, the placed task still comes.
        """
        for k in range(3):
            self.book(nodes=["1"], start=NOW + 60, duration=3600, shared=True)
        queued = self.queue(duration=600, shared=True)
        tasks = self.heartbeat(limit=3).tasks
        self.assertEqual(len(tasks), 3)
        self.assertIn(queued.schedules[0].id, [t.id for t in tasks])

    def test_notInMaintenance(self) -> None:
        """
        No placement near a maintenance window (padded), nor on a node that
        reports maintenance.
        """
        self.scheduler.policy = Policy(maintenance=(MaintenanceWindow(1800, 3600),))  # 00:30-01:00 UTC
        self.queue(nodes=["1"], duration=1600)  # [NOW+120, NOW+1720): 1720 + 120 > 1800
        self.queue(nodes=["2"], duration=1560)  # [NOW+120, NOW+1680): 1680 + 120 = 1800
        self.heartbeat()
        self.assertEqual(len(self.inTxn(lambda txn: txn.queuedSchedules("1"))), 1)
        self.assertEqual(len(self.heartbeat(self.node2, "2").tasks), 1)
        self.advance(3599)  # the task would start at 01:01:59, within the padding
        self.heartbeat()
        self.assertEqual(len(self.inTxn(lambda txn: txn.queuedSchedules("1"))), 1)
        self.advance(1)
        self.heartbeat(maintenance=True)
        self.assertEqual(len(self.inTxn(lambda txn: txn.queuedSchedules("1"))), 1)
        [task] = self.heartbeat().tasks
        self.assertEqual(task.start, NOW + 3600 + PADDING)

    def test_onlyOwnQueue(self) -> None:
        """
        A heartbeat places only its own node's tasks.
        """
        self.queue(nodes=["2"])
        self.assertEqual(self.heartbeat().tasks, [])
        self.assertEqual(len(self.heartbeat(self.node2, "2").tasks), 1)

    def test_nodeCannotReportQueued(self) -> None:
        """
        A queued task is not the node's yet: no status reports.
        """
        [schedule] = self.queue().schedules
        failure = self.failureResultOf(self.scheduler.changeStatus(schedule.id, "started", self.node1.id),
                                       TransitionRefused)
        self.assertEqual(failure.value.message, "Status queued cannot change to started.")

    def test_sshKeyServedOncePlaced(self) -> None:
        """
        The task's public key is served from placement to the end of its
        window (legacy: expired at once).
        """
        self.queue(options={"ssh": "1"})
        self.assertEqual(self.inTxn(lambda txn: txn.publicKeys(NOW)), [])
        [task] = self.heartbeat().tasks
        self.assertTrue(task.deploymentOptions["_ssh.private"])
        self.assertEqual(self.inTxn(lambda txn: txn.publicKeys(NOW)), [task.deploymentOptions["ssh.public"]])
        self.assertEqual(self.inTxn(lambda txn: txn.publicKeys(task.stop)), [])

    def test_placedTaskRefundsAsAnyOther(self) -> None:
        """
        Once placed, a task ending early is refunded its unused time.
        """
        self.queue(duration=600)
        before = self.quota()
        [task] = self.heartbeat().tasks
        self.advance(PADDING + 100)
        self.successResultOf(self.scheduler.changeStatus(task.id, "started", self.node1.id))
        self.successResultOf(self.scheduler.changeStatus(task.id, "finished", self.node1.id))
        self.assertEqual(self.quota(), before + 500)


class EndTests(QueueTestCase):
    """
    Expiry, deletion and cancellation of queued tasks.
    """

    def test_expiry(self) -> None:
        """
        Once C{until} has passed, the expiry pass cancels the queued tasks,
        refunds them and archives the experiment.
        """
        allocation = self.queue(nodes=["1", "2"], nodecount=2, until=NOW + 1000, traffic=5)
        self.assertEqual(self.successResultOf(self.scheduler.expireAllocations()), 0)
        self.advance(1001)
        self.assertEqual(self.successResultOf(self.scheduler.expireAllocations()), 2)
        self.assertEqual({(s.status, s.reason) for s in self.schedules(allocation)},
                         {(states.CANCELED, "queue expired")})
        self.assertEqual((self.quota(), self.quota("data")), (100 * 86400, 10**11))
        experiment = self.inTxn(lambda txn: txn.getExperiment(allocation.experiment.id))
        self.assertEqual(experiment.status, "archived")
        self.assertEqual(self.successResultOf(self.scheduler.expireAllocations()), 0)

    def test_expiredTaskSkippedByHeartbeat(self) -> None:
        """
        A heartbeat cancels expired tasks on the way to the oldest live one.
        """
        old = self.queue(until=NOW + 100)
        live = self.queue(until=NOW + 10**6)
        now = self.advance(200)
        [task] = self.heartbeat().tasks
        self.assertEqual((task.id, task.start), (live.schedules[0].id, now + PADDING))
        self.assertEqual(self.schedules(old)[0].status, states.CANCELED)
        self.assertEqual(self.inTxn(lambda txn: txn.getExperiment(old.experiment.id)).status, "archived")

    def test_expiryKeepsPartlyPlacedExperiment(self) -> None:
        """
        An experiment with a placed task stays active when its other queued
        task expires.
        """
        allocation = self.queue(nodes=["1", "2"], nodecount=2, until=NOW + 1000)
        self.heartbeat()
        self.advance(1001)
        self.successResultOf(self.scheduler.expireAllocations())
        self.assertEqual(sorted(s.status for s in self.schedules(allocation)), [states.CANCELED, states.REQUESTED])
        self.assertEqual(self.inTxn(lambda txn: txn.getExperiment(allocation.experiment.id)).status, "active")

    def test_deleteCancels(self) -> None:
        """
        Deleting the experiment cancels its queued tasks and refunds them.
        """
        allocation = self.queue(nodes=["1", "2"], nodecount=2)
        deletion = self.successResultOf(self.scheduler.deleteExperiment(allocation.experiment.id, self.alice.id))
        self.assertEqual((deletion.canceled, deletion.aborted, deletion.archived), (2, 0, True))
        self.assertEqual(self.quota(), 100 * 86400)
        self.assertEqual(self.heartbeat().tasks, [])

    def test_ownerCancels(self) -> None:
        """
        The owner may cancel one queued task; nobody may set it to defined.
        """
        [schedule] = self.queue().schedules
        changed = self.successResultOf(self.scheduler.changeStatus(schedule.id, "canceled", self.alice.id))
        self.assertEqual(changed[0].status, states.CANCELED)
        self.assertEqual(self.quota(), 100 * 86400)
        [other] = self.queue().schedules
        self.failureResultOf(self.scheduler.changeStatus(other.id, "defined", self.admin.id), TransitionRefused)

    def test_mergeIgnoresQueuedWindows(self) -> None:
        """
        Merging a queued task into an experiment does not stretch it back to 0.
        """
        from am.core import lifecycle

        booked = self.book(nodes=["2"], start=NOW + 1000)
        queued = self.queue()
        self.successResultOf(self.scheduler.mergeExperiments(booked.experiment.id, queued.experiment.id, self.alice.id, None))
        merged = self.inTxn(lambda txn: txn.getExperiment(booked.experiment.id))
        self.assertEqual((merged.start, merged.stop), (NOW + 1000, NOW + 1600))
