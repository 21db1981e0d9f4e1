"""
Remembered callers on PostgreSQL (L{am.store.pgusers}): a user changed
through one controller is refused by another's REST face at its next request
once the notification is heard; while the listening connection is down
nothing is remembered, and what was is forgotten when it is back.
"""

from __future__ import annotations

import secrets
from typing import Any, Iterator

import psycopg
import pytest

from am.core.model import User
from am.store.postgres import PostgresDatabase
from am.store.pgusers import UserChanges
from am.testing import SynchronousStore, makeScheduler
from rest_compat.resource import buildRESTResource
from rest_compat.testing import RESTHarness, fingerprintFor
from tests.storefixtures import TemporaryDatabase


@pytest.fixture(scope="module")
def database() -> Iterator[TemporaryDatabase]:
    server = TemporaryDatabase()
    yield server
    server.drop()


def controllers(url: str) -> tuple[Any, RESTHarness, UserChanges]:
    """
    Controller A's scheduler, and controller B's REST face following its
    listener (not yet listening: the tests turn it by hand).
    """
    a = makeScheduler(0, store=SynchronousStore(PostgresDatabase(url)))[0]
    b = makeScheduler(0, store=SynchronousStore(PostgresDatabase(url)))[0]
    changes = UserChanges(url)
    face = RESTHarness(nodes=0)
    face.scheduler = b
    face.site.resource = buildRESTResource(b, face.authenticator, callersVersion=changes.version)
    return a, face, changes


def remembered(face: RESTHarness) -> dict:
    return face.site.resource.application.identities._users  # type: ignore[attr-defined]


def added(scheduler: Any, name: str) -> Any:
    result: list[Any] = []
    scheduler.addUser(name=name, role="user", project="", fingerprint=fingerprintFor(name)).addBoth(result.append)
    if not isinstance(result[0], User):
        result[0].raiseException()
    return result[0]


def test_invalidatedElsewhereRefusedOnceHeard(database: TemporaryDatabase) -> None:
    """
    B remembers its caller; A invalidates it; B's next request after the
    notification (delivered at A's commit) is refused. The notification is
    heard here only when the test turns the listener: the request between
    shows the window a controller has until it arrives.
    """
    url = database.schema(f"u_{secrets.token_hex(4)}")
    a, face, changes = controllers(url)
    assert changes.version() is None
    assert changes.poll(1) and changes.version() is not None
    alice = added(a, "alice")
    assert changes.poll(5)  # (the insert's notification)
    before = changes.version()
    assert face.request("GET", "/v1/experiments", alice).code == 200
    assert alice.fingerprint in remembered(face)
    assert face.request("GET", "/v1/experiments", alice).code == 200
    a.invalidateUser(alice.id)
    assert face.request("GET", "/v1/experiments", alice).code == 200  # not heard yet
    assert changes.poll(5) and changes.version() != before
    assert face.request("GET", "/v1/experiments", alice).code == 401
    changes.stop()
    assert changes.version() is None


def test_otherSchemaHeardNot(database: TemporaryDatabase) -> None:
    """
    Two Marvins in two schemas of one database: one's user changes do not
    make the other forget.
    """
    a, _, _ = controllers(database.schema(f"u_{secrets.token_hex(4)}"))
    _, _, changes = controllers(database.schema(f"u_{secrets.token_hex(4)}"))
    assert changes.poll(1)
    before = changes.version()
    added(a, "bob")
    changes.poll(0.2)
    assert changes.version() == before
    changes.stop()


def test_nothingRememberedWhileNotListening(database: TemporaryDatabase) -> None:
    """
    The listening session killed: nothing is remembered (each request reads
    its caller) until the listener is back, and what was remembered before
    is forgotten then.
    """
    url = database.schema(f"u_{secrets.token_hex(4)}")
    a, face, changes = controllers(url)
    alice = added(a, "alice")
    assert face.request("GET", "/v1/experiments", alice).code == 200
    assert remembered(face) == {}  # not listening yet
    assert changes.poll(1)
    assert face.request("GET", "/v1/experiments", alice).code == 200
    assert alice.fingerprint in remembered(face)
    pid = changes._connection.info.backend_pid  # type: ignore[union-attr]
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s, 5000)", (pid,))
    assert not changes.poll(5) and changes.version() is None
    for _ in range(2):
        assert face.request("GET", "/v1/experiments", alice).code == 200
        assert remembered(face) == {}
    a.invalidateUser(alice.id)  # unheard: nobody listens
    assert face.request("GET", "/v1/experiments", alice).code == 401
    assert changes.poll(1) and changes.version() is not None
    changes.stop()


def test_unreachableServerListensNot() -> None:
    changes = UserChanges("postgresql://127.0.0.1:1/none?connect_timeout=1")
    assert not changes.poll(1) and changes.version() is None


def test_controllerFollowsItsStoresUserChanges(tmp_path: Any) -> None:
    """
    A controller whose store offers C{userChanges} (PostgreSQL) listens
    while it runs, and its REST face remembers callers following it.
    """
    from twisted.internet.testing import MemoryReactorClock

    from am.ctl import service as ctl
    from am.testing import MemoryStore
    from tests.test_ctl_service import makeConfig

    class Listener:
        running = False

        def version(self) -> int:
            return 1

        def start(self) -> None:
            self.running = True

        def stop(self) -> None:
            self.running = False

    listener = Listener()

    class Store(MemoryStore):
        def userChanges(self) -> Listener:
            return listener

    clock = MemoryReactorClock()
    controller = ctl.Controller(makeConfig(str(tmp_path)), clock, storeFactory=lambda path, r: Store())
    controller.startService()
    assert listener.running and controller.usersVersion == listener.version
    identities = controller.root.application.identities  # type: ignore[union-attr]
    assert identities._remember and identities._version == listener.version
    controller.stopService()
    assert not listener.running
