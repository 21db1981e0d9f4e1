# -*- test-case-name: tests.test_rest_schedules -*-
"""
C{GET /schedules}, C{GET /schedules/find} and C{GET /schedules/<id>} (legacy
reference §3.2 rows 33-35, §5.6). Status reports (C{PUT}) are in
L{rest_compat.nodes}.
"""

from __future__ import annotations

import re
from typing import Any, Optional

from am.core.errors import BadRequest, NotFound
from am.core.model import Booked
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


#: The largest page; a larger C{limit} gets this many rows.
MAX_PAGE = 10000

_CURSOR = re.compile(r"(-?[0-9]{1,18}),([0-9]{1,18})")


def cursor(params: dict[str, Any]) -> Optional[tuple[int, int]]:
    """
    The C{after} cursor, C{<start>,<id>} of the last row of the previous
    page (what the C{X-Marvin-Next} header of that page said).
    """
    value = text(params, "after")
    if value is None:
        return None
    found = _CURSOR.fullmatch(value.strip())
    if found is None:
        raise BadRequest("after must be the <start>,<id> cursor of a previous page", parameter="after")
    return int(found.group(1)), int(found.group(2))


def nextPage(ctx: Context, start: int, stop: int, limit: int, last: Booked) -> dict[str, str]:
    """
    The headers pointing at the page after C{last}: the bare cursor and an
    RFC 8288 C{Link} with the window pinned (a default start is "now").
    """
    after = f"{last.start},{last.id}"
    path = bytes(getattr(ctx.request, "path", b"") or b"/v1/schedules").decode("ascii", "replace")
    link = f"{path}?start={start}&stop={stop}&limit={limit}&after={after}"
    return {"X-Marvin-Next": after, "Link": f'<{link}>; rel="next"'}


async def listSchedules(ctx: Context) -> Reply:
    """
    The calendar: C{[{nodeid, start, stop, ownerid}]} of every schedule in the
    window, whatever its status; a node sees only its own. With C{limit}, one
    page of that list in the same order, and the next page's cursor in the
    headers when there may be more (keyset paging: a page costs the same
    however long the table).
    """
    start, stop = window(ctx)
    limit = intParam(ctx.params, "limit", None, minimum=1)
    after = cursor(ctx.params)
    scope = access.nodeScope(ctx.user)
    hidden = access.HIDDEN_FROM_NODES if scope is not None else ()
    page = None if limit is None else min(limit, MAX_PAGE)

    def query(txn: IStoreTransaction) -> list[Booked]:
        more = None if page is None else page + 1
        return txn.bookedIn(start, stop, nodeid=scope, after=after, limit=more, withoutStatus=hidden)

    found = await ctx.scheduler.read(query)
    headers: dict[str, str] = {}
    if page is not None and len(found) > page:
        del found[page:]
        headers = nextPage(ctx, start, stop, page, found[-1])
    return Reply(200, raw=render.compactJSON(found), headers=headers)


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
