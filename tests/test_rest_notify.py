"""
Notifications on the faces: REST C{options.notify}, the outbox listing
C{GET /experiments/<id>/events}, the secret routes; GENI Allocate's
C{marvin_notify} option.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from rest_compat.testing import RESTHarness, book, populate
from tests.geni_helpers import GeniTestCase, requestRSpec
from tests.trust_helpers import NOW

HOOK = "https://hooks.example.org/marvin"


class RESTTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = RESTHarness()
        self.people = populate(self.h)

    def test_eventsListed(self) -> None:
        """
        The owner (and admins) read the outbox with delivery state; the URL
        stays off the node's deployment options.
        """
        expid = book(self.h, self.people.alice, options={"nodes": "1", "notify": HOOK})
        self.h.request("DELETE", f"/v1/experiments/{expid}", self.people.alice)
        for who in (self.people.alice, self.people.admin):
            response = self.h.request("GET", f"/v1/experiments/{expid}/events", who)
            self.assertEqual(response.code, 200, response.body)
            listing = response.json
            self.assertEqual(listing["notify"], HOOK)
            self.assertEqual([e["seq"] for e in listing["events"]], [1, 2, 3])
            self.assertEqual(
                [e["kind"] for e in listing["events"]], ["booking.made", "schedule.status", "experiment.archived"]
            )
            self.assertEqual({e["state"] for e in listing["events"]}, {"pending"})
        for who in (self.people.bob, self.people.node1):
            self.assertEqual(self.h.request("GET", f"/v1/experiments/{expid}/events", who).code, 403)
        options = self.h.run(lambda txn: txn.schedulesOfExperiment(expid)[0].deploymentOptions)
        self.assertNotIn("notify", options)
        # Nor in any rendering of the experiment (a webhook URL may carry a token).
        shown = self.h.request("GET", f"/v1/experiments/{expid}", self.people.node1).json
        self.assertNotIn(HOOK, json.dumps(shown))
        self.assertNotIn(HOOK, self.h.request("GET", f"/v1/experiments/{expid}", self.people.alice).body.decode())

    def test_prunedRowsNotListed(self) -> None:
        """
        After the retention pass, the listing keeps the pending events and the
        newest one, numbered as before; settled older ones are gone.
        """
        expid = book(self.h, self.people.alice, options={"nodes": "1", "notify": HOOK})
        self.h.request("DELETE", f"/v1/experiments/{expid}", self.people.alice)
        scheduler = self.h.scheduler
        claimed = self.successResultOf(scheduler.claimNotifications("w", 10, 30))
        self.assertEqual([d.notification.seq for d in claimed], [1, 2, 3])
        for delivery in (claimed[0], claimed[2]):
            self.successResultOf(scheduler.settleNotification(delivery.notification.id, "w", True))
        self.h.clock.advance(3600)
        before = self.h.request("GET", f"/v1/experiments/{expid}/events", self.people.alice).json
        self.assertEqual([e["seq"] for e in before["events"]], [1, 2, 3])
        self.assertEqual(self.successResultOf(scheduler.pruneNotifications(scheduler.now(), 500)), 1)
        listing = self.h.request("GET", f"/v1/experiments/{expid}/events", self.people.alice).json
        self.assertEqual([(e["seq"], e["state"]) for e in listing["events"]], [(2, "pending"), (3, "delivered")])

    def test_privateTargetRefused(self) -> None:
        response = self.h.request(
            "POST", "/v1/experiments", self.people.alice,
            json_={"name": "e", "nodecount": 1, "nodetypes": "", "script": "docker.io/a/b", "duration": 600,
                   "options": {"notify": "http://10.0.0.5/hook"}},
        )
        self.assertEqual(response.code, 400)
        self.assertEqual(response.json["parameter"], "notify")
        self.assertIn("private address 10.0.0.5", response.json["message"])

    def test_secretReadAndRotate(self) -> None:
        alice = self.people.alice
        path = f"/v1/users/{alice.id}/notify-secret"
        self.assertIsNone(self.h.request("GET", path, alice).json["secret"])
        rotated = self.h.request("POST", path, alice).json["secret"]
        self.assertEqual(self.h.request("GET", path, alice).json["secret"], rotated)
        byAdmin = self.h.request("POST", path, self.people.admin)
        self.assertEqual(byAdmin.code, 200)
        self.assertNotEqual(byAdmin.json["secret"], rotated)
        self.assertEqual(self.h.request("GET", path, self.people.bob).code, 403)
        self.assertEqual(self.h.request("POST", path, self.people.bob).code, 403)
        self.assertEqual(self.h.request("GET", path, self.people.admin).code, 403)


class GeniTests(GeniTestCase):
    def test_allocateOption(self) -> None:
        """
        C{marvin_notify} names the slice's receiver for its Allocate; a
        non-string or a private target is BADARGS with the reason.
        """
        rspec = requestRSpec(["1"], int(NOW) + 3600, int(NOW) + 7200)
        for bad, words in ((5, "marvin_notify"), ("http://127.0.0.1/", "loopback")):
            answer = self.call("Allocate", self.s1, self.sliceCred(), rspec, {"marvin_notify": bad})
            self.assertEqual(answer["code"]["geni_code"], 1, answer)
            self.assertIn(words, answer["output"])
        self.ok("Allocate", self.s1, self.sliceCred(), rspec, {"marvin_notify": HOOK})
        [experiment] = self.store.run(lambda txn: txn.findExperiments())
        self.assertEqual(experiment.options["_notify"], HOOK)
        self.assertEqual(
            [n.kind for n in self.store.run(lambda txn: txn.notificationsOf(experiment.id))], ["booking.made"]
        )
