# -*- test-case-name: tests.test_slots -*-
"""
Eligibility and slot search: the earliest windows in which enough eligible nodes are free.

Windows are half-open C{[start, stop)}. A blocking schedule C{[a, b)} on a node
keeps C{[a - padding, b + padding)} from any new schedule on that node: a new
window may start at C{b + padding} or end at C{a - padding} exactly (the legacy
rule was off by one second, legacy reference §5.2). Only exclusive, non-final
schedules block; shared (passive) schedules block nothing, but a shared request
still needs nodes free of exclusive schedules (the legacy rule, kept).

The search jumps from event to event: when a candidate start fails, the next
candidate is the earliest moment one of the conflicting windows (or the
maintenance window) ends, because before that no node can become free. Each step
is one indexed interval query over the candidate window, never a scan of every
schedule.

The search counts units: single nodes, or in pair mode C{(head, tail)} pairs,
a pair being free when both its nodes are (legacy reference §5.3).
"""

from __future__ import annotations

from typing import Iterable, Mapping, Optional, Sequence

import attrs

from am.core.interfaces import IStoreTransaction
from am.core.model import NODE_ACTIVE, Node
from am.core.nodefilter import Filter
from am.core.policy import Policy


@attrs.frozen
class Slot:
    """
    A window found for a request: per instance, the units chosen (a unit is
    one node id, or a C{(head, tail)} pair of ids in pair mode).
    """

    start: int
    stop: int
    maxStop: int
    nodecount: int
    maxNodecount: int
    nodes: tuple[tuple[tuple[str, ...], ...], ...]


@attrs.frozen
class Shortage:
    """
    Why a fixed window failed: how many units were free for which instance.
    """

    instance: int
    start: int
    stop: int
    available: int
    requested: int


@attrs.frozen
class Pairing:
    """
    How a request treats node pairs (legacy C{interfaceCount}, legacy reference
    §5.3): whether heads and tails may be chosen as single nodes, or whether
    the request books whole C{(head, tail)} pairs.
    """

    heads: bool = False
    tails: bool = True
    paired: bool = False

    @classmethod
    def choose(cls, interfaceCount: int, scripts: int, explicit: bool) -> "Pairing":
        """
        Two scripts always mean pairs; an explicit node list takes any node;
        otherwise 1 (or less) takes nodes that are not heads, 2 nodes that are
        not tails, 3 or more whole pairs.
        """
        if scripts == 2:
            return cls(heads=True, tails=True, paired=True)
        if explicit:
            return cls(heads=True, tails=True, paired=False)
        return cls(heads=interfaceCount >= 2, tails=interfaceCount != 2, paired=interfaceCount >= 3)

    @property
    def size(self) -> int:
        """
        Nodes per unit.
        """
        return 2 if self.paired else 1


SINGLE = Pairing()

Unit = tuple[Node, ...]


@attrs.define
class Eligible:
    """
    The units (nodes, or head/tail pairs) a request may use, best first, and
    those whose heartbeat is fresh enough for an imminent start.
    """

    units: list[Unit]
    fresh: list[Unit]
    now: int
    policy: Policy
    explicit: bool

    def at(self, start: int) -> list[Unit]:
        """
        The units usable for a window starting at C{start}: an imminent start needs
        a recent heartbeat (legacy §5.1), unless nodes were named explicitly.
        """
        if self.explicit or not self.policy.requireHeartbeat:
            return self.units
        if start - self.now < self.policy.imminentWindow:
            return self.fresh
        return self.units


def heardRecently(node: Node, now: int, policy: Policy) -> bool:
    """
    The heartbeat-freshness rule (legacy §5.1): a node not heard within
    C{heartbeatAge} is not offered, unless the policy does not require heartbeats.
    """
    return not policy.requireHeartbeat or node.heartbeat >= now - policy.heartbeatAge


def usable(node: Node, now: int, policy: Policy) -> bool:
    """
    Whether a node can be booked now at all: active and heard recently.
    """
    return node.status == NODE_ACTIVE and heardRecently(node, now, policy)


def eligibleNodes(
    nodes: Iterable[Node],
    nodeFilter: Filter,
    explicit: Optional[Sequence[str]],
    now: int,
    policy: Policy,
    pairs: Optional[Mapping[str, str]] = None,
    pairing: Pairing = SINGLE,
    penalties: Optional[Mapping[str, int]] = None,
) -> Eligible:
    """
    Filter and order the candidate units: active nodes matching the filter (or
    named explicitly), with a heartbeat recent enough; heads or tails left
    out as C{pairing} says (C{pairs} maps heads to tails), or, in pair mode,
    heads whose tail is eligible too. The ranking, deterministic: the
    healthiest first (the fewest recent failures and heartbeat gaps,
    C{penalties} by node id, summed over a pair's nodes), then the most
    recently heard, then by id.
    """
    pairs = pairs or {}
    tails = {tail: head for head, tail in pairs.items()}
    wanted = set(str(n) for n in explicit) if explicit is not None else None
    chosen = []
    for node in nodes:
        if node.status != NODE_ACTIVE:
            continue
        if wanted is not None:
            if node.id not in wanted:
                continue
        if not nodeFilter.matches(node.tags):
            continue
        chosen.append(node)
    if wanted is None and policy.requireHeartbeat:
        chosen = [n for n in chosen if heardRecently(n, now, policy)]
    units: list[Unit]
    if pairing.paired:
        byId = {n.id: n for n in chosen}
        units = [(n, byId[pairs[n.id]]) for n in chosen if pairs.get(n.id) in byId]
    else:
        units = [
            (n,) for n in chosen
            if (pairing.heads or n.id not in pairs) and (pairing.tails or n.id not in tails)
        ]
    penalty = penalties or {}
    units.sort(key=lambda u: (sum(penalty.get(n.id, 0) for n in u), -min(n.heartbeat for n in u), u[0].id))
    limit = now - policy.imminentHeartbeatAge
    fresh = [u for u in units if all(n.heartbeat >= limit for n in u)]
    return Eligible(units, fresh, now, policy, wanted is not None)


def _freeAt(
    txn: IStoreTransaction, candidates: list[Unit], start: int, stop: int, padding: int
) -> tuple[list[tuple[str, ...]], Optional[int]]:
    """
    The free candidate units (as ids) for C{[start, stop)}, a unit being free
    when all its nodes are, and the earliest padded end of a conflict among
    the candidates (when some are busy).
    """
    ids = [n.id for unit in candidates for n in unit]
    conflicts = txn.blockingIntervals(
        start - padding, stop + padding, ids if len(ids) <= 64 else None
    )
    wanted = set(ids)
    busy: set[str] = set()
    nextEnd = None
    for c in conflicts:
        if c.nodeid in wanted:
            busy.add(c.nodeid)
            end = c.stop + padding
            if nextEnd is None or end < nextEnd:
                nextEnd = end
    free = [tuple(n.id for n in unit) for unit in candidates]
    return [u for u in free if not busy.intersection(u)], nextEnd


def tryWindow(
    txn: IStoreTransaction,
    eligible: Eligible,
    count: int,
    start: int,
    duration: int,
    offsets: Sequence[int],
) -> tuple[
    Optional[tuple[tuple[tuple[str, ...], ...], ...]], Optional[Shortage], Optional[int]
]:
    """
    Check one candidate start for every instance.

    @return: C{(units per instance, None, None)} on success, or C{(None, shortage,
        next candidate start)} on failure.
    """
    policy = eligible.policy
    chosen = []
    for index, offset in enumerate(offsets):
        s = start + offset
        e = s + duration
        bump = policy.maintenanceConflict(s, e)
        if bump is not None:
            return None, Shortage(index, s, e, 0, count), bump - offset
        free, nextEnd = _freeAt(txn, eligible.at(s), s, e, policy.padding)
        if len(free) < count:
            nextStart = None if nextEnd is None else nextEnd - offset
            return None, Shortage(index, s, e, len(free), count), nextStart
        chosen.append(tuple(free[:count]))
    return tuple(chosen), None, None


def _maxStop(
    txn: IStoreTransaction, chosen: Sequence[str], start: int, duration: int, policy: Policy
) -> int:
    """
    How long the first instance could run on the nodes chosen for it: until the
    first of them gets busy, the next maintenance window, or the runtime limit.
    """
    limit = policy.maintenanceFreeUntil(start, start + max(policy.maxRuntime, duration))
    for c in txn.blockingIntervals(start, limit + policy.padding, list(chosen)):
        limit = min(limit, max(start + duration, c.start - policy.padding))
    return limit


def search(
    txn: IStoreTransaction,
    eligible: Eligible,
    count: int,
    duration: int,
    earliest: int,
    latest: int,
    offsets: Sequence[int] = (0,),
    results: int = 1,
    extent: bool = True,
) -> tuple[list[Slot], Optional[Shortage]]:
    """
    The earliest C{results} disjoint windows, starting in C{[earliest, latest]}, in
    which every instance finds C{count} free eligible units.

    @param extent: compute each slot's C{maxStop} and C{maxNodecount} (for
        answers to a search; a booking does not need them).
    @return: the slots found, and the first shortage met (to explain a failure).
    """
    slots: list[Slot] = []
    first: Optional[Shortage] = None
    if len(eligible.units) < count:
        return slots, Shortage(0, earliest, earliest + duration, len(eligible.units), count)
    t = earliest
    while t <= latest and len(slots) < results:
        nodes, shortage, nextStart = tryWindow(txn, eligible, count, t, duration, offsets)
        if nodes is not None:
            if extent:
                free, _ = _freeAt(txn, eligible.at(t), t, t + duration, eligible.policy.padding)
                chosenIds = [nodeid for unit in nodes[0] for nodeid in unit]
                maxStop = _maxStop(txn, chosenIds, t, duration, eligible.policy)
            else:
                free, maxStop = list(nodes[0]), t + duration
            slots.append(Slot(t, t + duration, maxStop, count, len(free), nodes))
            t = max(maxStop, t + duration) + eligible.policy.padding
            continue
        if first is None:
            first = shortage
        if nextStart is None:
            # Too few nodes even with nothing booked: waiting cannot help, except
            # that imminent starts see fewer (freshly heard) nodes than later ones.
            if eligible.at(t) is not eligible.units and len(eligible.units) >= count:
                nextStart = eligible.now + eligible.policy.imminentWindow
            else:
                break
        t = max(nextStart, t + 1)
    return slots, first
