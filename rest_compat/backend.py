# -*- test-case-name: tests.test_rest_backend -*-
"""
C{/version}, C{/openapi.json} and C{/backend/...}: who am I, activity
statistics, public keys and the admin's inventory synchronisation (legacy
reference §3.2 rows 1-6, §3.4).
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from twisted.internet.defer import maybeDeferred
from twisted.logger import Logger

from am.core.interfaces import IStoreTransaction
from rest_compat import render
from rest_compat.context import Context, HTTPError, Reply
from rest_compat.experiments import FOREVER

log = Logger()

UNAUTHENTICATED = "Please present a valid SSL client certificate to access this information."

DAY = 86400
WEEK = 7 * DAY


async def version(ctx: Context) -> Reply:
    """
    C{GET /version}: the JSON string C{"1.0"}.
    """
    return Reply(200, "1.0")


async def openapi(ctx: Context) -> Reply:
    """
    C{GET /openapi.json}: the description of this API.
    """
    return Reply(200, raw=ctx.document)


async def auth(ctx: Context) -> Reply:
    """
    C{GET /backend/auth}: what the server made of the caller's certificate;
    401 (with the same body) when it names no valid user.
    """
    caller = ctx.caller
    record = None
    if caller.user is not None:
        user = caller.user
        record = await ctx.scheduler.read(lambda txn: render.user(user, txn.getQuotas(user.id)))
    body = {"verified": caller.verified, "fingerprint": caller.fingerprint, "user": record}
    if record is None:
        body["message"] = UNAUTHENTICATED
        return Reply(401, body)
    return Reply(200, body)


async def pubkeys(ctx: Context) -> Reply:
    """
    C{GET /backend/pubkeys}: the public SSH keys of live tasks booked with the
    C{ssh} option (for the tunnel server), as OpenSSH strings.
    """
    now = ctx.scheduler.now()
    return Reply(200, await ctx.scheduler.read(lambda txn: txn.publicKeys(now)))


def _activity(txn: IStoreTransaction, now: int) -> dict[str, Any]:
    users = Counter("invalid" if u.invalid else u.role for u in txn.listUsers())
    nodes = txn.listNodes()
    resources: dict[str, Any] = dict(Counter(n.status for n in nodes))
    for label, age in (("2 min", 120), ("5 min", 300), ("1 h", 3600), ("1 d", DAY)):
        resources[label] = sum(1 for n in nodes if n.heartbeat > now - age)
    resources["dropouts 30d-1d"] = [
        render.nodeId(n.id) for n in nodes if now - 30 * DAY < n.heartbeat <= now - DAY
    ]
    resources["dropouts 1d-5min"] = [
        render.nodeId(n.id) for n in nodes if now - DAY < n.heartbeat <= now - 300
    ]
    resources["maintenance"] = [render.nodeId(n.id) for n in nodes if n.status == "maintenance"]
    recent = txn.schedulesOverlapping(now - WEEK, FOREVER)
    owners: dict[int, int] = {}
    for s in recent:
        if s.expid not in owners:
            experiment = txn.getExperiment(s.expid)
            owners[s.expid] = experiment.ownerid if experiment else 0
    tasks = Counter(owners[s.expid] for s in recent)
    active = []
    for ownerid, count in sorted(tasks.items()):
        owner = txn.getUser(ownerid)
        if owner is not None:
            active.append({"name": owner.name, "project": owner.project, "tasks": count})
    codes = Counter(s.statusText for s in recent if s.start > now - WEEK)
    return {
        "users": dict(users),
        "resources": resources,
        "schedules": {
            "future": sum(1 for s in recent if s.start > now),
            "current": sum(1 for s in recent if s.start < now < s.stop),
            "distinct active users (7d)": active,
            "status codes (7d)": [
                [count, code] for code, count in sorted(codes.items(), key=lambda i: (-i[1], i[0]))
            ],
        },
    }


async def activity(ctx: Context) -> Reply:
    """
    C{GET /backend/activity}: counts of users, node liveness and recent tasks.
    """
    return Reply(200, await ctx.scheduler.read(_activity, ctx.now()))


async def sync(ctx: Context) -> Reply:
    """
    C{PUT /backend/sync}: run the controller's inventory synchronisation now.
    """
    if ctx.sync is None:
        raise HTTPError(501, "Inventory synchronisation is not configured.")
    try:
        result = await maybeDeferred(ctx.sync)
    except Exception as e:
        log.failure("Inventory synchronisation requested over REST failed")
        raise HTTPError(502, f"Inventory synchronisation failed: {e}") from None
    extra = {"result": result} if isinstance(result, dict) else {}
    return Reply(200, render.message("Ok. Inventory synchronised.", **extra))

