# -*- test-case-name: tests.test_nodeview -*-
"""
The nodes as the booking path reads them: every node's tags and interfaces
decoded once, the pairs, and the nodes in heartbeat order, kept between
transactions by the store (L{am.core.interfaces.IStoreTransaction.nodeView}).

Why: an allocation used to load and decode every node (tags, JSON
interfaces) to book one; with a view it touches only the candidates it
needs, in the order the rules want them (most recently heard first, then by
id), so its cost does not grow with the testbed.

Coherence is the store's business (docs/scheduling.md, "The node view"): a
view belongs to one version of the nodes (C{nodes_version}, bumped in the same
transaction by every write of a node's tags, status, hostname or pairing, by
any controller) and is replaced when the version moves; heartbeats, which do
not bump it, are applied to it as they commit (L{NodeView.heard}), and those
of other controllers are read back at least every second. The view and the
L{Node} objects in it are shared between transactions: the core never changes
them (it copies what it keeps).
"""

from __future__ import annotations

from bisect import bisect_left, insort
from typing import Any, Iterable, Iterator, Optional

from am.core.model import Node


class NodeView:
    """
    Every node of one C{nodes_version}, with its heartbeat order.

    @ivar version: the C{nodes_version} the view was built at.
    @ivar byId: node id -> L{Node} (tags and interfaces decoded).
    @ivar pairs: head id -> tail id.
    @ivar memo: what the core derives from the static facts of this version
        (e.g. which nodes match a filter); it goes when the view is replaced.
    """

    # How many derived entries (filters) a view keeps before starting over.
    MEMO_LIMIT = 256

    def __init__(self, version: Any, nodes: Iterable[Node], pairs: Iterable[tuple[str, str]] = ()) -> None:
        self.version = version
        self.byId: dict[str, Node] = {n.id: n for n in nodes}
        self.pairs: dict[str, str] = dict(pairs)
        self.memo: dict[Any, Any] = {}
        # Bumped by every heartbeat that moves a node: the order changed.
        self.stamp = 0
        # Heartbeat seconds in ascending order, and per second the node ids
        # heard then, sorted: walking seconds down and ids up gives the order
        # (-heartbeat, id) without sorting anything per request.
        self._buckets: dict[int, list[str]] = {}
        for node in sorted(self.byId.values(), key=lambda n: (n.heartbeat, n.id)):
            self._buckets.setdefault(node.heartbeat, []).append(node.id)
        self._seconds: list[int] = sorted(self._buckets)

    def __len__(self) -> int:
        return len(self.byId)

    def get(self, nodeid: str) -> Optional[Node]:
        """
        The node with this id, or C{None}.
        """
        return self.byId.get(str(nodeid))

    def nodes(self) -> list[Node]:
        """
        Every node, ordered by id.
        """
        return [self.byId[k] for k in sorted(self.byId)]

    def remember(self, key: Any, value: Any) -> Any:
        """
        Keep C{value} in L{memo} under C{key} (bounded) and return it.
        """
        if len(self.memo) >= self.MEMO_LIMIT:
            self.memo.clear()
        self.memo[key] = value
        return value

    def heard(self, nodeid: str, when: int, interfaces: Optional[list] = None) -> None:
        """
        A committed heartbeat of C{nodeid} at C{when} (never moves it back in
        time); C{interfaces}, when given, are its new interfaces.
        """
        node = self.byId.get(nodeid)
        if node is None:
            return
        if interfaces is not None:
            node.interfaces = interfaces
        old = node.heartbeat
        if when <= old:
            return
        self.stamp += 1
        # Copy on write: a walk in progress keeps the lists it started with.
        bucket = list(self._buckets[old])
        del bucket[bisect_left(bucket, nodeid)]
        if bucket:
            self._buckets[old] = bucket
        else:
            del self._buckets[old]
            seconds = list(self._seconds)
            del seconds[bisect_left(seconds, old)]
            self._seconds = seconds
        newer = self._buckets.get(when)
        if newer is None:
            self._buckets[when] = [nodeid]
            seconds = list(self._seconds)
            insort(seconds, when)
            self._seconds = seconds
        else:
            newer = list(newer)
            insort(newer, nodeid)
            self._buckets[when] = newer
        node.heartbeat = when

    def byRecency(self, since: Optional[int] = None) -> Iterator[Node]:
        """
        The nodes most recently heard first (ties by id), lazily; with
        C{since}, only those heard at or after it.
        """
        # The lists are replaced, never changed, by L{heard}: with a copy of
        # the index of them, a walk sees the order as it was when it began.
        seconds, buckets, byId = self._seconds, dict(self._buckets), self.byId
        for index in range(len(seconds) - 1, -1, -1):
            second = seconds[index]
            if since is not None and second < since:
                return
            for nodeid in buckets[second]:
                yield byId[nodeid]
