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
            schedules = txn.schedulesOfExperiment(expid)
            access.checkExperiment(user, experiment.ownerid, {s.nodeid for s in schedules})
            schedules = [s for s in schedules if s.stop > start and s.start < stop]
        elif scope == "resource":
            schedules = list(txn.schedulesOfNode(arg.strip(), start, stop))
        elif scope == "user":
            schedules = list(txn.schedulesOverlapping(start, stop, ownerid=int(arg)))
        elif nodeScope is not None:
            schedules = list(txn.schedulesOfNode(nodeScope, start, stop))
        else:
            schedules = list(txn.schedulesOverlapping(start, stop, ownerid=user.id if mine else None))
        if nodeScope is not None:
            schedules = [s for s in schedules if s.nodeid == nodeScope and not access.hiddenFromNodes(s)]
        nodes = {n.id: n for n in txn.listNodes()}
        if nodeFilter is not None:
            schedules = [s for s in schedules if s.nodeid in nodes and nodeFilter.matches(nodes[s.nodeid].tags)]
        experiments: dict[int, Any] = {}
        users: dict[int, Any] = {}
        events = []
        for s in schedules:
            if s.expid not in experiments:
                experiments[s.expid] = txn.getExperiment(s.expid)
            experiment = experiments[s.expid]
            ownerid = experiment.ownerid if experiment is not None else 0
            readable = experiment is not None and access.mayReadOptions(user, ownerid, s.nodeid)
            owner = None
            if readable:
                if ownerid not in users:
                    users[ownerid] = txn.getUser(ownerid)
                owner = users[ownerid].name if users[ownerid] is not None else None
            node = nodes.get(s.nodeid)
            events.append({
                "id": s.id,
                "nodeid": render.nodeId(s.nodeid),
                "hostname": node.hostname if node is not None else "",
                "expid": s.expid,
                "ownerid": ownerid,
                "experiment": experiment.name if readable else None,
                "owner": owner,
                "start": s.start,
                "stop": s.stop,
                "status": s.status,
                "reason": s.reason,
                "updated": s.updated,
            })
        events.sort(key=lambda e: (e["start"], e["id"]))
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
