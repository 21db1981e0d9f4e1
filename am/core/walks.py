# -*- test-case-name: tests.test_intervalindex -*-
"""
The free check of the slot search over the interval index, remembering what
it learnt: a unit (node, or head/tail pair) busy for a start C{s} that can
be free no earlier than C{e} stays busy for every later start before C{e}
(same duration and padding) unless its windows change. So a later start, in
the same search or in a later one over the same candidates, looks again only
at the units released by then, those it found free, those whose windows
changed (the index's change log) and those it has not drawn yet.

Why: on a saturated testbed every candidate is busy at the earliest start; a
search that looked at each of them at each step cost O(nodes) per booking.

A L{Pool} belongs to one candidate list (the caller keys it: same view state,
filter, ranking, second, duration, padding, instance) and holds a few
L{Walk}s at different starts: the two earliest stay where searches begin and
take their first step (they are copied, cheaply, not moved), the others
follow the searches' later steps.
"""

from __future__ import annotations

import heapq
from typing import Any, Callable, Iterator, Optional

from am.core.intervalindex import UNKNOWN, IntervalIndex
from am.core.model import Node

Unit = tuple[Node, ...]
# How many walks a pool keeps.
POOL_SIZE = 4


class Pool:
    """
    The candidates of one search key, drawn once and shared by its walks.
    """

    def __init__(self, source: Iterator[Unit]) -> None:
        self._source: Optional[Iterator[Unit]] = source
        self.units: list[Unit] = []
        self.where: dict[str, list[int]] = {}  # node id -> positions
        self.walks: list[Walk] = []

    def unit(self, position: int) -> Optional[Unit]:
        """
        The unit at C{position}, drawing from the source as far as needed.
        """
        units = self.units
        while position >= len(units):
            unit = next(self._source, None) if self._source is not None else None
            if unit is None:
                self._source = None
                return None
            for node in unit:
                self.where.setdefault(node.id, []).append(len(units))
            units.append(unit)
        return units[position]

    def walkAt(self, start: int, index: IntervalIndex) -> "Walk":
        """
        The walk to use at C{start}: one standing there, else the furthest one
        before it, moved there; the two earliest of the pool (where searches
        begin and take their first step) are copied instead of moved.
        """
        walks = self.walks
        best = None
        for walk in walks:
            if walk.start == start:
                return walk
            if walk.start < start and (best is None or walk.start > best.start):
                best = walk
        kept = sorted(walks, key=lambda w: w.start)[:2]
        if best is not None and all(best is not w for w in kept):
            return best
        if best is not None:
            best = best.copy()
        else:
            best = Walk(self, index.epoch, len(index.changed), start)
        if len(walks) >= POOL_SIZE:
            walks.remove(max((w for w in walks if all(w is not k for k in kept)), key=lambda w: w.start))
        walks.append(best)
        return best


class Walk:
    """
    What is known at one start of a pool's candidates: busy units by the end
    of their conflict, units to look at again, how far the candidates were drawn.
    """

    def __init__(self, pool: Pool, epoch: int, gen: int, start: int) -> None:
        self.pool = pool
        self.ends: dict[int, int] = {}  # position -> earliest free start, while busy
        self.till: dict[int, int] = {}  # position -> last start it is free at, while free
        self.busy: list[tuple[int, int]] = []  # heap of (that start, position), some stale
        self.open: list[int] = []  # positions to look at again, ascending
        self.drawn = 0  # positions below this were looked at
        self.start = start
        self.epoch = epoch
        self.gen = gen  # where in the index's change log it read up to

    def copy(self) -> "Walk":
        other = Walk(self.pool, self.epoch, self.gen, self.start)
        other.ends = dict(self.ends)
        other.till = dict(self.till)
        other.busy = list(self.busy)
        other.open = list(self.open)
        other.drawn = self.drawn
        return other

    def catchUp(self, index: IntervalIndex, start: int) -> None:
        """
        Release the units whose nodes changed since, and those that may be
        free by C{start}.
        """
        changed = index.changed
        released = []
        if self.epoch != index.epoch or self.gen > len(changed):
            # The log started over: everything may have changed.
            released = list(self.ends)
            self.ends.clear()
            self.till.clear()
            self.epoch = index.epoch
        else:
            where = self.pool.where
            for nodeid in changed[self.gen:]:
                for position in where.get(nodeid, ()):
                    self.till.pop(position, None)
                    if self.ends.pop(position, None) is not None:
                        released.append(position)
        self.gen = len(changed)
        busy, ends = self.busy, self.ends
        while busy and (busy[0][0] <= start or ends.get(busy[0][1]) != busy[0][0]):
            end, position = heapq.heappop(busy)
            if ends.get(position) == end:
                del ends[position]
                released.append(position)
        if released:
            self.open = sorted(set(self.open).union(released))
        self.start = start

    def nextEnd(self) -> Optional[int]:
        """
        The earliest start at which a busy unit may be free.
        """
        busy, ends = self.busy, self.ends
        while busy and ends.get(busy[0][1]) != busy[0][0]:
            heapq.heappop(busy)
        return busy[0][0] if busy else None


def freeInIndex(
    index: IntervalIndex,
    walk: Walk,
    start: int,
    stop: int,
    padding: int,
    need: Optional[int],
    ask: Callable[[str, int, int], Optional[int]],
) -> tuple[list[tuple[str, ...]], Optional[int]]:
    """
    The free units (as ids, best first) for C{[start, stop)} with C{padding},
    at most C{need}, and, when fewer are free (then every candidate was looked
    at), the earliest start at which a busy one could be free: what
    C{am.core.slots._freeAt} finds through the database, with a later (still
    safe) next start, since the index sees a node's whole chain of conflicts.
    C{ask(node id, low, high)} is the earliest padded conflict end of a node
    the index does not answer for (pending), from the database.
    """
    walk.catchUp(index, start)
    freeFrom, ends, busy, pool, till = index.freeFrom, walk.ends, walk.busy, walk.pool, walk.till
    duration = stop - start

    def free(position: int, unit: Any) -> bool:
        # Known free through a later start: no lookup.
        if till.get(position, start - 1) >= start:
            return True
        # The unit is free from the latest of its nodes' next free starts.
        found = None
        sure = True
        for node in unit:
            e = freeFrom(node.id, start, duration, padding)
            if e == UNKNOWN:
                e = ask(node.id, start - padding, stop + padding)
                sure = False
            if e is not None and (found is None or e > found):
                found = e
        if found is None:
            if sure:
                till[position] = min(index.freeThrough(n.id, start, duration, padding) for n in unit)
            return True
        till.pop(position, None)
        ends[position] = found
        heapq.heappush(busy, (found, position))
        return False

    chosen: list[tuple[str, ...]] = []
    still: list[int] = []
    opened, units = walk.open, pool.units
    for at, position in enumerate(opened):
        if need is not None and len(chosen) >= need:
            still.extend(opened[at:])
            break
        if free(position, units[position]):
            chosen.append(tuple(n.id for n in units[position]))
            still.append(position)
    walk.open = still
    while need is None or len(chosen) < need:
        unit = pool.unit(walk.drawn)
        if unit is None:
            break
        position = walk.drawn
        walk.drawn += 1
        if free(position, unit):
            chosen.append(tuple(n.id for n in unit))
            still.append(position)
    return chosen, walk.nextEnd()
