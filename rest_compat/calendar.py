# -*- test-case-name: tests.test_rest_calendar -*-
"""
Calendar feeds: C{GET /schedules.ics} and C{/users/<id>/}, C{/experiments/<id>/},
C{/resources/<id>/schedules.ics} in iCalendar (RFC 5545, made with the
C{icalendar} library) so people can subscribe from their calendar, and the
same paths ending in C{.json} as a JSON twin (which the timeline page reads).

Access is that of C{GET /schedules}: any known caller, a node only its own
schedules; the experiment's and owner's names only for those who may read the
experiment (admins, its owner, a node running it). The per-user feed follows
the user record's rule, the per-experiment feed the experiment's, the
per-node feed the node's.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

import icalendar

from am.core import states
from am.core.errors import BadRequest, NotFound
from am.core.nodefilter import FilterSyntaxError, parse
from rest_compat import access, render
from rest_compat.context import Context, Reply
from rest_compat.params import flag, intParam, recordId, text

#: How far back a feed reaches by default: a calendar shows last week too.
PAST = 7 * 24 * 3600

_CANCELLED = {states.CANCELED, states.ABORTED} if hasattr(states, "ABORTED") else {states.CANCELED}


def _window(ctx: Context) -> tuple[int, int]:
    now, horizon = ctx.now(), ctx.scheduler.policy.horizon
    start = intParam(ctx.params, "start", now - PAST)
    stop = intParam(ctx.params, "stop", now + horizon)
    if stop < start:
        raise BadRequest("stop must not be before start", parameter="stop")
    if stop - start > 2 * horizon + PAST:
        raise BadRequest(f"A feed may span at most {2 * horizon + PAST} seconds.", parameter="stop")
    return start, stop


def _nodeFilter(ctx: Context) -> Any:
    expression = text(ctx.params, "nodetypes", "") or ""
    try:
        return parse(expression) if expression.strip() else None
    except FilterSyntaxError as e:
        raise BadRequest(str(e), parameter="nodetypes") from None


def _maintenance(policy: Any, start: int, stop: int) -> list[dict[str, int]]:
    found = []
    for window in policy.maintenance:
        for wStart, wEnd in window.occurrences(start, stop):
            if wEnd > start and wStart < stop:
                found.append({"start": int(wStart), "stop": int(wEnd)})
    return sorted(found, key=lambda w: w["start"])[:2000]


async def _events(ctx: Context, scope: str) -> dict[str, Any]:
    """
    The feed's content: C{{start, stop, now, maintenance, events}}, each
    event a schedule with its node, experiment, owner and status.
    """
    user = ctx.user
    start, stop = _window(ctx)
    nodeFilter = _nodeFilter(ctx)
    mine = flag("mine", ctx.params.get("mine"))
    nodeScope = access.nodeScope(user)
    arg = ctx.args[0] if ctx.args else None
    if scope == "resource":
        access.checkNode(user, arg.strip())
    elif scope == "user":
        access.checkUserRecord(user, recordId(arg, "Unknown user."))

    def query(txn: Any) -> dict[str, Any]:
        if scope == "experiment":
            expid = recordId(arg, "Could not find experiment with this id.")
            experiment = txn.getExperiment(expid)
            if experiment is None:
                raise NotFound("Could not find experiment with this id.")
            access.checkExperiment(user, experiment.ownerid, {s.nodeid for s in txn.schedulesOfExperiment(expid)})
            rows = txn.feedRows(start, stop, expid=expid)
        elif scope == "resource":
            rows = txn.feedRows(start, stop, nodeid=arg.strip())
        elif scope == "user":
            rows = txn.feedRows(start, stop, ownerid=int(arg))
        elif nodeScope is not None:
            rows = txn.feedRows(start, stop, nodeid=nodeScope)
        else:
            rows = txn.feedRows(start, stop, ownerid=user.id if mine else None)
        if nodeScope is not None:
            rows = [r for r in rows if r.nodeid == nodeScope and r.status not in access.HIDDEN_FROM_NODES]
        # The node view: every node decoded once per version, not per request.
        nodes = txn.nodeView()
        if nodeFilter is not None:
            matching: dict[str, bool] = {}
            for nodeid in {r.nodeid for r in rows}:
                node = nodes.get(nodeid)
                matching[nodeid] = node is not None and nodeFilter.matches(node.tags)
            rows = [r for r in rows if matching[r.nodeid]]
        events = []
        for r in rows:
            readable = r.ownerid is not None and access.mayReadOptions(user, r.ownerid, r.nodeid)
            node = nodes.get(r.nodeid)
            events.append({
                "id": r.id,
                "nodeid": render.nodeId(r.nodeid),
                "hostname": node.hostname if node is not None else "",
                "expid": r.expid,
                "ownerid": r.ownerid if r.ownerid is not None else 0,
                "experiment": r.experiment if readable else None,
                "owner": r.owner if readable else None,
                "start": r.start,
                "stop": r.stop,
                "status": r.status,
                "reason": r.reason,
                "updated": r.updated,
            })
        return {
            "start": start,
            "stop": stop,
            "now": ctx.now(),
            "maintenance": _maintenance(ctx.scheduler.policy, start, stop),
            "events": events,
        }

    return await ctx.scheduler.read(query)


def _utc(when: int) -> datetime:
    return datetime.fromtimestamp(when, tz=timezone.utc)


def toICalendar(feed: dict[str, Any], name: str, host: str = "marvin") -> bytes:
    """
    The feed as an iCalendar document: one C{VEVENT} per schedule.
    """
    calendar = icalendar.Calendar()
    calendar.add("prodid", "-//Marvin//schedules//EN")
    calendar.add("version", "2.0")
    calendar.add("calscale", "GREGORIAN")
    calendar.add("x-wr-calname", name)
    stamp = _utc(feed["now"])
    for e in feed["events"]:
        event = icalendar.Event()
        experiment = e["experiment"] or f"experiment {e['expid']}"
        node = f"node {e['nodeid']}" + (f" ({e['hostname']})" if e["hostname"] else "")
        event.add("uid", f"schedule-{e['id']}@{host}")
        event.add("dtstamp", stamp)
        event.add("dtstart", _utc(e["start"]))
        event.add("dtend", _utc(max(e["stop"], e["start"])))
        event.add("summary", f"{experiment} on {node}: {e['status']}")
        lines = [
            f"Schedule {e['id']} of experiment {e['expid']}"
            + (f" ({e['experiment']})" if e["experiment"] else ""),
            f"Node: {node}",
            f"Status: {e['status']}" + (f" ({e['reason']})" if e["reason"] else ""),
        ]
        if e["owner"]:
            lines.append(f"Owner: {e['owner']} (user {e['ownerid']})")
        event.add("description", "\n".join(lines))
        event.add("location", node)
        event.add("categories", [e["status"]])
        event.add("status", "CANCELLED" if e["status"] in _CANCELLED else "CONFIRMED")
        if e["updated"]:
            event.add("last-modified", _utc(e["updated"]))
        calendar.add_component(event)
    return calendar.to_ical()


def _calendarName(scope: str, ctx: Context) -> str:
    if scope == "all":
        return "Marvin: my schedules" if flag("mine", ctx.params.get("mine")) else "Marvin: schedules"
    return f"Marvin: {scope} {ctx.args[0]}"


def _handler(scope: str) -> Any:
    async def serve(ctx: Context) -> Reply:
        feed = await _events(ctx, scope)
        path = bytes(getattr(ctx.request, "path", b"") or b"")
        if path.endswith(b".ics"):
            host = (getattr(ctx.request, "getRequestHostname", lambda: b"marvin")() or b"marvin").decode("ascii", "replace")
            body = toICalendar(feed, _calendarName(scope, ctx), host)
            return Reply(200, raw=body, headers={"Content-Type": "text/calendar; charset=utf-8"})
        return Reply(200, feed)

    serve.__name__ = f"{scope}Calendar"
    serve.__doc__ = f"The {scope} calendar feed, iCalendar or JSON by the path's ending."
    return serve


allCalendar = _handler("all")
userCalendar = _handler("user")
experimentCalendar = _handler("experiment")
resourceCalendar = _handler("resource")

__all__ = ["allCalendar", "userCalendar", "experimentCalendar", "resourceCalendar", "toICalendar"]
