# -*- test-case-name: tests.test_store_pgindex -*-
"""
The interval index (L{am.core.intervalindex}) on PostgreSQL, kept in step with
every controller's commits through the C{schedule_changes} log.

Why: an "any free node" booking otherwise asks the database about its
candidates 64 at a time, locking each batch, and on a busy testbed walks most
of them (docs/postgresql.md). SQLite searches an in-memory index; here other
controllers commit too, so the index must learn of their writes, cancellations
above all (a node left looking busy would hide the earliest window).

The feed: a trigger on C{schedules} (schema 11) writes, in the writing
transaction, one C{(xid, nodeid)} row for each node whose windows an insert,
delete or move of a window touched. Each connection's index remembers the
C{xmin} of the snapshot it was last brought up to date in: every transaction
that commits later than that has an xid at least that C{xmin}. So one
statement, at the first use of the index in a transaction, reads the nodes
logged since (with their windows, in that statement's snapshot) and the new
C{xmin}; the index then holds exactly the windows committed in that snapshot.
Whatever commits afterwards is caught as before: the chosen nodes are checked
under their locks before booking (C{am.core.slots._verified}), so a stale index
makes a search choose again, never double book.

The leader prunes the log (L{prune}); a connection that has not brought its
index up to date for L{STALE} seconds, well inside the log's L{KEEP}, loads it
whole instead.
"""

from __future__ import annotations

import time
from typing import Any, Callable, Iterable, Optional

from am.core.intervalindex import IntervalIndex

#: Seconds the log keeps a change (L{prune}).
KEEP = 900
#: Seconds after which an index not brought up to date is loaded whole.
STALE = 300
#: Past this many changed nodes at once the index is loaded whole.
MOST_CHANGED = 2048

# The snapshot's xmin, the node view's version (meta.nodes_version) and the
# health records' (meta.health_version, am.store.healthcache), read with the
# index: a writer about to search asks all three in one round trip.
_NOW = (
    "(SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS x, "
    "(SELECT value FROM meta WHERE key = 'nodes_version') AS v, "
    "(SELECT value FROM meta WHERE key = 'health_version') AS h) AS m "
)
# Every blocking window (one row even when there is none).
_LOAD = f"SELECT m.x, s.nodeid, s.start, s.stop, m.v, m.h FROM {_NOW}LEFT JOIN schedules s ON s.blocking"
# The nodes logged since an xmin (and those given), with their blocking windows.
# Each changed node's windows are looked up in the (nodeid, start) btree: a
# plain join, planned generically for an unknown xmin, expected a third of the
# log and hashed every schedule (about 1 ms of server time per booking at a few
# thousand schedules, growing with them). OFFSET 0 keeps the lookup a nested
# loop; the condition on start, true of every window, makes the btree cheaper
# than the exclusion constraint's GiST (about 5 against 20 us per node).
_CHANGES = (
    f"SELECT m.x, c.nodeid, s.start, s.stop, m.v, m.h FROM {_NOW}"
    "LEFT JOIN (SELECT nodeid FROM schedule_changes WHERE xid >= %s::text::xid8 "
    "UNION SELECT unnest(%s::text[])) AS c ON true "
    "LEFT JOIN LATERAL (SELECT start, stop FROM schedules WHERE nodeid = c.nodeid AND blocking "
    "AND start >= -9223372036854775807 - 1 OFFSET 0) AS s ON true"
)


class IndexFeed:
    """
    The interval index of one connection and where its feed stands.
    """

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.index = IntervalIndex()
        self.clock = clock
        self._xmin: Optional[str] = None
        self._synced = 0.0
        # Nodes earlier transactions of this connection wrote: read again at
        # the next update (committed or rolled back, whichever it was).
        self._reread: set[str] = set()
        #: C{meta.nodes_version} and C{meta.health_version} in the snapshot of the last update.
        self.nodesVersion: Optional[int] = None
        self.healthVersion: Optional[int] = None

    def forget(self) -> None:
        """
        Load the index whole at its next use (a new connection, maybe to
        another database).
        """
        self.index.valid = False
        self._xmin = None

    def warm(self) -> bool:
        """
        Whether the next update reads only what changed (not the whole index).
        """
        return self.index.valid and self._xmin is not None and self.clock() - self._synced <= STALE

    def changes(self) -> tuple[str, tuple]:
        """
        The statement (and its values) by which L{current} would read what
        changed, if L{warm}.
        """
        return _CHANGES, (self._xmin, sorted(self._reread))

    def current(self, run: Callable[[str, Any], Any]) -> IntervalIndex:
        """
        The index brought up to date in one statement, sent by C{run(sql,
        args)} (the caller's transaction's, once per transaction). Nodes the
        transaction wrote already stay pending: the statement sees its writes.
        """
        index, now = self.index, self.clock()
        if not index.valid or self._xmin is None or now - self._synced > STALE:
            rows = run(_LOAD, ()).fetchall()
            index.load((r[1], r[2], r[3]) for r in rows if r[1] is not None)
            self._reread.clear()
        else:
            rows = run(*self.changes()).fetchall()
            changed = {r[1] for r in rows if r[1] is not None} - index.pending
            if len(changed) > MOST_CHANGED:
                self.forget()
                return self.current(run)
            self._reread.clear()
            if changed:
                index.replace(changed, ((r[1], r[2], r[3]) for r in rows if r[1] in changed and r[2] is not None))
        self._xmin, self._synced, self.nodesVersion, self.healthVersion = rows[0][0], now, rows[0][4], rows[0][5]
        return index

    def written(self, nodeids: Iterable[str]) -> None:
        """
        Nodes the open transaction writes: pending (asked of the database).
        """
        self.index.touch(str(n) for n in nodeids)

    def ended(self) -> None:
        """
        The transaction ended (committed or not): its nodes are read again
        at the next update, and answered for from then on.
        """
        self._reread.update(self.index.pending)
        self.index.pending.clear()


def prune(connection: Any, keep: int = KEEP) -> int:
    """
    Drop the changes older than C{keep} seconds (the leader does, now and then).
    """
    return connection.execute(
        "DELETE FROM schedule_changes WHERE at < clock_timestamp() - make_interval(secs => %s)", (keep,)
    ).rowcount
