# -*- test-case-name: tests.test_store_pgahead -*-
"""
A heartbeat batch's first reads in one statement (PostgreSQL).

A heartbeat reads its caller, its node and the node's tasks before it writes
anything: three round trips, each costing the controller and the server more
than the read itself (docs/postgresql.md). Commands that say what they read
first (C{readAhead} on the command, an L{am.core.interfaces.ReadAhead}) have
those reads made for their whole batch in one statement at its start; the
transaction then answers each of them once from what was read (L{Ahead.take}),
and a read made again goes to the database as before.

Under READ COMMITTED a read made ahead sees what was committed at the batch's
start, as if the command had run first in the batch; what it writes is guarded
as before (records' versions, the node locks of a placement). A batch's
commands never write one another's rows, except two naming the same node or
user: those are not read ahead (L{hints}).
"""

from __future__ import annotations

import json
from collections import Counter
from typing import Any, Callable, Optional

from am.core.interfaces import ReadAhead
from am.core.model import Schedule, User
from am.core.states import QUEUE_START
from am.store.groupcommit import Work
from am.store.pgschema import NODE_COLUMNS
from am.store.rows import SCHEDULE_COLUMNS, USER_COLUMNS, nodeFromRow, recordKey, scheduleFromRow, userFromRow

#: What L{Ahead.take} answers for a read it does not hold.
MISSING: Any = object()


def _columns(prefix: str, columns: str) -> str:
    return ", ".join(f"{prefix}.{c.strip()}" for c in columns.split(","))


_PER_NODE = (
    # Each node's queued tasks (oldest first, at most k.queued) and its tasks
    # in the window, as L{am.store.pgschedules.ScheduleReads.tasksOfNode} reads them.
    f"(SELECT 0 AS part, {_columns('s', SCHEDULE_COLUMNS)} FROM schedules s "
    "WHERE s.nodeid = k.nodeid AND s.status = 'queued' ORDER BY s.id LIMIT k.queued) UNION ALL "
    f"(SELECT 1, {_columns('s', SCHEDULE_COLUMNS)} FROM schedules s WHERE s.nodeid = k.nodeid "
    "AND s.start >= k.start - (SELECT value FROM meta WHERE key = 'longest_window') "
    f"AND s.start < k.stop AND s.stop > k.start AND s.start <> {QUEUE_START})"
)

SQL = (
    "SELECT json_build_array("
    f"(SELECT json_agg(json_build_array({USER_COLUMNS})) FROM users WHERE id = ANY(%s::bigint[])), "
    f"(SELECT json_agg(json_build_array({NODE_COLUMNS})) FROM nodes WHERE id = ANY(%s::text[])), "
    f"(SELECT json_agg(json_build_array(k.i, t.part, {_columns('t', SCHEDULE_COLUMNS)})) "
    "FROM unnest(%s::text[], %s::bigint[], %s::bigint[], %s::int[]) WITH ORDINALITY "
    f"AS k(nodeid, start, stop, queued, i), LATERAL ({_PER_NODE}) t))::text"
)


def hints(work: list[Work]) -> list[ReadAhead]:
    """
    The reads ahead of a batch's core commands (C{runCommand(txn, command,
    args, kwargs, ...)}), leaving out those whose node or user another of the
    batch names: one could write what the other read.
    """
    reads = []
    for function, args, kwargs in work:
        command = args[0] if args else None
        readAhead = getattr(command, "readAhead", None)
        if readAhead is not None and len(args) >= 3:
            reads.append(readAhead(*args[1], **args[2]))
    nodes = Counter(r.nodeid for r in reads)
    users = Counter(recordKey(r.userid) for r in reads)
    return [r for r in reads if nodes[r.nodeid] == 1 and users[recordKey(r.userid)] == 1]


class Ahead:
    """
    Reads made ahead in one transaction, each answered once.
    """

    def __init__(self) -> None:
        self._kept: dict[tuple, Any] = {}

    def load(self, one: Callable[..., Optional[tuple]], reads: list[ReadAhead]) -> None:
        """
        Make C{reads} in one statement (C{one(sql, *args)} runs it).
        """
        reads = [r for r in reads if recordKey(r.userid) is not None]
        if not reads:
            return
        users = [recordKey(r.userid) for r in reads]
        nodes = [r.nodeid for r in reads]
        document = one(
            SQL, users, nodes, nodes, [r.start for r in reads], [r.stop for r in reads], [r.queued for r in reads],
        )[0]
        userRows, nodeRows, taskRows = json.loads(document)
        kept = self._kept
        byUser = {row[0]: userFromRow(row) for row in userRows or ()}
        byNode = {row[0]: nodeFromRow(row) for row in nodeRows or ()}
        tasks: list[tuple[list, list]] = [([], []) for _ in reads]
        for row in taskRows or ():
            tasks[row[0] - 1][row[1]].append(scheduleFromRow(row[2:]))
        for read, user, (waiting, upcoming) in zip(reads, users, tasks):
            kept["user", user] = byUser.get(user)
            kept["node", read.nodeid] = byNode.get(read.nodeid)
            waiting.sort(key=lambda s: s.id)
            upcoming.sort(key=lambda s: (s.start, s.id))
            kept["tasks", read.nodeid, read.start, read.stop, read.queued] = (waiting, upcoming)

    def keep(self, value: Any, *key: Any) -> None:
        """
        Answer the next read of C{key} with C{value} (read in passing).
        """
        self._kept[key] = value

    def take(self, *key: Any) -> Any:
        """
        What was read ahead for C{key}, once; L{MISSING} otherwise.
        """
        return self._kept.pop(key, MISSING) if self._kept else MISSING


class ReadsAhead:
    """
    The reads a transaction may have made ahead (a mixin of
    L{am.store.postgres.PostgresTransaction}, which answers C{getNode} itself).
    """

    _ahead: Ahead
    _one: Any

    def readAhead(self, reads: list[ReadAhead]) -> None:
        """
        Make C{reads} now, in one statement; each is answered from it once.
        """
        self._ahead.load(self._one, reads)

    def getUser(self, userid: int) -> Optional[User]:
        kept = self._ahead.take("user", recordKey(userid))
        return super().getUser(userid) if kept is MISSING else kept  # type: ignore[misc]

    def tasksOfNode(
        self, nodeid: str, start: int, stop: int, queued: int
    ) -> tuple[list[Schedule], list[Schedule]]:
        kept = self._ahead.take("tasks", str(nodeid), start, stop, queued)
        if kept is MISSING:
            return super().tasksOfNode(nodeid, start, stop, queued)  # type: ignore[misc]
        return kept


def together(txn: Any, work: list[Work], reads: list[ReadAhead]) -> list[Any]:
    """
    A batch's functions in one transaction, C{reads} made ahead
    (L{am.store.postgres.PostgresDatabase.runBatch}).
    """
    txn.readAhead(reads)
    return [function(txn, *args, **kwargs) for function, args, kwargs in work]


def alone(txn: Any, reads: list[ReadAhead], function: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    """
    One of a batch's functions in a transaction of its own, C{reads} made ahead.
    """
    txn.readAhead(reads)
    return function(txn, *args, **kwargs)


# Run again as a whole when it lost a race: runBatch uses it only with a function that may be.
alone.rerunnable = True  # type: ignore[attr-defined]
# Their statements are a heartbeat's: short, by key, planned once (their
# transaction's BEGIN says so: am.store.postgres._GENERIC).
together.genericPlans = alone.genericPlans = True  # type: ignore[attr-defined]
