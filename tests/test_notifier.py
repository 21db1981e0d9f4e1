"""
The controller's deliverer (L{am.ctl.notifier}) on a memory reactor: it is
kicked by the core's events, refuses private targets after resolving the
name (no connection is made), pins the connection to the address it
checked, and signs what it sends; and the C{notifications} configuration.
"""

from __future__ import annotations

import json

import attrs
from twisted.internet.defer import succeed
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from am.core.notifyurl import sign
from am.core.policy import Policy
from am.core.requests import AllocationRequest
from am.core.scheduler import Scheduler
from am.ctl.config import ConfigError, parseConfig
from am.ctl.notifier import Notifier, request
from am.ctl.notifyconfig import NotifierSettings
from am.testing import MemoryStore, demoNodes

NOW = 1_000_080_000


class DelivererTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = MemoryReactorClock()
        self.reactor.advance(NOW)
        store = MemoryStore()
        for node in demoNodes(2, NOW):
            store.run(lambda txn, n=node: txn.putNode(n))
        self.store = store
        self.scheduler = Scheduler(store, self.reactor, Policy(maintenance=(), notifyPrivate=True))
        self.alice = self.successResultOf(self.scheduler.addUser(name="alice", role="user", fingerprint="a" * 40))
        self.resolved: list[str] = []

    def notifier(self, allowPrivate: bool, answer: list[str]) -> Notifier:
        def resolve(host: str, port: int):
            self.resolved.append(f"{host}:{port}")
            return succeed(answer)

        notifier = Notifier(lambda: self.scheduler, self.reactor, NotifierSettings(allowPrivate=allowPrivate), resolve)
        notifier.startService()
        self.addCleanup(notifier.stopService)
        return notifier

    def book(self, url: str) -> int:
        booked = self.successResultOf(self.scheduler.allocate(AllocationRequest(
            ownerid=self.alice.id, name="e", script="docker.io/a/b", nodecount=1, duration=600, notify=url,
        )))
        return booked.experiment.id

    def rows(self, expid: int):
        return self.store.run(lambda txn: txn.notificationsOf(expid))

    def test_privateAddressRefusedAtDelivery(self) -> None:
        """
        A name that resolves to a private address is refused when
        delivering, whatever the URL looked like: no connection, the row
        failed for good with the reason.
        """
        self.notifier(allowPrivate=False, answer=["93.184.216.34", "10.0.0.7"])
        expid = self.book("https://hooks.example.org/x")
        self.reactor.advance(0)
        self.assertEqual(self.resolved, ["hooks.example.org:443"])
        self.assertEqual(self.reactor.tcpClients, [])
        [row] = self.rows(expid)
        self.assertEqual((row.state, row.attempts), ("failed", 1))
        self.assertIn("private address 10.0.0.7", row.lastError)

    def test_connectsToTheCheckedAddress(self) -> None:
        """
        With the operator's leave a private target is called, at the address
        resolved (not by resolving again when connecting).
        """
        self.notifier(allowPrivate=True, answer=["10.0.0.7"])
        self.book("http://hooks.internal:8080/x")
        self.reactor.advance(0)
        [(host, port, *_)] = self.reactor.tcpClients
        self.assertEqual((host, port), ("10.0.0.7", 8080))

    def test_stopReleasesClaims(self) -> None:
        """
        Stopping while a POST is under way gives the row back (due now, no
        lease), so a restarted controller sends it without waiting.
        """
        notifier = self.notifier(allowPrivate=True, answer=["10.0.0.7"])
        expid = self.book("http://hooks.internal:8080/x")
        self.reactor.advance(0)
        [row] = self.rows(expid)
        self.assertEqual(row.leaseOwner, notifier.worker)
        self.successResultOf(notifier.stopService())
        [row] = self.rows(expid)
        self.assertEqual((row.state, row.leaseOwner, row.leaseUntil, row.attempts), ("pending", "", 0, 0))

    def test_idleLooksFollowTheOutbox(self) -> None:
        """
        With nothing due the deliverer looks again after C{poll} seconds; an
        event of a notified experiment makes it look at once.
        """
        notifier = self.notifier(allowPrivate=False, answer=["10.0.0.7"])
        self.reactor.advance(0)
        [call] = self.reactor.getDelayedCalls()
        self.assertEqual(call.getTime(), self.reactor.seconds() + notifier.settings.poll)
        self.book("https://hooks.example.org/x")
        self.assertEqual(self.resolved, [])
        self.reactor.advance(0)
        self.assertEqual(self.resolved, ["hooks.example.org:443"])

    def test_unfollowedExperimentsLeaveItIdle(self) -> None:
        """
        A change of an experiment without a notify URL writes no row, so the
        deliverer does not look (no claim, no read): only its poll stays planned.
        """
        notifier = self.notifier(allowPrivate=False, answer=["10.0.0.7"])
        self.reactor.advance(0)
        [call] = self.reactor.getDelayedCalls()
        looks: list[int] = []
        claim = self.scheduler.claimNotifications
        self.patch(self.scheduler, "claimNotifications", lambda *a, **k: looks.append(1) or claim(*a, **k))
        booked = self.successResultOf(self.scheduler.allocate(AllocationRequest(
            ownerid=self.alice.id, name="quiet", script="docker.io/a/b", nodecount=1, duration=600,
        )))
        self.successResultOf(self.scheduler.deleteExperiment(booked.experiment.id, self.alice.id))
        self.reactor.advance(0)
        self.assertEqual(looks, [])
        self.assertEqual(self.reactor.getDelayedCalls(), [call])
        self.assertEqual(call.getTime(), self.reactor.seconds() + notifier.settings.poll)

    def test_signedRequest(self) -> None:
        """
        The body is the envelope; the headers carry its identity and the
        signature over timestamp and body.
        """
        expid = self.book("https://hooks.example.org/x")
        [row] = self.rows(expid)
        body, headers = request(row, "s3cret", NOW)
        sent = json.loads(body)
        self.assertEqual((sent["id"], sent["seq"], sent["kind"]), (row.eventid, 1, "booking.made"))
        self.assertEqual(headers["X-Marvin-Delivery"], row.eventid)
        self.assertEqual(headers["X-Marvin-Sequence"], "1")
        self.assertEqual(headers["X-Marvin-Signature"], sign("s3cret", NOW, body))


class ConfigTests(SynchronousTestCase):
    def test_section(self) -> None:
        config = parseConfig({
            "database": "m.db", "listen": {"http": {}},
            "notifications": {"allow_private": True, "retry_for": 600, "backoff": 2, "backoff_max": 30,
                              "wait_max": 60, "timeout": 3, "batch": 10, "poll": 5, "deliver": False,
                              "keep": 0},
        }, checkFiles=False)
        self.assertEqual(
            attrs.astuple(config.notifier), (3.0, 10, 5.0, False, True, 0),
        )
        policy = config.policy
        self.assertEqual(
            (policy.notifyPrivate, policy.notifyRetryFor, policy.notifyBackoff, policy.notifyBackoffMax,
             policy.waitMax),
            (True, 600, 2, 30, 60),
        )

    def test_defaultsAndErrors(self) -> None:
        config = parseConfig({"database": "m.db", "listen": {"http": {}}}, checkFiles=False)
        self.assertEqual((config.notifier.deliver, config.policy.notifyPrivate, config.policy.waitMax), (True, False, 300))
        self.assertEqual(config.notifier.keep, 30 * 86400)
        short = parseConfig({"database": "m.db", "listen": {"http": {}}, "notifications": {"keep": 0.5}},
                            checkFiles=False)
        self.assertEqual(short.notifier.keep, 1)
        for section, words in (
            ({"allow_private": "yes"}, "notifications.allow_private"),
            ({"wait_max": 0}, "notifications.wait_max"),
            ({"keep": -1}, "notifications.keep"),
            ({"keep": "30d"}, "notifications.keep"),
            ({"keep": True}, "notifications.keep"),
            ({"colour": 1}, "colour"),
        ):
            with self.assertRaises(ConfigError) as caught:
                parseConfig({"database": "m.db", "listen": {"http": {}}, "notifications": section}, checkFiles=False)
            self.assertIn(words, str(caught.exception))
