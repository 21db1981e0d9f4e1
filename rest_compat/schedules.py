# -*- test-case-name: tests.test_rest_schedules -*-
"""
C{GET /schedules}, C{GET /schedules/find} and C{GET /schedules/<id>} (legacy
reference §3.2 rows 33-35, §5.6). Status reports (C{PUT}) are in
L{rest_compat.nodes}.
"""

from __future__ import annotations

from typing import Any

from am.core.errors import BadRequest, NotFound
from am.core.values import lookup
from am.core.interfaces import IStoreTransaction
from rest_compat import access, render, waiting
from rest_compat.context import Context, Reply
from rest_compat.params import intParam, nodeList, recordId, text
from rest_compat.submission import interfaceCount


def ownerOf(txn: IStoreTransaction, cache: dict[int, int], expid: int) -> int:
    """
    The owner of an experiment, looked up once per experiment per request.
    """
    if expid not in cache:
        experiment = txn.getExperiment(expid)
        cache[expid] = experiment.ownerid if experiment is not None else 0
    return cache[expid]


def window(ctx: Context) -> tuple[int, int]:
    """
    The C{[start, stop)} of a listing: now to the horizon unless given (the
    legacy server ignored C{start} and C{stop}); at most two horizons long.
    """
    now, horizon = ctx.now(), ctx.scheduler.policy.horizon
    start = intParam(ctx.params, "start", now)
    stop = intParam(ctx.params, "stop", start + horizon)
    if stop < start:
        raise BadRequest("stop must not be before start", parameter="stop")
    if stop - start > 2 * horizon:
        raise BadRequest(f"A listing may span at most {2 * horizon} seconds.", parameter="stop")
    return start, stop


async def listSchedules(ctx: Context) -> Reply:
    """
    The calendar: C{[{nodeid, start, stop, ownerid}]} of every schedule in the
    window, whatever its status; a node sees only its own.
    """
    start, stop = window(ctx)
    scope = access.nodeScope(ctx.user)

    def query(txn: IStoreTransaction) -> list[dict[str, Any]]:
        if scope is not None:
            found = [s for s in txn.schedulesOfNode(scope, start, stop) if not access.hiddenFromNodes(s)]
        else:
            found = txn.schedulesOverlapping(start, stop)
        owners: dict[int, int] = {}
        return [render.compact(s, ownerOf(txn, owners, s.expid)) for s in found]

    return Reply(200, await ctx.scheduler.read(query))


async def find(ctx: Context) -> Reply:
    """
    The slot search: up to C{results} (default 1, at most 100) earliest windows;
    C{interfaceCount} 3 or more searches node pairs (C{nodecount} counts nodes).
    """
    params = ctx.params
    slots = await ctx.scheduler.find(
        nodecount=intParam(params, "nodecount", 1),
        duration=intParam(params, "duration", 1),
        start=intParam(params, "start", 0),
        nodetypes=text(params, "nodetypes", "") or "",
        nodes=nodeList(params.get("nodes")),
        results=intParam(params, "results", 1),
        interfaceCount=interfaceCount(params),
    )
    return Reply(200, slots)


async def getSchedule(ctx: Context) -> Reply:
    """
    One full schedule row plus its C{report} (the latest value of each traffic
    meter the node reported). Unknown ids are 404 (legacy: 200 C{[]}).
    """
    schedid, user = recordId(ctx.args[0], "Could not find schedule entry with this id."), ctx.user
    wait = waiting.condition(ctx)

    def query(txn: IStoreTransaction) -> waiting.Seen:
        schedule = lookup(txn.getSchedule, schedid, "Could not find schedule entry with this id.")
        if access.nodeScope(user) is not None and access.hiddenFromNodes(schedule):
            raise NotFound("Could not find schedule entry with this id.")
        experiment = txn.getExperiment(schedule.expid)
        access.checkSchedule(user, experiment.ownerid, schedule.nodeid)
        row = render.schedule(schedule, withOptions=True)
        row["report"] = txn.trafficOf(schedule.id)
        return row, [(schedule.id, schedule.status)], False

    return await waiting.held(ctx, [("schedule", schedid)], lambda: ctx.scheduler.read(query), wait)
