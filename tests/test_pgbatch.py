"""
Heartbeats committed together on PostgreSQL (L{am.store.postgres}): a
batch is one transaction answered after its commit; when one of it fails,
each runs again alone and only that one fails.
"""

from __future__ import annotations

import secrets
from typing import Any, Iterator

import pytest
from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase

from am.core import accounts
from am.core.errors import Forbidden
from am.core.model import Node
from am.core.policy import Policy
from am.core.scheduler import Scheduler
from am.store.pgstore import PostgresStore
from am.store.postgres import PostgresDatabase
from am.testing import demoNodes
from tests.core_helpers import NOW
from tests.storefixtures import TemporaryDatabase

POLICY = Policy(maintenance=())
_server: list[TemporaryDatabase] = []


@pytest.fixture(scope="module", autouse=True)
def server() -> Iterator[TemporaryDatabase]:
    database = TemporaryDatabase()
    _server.append(database)
    yield database
    _server.remove(database)
    database.drop()


def fresh() -> str:
    return _server[0].schema(f"b_{secrets.token_hex(4)}")


def node(name: str) -> Any:
    def put(txn: Any) -> str:
        txn.putNode(Node(id=name, hostname=name))
        return txn._one("SELECT pg_current_xact_id()::text")[0]

    return put


def refused(txn: Any) -> None:
    raise Forbidden("no")


def test_oneTransaction() -> None:
    db = PostgresDatabase(fresh())
    outcomes = db.runBatch([(node("a"), (), {}), (node("b"), (), {})])
    assert [ok for ok, _ in outcomes] == [True, True]
    assert outcomes[0][1] == outcomes[1][1]
    assert {n.id for n in db.read(lambda txn: txn.listNodes())} == {"a", "b"}
    db.close()


def test_oneFailingRunsEachAlone() -> None:
    db = PostgresDatabase(fresh())
    outcomes = db.runBatch([(node("a"), (), {}), (refused, (), {}), (node("b"), (), {})])
    assert [ok for ok, _ in outcomes] == [True, False, True]
    assert outcomes[1][1].check(Forbidden)
    assert outcomes[0][1] != outcomes[2][1]
    assert {n.id for n in db.read(lambda txn: txn.listNodes())} == {"a", "b"}
    db.close()


class HeartbeatBatchTests(TestCase):
    """
    Through the scheduler on the store's threads, under the real reactor.
    """

    def setUp(self) -> None:
        self.store = PostgresStore(fresh(), reactor, threads=2)
        self.addCleanup(self.store.close)

    @defer.inlineCallbacks
    def test_concurrentHeartbeats(self):
        """
        Twenty heartbeats sent at once (and one by a wrong node) are answered
        after fewer commits than heartbeats; each is stored, and the wrong
        one alone is refused.
        """
        nodes = 20

        def fill(txn: Any) -> list[int]:
            for n in demoNodes(nodes, NOW):
                txn.putNode(n)
            return [accounts.addUser(txn, f"Node {n.id}", "node", NOW, POLICY, fingerprint=f"{i:040x}",
                                     nodeid=n.id).id for i, n in enumerate(demoNodes(nodes, NOW), 1)]

        users = yield self.store.transact(fill)

        class Clock:
            def seconds(self) -> float:
                return NOW + 5

        scheduler = Scheduler(self.store, Clock(), POLICY)
        ids = [n.id for n in demoNodes(nodes, NOW)]
        beats = [scheduler.heartbeat(user, nodeid) for user, nodeid in zip(users, ids)]
        wrong = scheduler.heartbeat(users[0], ids[1])
        results = yield defer.DeferredList(beats + [wrong], consumeErrors=True)
        assert all(ok for ok, _ in results[:-1]), results
        assert not results[-1][0] and results[-1][1].check(Forbidden)
        assert self.store._batches.transactions == nodes + 1
        assert self.store._batches.batches < nodes
        stored = yield self.store.read(lambda txn: [n.heartbeat for n in txn.listNodes()])
        assert stored == [NOW + 5] * nodes
