# -*- test-case-name: tests.test_rest_nodes -*-
"""
What nodes (marvind) call: the heartbeat C{PUT /resources/<own id>} and the
status/traffic report C{PUT /schedules/<id>} (legacy reference §3.5, §3.6).

The wire contract the agent depends on: the reply C{{"interfaces": {},
"tasks": [...]}} with hidden C{_} options included, C{{"message": "Ok."}} for
an accepted or harmlessly repeated report, and a 409 whose body contains
C{"cannot be reset"} for a report on a task in a final status (the agent then
drops it from its queue).
"""

from __future__ import annotations

from typing import Any

from am.core.errors import BadRequest
from rest_compat import render
from rest_compat.context import Context, Reply
from rest_compat.params import flag, intParam, jsonValue, recordId


def _interfaces(value: Any) -> Any:
    """
    The C{interfaces} field: a JSON list of objects (a form string, or the
    list itself in a JSON body); C{None} leaves the stored list alone.
    """
    if value is None:
        return None
    interfaces = jsonValue("interfaces", value, list)
    for item in interfaces:
        if not isinstance(item, dict):
            raise BadRequest("interfaces must be a JSON list of objects", parameter="interfaces")
    return interfaces


async def heartbeat(ctx: Context) -> Reply:
    """
    C{PUT /resources/<id>} by that node: record it alive and hand it its next
    tasks. C{known_tasks} is accepted and ignored, as before.
    """
    params = ctx.params
    maintenance = flag("maintenance", params.get("maintenance", "0"))
    interfaces = _interfaces(params.get("interfaces"))
    limit = intParam(params, "limit", 3, minimum=1)
    reply = await ctx.scheduler.heartbeat(
        ctx.user.id, ctx.args[0].strip(), maintenance=maintenance, interfaces=interfaces, limit=limit
    )
    return Reply(200, raw=render.heartbeatJSON(reply.tasks))


async def report(ctx: Context) -> Reply:
    """
    C{PUT /schedules/<id>} by the node running it: C{status} (C{"code"} or
    C{"code; reason"}) and/or C{traffic} (a JSON object: the latest value per
    meter is kept; a final schedule is refunded the data it did not use).
    """
    params = ctx.params
    status, traffic = params.get("status"), params.get("traffic")
    if status is None and traffic is None:
        raise BadRequest("Parameters missing (required: status, or traffic)", missing=["status", "traffic"])
    report = None
    if traffic is not None:
        try:
            report = jsonValue("traffic", traffic, dict)
        except BadRequest:
            raise BadRequest("Could not parse JSON code for traffic parameter", parameter="traffic") from None
    schedid, user = recordId(ctx.args[0], "Could not find schedule entry with this id."), ctx.user
    if status is not None:
        if not isinstance(status, str):
            raise BadRequest("status must be a string", parameter="status")
        await ctx.scheduler.changeStatus(schedid, status, user.id, when=params.get("when"))
    if report is not None:
        await ctx.scheduler.reportTraffic(schedid, report, user.id)
    return Reply(200, render.message("Ok."))
