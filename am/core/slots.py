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
looks the candidates up in the store's interval index
(L{am.core.intervalindex}) when it keeps one, and the units it chooses are then
verified against the database; otherwise it asks the database in short lists
of ids, never scanning every schedule.

The search counts units: single nodes, or in pair mode C{(head, tail)} pairs,
a pair being free when both its nodes are (legacy reference §5.3).
"""

from __future__ import annotations

import itertools
from typing import Any, Iterable, Iterator, Mapping, Optional, Sequence

import attrs

from am.core.interfaces import IStoreTransaction
from am.core.intervalindex import IntervalIndex
from am.core.model import NODE_ACTIVE, Node
from am.core.nodefilter import Filter
from am.core.nodeview import NodeView
from am.core.policy import Policy
from am.core.walks import Pool, freeInIndex


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


class Eligible:
    """
    The units (nodes, or head/tail pairs) a request may use, best first (the
    most recently heard first), drawn lazily: a booking that needs two free
    nodes looks at a few candidates, not at the whole testbed.
    """

    def __init__(
        self, source: Iterable[Unit], now: int, policy: Policy, explicit: bool,
        view: Optional[NodeView] = None, key: Any = None,
    ) -> None:
        self._source: Optional[Iterator[Unit]] = iter(source)
        self._units: list[Unit] = []
        self.now = now
        self.policy = policy
        self.explicit = explicit
        # What determines the units and their order (with the view): equal
        # keys of one view give equal units, so searches may share walks.
        self.view = view
        self.key = key

    def _fill(self, count: Optional[int]) -> None:
        """
        Draw units until there are C{count} (all of them for C{None}).
        """
        source, units = self._source, self._units
        if source is None:
            return
        while count is None or len(units) < count:
            unit = next(source, None)
            if unit is None:
                self._source = None
                return
            units.append(unit)

    @property
    def units(self) -> list[Unit]:
        """
        Every eligible unit, best first (draws them all).
        """
        self._fill(None)
        return self._units

    def atLeast(self, count: int) -> bool:
        """
        Whether there are C{count} eligible units (draws no more than that).
        """
        self._fill(count)
        return len(self._units) >= count

    def first(self, count: int) -> list[Unit]:
        """
        The best C{count} units (fewer if there are not as many).
        """
        self._fill(count)
        return self._units[:count]

    def restricted(self, start: int) -> bool:
        """
        Whether a window starting at C{start} is imminent, so that only units
        with a recent heartbeat may take it (legacy §5.1), unless nodes were
        named explicitly.
        """
        return (
            not self.explicit and self.policy.requireHeartbeat
            and start - self.now < self.policy.imminentWindow
        )

    def candidates(self, start: int) -> Iterator[Unit]:
        """
        The units usable for a window starting at C{start}, best first: an
        imminent start takes only those heard within C{imminentHeartbeatAge}.
        """
        limit = self.now - self.policy.imminentHeartbeatAge if self.restricted(start) else None
        index = 0
        while True:
            if index >= len(self._units):
                self._fill(index + _CHUNK)
                if index >= len(self._units):
                    return
            unit = self._units[index]
            index += 1
            if limit is None or min(n.heartbeat for n in unit) >= limit:
                yield unit


# How many node ids one interval query of the free check names (the stores
# look such short lists up node by node through their index).
_CHUNK = 64


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


def _matching(view: NodeView, nodeFilter: Filter) -> frozenset[str]:
    """
    The active nodes matching C{nodeFilter}, worked out once per view version.
    """
    key = ("matching", nodeFilter)
    found = view.memo.get(key)
    if found is None:
        found = view.remember(key, frozenset(
            n.id for n in view.byId.values() if n.status == NODE_ACTIVE and nodeFilter.matches(n.tags)
        ))
    return found


def eligibleNodes(
    view: NodeView,
    nodeFilter: Filter,
    explicit: Optional[Sequence[str]],
    now: int,
    policy: Policy,
    pairing: Pairing = SINGLE,
    penalties: Optional[Mapping[str, int]] = None,
) -> Eligible:
    """
    Filter and order the candidate units: active nodes matching the filter (or
    named explicitly), with a heartbeat recent enough; heads or tails left
    out as C{pairing} says (the view's pairs map heads to tails), or, in pair
    mode, heads whose tail is eligible too. The ranking, deterministic: the
    healthiest first (the fewest recent failures and heartbeat gaps,
    C{penalties} by node id, summed over a pair's nodes), then the most
    recently heard, then by id. Nodes without a penalty come lazily from the
    view's heartbeat order; the few with one are sorted after them.
    """
    pairs = view.pairs
    tails = set(pairs.values())
    penalty = {k: v for k, v in (penalties or {}).items() if v}
    wanted = set(str(n) for n in explicit) if explicit is not None else None
    since = now - policy.heartbeatAge if wanted is None and policy.requireHeartbeat else None
    lazy = False
    chosen: Iterable[Node]
    if wanted is not None:
        chosen = [
            n for n in (view.get(i) for i in wanted)
            if n is not None and n.status == NODE_ACTIVE and nodeFilter.matches(n.tags)
        ]
    else:
        matching = _matching(view, nodeFilter)
        if pairing.paired or len(matching) * 8 < len(view):
            # Few candidates (or pairs): sorting them beats walking every node.
            chosen = [n for n in (view.byId[i] for i in matching) if since is None or n.heartbeat >= since]
        else:
            lazy = True
            chosen = (n for n in view.byRecency(since) if n.id in matching and n.id not in penalty)

    def rank(units: Iterable[Unit]) -> list[Unit]:
        return sorted(units, key=lambda u: (
            sum(penalty.get(n.id, 0) for n in u), -min(n.heartbeat for n in u), u[0].id
        ))

    def single(nodes: Iterable[Node]) -> Iterator[Unit]:
        return (
            (n,) for n in nodes
            if (pairing.heads or n.id not in pairs) and (pairing.tails or n.id not in tails)
        )

    units: Iterable[Unit]
    if pairing.paired:
        byId = {n.id: n for n in chosen}
        units = rank((n, byId[pairs[n.id]]) for n in byId.values() if pairs.get(n.id) in byId)
    elif lazy:
        penalised = [
            view.byId[i] for i in penalty
            if i in matching and (since is None or view.byId[i].heartbeat >= since)
        ]
        units = itertools.chain(single(chosen), rank(single(penalised)))
    else:
        units = rank(single(chosen))
    key = (
        view.version, view.stamp, nodeFilter, None if wanted is None else tuple(sorted(wanted)), now,
        policy, pairing, tuple(sorted(penalty.items())),
    )
    return Eligible(units, now, policy, wanted is not None, view, key)


def intervalIndex(txn: IStoreTransaction) -> Optional[IntervalIndex]:
    """
    The store's interval index for this transaction, if it keeps one.
    """
    get = getattr(txn, "intervalIndex", None)
    return get() if get is not None else None


def _windowsOf(
    txn: IStoreTransaction, index: Optional[IntervalIndex], ids: Sequence[str], low: int, high: int
) -> list[tuple[str, int, int]]:
    """
    The blocking windows of C{ids} overlapping C{[low, high)}: from the index,
    except for nodes it does not answer for (the database's).
    """
    asked = list(ids) if index is None else [i for i in ids if i in index.pending]
    found = [(c.nodeid, c.start, c.stop) for c in txn.blockingIntervals(low, high, asked)] if asked else []
    if index is not None:
        found += [(i, a, b) for i in ids if i not in index.pending for a, b in index.windows(i, low, high)]
    return found


def _freeAt(
    txn: IStoreTransaction,
    eligible: Eligible,
    start: int,
    stop: int,
    padding: int,
    need: Optional[int] = None,
    index: Optional[IntervalIndex] = None,
    walks: Optional[dict[Any, Pool]] = None,
) -> tuple[list[tuple[str, ...]], Optional[int]]:
    """
    The free candidate units (as ids) for C{[start, stop)}, a unit being free
    when all its nodes are, and the earliest padded end of a conflict among
    the candidates looked at. With C{need}, it stops once that many are free
    (else, and when there are not as many, it has looked at every candidate).
    With an C{index}, the candidates are looked up there, not in the database,
    and C{walks} keeps what searches learnt (L{am.core.walks}).
    """
    if index is not None:
        which = (eligible.restricted(start), stop - start, padding)
        pool = walks.get(which) if walks is not None else None
        if pool is None:
            pool = Pool(eligible.candidates(start))
            if walks is not None:
                walks[which] = pool

        def ask(nodeid: str, low: int, high: int) -> Optional[int]:
            stops = [c.stop for c in txn.blockingIntervals(low, high, [nodeid])]
            return min(stops) + padding if stops else None

        return freeInIndex(index, pool.walkAt(start, index), start, stop, padding, need, ask)
    free: list[tuple[str, ...]] = []
    nextEnd = None
    candidates = eligible.candidates(start)
    head = next(candidates, None)
    if head is None:
        return free, nextEnd
    candidates = itertools.chain((head,), candidates)
    low, high = start - padding, stop + padding
    most = _CHUNK // len(head)
    size = most if need is None else min(most, 2 * need)
    # Short lists of ids only, never a scan of the window: a store may lock
    # what it is asked about (PostgreSQL locks those nodes).
    while need is None or len(free) < need:
        chunk = list(itertools.islice(candidates, size))
        if not chunk:
            break
        ends: dict[str, int] = {}
        for c in txn.blockingIntervals(low, high, [n.id for unit in chunk for n in unit]):
            end = c.stop + padding
            if end < ends.get(c.nodeid, end + 1):
                ends[c.nodeid] = end
        for unit in chunk:
            busy = [ends[n.id] for n in unit if n.id in ends]
            if busy:
                end = min(busy)
                if nextEnd is None or end < nextEnd:
                    nextEnd = end
            elif need is None or len(free) < need:
                free.append(tuple(n.id for n in unit))
        size = most
    return free, nextEnd


# A window's check: the units per instance, or the shortage and the next start to try.
WindowResult = tuple[
    Optional[tuple[tuple[tuple[str, ...], ...], ...]], Optional[Shortage], Optional[int]
]


def tryWindow(
    txn: IStoreTransaction,
    eligible: Eligible,
    count: int,
    start: int,
    duration: int,
    offsets: Sequence[int],
    walks: Optional[dict[int, dict[Any, Pool]]] = None,
) -> WindowResult:
    """
    Check one candidate start for every instance; units chosen through the
    interval index are verified against the database (L{_verified}).
    C{walks} carries what a search learnt at its earlier starts, per instance.

    @return: C{(units per instance, None, None)} on success, or C{(None, shortage,
        next candidate start)} on failure.
    """
    index = intervalIndex(txn)
    walks = {} if walks is None else walks
    for _ in range(_VERIFY_ATTEMPTS):
        result = _tryWindow(txn, eligible, count, start, duration, offsets, index, walks)
        chosen = result[0]
        if index is None or chosen is None or _verified(
            txn, index, chosen, start, duration, offsets, eligible.policy.padding
        ):
            return result
        walks.clear()  # it learnt from the index as it was
    return _tryWindow(txn, eligible, count, start, duration, offsets, None, walks)


def _tryWindow(
    txn: IStoreTransaction,
    eligible: Eligible,
    count: int,
    start: int,
    duration: int,
    offsets: Sequence[int],
    index: Optional[IntervalIndex],
    walks: dict[int, dict[Any, Pool]],
) -> WindowResult:
    policy = eligible.policy
    chosen = []
    for number, offset in enumerate(offsets):
        s = start + offset
        e = s + duration
        bump = policy.maintenanceConflict(s, e)
        if bump is not None:
            return None, Shortage(number, s, e, 0, count), bump - offset
        kept = _keptWalks(index, eligible, walks, number, offset)
        free, nextEnd = _freeAt(txn, eligible, s, e, policy.padding, count, index, kept)
        if len(free) < count:
            nextStart = None if nextEnd is None else nextEnd - offset
            return None, Shortage(number, s, e, len(free), count), nextStart
        chosen.append(tuple(free[:count]))
    return tuple(chosen), None, None


def _keptWalks(
    index: Optional[IntervalIndex], eligible: Eligible, walks: dict[int, dict[Any, Pool]],
    number: int, offset: int,
) -> dict[Any, Pool]:
    """
    The walks of instance C{number}: kept in the index across requests when
    the candidates have a key (the index tells a walk what changed since),
    else in this search's C{walks}.
    """
    if index is not None and eligible.key is not None:
        return index.walksOf(eligible.view, eligible.now).setdefault((eligible.key, offset), {})
    return walks.setdefault(number, {})


# How often a search through the interval index may find the database
# disagreeing with it (it then re-reads those nodes and searches again)
# before it searches the database itself.
_VERIFY_ATTEMPTS = 3
_FAR = 2**62


def _verified(
    txn: IStoreTransaction,
    index: IntervalIndex,
    chosen: Sequence[Sequence[tuple[str, ...]]],
    start: int,
    duration: int,
    offsets: Sequence[int],
    padding: int,
) -> bool:
    """
    Whether the database agrees that every node chosen through the index is
    free for its instance's padded window (the proof a booking rests on: the
    index is only a hint). Nodes it disagrees about are re-read into the index.
    """
    wrong: set[str] = set()
    for units, offset in zip(chosen, offsets):
        s = start + offset
        ids = [nodeid for unit in units for nodeid in unit]
        wrong.update(c.nodeid for c in txn.blockingIntervals(s - padding, s + duration + padding, ids))
    wrong -= index.pending
    if wrong:
        ids = sorted(wrong)
        index.replace(ids, [(c.nodeid, c.start, c.stop) for c in txn.blockingIntervals(-_FAR, _FAR, ids)])
    return not wrong


def _maxStop(
    txn: IStoreTransaction, chosen: Sequence[str], start: int, duration: int, policy: Policy,
    index: Optional[IntervalIndex] = None,
) -> int:
    """
    How long the first instance could run on the nodes chosen for it: until the
    first of them gets busy, the next maintenance window, or the runtime limit.
    """
    limit = policy.maintenanceFreeUntil(start, start + max(policy.maxRuntime, duration))
    for _, begin, _ in _windowsOf(txn, index, chosen, start, limit + policy.padding):
        limit = min(limit, max(start + duration, begin - policy.padding))
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
    if not eligible.atLeast(count):
        return slots, Shortage(0, earliest, earliest + duration, len(eligible.units), count)
    index = intervalIndex(txn)
    walks: dict[int, dict[Any, Pool]] = {}
    t = earliest
    while t <= latest and len(slots) < results:
        nodes, shortage, nextStart = tryWindow(txn, eligible, count, t, duration, offsets, walks)
        if nodes is not None:
            if extent:
                free, _ = _freeAt(txn, eligible, t, t + duration, eligible.policy.padding, None, index,
                                  _keptWalks(index, eligible, walks, 0, offsets[0]))
                chosenIds = [nodeid for unit in nodes[0] for nodeid in unit]
                maxStop = _maxStop(txn, chosenIds, t, duration, eligible.policy, index)
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
            if eligible.restricted(t) and eligible.atLeast(count):
                nextStart = eligible.now + eligible.policy.imminentWindow
            else:
                break
        t = max(nextStart, t + 1)
    return slots, first
