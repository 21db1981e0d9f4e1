"""
Per-occurrence control of recurring bookings (issue 16, item 3): the core
commands (cancel one, cancel from a date on, move on the same nodes or the
same filter), the REST routes and what the GENI face shows.
"""

from __future__ import annotations

from am.core.errors import BadRequest, Conflict, Forbidden, NotFound
from am.core.events import ScheduleMoved
from am.core.policy import Policy
from am.core.series import group, occurrenceOf
from rest_compat.testing import RESTHarness, book, populate
from rspec.times import formatTime
from tests.core_helpers import NOW, CoreTestCase, assertNoOverlap
from tests.geni_helpers import GeniTestCase, requestRSpec
from tests.trust_helpers import NOW as GENI_NOW

HOUR = 3600
START = NOW + HOUR


class SeriesTestCase(CoreTestCase):
    """
    Alice books 2 nodes of a filter for 600 s every hour, four times.
    """

    policy = Policy(maintenance=(), padding=120)

    def setUp(self) -> None:
        super().setUp()
        self.events: list = []
        self.scheduler.events.subscribe(self.events.append)
        self.booked = self.book(nodecount=2, duration=600, start=START, recurrence="simple", period=HOUR,
                                until=START + 3 * HOUR + 10)
        self.expid = self.booked.experiment.id

    def occurrences(self):
        experiment = self.inTxn(lambda txn: txn.getExperiment(self.expid))
        return group(experiment, self.inTxn(lambda txn: txn.schedulesOfExperiment(self.expid)))

    def quota(self) -> int:
        return self.inTxn(lambda txn: txn.getQuotas(self.alice.id))["time"].current


class GroupTests(SeriesTestCase):
    """
    L{am.core.series.group}.
    """

    def test_grouped(self) -> None:
        """
        Four occurrences of two schedules each, at their nominal starts.
        """
        found = self.occurrences()
        self.assertEqual([(o.index, o.nominal, o.start, len(o.schedules), o.status) for o in found],
                         [(k, START + k * HOUR, START + k * HOUR, 2, "defined") for k in range(4)])
        self.assertFalse(any(o.moved for o in found))


class CancelTests(SeriesTestCase):
    """
    L{am.core.scheduler.Scheduler.cancelOccurrences}.
    """

    def test_cancelOne(self) -> None:
        """
        Cancelling occurrence 1 cancels its two schedules and refunds them in
        full; the others stay, and so does the experiment.
        """
        before = self.quota()
        done = self.successResultOf(self.scheduler.cancelOccurrences(self.expid, self.alice.id, occurrence=1))
        self.assertEqual((done.occurrences, done.canceled, done.aborted, done.archived), ([1], 2, 0, False))
        self.assertEqual([o.status for o in self.occurrences()], ["defined", "canceled", "defined", "defined"])
        self.assertEqual(self.quota(), before + 1200)
        self.assertEqual(len(self.blocking()), 6)
        again = self.failureResultOf(self.scheduler.cancelOccurrences(self.expid, self.alice.id, occurrence=1))
        self.assertIsInstance(again.value, Conflict)
        self.failureResultOf(self.scheduler.cancelOccurrences(self.expid, self.alice.id, occurrence=9), NotFound)

    def test_cancelFrom(self) -> None:
        """
        Cancelling from the start of occurrence 2 on cancels 2 and 3;
        cancelling the rest archives the experiment.
        """
        done = self.successResultOf(
            self.scheduler.cancelOccurrences(self.expid, self.alice.id, since=START + 2 * HOUR))
        self.assertEqual((done.occurrences, done.canceled, done.archived), ([2, 3], 4, False))
        self.assertEqual([o.status for o in self.occurrences()], ["defined", "defined", "canceled", "canceled"])
        done = self.successResultOf(self.scheduler.cancelOccurrences(self.expid, self.alice.id, since=0))
        self.assertEqual((done.occurrences, done.archived), ([0, 1], True))
        self.assertEqual(self.inTxn(lambda txn: txn.getExperiment(self.expid)).status, "archived")

    def test_reachedNodeAborted(self) -> None:
        """
        An occurrence a node has fetched is aborted (it never ran: refunded
        in full), not canceled.
        """
        node = self.successResultOf(self.scheduler.addUser(name="n", role="node", nodeid="1", fingerprint="d" * 40))
        nodeids = {s.nodeid for s in self.occurrences()[0].schedules}
        if "1" not in nodeids:
            node = self.successResultOf(self.scheduler.addUser(
                name="m", role="node", nodeid=sorted(nodeids)[0], fingerprint="e" * 40))
        self.successResultOf(self.scheduler.heartbeat(node.id, node.nodeid))
        before = self.quota()
        done = self.successResultOf(self.scheduler.cancelOccurrences(self.expid, self.alice.id, occurrence=0))
        self.assertEqual((done.canceled, done.aborted), (1, 1))
        self.assertEqual(self.quota(), before + 1200)

    def test_rules(self) -> None:
        """
        Only the owner or an admin; one of occurrence and from; a one-off
        booking has no occurrences to cancel.
        """
        self.failureResultOf(self.scheduler.cancelOccurrences(self.expid, self.bob.id, occurrence=0), Forbidden)
        self.successResultOf(self.scheduler.cancelOccurrences(self.expid, self.admin.id, occurrence=0))
        self.failureResultOf(self.scheduler.cancelOccurrences(self.expid, self.alice.id), BadRequest)
        self.failureResultOf(
            self.scheduler.cancelOccurrences(self.expid, self.alice.id, occurrence=1, since=0), BadRequest)
        single = self.book(start=START, nodes=["5"]).experiment.id
        failure = self.failureResultOf(self.scheduler.cancelOccurrences(single, self.alice.id, occurrence=0))
        self.assertIsInstance(failure.value, Conflict)
        self.assertIn("not a recurring booking", failure.value.message)


class MoveTests(SeriesTestCase):
    """
    L{am.core.scheduler.Scheduler.moveOccurrence}.
    """

    def test_sameNodes(self) -> None:
        """
        Occurrence 1 moves 30 minutes later on its nodes: one event per
        schedule, no charge, still occurrence 1, listed as moved.
        """
        before = self.quota()
        old = self.occurrences()[1]
        moved = self.successResultOf(
            self.scheduler.moveOccurrence(self.expid, 1, self.alice.id, START + HOUR + 1800, "nodes"))
        self.assertEqual((moved.index, moved.start, moved.stop, moved.moved), (1, START + HOUR + 1800,
                                                                              START + HOUR + 2400, True))
        self.assertEqual(sorted(s.nodeid for s in moved.schedules), sorted(s.nodeid for s in old.schedules))
        self.assertEqual(self.quota(), before)
        events = [e for e in self.events if isinstance(e, ScheduleMoved)]
        self.assertEqual(sorted(e.schedid for e in events), sorted(s.id for s in old.schedules))
        self.assertEqual({(e.oldStart, e.start, e.ownerid) for e in events},
                         {(START + HOUR, START + HOUR + 1800, self.alice.id)})
        experiment = self.inTxn(lambda txn: txn.getExperiment(self.expid))
        self.assertEqual({occurrenceOf(s, experiment) for s in moved.schedules}, {1})
        assertNoOverlap(self.blocking(), 120)

    def test_busyRefused(self) -> None:
        """
        A window on which one of the nodes is booked (padding included) is
        refused and nothing moves; a window too close to the next occurrence
        on the same nodes too.
        """
        nodes = sorted(s.nodeid for s in self.occurrences()[1].schedules)
        self.successResultOf(self.scheduler.allocate(self.request(
            ownerid=self.bob.id, nodes=[nodes[0]], start=START + HOUR + 1800, duration=600)))
        for start in (START + HOUR + 1800, START + 2 * HOUR - 600):
            failure = self.failureResultOf(
                self.scheduler.moveOccurrence(self.expid, 1, self.alice.id, start, "nodes"))
            self.assertIsInstance(failure.value, Conflict)
        self.assertEqual(self.occurrences()[1].start, START + HOUR)
        self.assertFalse(any(isinstance(e, ScheduleMoved) for e in self.events))

    def test_sameFilter(self) -> None:
        """
        With placement C{filter} the occurrence keeps a free node of its own
        and takes another free one matching the filter for the busy one.
        """
        nodes = sorted(s.nodeid for s in self.occurrences()[1].schedules)
        target = START + HOUR + 1800
        self.successResultOf(self.scheduler.allocate(self.request(
            ownerid=self.bob.id, nodes=[nodes[0]], start=target, duration=600)))
        moved = self.successResultOf(self.scheduler.moveOccurrence(self.expid, 1, self.alice.id, target, "filter"))
        placed = sorted(s.nodeid for s in moved.schedules)
        self.assertNotIn(nodes[0], placed)
        self.assertIn(nodes[1], placed)
        self.assertEqual({s.start for s in moved.schedules}, {target})
        assertNoOverlap(self.blocking(), 120)

    def test_windowRules(self) -> None:
        """
        The booking rules hold: not in the past, not beyond the horizon, a
        known placement; a task its node has fetched does not move.
        """
        for start in (NOW, NOW + self.policy.horizon + 10):
            self.failureResultOf(self.scheduler.moveOccurrence(self.expid, 1, self.alice.id, start, "nodes"), Conflict)
        self.failureResultOf(self.scheduler.moveOccurrence(self.expid, 1, self.alice.id, START, "where"), BadRequest)
        nodeid = self.occurrences()[0].schedules[0].nodeid
        node = self.successResultOf(self.scheduler.addUser(name="n", role="node", nodeid=nodeid, fingerprint="d" * 40))
        self.successResultOf(self.scheduler.heartbeat(node.id, nodeid))
        failure = self.failureResultOf(
            self.scheduler.moveOccurrence(self.expid, 0, self.alice.id, START + 1800, "nodes"), Conflict)
        self.assertIn("reached its node", failure.value.message)


class RESTOccurrenceTests(CoreTestCase):
    """
    The routes, each response checked against the OpenAPI document.
    """

    def setUp(self) -> None:
        self.h = RESTHarness(nodes=3, policy=Policy(maintenance=(), requireHeartbeat=False))
        self.people = populate(self.h)
        self.now = int(self.h.clock.seconds())
        self.start = self.now + HOUR
        self.expid = book(self.h, self.people.alice, nodecount=1, start=self.start, duration=600,
                          options={"recurrence": "simple", "period": HOUR, "until": self.start + 3 * HOUR + 10})
        self.base = f"/v1/experiments/{self.expid}/occurrences"

    def test_listAndOne(self) -> None:
        """
        The series lists its occurrences; one occurrence reads alone; others
        than the owner and admins are refused; an unknown one is 404.
        """
        response = self.h.request("GET", self.base, self.people.alice)
        self.assertEqual(response.code, 200, response.body)
        self.assertEqual(response.json["period"], HOUR)
        self.assertEqual([o["occurrence"] for o in response.json["occurrences"]], [0, 1, 2, 3])
        response = self.h.request("GET", f"{self.base}/2", self.people.admin)
        self.assertEqual((response.code, response.json["start"]), (200, self.start + 2 * HOUR))
        self.assertEqual(self.h.request("GET", f"{self.base}/2", self.people.bob).code, 403)
        self.assertEqual(self.h.request("GET", f"{self.base}/7", self.people.alice).code, 404)
        self.assertEqual(self.h.request("GET", f"{self.base}/x", self.people.alice).code, 404)

    def test_cancelAndMove(self) -> None:
        """
        DELETE one, DELETE from a date, PUT a new start; each shows in the listing.
        """
        response = self.h.request("DELETE", f"{self.base}/1", self.people.alice)
        self.assertEqual((response.code, response.json["occurrences"], response.json["canceled"]), (200, [1], 1))
        response = self.h.request("PUT", f"{self.base}/0", self.people.alice,
                                  json_={"start": self.start + 1800, "placement": "filter"})
        self.assertEqual(response.code, 200, response.body)
        self.assertEqual((response.json["start"], response.json["moved"]), (self.start + 1800, True))
        response = self.h.request("DELETE", f"{self.base}?from={self.start + 3 * HOUR}", self.people.alice)
        self.assertEqual((response.code, response.json["occurrences"]), (200, [3]))
        listing = self.h.request("GET", self.base, self.people.alice).json["occurrences"]
        self.assertEqual([o["status"] for o in listing], ["defined", "canceled", "defined", "canceled"])

    def test_refusals(self) -> None:
        """
        Missing parameters are 400, a busy window 409, another user 403.
        """
        self.assertEqual(self.h.request("DELETE", self.base, self.people.alice).code, 400)
        self.assertEqual(self.h.request("PUT", f"{self.base}/1", self.people.alice, json_={}).code, 400)
        self.assertEqual(self.h.request("PUT", f"{self.base}/1", self.people.alice,
                                        json_={"start": self.start}).code, 409)
        self.assertEqual(self.h.request("DELETE", f"{self.base}/1", self.people.bob).code, 403)
        self.assertEqual(self.h.request("DELETE", f"{self.base}/1", self.people.node1).code, 403)


class GeniOccurrenceTests(GeniTestCase):
    """
    The GENI face shows what per-occurrence control did.
    """

    def test_cancelledSliversGone(self) -> None:
        """
        After occurrence 1 of a recurring slice is canceled, its sliver is
        gone (SEARCHFAILED) and the slice lists the others; a moved one
        shows its new window.
        """
        start = int(GENI_NOW) + 3600
        rspec = requestRSpec(["1"], start, start + 600).replace(
            "</rspec>", f'<marvin:recurrence scheme="simple" period="3600" until="{formatTime(start + 3 * 3600)}"/></rspec>')
        value = self.ok("Allocate", self.s1, self.sliceCred(), rspec, {})
        urns = [s["geni_sliver_urn"] for s in value["geni_slivers"]]
        self.assertEqual(len(urns), 3)
        user = self.successResultOf(self.scheduler.read(lambda txn: txn.findUser(urn=self.p.alice.urn)))
        expid = self.successResultOf(self.scheduler.read(lambda txn: txn.findExperiments(sliceURN=self.s1)))[0].id
        self.successResultOf(self.scheduler.cancelOccurrences(expid, user.id, occurrence=1))
        self.assertEqual(self.code("Status", [urns[1]], self.sliceCred(), {}), 12)
        self.successResultOf(self.scheduler.moveOccurrence(expid, 2, user.id, start + 2 * 3600 + 1200, "nodes"))
        status = self.ok("Status", [self.s1], self.sliceCred(), {})
        self.assertEqual([(s["geni_sliver_urn"], s["geni_start_time"]) for s in status["geni_slivers"]],
                         [(urns[0], formatTime(start)), (urns[2], formatTime(start + 2 * 3600 + 1200))])
