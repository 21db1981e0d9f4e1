# -*- test-case-name: tests.test_sharedfile -*-
"""
What several processes on one SQLite file need (marvinctld's workers,
docs/sqlite.md "More than one core"): writers that take turns on an OS lock,
and an interval index that follows the others' bookings node by node.
"""

from __future__ import annotations

import contextlib
import fcntl
import mmap
import os
import sqlite3
import struct
import threading
from typing import Any, Callable, Iterator, Optional

from am.core.events import Event, UserChanged

from am.core.intervalindex import IntervalIndex

# More schedule changes by others than this and the index is reloaded instead.
CATCH_UP_LIMIT = 512


def lastChange(connection: sqlite3.Connection) -> int:
    """
    The latest committed C{schedule_changes.seq} (0 for none).
    """
    return connection.execute("SELECT coalesce(max(seq), 0) FROM schedule_changes").fetchone()[0]


def catchUp(connection: sqlite3.Connection, index: IntervalIndex, seen: int) -> None:
    """
    Re-read into C{index} the nodes whose blocking windows changed after
    change C{seen} (the transaction just began: nothing of its own is
    pending); past L{CATCH_UP_LIMIT} changes the index is dropped instead.
    """
    if not index.valid:
        return
    latest = lastChange(connection)
    if latest == seen:
        return
    if latest - seen > CATCH_UP_LIMIT or latest < seen:
        index.valid = False
        return
    nodes = [r[0] for r in connection.execute(
        "SELECT DISTINCT nodeid FROM schedule_changes WHERE seq > ?", (seen,)
    )]
    marks = ",".join("?" * len(nodes))
    rows = connection.execute(
        "SELECT nodeid, start, stop FROM schedules INDEXED BY schedules_node "
        f"WHERE nodeid IN ({marks}) AND blocking = 1", nodes
    ).fetchall()
    index.replace(nodes, rows)


class WriterLock:
    """
    An exclusive OS lock (C{flock}) on a file next to the database, held by
    a writer from C{BEGIN IMMEDIATE} to the end of its transaction: writers
    of several processes queue in the kernel and the next one wakes as soon
    as the lock is free (SQLite's own busy handler polls, sleeping 1-100 ms).
    """

    def __init__(self, path: str) -> None:
        self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        # Re-entrant for its holder thread: a batch's turn (L{held}) spans
        # the transactions that take it again. flock alone would let every
        # thread of this process through at once (one open file), and count nothing.
        self._threads = threading.RLock()
        self._depth = 0

    def acquire(self) -> None:
        self._threads.acquire()
        if self._depth == 0:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX)
            except BaseException:
                self._threads.release()
                raise
        self._depth += 1

    def release(self) -> None:
        self._depth -= 1
        if self._depth == 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._threads.release()

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        """
        The lock, from the C{with} to its end.
        """
        self.acquire()
        try:
            yield
        finally:
            self.release()

    def close(self) -> None:
        os.close(self._fd)


class SharedCounter:
    """
    A 64-bit counter in a file every process maps: read without a system
    call or a lock (C{value}), bumped only under the L{WriterLock} (inside a
    store transaction), so bumps of several processes never overlap. The
    REST face's remembered callers follow it (L{rest_compat.identities}).
    """

    def __init__(self, path: str) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            if os.fstat(fd).st_size < 8:
                os.ftruncate(fd, 8)
            self._map = mmap.mmap(fd, 8)
        finally:
            os.close(fd)

    def value(self) -> int:
        return struct.unpack_from("<Q", self._map)[0]

    def bump(self) -> None:
        struct.pack_into("<Q", self._map, 0, (self.value() + 1) % 2**64)

    def close(self) -> None:
        self._map.close()


def bumpOnUserChange(counter: SharedCounter) -> Callable[[Any, tuple[Event, ...]], Optional[tuple[Event, ...]]]:
    """
    An in-transaction recorder (L{am.core.events.EventStream.subscribeInTransaction})
    bumping C{counter} in the transaction of every user change: before its
    commit, under the writer lock, so another process reading the user
    again after the bump waits for the commit and reads the change.
    """

    def record(txn: Any, events: tuple[Event, ...]) -> None:
        if any(isinstance(event, UserChanged) for event in events):
            counter.bump()

    return record
