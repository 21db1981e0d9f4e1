"""
One leader for the background loops (expiry, sweep, periodic inventory sync)
among controllers sharing a database: the PostgreSQL election by session
advisory lock (taken, kept, handed over when the leader stops or its session
dies; one per schema), and a controller that is not leading runs none of them.
"""

from __future__ import annotations

import secrets
import tempfile
from typing import Any, Iterator

import psycopg
import pytest
from twisted.internet.defer import succeed
from zope.interface import implementer
from zope.interface.verify import verifyObject

from am.core.lifecycle import Sweep
from am.store.leadership import AlwaysLeader, ILeadership, leadershipOf
from am.store.pgleader import PostgresLeadership
from am.store.pgstore import PostgresStore
from am.testing import MemoryStore
from tests.test_ctl_service import makeConfig, memoryController
from tests.storefixtures import TemporaryDatabase


@pytest.fixture(scope="module")
def database() -> Iterator[TemporaryDatabase]:
    server = TemporaryDatabase()
    yield server
    server.drop()


def test_interfaces() -> None:
    verifyObject(ILeadership, AlwaysLeader())
    verifyObject(ILeadership, PostgresLeadership("postgresql:///nowhere"))
    assert leadershipOf(MemoryStore()).leading


def test_oneLeaderHandedOver(database: TemporaryDatabase) -> None:
    """
    The first controller to try leads and keeps leading (its lock is not
    stacked by its checks); the other takes over once it stops.
    """
    url = database.schema(f"l_{secrets.token_hex(4)}")
    first, second = PostgresLeadership(url), PostgresLeadership(url)
    first.start()
    second.start()
    assert (first.leading, second.leading) == (True, False)
    assert first.campaign() and not second.campaign() and first.campaign()
    first.stop()
    assert not first.leading
    assert second.campaign()
    assert not first.campaign()
    second.stop()


def test_deadSessionLosesLeadership(database: TemporaryDatabase) -> None:
    """
    When the leader's session ends (killed, connection lost), the server
    frees the lock: the other takes it, and the old leader learns it no
    longer leads at its next try.
    """
    url = database.schema(f"l_{secrets.token_hex(4)}")
    first, second = PostgresLeadership(url), PostgresLeadership(url)
    assert first.campaign() and not second.campaign()
    pid = first._connection.info.backend_pid
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    assert second.campaign()
    assert not first.campaign()
    assert second.campaign()
    first.stop()
    second.stop()


def test_oneLeaderPerSchema(database: TemporaryDatabase) -> None:
    a = PostgresLeadership(database.schema(f"l_{secrets.token_hex(4)}"))
    b = PostgresLeadership(database.schema(f"l_{secrets.token_hex(4)}"))
    assert a.campaign() and b.campaign()
    a.stop()
    b.stop()


def test_storeOffersIt(database: TemporaryDatabase) -> None:
    from twisted.internet import reactor

    store = PostgresStore(database.schema(f"l_{secrets.token_hex(4)}"), reactor)
    leadership = leadershipOf(store)
    assert isinstance(leadership, PostgresLeadership) and leadership.url == store.url
    store._pool.stop()


def test_unreachableServerIsNoLeader() -> None:
    leadership = PostgresLeadership("postgresql://127.0.0.1:1/none?connect_timeout=1")
    assert not leadership.campaign()


@implementer(ILeadership)
class Switch:
    """
    A leadership the test turns on and off.
    """

    leading = False
    started = stopped = 0

    def start(self) -> None:
        self.started += 1

    def stop(self) -> None:
        self.stopped += 1


class LeaderStore(MemoryStore):
    def __init__(self, switch: Switch) -> None:
        super().__init__()
        self._switch = switch

    def leadership(self) -> Switch:
        return self._switch


def test_followerRunsNoBackgroundLoop() -> None:
    """
    While another controller leads, expiry, sweep and the periodic inventory
    sync do not run here; once this one leads they do, on their periods.
    """
    switch = Switch()
    config = makeConfig(tempfile.mkdtemp(), housekeeping={"expiry_period": 30, "sweep_period": 20})
    controller, clock = memoryController(config)
    controller.storeFactory = lambda path, reactor: LeaderStore(switch)
    controller.startService()
    assert switch.started == 1
    calls: list[str] = []

    def expire() -> Any:
        calls.append("expiry")
        return succeed(0)

    def sweep() -> Any:
        calls.append("sweep")
        return succeed(Sweep(0, 0))

    controller.scheduler.expireAllocations = expire
    controller.scheduler.sweep = sweep
    assert controller.sync.lastSync is None  # the first sync was the leader's to run
    clock.pump([10] * 60)
    assert calls == [] and controller.sync.lastSync is None
    switch.leading = True
    clock.pump([10] * 6)
    assert calls.count("expiry") == 2 and calls.count("sweep") == 3
    clock.pump([10] * 60)
    assert controller.sync.lastSync is not None
    controller.stopService()
    assert switch.stopped == 1
