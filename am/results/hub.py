# -*- test-case-name: tests.test_rest_results -*-
"""
What the REST face needs of results, off the reactor thread: the spool of
uploads in progress and the store of finished files, each blocking call run
by C{run} (the reactor's thread pool; tests pass a synchronous runner).
"""

from __future__ import annotations

from typing import Any, Callable

from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.threads import deferToThreadPool

from am.results.interfaces import IResultStore
from am.results.spool import Spool

#: The largest chunk a node may send in one request (the REST face's body limit).
MAX_CHUNK = 1 << 20


def resultKey(schedid: int, path: str) -> str:
    """
    The store's key of one result file.
    """
    return f"{int(schedid)}/{path}"


class ResultsHub:
    """
    @ivar store: the finished files (L{IResultStore}).
    @ivar spool: the uploads in progress.
    @ivar chunkLimit: the largest chunk accepted, in bytes.
    """

    def __init__(
        self, store: IResultStore, spool: Spool, run: Callable[..., Deferred] = maybeDeferred,
        chunkLimit: int = MAX_CHUNK,
    ) -> None:
        self.store = store
        self.spool = spool
        self.run = run
        self.chunkLimit = chunkLimit

    @classmethod
    def threaded(cls, store: IResultStore, spool: Spool, reactor: Any, chunkLimit: int = MAX_CHUNK) -> "ResultsHub":
        """
        A hub whose blocking work runs in the reactor's thread pool.
        """

        def run(function: Callable[..., Any], *args: Any) -> Deferred:
            return deferToThreadPool(reactor, reactor.getThreadPool(), function, *args)

        return cls(store, spool, run, chunkLimit)

    def received(self, schedid: int, path: str, size: int, sha256: str) -> Deferred:
        return self.run(self.spool.received, schedid, path, size, sha256)

    def append(
        self, schedid: int, path: str, size: int, sha256: str, offset: int, chunk: bytes, digest: str
    ) -> Deferred:
        return self.run(self.spool.append, schedid, path, size, sha256, offset, chunk, digest)

    def keep(self, schedid: int, path: str, size: int, sha256: str) -> Deferred:
        """
        Check the whole file and move it into the store.
        """

        def move() -> None:
            part = self.spool.complete(schedid, path, size, sha256)
            self.store.put(resultKey(schedid, path), part)

        return self.run(move)

    def discard(self, schedid: int, path: str) -> Deferred:
        return self.run(self.spool.discard, schedid, path)

    def open(self, key: str, offset: int, length: int) -> Deferred:
        return self.run(self.store.open, key, offset, length)

    def read(self, reader: Any, size: int) -> Deferred:
        return self.run(reader.read, size)

    def close(self, reader: Any) -> Deferred:
        return self.run(reader.close)

    def delete(self, key: str) -> Deferred:
        return self.run(self.store.delete, key)
