# -*- test-case-name: tests.test_rest_users -*-
"""
C{/users}: accounts, their schedules, experiments and quota journals, and the
admin's account management (legacy reference §3.2 rows 18-25).

Least privilege: only admins see other users (and their fingerprints). User
creation never replaces an existing user (legacy: silent insert-or-replace),
a quota update without C{ssl} works (legacy: 500), invalidated users are
refused everywhere.
"""

from __future__ import annotations

from typing import Any

from am.core.errors import BadRequest, NotFound
from am.core.model import QUOTA_KINDS
from am.core.interfaces import IStoreTransaction
from rest_compat import access, render
from rest_compat.context import Context, Reply
from rest_compat.params import flag, recordId, text


def userId(arg: str) -> int:
    """
    A user id from the path; anything else names no user.
    """
    return recordId(arg, "Could not find user with this id.")


def _record(txn: IStoreTransaction, userid: int) -> Any:
    found = txn.getUser(userid)
    if found is None:
        raise NotFound("Could not find user with this id.")
    return found


async def listUsers(ctx: Context) -> Reply:
    """
    C{GET /users}: everyone for admins, only the caller otherwise.
    """
    user = ctx.user

    def query(txn: IStoreTransaction) -> list[dict[str, Any]]:
        found = txn.listUsers() if access.mayListAll(user) else [txn.getUser(user.id)]
        return [render.user(u, txn.getQuotas(u.id)) for u in found if u is not None]

    return Reply(200, await ctx.scheduler.read(query))


def _readable(ctx: Context) -> int:
    userid = userId(ctx.args[0])
    access.checkUserRecord(ctx.user, userid)
    return userid


async def getUser(ctx: Context) -> Reply:
    """
    C{GET /users/<id>}: a list holding that user (legacy shape).
    """
    userid = _readable(ctx)

    def query(txn: IStoreTransaction) -> list[dict[str, Any]]:
        return [render.user(_record(txn, userid), txn.getQuotas(userid))]

    return Reply(200, await ctx.scheduler.read(query))


async def userSchedules(ctx: Context) -> Reply:
    """
    C{GET /users/<id>/schedules}: full rows of the user's tasks up to the horizon.
    """
    userid = _readable(ctx)
    now, horizon = ctx.now(), ctx.scheduler.policy.horizon

    def query(txn: IStoreTransaction) -> list[dict[str, Any]]:
        _record(txn, userid)
        return [
            render.schedule(s, withOptions=True)
            for s in txn.schedulesOverlapping(now, now + horizon, ownerid=userid)
        ]

    return Reply(200, await ctx.scheduler.read(query))


async def userExperiments(ctx: Context) -> Reply:
    """
    C{GET /users/<id>/experiments[?showHidden=1]}: experiment summaries,
    active ones unless C{showHidden}; C{[]} when there are none (legacy: 404).
    """
    userid = _readable(ctx)
    status = None if flag("showHidden", ctx.params.get("showHidden")) else "active"

    def query(txn: IStoreTransaction) -> list[dict[str, Any]]:
        _record(txn, userid)
        return [
            render.experiment(e, txn.schedulesOfExperiment(e.id))
            for e in txn.findExperiments(ownerid=userid, status=status)
        ]

    return Reply(200, await ctx.scheduler.read(query))


async def userJournals(ctx: Context) -> Reply:
    """
    C{GET /users/<id>/journals}: every quota change, oldest first.
    """
    userid = _readable(ctx)

    def query(txn: IStoreTransaction) -> list[dict[str, Any]]:
        _record(txn, userid)
        return [render.journal(entry) for entry in txn.listJournal(userid)]

    return Reply(200, await ctx.scheduler.read(query))


async def addUser(ctx: Context) -> Reply:
    """
    C{POST /users} with C{name}, C{role}, C{ssl} (or C{urn}), optional
    C{project}: 201 with C{Location: /v1/users/<id>}; 409 when the
    fingerprint, URN or name and project are taken.
    """
    params = ctx.params
    name, role = text(params, "name"), text(params, "role")
    fingerprint, urn = text(params, "ssl"), text(params, "urn")
    missing = [n for n, v in (("name", name), ("role", role)) if not (v and v.strip())]
    if not (fingerprint or urn):
        missing.append("ssl")
    if missing:
        raise BadRequest("Parameters missing (name, ssl, role), optional: project, urn.", missing=missing)
    created = await ctx.scheduler.addUser(
        name=name,
        role=role.strip(),
        fingerprint=fingerprint or None,
        urn=(urn or "").strip() or None,
        project=text(params, "project", "") or "",
    )
    return Reply(
        201,
        render.message(f"User {created.id} created.", id=created.id),
        headers={"Location": f"/v1/users/{created.id}"},
    )


async def updateUser(ctx: Context) -> Reply:
    """
    C{PUT /users/<id>} with any of C{time}, C{data}, C{storage} (quotas; also
    what the monthly reset restores) and C{ssl} (fingerprint), all or nothing.
    """
    params = ctx.params
    quota = {kind: params[kind] for kind in QUOTA_KINDS if params.get(kind) is not None}
    fingerprint = text(params, "ssl")
    if not quota and fingerprint is None:
        raise BadRequest(
            "Parameters missing (any of: time, data, storage, ssl).", missing=["time", "data", "storage", "ssl"]
        )
    await ctx.scheduler.updateUser(userId(ctx.args[0]), fingerprint=fingerprint, quota=quota)
    return Reply(200, render.message("Updated."))


async def deleteUser(ctx: Context) -> Reply:
    """
    C{DELETE /users/<id>}: invalidate; the certificate is refused from now on.
    """
    await ctx.scheduler.invalidateUser(userId(ctx.args[0]))
    return Reply(200, render.message("Ok. Invalidated user certificate."))
