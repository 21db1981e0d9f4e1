"""
Tests for C{GET /schedules}, C{GET /schedules/find} and C{GET /schedules/<id>}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rest_compat.testing import RESTHarness, book, populate


class CalendarTests(SynchronousTestCase):
    """
    The compact calendar.
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.people = populate(self.h)
        self.now = self.h.scheduler.now()

    def test_calendar(self) -> None:
        """
        Every task in the window, canceled ones included, in the compact shape.
        """
        a = book(self.h, self.people.alice, options={"nodes": "1"})
        book(self.h, self.people.bob, start=self.now + 7200, options={"nodes": "2"})
        self.h.request("DELETE", f"/v1/experiments/{a}", self.people.alice)
        calendar = self.h.request("GET", "/v1/schedules", self.people.alice).json
        self.assertEqual(calendar, [
            {"nodeid": 1, "start": self.now + 60, "stop": self.now + 660, "ownerid": self.people.alice.id},
            {"nodeid": 2, "start": self.now + 7200, "stop": self.now + 7800, "ownerid": self.people.bob.id},
        ])

    def test_window(self) -> None:
        """
        C{start} and C{stop} choose the window (legacy: ignored).
        """
        book(self.h, self.people.alice, options={"nodes": "1"})
        book(self.h, self.people.alice, start=self.now + 7200, options={"nodes": "1"})
        only = self.h.request("GET", f"/v1/schedules?start={self.now + 3600}", self.people.alice).json
        self.assertEqual([c["start"] for c in only], [self.now + 7200])
        early = self.h.request("GET", f"/v1/schedules?stop={self.now + 3600}", self.people.alice).json
        self.assertEqual([c["start"] for c in early], [self.now + 60])
        for query in (f"stop={self.now - 10}", "start=x", f"stop={self.now + 100 * 86400}"):
            response = self.h.request("GET", f"/v1/schedules?{query}", self.people.alice)
            self.assertEqual(response.code, 400, query)


class FindTests(SynchronousTestCase):
    """
    The slot search.
    """

    def setUp(self) -> None:
        self.h = RESTHarness(nodes=1)
        self.alice = self.h.addUser("alice")
        self.now = self.h.scheduler.now()

    def find(self, query: str):
        return self.h.request("GET", f"/v1/schedules/find?{query}", self.alice)

    def test_firstSlot(self) -> None:
        """
        Without C{results}, the first free window; it echoes C{nodetypes}.
        """
        book(self.h, self.alice, start=self.now + 1000, duration=600)
        response = self.find("duration=600&nodetypes=type:testing")
        self.assertEqual(response.code, 200, response.body)
        [slot] = response.json
        self.assertEqual(slot["start"], self.now + 60)
        self.assertEqual(slot["nodetypes"], "type:testing")
        self.assertLessEqual(slot["max_stop"], self.now + 1000 - 120)

    def test_results(self) -> None:
        """
        An explicit C{results} returns up to that many windows (legacy: all of them).
        """
        response = self.find("duration=600&results=3")
        self.assertEqual(len(response.json), 3)
        starts = [s["start"] for s in response.json]
        self.assertEqual(starts, sorted(starts))

    def test_nodes(self) -> None:
        """
        C{nodes} preselects; unknown nodes find nothing (409).
        """
        self.assertEqual(self.find("duration=600&nodes=1").code, 200)
        response = self.find("duration=600&nodes=7")
        self.assertEqual(response.code, 409)
        self.assertEqual(response.json["message"], "Could not find available time slot matching these criteria.")

    def test_nothing(self) -> None:
        """
        Too many nodes, or a start beyond the horizon, is 409 with the reason.
        """
        self.assertEqual(self.find("nodecount=2&duration=600").code, 409)
        late = self.find(f"start={self.now + 41 * 86400}")
        self.assertEqual(late.code, 409)
        self.assertTrue(late.json["message"].startswith("Provided start time is outside the allowed scheduling range"))

    def test_badParameters(self) -> None:
        """
        Bad values are 400 naming the parameter (legacy: 500).
        """
        for query, name in (("duration=x", "duration"), ("nodecount=0", "nodecount"), ("results=-1", "results"),
                            ("nodetypes=type", "nodetypes"), ("start=1.5", "start")):
            response = self.find(query)
            self.assertEqual(response.code, 400, query)
            self.assertEqual(response.json["parameter"], name, query)
        self.assertEqual(self.find("interfaceCount=3").code, 409)


class OneScheduleTests(SynchronousTestCase):
    """
    One schedule.
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.people = populate(self.h)

    def test_row(self) -> None:
        """
        The full row with an empty C{report}; unknown ids are 404 (legacy: 200 []).
        """
        expid = book(self.h, self.people.alice, options={"nodes": "2", "_x": 1})
        schedid = self.h.run(lambda txn: txn.schedulesOfExperiment(expid)[0].id)
        body = self.h.request("GET", f"/v1/schedules/{schedid}", self.people.alice).json
        self.assertEqual((body["id"], body["nodeid"], body["expid"], body["report"]), (str(schedid), 2, expid, {}))
        self.assertNotIn("_x", body["deployment_options"])
        for path in ("/v1/schedules/999", "/v1/schedules/abc"):
            response = self.h.request("GET", path, self.people.admin)
            self.assertEqual(response.code, 404, path)
            self.assertEqual(response.json["message"], "Could not find schedule entry with this id.")
