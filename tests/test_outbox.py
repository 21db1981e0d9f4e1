"""
The notification outbox (L{am.core.outbox}) and its pure checks
(L{am.core.notifyurl}): rows written in the transaction of the change,
numbered per experiment; leases, backoff and giving up on the injected
clock; signatures; the URL and address rules against request forgery.
"""

from __future__ import annotations

import hashlib
import hmac

import attrs

from am.core import outbox
from am.core.errors import BadRequest, Forbidden
from am.core.events import NotificationQueued
from am.core.model import Notification
from am.core.notifyurl import addressRefused, checkURL, sign
from am.core.policy import Policy
from tests.core_helpers import CoreTestCase

HOOK = "https://hooks.example.org/marvin"


class RecordTests(CoreTestCase):
    """
    Which changes become outbox rows, and that they commit with the change.
    """

    def rows(self, expid: int):
        return self.inTxn(lambda txn: txn.notificationsOf(expid))

    def test_statusChangesOfANotifiedExperiment(self) -> None:
        """
        Booking, each schedule status change and the archiving each write one
        row, numbered 1, 2, ... with a unique event id; the body is the event.
        """
        booked = self.book(notify=HOOK, nodecount=2)
        expid = booked.experiment.id
        self.successResultOf(self.scheduler.deleteExperiment(expid, self.alice.id))
        rows = self.rows(expid)
        self.assertEqual(
            [r.kind for r in rows],
            ["booking.made", "schedule.status", "schedule.status", "experiment.archived"],
        )
        self.assertEqual([r.seq for r in rows], [1, 2, 3, 4])
        self.assertEqual(len({r.eventid for r in rows}), 4)
        self.assertEqual({r.url for r in rows}, {HOOK})
        self.assertEqual(rows[1].body["new"], "canceled")
        self.assertEqual({r.state for r in rows}, {"pending"})
        # The owner got a secret with the first row.
        self.assertIsNotNone(self.inTxn(lambda txn: txn.getNotifySecret(self.alice.id)))

    def test_noURLNoRows(self) -> None:
        """
        An experiment without C{notify} writes nothing to the outbox (and
        tells nobody it did).
        """
        seen: list = []
        self.scheduler.events.subscribe(seen.append)
        expid = self.book().experiment.id
        self.successResultOf(self.scheduler.deleteExperiment(expid, self.alice.id))
        self.assertEqual(self.rows(expid), [])
        self.assertNotIn("notification.queued", [e.kind for e in seen])

    def test_queuedRowsAreAnnounced(self) -> None:
        """
        After commit, each row written is announced by a
        L{NotificationQueued} event after the command's own events, naming
        the experiment and the kind of event it carries.
        """
        seen: list = []
        self.scheduler.events.subscribe(seen.append)
        expid = self.book(notify=HOOK).experiment.id
        self.assertEqual([e.kind for e in seen], ["booking.made", "notification.queued"])
        self.assertIsInstance(seen[1], NotificationQueued)
        self.assertEqual((seen[1].expid, seen[1].event), (expid, "booking.made"))

    def test_rowsRollBackWithTheChange(self) -> None:
        """
        A failure in the same transaction after the rows were written leaves
        neither the change nor its rows: they are durable together or not at all.
        """
        expid = self.book(notify=HOOK).experiment.id

        def broken(txn, events):
            raise RuntimeError("disk full")

        self.scheduler.events.subscribeInTransaction(broken)
        self.failureResultOf(self.scheduler.deleteExperiment(expid, self.alice.id), RuntimeError)
        self.assertEqual([r.kind for r in self.rows(expid)], ["booking.made"])
        statuses = self.inTxn(lambda txn: [s.status for s in txn.schedulesOfExperiment(expid)])
        self.assertEqual(statuses, ["defined"])

    def test_badURLRefusesTheBooking(self) -> None:
        """
        A URL that may not be a target refuses the booking (400), before any row.
        """
        for bad in ("ftp://example.org/", "http://127.0.0.1:8080/", "http://user:pw@example.org/", "x" * 3000):
            error = self.refused(BadRequest, notify=bad)
            self.assertIn("notify", error.message)
        self.assertEqual(self.inTxn(lambda txn: txn.findExperiments()), [])


class DeliveryStateTests(CoreTestCase):
    """
    Claims, leases, settling and backoff, on the scheduler's clock.
    """

    policy = Policy(maintenance=(), notifyBackoff=10, notifyBackoffMax=40, notifyRetryFor=100)

    def setUp(self) -> None:
        super().setUp()
        self.expid = self.book(notify=HOOK).experiment.id

    def claim(self, worker: str = "w1", lease: int = 30):
        return self.successResultOf(self.scheduler.claimNotifications(worker, 10, lease))

    def test_leaseKeepsOthersOff(self) -> None:
        """
        A claimed row is nobody else's until its lease runs out.
        """
        [first] = self.claim("w1")
        self.assertEqual(first.notification.kind, "booking.made")
        self.assertEqual(first.secret, self.inTxn(lambda txn: txn.getNotifySecret(self.alice.id)))
        self.assertEqual(self.claim("w2"), [])
        self.clock.advance(30)
        [again] = self.claim("w2")
        self.assertEqual(again.notification.id, first.notification.id)
        # The first deliverer's late answer changes nothing now.
        self.assertIsNone(self.successResultOf(self.scheduler.settleNotification(first.notification.id, "w1", True)))
        done = self.successResultOf(self.scheduler.settleNotification(again.notification.id, "w2", True))
        self.assertEqual((done.state, done.attempts, done.delivered), ("delivered", 1, self.scheduler.now()))
        self.assertEqual(self.claim("w3"), [])

    def test_backoffDoublesThenGivesUp(self) -> None:
        """
        Each failure makes the row due again after 10, 20, 40 s (the cap)...
        while that stays within the retry bound (100 s after the event): the
        failure after which the next try would be later fails the row.
        """
        dues = []
        states = []
        while True:
            claimed = self.claim()
            if not claimed:
                pending = self.inTxn(lambda txn: txn.notificationsOf(self.expid))[0]
                if pending.state != "pending":
                    break
                self.clock.advance(pending.due - self.scheduler.now())
                continue
            entry = self.successResultOf(
                self.scheduler.settleNotification(claimed[0].notification.id, "w1", False, "HTTP 503")
            )
            states.append(entry.state)
            if entry.state == "pending":
                dues.append(entry.due - self.scheduler.now())
        self.assertEqual(dues, [10, 20, 40])
        self.assertEqual(states, ["pending", "pending", "pending", "failed"])
        final = self.inTxn(lambda txn: txn.notificationsOf(self.expid))[0]
        self.assertEqual(final.lastError, "HTTP 503")
        self.assertLessEqual(self.scheduler.now(), final.created + 100)

    def test_releaseGivesBackClaims(self) -> None:
        """
        A stopping deliverer's unsettled claims are due again at once, for
        anyone; what it settled stays settled.
        """
        self.book(notify=HOOK)
        first, second = self.claim("w1")
        self.successResultOf(self.scheduler.settleNotification(first.notification.id, "w1", True))
        self.assertEqual(self.successResultOf(self.scheduler.releaseNotifications("w1")), 1)
        [again] = self.claim("w2")
        self.assertEqual(again.notification.id, second.notification.id)

    def test_permanentFailure(self) -> None:
        """
        A refused target is given up at once.
        """
        [claimed] = self.claim()
        entry = self.successResultOf(
            self.scheduler.settleNotification(claimed.notification.id, "w1", False, "private", permanent=True)
        )
        self.assertEqual((entry.state, entry.attempts), ("failed", 1))

    def test_nextDue(self) -> None:
        """
        The deliverer's timer: the earliest due row, none once all are settled.
        """
        self.assertEqual(self.successResultOf(self.scheduler.nextNotificationDue()), self.scheduler.now())
        [claimed] = self.claim()
        self.successResultOf(self.scheduler.settleNotification(claimed.notification.id, "w1", True))
        self.assertIsNone(self.successResultOf(self.scheduler.nextNotificationDue()))


class PruneTests(CoreTestCase):
    """
    Retention (L{outbox.prune}): settled rows of events before the cut go,
    in bounded chunks, oldest first; pending rows and each experiment's
    newest stay, so numbering never restarts.
    """

    def rows(self, expid: int) -> list:
        return self.inTxn(lambda txn: txn.notificationsOf(expid))

    def settleAll(self, failed: tuple[int, ...] = (), pending: tuple[int, ...] = ()) -> None:
        """
        Deliver every due row, except the ids in C{failed} (failed for good)
        and C{pending} (given back unsettled).
        """
        for delivery in self.successResultOf(self.scheduler.claimNotifications("w", 1000, 30)):
            outid = delivery.notification.id
            if outid in pending:
                continue
            self.successResultOf(self.scheduler.settleNotification(
                outid, "w", outid not in failed, "refused", permanent=outid in failed,
            ))
        self.successResultOf(self.scheduler.releaseNotifications("w"))

    def prune(self, before: int, limit: int = 500) -> int:
        return self.successResultOf(self.scheduler.pruneNotifications(before, limit))

    def test_rule(self) -> None:
        """
        Delivered and failed-for-good rows of events before the cut are
        deleted; a pending one, newer ones and the experiment's newest stay.
        """
        old = self.book(notify=HOOK, nodecount=2).experiment.id
        self.successResultOf(self.scheduler.deleteExperiment(old, self.alice.id))
        first, second, third, newest = (r.id for r in self.rows(old))
        self.settleAll(failed=(second,), pending=(third,))
        self.assertEqual([r.state for r in self.rows(old)], ["delivered", "failed", "pending", "delivered"])
        self.clock.advance(100)
        recent = self.book(notify=HOOK).experiment.id
        self.successResultOf(self.scheduler.deleteExperiment(recent, self.alice.id))
        self.settleAll(pending=(third,))
        cut = self.scheduler.now() - 50
        self.assertEqual(self.prune(cut), 2)
        self.assertEqual([r.id for r in self.rows(old)], [third, newest])
        self.assertEqual([r.seq for r in self.rows(old)], [3, 4])
        self.assertEqual([r.seq for r in self.rows(recent)], [1, 2, 3])
        self.assertEqual(self.prune(cut), 0)
        # A row is not old at the cut itself: only events strictly before it go.
        self.assertEqual(self.prune(self.scheduler.now()), 0)
        self.assertEqual(self.prune(self.scheduler.now() + 1), 2)
        self.assertEqual([r.seq for r in self.rows(recent)], [3])
        self.assertEqual([(r.id, r.state) for r in self.rows(old)], [(third, "pending"), (newest, "delivered")])

    def test_numberingContinues(self) -> None:
        """
        The newest row of an experiment survives every prune, so its next
        event is numbered after it, not 1 again (receivers order and
        de-duplicate by C{seq}).
        """
        expid = self.book(notify=HOOK).experiment.id
        self.settleAll()
        self.clock.advance(10)
        self.assertEqual(self.prune(self.scheduler.now()), 0)
        self.successResultOf(self.scheduler.deleteExperiment(expid, self.alice.id))
        self.settleAll()
        self.clock.advance(10)
        self.assertEqual(self.prune(self.scheduler.now()), 2)
        self.assertEqual([r.seq for r in self.rows(expid)], [3])
        entry = Notification(expid=expid, ownerid=self.alice.id, url=HOOK, kind="schedule.status",
                             body={}, created=self.scheduler.now(), eventid="next", due=self.scheduler.now())
        self.inTxn(lambda txn: txn.addNotification(entry))
        self.assertEqual([r.seq for r in self.rows(expid)], [3, 4])

    def test_chunks(self) -> None:
        """
        At most C{limit} rows per command, the oldest first; a bad limit is refused.
        """
        expids = []
        for _ in range(3):
            expid = self.book(notify=HOOK, nodecount=2).experiment.id
            self.successResultOf(self.scheduler.deleteExperiment(expid, self.alice.id))
            expids.append(expid)
        self.settleAll()
        self.clock.advance(10)
        before = self.scheduler.now()
        oldest = [r.id for expid in expids for r in self.rows(expid)[:-1]]
        self.assertEqual([self.prune(before, 4) for _ in range(4)], [4, 4, 1, 0])
        self.assertEqual([[r.seq for r in self.rows(expid)] for expid in expids], [[4], [4], [4]])
        self.assertEqual(len(oldest), 9)
        self.failureResultOf(self.scheduler.pruneNotifications(before, 0), BadRequest)

    def test_chunksOldestFirst(self) -> None:
        """
        One chunk takes the oldest rows (by id: the order they were written).
        """
        first = self.book(notify=HOOK, nodecount=2).experiment.id
        self.successResultOf(self.scheduler.deleteExperiment(first, self.alice.id))
        second = self.book(notify=HOOK, nodecount=2).experiment.id
        self.successResultOf(self.scheduler.deleteExperiment(second, self.alice.id))
        self.settleAll()
        self.clock.advance(10)
        self.assertEqual(self.prune(self.scheduler.now(), 3), 3)
        self.assertEqual([r.seq for r in self.rows(first)], [4])
        self.assertEqual([r.seq for r in self.rows(second)], [1, 2, 3, 4])


class SecretTests(CoreTestCase):
    """
    Per-user secrets: rotated through a command, read by their user only.
    """

    def test_rotateAndRead(self) -> None:
        self.assertIsNone(self.successResultOf(self.scheduler.notifySecret(self.alice.id, self.alice.id)))
        first = self.successResultOf(self.scheduler.rotateNotifySecret(self.alice.id, self.alice.id))
        self.assertEqual(self.successResultOf(self.scheduler.notifySecret(self.alice.id, self.alice.id)), first)
        second = self.successResultOf(self.scheduler.rotateNotifySecret(self.alice.id, self.admin.id))
        self.assertNotEqual(first, second)
        self.assertGreaterEqual(len(second), 40)

    def test_othersMayNot(self) -> None:
        self.failureResultOf(self.scheduler.rotateNotifySecret(self.alice.id, self.bob.id), Forbidden)
        self.failureResultOf(self.scheduler.notifySecret(self.alice.id, self.bob.id), Forbidden)
        self.failureResultOf(self.scheduler.notifySecret(self.alice.id, self.admin.id), Forbidden)


class SignatureTests(CoreTestCase):
    def test_hmacOverTimestampAndBody(self) -> None:
        """
        C{sha256=} HMAC-SHA256 of C{"<timestamp>." + body}: what a receiver recomputes.
        """
        body = b'{"id":"x","seq":1}'
        expected = hmac.new(b"s3cret", b"1700000000." + body, hashlib.sha256).hexdigest()
        self.assertEqual(sign("s3cret", 1700000000, body), "sha256=" + expected)
        self.assertNotEqual(sign("other", 1700000000, body), sign("s3cret", 1700000000, body))
        self.assertNotEqual(sign("s3cret", 1700000001, body), sign("s3cret", 1700000000, body))

    def test_envelope(self) -> None:
        expid = self.book(notify=HOOK).experiment.id
        [row] = self.inTxn(lambda txn: txn.notificationsOf(expid))
        sent = outbox.envelope(row)
        self.assertEqual(
            set(sent), {"id", "seq", "experiment", "kind", "time", "event"},
        )
        self.assertEqual((sent["seq"], sent["experiment"], sent["kind"]), (1, expid, "booking.made"))


class TargetTests(CoreTestCase):
    """
    No request forgery: what may be a target.
    """

    def test_addresses(self) -> None:
        for address in (
            "127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1",
            "0.0.0.0", "224.0.0.1", "::1", "fe80::1", "fc00::1", "::ffff:127.0.0.1", "::ffff:10.0.0.1",
        ):
            self.assertIsNotNone(addressRefused(address), address)
        for address in ("93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946", "::ffff:93.184.216.34"):
            self.assertIsNone(addressRefused(address), address)

    def test_urls(self) -> None:
        strict = Policy()
        for bad in (
            "http://localhost/", "http://app.localhost:8080/x", "http://[::1]/", "http://169.254.169.254/latest",
            "gopher://example.org/", "http:///nohost", "http://a:b@example.org/", "", 42, "http://example.org:99999/",
        ):
            with self.assertRaises(BadRequest):
                checkURL(bad, strict)
        self.assertEqual(checkURL(" https://example.org/h ", strict), "https://example.org/h")
        self.assertEqual(checkURL("http://93.184.216.34/", strict), "http://93.184.216.34/")
        allowed = attrs.evolve(strict, notifyPrivate=True)
        self.assertEqual(checkURL("http://127.0.0.1:9/x", allowed), "http://127.0.0.1:9/x")
