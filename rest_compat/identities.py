# -*- test-case-name: tests.test_rest_identities -*-
"""
Active users by certificate fingerprint, remembered between requests, so a
node's heartbeat is authenticated without a store transaction of its own.

Only this controller's changes can be followed: the core's L{UserChanged}
event (a fingerprint replaced, a user invalidated or restored) makes the
face forget that user before the change is acknowledged to whoever made it.
A lookup that was under way when a user changed is not remembered (it may
have read the old row). Unknown and invalidated fingerprints are never
remembered: they are read every time, so a new user is known at once.

With a database other controllers write too (PostgreSQL), their changes
raise no event here: the controller then does not remember callers at all
(L{am.ctl.service}). Worker processes of one controller (SQLite, C{workers:
N}) share a C{version} instead, a counter every process bumps inside the
transaction of each user change (so before it is answered): when it moved,
everything remembered is forgotten, and a lookup begun before is not kept.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import attrs
from twisted.internet.defer import Deferred, succeed

from am.core.events import Event, UserChanged
from am.core.interfaces import IScheduler
from am.core.model import User

# Remembered fingerprints; past that the memory starts again empty.
LIMIT = 10000


class Identities:
    """
    The fingerprint lookups of one REST face.
    """

    def __init__(
        self, scheduler: IScheduler, remember: bool = True, limit: int = LIMIT,
        version: Optional[Callable[[], int]] = None,
    ) -> None:
        self._scheduler = scheduler
        self._remember = remember
        self._limit = limit
        self._users: dict[str, User] = {}
        # Bumped by every user change: a lookup begun before is not remembered.
        self._generation = 0
        self._version = version
        self._seen = version() if version is not None else 0
        if remember:
            scheduler.events.subscribe(self._observe)

    def userFor(self, fingerprint: str) -> Deferred:
        """
        The user whose fingerprint this is (a copy: callers may not change
        what is remembered), or C{None}.
        """
        version = self._version
        if version is not None and version() != self._seen:
            # Another process changed a user.
            self._seen = version()
            self._generation += 1
            self._users.clear()
        user = self._users.get(fingerprint)
        if user is not None:
            return succeed(attrs.evolve(user))
        generation = self._generation
        seen = self._seen

        def found(user: Optional[User]) -> Optional[User]:
            if (
                self._remember and user is not None and user.active
                and generation == self._generation and user.fingerprint == fingerprint
                and (version is None or version() == seen)
            ):
                if len(self._users) >= self._limit:
                    self._users.clear()
                self._users[fingerprint] = attrs.evolve(user)
            return user

        return self._scheduler.read(lambda txn: txn.findUser(fingerprint=fingerprint)).addCallback(found)

    def _observe(self, event: Event) -> Any:
        if isinstance(event, UserChanged):
            self._generation += 1
            for fingerprint, user in list(self._users.items()):
                if user.id == event.userid:
                    del self._users[fingerprint]
