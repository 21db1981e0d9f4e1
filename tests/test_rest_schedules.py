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


class CalendarPagingTests(SynchronousTestCase):
    """
    C{limit} and the C{after} cursor: pages of the calendar in its order.
    """

    def setUp(self) -> None:
        self.h = RESTHarness(nodes=3)
        self.people = populate(self.h)
        self.now = self.h.scheduler.now()
        # Two rows per start (nodes 1 and 2), so pages break between ties.
        for hour in range(1, 4):
            for node in ("1", "2"):
                book(self.h, self.people.alice, start=self.now + hour * 3600, options={"nodes": node})
        book(self.h, self.people.bob, start=self.now + 5 * 3600, options={"nodes": "3"})
        self.whole = self.h.request("GET", "/v1/schedules", self.people.alice)

    def test_pagesMakeTheWhole(self) -> None:
        """
        Following the C{Link} from page to page gives the whole window's list,
        each row once, in order; the last page has no C{Link}, nor does a
        listing without C{limit}.
        """
        self.assertEqual(len(self.whole.json), 7)
        self.assertIsNone(self.whole.header("Link"))
        self.assertIsNone(self.whole.header("X-Marvin-Next"))
        path, rows, pages = "/v1/schedules?limit=2", [], 0
        while path:
            page = self.h.request("GET", path, self.people.alice)
            self.assertEqual(page.code, 200, page.body)
            self.assertLessEqual(len(page.json), 2)
            rows += page.json
            pages += 1
            link = page.header("Link")
            if link is None:
                self.assertIsNone(page.header("X-Marvin-Next"))
                break
            self.assertTrue(link.startswith("</v1/schedules?start=") and link.endswith('>; rel="next"'), link)
            self.assertIn(f"after={page.header('X-Marvin-Next')}", link)
            path = link[1:link.index(">")]
        self.assertEqual(rows, self.whole.json)
        self.assertEqual(pages, 4)

    def test_exactLastPage(self) -> None:
        """
        A page that ends the list says so: no cursor, no empty page to fetch.
        """
        page = self.h.request("GET", "/v1/schedules?limit=7", self.people.alice)
        self.assertEqual(page.json, self.whole.json)
        self.assertIsNone(page.header("Link"))
        bare = self.h.request("GET", "/schedules?limit=6", self.people.alice)
        self.assertTrue(bare.header("Link").startswith("</schedules?"), bare.header("Link"))

    def test_cursor(self) -> None:
        """
        C{after=<start>,<id>} continues after that row (whatever C{limit});
        the window stays that of the request.
        """
        first = self.h.request("GET", "/v1/schedules?limit=3", self.people.alice)
        rest = self.h.request("GET", f"/v1/schedules?after={first.header('X-Marvin-Next')}", self.people.alice)
        self.assertEqual(first.json + rest.json, self.whole.json)
        start = self.now + 2 * 3600
        narrow = self.h.request(
            "GET", f"/v1/schedules?start={start}&stop={start + 1}&after={start},0", self.people.alice
        )
        self.assertEqual([r["start"] for r in narrow.json], [start, start])

    def test_nodePages(self) -> None:
        """
        A node pages through its own tasks only.
        """
        page = self.h.request("GET", "/v1/schedules?limit=2", self.people.node1)
        self.assertEqual([r["nodeid"] for r in page.json], [1, 1])
        rest = self.h.request("GET", page.header("Link")[1:page.header("Link").index(">")], self.people.node1)
        self.assertEqual([r["nodeid"] for r in rest.json], [1])
        self.assertIsNone(rest.header("Link"))

    def test_badPaging(self) -> None:
        """
        A limit below 1, a non-integer one or a malformed cursor is a 400
        naming the parameter; a limit past the largest page is that page.
        """
        for query, parameter in (("limit=0", "limit"), ("limit=x", "limit"), ("limit=", "limit"),
                                 ("after=1", "after"), ("after=x,1", "after"), ("after=1,-1", "after"),
                                 ("after=1,2,3", "after"), ("after=", "after")):
            response = self.h.request("GET", f"/v1/schedules?{query}", self.people.alice)
            self.assertEqual(response.code, 400, query)
            self.assertEqual(response.json["parameter"], parameter, query)
        huge = self.h.request("GET", "/v1/schedules?limit=99999999", self.people.alice)
        self.assertEqual(huge.json, self.whole.json)


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
