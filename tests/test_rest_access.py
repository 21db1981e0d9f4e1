"""
Tests for L{rest_compat.access}: the route x method x role matrix checked cell
by cell through real requests, and the per-object least-privilege rules.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import succeed
from twisted.trial.unittest import SynchronousTestCase

from rest_compat import access
from rest_compat.testing import RESTHarness, book, fingerprintFor, populate

ROLES = (access.ANONYMOUS, access.USER, access.ADMIN, access.NODE)

# (route, method) -> (path template, body, expected status when allowed).
# {self} is the caller's own user id (alice's for anonymous callers).
CELLS: dict[tuple[str, str], tuple[str, Any, int]] = {
    ("version", "GET"): ("/version", None, 200),
    ("openapi", "GET"): ("/openapi.json", None, 200),
    ("resources", "GET"): ("/v1/resources", None, 200),
    ("resource", "GET"): ("/v1/resources/1", None, 200),
    ("resource", "PUT"): ("/v1/resources/1", {"maintenance": "0", "interfaces": "[]", "type": "site:x"}, 200),
    ("resource/schedules", "GET"): ("/v1/resources/1/schedules", None, 200),
    ("resource/all", "GET"): ("/v1/resources/1/all", None, 200),
    ("resource/journals", "GET"): ("/v1/resources/1/journals", None, 200),
    ("resource/journal", "GET"): ("/v1/resources/1/journals/89460", None, 200),
    ("users", "GET"): ("/v1/users", None, 200),
    ("users", "POST"): ("/v1/users", {"name": "carol", "role": "user", "ssl": fingerprintFor("carol")}, 201),
    ("user", "GET"): ("/v1/users/{self}", None, 200),
    ("user", "PUT"): ("/v1/users/{bob}", {"time": "5"}, 200),
    ("user", "DELETE"): ("/v1/users/{bob}", None, 200),
    ("user/schedules", "GET"): ("/v1/users/{self}/schedules", None, 200),
    ("user/experiments", "GET"): ("/v1/users/{self}/experiments", None, 200),
    ("user/journals", "GET"): ("/v1/users/{self}/journals", None, 200),
    ("user/notify-secret", "GET"): ("/v1/users/{self}/notify-secret", None, 200),
    ("user/notify-secret", "POST"): ("/v1/users/{self}/notify-secret", None, 200),
    ("experiments", "GET"): ("/v1/experiments", None, 200),
    (
        "experiments",
        "POST",
    ): ("/v1/experiments", {"name": "n", "nodecount": "1", "nodetypes": "", "script": "docker.io/a/b", "duration": "600"}, 201),
    ("experiment", "GET"): ("/v1/experiments/{A}", None, 200),
    ("experiment", "PUT"): ("/v1/experiments/{A}", None, 400),
    ("experiment", "DELETE"): ("/v1/experiments/{A}", None, 200),
    ("experiment/merge", "PUT"): ("/v1/experiments/{A}/{B}", None, 200),
    ("experiment/schedules", "GET"): ("/v1/experiments/{A}/schedules", None, 200),
    ("experiment/schedule", "GET"): ("/v1/experiments/{A}/schedule/{s1}", None, 200),
    # A is a one-off booking: listing works, changing occurrences is refused after the access check.
    ("experiment/occurrences", "GET"): ("/v1/experiments/{A}/occurrences", None, 200),
    ("experiment/occurrences", "DELETE"): ("/v1/experiments/{A}/occurrences?from=0", None, 409),
    ("experiment/occurrence", "GET"): ("/v1/experiments/{A}/occurrences/0", None, 200),
    ("experiment/occurrence", "PUT"): ("/v1/experiments/{A}/occurrences/0", {"start": "2000000000"}, 409),
    ("experiment/occurrence", "DELETE"): ("/v1/experiments/{A}/occurrences/0", None, 409),
    ("experiment/events", "GET"): ("/v1/experiments/{A}/events", None, 200),
    ("schedules", "GET"): ("/v1/schedules", None, 200),
    ("schedules/find", "GET"): ("/v1/schedules/find?duration=600", None, 200),
    ("schedule", "GET"): ("/v1/schedules/{s1}", None, 200),
    # The results routes (docs/results.md); this harness has no results store,
    # so the routes that need one answer 501 to the roles allowed in.
    ("schedule/results", "GET"): ("/v1/schedules/{s1}/results", None, 200),
    ("schedule/result", "GET"): ("/v1/schedules/{s1}/results/a.txt", None, 501),
    ("schedule/upload", "GET"): ("/v1/schedules/{s1}/uploads/a.txt?size=1&sha256=" + "0" * 64, None, 501),
    ("schedule/upload", "PUT"): ("/v1/schedules/{s1}/uploads/a.txt?size=1&sha256=" + "0" * 64, None, 501),
    ("experiment/results", "GET"): ("/v1/experiments/{A}/results.tar", None, 501),
    ("calendar", "GET"): ("/v1/schedules.ics", None, 200),
    ("user/calendar", "GET"): ("/v1/users/{self}/schedules.json", None, 200),
    ("experiment/calendar", "GET"): ("/v1/experiments/{A}/schedules.ics", None, 200),
    ("resource/calendar", "GET"): ("/v1/resources/1/schedules.json", None, 200),
    ("ui", "GET"): ("/ui/", None, 200),
    ("ui/file", "GET"): ("/ui/timeline.js", None, 200),
    ("ui/changes", "GET"): ("/ui/changes", None, 200),
    ("schedule", "PUT"): ("/v1/schedules/{s1}", {"status": "deployed"}, 200),
    ("backend/auth", "GET"): ("/v1/backend/auth", None, 200),
    ("backend/activity", "GET"): ("/v1/backend/activity", None, 200),
    ("backend/pubkeys", "GET"): ("/v1/backend/pubkeys", None, 200),
    ("backend/sync", "PUT"): ("/v1/backend/sync", None, 200),
}

# Who may use each route and method, written from the access table in
# docs/rest.md ("Access by role"), independently of rest_compat.access.MATRIX:
# a change to the code's table must be matched here and in the docs.
# a = anonymous, u = user, d = admin, n = node.
WHO_MAY: dict[tuple[str, str], str] = {
    ("version", "GET"): "audn",
    ("openapi", "GET"): "audn",
    ("resources", "GET"): "udn",
    ("resource", "GET"): "udn",
    ("resource", "PUT"): "dn",
    ("resource/schedules", "GET"): "udn",
    ("resource/all", "GET"): "udn",
    ("resource/journals", "GET"): "udn",
    ("resource/journal", "GET"): "udn",
    ("users", "GET"): "udn",
    ("users", "POST"): "d",
    ("user", "GET"): "udn",
    ("user", "PUT"): "d",
    ("user", "DELETE"): "d",
    ("user/schedules", "GET"): "udn",
    ("user/experiments", "GET"): "udn",
    ("user/journals", "GET"): "udn",
    ("user/notify-secret", "GET"): "ud",
    ("user/notify-secret", "POST"): "ud",
    ("experiments", "GET"): "udn",
    ("experiments", "POST"): "u",
    ("experiment", "GET"): "udn",
    ("experiment", "PUT"): "u",
    ("experiment", "DELETE"): "ud",
    ("experiment/merge", "PUT"): "u",
    ("experiment/schedules", "GET"): "udn",
    ("experiment/schedule", "GET"): "udn",
    ("experiment/occurrences", "GET"): "udn",
    ("experiment/occurrences", "DELETE"): "ud",
    ("experiment/occurrence", "GET"): "udn",
    ("experiment/occurrence", "PUT"): "ud",
    ("experiment/occurrence", "DELETE"): "ud",
    ("experiment/events", "GET"): "ud",
    ("schedules", "GET"): "udn",
    ("schedules/find", "GET"): "ud",
    ("calendar", "GET"): "udn",
    ("user/calendar", "GET"): "udn",
    ("experiment/calendar", "GET"): "udn",
    ("resource/calendar", "GET"): "udn",
    ("ui", "GET"): "ud",
    ("ui/file", "GET"): "ud",
    ("ui/changes", "GET"): "ud",
    ("schedule", "GET"): "udn",
    ("schedule", "PUT"): "n",
    ("schedule/results", "GET"): "ud",
    ("schedule/result", "GET"): "ud",
    ("schedule/upload", "GET"): "n",
    ("schedule/upload", "PUT"): "n",
    ("experiment/results", "GET"): "ud",
    ("backend/auth", "GET"): "audn",
    ("backend/activity", "GET"): "ud",
    ("backend/pubkeys", "GET"): "audn",
    ("backend/sync", "PUT"): "d",
}
_LETTER = {access.ANONYMOUS: "a", access.USER: "u", access.ADMIN: "d", access.NODE: "n"}


def allowed(route: str, method: str, role: str) -> bool:
    """
    The written-down answer, never the code's own table.
    """
    return _LETTER[role] in WHO_MAY[(route, method)]


class MatrixTests(SynchronousTestCase):
    """
    Every cell of the matrix, for every role, on a fresh scheduler.
    """

    def scenario(self):
        h = RESTHarness(sync=lambda: succeed({"added": 0}))
        people = populate(h)
        a = book(h, people.alice, options={"nodes": "1"})
        b = book(h, people.alice, options={"nodes": "2"})
        s1 = h.run(lambda txn: txn.schedulesOfExperiment(a)[0].id)
        callers = {
            access.ANONYMOUS: None,
            access.USER: people.alice,
            access.ADMIN: people.admin,
            access.NODE: people.node1,
        }
        return h, people, callers, {"A": a, "B": b, "s1": s1}

    def test_everyCellIsSpecified(self) -> None:
        """
        The test tables cover the matrix exactly: no route or method is
        served that the written table does not name.
        """
        cells = {(route, method) for route, methods in access.MATRIX.items() for method in methods}
        self.assertEqual(cells, set(CELLS))
        self.assertEqual(cells, set(WHO_MAY))

    def test_matrix(self) -> None:
        """
        Allowed roles get the route's success code; anonymous callers of a
        protected cell get 401, known callers of the wrong role 403.
        """
        for (route, method), (template, body, expected) in CELLS.items():
            for role in ROLES:
                h, people, callers, ids = self.scenario()
                caller = callers[role]
                path = template.format(self=(caller or people.alice).id, bob=people.bob.id, **ids)
                response = h.request(method, path, caller, form=body)
                where = (route, method, role, response.body[:200])
                if allowed(route, method, role):
                    if (route, role) == ("backend/auth", access.ANONYMOUS):
                        self.assertEqual(response.code, 401, where)
                        self.assertIsNone(response.json["user"], where)
                    else:
                        self.assertEqual(response.code, expected, where)
                elif role == access.ANONYMOUS:
                    self.assertEqual(response.code, 401, where)
                    self.assertEqual(
                        response.json["message"],
                        "Please present a valid SSL client certificate to access this information.",
                    )
                else:
                    self.assertEqual(response.code, 403, where)
                    self.assertTrue(response.json["message"].startswith("You'd have to be "), where)
                    self.assertEqual(response.json["role"], role)

    def test_optionsForEveryone(self) -> None:
        """
        OPTIONS is allowed on every route to every caller.
        """
        h, people, callers, ids = self.scenario()
        for (route, method), (template, _, _) in CELLS.items():
            for caller in callers.values():
                path = template.format(self=(caller or people.alice).id, bob=people.bob.id, **ids)
                self.assertEqual(h.request("OPTIONS", path, caller).code, 204, (route, path))

    def test_unknownRoleIsAnonymous(self) -> None:
        """
        Roles outside the matrix (and invalidated users) count as anonymous.
        """
        from am.core.model import User

        self.assertEqual(access.roleOf(None), access.ANONYMOUS)
        self.assertEqual(access.roleOf(User("x", "whatever")), access.ANONYMOUS)
        self.assertEqual(access.roleOf(User("x", "admin", invalid=True)), access.ANONYMOUS)
        self.assertEqual(access.roleOf(User("x", "admin")), access.ADMIN)

    def test_forbiddenMessage(self) -> None:
        """
        The 403 message names the roles that may.
        """
        h, people, callers, ids = self.scenario()
        response = h.request("POST", "/v1/experiments", people.admin, json_={})
        self.assertEqual(response.json["message"], "You'd have to be a user to do that.")
        response = h.request("DELETE", f"/v1/experiments/{ids['A']}", people.node1)
        self.assertEqual(response.json["message"], "You'd have to be an admin or a user to do that.")


class LeastPrivilegeTests(SynchronousTestCase):
    """
    What the matrix allows is further limited to the caller's own objects.
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.people = populate(self.h)
        self.a = book(self.h, self.people.alice, options={"nodes": "1", "_secret": "s", "token": "t"})
        self.b = book(self.h, self.people.bob, options={"nodes": "2"})
        self.sa = self.h.run(lambda txn: txn.schedulesOfExperiment(self.a)[0].id)
        self.sb = self.h.run(lambda txn: txn.schedulesOfExperiment(self.b)[0].id)

    def get(self, path: str, user):
        return self.h.request("GET", path, user)

    def test_usersSeeOnlyThemselves(self) -> None:
        """
        C{GET /users} lists only the caller (admins: everyone); other users'
        records and fingerprints are 403 to non-admins.
        """
        alice, bob, admin = self.people.alice, self.people.bob, self.people.admin
        listed = self.get("/v1/users", alice).json
        self.assertEqual([u["id"] for u in listed], [alice.id])
        self.assertEqual(len(self.get("/v1/users", admin).json), 5)
        self.assertEqual([u["id"] for u in self.get("/v1/users", self.people.node1).json], [self.people.node1.id])
        for path in ("", "/schedules", "/experiments", "/journals"):
            self.assertEqual(self.get(f"/v1/users/{bob.id}{path}", alice).code, 403, path)
            self.assertEqual(self.get(f"/v1/users/{bob.id}{path}", admin).code, 200, path)
        body = self.get("/v1/users", alice).body.decode()
        self.assertNotIn(bob.fingerprint, body)

    def test_forbiddenBeforeNotFound(self) -> None:
        """
        A non-admin learns nothing about which user ids exist.
        """
        self.assertEqual(self.get("/v1/users/999", self.people.alice).code, 403)
        self.assertEqual(self.get("/v1/users/999", self.people.admin).code, 404)

    def test_nodeSeesOnlyItself(self) -> None:
        """
        A node reads only its own resource, its schedules and the experiments
        and schedules of tasks on it.
        """
        node1 = self.people.node1
        self.assertEqual([n["id"] for n in self.get("/v1/resources", node1).json], [1])
        for path in ("/v1/resources/2", "/v1/resources/2/schedules", "/v1/resources/2/all",
                     "/v1/resources/2/journals", f"/v1/experiments/{self.b}",
                     f"/v1/experiments/{self.b}/schedules", f"/v1/schedules/{self.sb}"):
            self.assertEqual(self.get(path, node1).code, 403, path)
        for path in ("/v1/resources/1", "/v1/resources/1/schedules", f"/v1/experiments/{self.a}",
                     f"/v1/schedules/{self.sa}"):
            self.assertEqual(self.get(path, node1).code, 200, path)
        self.assertEqual([e["id"] for e in self.get("/v1/experiments", node1).json], [self.a])
        calendar = self.get("/v1/schedules", node1).json
        self.assertEqual({c["nodeid"] for c in calendar}, {1})

    def test_usersSeeOwnExperiments(self) -> None:
        """
        Users list and read their own experiments and schedules only; admins all.
        """
        alice, admin = self.people.alice, self.people.admin
        self.assertEqual([e["id"] for e in self.get("/v1/experiments", alice).json], [self.a])
        self.assertEqual([e["id"] for e in self.get("/v1/experiments", admin).json], [self.a, self.b])
        self.assertEqual(self.get(f"/v1/experiments/{self.b}", alice).code, 403)
        self.assertEqual(self.get(f"/v1/schedules/{self.sb}", alice).code, 403)
        self.assertEqual(self.get(f"/v1/schedules/{self.sb}", admin).code, 200)

    def test_calendarIsShared(self) -> None:
        """
        The compact calendar (no options, no scripts) shows everyone's tasks
        to users, so they can plan.
        """
        calendar = self.get("/v1/schedules", self.people.alice).json
        self.assertEqual({c["ownerid"] for c in calendar}, {self.people.alice.id, self.people.bob.id})

    def test_optionsOnlyForOwnerAdminAndNode(self) -> None:
        """
        Schedules of other users on a node are listed without their
        deployment options; hidden C{_} options never appear outside heartbeats.
        """
        rows = self.get("/v1/resources/1/schedules", self.people.bob).json
        self.assertEqual(len(rows), 1)
        self.assertNotIn("deployment_options", rows[0])
        for caller in (self.people.alice, self.people.admin, self.people.node1):
            rows = self.get("/v1/resources/1/schedules", caller).json
            self.assertEqual(rows[0]["deployment_options"]["token"], "t")
            self.assertNotIn("_secret", rows[0]["deployment_options"])

    def test_nodeAllListsOnlyReadableExperiments(self) -> None:
        """
        C{/resources/<id>/all} leaves out experiments the caller may not read.
        """
        everything = self.get("/v1/resources/2/all", self.people.alice).json
        self.assertEqual(len(everything["schedules"]), 1)
        self.assertEqual(everything["experiments"], [])
        mine = self.get("/v1/resources/2/all", self.people.bob).json
        self.assertEqual([e["id"] for e in mine["experiments"]], [self.b])

    def test_checkHelpers(self) -> None:
        """
        The object rules in isolation.
        """
        from am.core.errors import Forbidden

        alice, admin, node1 = self.people.alice, self.people.admin, self.people.node1
        access.checkExperiment(admin, 99, set())
        access.checkExperiment(alice, alice.id, set())
        access.checkExperiment(node1, 99, {"1"})
        self.assertRaises(Forbidden, access.checkExperiment, alice, 99, {"1"})
        self.assertRaises(Forbidden, access.checkExperiment, node1, alice.id, {"2"})
        self.assertTrue(access.mayReadOptions(node1, 99, "1"))
        self.assertFalse(access.mayReadOptions(node1, 99, "2"))
        self.assertFalse(access.mayReadOptions(None, 99, "1"))
        self.assertRaises(Forbidden, access.checkNode, node1, "2")
        access.checkNode(alice, "2")


class GENIAllocationTests(SynchronousTestCase):
    """
    Schedules allocated through GENI but not provisioned are invisible to nodes.
    """

    def test_invisibleToNodes(self) -> None:
        """
        A node sees neither the allocation nor its experiment; the owner does.
        """
        from am.core.allocation import AllocationRequest

        h = RESTHarness()
        people = populate(h)
        result: list = []
        h.scheduler.allocate(AllocationRequest(
            ownerid=people.alice.id, name="slice", script="docker.io/a/b", nodecount=1, duration=600,
            nodes=["1"], allocateOnly=True, sliceURN="urn:publicid:IDN+x+slice+s",
        )).addBoth(result.append)
        allocation = result[0]
        expid, schedid = allocation.experiment.id, allocation.schedules[0].id
        node1 = people.node1
        self.assertEqual(h.request("GET", "/v1/experiments", node1).json, [])
        self.assertEqual(h.request("GET", f"/v1/experiments/{expid}", node1).code, 403)
        self.assertEqual(h.request("GET", f"/v1/schedules/{schedid}", node1).code, 404)
        self.assertEqual(h.request("GET", "/v1/resources/1/schedules", node1).json, [])
        self.assertEqual(h.request("GET", "/v1/schedules", node1).json, [])
        self.assertEqual(h.request("PUT", "/v1/resources/1", node1, form={"maintenance": "0"}).json["tasks"], [])
        owner = h.request("GET", f"/v1/experiments/{expid}", people.alice).json
        self.assertEqual(owner["summary"], {"allocated": 1})
