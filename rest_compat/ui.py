# -*- test-case-name: tests.test_e2e_demo -*-
"""
The timeline page at C{/ui/}: plain HTML, JavaScript and CSS shipped as
package data (C{rest_compat/ui/}, no build step, no library), served through
the REST face so that it has the same authentication (client certificate or
trusted proxy headers) and access matrix; and C{GET /ui/changes}, the cheap
endpoint the page polls for live updates: a counter of the core's committed
events (L{am.core.events}), kept in memory with the latest schedule status
changes, so a poll touches no database.
"""

from __future__ import annotations

import importlib.resources
import weakref
from collections import deque
from typing import Any

from am.core.errors import NotFound
from am.core.events import ScheduleStatusChanged
from rest_compat.context import Context, Reply
from rest_compat.params import intParam

#: file name -> content type; nothing else is served.
FILES = {
    "index.html": "text/html; charset=utf-8",
    "timeline.js": "text/javascript; charset=utf-8",
    "timeline.css": "text/css; charset=utf-8",
}

#: How many schedule status changes are kept for the page.
KEEP = 2000

_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_PAGE_HEADERS = {
    **_NO_STORE,
    # The page loads only its own script and style and talks only to us.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}


class ChangeCounter:
    """
    Follows the core's event stream (L{am.core.events}): C{version} counts
    committed events, and the latest schedule status changes are kept
    (bounded) so the page can show each one with its real time.
    """

    def __init__(self, scheduler: Any, keep: int = KEEP) -> None:
        self.version = 0
        self.statuses: deque[tuple[int, dict[str, Any]]] = deque(maxlen=keep)
        scheduler.events.subscribe(self.observe)

    def observe(self, event: Any) -> None:
        self.version += 1
        if isinstance(event, ScheduleStatusChanged):
            self.statuses.append((self.version, {
                "schedid": event.schedid, "old": event.old, "new": event.new,
                "time": event.time, "actor": event.actor,
            }))

    def since(self, version: int) -> list[dict[str, Any]]:
        """
        The status changes after C{version}, oldest first.
        """
        return [change for (v, change) in self.statuses if v > version]


_counters: "weakref.WeakKeyDictionary[Any, ChangeCounter]" = weakref.WeakKeyDictionary()


def counterFor(scheduler: Any) -> ChangeCounter:
    """
    The change counter of C{scheduler}, made (and subscribed) on first use;
    L{rest_compat.resource.buildRESTResource} makes it when the face is built.
    """
    counter = _counters.get(scheduler)
    if counter is None:
        counter = _counters[scheduler] = ChangeCounter(scheduler)
    return counter


def _file(name: str) -> Reply:
    if name not in FILES:
        raise NotFound("No such file.")
    data = importlib.resources.files("rest_compat").joinpath("ui", name).read_bytes()
    return Reply(200, raw=data, headers={"Content-Type": FILES[name], **_PAGE_HEADERS})


async def page(ctx: Context) -> Reply:
    """
    C{GET /ui/}: the timeline page (C{/ui} without the slash redirects, so
    the page's relative links resolve).
    """
    path = bytes(getattr(ctx.request, "path", b"") or b"")
    if not path.endswith(b"/"):
        return Reply(301, raw=b"", headers={"Location": "/ui/", **_NO_STORE})
    return _file("index.html")


async def asset(ctx: Context) -> Reply:
    """
    C{GET /ui/<file>}: one of the page's files.
    """
    return _file(ctx.args[0])


async def changes(ctx: Context) -> Reply:
    """
    C{GET /ui/changes[?since=V]}: C{{version, now, statuses}}; C{version}
    grows with every committed event, so the page refetches only when it
    moved, and C{statuses} lists the schedule status changes after C{since}
    (each C{{schedid, old, new, time, actor}}), for the page's status history.
    """
    counter = counterFor(ctx.scheduler)
    since = intParam(ctx.params, "since", counter.version, minimum=0)
    body = {"version": counter.version, "now": ctx.now(), "statuses": counter.since(since)}
    return Reply(200, body, headers=dict(_NO_STORE))
