"""
Tests for L{rest_compat.calendar}: the iCalendar feeds and their JSON twins,
their access rules, the node tag filter (also on C{GET /resources}), all
checked against the OpenAPI document by the harness.
"""

from __future__ import annotations

import icalendar
from twisted.trial.unittest import SynchronousTestCase

from am.core.policy import MaintenanceWindow, Policy
from rest_compat.testing import RESTHarness, book, populate


class CalendarTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = RESTHarness(nodes=3)
        self.people = populate(self.h)
        self.mine = book(self.h, self.people.alice, name="alice-exp", options={"nodes": "1"})
        self.theirs = book(self.h, self.people.bob, name="bob-exp", options={"nodes": "2"})

    def test_icalendarEvents(self) -> None:
        """
        C{GET /v1/schedules.ics} is an iCalendar document, parsed back by the
        library, with one event per schedule naming node, experiment and
        status; names of others' experiments are not shown.
        """
        response = self.h.request("GET", "/v1/schedules.ics", self.people.alice)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.header("content-type"), "text/calendar; charset=utf-8")
        calendar = icalendar.Calendar.from_ical(response.body)
        events = list(calendar.walk("VEVENT"))
        self.assertEqual(len(events), 2)
        summaries = sorted(str(e["summary"]) for e in events)
        self.assertEqual(summaries[0], "alice-exp on node 1 (node1): defined")
        self.assertIn(f"experiment {self.theirs} on node 2", summaries[1])
        self.assertNotIn("bob-exp", response.body.decode())
        for event in events:
            self.assertLess(event.decoded("dtstart"), event.decoded("dtend"))
            self.assertTrue(str(event["uid"]).startswith("schedule-"))

    def test_jsonTwin(self) -> None:
        """
        The C{.json} twin carries the same events as data; C{mine=1} keeps
        the caller's own; the owner's name shows to the owner only.
        """
        response = self.h.request("GET", "/v1/schedules.json", self.people.alice)
        events = response.json["events"]
        self.assertEqual([e["expid"] for e in events], [self.mine, self.theirs])
        self.assertEqual(events[0]["owner"], "alice")
        self.assertIsNone(events[1]["owner"])
        self.assertEqual(events[0]["status"], "defined")
        mine = self.h.request("GET", "/v1/schedules.json?mine=1", self.people.alice).json["events"]
        self.assertEqual([e["expid"] for e in mine], [self.mine])
        admin = self.h.request("GET", "/v1/schedules.json", self.people.admin).json["events"]
        self.assertEqual([e["experiment"] for e in admin], ["alice-exp", "bob-exp"])

    def test_scopes(self) -> None:
        """
        Per user, experiment and node feeds follow those records' rules; a
        node sees only its own schedules.
        """
        alice, bob, node1 = self.people.alice, self.people.bob, self.people.node1
        self.assertEqual(len(self.h.request("GET", f"/v1/users/{alice.id}/schedules.json", alice).json["events"]), 1)
        self.assertEqual(self.h.request("GET", f"/v1/users/{alice.id}/schedules.ics", bob).code, 403)
        self.assertEqual(self.h.request("GET", f"/v1/experiments/{self.mine}/schedules.ics", alice).code, 200)
        self.assertEqual(self.h.request("GET", f"/v1/experiments/{self.mine}/schedules.json", bob).code, 403)
        self.assertEqual(self.h.request("GET", "/v1/experiments/999/schedules.json", alice).code, 404)
        self.assertEqual(len(self.h.request("GET", "/v1/resources/2/schedules.json", alice).json["events"]), 1)
        self.assertEqual(self.h.request("GET", "/v1/resources/2/schedules.ics", node1).code, 403)
        own = self.h.request("GET", "/v1/schedules.json", node1).json["events"]
        self.assertEqual([e["nodeid"] for e in own], [1])
        self.assertEqual(own[0]["experiment"], "alice-exp")
        self.assertEqual(self.h.request("GET", "/v1/schedules.ics").code, 401)

    def test_nodeFilter(self) -> None:
        """
        C{nodetypes} (the filter grammar) narrows feeds and C{GET /resources};
        a malformed filter is a 400 naming the parameter.
        """
        self.h.scheduler.setNodeTags("2", "type:special")
        alice = self.people.alice
        events = self.h.request("GET", "/v1/schedules.json?nodetypes=type:special", alice).json["events"]
        self.assertEqual([e["nodeid"] for e in events], [2])
        nodes = self.h.request("GET", "/v1/resources?nodetypes=type:special", alice).json
        self.assertEqual([n["id"] for n in nodes], [2])
        none = self.h.request("GET", "/v1/resources?nodetypes=-type:special", alice).json
        self.assertNotIn(2, [n["id"] for n in none])
        bad = self.h.request("GET", "/v1/schedules.json?nodetypes=type", alice)
        self.assertEqual(bad.code, 400)
        self.assertEqual(bad.json["parameter"], "nodetypes")
        self.assertEqual(self.h.request("GET", "/v1/resources?nodetypes=type:", alice).code, 400)

    def test_window(self) -> None:
        """
        C{start}/C{stop} choose the window; a reversed or overlong one is a 400.
        """
        alice = self.people.alice
        empty = self.h.request("GET", "/v1/schedules.json?start=1&stop=2", alice).json
        self.assertEqual(empty["events"], [])
        self.assertEqual(self.h.request("GET", "/v1/schedules.ics?start=5&stop=1", alice).code, 400)
        self.assertEqual(self.h.request("GET", "/v1/schedules.json?stop=9999999999", alice).code, 400)


class MaintenanceTests(SynchronousTestCase):
    def test_windows(self) -> None:
        """
        The JSON twin lists the policy's maintenance windows in its window
        (for the timeline's shading).
        """
        h = RESTHarness(policy=Policy(maintenance=(MaintenanceWindow(3600, 7200),)))
        alice = populate(h).alice
        now = int(h.clock.seconds())
        feed = h.request("GET", f"/v1/schedules.json?start={now}&stop={now + 3 * 86400}", alice).json
        self.assertIn(len(feed["maintenance"]), (3, 4))
        for window in feed["maintenance"]:
            self.assertEqual(window["stop"] - window["start"], 3600)
            self.assertEqual(window["start"] % 86400, 3600)
