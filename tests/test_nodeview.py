"""
The node view (am/core/nodeview.py) and its coherence in both stores
(am/store/viewkeeper.py): a change of a node's static facts is seen by the next
transaction through C{nodes_version}, also when another controller (another
connection to the same database) made it; heartbeats are applied once
committed, and another controller's within the refresh period; a rolled-back
transaction leaves nothing behind.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from typing import Any, Iterator

import pytest

from am.core.model import NODE_MAINTENANCE, Node
from am.core.nodeview import NodeView
from am.store import viewkeeper
from am.store.postgres import PostgresDatabase
from am.store.sqlite import SQLiteDatabase
from am.testing import demoNodes
from tests.storefixtures import TemporaryDatabase


def order(view: NodeView, since: Any = None) -> list[tuple[int, str]]:
    return [(n.heartbeat, n.id) for n in view.byRecency(since)]


def test_recencyOrder() -> None:
    """
    The walk gives the most recently heard first, ties by id, and follows
    heartbeats (never backwards); C{since} cuts off the silent ones.
    """
    nodes = [Node(id=str(i), heartbeat=hb) for i, hb in enumerate([5, 9, 5, 1, 9, 0])]
    view = NodeView(1, nodes)
    assert order(view) == sorted(((n.heartbeat, n.id) for n in nodes), key=lambda p: (-p[0], p[1]))
    view.heard("3", 10)
    view.heard("1", 4)  # older than what it has: ignored
    view.heard("unknown", 20)
    assert order(view) == [(10, "3"), (9, "1"), (9, "4"), (5, "0"), (5, "2"), (0, "5")]
    assert order(view, since=5) == [(10, "3"), (9, "1"), (9, "4"), (5, "0"), (5, "2")]


def test_heardDuringWalk() -> None:
    """
    A heartbeat applied while a walk is under way neither repeats nor loses a node.
    """
    view = NodeView(1, [Node(id=str(i), heartbeat=i) for i in range(10)])
    walk = view.byRecency()
    seen = [next(walk).id, next(walk).id]
    view.heard("0", 100)
    view.heard("5", 100)
    seen += [n.id for n in walk]
    assert sorted(seen) == [str(i) for i in range(10)]


def test_memoBounded() -> None:
    view = NodeView(1, [])
    for i in range(NodeView.MEMO_LIMIT + 3):
        view.remember(i, i)
    assert len(view.memo) <= NodeView.MEMO_LIMIT


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["sqlite", "postgres"])
def controllers(request: Any) -> Iterator[tuple[Any, Any, FakeClock]]:
    """
    Two databases open on the same data (two controllers), the first with a fake clock.
    """
    if request.param == "sqlite":
        directory = tempfile.TemporaryDirectory()
        path = os.path.join(directory.name, "m.db")
        first, second = SQLiteDatabase(path), SQLiteDatabase(path)
        cleanup = directory.cleanup
    else:
        server = TemporaryDatabase()
        url = server.schema(f"s_{secrets.token_hex(4)}")
        first, second = PostgresDatabase(url), PostgresDatabase(url)
        cleanup = server.drop
    clock = FakeClock()
    first.keeper.clock = clock
    for node in demoNodes(3, 100):
        first.run(lambda txn, n=node: txn.putNode(n))
    try:
        yield first, second, clock
    finally:
        first.close()
        second.close()
        cleanup()


def view(database: Any) -> NodeView:
    return database.run(lambda txn: txn.nodeView())


def test_staticChangeSeenAtOnce(controllers: tuple[Any, Any, FakeClock]) -> None:
    """
    A node's tags, status, pairing or existence changed by another controller
    are seen by the next transaction: the version moved.
    """
    first, second, _ = controllers
    before = view(first)
    assert before.get("1").tags["country"] == "se"
    assert view(first) is before  # nothing changed: the same view, nothing decoded

    def retag(txn: Any) -> None:
        node = txn.getNode("1")
        node.adminTags = {"country": "no"}
        node.status = NODE_MAINTENANCE
        txn.putNode(node)
        txn.setPair("2", "3")

    second.run(retag)
    after = view(first)
    assert after is not before
    assert after.get("1").tags["country"] == "no"
    assert after.get("1").status == NODE_MAINTENANCE
    assert after.pairs == {"2": "3"}
    second.run(lambda txn: txn.deletePairs("2"))
    assert view(first).pairs == {}


def test_ownHeartbeatAtOnce(controllers: tuple[Any, Any, FakeClock]) -> None:
    """
    A heartbeat this controller committed is in its view at the next
    transaction, without a refresh and without a new view.
    """
    first, _, _ = controllers
    before = view(first)
    first.run(lambda txn: txn.setHeartbeat("2", 500, None, [{"iccid": "1"}]))
    after = view(first)
    assert after is before
    assert [n.id for n in after.byRecency()][0] == "2"
    assert after.get("2").heartbeat == 500
    assert after.get("2").interfaces == [{"iccid": "1"}]


def test_otherHeartbeatWithinRefresh(controllers: tuple[Any, Any, FakeClock]) -> None:
    """
    Another controller's heartbeat shows once the refresh period has passed.
    """
    first, second, clock = controllers
    view(first)
    second.run(lambda txn: txn.setHeartbeat("3", 700, None, None))
    assert view(first).get("3").heartbeat == 100
    clock.now += viewkeeper.REFRESH
    assert view(first).get("3").heartbeat == 700
    assert [n.id for n in view(first).byRecency()][0] == "3"


def test_rolledBackLeavesNothing(controllers: tuple[Any, Any, FakeClock]) -> None:
    """
    A transaction that fails after a heartbeat and a node change leaves the
    view as it was: neither the heartbeat nor the change is seen.
    """
    first, _, _ = controllers
    view(first)

    def failing(txn: Any) -> None:
        txn.setHeartbeat("1", 900, None, None)
        node = txn.getNode("2")
        node.adminTags = {"country": "xx"}
        txn.putNode(node)
        txn.nodeView()  # a view of the uncommitted change
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        first.run(failing)
    after = view(first)
    assert after.get("1").heartbeat == 100
    assert after.get("2").tags["country"] == "se"


def test_backlogBounded(controllers: tuple[Any, Any, FakeClock]) -> None:
    """
    Heartbeats nobody reads do not pile up: past the backlog the keeper reads
    every heartbeat back instead.
    """
    first, _, _ = controllers
    view(first)
    for when in range(200, 200 + viewkeeper.BACKLOG + 10):
        first.keeper.committed([("1", when, None)])
    assert len(first.keeper._inbox) < viewkeeper.BACKLOG
    first.run(lambda txn: txn.setHeartbeat("1", 99999, None, None))
    assert view(first).get("1").heartbeat == 99999
