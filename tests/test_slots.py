"""
Slot search and allocation windows: padding, back-to-back, shared, final states,
explicit nodes, node counts, heartbeats and maintenance windows.
"""

from __future__ import annotations

from am.core.errors import BadRequest, Conflict
from am.core.model import Node
from am.core.policy import Policy
from tests.core_helpers import NOW, CoreTestCase, assertNoOverlap


class PaddingTests(CoreTestCase):
    """
    Windows are half-open and padded by 120 s on each node.
    """

    nodes = 1

    def setUp(self) -> None:
        super().setUp()
        self.book(start=NOW + 1000, duration=600)  # [1000, 1600)

    def test_endsExactlyAtPaddedStart(self) -> None:
        """
        A window ending at start - padding fits (worked example A, half-open).
        """
        self.book(start=NOW + 280, duration=600)  # ends at 880 = 1000 - 120

    def test_endsInsidePadding(self) -> None:
        """
        One second more is a conflict.
        """
        error = self.refused(Conflict, start=NOW + 281, duration=600)
        self.assertEqual(error.extra["code"], "sc1")
        self.assertEqual((error.extra["available"], error.extra["requested"]), (0, 1))

    def test_startsAtPaddedEnd(self) -> None:
        """
        A window may start exactly at stop + padding.
        """
        self.book(start=NOW + 1720, duration=600)

    def test_startsInsidePadding(self) -> None:
        """
        One second earlier is a conflict.
        """
        self.refused(Conflict, start=NOW + 1719, duration=600)

    def test_suggestions(self) -> None:
        """
        A refusal carries the earliest windows where the same request fits.
        """
        error = self.refused(Conflict, start=NOW + 900, duration=600)
        first = error.extra["suggestions"][0]
        self.assertEqual((first["start"], first["stop"]), (NOW + 1720, NOW + 2320))
        self.assertEqual(len(error.extra["suggestions"]), 3)
        self.book(start=first["start"], duration=600)

    def test_asapSearches(self) -> None:
        """
        start=0 finds the earliest free window (worked example B), not just now+70.
        """
        a = self.book(start=0, duration=600)
        self.assertEqual(a.schedules[0].start, NOW + 60)  # fits before: ends 660 < 880
        b = self.book(start=0, duration=900)
        self.assertEqual(b.schedules[0].start, NOW + 1720)

    def test_findWorkedExample(self) -> None:
        """
        find reports start, stop, the end of the free window and the free count.
        """
        slots = self.successResultOf(self.scheduler.find(nodecount=1, duration=600))
        self.assertEqual(
            slots,
            [{"start": NOW + 60, "stop": NOW + 660, "max_stop": NOW + 880, "nodecount": 1,
              "max_nodecount": 1, "nodetypes": ""}],
        )


class BackToBackTests(CoreTestCase):
    """
    Many bookings on few nodes never overlap.
    """

    nodes = 2

    def test_asapFillsBackToBack(self) -> None:
        """
        Ten ASAP bookings of two nodes follow each other with exactly the padding.
        """
        starts = [self.book(start=0, duration=600, nodecount=2).schedules[0].start for _ in range(10)]
        self.assertEqual(starts, [NOW + 60 + k * 720 for k in range(10)])
        assertNoOverlap(self.blocking(), 120)

    def test_nodecountAboveEligible(self) -> None:
        """
        Asking for more nodes than match is refused at once with the count.
        """
        error = self.refused(Conflict, nodecount=3)
        self.assertEqual((error.extra["available"], error.extra["requested"]), (2, 3))
        self.assertIn("Could not find available time slot", error.message)


class SharedAndFinalTests(CoreTestCase):
    """
    Shared schedules block nothing; final ones free their window.
    """

    nodes = 1

    def test_sharedOnTopOfExclusiveRefused(self) -> None:
        """
        A shared request still needs a node free of exclusive schedules.
        """
        self.book(start=NOW + 1000)
        self.refused(Conflict, start=NOW + 1000, shared=True)

    def test_anythingOnTopOfShared(self) -> None:
        """
        Shared schedules never block: exclusive and shared ones may overlap them.
        """
        self.book(start=NOW + 1000, shared=True)
        self.book(start=NOW + 1000, shared=True)
        self.book(start=NOW + 1000)

    def test_canceledFreesWindow(self) -> None:
        """
        Deleting an experiment frees its window at once.
        """
        a = self.book(start=NOW + 1000)
        self.refused(Conflict, start=NOW + 1000)
        self.successResultOf(self.scheduler.deleteExperiment(a.experiment.id, self.alice.id))
        self.book(start=NOW + 1000)

    def test_finishedEarlyFreesRest(self) -> None:
        """
        A task the node reports finished frees the rest of its window.
        """
        a = self.book(start=NOW + 100, duration=3600)
        node = self.successResultOf(
            self.scheduler.addUser(name="Node 1", role="node", fingerprint="d" * 40)
        )
        sid = a.schedules[0].id
        for status in ("deployed", "started", "finished"):
            self.successResultOf(self.scheduler.changeStatus(sid, status, node.id))
        self.book(start=NOW + 200, duration=600)


class EligibilityTests(CoreTestCase):
    """
    Which nodes may be chosen.
    """

    def setUp(self) -> None:
        super().setUp()
        self.putNode(Node(id="es1", status="active", heartbeat=NOW, inventoryTags={"country": "es", "type": "testing"}))
        self.putNode(Node(id="old", status="active", heartbeat=NOW - 3 * 86400, inventoryTags={"country": "es"}))
        self.putNode(Node(id="off", status="disabled", heartbeat=NOW, inventoryTags={"country": "es"}))
        self.putNode(Node(id="stale", status="active", heartbeat=NOW - 3600, inventoryTags={"country": "es"}))

    def test_filter(self) -> None:
        """
        Only nodes matching the filter are chosen.
        """
        a = self.book(nodetypes="country:es", start=NOW + 100)
        self.assertEqual([s.nodeid for s in a.schedules], ["es1"])
        self.refused(Conflict, nodetypes="country:es", nodecount=2, start=NOW + 100)

    def test_staleHeartbeatLater(self) -> None:
        """
        A node heard an hour ago qualifies for a start a day ahead, not an imminent one.
        """
        a = self.book(nodetypes="country:es", nodecount=2, start=NOW + 86400)
        self.assertEqual(sorted(s.nodeid for s in a.schedules), ["es1", "stale"])

    def test_asapWaitsForImminentWindow(self) -> None:
        """
        ASAP with too few freshly heard nodes moves past the imminent window.
        """
        a = self.book(nodetypes="country:es", nodecount=2, start=0)
        self.assertEqual(a.schedules[0].start, NOW + self.policy.imminentWindow)

    def test_explicitNodes(self) -> None:
        """
        Named nodes ignore the filter and the heartbeat age, not the node status.
        """
        a = self.book(nodes=["old", "1"], nodecount=2, nodetypes="country:zz", start=NOW + 100)
        self.assertEqual(sorted(s.nodeid for s in a.schedules), ["1", "old"])
        self.refused(Conflict, nodes=["off"], start=NOW + 100)
        error = self.refused(Conflict, nodes=["nope"], start=NOW + 100)
        self.assertEqual(error.extra["nodes"], ["nope"])

    def test_badFilter(self) -> None:
        """
        A malformed filter is a bad request naming the position.
        """
        error = self.refused(BadRequest, nodetypes="country")
        self.assertEqual(error.extra["parameter"], "nodetypes")
        self.assertEqual(error.extra["position"], 7)


class MaintenanceTests(CoreTestCase):
    """
    The legacy windows 09:30-10:00 and 21:30-22:00 UTC, with padding.
    """

    nodes = 1
    policy = Policy()

    def test_refusedInside(self) -> None:
        """
        A window touching 09:30-10:00 is refused; one clear of it is booked.
        """
        error = self.refused(Conflict, start=NOW + 9 * 3600, duration=1800)
        self.assertEqual(error.extra["available"], 0)
        self.assertEqual(error.extra["suggestions"][0]["start"], NOW + 36000 + 120)
        self.book(start=NOW + 36000 + 120, duration=600)

    def test_asapSkips(self) -> None:
        """
        ASAP never lands in a maintenance window.
        """
        self.clock.advance(9 * 3600 + 1500)  # 09:25
        self.successResultOf(self.scheduler.heartbeat(
            self.successResultOf(self.scheduler.addUser(name="Node 1", role="node", fingerprint="e" * 40)).id, "1"))
        a = self.book(start=0, duration=600)
        self.assertEqual(a.schedules[0].start, NOW + 36000 + 120)


class PolicyTests(CoreTestCase):
    """
    The legacy policy checks, with their messages.
    """

    def test_messages(self) -> None:
        """
        Too soon, too short, too long, too far ahead.
        """
        self.assertIn("60 second delay", self.refused(Conflict, start=NOW + 59).message)
        self.assertEqual(self.refused(Conflict, duration=59).message, "Tasks must run for a minimum of 60 seconds.")
        self.assertEqual(self.refused(Conflict, duration=90001).message, "Tasks may not run for more than 90000 seconds.")
        self.assertIn("in advance", self.refused(Conflict, start=NOW + 3456001).message)

    def test_types(self) -> None:
        """
        Ill-typed numbers are bad requests naming the parameter; integral strings pass.
        """
        for key, value in (("nodecount", "two"), ("nodecount", 0), ("duration", 1.5), ("start", None)):
            self.assertEqual(self.refused(BadRequest, **{key: value}).extra["parameter"], key)
        self.book(nodecount="2", duration="600", start=str(NOW + 100))

    def test_scripts(self) -> None:
        """
        Bad characters and more than two scripts are refused.
        """
        self.assertEqual(self.refused(Conflict, script="a b").message, "Container URL contains invalid characters")
        self.assertEqual(self.refused(Conflict, script="a|b|c").extra["code"], "sc2")

    def test_deploymentRepository(self) -> None:
        """
        Deployed nodes only run images from the deployment repository.
        """
        self.scheduler.policy = Policy(maintenance=(), deploymentRepository="repo.example")
        self.putNode(Node(id="d1", heartbeat=NOW, inventoryTags={"type": "deployed"}))
        self.assertIn("hosted by repo.example", self.refused(Conflict, nodetypes="type:deployed").message)
        a = self.book(nodetypes="type:deployed", script="repo.example/x", start=NOW + 100)
        self.assertEqual(a.schedules[0].nodeid, "d1")
        other = self.book(nodecount=5, start=NOW + 100)
        self.assertNotIn("d1", [s.nodeid for s in other.schedules])

    def test_dryrun(self) -> None:
        """
        A dry run answers what would be booked and books nothing.
        """
        a = self.book(dryrun=True, nodecount=5, start=NOW + 100)
        self.assertEqual(len(a.schedules), 5)
        self.assertIsNone(a.experiment.id)
        self.book(nodecount=5, start=NOW + 100)
