# -*- test-case-name: tests.test_store -*-
"""
In-memory fakes for tests of the core and of both faces.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from zope.interface import implementer

from am.core.interfaces import IStore
from am.core.model import Node
from am.core.policy import Policy
from am.core.scheduler import Scheduler
from am.store.sqlite import SQLiteDatabase


@implementer(IStore)
class SynchronousStore:
    """
    A store over a database object with a synchronous C{run} (an
    L{SQLiteDatabase} or a L{am.store.postgres.PostgresDatabase}): every
    Deferred has fired by the time the call returns, so tests can use
    C{successResultOf} without a reactor.
    """

    def __init__(self, database: Any) -> None:
        self.database = database

    def transact(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        try:
            return succeed(self.database.run(function, *args, **kwargs))
        except BaseException:
            return fail()

    def read(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        return self.transact(function, *args, **kwargs)

    def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """
        Run a transaction and return its result directly.
        """
        return self.database.run(function, *args, **kwargs)

    def close(self) -> Deferred:
        self.database.close()
        return succeed(None)


class MemoryStore(SynchronousStore):
    """
    The real schema and transactions on an in-memory SQLite database, run synchronously.
    """

    def __init__(self) -> None:
        super().__init__(SQLiteDatabase(":memory:"))


def demoNodes(count: int, now: int = 0, **tags: str) -> list[Node]:
    """
    C{count} active nodes with ids C{"1"}... and a heartbeat at C{now}.
    """
    base = {"type": "testing", "country": "se", "model": "apu2d"}
    base.update(tags)
    return [
        Node(id=str(i), hostname=f"node{i}", heartbeat=now, inventoryTags=dict(base))
        for i in range(1, count + 1)
    ]


def makeScheduler(
    nodes: int = 3, now: float = 1_000_000_000, policy: Optional[Policy] = None,
    store: Optional[SynchronousStore] = None,
) -> tuple[Scheduler, SynchronousStore, Clock]:
    """
    A scheduler over a L{MemoryStore} (or the synchronous C{store} given) and
    a L{Clock}, with C{nodes} demo nodes and no maintenance windows unless a
    policy says otherwise.
    """
    clock = Clock()
    clock.advance(now)
    store = store if store is not None else MemoryStore()
    scheduler = Scheduler(store, clock, policy or Policy(maintenance=()))
    for node in demoNodes(nodes, int(now)):
        store.run(lambda txn, n=node: txn.putNode(n))
    return scheduler, store, clock
