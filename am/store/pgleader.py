# -*- test-case-name: tests.test_leadership -*-
"""
Electing one controller among those sharing a PostgreSQL database: the one
holding a session-level advisory lock (C{pg_try_advisory_lock}) on a dedicated
connection leads. The server releases it when that session ends: the leader
stopped, crashed or lost its connection; another controller takes it at its
next try (every C{period} seconds). The key names the schema, so two Marvins
in two schemas of one database each have a leader.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

import psycopg
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from zope.interface import implementer

from am.store.leadership import ILeadership
from am.store.pgindex import prune

#: The class of the leader's advisory lock (two-key form; the second key is
#: the hash of the schema's name).
LEADER_CLASS = 0x4C65

_TRY = f"SELECT pg_try_advisory_lock({LEADER_CLASS}, hashtext(current_schema()))"
_UNLOCK = f"SELECT pg_advisory_unlock({LEADER_CLASS}, hashtext(current_schema()))"


@implementer(ILeadership)
class PostgresLeadership:
    """
    Leadership by advisory lock, re-tried (or, while leading, checked) on a timer.

    @ivar leading: whether this controller holds the lock, as of the last try.
    """

    log = Logger(namespace="marvinctld")

    def __init__(self, url: str, reactor: Any = None, period: float = 5.0) -> None:
        self.url = url
        self.period = period
        self.leading = False
        self._reactor = reactor
        self._connection: Optional[psycopg.Connection] = None
        self._lock = threading.Lock()
        self._loop: Optional[LoopingCall] = None

    def campaign(self) -> bool:
        """
        One try, synchronous (a thread's, or the caller's): take the lock if
        free, or check that the session holding it is still there.
        """
        with self._lock:
            was = self.leading
            try:
                if self._connection is None or self._connection.closed or self._connection.broken:
                    self._drop()
                    self._connection = psycopg.connect(
                        self.url, autocommit=True, connect_timeout=10,
                        keepalives=1, keepalives_idle=10, keepalives_interval=5, keepalives_count=3,
                    )
                if self.leading:
                    # Already held: taking it again would only stack it. The
                    # leader's round trip prunes the interval index's feed.
                    try:
                        prune(self._connection)
                    except psycopg.errors.UndefinedTable:
                        pass  # (no Marvin tables there: the session answered all the same)
                else:
                    self.leading = bool(self._connection.execute(_TRY).fetchone()[0])
            except psycopg.Error as e:
                self.log.warn("leader election: {error}; will retry", error=str(e).strip())
                self._drop()
            if self.leading != was:
                self.log.info(
                    "this controller {now} the background loops",
                    now="leads" if self.leading else "no longer leads",
                )
            return self.leading

    def _drop(self) -> None:
        if self._connection is not None:
            if self.leading:
                # close() returns before the server ends the session; unlock
                # first so a successor never waits on a lock nobody holds.
                try:
                    self._connection.execute(_UNLOCK)
                except psycopg.Error:
                    pass
            self._connection.close()
        self.leading = False
        self._connection = None

    def start(self) -> None:
        self.campaign()
        if self._reactor is not None:
            pool = self._reactor.getThreadPool()
            self._loop = LoopingCall(lambda: deferToThreadPool(self._reactor, pool, self.campaign))
            self._loop.clock = self._reactor
            self._loop.start(self.period, now=False)

    def stop(self) -> None:
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        self._loop = None
        with self._lock:
            self._drop()
