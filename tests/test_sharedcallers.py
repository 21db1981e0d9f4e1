"""
Remembered REST callers across worker processes (docs/sqlite.md): the
shared user-change counter (am/store/sharedfile.py), bumped in the
transaction of a user change, and the face's memory that follows it
(rest_compat/identities.py). Two maps of one file stand for two processes.
"""

from __future__ import annotations

import os
import tempfile
from typing import Any, Optional

from twisted.internet.defer import Deferred
from twisted.trial.unittest import SynchronousTestCase

from am.core.events import EventStream, ScheduleStatusChanged, UserChanged
from am.core.model import User
from am.store.sharedfile import SharedCounter, bumpOnUserChange
from rest_compat.identities import Identities

FINGERPRINT = "ab" * 20


class CounterTests(SynchronousTestCase):
    def test_sharedByMaps(self) -> None:
        """
        A bump through one map of the file is read through another at once;
        a new file starts at 0.
        """
        path = os.path.join(tempfile.mkdtemp(), "m.db-users.version")
        one, two = SharedCounter(path), SharedCounter(path)
        self.assertEqual((one.value(), two.value()), (0, 0))
        one.bump()
        one.bump()
        self.assertEqual(two.value(), 2)
        self.assertEqual(SharedCounter(path).value(), 2)

    def test_bumpedByUserChangesOnly(self) -> None:
        """
        The recorder bumps for a transaction that changed a user, not for others.
        """
        counter = SharedCounter(os.path.join(tempfile.mkdtemp(), "v"))
        record = bumpOnUserChange(counter)
        record(None, (ScheduleStatusChanged(
            time=1, actor="node", schedid=1, expid=1, ownerid=2, nodeid="1", old="defined", new="deployed"),))
        self.assertEqual(counter.value(), 0)
        record(None, (UserChanged(time=1, actor="admin", userid=3, fields=("invalid",)),))
        self.assertEqual(counter.value(), 1)


class FakeScheduler:
    """
    Reads answered by hand: C{pending} holds each read's Deferred.
    """

    def __init__(self) -> None:
        self.events = EventStream()
        self.pending: list[Deferred] = []
        self.user: Optional[User] = User(name="u", role="user", fingerprint=FINGERPRINT, id=3)

    def read(self, function: Any) -> Deferred:
        d: Deferred = Deferred()
        self.pending.append(d)
        return d

    def answer(self) -> None:
        self.pending.pop(0).callback(self.user)


class FollowingTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.counter = SharedCounter(os.path.join(tempfile.mkdtemp(), "v"))
        self.scheduler = FakeScheduler()
        self.identities = Identities(self.scheduler, version=self.counter.value)  # type: ignore[arg-type]

    def lookup(self) -> Any:
        d = self.identities.userFor(FINGERPRINT)
        if self.scheduler.pending:
            self.scheduler.answer()
        return self.successResultOf(d)

    def test_forgetsWhenMoved(self) -> None:
        """
        A caller is remembered until the counter moves (another process
        changed a user); then it is read again.
        """
        self.lookup()
        self.lookup()
        self.assertEqual(self.scheduler.pending, [])
        self.counter.bump()
        self.scheduler.user = None
        d = self.identities.userFor(FINGERPRINT)
        self.assertEqual(len(self.scheduler.pending), 1)
        self.scheduler.answer()
        self.assertIsNone(self.successResultOf(d))

    def test_lookupUnderWayNotKept(self) -> None:
        """
        A lookup begun before the counter moved may have read the old row:
        it is answered but not remembered.
        """
        d = self.identities.userFor(FINGERPRINT)
        self.counter.bump()
        self.scheduler.answer()
        self.assertEqual(self.successResultOf(d).id, 3)
        self.identities.userFor(FINGERPRINT)
        self.assertEqual(len(self.scheduler.pending), 1)

    def test_withoutVersion(self) -> None:
        """
        Without a version (one process) nothing changes: a bump is not looked at.
        """
        identities = Identities(self.scheduler)  # type: ignore[arg-type]
        identities.userFor(FINGERPRINT)
        self.scheduler.answer()
        self.counter.bump()
        self.assertEqual(self.successResultOf(identities.userFor(FINGERPRINT)).id, 3)
        self.assertEqual(self.scheduler.pending, [])
