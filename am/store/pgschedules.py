# -*- test-case-name: tests.test_store_postgres -*-
"""
The PostgreSQL transaction's reads of schedules by window (a mixin of
L{am.store.postgres.PostgresTransaction}): what a booking verifies under its
node locks, what a heartbeat hands its node, what a list shows. Each range
on C{start} reaches back by the longest window ever stored, so the
C{(nodeid, start)} and C{(start)} indexes answer it.
"""

from __future__ import annotations

from typing import Any, Iterable, Optional

from am.core.model import Interval, Schedule
from am.core.states import QUEUE_START
from am.store.rows import SCHEDULE_COLUMNS, recordKey, scheduleFromRow

# The earliest start of a window that can reach a span starting at the parameter:
# the index range reaches back by the longest window ever stored, and no further.
_LOW = "%s::bigint - (SELECT value FROM meta WHERE key = 'longest_window')"
# A blocking window overlapping a span; its parameters: the span's start (for
# the index's low bound), its stop, its start again.
_BLOCKING = f"start >= {_LOW} AND start < %s AND stop > %s AND blocking"
# As many node ids as SQLite's store looks up through its per-node index; past
# that its rows come in start order, and so do ours.
_PER_NODE = 64


class ScheduleReads:
    """
    Schedules and blocking intervals by window.
    """

    _all: Any
    lockNodes: Any

    def schedulesOfNode(
        self, nodeid: str, start: int, stop: int, limit: Optional[int] = None
    ) -> list[Schedule]:
        sql = (
            f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE nodeid = %s AND start >= {_LOW} "
            f"AND start < %s AND stop > %s AND start <> {QUEUE_START} ORDER BY start, id"
        )
        args: list[Any] = [str(nodeid), start, stop, start]
        if limit is not None:
            sql += " LIMIT %s"
            args.append(limit)
        return [scheduleFromRow(r) for r in self._all(sql, *args)]

    def tasksOfNode(
        self, nodeid: str, start: int, stop: int, queued: int
    ) -> tuple[list[Schedule], list[Schedule]]:
        # A heartbeat's two reads in one round trip (each part keeps its order
        # in Python: a UNION ALL promises none).
        rows = self._all(
            f"(SELECT 0, {SCHEDULE_COLUMNS} FROM schedules WHERE nodeid = %s AND status = 'queued' "
            "ORDER BY id LIMIT %s) UNION ALL "
            f"(SELECT 1, {SCHEDULE_COLUMNS} FROM schedules WHERE nodeid = %s AND start >= {_LOW} "
            f"AND start < %s AND stop > %s AND start <> {QUEUE_START})",
            str(nodeid), queued, str(nodeid), start, stop, start,
        )
        waiting = sorted((scheduleFromRow(r[1:]) for r in rows if r[0] == 0), key=lambda s: s.id)
        upcoming = sorted((scheduleFromRow(r[1:]) for r in rows if r[0] == 1), key=lambda s: (s.start, s.id))
        return waiting, upcoming

    def schedulesOverlapping(
        self, start: int, stop: int, ownerid: Optional[int] = None
    ) -> list[Schedule]:
        columns = ", ".join("s." + c.strip() for c in SCHEDULE_COLUMNS.split(","))
        sql = f"SELECT {columns} FROM schedules s"
        where = f"s.start >= {_LOW} AND s.start < %s AND s.stop > %s AND s.start <> {QUEUE_START}"
        args: list[Any] = [start, stop, start]
        if ownerid is not None:
            sql += " JOIN experiments e ON e.id = s.expid"
            where += " AND e.ownerid = %s"
            args.append(recordKey(ownerid))
        return [scheduleFromRow(r) for r in self._all(f"{sql} WHERE {where} ORDER BY s.start, s.id", *args)]

    def blockingIntervals(
        self, start: int, stop: int, nodeids: Optional[Iterable[str]] = None
    ) -> list[Interval]:
        if nodeids is not None:
            ids = [str(n) for n in nodeids]
            if not ids:
                return []
            self.lockNodes(ids)
            unique = list(dict.fromkeys(ids))
            if len(unique) == 1:
                # A booking's usual read (one node).
                rows = self._all(
                    f"SELECT nodeid, start, stop FROM schedules WHERE nodeid = %s AND {_BLOCKING} ORDER BY start, id",
                    unique[0], start, stop, start,
                )
            elif len(unique) <= _PER_NODE:
                # Per node (index schedules_node), in node then start order, as
                # SQLite returns them: a lateral scan per node, kept apart
                # (OFFSET 0; with "nodeid = ANY(...)" the generic plan walked
                # every node's intervals in the window through the start index).
                # The ids come as a VALUES list padded with NULLs to a power of
                # two, so the server's generic plan knows how many rows it has
                # and is kept: an unnest's guess (a hundred) always lost to a
                # custom plan, planned again at every run for more than it ran.
                size = 1 << (len(unique) - 1).bit_length()
                rows = self._all(
                    "SELECT s.nodeid, s.start, s.stop FROM (VALUES "
                    + ", ".join(["(%s::text)"] * size)
                    + ") AS n(id), LATERAL "
                    f"(SELECT nodeid, start, stop, id FROM schedules WHERE nodeid = n.id AND {_BLOCKING} "
                    "OFFSET 0) AS s ORDER BY s.nodeid, s.start, s.id",
                    *unique, *[None] * (size - len(unique)), start, stop, start,
                )
            else:
                rows = self._all(
                    "SELECT nodeid, start, stop FROM schedules WHERE nodeid = ANY(%s::text[]) "
                    f"AND {_BLOCKING} ORDER BY start, id",
                    ids, start, stop, start,
                )
        else:
            self.lockNodes(None)
            rows = self._all(
                "SELECT nodeid, start, stop FROM schedules "
                f"WHERE blocking AND start >= {_LOW} AND start < %s AND stop > %s ORDER BY start, id",
                start, stop, start,
            )
        return [Interval(*r) for r in rows]
