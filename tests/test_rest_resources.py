"""
Tests for C{/resources}: node listings, one node, its schedules and
C{/all} (a legacy 500), journals, and the admin's tag and status settings.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rest_compat.testing import RESTHarness, book, populate


class ResourceTests(SynchronousTestCase):
    """
    Reading and setting nodes.
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.people = populate(self.h)
        self.now = self.h.scheduler.now()

    def get(self, path: str, user=None):
        return self.h.request("GET", path, user or self.people.alice)

    def test_list(self) -> None:
        """
        Every node, with its tags flattened and integer ids; nodes without
        interfaces are listed (legacy: hidden).
        """
        nodes = self.get("/v1/resources").json
        self.assertEqual([n["id"] for n in nodes], [1, 2, 3])
        self.assertEqual(nodes[0], {"id": 1, "hostname": "node1", "status": "active", "heartbeat": self.now,
                                    "interfaces": [], "type": "testing", "country": "se", "model": "apu2d"})

    def test_tagsNeverOverrideScalars(self) -> None:
        """
        A tag named like a scalar key does not replace it.
        """
        self.h.request("PUT", "/v1/resources/1", self.people.admin, form={"type": "status:test,site:x"})
        node = self.get("/v1/resources/1").json[0]
        self.assertEqual((node["status"], node["site"]), ("active", "x"))

    def test_one(self) -> None:
        """
        One node is a one-element list; unknown ids are 404 (legacy: 200 []).
        """
        self.assertEqual([n["id"] for n in self.get("/v1/resources/2").json], [2])
        for path in ("/v1/resources/9", "/v1/resources/abc", "/v1/resources/9/schedules",
                     "/v1/resources/9/all", "/v1/resources/9/journals"):
            response = self.get(path)
            self.assertEqual(response.code, 404, path)
            self.assertEqual(response.json["message"], "Node id does not exist.")

    def test_schedules(self) -> None:
        """
        A node's schedules up to the horizon, as full rows, hidden options removed.
        """
        expid = book(self.h, self.people.alice, options={"nodes": "1", "_k": "v", "k": "v"})
        book(self.h, self.people.alice, start=self.now + 50 * 86400 - 3600 * 24 * 11, options={"nodes": "1"})
        rows = self.get("/v1/resources/1/schedules").json
        self.assertEqual(len(rows), 2)
        self.assertEqual(rows[0]["expid"], expid)
        self.assertEqual(rows[0]["deployment_options"], {"k": "v", "script": "docker.io/monroe/ping"})
        self.assertEqual(set(rows[0]), {"id", "nodeid", "expid", "start", "stop", "status", "shared",
                                        "deployment_options"})
        self.assertEqual(self.get("/v1/resources/2/schedules").json, [])

    def test_all(self) -> None:
        """
        C{/resources/<id>/all} works (legacy: always 500).
        """
        expid = book(self.h, self.people.alice, options={"nodes": "1"})
        body = self.get("/v1/resources/1/all").json
        self.assertEqual(set(body), {"schedules", "experiments"})
        self.assertEqual([s["expid"] for s in body["schedules"]], [expid])
        self.assertEqual([e["id"] for e in body["experiments"]], [expid])
        self.assertEqual(body["experiments"][0]["summary"], {"defined": 1})

    def test_journals(self) -> None:
        """
        Interface quota journals are not kept: empty lists.
        """
        self.assertEqual(self.get("/v1/resources/1/journals").json, [])
        self.assertEqual(self.get("/v1/resources/1/journals/8946000").json, [])

    def test_adminSetsTags(self) -> None:
        """
        An admin replaces a node's admin tags with C{type=tag:value,...}.
        """
        response = self.h.request("PUT", "/v1/resources/2", self.people.admin, form={"type": "type:deployed, site:lab"})
        self.assertEqual((response.code, response.json), (200, {"message": "Node type set."}))
        node = self.get("/v1/resources/2").json[0]
        self.assertEqual((node["type"], node["site"]), ("deployed", "lab"))

    def test_adminSetsStatus(self) -> None:
        """
        An admin sets the node status (and tags with it, atomically).
        """
        response = self.h.request("PUT", "/v1/resources/3", self.people.admin,
                                  json_={"status": "disabled", "type": "site:x"})
        self.assertEqual(response.json, {"message": "Node type and status set."})
        self.assertEqual(self.get("/v1/resources/3").json[0]["status"], "disabled")
        bad = self.h.request("PUT", "/v1/resources/3", self.people.admin, json_={"status": "broken", "type": "site:y"})
        self.assertEqual((bad.code, bad.json["parameter"]), (400, "status"))
        self.assertEqual(self.get("/v1/resources/3").json[0]["site"], "x")

    def test_adminErrors(self) -> None:
        """
        Bad tags are 400, unknown nodes 404 (also as a tail), nothing to set
        400, interface quotas 501.
        """
        admin = self.people.admin
        cases = [
            ("/v1/resources/1", {"type": "nocolon"}, 400),
            ("/v1/resources/99", {"type": "a:b"}, 404),
            ("/v1/resources/1", {"maintenance": "0"}, 400),
            ("/v1/resources/1", {"pair": "99"}, 404),
            ("/v1/resources/1", {"quota": "5", "iccid": "1"}, 501),
        ]
        for path, form, code in cases:
            response = self.h.request("PUT", path, admin, form=form)
            self.assertEqual(response.code, code, form)
            self.assertIn("message", response.json)
