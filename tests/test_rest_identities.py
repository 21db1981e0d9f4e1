"""
Tests for L{rest_compat.identities}: the REST face remembers active users by
fingerprint, so a repeated caller costs no store read, and forgets a user the
moment the core says it changed (invalidated, re-keyed, restored).
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from am.core.events import EventStream, UserChanged
from am.core.model import User
from am.store.sqlite import SQLiteTransaction
from rest_compat.identities import Identities
from rest_compat.testing import RESTHarness, fingerprintFor


class CountingLookups:
    """
    Counts the store's lookups of users by fingerprint.
    """

    def __init__(self, case: SynchronousTestCase) -> None:
        self.count = 0
        original = SQLiteTransaction.findUser

        def findUser(txn: Any, **kwargs: Any) -> Any:
            if kwargs.get("fingerprint"):
                self.count += 1
            return original(txn, **kwargs)

        case.patch(SQLiteTransaction, "findUser", findUser)


class RememberedCallerTests(SynchronousTestCase):
    """
    The face over the in-memory scheduler (it remembers by default).
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.admin = self.h.addUser("root", "admin")
        self.alice = self.h.addUser("alice", "user")

    def test_secondRequestReadsNoUser(self) -> None:
        """
        A caller seen before is known without reading the store.
        """
        self.assertEqual(self.h.request("GET", "/v1/backend/auth", self.alice).code, 200)
        lookups = CountingLookups(self)
        response = self.h.request("GET", "/v1/backend/auth", self.alice)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.json["user"]["id"], self.alice.id)
        self.assertEqual(lookups.count, 0)

    def test_invalidatedAtOnce(self) -> None:
        """
        Invalidating a remembered user refuses its very next request.
        """
        self.assertEqual(self.h.request("GET", "/v1/experiments", self.alice).code, 200)
        self.assertEqual(self.h.request("DELETE", f"/v1/users/{self.alice.id}", self.admin).code, 200)
        self.assertEqual(self.h.request("GET", "/v1/experiments", self.alice).code, 401)

    def test_rekeyedAtOnce(self) -> None:
        """
        A remembered user given a new fingerprint is refused with the old
        one and known by the new one at once.
        """
        self.assertEqual(self.h.request("GET", "/v1/experiments", self.alice).code, 200)
        new = fingerprintFor("alice-2")
        answer = self.h.request("PUT", f"/v1/users/{self.alice.id}", self.admin, form={"ssl": new})
        self.assertEqual(answer.code, 200)
        self.assertEqual(self.h.request("GET", "/v1/experiments", self.alice).code, 401)
        self.alice.fingerprint = new
        self.assertEqual(self.h.request("GET", "/v1/experiments", self.alice).code, 200)

    def test_unknownNotRemembered(self) -> None:
        """
        A fingerprint nobody has is read every time, so a user created with
        it is known at its first request.
        """
        carol = User(name="carol", role="user", fingerprint=fingerprintFor("carol"))
        self.assertEqual(self.h.request("GET", "/v1/experiments", carol).code, 401)
        self.h.addUser("carol", "user")
        self.assertEqual(self.h.request("GET", "/v1/experiments", carol).code, 200)


class FakeScheduler:
    """
    Reads that fire when the test says; an event stream.
    """

    def __init__(self) -> None:
        self.events = EventStream()
        self.reads: list[Deferred] = []

    def read(self, function: Any) -> Deferred:
        d: Deferred = Deferred()
        self.reads.append(d)
        return d


def _alice(**changes: Any) -> User:
    fields = dict(name="alice", role="user", id=7, fingerprint="a" * 40)
    fields.update(changes)
    return User(**fields)


class IdentitiesTests(SynchronousTestCase):
    """
    L{Identities} on its own.
    """

    def setUp(self) -> None:
        self.scheduler = FakeScheduler()
        self.identities = Identities(self.scheduler)  # type: ignore[arg-type]

    def lookup(self) -> Any:
        d = self.identities.userFor("a" * 40)
        if self.scheduler.reads and not self.scheduler.reads[-1].called:
            self.scheduler.reads[-1].callback(_alice())
        return self.successResultOf(d)

    def changed(self, userid: int = 7) -> None:
        self.scheduler.events.deliver([UserChanged(time=0, actor="admin", userid=userid, fields=("invalid",))])

    def test_remembersACopy(self) -> None:
        """
        The second lookup reads nothing and hands out a copy.
        """
        first = self.lookup()
        first.role = "admin"
        second = self.lookup()
        self.assertEqual(len(self.scheduler.reads), 1)
        self.assertEqual(second.role, "user")
        self.assertIsNot(second, first)

    def test_forgetsTheChangedUserOnly(self) -> None:
        """
        A change of another user keeps this one; a change of this one forgets it.
        """
        self.lookup()
        self.changed(userid=8)
        self.lookup()
        self.assertEqual(len(self.scheduler.reads), 1)
        self.changed(userid=7)
        self.lookup()
        self.assertEqual(len(self.scheduler.reads), 2)

    def test_lookupOvertakenByAChange(self) -> None:
        """
        A lookup under way when a user changed (it may have read the old row)
        is answered but not remembered.
        """
        d = self.identities.userFor("a" * 40)
        self.changed(userid=7)
        self.scheduler.reads[-1].callback(_alice())
        self.assertEqual(self.successResultOf(d).id, 7)
        self.lookup()
        self.assertEqual(len(self.scheduler.reads), 2)

    def test_invalidNotRemembered(self) -> None:
        """
        An invalidated user is read again at every lookup.
        """
        for _ in range(2):
            d = self.identities.userFor("a" * 40)
            self.scheduler.reads[-1].callback(_alice(invalid=True))
            self.assertTrue(self.successResultOf(d).invalid)
        self.assertEqual(len(self.scheduler.reads), 2)

    def test_notRememberingReadsEveryTime(self) -> None:
        """
        With C{remember=False} (a database other controllers share) every
        lookup reads the store.
        """
        self.identities = Identities(self.scheduler, remember=False)  # type: ignore[arg-type]
        self.lookup()
        self.lookup()
        self.assertEqual(len(self.scheduler.reads), 2)

    def test_bounded(self) -> None:
        """
        Past its limit the memory starts again empty.
        """
        identities = Identities(self.scheduler, limit=2)  # type: ignore[arg-type]
        for n in range(3):
            d = identities.userFor(f"{n:040d}")
            self.scheduler.reads[-1].callback(_alice(id=n, fingerprint=f"{n:040d}"))
            self.successResultOf(d)
        self.assertEqual(len(identities._users), 1)


def test_bootstrapRestoreIsAChange() -> None:
    """
    Restoring a user from the configuration (another role) is a user change
    the face hears of.
    """
    h = RESTHarness()
    alice = h.addUser("alice", "user")
    h.addUser("root", "admin")
    root = h.run(lambda txn: txn.findUser(name="root", project=""))
    assert h.request("GET", f"/v1/users/{root.id}", alice).code == 403
    restored: list[Any] = []
    h.scheduler.bootstrapUsers(
        [{"name": "alice", "role": "admin", "fingerprint": alice.fingerprint}]
    ).addBoth(restored.append)
    assert restored and not isinstance(restored[0], Exception), restored
    assert h.request("GET", f"/v1/users/{root.id}", alice).code == 200


def test_controllerRemembersOnlyAloneOnItsDatabase(tmp_path) -> None:
    """
    The controller's REST face remembers callers on SQLite, and not on
    PostgreSQL, whose users other controllers may change.
    """
    from am.ctl import service as ctl
    from am.ctl.config import parseConfig
    from am.testing import makeScheduler

    scheduler = makeScheduler()[0]
    for database, remembers in ((str(tmp_path / "m.db"), True), ("postgresql://marvin@db/marvin", False)):
        config = parseConfig({"database": database, "listen": {"http": {"port": 0}}}, checkFiles=False)
        root = ctl.defaultRESTFactory(scheduler, config, None)
        assert root.application.identities._remember is remembers  # type: ignore[attr-defined]
