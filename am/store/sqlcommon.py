# -*- test-case-name: tests.test_store_contract -*-
"""
The SQL both stores share: every method whose query is the same in SQLite and
PostgreSQL, written once with C{?} placeholders (L{SQLTransaction._sql} turns
them into PostgreSQL's C{%s}). What differs (node tags, inserts that return
ids, interval queries, schema) stays in each store.
"""

from __future__ import annotations

import json
from typing import Any, Iterable, Optional, Sequence

from am.core.errors import StaleWrite
from am.core.health import HealthRecords
from am.core.model import (
    Booked,
    Experiment,
    FeedRow,
    JournalEntry,
    NodeHealth,
    Quota,
    ResultFile,
    Schedule,
    User,
)
from am.core.states import FINAL_STATES, NEVER_DEPLOYED, ON_NODE, QUEUE_START
from am.store import healthcache
from am.store.outboxsql import OutboxSQL
from am.store.rows import (
    EXPERIMENT_COLUMNS,
    SCHEDULE_COLUMNS,
    USER_COLUMNS,
    experimentFromRow,
    recordKey,
    scheduleFromRow,
    userFromRow,
)

_FINAL = ", ".join(f"'{s}'" for s in FINAL_STATES)
_OPEN = ", ".join(f"'{s}'" for s in NEVER_DEPLOYED + ON_NODE)
#: A user's quotas (one parameter: the user's id).
QUOTAS = "SELECT kind, current, reset_value, reset_date, last_reset FROM quotas WHERE userid = ? ORDER BY kind"


def quotasFromRows(rows: Iterable[tuple]) -> dict[str, Quota]:
    """
    A user's quotas by kind, from the rows of L{QUOTAS}.
    """
    return {
        row[0]: Quota(kind=row[0], current=row[1], resetValue=row[2], resetDate=row[3], lastReset=row[4])
        for row in rows
    }


class SQLTransaction(OutboxSQL):
    """
    Shared queries over a DB-API connection C{_db} (sqlite3 or psycopg 3).
    """

    _db: Any
    #: The connection's health records (L{am.store.healthcache}); a store sets its own.
    _health: healthcache.HealthCache

    def _scheduleRow(self, schedule: Schedule) -> tuple:
        """
        A schedule's columns as this database takes them (each store has its own).
        """
        raise NotImplementedError()

    def _userRow(self, user: User) -> tuple:
        """
        A user's columns as this database takes them (each store has its own).
        """
        raise NotImplementedError()

    def _sql(self, text: str) -> str:
        """
        The query in this database's placeholder style (C{?} here).
        """
        return text

    def _exec(self, sql: str, args: Any = ()) -> Any:
        return self._db.execute(self._sql(sql), args)

    def _write(self, sql: str, args: Any, *tables: str) -> None:
        """
        A write whose answer (row count, error) nobody reads: a store may send
        it later, before any statement naming one of C{tables} (PostgreSQL's
        L{am.store.pgheld}); here at once.
        """
        self._exec(sql, args)

    def _bumpNodes(self) -> None:
        """
        Note that a node's static facts (tags, status, hostname, pairing)
        changed: node views of this version are out of date (L{am.store.viewkeeper}).
        """
        self._exec("UPDATE meta SET value = value + 1 WHERE key = 'nodes_version'")

    def _bumpHealth(self) -> None:
        """
        Note that a health record changed: kept records of this version are
        out of date (L{am.store.healthcache}), here and in other controllers.
        """
        self._write(healthcache.BUMP, (), "meta")
        self._health.wrote()

    def _healthVersion(self) -> Any:
        """
        C{meta.health_version} as this transaction sees it.
        """
        return self._one(healthcache.VERSION)[0]

    def setPair(self, headid: str, tailid: str) -> None:
        head, tail = str(headid), str(tailid)
        self._exec(
            "DELETE FROM node_pairs WHERE head IN (?, ?) OR tail IN (?, ?)", (head, tail, head, tail)
        )
        self._exec("INSERT INTO node_pairs (head, tail) VALUES (?, ?)", (head, tail))
        self._bumpNodes()

    def deletePairs(self, nodeid: str) -> int:
        node = str(nodeid)
        removed = self._exec("DELETE FROM node_pairs WHERE head = ? OR tail = ?", (node, node)).rowcount
        if removed:
            self._bumpNodes()
        return removed

    def listPairs(self) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in self._all("SELECT head, tail FROM node_pairs ORDER BY head")]

    def getHealth(self, nodeid: str) -> NodeHealth:
        row = self._one(
            "SELECT gaps, last_gap, failures, last_failure FROM node_health WHERE nodeid = ?", str(nodeid)
        )
        return NodeHealth(str(nodeid), *row) if row else NodeHealth(str(nodeid))

    def putHealth(self, health: NodeHealth) -> None:
        self._write(
            "INSERT INTO node_health (nodeid, gaps, last_gap, failures, last_failure) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (nodeid) DO UPDATE SET gaps = EXCLUDED.gaps, last_gap = EXCLUDED.last_gap, "
            "failures = EXCLUDED.failures, last_failure = EXCLUDED.last_failure",
            (str(health.nodeid), health.gaps, health.lastGap, health.failures, health.lastFailure),
            "node_health",
        )
        self._bumpHealth()

    def listHealth(self) -> HealthRecords:
        # Kept between transactions until a health write commits (am.store.healthcache).
        return self._health.records(self._healthVersion, lambda: healthcache.decode(self._all(healthcache.LOAD)))

    def listUsers(self) -> list[User]:
        return [userFromRow(r) for r in self._all(f"SELECT {USER_COLUMNS} FROM users ORDER BY id")]

    def addJournal(self, entry: JournalEntry) -> None:
        self._write(
            "INSERT INTO quota_journal (timestamp, userid, kind, delta, new_value, reason) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (entry.timestamp, entry.userid, entry.kind, entry.delta, entry.newValue, entry.reason),
            "quota_journal",
        )

    def _noteLongest(self, schedules: Iterable[Schedule]) -> None:
        self._raiseLongest(max((s.stop - s.start for s in schedules), default=0))

    def _raiseLongest(self, longest: int) -> None:
        self._write(
            "UPDATE meta SET value = ? WHERE key = 'longest_window' AND value < ?", (longest, longest), "meta"
        )

    def _longest(self) -> int:
        """
        The longest window ever stored (C{meta.longest_window}): how far back
        an index range on C{start} must reach to find every overlap.
        """
        return self._one("SELECT value FROM meta WHERE key = 'longest_window'")[0]

    def queuedSchedules(self, nodeid: str, limit: Optional[int] = None) -> list[Schedule]:
        sql = f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE nodeid = ? AND status = 'queued' ORDER BY id"
        args: list[Any] = [str(nodeid)]
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [scheduleFromRow(r) for r in self._all(sql, *args)]

    def schedulesOfNode(
        self, nodeid: str, start: int, stop: int, limit: Optional[int] = None
    ) -> list[Schedule]:
        """
        (Each store's own: their interval queries differ.)
        """
        raise NotImplementedError()

    def tasksOfNode(
        self, nodeid: str, start: int, stop: int, queued: int
    ) -> tuple[list[Schedule], list[Schedule]]:
        return self.queuedSchedules(nodeid, queued), self.schedulesOfNode(nodeid, start, stop)

    def getUser(self, userid: int) -> Optional[User]:
        row = self._one(f"SELECT {USER_COLUMNS} FROM users WHERE id = ?", recordKey(userid))
        return userFromRow(row) if row else None

    def getExperiment(self, expid: int) -> Optional[Experiment]:
        row = self._one(f"SELECT {EXPERIMENT_COLUMNS} FROM experiments WHERE id = ?", recordKey(expid))
        return experimentFromRow(row) if row else None

    def findExperiments(
        self,
        ownerid: Optional[int] = None,
        status: Optional[str] = None,
        sliceURN: Optional[str] = None,
    ) -> list[Experiment]:
        if ownerid is not None:
            ownerid = recordKey(ownerid)
            if ownerid is None:
                return []
        where, args = [], []
        for column, value in (("ownerid", ownerid), ("status", status), ("slice_urn", sliceURN)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        return [
            experimentFromRow(r)
            for r in self._all(f"SELECT {EXPERIMENT_COLUMNS} FROM experiments {clause} ORDER BY id", *args)
        ]

    def getSchedule(self, schedid: int) -> Optional[Schedule]:
        row = self._one(f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE id = ?", recordKey(schedid))
        return scheduleFromRow(row) if row else None

    def schedulesOfExperiment(self, expid: int) -> list[Schedule]:
        return [
            scheduleFromRow(r)
            for r in self._all(
                f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE expid = ? ORDER BY start, id",
                recordKey(expid),
            )
        ]

    def listJournal(self, userid: int) -> list[JournalEntry]:
        return [
            JournalEntry(*row)
            for row in self._all(
                "SELECT timestamp, userid, kind, delta, new_value, reason FROM quota_journal "
                "WHERE userid = ? ORDER BY id",
                recordKey(userid),
            )
        ]

    def getQuotas(self, userid: int) -> dict[str, Quota]:
        return quotasFromRows(self._all(QUOTAS, recordKey(userid)))

    def countSchedules(self) -> int:
        return self._one("SELECT count(*) FROM schedules")[0]

    def putTraffic(self, schedid: int, meter: str, value: int) -> None:
        self._exec(
            "INSERT INTO traffic_reports (schedid, meter, value) VALUES (?, ?, ?) "
            "ON CONFLICT (schedid, meter) DO UPDATE SET value = EXCLUDED.value",
            (schedid, meter, value),
        )

    def trafficOf(self, schedid: int) -> dict[str, int]:
        return dict(
            self._all(
                "SELECT meter, value FROM traffic_reports WHERE schedid = ? ORDER BY meter",
                recordKey(schedid),
            )
        )

    def addPublicKey(self, schedid: int, public: str, expires: int) -> None:
        self._exec(
            "INSERT INTO public_keys (schedid, public, expires) VALUES (?, ?, ?)",
            (schedid, public, expires),
        )

    def publicKeys(self, now: int) -> list[str]:
        return [
            row[0]
            for row in self._all(
                "SELECT k.public FROM public_keys k JOIN schedules s ON s.id = k.schedid "
                f"WHERE k.expires > ? AND s.status NOT IN ({_FINAL}) ORDER BY k.schedid",
                now,
            )
        ]

    def putResultFile(self, result: ResultFile) -> None:
        self._exec(
            "INSERT INTO result_files (schedid, path, size, sha256, stored) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (schedid, path) DO UPDATE SET size = EXCLUDED.size, "
            "sha256 = EXCLUDED.sha256, stored = EXCLUDED.stored",
            (result.schedid, result.path, result.size, result.sha256, result.stored),
        )

    def resultFiles(self, schedid: int) -> list[ResultFile]:
        return [
            ResultFile(*row)
            for row in self._all(
                "SELECT schedid, path, size, sha256, stored FROM result_files WHERE schedid = ? ORDER BY path",
                recordKey(schedid),
            )
        ]

    def deleteResultFile(self, schedid: int, path: str) -> None:
        self._exec("DELETE FROM result_files WHERE schedid = ? AND path = ?", (schedid, path))

    def staleResultFiles(self, before: int, limit: int) -> list[ResultFile]:
        return [
            ResultFile(*row)
            for row in self._all(
                "SELECT schedid, path, size, sha256, stored FROM result_files WHERE stored < ? "
                "ORDER BY stored, schedid, path LIMIT ?",
                before, limit,
            )
        ]

    def openResultWindow(self, schedid: int, closes: int) -> None:
        self._exec(
            "INSERT INTO result_windows (schedid, closes) VALUES (?, ?) "
            "ON CONFLICT (schedid) DO UPDATE SET closes = EXCLUDED.closes",
            (schedid, closes),
        )

    def resultWindow(self, schedid: int) -> Optional[int]:
        row = self._one("SELECT closes FROM result_windows WHERE schedid = ?", recordKey(schedid))
        return None if row is None else row[0]

    def closedResultWindows(self, now: int) -> list[int]:
        return [
            row[0]
            for row in self._all("SELECT schedid FROM result_windows WHERE closes <= ? ORDER BY closes, schedid", now)
        ]

    def closeResultWindow(self, schedid: int) -> None:
        self._exec("DELETE FROM result_windows WHERE schedid = ?", (schedid,))

    def expiredAllocations(self, now: int) -> list[Schedule]:
        return [
            scheduleFromRow(r)
            for r in self._all(
                f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE status = 'allocated' "
                "AND expires < ? ORDER BY expires, id",
                now,
            )
        ]

    def overdueSchedules(self, before: int) -> list[Schedule]:
        # The IN list repeats the partial index's (schedules_open) so both databases use it.
        return [
            scheduleFromRow(r)
            for r in self._all(
                f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE status IN ({_OPEN}) "
                "AND stop <= ? ORDER BY stop, id",
                before,
            )
        ]

    def expiredQueue(self, now: int) -> list[Schedule]:
        return [
            scheduleFromRow(r)
            for r in self._all(
                f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE status = 'queued' "
                "AND expires < ? ORDER BY expires, id",
                now,
            )
        ]

    def bookedIn(
        self,
        start: int,
        stop: int,
        nodeid: Optional[str] = None,
        after: Optional[tuple[int, int]] = None,
        limit: Optional[int] = None,
        withoutStatus: Sequence[str] = (),
    ) -> list[Booked]:
        # The index range on start reaches back by the longest window ever
        # stored (nothing longer can overlap), or from the cursor when later.
        low = start - self._longest()
        where = "s.start < ? AND s.stop > ? AND s.start <> ?"
        args: list[Any] = [stop, start, QUEUE_START]
        if after is not None:
            low = max(low, after[0])
            where += " AND (s.start > ? OR s.id > ?)"
            args += [after[0], after[1]]
        if nodeid is not None:
            where += " AND s.nodeid = ?"
            args.append(str(nodeid))
        if withoutStatus:
            where += f" AND s.status NOT IN ({', '.join('?' * len(withoutStatus))})"
            args += list(withoutStatus)
        # The owner by a sub-select, not a join: PostgreSQL would hash-join a
        # few hundred rows against every experiment (1.4 ms at 10k, 0.6 ms this way).
        sql = (
            "SELECT s.id, s.nodeid, s.start, s.stop, "
            "COALESCE((SELECT e.ownerid FROM experiments e WHERE e.id = s.expid), 0) "
            f"FROM schedules s WHERE s.start >= ? AND {where} ORDER BY s.start, s.id"
        )
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [Booked._make(r) for r in self._all(sql, low, *args)]

    def feedRows(
        self,
        start: int,
        stop: int,
        nodeid: Optional[str] = None,
        ownerid: Optional[int] = None,
        expid: Optional[int] = None,
    ) -> list[FeedRow]:
        low = start - self._longest()
        where = "s.start >= ? AND s.start < ? AND s.stop > ? AND s.start <> ?"
        args: list[Any] = [low, stop, start, QUEUE_START]
        for column, value in (("s.nodeid", nodeid), ("e.ownerid", ownerid), ("s.expid", expid)):
            if value is not None:
                key = str(value) if column == "s.nodeid" else recordKey(value)
                if key is None:
                    return []
                where += f" AND {column} = ?"
                args.append(key)
        sql = (
            "SELECT s.id, s.nodeid, s.expid, s.start, s.stop, s.status, s.reason, s.updated, "
            "e.ownerid, e.name, u.name FROM schedules s LEFT JOIN experiments e ON e.id = s.expid "
            f"LEFT JOIN users u ON u.id = e.ownerid WHERE {where} ORDER BY s.start, s.id"
        )
        return [FeedRow._make(r) for r in self._all(sql, *args)]

    def _one(self, sql: str, *args: Any) -> Optional[tuple]:
        return self._exec(sql, args).fetchone()

    def _all(self, sql: str, *args: Any) -> list[tuple]:
        return self._exec(sql, args).fetchall()

    def _compareAndSet(self, sql: str, args: tuple, record: Any, what: str) -> None:
        """
        Run an C{UPDATE ... SET ..., version = version + 1 WHERE id = ? AND
        version = ?} of C{record}; refuse when the row moved on since it was
        read (or is gone), else note the new version on the record.

        @raise StaleWrite: nothing was written.
        """
        if self._exec(sql, args).rowcount != 1:
            raise StaleWrite(f"{what} {record.id} changed meanwhile; nothing was written, try again.")
        record.version += 1

    def updateSchedule(self, schedule: Schedule) -> None:
        self._compareAndSet(
            "UPDATE schedules SET expid = ?, nodeid = ?, start = ?, stop = ?, status = ?, "
            "reason = ?, shared = ?, blocking = ?, deployment_options = ?, charged_time = ?, "
            "charged_data = ?, charged_storage = ?, expires = ?, updated = ?, version = version + 1 "
            "WHERE id = ? AND version = ?",
            (*self._scheduleRow(schedule), recordKey(schedule.id), schedule.version),
            schedule, "Schedule",
        )
        self._noteLongest([schedule])

    def putQuota(self, userid: int, quota: Quota) -> None:
        self._write(
            "INSERT INTO quotas (userid, kind, current, reset_value, reset_date, last_reset) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (userid, kind) DO UPDATE SET "
            "current = EXCLUDED.current, reset_value = EXCLUDED.reset_value, "
            "reset_date = EXCLUDED.reset_date, last_reset = EXCLUDED.last_reset",
            (userid, quota.kind, quota.current, quota.resetValue, quota.resetDate, quota.lastReset),
            "quotas",
        )

    def findUser(
        self,
        fingerprint: Optional[str] = None,
        urn: Optional[str] = None,
        name: Optional[str] = None,
        project: Optional[str] = None,
    ) -> Optional[User]:
        if fingerprint:
            row = self._one(f"SELECT {USER_COLUMNS} FROM users WHERE fingerprint = ?", fingerprint)
        elif urn:
            row = self._one(f"SELECT {USER_COLUMNS} FROM users WHERE urn = ?", urn)
        elif name is not None:
            row = self._one(
                f"SELECT {USER_COLUMNS} FROM users WHERE name = ? AND project = ? "
                "AND NOT invalid ORDER BY id LIMIT 1",
                name,
                project or "",
            )
        else:
            return None
        return userFromRow(row) if row else None

    def addBooking(self, experiment: Experiment, schedules: list[Schedule]) -> int:
        self.addExperiment(experiment)  # type: ignore[attr-defined]
        for schedule in schedules:
            schedule.expid = experiment.id
        self.addSchedules(schedules)  # type: ignore[attr-defined]
        return experiment.id

    def _experimentRow(self, experiment: Experiment) -> tuple:
        return (
            experiment.name, experiment.script, experiment.nodetypes, experiment.start,
            experiment.stop, experiment.recurringUntil, json.dumps(experiment.options),
            experiment.status, experiment.sliceURN,
        )

    def updateExperiment(self, experiment: Experiment) -> None:
        self._compareAndSet(
            "UPDATE experiments SET name = ?, script = ?, nodetypes = ?, start = ?, stop = ?, "
            "recurring_until = ?, options = ?, status = ?, slice_urn = ?, version = version + 1 "
            "WHERE id = ? AND version = ?",
            (*self._experimentRow(experiment), recordKey(experiment.id), experiment.version),
            experiment, "Experiment",
        )

    def updateUser(self, user: User) -> None:
        self._compareAndSet(
            "UPDATE users SET name = ?, role = ?, fingerprint = ?, urn = ?, project = ?, "
            "invalid = ?, nodeid = ?, version = version + 1 WHERE id = ? AND version = ?",
            (*self._userRow(user), recordKey(user.id), user.version),
            user, "User",
        )
