"""
Self-healing bookings (issue 16, item 5): the health record per node
(heartbeat gaps, tasks failed for node reasons, status), the ranking of
eligible nodes, and the heal pass that moves future windows of bookings made
with C{options.heal} off nodes that are down or failing, atomically.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from am.core import health
from am.core.errors import Conflict
from am.core.events import HealFailed, ScheduleMoved
from am.core.model import NODE_MAINTENANCE
from am.core.policy import Policy
from rest_compat.testing import RESTHarness, book, populate
from tests.core_helpers import NOW, CoreTestCase, assertNoOverlap

START = NOW + 3600


class HealthTestCase(CoreTestCase):
    """
    Five nodes heard at NOW; a recorder of the core's events.
    """

    policy = Policy(maintenance=(), healSilence=900, healFailures=2, healWindow=86400, healAhead=86400)

    def setUp(self) -> None:
        super().setUp()
        self.events: list = []
        self.scheduler.events.subscribe(self.events.append)

    def record(self, nodeid: str):
        return self.inTxn(lambda txn: txn.getHealth(nodeid))

    def fail(self, nodeid: str, times: int = 1) -> None:
        for _ in range(times):
            self.inTxn(lambda txn: health.noteFailure(txn, nodeid, int(self.clock.seconds()), self.policy))

    def schedules(self, expid: int):
        return self.inTxn(lambda txn: txn.schedulesOfExperiment(expid))


class RecordTests(HealthTestCase):
    """
    What goes into the record.
    """

    def test_heartbeatGap(self) -> None:
        """
        A node that heartbeats again after a silence longer than
        C{imminent_heartbeat_age} has a gap recorded; regular heartbeats none.
        """
        node = self.successResultOf(self.scheduler.addUser(name="n", role="node", nodeid="1", fingerprint="d" * 40))
        self.successResultOf(self.scheduler.heartbeat(node.id, "1"))
        self.clock.advance(30)
        self.successResultOf(self.scheduler.heartbeat(node.id, "1"))
        self.assertEqual(self.record("1").gaps, 0)
        self.clock.advance(self.policy.imminentHeartbeatAge + 1)
        self.successResultOf(self.scheduler.heartbeat(node.id, "1"))
        self.assertEqual((self.record("1").gaps, self.record("1").lastGap), (1, int(self.clock.seconds())))

    def test_sweepFailureRecorded(self) -> None:
        """
        A task no node deployed counts as a failure of its node.
        """
        booked = self.book(start=NOW + 600, nodes=["3"])
        self.clock.advance(2000)
        self.successResultOf(self.scheduler.sweep())
        self.assertEqual(self.schedules(booked.experiment.id)[0].status, "failed")
        self.assertEqual(self.record("3").failures, 1)
        self.assertEqual(self.record("2").failures, 0)

    def test_countsExpire(self) -> None:
        """
        Failures older than C{heal_window} count nothing, and a new one
        starts the count again.
        """
        self.fail("1", 3)
        node = self.inTxn(lambda txn: txn.getNode("1"))
        self.assertEqual(health.assess(node, self.record("1"), NOW, self.policy).failures, 3)
        later = NOW + self.policy.healWindow + 1
        self.assertEqual(health.assess(node, self.record("1"), later, self.policy).failures, 0)
        self.clock.advance(self.policy.healWindow + 1)
        self.fail("1")
        self.assertEqual(self.record("1").failures, 1)

    def test_assessment(self) -> None:
        """
        Down (status, silence) or failing (enough recent failures) is unhealthy.
        """
        node = self.inTxn(lambda txn: txn.getNode("1"))
        self.assertTrue(health.assess(node, None, NOW, self.policy).healthy)
        self.assertIn("silent", health.assess(node, None, NOW + 901, self.policy).why)
        self.fail("1", 2)
        self.assertIn("failing", health.assess(node, self.record("1"), NOW, self.policy).why)
        self.successResultOf(self.scheduler.setNodeStatus("2", NODE_MAINTENANCE))
        node2 = self.inTxn(lambda txn: txn.getNode("2"))
        self.assertEqual(health.assess(node2, None, NOW, self.policy).why, "in status maintenance")


class RankingTests(HealthTestCase):
    """
    Unbound requests prefer healthy nodes.
    """

    def test_healthyFirst(self) -> None:
        """
        With equal heartbeats nodes go by id; a node with recent failures or
        gaps goes after the others, the fewer the better.
        """
        self.assertEqual(self.book(start=START).schedules[0].nodeid, "1")
        self.fail("2", 2)
        self.fail("3", 1)
        chosen = self.book(start=START + 7200, nodecount=4).schedules
        self.assertEqual([s.nodeid for s in chosen], ["1", "4", "5", "3"])
        found = self.successResultOf(self.scheduler.find(nodecount=1, duration=600, start=START + 20000))
        self.assertEqual(found[0]["nodecount"], 1)


class HealTests(HealthTestCase):
    """
    L{am.core.scheduler.Scheduler.heal}.
    """

    def healing(self, **kwargs):
        values = dict(start=START, heal=True)
        values.update(kwargs)
        return self.book(**values)

    def test_movesOffNodeInMaintenance(self) -> None:
        """
        A window on a node put in maintenance moves to the best healthy free
        node matching the filter: same window, one event, the reason shown.
        """
        booked = self.healing()
        self.assertEqual(booked.experiment.options["heal"], True)
        self.assertEqual(booked.schedules[0].nodeid, "1")
        self.successResultOf(self.scheduler.setNodeStatus("1", NODE_MAINTENANCE))
        done = self.successResultOf(self.scheduler.heal())
        self.assertEqual((done.moved, done.stranded), (1, 0))
        [schedule] = self.schedules(booked.experiment.id)
        self.assertEqual((schedule.nodeid, schedule.start, schedule.status), ("2", START, "defined"))
        self.assertEqual(schedule.statusText, "defined; moved from node 1 (in status maintenance)")
        [moved] = [e for e in self.events if isinstance(e, ScheduleMoved)]
        self.assertEqual((moved.actor, moved.oldNodeid, moved.nodeid, moved.ownerid), ("scheduler", "1", "2",
                                                                                         self.alice.id))
        self.assertEqual(self.successResultOf(self.scheduler.heal()).moved, 0)

    def test_failingNodeAvoided(self) -> None:
        """
        A node with C{heal_failures} recent failures is failing: the window
        leaves it, and never for another failing node.
        """
        booked = self.healing()
        self.fail("1", 2)
        self.fail("2", 2)
        self.successResultOf(self.scheduler.heal())
        self.assertEqual(self.schedules(booked.experiment.id)[0].nodeid, "3")

    def test_silentNode(self) -> None:
        """
        A node silent for C{heal_silence} is down; nodes still heard are not.
        """
        booked = self.healing()
        self.clock.advance(1000)
        now = int(self.clock.seconds())
        self.inTxn(lambda txn: [txn.setHeartbeat(n, now, None, None) for n in ("2", "3", "4", "5")])
        self.assertEqual(self.successResultOf(self.scheduler.heal()).moved, 1)
        self.assertEqual(self.schedules(booked.experiment.id)[0].nodeid, "2")

    def test_noFreeNodeTellsOwnerOnce(self) -> None:
        """
        When every healthy node is busy the window stays, its status text
        says why, and one HealFailed event is emitted, not one per pass.
        """
        booked = self.healing()
        self.book(ownerid=self.bob.id, start=START, nodecount=4)
        self.successResultOf(self.scheduler.setNodeStatus("1", NODE_MAINTENANCE))
        for _ in range(2):
            done = self.successResultOf(self.scheduler.heal())
            self.assertEqual(done.moved, 0)
        [schedule] = self.schedules(booked.experiment.id)
        self.assertEqual(schedule.nodeid, "1")
        self.assertIn("node 1 is in status maintenance; no healthy node", schedule.statusText)
        [told] = [e for e in self.events if isinstance(e, HealFailed)]
        self.assertEqual((told.schedid, told.ownerid, told.nodeid), (schedule.id, self.alice.id, "1"))

    def test_atomicNoDoubleBooking(self) -> None:
        """
        Two healing windows on a failed node and one free healthy node: one
        pass moves one and strands the other; nothing overlaps.
        """
        first = self.healing(nodes=None, nodecount=1)
        second = self.healing(start=START + 100, nodecount=1)
        self.assertEqual({first.schedules[0].nodeid, second.schedules[0].nodeid}, {"1", "2"})
        self.book(ownerid=self.bob.id, start=START, nodecount=2, nodetypes="")  # nodes 3 and 4
        self.successResultOf(self.scheduler.setNodeStatus("1", NODE_MAINTENANCE))
        self.successResultOf(self.scheduler.setNodeStatus("2", NODE_MAINTENANCE))
        done = self.successResultOf(self.scheduler.heal())
        self.assertEqual((done.moved, done.stranded), (1, 1))
        assertNoOverlap(self.blocking(), self.policy.padding)

    def test_neverMovesFetchedOrOptedOut(self) -> None:
        """
        A task its node has fetched stays (a node may be running it), and so
        does a booking that did not opt in.
        """
        fetched = self.healing()
        other = self.book(start=START + 7200)
        node = self.successResultOf(self.scheduler.addUser(name="n", role="node", nodeid="1", fingerprint="d" * 40))
        self.successResultOf(self.scheduler.heartbeat(node.id, "1"))
        self.assertEqual(self.schedules(fetched.experiment.id)[0].status, "requested")
        self.successResultOf(self.scheduler.setNodeStatus("1", NODE_MAINTENANCE))
        self.assertEqual(self.successResultOf(self.scheduler.heal()).moved, 0)
        self.assertEqual(self.schedules(fetched.experiment.id)[0].nodeid, "1")
        self.assertEqual(self.schedules(other.experiment.id)[0].nodeid, "1")

    def test_namedNodesRefused(self) -> None:
        """
        A booking that names its nodes cannot opt in.
        """
        error = self.refused(Conflict, start=START, nodes=["1"], heal=True)
        self.assertIn("options.heal", error.message)


class RESTHealTests(SynchronousTestCase):
    """
    C{options.heal} over REST.
    """

    def test_option(self) -> None:
        """
        The option is kept with the scheduling options, not sent to the node.
        """
        h = RESTHarness(nodes=3, policy=Policy(maintenance=(), requireHeartbeat=False))
        people = populate(h)
        expid = book(h, people.alice, options={"heal": True, "x": 1})
        body = h.request("GET", f"/v1/experiments/{expid}", people.alice).json
        self.assertIs(body["options"]["heal"], True)
        [schedule] = h.run(lambda txn: txn.schedulesOfExperiment(expid))
        self.assertNotIn("heal", schedule.deploymentOptions)
