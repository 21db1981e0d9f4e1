# -*- test-case-name: tests.test_rest_ui -*-
"""
The timeline page at C{/ui/}: plain HTML, JavaScript and CSS shipped as
package data (C{rest_compat/ui/}, no build step, no library), served through
the REST face so that it has the same authentication (client certificate or
trusted proxy headers) and access matrix; and C{GET /ui/changes}, the cheap
endpoint the page polls for live updates: a counter of the core's committed
changes, kept in memory and fed by the scheduler's change listeners, so a
poll touches no database.
"""

from __future__ import annotations

import importlib.resources
import weakref
from typing import Any

from am.core.errors import NotFound
from rest_compat.context import Context, Reply

#: file name -> content type; nothing else is served.
FILES = {
    "index.html": "text/html; charset=utf-8",
    "timeline.js": "text/javascript; charset=utf-8",
    "timeline.css": "text/css; charset=utf-8",
}

_NO_STORE = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
_PAGE_HEADERS = {
    **_NO_STORE,
    # The page loads only its own script and style and talks only to us.
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'",
    "X-Frame-Options": "DENY",
}


class ChangeCounter:
    """
    Counts the scheduler's committed changes (one per change command).
    """

    def __init__(self, scheduler: Any) -> None:
        self.version = 0
        scheduler.listeners.append(self.bump)

    def bump(self) -> None:
        self.version += 1


_counters: "weakref.WeakKeyDictionary[Any, ChangeCounter]" = weakref.WeakKeyDictionary()


def counterFor(scheduler: Any) -> ChangeCounter:
    """
    The change counter of C{scheduler}, made (and subscribed) on first use.
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
    C{GET /ui/changes}: C{{version, now}}; C{version} grows with every
    committed change, so the page refetches only when it moved.
    """
    return Reply(200, {"version": counterFor(ctx.scheduler).version, "now": ctx.now()}, headers=dict(_NO_STORE))
