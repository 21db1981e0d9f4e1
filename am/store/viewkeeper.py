# -*- test-case-name: tests.test_nodeview -*-
"""
How both stores keep their L{am.core.nodeview.NodeView}s coherent.

Each database connection (one transaction at a time) has a L{ViewKeeper};
the keepers of one store share a L{HeartbeatHub}. A transaction asking for the
view reads C{nodes_version} (one primary-key row) and gets:

  - a new view when the version moved (a node's tags, status, hostname or
    pairing changed, here or in another controller: every such write bumps
    the version in its own transaction, so a view is never older than the
    snapshot reading it);
  - otherwise the kept one, with the heartbeats this controller committed
    since (the hub hands them to every keeper after commit) and, at least
    every L{REFRESH} seconds, the heartbeats other controllers wrote (one
    narrow query of ids and times).

A transaction that rolls back hands nothing to the hub, so a view only ever
holds committed facts.
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any, Callable, Iterable, Optional

from am.core.model import Node
from am.core.nodeview import NodeView

# Seconds between reads of other controllers' heartbeats.
REFRESH = 1.0
# Heartbeats an unread inbox holds; past that it is emptied and the keeper
# reads every node's heartbeat back instead (a controller that takes only
# heartbeats for hours keeps no backlog).
BACKLOG = 4096

Heard = tuple[str, int, Optional[list]]
# Put in an inbox that overflowed: the view must be rebuilt.
_OVERFLOW: Heard = ("", -1, None)


class HeartbeatHub:
    """
    The committed heartbeats of one store, handed to each of its keepers.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._inboxes: list[collections.deque[Heard]] = []

    def inbox(self) -> collections.deque[Heard]:
        """
        A new keeper's inbox.
        """
        box: collections.deque[Heard] = collections.deque()
        with self._lock:
            self._inboxes.append(box)
        return box

    def committed(self, heard: Iterable[Heard]) -> None:
        """
        Heartbeats a transaction committed: every keeper applies them when next asked.
        """
        items = list(heard)
        if not items:
            return
        with self._lock:
            boxes = list(self._inboxes)
        for box in boxes:
            if len(box) > BACKLOG:
                box.clear()
                box.append(_OVERFLOW)
            box.extend(items)


class ViewKeeper:
    """
    The node view of one connection.

    @ivar clock: seconds, for the refresh of other controllers' heartbeats.
    """

    def __init__(self, hub: HeartbeatHub, clock: Callable[[], float] = time.monotonic) -> None:
        self._hub = hub
        self._inbox = hub.inbox()
        self.clock = clock
        self._view: Optional[NodeView] = None
        self._refreshed = 0.0

    def committed(self, heard: Iterable[Heard]) -> None:
        """
        Heartbeats a transaction on this connection committed (to every keeper of the store).
        """
        self._hub.committed(heard)

    def forget(self) -> None:
        """
        Drop the view (the next transaction builds one).
        """
        self._view = None

    def view(
        self,
        version: Any,
        load: Callable[[], tuple[Iterable[Node], Iterable[tuple[str, str]]]],
        heartbeats: Callable[[], Iterable[tuple[str, int]]],
    ) -> NodeView:
        """
        The view for C{version}: built with C{load} (nodes, pairs) when new,
        else brought up to date with this store's committed heartbeats and,
        every L{REFRESH} seconds, C{heartbeats()} (id, time of every node).
        """
        view, inbox, now = self._view, self._inbox, self.clock()
        if inbox and inbox[0] is _OVERFLOW:
            # Heartbeats were dropped: read every node's back now.
            self._refreshed = now - REFRESH
        if view is None or view.version != version:
            # What was committed before this snapshot is in what it loads.
            inbox.clear()
            nodes, pairs = load()
            view = self._view = NodeView(version, nodes, pairs)
            self._refreshed = now
        elif now - self._refreshed >= REFRESH:
            self._refreshed = now
            for nodeid, when in heartbeats():
                view.heard(nodeid, when)
        while inbox:
            nodeid, when, interfaces = inbox.popleft()
            if when >= 0:
                view.heard(nodeid, when, interfaces)
        return view
