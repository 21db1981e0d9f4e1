"""
The core's event stream: one typed event per committed change, delivered
after commit only, and subscribers that can neither break nor slow a command.
"""

from __future__ import annotations

import json
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed

from am.core import events, lifecycle, states
from am.core.errors import BadRequest, Conflict
from am.core.events import (
    BookingMade,
    BookingRefused,
    ExperimentArchived,
    NodeHeard,
    NodeStatusChanged,
    NodeUpdated,
    ScheduleStatusChanged,
)
from am.core.scheduler import Scheduler
from tests.core_helpers import NOW, CoreTestCase


class HeldStore:
    """
    A store whose transactions run at once but whose Deferreds fire only when
    the test says: the time between commit and the reactor hearing of it.
    """

    def __init__(self, store: Any) -> None:
        self.store = store
        self.held: list[tuple[Deferred, Any]] = []

    def transact(self, function: Any, *args: Any, **kwargs: Any) -> Deferred:
        result = self.store.run(function, *args, **kwargs)
        d: Deferred = Deferred()
        self.held.append((d, result))
        return d

    def read(self, function: Any, *args: Any, **kwargs: Any) -> Deferred:
        return self.store.read(function, *args, **kwargs)

    def release(self) -> None:
        for d, result in self.held:
            d.callback(result)
        self.held = []


class EventTests(CoreTestCase):
    """
    What the commands emit.
    """

    def setUp(self) -> None:
        super().setUp()
        self.node1 = self.successResultOf(self.scheduler.addUser(name="Node 1", role="node", fingerprint="1" * 40))
        self.seen: list[events.Event] = []
        self.scheduler.events.subscribe(self.seen.append)

    def kinds(self) -> list[str]:
        return [e.kind for e in self.seen]

    def test_bookingMade(self) -> None:
        """
        A booking is one event naming the experiment, its schedules and nodes.
        """
        booked = self.book(nodes=["1", "2"], nodecount=2, start=NOW + 100)
        [event] = self.seen
        self.assertIsInstance(event, BookingMade)
        self.assertEqual(
            (event.expid, event.ownerid, event.schedids, event.nodeids, event.status, event.start, event.time),
            (booked.experiment.id, self.alice.id, tuple(s.id for s in booked.schedules), ("1", "2"),
             states.DEFINED, NOW + 100, NOW),
        )

    def test_dryRunEmitsNothing(self) -> None:
        """
        A dry run books nothing and says nothing.
        """
        self.successResultOf(self.scheduler.allocate(self.request(start=NOW + 100, dryrun=True)))
        self.assertEqual(self.seen, [])

    def test_bookingRefused(self) -> None:
        """
        A request that cannot be satisfied is a refusal event; a malformed one is not.
        """
        self.refused(Conflict, nodecount=50, start=NOW + 100)
        [event] = self.seen
        self.assertIsInstance(event, BookingRefused)
        self.assertEqual((event.ownerid, event.name, event.time), (self.alice.id, "exp", NOW))
        self.assertIn("nodes are available", event.reason)
        self.refused(BadRequest, nodecount="many")
        self.assertEqual(len(self.seen), 1)

    def test_statusReport(self) -> None:
        """
        A node's report is one status event with old and new status, actor and reason.
        """
        booked = self.book(nodes=["1"], start=NOW + 100)
        sid = booked.schedules[0].id
        del self.seen[:]
        self.successResultOf(self.scheduler.changeStatus(sid, "deployed; image pulled", self.node1.id))
        [event] = self.seen
        self.assertEqual(
            event,
            ScheduleStatusChanged(
                time=NOW, actor="node", reason="image pulled", schedid=sid, expid=booked.experiment.id,
                ownerid=self.alice.id, nodeid="1", old=states.DEFINED, new=states.DEPLOYED,
            ),
        )
        # A harmless repeat changes nothing and says nothing.
        self.successResultOf(self.scheduler.changeStatus(sid, "deployed", self.node1.id))
        self.assertEqual(len(self.seen), 1)

    def test_deleteCancelsAndArchives(self) -> None:
        """
        Deleting an experiment: one event per schedule ended, then the archive.
        """
        booked = self.book(nodes=["1", "2"], nodecount=2, start=NOW + 100)
        del self.seen[:]
        self.successResultOf(self.scheduler.deleteExperiment(booked.experiment.id, self.alice.id))
        self.assertEqual(self.kinds(), ["schedule.status", "schedule.status", "experiment.archived"])
        self.assertEqual({(e.old, e.new, e.actor) for e in self.seen[:2]}, {("defined", "canceled", "owner")})
        archived = self.seen[2]
        self.assertIsInstance(archived, ExperimentArchived)
        self.assertEqual((archived.expid, archived.old, archived.new), (booked.experiment.id, "active", "archived"))

    def test_heartbeat(self) -> None:
        """
        A heartbeat: the tasks it hands out become requested; maintenance mode
        is a node status change; a node heard again after a silence says so.
        """
        booked = self.book(nodes=["1"], start=NOW + 100)
        del self.seen[:]
        self.clock.advance(self.policy.imminentHeartbeatAge + 1)
        self.successResultOf(self.scheduler.heartbeat(self.node1.id, "1", maintenance=True))
        byKind = {e.kind: e for e in self.seen}
        self.assertEqual(sorted(byKind), ["node.heard", "node.status", "schedule.status"])
        self.assertEqual((byKind["node.status"].old, byKind["node.status"].new), ("active", "maintenance"))
        self.assertEqual(byKind["node.heard"], NodeHeard(
            time=self.scheduler.now(), actor="node", reason="heartbeat", nodeid="1", previous=NOW))
        self.assertEqual((byKind["schedule.status"].schedid, byKind["schedule.status"].new),
                         (booked.schedules[0].id, "requested"))
        del self.seen[:]
        self.successResultOf(self.scheduler.heartbeat(self.node1.id, "1", maintenance=True))
        self.assertEqual(self.seen, [])

    def test_adminAndInventory(self) -> None:
        """
        Node changes by an admin and by the inventory, new nodes included.
        """
        self.successResultOf(self.scheduler.setNodeStatus("2", "disabled"))
        self.successResultOf(self.scheduler.setNodeTags("2", "site:x"))
        self.assertEqual(self.seen, [
            NodeStatusChanged(time=NOW, actor="admin", reason="set by an admin", nodeid="2",
                              old="active", new="disabled"),
            NodeUpdated(time=NOW, actor="admin", reason="admin tags", nodeid="2", fields=("adminTags",)),
        ])
        del self.seen[:]
        entries = [{"id": str(i), "status": "active"} for i in range(1, 6) if i != 3] + [{"id": "9"}]
        self.successResultOf(self.scheduler.applyInventory(entries))
        changes = sorted((e.nodeid, e.old, e.new, e.actor) for e in self.seen if e.kind == "node.status")
        self.assertEqual(changes, [
            ("2", "disabled", "active", "inventory"),
            ("3", "active", "missing", "inventory"),
            ("9", None, "active", "inventory"),
        ])

    def test_asDict(self) -> None:
        """
        Every event serialises to JSON with its kind.
        """
        booked = self.book(nodes=["1"], start=NOW + 100)
        self.successResultOf(self.scheduler.deleteExperiment(booked.experiment.id, self.alice.id))
        for event in self.seen:
            data = json.loads(json.dumps(event.asDict()))
            self.assertEqual(data["kind"], event.kind)
            self.assertEqual(data["time"], NOW)


class DeliveryTests(CoreTestCase):
    """
    When and how events reach subscribers.
    """

    def test_afterCommitOnly(self) -> None:
        """
        Nothing is delivered before the store reports the commit.
        """
        held = HeldStore(self.store)
        scheduler = Scheduler(held, self.clock, self.policy)
        seen: list[events.Event] = []
        scheduler.events.subscribe(seen.append)
        d = scheduler.allocate(self.request(start=NOW + 100))
        self.assertEqual(seen, [])
        self.assertNoResult(d)
        held.release()
        self.successResultOf(d)
        self.assertEqual([e.kind for e in seen], ["booking.made"])

    def test_failedTransactionEmitsNothing(self) -> None:
        """
        A command that fails after changing statuses rolls back and says nothing.
        """
        booked = self.book(start=NOW + 100)
        seen: list[events.Event] = []
        self.scheduler.events.subscribe(seen.append)

        def deleteThenFail(txn: Any) -> None:
            lifecycle.deleteExperiment(txn, booked.experiment.id, self.alice, NOW, self.policy)
            raise Conflict("no")

        self.failureResultOf(self.scheduler._change(deleteThenFail), Conflict)
        self.assertEqual(seen, [])
        self.assertEqual(self.inTxn(lambda txn: txn.getSchedule(booked.schedules[0].id)).status, states.DEFINED)

    def test_raisingSubscriber(self) -> None:
        """
        A subscriber that raises is logged; the command succeeds and later
        subscribers still get the event.
        """
        seen: list[events.Event] = []

        def broken(event: events.Event) -> None:
            raise RuntimeError("subscriber bug")

        self.scheduler.events.subscribe(broken)
        self.scheduler.events.subscribe(seen.append)
        booked = self.book(start=NOW + 100)
        self.assertEqual(booked.experiment.status, "active")
        self.assertEqual(len(seen), 1)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_deferredSubscriber(self) -> None:
        """
        A subscriber's Deferred is never waited for; its failure is logged.
        """
        pending: Deferred = Deferred()
        self.scheduler.events.subscribe(lambda event: pending)
        self.scheduler.events.subscribe(lambda event: fail(RuntimeError("later")))
        self.scheduler.events.subscribe(lambda event: succeed(None))
        self.book(start=NOW + 100)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)

    def test_unsubscribe(self) -> None:
        """
        An unsubscribed callable hears nothing more.
        """
        seen: list[events.Event] = []
        stop = self.scheduler.events.subscribe(seen.append)
        self.book(start=NOW + 100)
        stop()
        stop()
        self.book(start=NOW + 2000)
        self.assertEqual(len(seen), 1)

    def test_bareTransaction(self) -> None:
        """
        Rules run straight on a store (no scheduler) work; their events have no
        subscribers, and before-commit work runs at once.
        """
        done = []
        self.inTxn(lambda txn: events.emit(txn, NodeHeard(time=0, actor="node", nodeid="1", previous=0)))
        self.inTxn(lambda txn: events.beforeCommit(txn, "k", lambda: done.append(1)))
        self.assertEqual(done, [1])
