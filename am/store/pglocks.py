# -*- test-case-name: tests.test_store_postgres -*-
"""
The per-node advisory locks of PostgreSQL's writing transactions
(docs/postgresql.md, "What waits for what"): a writer that reads some nodes'
blocking intervals locks those nodes first, all of a call's nodes in one
statement in key order after a shared lock on the testbed, so writers of
different nodes never wait for each other.
"""

from __future__ import annotations

import zlib
from typing import Any, Callable, Iterable, Optional

from am.store.pgschema import LOCK_KEY

#: The class of the per-node advisory locks (the two-key form: a space of its
#: own, apart from the one-key testbed lock L{LOCK_KEY}).
NODE_LOCK_CLASS = 0x4D61
#: Past this many node locks a transaction takes the testbed lock instead
#: (the server's lock table is shared and finite: max_locks_per_transaction).
MOST_NODE_LOCKS = 256


def nodeKey(nodeid: str) -> int:
    """
    The advisory lock key of a node: a signed 32-bit hash of its id (two nodes
    sharing one only ever wait for each other needlessly).
    """
    key = zlib.crc32(str(nodeid).encode("utf-8"))
    return key - (1 << 32) if key >= 1 << 31 else key


class NodeLocks:
    """
    The locks a transaction took (a mixin of the PostgreSQL transaction).
    """

    _db: Any
    _writing: bool
    # Sends a lock with the transaction's next statement (its answer is not read).
    _precede: Callable[..., None]
    # The node keys locked so far, and the testbed lock held ("shared",
    # "exclusive" or None): each lock is taken once per transaction.
    _locked: set[int]
    _testbed: Optional[str]

    def lockNodes(self, nodeids: Optional[Iterable[str]]) -> None:
        """
        In a writing transaction, lock the given nodes (C{None}: all of them)
        until it ends; the caller's next statement sees what the previous
        holders committed (the locks go in its round trip, just before it).
        Nothing in a read-only one.
        """
        if not self._writing or self._testbed == "exclusive":
            return
        keys = None if nodeids is None else sorted({nodeKey(n) for n in nodeids} - self._locked)
        if keys is None or len(self._locked) + len(keys) > MOST_NODE_LOCKS:
            # (Taken over a shared one, it waits for every other writer: two
            # doing so at once deadlock, and one of them runs again.)
            self._precede("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            self._testbed = "exclusive"
            return
        if not keys:
            return
        # The shared testbed lock first, then the nodes in key order: an
        # Append runs its branches in order, and a function scan keeps the
        # array's order, so every transaction locks in the same order.
        testbed = (
            "" if self._testbed else f"SELECT pg_advisory_xact_lock_shared({LOCK_KEY}) UNION ALL "
        )
        self._precede(
            f"SELECT count(*) FROM ({testbed}SELECT pg_advisory_xact_lock({NODE_LOCK_CLASS}, k) "
            "FROM unnest(%s::int[]) AS k) AS locks",
            (keys,),
        )
        self._testbed = "shared"
        self._locked.update(keys)
