# -*- test-case-name: tests.test_occurrences -*-
"""
C{/experiments/<id>/occurrences[/<k>]}: the occurrences of a recurring
booking grouped under their series, and the owner's per-occurrence control
(cancel one, cancel all from a date on, move one), each one named
L{am.core.interfaces.IScheduler} command.
"""

from __future__ import annotations

from typing import Any, Optional

from am.core.errors import BadRequest, NotFound
from am.core.interfaces import IStoreTransaction
from am.core.series import Occurrence, group, period
from am.core.values import lookup
from rest_compat import render
from rest_compat.context import Context, Reply
from rest_compat.experiments import visibleSchedules
from rest_compat.params import intParam, recordId, requireParams, text

_NOT_FOUND = "Could not find experiment with this id."


def _occurrence(o: Occurrence) -> dict[str, Any]:
    return {
        "occurrence": o.index,
        "nominal": o.nominal,
        "start": o.start,
        "stop": o.stop,
        "status": o.status,
        "moved": o.moved,
        "schedules": {
            str(s.id): {"nodeid": render.nodeId(s.nodeid), "status": s.statusText, "start": s.start, "stop": s.stop}
            for s in o.schedules
        },
    }


def _index(ctx: Context) -> int:
    value = ctx.args[1].strip()
    if not (value.isascii() and value.isdigit()) or len(value) > 9:
        raise NotFound("Could not find that occurrence.")
    return int(value)


async def _read(ctx: Context, index: Optional[int]) -> Any:
    expid, user = recordId(ctx.args[0], _NOT_FOUND), ctx.user

    def query(txn: IStoreTransaction) -> Any:
        experiment = lookup(txn.getExperiment, expid, _NOT_FOUND)
        occurrences = group(experiment, visibleSchedules(txn, user, experiment))
        if index is None:
            return {
                "experiment": experiment.id,
                "period": period(experiment),
                "occurrences": [_occurrence(o) for o in occurrences],
            }
        for o in occurrences:
            if o.index == index:
                return _occurrence(o)
        raise NotFound(f"Experiment {experiment.id} has no occurrence {index}.")

    return await ctx.scheduler.read(query)


async def listOccurrences(ctx: Context) -> Reply:
    """
    C{GET /experiments/<id>/occurrences}: the series and its occurrences.
    """
    return Reply(200, await _read(ctx, None))


async def getOccurrence(ctx: Context) -> Reply:
    """
    C{GET /experiments/<id>/occurrences/<k>}: one occurrence.
    """
    return Reply(200, await _read(ctx, _index(ctx)))


def _cancelled(done: Any) -> Reply:
    return Reply(200, render.message(
        f"Ok. Canceled or aborted {len(done.occurrences)} occurrence(s).",
        occurrences=done.occurrences, canceled=done.canceled, aborted=done.aborted, archived=done.archived,
    ))


async def cancelFrom(ctx: Context) -> Reply:
    """
    C{DELETE /experiments/<id>/occurrences?from=<epoch>}: cancel every
    occurrence that starts at or after C{from}.
    """
    expid = recordId(ctx.args[0], _NOT_FOUND)
    since = intParam(ctx.params, "from")
    if since is None:
        raise BadRequest("Parameters missing (required: from)", parameter="from", missing=["from"])
    return _cancelled(await ctx.scheduler.cancelOccurrences(expid, ctx.user.id, since=since))


async def cancelOne(ctx: Context) -> Reply:
    """
    C{DELETE /experiments/<id>/occurrences/<k>}: cancel one occurrence.
    """
    expid = recordId(ctx.args[0], _NOT_FOUND)
    return _cancelled(await ctx.scheduler.cancelOccurrences(expid, ctx.user.id, occurrence=_index(ctx)))


async def move(ctx: Context) -> Reply:
    """
    C{PUT /experiments/<id>/occurrences/<k>} with C{start} and C{placement}
    (C{nodes}, the default, or C{filter}): move one occurrence.
    """
    expid = recordId(ctx.args[0], _NOT_FOUND)
    requireParams(ctx.params, ("start",), ("placement",))
    start = intParam(ctx.params, "start", minimum=0)
    placement = (text(ctx.params, "placement") or "nodes").strip()
    moved = await ctx.scheduler.moveOccurrence(expid, _index(ctx), ctx.user.id, start, placement)
    return Reply(200, _occurrence(moved))
