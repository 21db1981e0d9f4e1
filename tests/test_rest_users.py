"""
Tests for C{/users}: listings, one user, their schedules, experiments and
journals, and creation, quota and fingerprint updates and invalidation by
admins, with the legacy bugs fixed.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rest_compat.testing import RESTHarness, book, fingerprintFor, populate


class UserReadTests(SynchronousTestCase):
    """
    Reading accounts.
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.people = populate(self.h)

    def test_shape(self) -> None:
        """
        A user has the legacy keys with its current quotas.
        """
        alice = self.people.alice
        [record] = self.h.request("GET", f"/v1/users/{alice.id}", alice).json
        self.assertEqual(record, {
            "id": alice.id, "name": "alice", "ssl_id": alice.fingerprint, "role": "user", "project": "monroe",
            "quota_time": 100 * 86400, "quota_data": 10**11, "quota_storage": 2 * 10**11,
        })

    def test_unknown(self) -> None:
        """
        Unknown or malformed ids are 404 for admins.
        """
        for path in ("/v1/users/99", "/v1/users/x", "/v1/users/99/schedules", "/v1/users/99/experiments",
                     "/v1/users/99/journals"):
            response = self.h.request("GET", path, self.people.admin)
            self.assertEqual(response.code, 404, path)
            self.assertEqual(response.json["message"], "Could not find user with this id.")

    def test_schedulesExperimentsJournals(self) -> None:
        """
        A user's schedules, experiments (C{[]} when none, legacy: 404) and journal.
        """
        alice, bob = self.people.alice, self.people.bob
        expid = book(self.h, alice, nodecount=2)
        schedules = self.h.request("GET", f"/v1/users/{alice.id}/schedules", alice).json
        self.assertEqual([s["expid"] for s in schedules], [expid, expid])
        self.assertIn("deployment_options", schedules[0])
        experiments = self.h.request("GET", f"/v1/users/{alice.id}/experiments", alice).json
        self.assertEqual([e["id"] for e in experiments], [expid])
        none = self.h.request("GET", f"/v1/users/{bob.id}/experiments", bob)
        self.assertEqual((none.code, none.json), (200, []))
        self.h.request("DELETE", f"/v1/experiments/{expid}", alice)
        self.assertEqual(self.h.request("GET", f"/v1/users/{alice.id}/experiments", alice).json, [])
        hidden = self.h.request("GET", f"/v1/users/{alice.id}/experiments?showHidden=1", alice).json
        self.assertEqual([e["status"] for e in hidden], ["archived"])
        journal = self.h.request("GET", f"/v1/users/{alice.id}/journals", alice).json
        self.assertEqual([j["reason"] for j in journal][:3], ["user created"] * 3)
        charged = [j for j in journal if j["quota"] == "time" and j["delta"] < 0]
        self.assertEqual(charged[0]["delta"], -1200)
        self.assertEqual(set(journal[0]), {"ownerid", "quota", "delta", "new_value", "reason", "timestamp"})

    def test_invalidatedShownAsInvalid(self) -> None:
        """
        Admins see invalidated users with the legacy role C{invalid}.
        """
        self.h.request("DELETE", f"/v1/users/{self.people.bob.id}", self.people.admin)
        users = {u["id"]: u for u in self.h.request("GET", "/v1/users", self.people.admin).json}
        self.assertEqual(users[self.people.bob.id]["role"], "invalid")


class UserAdminTests(SynchronousTestCase):
    """
    Creating, updating and invalidating accounts.
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.people = populate(self.h)
        self.admin = self.people.admin

    def create(self, **form):
        return self.h.request("POST", "/v1/users", self.admin, form=form)

    def test_create(self) -> None:
        """
        201 with C{Location: /v1/users/<id>} (legacy: C{/user/<id>}); the new
        user can authenticate at once.
        """
        response = self.create(name=" carol ", ssl=fingerprintFor("carol").upper(), role="user", project="x")
        self.assertEqual(response.code, 201, response.body)
        userid = response.json["id"]
        self.assertEqual(response.json["message"], f"User {userid} created.")
        self.assertEqual(response.header("location"), f"/v1/users/{userid}")
        auth = self.h.request("GET", "/v1/backend/auth", headers={
            "VERIFIED": "SUCCESS", "SSL_FINGERPRINT": fingerprintFor("carol")})
        self.assertEqual(auth.json["user"]["name"], "carol")

    def test_createFromJSONWithURN(self) -> None:
        """
        A JSON body works, and a GENI URN may stand in for the fingerprint.
        """
        response = self.h.request("POST", "/v1/users", self.admin, json_={
            "name": "dave", "role": "user", "urn": "urn:publicid:IDN+example+user+dave"})
        self.assertEqual(response.code, 201, response.body)

    def test_createNode(self) -> None:
        """
        A node user is named C{Node <id>} and speaks for that node.
        """
        response = self.create(name="Node 3", ssl=fingerprintFor("n3"), role="node")
        self.assertEqual(response.code, 201)
        bad = self.create(name="node three", ssl=fingerprintFor("n3b"), role="node")
        self.assertEqual(bad.code, 400)

    def test_neverReplaces(self) -> None:
        """
        An existing fingerprint, or name and project, is 409 and the other
        user is untouched (legacy: silently replaced).
        """
        taken = self.create(name="eve", ssl=self.people.alice.fingerprint, role="user")
        self.assertEqual(taken.code, 409)
        self.assertEqual(taken.json["message"], "A user with this fingerprint exists already.")
        same = self.create(name="alice", ssl=fingerprintFor("alice2"), role="user", project="monroe")
        self.assertEqual(same.code, 409)
        [alice] = self.h.request("GET", f"/v1/users/{self.people.alice.id}", self.admin).json
        self.assertEqual(alice["ssl_id"], self.people.alice.fingerprint)

    def test_createErrors(self) -> None:
        """
        Missing parameters, unknown roles and malformed fingerprints are 400.
        """
        missing = self.create(name="x")
        self.assertEqual(missing.code, 400)
        self.assertEqual(missing.json["missing"], ["role", "ssl"])
        self.assertEqual(self.create(name="x", ssl=fingerprintFor("x"), role="whatever").code, 400)
        self.assertEqual(self.create(name="x", ssl="abc", role="user").code, 400)
        wrongType = self.h.request("POST", "/v1/users", self.admin, json_={"name": ["x"], "role": "user", "ssl": "a"})
        self.assertEqual((wrongType.code, wrongType.json["parameter"]), (400, "name"))

    def test_quotaOnly(self) -> None:
        """
        A quota update without C{ssl} works (legacy: 500 and a half-done update).
        """
        alice = self.people.alice
        response = self.h.request("PUT", f"/v1/users/{alice.id}", self.admin, form={"time": "3600", "data": "7"})
        self.assertEqual((response.code, response.json), (200, {"message": "Updated."}))
        [record] = self.h.request("GET", f"/v1/users/{alice.id}", alice).json
        self.assertEqual((record["quota_time"], record["quota_data"], record["ssl_id"]),
                         (3600, 7, alice.fingerprint))

    def test_fingerprintUpdate(self) -> None:
        """
        C{ssl} changes the certificate the user authenticates with.
        """
        alice = self.people.alice
        new = fingerprintFor("alice-new")
        self.assertEqual(self.h.request("PUT", f"/v1/users/{alice.id}", self.admin, json_={"ssl": new}).code, 200)
        self.assertEqual(self.h.request("GET", "/v1/resources", alice).code, 401)
        auth = self.h.request("GET", "/v1/backend/auth", headers={"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": new})
        self.assertEqual(auth.json["user"]["id"], alice.id)

    def test_updateErrors(self) -> None:
        """
        Nothing to update, bad values, taken fingerprints and unknown users
        are refused without a partial update.
        """
        alice = self.people.alice
        cases = [
            ({}, 400), ({"time": "-1"}, 400), ({"time": "lots"}, 400), ({"ssl": "zz"}, 400),
            ({"ssl": self.people.bob.fingerprint}, 409), ({"time": "5", "ssl": "zz"}, 400),
        ]
        for form, code in cases:
            response = self.h.request("PUT", f"/v1/users/{alice.id}", self.admin, form=form)
            self.assertEqual(response.code, code, form)
        [record] = self.h.request("GET", f"/v1/users/{alice.id}", alice).json
        self.assertEqual(record["quota_time"], 100 * 86400)
        self.assertEqual(self.h.request("PUT", "/v1/users/99", self.admin, form={"time": "5"}).code, 404)

    def test_invalidate(self) -> None:
        """
        DELETE invalidates: the user is refused everywhere afterwards.
        """
        bob = self.people.bob
        response = self.h.request("DELETE", f"/v1/users/{bob.id}", self.admin)
        self.assertEqual((response.code, response.json), (200, {"message": "Ok. Invalidated user certificate."}))
        self.assertEqual(self.h.request("GET", "/v1/users", bob).code, 401)
        self.assertEqual(self.h.request("POST", "/v1/experiments", bob, json_={}).code, 401)
        self.assertEqual(self.h.request("DELETE", "/v1/users/99", self.admin).code, 404)
