# -*- test-case-name: tests.test_store_postgres -*-
"""
The PostgreSQL store as the controller sees it (L{IStore}): transactions of
L{am.store.postgres.PostgresDatabase} on a few dedicated threads, one
psycopg connection per busy thread, so the reactor thread never touches a
connection; heartbeats queued meanwhile commit together.
"""

from __future__ import annotations

import threading
from typing import Any, Callable

from twisted.internet.defer import Deferred, fail
from twisted.python.failure import Failure
from zope.interface import implementer

from am.core.interfaces import IStore
from am.store.groupcommit import GroupCommitter, Outcome, Work, WriterThread
from am.store.pgleader import PostgresLeadership
from am.store.pgusers import UserChanges
from am.store.postgres import PostgresDatabase
from am.store.viewkeeper import HeartbeatHub

# The most heartbeats one commit carries.
BATCH = 16
# Threads committing heartbeat batches at once. Each runs its batch's
# statements one after the other; two keep up with what one controller takes
# (one drainer capped the rate, four drained smaller batches for the same
# rate with about 15 % more CPU on the machine: docs/postgresql.md).
DRAINERS = 2


@implementer(IStore)
class PostgresStore:
    """
    L{IStore} over a PostgreSQL database, with a small dedicated thread pool
    and one connection per busy thread so the reactor never blocks.

    The first connection is made, and the schema migrated, in the constructor:
    a database that cannot be opened fails the start-up, as with SQLite.
    """

    def __init__(self, url: str, reactor: Any, threads: int = 4) -> None:
        self.url = url
        self._reactor = reactor
        self._hub = HeartbeatHub()
        first = PostgresDatabase(url, hub=self._hub)
        self.schemaVersion = first.schemaVersion
        self._idle: list[PostgresDatabase] = [first]
        self._lock = threading.Lock()
        self._closed = False
        self._pool = WriterThread("marvin-postgres", threads)
        self._pool.start()
        # Heartbeats queued meanwhile commit together (docs/postgresql.md).
        self._batches = GroupCommitter(reactor, self._pool, self._runBatch, BATCH, drainers=min(DRAINERS, threads))

    def _call(self, method: str, function: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        with self._lock:
            database = self._idle.pop() if self._idle else None
        if database is None:
            database = PostgresDatabase(self.url, migrate=False, hub=self._hub)
        try:
            return getattr(database, method)(function, *args, **kwargs)
        finally:
            with self._lock:
                self._idle.append(database)

    def _defer(self, method: str, function: Callable[..., Any], args: Any, kwargs: Any) -> Deferred:
        if self._closed:
            return fail(RuntimeError("the store is closed"))
        d: Deferred = Deferred()
        callFromThread = self._reactor.callFromThread

        def work() -> None:
            try:
                result = self._call(method, function, args, kwargs)
            except BaseException:
                callFromThread(d.errback, Failure())
            else:
                callFromThread(d.callback, result)

        self._pool.callInThread(work)
        return d

    def transact(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        # (A core command's function comes first: runCommand's arguments.)
        if args and getattr(args[0], "batchable", False) and getattr(function, "rerunnable", False):
            if self._closed:
                return fail(RuntimeError("the store is closed"))
            return self._batches.submit(function, args, kwargs)
        return self._defer("run", function, args, kwargs)

    def _runBatch(self, work: list[Work]) -> list[Outcome]:
        return self._call("runBatch", work, (), {})  # type: ignore[arg-type]

    def leadership(self) -> PostgresLeadership:
        """
        This controller's part in electing who runs the background loops.
        """
        return PostgresLeadership(self.url, self._reactor)

    def userChanges(self) -> UserChanges:
        """
        What tells this controller of user changes by any controller.
        """
        return UserChanges(self.url)

    def read(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        """
        Like L{transact} for read-only functions, in a snapshot without locks
        (not part of L{IStore}: a writing function fails here).
        """
        return self._defer("read", function, args, kwargs)

    def close(self) -> Deferred:
        """
        Let running transactions finish, then close every connection; the
        waiting happens in a thread of its own, not in the reactor.
        """
        self._closed = True
        done: Deferred[None] = Deferred()

        def shutdown() -> None:
            try:
                self._pool.stop()
                with self._lock:
                    idle, self._idle = self._idle, []
                for database in idle:
                    database.close()
            finally:
                self._reactor.callFromThread(done.callback, None)

        threading.Thread(target=shutdown, name="marvin-postgres-close").start()
        return done
