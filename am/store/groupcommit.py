# -*- test-case-name: tests.test_groupcommit -*-
"""
Group commit for a store with one writer thread.

With C{synchronous=FULL} every SQLite commit waits for an fsync, so one
transaction per commit caps a controller at a few hundred heartbeats a
second whatever the CPU. Here the writer thread takes every transaction
queued at that moment (at most L{MAX_BATCH}) and hands them to the store's
C{runBatch}, which runs each in its own savepoint of one database
transaction and commits once: one fsync for the lot.

Durability is unchanged for the caller: the Deferreds of a batch fire (on
the reactor thread, in the order their transactions were queued) only after
C{runBatch} returned, that is after the one commit; when that commit fails
every transaction of the batch fails with it. A transaction that raises is
rolled back to its savepoint alone and only its Deferred fails.
"""

from __future__ import annotations

import collections
import contextlib
import queue
import threading
from typing import Any, Callable, ContextManager, Optional, Protocol

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

# The most transactions one commit carries: bounds how long the first of a
# batch waits for the last (each waits for the commit anyway).
MAX_BATCH = 64

#: One transaction: C{function(txn, *args, **kwargs)}.
Work = tuple[Callable[..., Any], tuple, dict]
#: What became of one: C{(True, result)} or C{(False, Failure)}.
Outcome = tuple[bool, Any]


class _Pool(Protocol):
    def callInThread(self, func: Callable[..., Any], *args: Any, **kw: Any) -> None: ...


class WriterThread:
    """
    Threads running the callables handed to them: the store's writer (one
    thread, in order) or PostgreSQL's connection threads (several, each taking
    the next callable when idle). What Twisted's C{ThreadPool} did for the
    stores, for a fraction of the CPU per hand-off (a C-level queue instead of
    the pool's coordinator, its locks and its context capture): the reactor
    hands over every transaction, and on PostgreSQL every batch of heartbeats.
    """

    log = Logger()

    def __init__(self, name: str, threads: int = 1) -> None:
        self.name = name
        self._count = max(1, threads)
        self._queue: queue.SimpleQueue[Optional[Callable[[], Any]]] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        """
        Start the threads (once).
        """
        if not self._threads:
            self._threads = [
                threading.Thread(target=self._run, name=self.name if self._count == 1 else f"{self.name}-{n}")
                for n in range(self._count)
            ]
            for thread in self._threads:
                thread.start()

    def callInThread(self, func: Callable[..., Any], *args: Any, **kw: Any) -> None:
        """
        Run C{func(*args, **kw)} on a thread, after what was handed over
        before has started; an exception it raises is logged.
        """
        self._queue.put(lambda: func(*args, **kw))

    def stop(self) -> None:
        """
        Run what was handed over, then end the threads and wait for them (not
        from the reactor thread: it blocks).
        """
        threads, self._threads = self._threads, []
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join()

    def _run(self) -> None:
        while True:
            work = self._queue.get()
            if work is None:
                return
            try:
                work()
            except BaseException:
                self.log.failure("{name}: unhandled error in the writer thread", name=self.name)


class GroupCommitter:
    """
    Queues transactions and runs them in batches on the store's writer thread.

    @ivar batches: how many batches ran, and how many transactions they
        carried (for tests and the curious).
    """

    def __init__(
        self, reactor: Any, pool: _Pool, runBatch: Callable[[list[Work]], list[Outcome]],
        maxBatch: int = MAX_BATCH, drainers: int = 1,
        turn: Optional[Callable[[], ContextManager[None]]] = None,
    ) -> None:
        self._reactor = reactor
        self._pool = pool
        self._runBatch = runBatch
        # Taken before a batch is formed: what queues while a drainer waits
        # for it (another process's writer holding the file) joins the batch.
        self._turn = turn if turn is not None else contextlib.nullcontext
        self._maxBatch = maxBatch
        self._lock = threading.Lock()
        self._queue: collections.deque[tuple[Work, Deferred]] = collections.deque()
        # Threads draining at once (more than one: batches commit side by side).
        self._drainers = drainers
        self._draining = 0
        self.batches = 0
        self.transactions = 0

    def submit(self, function: Callable[..., Any], args: tuple, kwargs: dict) -> Deferred:
        """
        Queue C{function(txn, *args, **kwargs)}; the Deferred fires with its
        result once the batch that ran it committed.
        """
        d: Deferred = Deferred()
        with self._lock:
            self._queue.append(((function, args, kwargs), d))
            if self._draining >= self._drainers:
                return d
            self._draining += 1
        self._pool.callInThread(self._drain)
        return d

    def _drain(self) -> None:
        """
        On the writer thread: run batches until nothing is queued.
        """
        while True:
            with self._lock:
                if not self._queue:
                    self._draining -= 1
                    return
            batch: list[tuple[Work, Deferred]] = []
            try:
                with self._turn():
                    batch = self._take()
                    if batch:
                        outcomes = self._runBatch([item for item, _ in batch])
                        if len(outcomes) != len(batch):
                            raise RuntimeError(f"{len(outcomes)} outcomes for {len(batch)} transactions")
            except BaseException:
                # A bug in the store, or no turn: nobody may hang on it.
                failure = Failure()
                batch = batch or self._take()
                outcomes = [(False, failure)] * len(batch)
            if not batch:
                continue  # another drainer took what was queued
            self.batches += 1
            self.transactions += len(batch)
            self._reactor.callFromThread(_fire, [d for _, d in batch], outcomes)

    def _take(self) -> list[tuple[Work, Deferred]]:
        """
        What is queued now, up to a batch.
        """
        with self._lock:
            return [self._queue.popleft() for _ in range(min(len(self._queue), self._maxBatch))]


def _fire(deferreds: list[Deferred], outcomes: list[Outcome]) -> None:
    """
    On the reactor thread: fire each Deferred of a committed batch, in order.
    """
    for d, (ok, value) in zip(deferreds, outcomes):
        if ok:
            d.callback(value)
        else:
            d.errback(value)
