"""
Shared set-up for tests of the scheduling core.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from am.core.allocation import AllocationRequest
from am.core.errors import MarvinError
from am.core.model import Node
from am.core.policy import Policy
from am.testing import makeScheduler

NOW = 1_000_080_000  # a midnight UTC


class CoreTestCase(SynchronousTestCase):
    """
    A scheduler over the in-memory store with five nodes heard at NOW and no
    maintenance windows, plus a user C{alice}.
    """

    nodes = 5
    policy = Policy(maintenance=())

    def setUp(self) -> None:
        self.scheduler, self.store, self.clock = makeScheduler(self.nodes, NOW, self.policy)
        self.alice = self.successResultOf(
            self.scheduler.addUser(name="alice", role="user", fingerprint="a" * 40)
        )
        self.bob = self.successResultOf(
            self.scheduler.addUser(name="bob", role="user", fingerprint="b" * 40)
        )
        self.admin = self.successResultOf(
            self.scheduler.addUser(name="root", role="admin", fingerprint="c" * 40)
        )

    def request(self, **kwargs: Any) -> AllocationRequest:
        values: dict[str, Any] = dict(
            ownerid=self.alice.id, name="exp", script="docker.io/monroe/ping", nodecount=1, duration=600
        )
        values.update(kwargs)
        return AllocationRequest(**values)

    def book(self, **kwargs: Any):
        return self.successResultOf(self.scheduler.allocate(self.request(**kwargs)))

    def refused(self, kind: type = MarvinError, **kwargs: Any) -> MarvinError:
        failure = self.failureResultOf(self.scheduler.allocate(self.request(**kwargs)), kind)
        return failure.value

    def putNode(self, node: Node) -> None:
        self.store.run(lambda txn: txn.putNode(node))

    def inTxn(self, function, *args):
        return self.store.run(function, *args)

    def blocking(self) -> list[tuple[str, int, int]]:
        """
        Every blocking window, for overlap checks.
        """
        return sorted(
            (i.nodeid, i.start, i.stop)
            for i in self.inTxn(lambda txn: txn.blockingIntervals(0, 2**62))
        )


def assertNoOverlap(windows: list[tuple[str, int, int]], padding: int) -> None:
    """
    No two blocking windows on one node come closer than the padding.
    """
    byNode: dict[str, list[tuple[int, int]]] = {}
    for node, start, stop in windows:
        byNode.setdefault(node, []).append((start, stop))
    for node, spans in byNode.items():
        spans.sort()
        for (a, b), (c, d) in zip(spans, spans[1:]):
            assert c >= b + padding, f"node {node}: [{a},{b}) and [{c},{d}) overlap"
