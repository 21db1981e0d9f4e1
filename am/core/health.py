# -*- test-case-name: tests.test_healing -*-
"""
A health record per node (issue 16): heartbeat gaps (the node came back
after a silence longer than C{imminent_heartbeat_age}) and tasks failed for
node reasons (the sweep failed them: never deployed, or the node went
silent), each counted over the last C{heal_window} seconds; with the node's
status (C{maintenance}, C{disabled}, C{missing}) and the age of its last
heartbeat, that says whether the node is healthy.

Unbound requests take healthy nodes first (L{penalties}, used by
L{am.core.slots.eligibleNodes}); self-healing bookings leave nodes that are
down or failing (L{am.core.healing}).
"""

from __future__ import annotations

import bisect
from typing import Iterable, Iterator, Mapping, Optional

import attrs

from am.core.interfaces import IStoreTransaction
from am.core.model import NODE_ACTIVE, Node, NodeHealth
from am.core.policy import Policy


def _latest(record: NodeHealth) -> int:
    return max(record.lastGap, record.lastFailure)


class HealthRecords(Mapping[str, NodeHealth]):
    """
    Every node's health record by node id, read-only: a store keeps one
    between transactions until a health write commits (L{am.store.healthcache}),
    so callers read it and never change it or its records. Also ordered by
    each record's latest event, so that L{penalties} reads only the few
    records inside the heal window, not one per node of the testbed.
    """

    __slots__ = ("_byId", "_order", "_latest")

    def __init__(self, records: Iterable[NodeHealth] = ()) -> None:
        self._byId = {r.nodeid: r for r in records}
        self._order = sorted(self._byId.values(), key=_latest)
        self._latest = [_latest(r) for r in self._order]

    def __getitem__(self, nodeid: str) -> NodeHealth:
        return self._byId[nodeid]

    def __iter__(self) -> Iterator[str]:
        return iter(self._byId)

    def __len__(self) -> int:
        return len(self._byId)

    def __repr__(self) -> str:
        return f"HealthRecords({list(self._byId.values())!r})"

    def since(self, when: int) -> list[NodeHealth]:
        """
        The records with an event later than C{when}.
        """
        return self._order[bisect.bisect_right(self._latest, when):]


def _recent(count: int, last: int, now: int, policy: Policy) -> int:
    """
    A counter whose last event is older than the window counts nothing.
    """
    return count if last > now - policy.healWindow else 0


def noteGap(txn: IStoreTransaction, nodeid: str, now: int, policy: Policy) -> None:
    """
    Record a heartbeat gap of the node (it heartbeats again after a silence).
    """
    record = txn.getHealth(nodeid)
    record.gaps = _recent(record.gaps, record.lastGap, now, policy) + 1
    record.lastGap = now
    txn.putHealth(record)


def noteFailure(txn: IStoreTransaction, nodeid: str, now: int, policy: Policy) -> None:
    """
    Record a task the node failed for a node reason (never deployed, silent).
    """
    record = txn.getHealth(nodeid)
    record.failures = _recent(record.failures, record.lastFailure, now, policy) + 1
    record.lastFailure = now
    txn.putHealth(record)


@attrs.frozen
class Assessment:
    """
    What the record and the node's row say now: C{why} is empty for a
    healthy node, else the reason in words (for the owner); C{penalty} ranks
    eligible nodes (0 best).
    """

    nodeid: str
    why: str
    penalty: int
    gaps: int
    failures: int

    @property
    def healthy(self) -> bool:
        """
        Up, heard recently and not failing.
        """
        return not self.why


def assess(node: Node, record: Optional[NodeHealth], now: int, policy: Policy) -> Assessment:
    """
    The health of one node now.
    """
    record = record or NodeHealth(node.id)
    gaps = _recent(record.gaps, record.lastGap, now, policy)
    failures = _recent(record.failures, record.lastFailure, now, policy)
    why = ""
    if node.status != NODE_ACTIVE:
        why = f"in status {node.status}"
    elif node.heartbeat < now - policy.healSilence:
        why = f"silent since {node.heartbeat}" if node.heartbeat else "never heard"
    elif failures >= policy.healFailures:
        why = f"failing ({failures} task(s) failed for node reasons recently)"
    return Assessment(node.id, why, failures + gaps, gaps, failures)


def assessAll(txn: IStoreTransaction, nodes: Iterable[Node], now: int, policy: Policy) -> dict[str, Assessment]:
    """
    The health of every given node, by id, from one read of the records.
    """
    records = txn.listHealth()
    return {n.id: assess(n, records.get(n.id), now, policy) for n in nodes}


def penalties(records: Mapping[str, NodeHealth], now: int, policy: Policy) -> dict[str, int]:
    """
    Per node with a record, its recent failures plus gaps: the first key of
    the ranking of eligible nodes (L{am.core.slots.eligibleNodes}). Of
    L{HealthRecords}, only those with an event in the window (the others
    count nothing).
    """
    since = now - policy.healWindow
    chosen = records.since(since) if isinstance(records, HealthRecords) else records.values()
    return {
        r.nodeid: _recent(r.failures, r.lastFailure, now, policy) + _recent(r.gaps, r.lastGap, now, policy)
        for r in chosen
    }
