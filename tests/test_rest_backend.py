"""
Tests for C{/version}, C{/backend/auth}, C{/backend/pubkeys},
C{/backend/activity} and C{/backend/sync}.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, fail, succeed
from twisted.logger import Logger
from twisted.trial.unittest import SynchronousTestCase

from am.core.model import Node
from rest_compat import backend
from rest_compat.testing import RESTHarness, book, populate


class AuthAndKeysTests(SynchronousTestCase):
    """
    The routes open to everyone.
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.people = populate(self.h)

    def test_auth(self) -> None:
        """
        C{/backend/auth} shows what the certificate was taken for.
        """
        alice = self.people.alice
        response = self.h.request("GET", "/v1/backend/auth", alice)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.json["verified"], "SUCCESS")
        self.assertEqual(response.json["fingerprint"], alice.fingerprint)
        self.assertEqual(response.json["user"]["id"], alice.id)
        anonymous = self.h.request("GET", "/v1/backend/auth")
        self.assertEqual(anonymous.code, 401)
        self.assertEqual(anonymous.json, {
            "verified": None, "fingerprint": "", "user": None,
            "message": "Please present a valid SSL client certificate to access this information.",
        })

    def test_pubkeys(self) -> None:
        """
        No task keys are generated yet: an empty list, for anyone.
        """
        response = self.h.request("GET", "/v1/backend/pubkeys")
        self.assertEqual((response.code, response.json), (200, []))


class ActivityTests(SynchronousTestCase):
    """
    C{/backend/activity} statistics.
    """

    def test_activity(self) -> None:
        """
        Counts by role and node status, heartbeat freshness, dropouts,
        maintenance nodes, and recent tasks by owner and status.
        """
        h = RESTHarness(nodes=2)
        people = populate(h)
        now = h.scheduler.now()
        for node in (
            Node(id="3", heartbeat=now - 400, inventoryTags={"type": "testing"}),
            Node(id="4", heartbeat=now - 2 * 86400, inventoryTags={"type": "testing"}),
            Node(id="5", heartbeat=now - 40 * 86400, status="disabled"),
        ):
            h.run(lambda txn, n=node: txn.putNode(n))
        h.request("PUT", "/v1/resources/2", people.node2, form={"maintenance": "1"})
        a = book(h, people.alice, options={"nodes": "1"})
        book(h, people.bob, start=now + 7200, options={"nodes": "1"})
        h.request("DELETE", f"/v1/experiments/{a}", people.alice)
        h.request("DELETE", f"/v1/users/{people.bob.id}", people.admin)
        h.clock.advance(30)
        body = h.request("GET", "/v1/backend/activity", people.alice).json
        self.assertEqual(body["users"], {"admin": 1, "user": 1, "node": 2, "invalid": 1})
        resources = body["resources"]
        self.assertEqual((resources["active"], resources["disabled"]), (3, 1))
        self.assertEqual(resources["maintenance"], [2])
        self.assertEqual((resources["2 min"], resources["5 min"], resources["1 h"], resources["1 d"]), (2, 2, 3, 3))
        self.assertEqual(resources["dropouts 30d-1d"], [4])
        self.assertEqual(resources["dropouts 1d-5min"], [3])
        schedules = body["schedules"]
        self.assertEqual((schedules["future"], schedules["current"]), (2, 0))
        self.assertEqual(
            schedules["distinct active users (7d)"],
            [{"name": "alice", "project": "monroe", "tasks": 1}, {"name": "bob", "project": "monroe", "tasks": 1}],
        )
        self.assertEqual(schedules["status codes (7d)"], [[1, "canceled"], [1, "defined"]])


class SyncTests(SynchronousTestCase):
    """
    C{PUT /backend/sync}.
    """

    def test_notConfigured(self) -> None:
        """
        Without an inventory the route is 501.
        """
        h = RESTHarness()
        admin = h.addUser("root", "admin")
        response = h.request("PUT", "/v1/backend/sync", admin)
        self.assertEqual((response.code, response.json), (501, {"message": "Inventory synchronisation is not configured."}))

    def test_sync(self) -> None:
        """
        The injected callable runs once per request; its counts are shown.
        """
        calls: list[int] = []

        def sync():
            calls.append(1)
            return succeed({"added": 2, "updated": 1, "missing": 0})

        h = RESTHarness(sync=sync)
        admin = h.addUser("root", "admin")
        response = h.request("PUT", "/v1/backend/sync", admin)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.json, {"message": "Ok. Inventory synchronised.",
                                         "result": {"added": 2, "updated": 1, "missing": 0}})
        self.assertEqual(calls, [1])

    def test_waitsForTheSync(self) -> None:
        """
        The reply waits for the synchronisation to finish.
        """
        pending: Deferred = Deferred()
        h = RESTHarness(sync=lambda: pending, validate=False)
        admin = h.addUser("root", "admin")
        from twisted.internet.address import IPv4Address
        from twisted.web.resource import getChildForRequest

        from rest_compat.testing import FakeRequest

        request = FakeRequest(b"PUT", b"/v1/backend/sync", b"", IPv4Address("TCP", "127.0.0.1", 1), None)
        request.requestHeaders.setRawHeaders(b"VERIFIED", [b"SUCCESS"])
        request.requestHeaders.setRawHeaders(b"SSL_FINGERPRINT", [admin.fingerprint.encode()])
        request.render(getChildForRequest(h.root, request))
        self.assertEqual(request.finished, 0)
        pending.callback(None)
        self.assertEqual((request.finished, request.responseCode), (1, 200))

    def test_failure(self) -> None:
        """
        A failing synchronisation is 502 with its message, and logged.
        """
        events: list[dict] = []
        self.patch(backend, "log", Logger(observer=events.append))
        h = RESTHarness(sync=lambda: fail(RuntimeError("inventory unreachable")))
        admin = h.addUser("root", "admin")
        response = h.request("PUT", "/v1/backend/sync", admin)
        self.assertEqual(response.code, 502)
        self.assertEqual(response.json["message"], "Inventory synchronisation failed: inventory unreachable")
        self.assertEqual(len([e for e in events if "log_failure" in e]), 1)
