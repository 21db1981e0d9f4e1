# -*- test-case-name: tests.test_outbox -*-
"""
Notifications: the rules of the persistent outbox (docs/notifications.md).

An experiment may name a C{notify} URL (kept in its options). Every core
event that names an experiment with such a URL (its schedules' status
changes, its archiving, a moved window, a healed booking...) becomes one
outbox row, written by L{record} inside the transaction of the change it
reports, so the row commits or rolls back with the change itself: no event
is lost across a crash, and none is sent for a change that did not happen.

A deliverer (the controller's L{am.ctl.notifier}) claims due rows with a
lease (L{claim}: no two controllers send one row at once), POSTs them and
settles each (L{settle}): delivered, or retried with exponential backoff
until C{Policy.notifyRetryFor} after the event, then failed. Nothing here
touches the network: L{am.core.notifyurl} has the pure checks and the
signature the deliverer applies.
"""

from __future__ import annotations

import secrets
from typing import Any, Iterable, Optional

import attrs

from am.core.accounts import actingUser
from am.core.errors import BadRequest, Forbidden
from am.core.events import Event, NotificationQueued
from am.core.interfaces import IStoreTransaction
from am.core.model import Experiment, Notification
from am.core.notifyurl import STORED
from am.core.policy import Policy
from am.core.values import identifier

PENDING, DELIVERED, FAILED = "pending", "delivered", "failed"


@attrs.frozen
class Delivery:
    """
    A claimed notification with what its deliverer needs: the owner's secret.
    """

    notification: Notification
    secret: str


def envelope(entry: Notification) -> dict[str, Any]:
    """
    What is POSTed (and listed to the owner): the event with its delivery identity.
    """
    return {
        "id": entry.eventid, "seq": entry.seq, "experiment": entry.expid, "kind": entry.kind,
        "time": entry.body.get("time", entry.created), "event": entry.body,
    }


def backoff(attempts: int, policy: Policy) -> int:
    """
    Seconds before attempt C{attempts + 1}: the base doubled per failure, capped.
    """
    return int(min(policy.notifyBackoffMax, policy.notifyBackoff * 2 ** max(0, attempts - 1)))


def newSecret() -> str:
    return secrets.token_urlsafe(32)


def ensureSecret(txn: IStoreTransaction, userid: int, now: int) -> str:
    """
    The user's secret, made on first need (the owner reads it from the API).
    """
    secret = txn.getNotifySecret(userid)
    if secret is None:
        secret = newSecret()
        txn.putNotifySecret(userid, secret, now)
    return secret


def record(txn: IStoreTransaction, events: Iterable[Event]) -> list[NotificationQueued]:
    """
    The in-transaction subscriber: one outbox row for each event naming an
    experiment that has a notify URL. Runs before commit, in the command's
    transaction; a failure here rolls the whole command back. Returns one
    L{NotificationQueued} per row (delivered after commit: the deliverer's cue).
    """
    experiments: dict[int, Optional[Experiment]] = {}
    written = []
    for event in events:
        expid = getattr(event, "expid", None)
        if not isinstance(expid, int):
            continue
        if expid not in experiments:
            experiments[expid] = txn.getExperiment(expid)
        experiment = experiments[expid]
        url = notifyURL(experiment) if experiment is not None else None
        if experiment is None or url is None:
            continue
        ensureSecret(txn, experiment.ownerid, event.time)
        entry = Notification(
            expid=expid, ownerid=experiment.ownerid, url=url, kind=event.kind, body=event.asDict(),
            created=event.time, eventid=secrets.token_hex(16), due=event.time,
        )
        txn.addNotification(entry)
        written.append(NotificationQueued(time=event.time, actor=event.actor, expid=expid, event=event.kind))
    return written


def claim(
    txn: IStoreTransaction, worker: str, now: int, limit: int, lease: int
) -> list[Delivery]:
    """
    Take up to C{limit} due notifications for C{worker} until C{now + lease}:
    another controller sees them again only once the lease ran out (a
    deliverer that died), so no two send one row at the same time.
    """
    claimed = []
    for entry in txn.dueNotifications(now, limit):
        entry.leaseOwner, entry.leaseUntil = worker, now + lease
        txn.updateNotification(entry)
        claimed.append(Delivery(entry, ensureSecret(txn, entry.ownerid, now)))
    return claimed


def settle(
    txn: IStoreTransaction, outid: int, worker: str, ok: bool, error: str, now: int, policy: Policy,
    permanent: bool = False,
) -> Optional[Notification]:
    """
    Record one attempt of C{worker}: delivered, or failed and due again after
    L{backoff}, or given up (C{permanent}, or past C{policy.notifyRetryFor}).
    An attempt whose lease was taken over meanwhile changes nothing.

    @return: the notification as it is now, or C{None} if not C{worker}'s.
    """
    entry = txn.getNotification(outid)
    if entry is None or entry.state != PENDING or entry.leaseOwner != worker:
        return None
    entry.attempts += 1
    entry.leaseOwner, entry.leaseUntil = "", 0
    if ok:
        entry.state, entry.delivered, entry.lastError = DELIVERED, now, ""
    else:
        entry.lastError = error[:500]
        due = now + backoff(entry.attempts, policy)
        if permanent or due > entry.created + policy.notifyRetryFor:
            entry.state = FAILED
        else:
            entry.due = due
    txn.updateNotification(entry)
    return entry


def release(txn: IStoreTransaction, worker: str) -> int:
    """
    A deliverer that stops gives back what it claimed and did not settle:
    due again at once, for any controller (an attempt cut short may have
    arrived: receivers de-duplicate).

    @return: how many.
    """
    leased = txn.leasedNotifications(worker)
    for entry in leased:
        entry.leaseOwner, entry.leaseUntil = "", 0
        txn.updateNotification(entry)
    return len(leased)


def nextDue(txn: IStoreTransaction) -> Optional[int]:
    """
    When the earliest pending notification is due (for the deliverer's timer).
    """
    return txn.nextNotificationDue()


def prune(txn: IStoreTransaction, before: int, limit: int) -> int:
    """
    Forget up to C{limit} settled notifications (delivered, or failed for
    good) whose event happened before C{before}; a pending one is never
    forgotten, nor an experiment's newest, so its C{seq} never restarts.
    One bounded transaction: the caller repeats it for a larger backlog.

    @return: how many were deleted.
    """
    if limit < 1:
        raise BadRequest("limit: must be at least 1.")
    return txn.pruneNotifications((DELIVERED, FAILED), int(before), int(limit))


def rotateSecret(txn: IStoreTransaction, userid: Any, actorid: int, now: int) -> str:
    """
    Replace a user's signing secret; the user or an admin may.

    @return: the new secret (rows still pending are signed with it).
    """
    actor = actingUser(txn, actorid)
    target = actingUser(txn, userid)
    if actor.id != target.id and actor.role != "admin":
        raise Forbidden("Only the user or an admin may rotate a notification secret.")
    if target.role == "node":
        raise BadRequest("Nodes have no notification secret.")
    secret = newSecret()
    txn.putNotifySecret(target.id, secret, now)
    return secret


def readSecret(txn: IStoreTransaction, userid: Any, actorid: int) -> Optional[str]:
    """
    A user's current secret, for that user only (C{None}: none yet).
    """
    actor = actingUser(txn, actorid)
    if actor.id != identifier(userid):
        raise Forbidden("Only the user may read a notification secret.")
    return txn.getNotifySecret(actor.id)


def notifyURL(experiment: Experiment) -> Optional[str]:
    """
    The receiver an experiment names, if any.
    """
    url = experiment.options.get(STORED)
    return url if isinstance(url, str) and url else None


def listed(entry: Notification) -> dict[str, Any]:
    """
    An outbox row as its owner sees it (C{GET /experiments/<id>/events}).
    """
    return {
        **envelope(entry), "url": entry.url, "state": entry.state, "attempts": entry.attempts,
        "due": entry.due, "delivered": entry.delivered or None, "error": entry.lastError or None,
    }
