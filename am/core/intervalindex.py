# -*- test-case-name: tests.test_intervalindex -*-
"""
The blocking windows of every node, in memory: where the slot search looks
first, so a search is a walk over candidates, not a query per step.

Why: a booking for "any free node" on a busy testbed looks at most of its
candidates, at several candidate starts; asking the database each time made
the search cost O(nodes) queries. The index answers the same question
(L{IntervalIndex.freeFrom}) from per-node sorted arrays.

It is a hint, never the proof: the search verifies the nodes it chose against
the database before booking (C{am.core.slots.search}), so a stale index can
make a search slower or choose again, never double book. A store that keeps
one (docs/scheduling.md, "The interval index") marks the nodes its open
transaction writes as L{pending} (looked up in the database instead, since
the transaction may have moved them) and re-reads them after the transaction
ends, committed or not.

Memory: two C{array('q')} per node with a blocking window (16 bytes a
window), so 100,000 windows take a couple of megabytes.
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from typing import Any, Iterable, Optional

# Returned by L{IntervalIndex.freeFrom} for a node it cannot answer for (times are positive).
UNKNOWN = -1
# Later than any start.
FOREVER = 2**62


class IntervalIndex:
    """
    Per node, the blocking windows C{[start, stop)} sorted by start, and the
    longest of them (so a lookup reaches back no further than it must).

    @ivar pending: node ids written by the open transaction: not answered for.
    @ivar valid: whether the index holds every node's windows (a store
        rebuilds an invalid one before use).
    """

    # How many node changes the log keeps, and how many searches' walks
    # (L{walks}) are kept, before starting over.
    LOG_LIMIT = 4096
    WALK_LIMIT = 8

    def __init__(self) -> None:
        self._nodes: dict[str, tuple[array, array, int]] = {}
        self.pending: set[str] = set()
        self.valid = False
        # Node ids whose windows changed (or became pending), in order: what
        # a walk kept from an earlier request reads to catch up.
        self.changed: list[str] = []
        self.epoch = 0  # bumped when the log starts over
        # What searches learnt (am.core.slots), by what they searched, for
        # one owner (a node view); anything derived from the index.
        self.walks: dict[Any, Any] = {}
        self.walkOwner: Any = None
        self.walkSecond = 0

    def walksOf(self, view: Any, now: int) -> dict[Any, Any]:
        """
        The kept walks for searches over C{view} at C{now} (walks of another
        view, or of another second, go: they would only take memory).
        """
        if self.walkOwner is not view or self.walkSecond != now or len(self.walks) >= self.WALK_LIMIT:
            self.walks = {}
            self.walkOwner, self.walkSecond = view, now
        return self.walks

    def _changed(self, nodeids: Iterable[str]) -> None:
        self.changed.extend(nodeids)
        if len(self.changed) > self.LOG_LIMIT:
            self._restart()

    def _restart(self) -> None:
        self.changed = []
        self.epoch += 1
        self.walks = {}

    def touch(self, nodeids: Iterable[str]) -> None:
        """
        Nodes the open transaction writes: pending until it ends.
        """
        ids = [str(n) for n in nodeids]
        self.pending.update(ids)
        self._changed(ids)

    def load(self, rows: Iterable[tuple[str, int, int]]) -> None:
        """
        Replace everything with C{rows} of C{(node id, start, stop)} (what
        is pending stays so: the rows may hold the open transaction's writes).
        """
        grouped: dict[str, list[tuple[int, int]]] = {}
        for nodeid, start, stop in rows:
            grouped.setdefault(str(nodeid), []).append((start, stop))
        self._nodes = {}
        for nodeid, windows in grouped.items():
            self._put(nodeid, windows)
        self.valid = True
        self._restart()

    def replace(self, nodeids: Iterable[str], rows: Iterable[tuple[str, int, int]]) -> None:
        """
        Set the windows of C{nodeids} to those among C{rows} (a node without
        rows has none), and stop treating them as pending.
        """
        grouped: dict[str, list[tuple[int, int]]] = {str(n): [] for n in nodeids}
        for nodeid, start, stop in rows:
            grouped.setdefault(str(nodeid), []).append((start, stop))
        for nodeid, windows in grouped.items():
            self._put(nodeid, windows)
            self.pending.discard(nodeid)
        self._changed(grouped)

    def _put(self, nodeid: str, windows: list[tuple[int, int]]) -> None:
        if not windows:
            self._nodes.pop(nodeid, None)
            return
        windows.sort()
        self._nodes[nodeid] = (
            array("q", [w[0] for w in windows]),
            array("q", [w[1] for w in windows]),
            max(w[1] - w[0] for w in windows),
        )

    def __len__(self) -> int:
        """
        How many windows are held.
        """
        return sum(len(v[0]) for v in self._nodes.values())

    def freeFrom(self, nodeid: str, start: int, duration: int, padding: int) -> Optional[int]:
        """
        C{None} when the node is free for C{[start, start + duration)} (its
        windows padded), else the earliest later start at which it is (its
        conflicts chained: a window ending where the next one blocks does not
        free it), or L{UNKNOWN} for a pending node.
        """
        if nodeid in self.pending:
            return UNKNOWN
        found = self._nodes.get(nodeid)
        if found is None:
            return None
        starts, stops, longest = found
        reach = padding + duration
        at = start
        for k in range(bisect_left(starts, start - padding - longest), len(starts)):
            if starts[k] - reach >= at:
                break
            if stops[k] + padding > at:
                at = stops[k] + padding
        return None if at == start else at

    def freeThrough(self, nodeid: str, start: int, duration: int, padding: int) -> int:
        """
        For a node free at C{start} (L{freeFrom} is C{None}), the last start
        at which it still is: just before its next window blocks.
        """
        found = self._nodes.get(nodeid)
        if found is None:
            return FOREVER
        starts = found[0]
        k = bisect_left(starts, start + padding + duration)
        return starts[k] - padding - duration if k < len(starts) else FOREVER

    def windows(self, nodeid: str, low: int, high: int) -> list[tuple[int, int]]:
        """
        The node's windows overlapping C{[low, high)} (the caller checks
        L{pending} first).
        """
        found = self._nodes.get(nodeid)
        if found is None:
            return []
        starts, stops, longest = found
        return [
            (starts[k], stops[k])
            for k in range(bisect_left(starts, low - longest), bisect_left(starts, high))
            if stops[k] > low
        ]
