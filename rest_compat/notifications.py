# -*- test-case-name: tests.test_rest_notify -*-
"""
Notifications on the REST face (docs/notifications.md): an experiment's
outbox as its owner sees it (C{GET /experiments/<id>/events}) and the
caller's signing secret (C{GET} reads it, C{POST} rotates it:
C{/users/<id>/notify-secret}). The C{notify} URL itself is a booking option
(L{rest_compat.submission}).
"""

from __future__ import annotations

from typing import Any

from am.core.interfaces import IStoreTransaction
from am.core.outbox import listed, notifyURL
from am.core.values import lookup
from rest_compat import access
from rest_compat.context import Context, Reply
from rest_compat.params import recordId


async def experimentEvents(ctx: Context) -> Reply:
    """
    C{GET /experiments/<id>/events}: every notification of the experiment,
    oldest first, with its delivery state (owner and admins only; nodes never).
    """
    expid, user = recordId(ctx.args[0], "Could not find experiment with this id."), ctx.user

    def query(txn: IStoreTransaction) -> dict[str, Any]:
        experiment = lookup(txn.getExperiment, expid, "Could not find experiment with this id.")
        access.checkExperiment(user, experiment.ownerid, set())
        return {
            "experiment": experiment.id,
            "notify": notifyURL(experiment),
            "events": [listed(n) for n in txn.notificationsOf(experiment.id)],
        }

    return Reply(200, await ctx.scheduler.read(query))


async def readSecret(ctx: Context) -> Reply:
    """
    C{GET /users/<id>/notify-secret}: the caller's own signing secret
    (C{null} until the first notification or rotation made one).
    """
    userid = recordId(ctx.args[0], "Could not find user with this id.")
    return Reply(200, {"userid": userid, "secret": await ctx.scheduler.notifySecret(userid, ctx.user.id)})


async def rotateSecret(ctx: Context) -> Reply:
    """
    C{POST /users/<id>/notify-secret}: a new secret (the user or an admin);
    pending notifications are signed with it from now on.
    """
    userid = recordId(ctx.args[0], "Could not find user with this id.")
    secret = await ctx.scheduler.rotateNotifySecret(userid, ctx.user.id)
    return Reply(200, {"userid": userid, "secret": secret})
