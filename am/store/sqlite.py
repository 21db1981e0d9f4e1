# -*- test-case-name: tests.test_store -*-
"""
The SQLite store: one file in WAL mode, one connection, one writer thread.

Every database transaction starts with C{BEGIN IMMEDIATE}, which takes the
write lock up front, so an allocation's check and insert are atomic even
against another process using the same file. The store's transactions queued
together share one database transaction and one commit, each in a savepoint
of its own (group commit, L{am.store.groupcommit}); one that raises is rolled
back to its savepoint and the connection stays usable.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from typing import Any, Callable, ContextManager, Iterable, Optional

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from zope.interface import implementer

from am.core.interfaces import IStore, IStoreTransaction
from am.core.intervalindex import IntervalIndex
from am.core.model import (
    TAG_ADMIN,
    TAG_INVENTORY,
    Experiment,
    Interval,
    Node,
    Schedule,
    User,
)
from am.core.nodeview import NodeView
from am.core.states import QUEUE_START
from am.store.rows import (
    SCHEDULE_COLUMNS,
    scheduleFromRow,
)
from am.store.groupcommit import MAX_BATCH, GroupCommitter, Outcome, Work, WriterThread
from am.store.healthcache import HealthCache
from am.store.schema import migrate
from am.store.sharedfile import SharedCounter, WriterLock, catchUp, lastChange
from am.store.sqlcommon import SQLTransaction
from am.store.viewkeeper import HeartbeatHub, ViewKeeper

@implementer(IStoreTransaction)
class SQLiteTransaction(SQLTransaction):
    """
    L{IStoreTransaction} over one open SQLite transaction.
    """

    def __init__(
        self, connection: sqlite3.Connection, cache: Optional[dict] = None,
        keeper: Optional[ViewKeeper] = None, index: Optional[IntervalIndex] = None,
        health: Optional[HealthCache] = None,
    ) -> None:
        self._db = connection
        self._cache = cache if cache is not None else {}
        self._keeper = keeper if keeper is not None else ViewKeeper(HeartbeatHub())
        self._health = health if health is not None else HealthCache()
        self._index = index
        self.heard: list[tuple[str, int, Optional[list]]] = []

    @property
    def schemaVersion(self) -> int:
        return self._db.execute("PRAGMA user_version").fetchone()[0]

    # nodes

    def _tags(self) -> dict[str, tuple[dict[str, str], dict[str, str]]]:
        """
        Every node's (admin, inventory) tags, cached per connection until a node
        changes (C{nodes_version}, bumped by every writer, also in other processes).
        """
        version = self._one("SELECT value FROM meta WHERE key = 'nodes_version'")[0]
        if self._cache.get("version") != version:
            tags: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
            for nodeid, source, tag, value in self._all("SELECT nodeid, source, tag, value FROM node_tags"):
                admin, inventory = tags.setdefault(nodeid, ({}, {}))
                (admin if source == TAG_ADMIN else inventory)[tag] = value
            self._cache.clear()
            self._cache.update(version=version, tags=tags)
        return self._cache["tags"]

    def _nodes(self, where: str = "", *args: Any) -> list[Node]:
        if where:
            # One node: read its own tags rather than refresh the whole cache.
            tags: dict[str, tuple[dict[str, str], dict[str, str]]] = {}
            tagWhere = where.replace("WHERE id", "WHERE nodeid")
            for nodeid, source, tag, value in self._all(
                f"SELECT nodeid, source, tag, value FROM node_tags {tagWhere}", *args
            ):
                admin, inventory = tags.setdefault(nodeid, ({}, {}))
                (admin if source == TAG_ADMIN else inventory)[tag] = value
        else:
            tags = self._tags()
        nodes = []
        for row in self._all(
            f"SELECT id, hostname, status, heartbeat, interfaces FROM nodes {where} ORDER BY id", *args
        ):
            admin, inventory = tags.get(row[0], ({}, {}))
            nodes.append(
                Node(
                    id=row[0],
                    hostname=row[1],
                    status=row[2],
                    heartbeat=row[3],
                    interfaces=json.loads(row[4]),
                    adminTags=dict(admin),
                    inventoryTags=dict(inventory),
                )
            )
        return nodes

    def putNode(self, node: Node) -> None:
        self._db.execute(
            "INSERT INTO nodes (id, hostname, status, heartbeat, interfaces) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (id) DO UPDATE SET hostname=excluded.hostname, status=excluded.status, "
            "heartbeat=excluded.heartbeat, interfaces=excluded.interfaces",
            (node.id, node.hostname, node.status, node.heartbeat, json.dumps(node.interfaces)),
        )
        self._db.execute("DELETE FROM node_tags WHERE nodeid = ?", (node.id,))
        self._db.executemany(
            "INSERT INTO node_tags (nodeid, source, tag, value) VALUES (?, ?, ?, ?)",
            [(node.id, TAG_ADMIN, t, v) for t, v in node.adminTags.items()]
            + [(node.id, TAG_INVENTORY, t, v) for t, v in node.inventoryTags.items()],
        )
        self._bumpNodes()

    def getNode(self, nodeid: str) -> Optional[Node]:
        found = self._nodes("WHERE id = ?", str(nodeid))
        return found[0] if found else None

    def listNodes(self) -> list[Node]:
        return self._nodes()

    def nodeView(self) -> NodeView:
        return self._keeper.view(
            self._one("SELECT value FROM meta WHERE key = 'nodes_version'")[0],
            lambda: (self._nodes(), self.listPairs()),
            lambda: self._all("SELECT id, heartbeat FROM nodes"),
        )

    def setHeartbeat(
        self, nodeid: str, when: int, status: Optional[str], interfaces: Optional[list]
    ) -> None:
        sets, args = ["heartbeat = ?"], [when]  # type: list[str], list[Any]
        if status is not None:
            sets.append("status = ?")
            args.append(status)
        if interfaces is not None:
            sets.append("interfaces = ?")
            args.append(json.dumps(interfaces))
        self._db.execute(f"UPDATE nodes SET {', '.join(sets)} WHERE id = ?", (*args, nodeid))
        self.heard.append((str(nodeid), when, interfaces))

    def nodeHasSchedules(self, nodeid: str) -> bool:
        return self._one("SELECT 1 FROM schedules WHERE nodeid = ? LIMIT 1", nodeid) is not None

    def deleteNode(self, nodeid: str) -> None:
        self._db.execute("DELETE FROM node_tags WHERE nodeid = ?", (nodeid,))
        if self._db.execute("DELETE FROM node_health WHERE nodeid = ?", (nodeid,)).rowcount:
            self._bumpHealth()
        self._db.execute("DELETE FROM nodes WHERE id = ?", (nodeid,))
        self._bumpNodes()

    # node pairs

    # users and quotas

    def _userRow(self, user: User) -> tuple:
        return (user.name, user.role, user.fingerprint, user.urn, user.project, int(user.invalid), user.nodeid)

    def addUser(self, user: User) -> int:
        cursor = self._db.execute(
            "INSERT INTO users (name, role, fingerprint, urn, project, invalid, nodeid) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (user.name, user.role, user.fingerprint, user.urn, user.project, int(user.invalid), user.nodeid),
        )
        user.id = cursor.lastrowid
        return user.id

    # experiments

    def addExperiment(self, experiment: Experiment) -> int:
        cursor = self._db.execute(
            "INSERT INTO experiments (name, script, nodetypes, start, stop, recurring_until, "
            "options, status, slice_urn, ownerid, created) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
            (*self._experimentRow(experiment), experiment.ownerid, experiment.created),
        )
        experiment.id = cursor.lastrowid
        return experiment.id

    # schedules

    def _scheduleRow(self, s: Schedule) -> tuple:
        return (
            s.expid,
            str(s.nodeid),
            s.start,
            s.stop,
            s.status,
            s.reason,
            int(s.shared),
            int(s.blocking),
            json.dumps(s.deploymentOptions),
            s.chargedTime,
            s.chargedData,
            s.chargedStorage,
            s.expires,
            s.updated,
        )

    def intervalIndex(self) -> Optional[IntervalIndex]:
        """
        The connection's interval index (L{am.core.intervalindex}), loaded
        when it is not valid; nodes this transaction wrote are pending in it.
        """
        index = self._index
        if index is not None and not index.valid:
            index.load(self._all(_INDEX_ROWS))
        return index

    def _touch(self, nodeids: Iterable[str]) -> None:
        if self._index is not None:
            self._index.touch(nodeids)

    def updateSchedule(self, schedule: Schedule) -> None:
        if self._index is not None:
            # The node it leaves is written too.
            row = self._one("SELECT nodeid FROM schedules WHERE id = ?", schedule.id)
            self._touch([schedule.nodeid] + ([row[0]] if row else []))
        super().updateSchedule(schedule)

    def addSchedules(self, schedules: list[Schedule]) -> list[int]:
        self._touch(s.nodeid for s in schedules)
        ids = []
        for schedule in schedules:
            cursor = self._db.execute(
                "INSERT INTO schedules (expid, nodeid, start, stop, status, reason, shared, blocking, "
                "deployment_options, charged_time, charged_data, charged_storage, expires, updated) "
                "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                self._scheduleRow(schedule),
            )
            schedule.id = cursor.lastrowid
            ids.append(schedule.id)
        self._noteLongest(schedules)
        return ids

    def _longest(self) -> int:
        # Kept per connection: it only grows, our own raises land here, and a
        # commit of another connection drops it (SQLiteDatabase._checkOthers),
        # as does a rollback (_forget): a kept value is never below the file's.
        known = self._cache.get("longest")
        if known is None:
            known = self._cache["longest"] = super()._longest()
        return known

    def _raiseLongest(self, longest: int) -> None:
        if longest > self._longest():
            super()._raiseLongest(longest)
            self._cache["longest"] = longest

    def schedulesOfNode(
        self, nodeid: str, start: int, stop: int, limit: Optional[int] = None
    ) -> list[Schedule]:
        sql = (
            f"SELECT {SCHEDULE_COLUMNS} FROM schedules WHERE nodeid = ? AND start >= ? "
            f"AND start < ? AND stop > ? AND start <> {QUEUE_START} ORDER BY start, id"
        )
        args: list[Any] = [str(nodeid), start - self._longest(), stop, start]
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [scheduleFromRow(r) for r in self._all(sql, *args)]

    def schedulesOverlapping(
        self, start: int, stop: int, ownerid: Optional[int] = None
    ) -> list[Schedule]:
        sql = (
            f"SELECT {', '.join('s.' + c.strip() for c in SCHEDULE_COLUMNS.split(','))} "
            "FROM schedules s"
        )
        args: list[Any] = []
        where = f"s.start >= ? AND s.start < ? AND s.stop > ? AND s.start <> {QUEUE_START}"
        args += [start - self._longest(), stop, start]
        if ownerid is not None:
            sql += " JOIN experiments e ON e.id = s.expid"
            where += " AND e.ownerid = ?"
            args.append(ownerid)
        return [scheduleFromRow(r) for r in self._all(f"{sql} WHERE {where} ORDER BY s.start, s.id", *args)]

    def blockingIntervals(
        self, start: int, stop: int, nodeids: Optional[Iterable[str]] = None
    ) -> list[Interval]:
        low = start - self._longest()
        if nodeids is not None:
            ids = [str(n) for n in nodeids]
            if not ids:
                return []
            if len(ids) <= 64:
                marks = ",".join("?" * len(ids))
                rows = self._all(
                    "SELECT nodeid, start, stop FROM schedules INDEXED BY schedules_node "
                    f"WHERE nodeid IN ({marks}) AND start >= ? AND start < ? AND stop > ? "
                    "AND blocking = 1",
                    *ids,
                    low,
                    stop,
                    start,
                )
                return [Interval(*r) for r in rows]
            wanted = set(ids)
        else:
            wanted = None
        rows = self._all(
            "SELECT nodeid, start, stop FROM schedules INDEXED BY schedules_blocking "
            "WHERE blocking = 1 AND start >= ? AND start < ? AND stop > ?",
            low,
            stop,
            start,
        )
        return [Interval(*r) for r in rows if wanted is None or r[0] in wanted]


# What the interval index holds: every blocking window.
_INDEX_ROWS = "SELECT nodeid, start, stop FROM schedules WHERE blocking = 1"


def settleIndex(connection: sqlite3.Connection, index: IntervalIndex) -> None:
    """
    After a transaction ended (committed or rolled back): re-read the nodes it
    wrote, so the index holds committed windows only.
    """
    pending = sorted(index.pending)
    if not pending:
        return
    if index.valid and len(pending) <= 512 and not connection.in_transaction:
        marks = ",".join("?" * len(pending))
        try:
            rows = connection.execute(
                "SELECT nodeid, start, stop FROM schedules INDEXED BY schedules_node "
                f"WHERE nodeid IN ({marks}) AND blocking = 1", pending
            ).fetchall()
        except sqlite3.Error:
            pass
        else:
            index.replace(pending, rows)
            return
    index.valid = False
    index.pending.clear()


# PRAGMA synchronous levels a configuration may choose (SQLite's names).
SYNCHRONOUS_LEVELS = ("full", "normal", "extra", "off")


def synchronousLevel(connection: sqlite3.Connection) -> str:
    """
    The connection's C{PRAGMA synchronous}, by name.
    """
    number = connection.execute("PRAGMA synchronous").fetchone()[0]
    return {0: "off", 1: "normal", 2: "full", 3: "extra"}[number]


def _failAll(outcomes: list[Outcome], failure: Failure) -> list[Outcome]:
    """
    C{outcomes} of a transaction that did not commit: what had succeeded fails with C{failure}.
    """
    return [(False, failure) if ok else (ok, value) for ok, value in outcomes]


class SQLiteDatabase:
    """
    One connection to one SQLite file, running transactions synchronously.

    L{SQLiteStore} runs it on a dedicated thread; tests and tools may run it directly.
    """

    def __init__(self, path: str, synchronous: str = "full", shared: bool = False) -> None:
        if synchronous not in SYNCHRONOUS_LEVELS:
            raise ValueError(f"synchronous must be one of {', '.join(SYNCHRONOUS_LEVELS)}")
        self.path = path
        self._connection = sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, timeout=30.0
        )
        self._connection.execute("PRAGMA foreign_keys = ON")
        if path != ":memory:":
            self._connection.execute("PRAGMA journal_mode = WAL")
            # FULL syncs the WAL at every commit: an acknowledged booking survives
            # a power loss. NORMAL survives a crash of the process only.
            self._connection.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        self.schemaVersion = migrate(self._connection)
        self._cache: dict = {}
        self.keeper = ViewKeeper(HeartbeatHub())
        self.health = HealthCache()
        self.index = IntervalIndex()
        self._dataVersion: Optional[int] = None
        # The last schedule change (schedule_changes.seq) the index has caught up with.
        self._seenChange = 0
        # Several processes on the file (marvinctld's workers): their writers
        # take turns on an OS lock, not SQLite's busy-handler sleeps.
        self._writerLock = WriterLock(path + "-writer.lock") if shared and path != ":memory:" else None

    def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """
        Run C{function(transaction, ...)} in one immediate transaction.
        """
        [(ok, value)] = self.runBatch([(function, args, kwargs)])
        if not ok:
            value.raiseException()
        return value

    def runBatch(self, work: list[Work]) -> list[Outcome]:
        """
        Run each of C{work} in a savepoint of one immediate transaction and
        commit once (L{am.store.groupcommit}): one that raises is rolled back
        to its savepoint alone; when the commit fails, all fail. Should SQLite
        abandon the transaction itself (a full disk, an I/O error), what ran
        in it fails and the rest run in a new one.

        @return: C{(True, result)} or C{(False, Failure)} for each, in order.
        """
        outcomes: list[Outcome] = []
        while len(outcomes) < len(work):
            outcomes += self._group(work[len(outcomes):])
        return outcomes

    def turn(self) -> ContextManager[None]:
        """
        The writer lock of a shared file (nothing otherwise), held across
        the transactions run meanwhile on this thread: L{SQLiteStore}'s group
        commit forms a batch once it has it, so what queued while another
        process's writer held the file joins that batch.
        """
        lock = self._writerLock
        return lock.held() if lock is not None else contextlib.nullcontext()

    def _group(self, work: list[Work]) -> list[Outcome]:
        """
        Run as much of C{work} as one transaction holds; an outcome for each of those.
        """
        connection = self._connection
        lock = self._writerLock
        if lock is not None:
            lock.acquire()
        try:
            try:
                connection.execute("BEGIN IMMEDIATE")
            except BaseException:
                failure = Failure()
                return [(False, failure)] * len(work)
            try:
                self._checkOthers()
                return self._inside(work)
            finally:
                # Committed or not: health records may be kept again, and
                # the nodes written are read back.
                self.health.ended()
                settleIndex(connection, self.index)
        finally:
            if lock is not None:
                lock.release()

    def _inside(self, work: list[Work]) -> list[Outcome]:
        """
        L{_group} once its transaction began.
        """
        connection = self._connection
        outcomes: list[Outcome] = []
        for function, args, kwargs in work:
            txn = SQLiteTransaction(connection, self._cache, self.keeper, self.index, self.health)
            try:
                connection.execute("SAVEPOINT work")
                result = function(txn, *args, **kwargs)
                connection.execute("RELEASE work")
            except BaseException:
                failure = Failure()
                self._forget()
                if not self._undo():
                    # The transaction is gone, and what ran in it before.
                    return _failAll(outcomes, failure) + [(False, failure)]
                outcomes.append((False, failure))
                continue
            outcomes.append((True, result))
            # Later transactions of the batch see these heartbeats in the
            # node view; a failed commit below drops the view.
            self.keeper.committed(txn.heard)
        try:
            # BEGIN IMMEDIATE kept every other writer out: the changes logged
            # since the last check are this batch's own, settled after it.
            latest = lastChange(connection) if self.index.pending else None
            connection.execute("COMMIT")
        except BaseException:
            failure = Failure()
            self._forget()
            if connection.in_transaction:
                try:
                    connection.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            return _failAll(outcomes, failure)
        if latest is not None:
            self._seenChange = latest
        return outcomes

    def _undo(self) -> bool:
        """
        Roll back to the savepoint of the transaction that failed; C{False}
        when the database transaction itself is lost.
        """
        connection = self._connection
        if connection.in_transaction:
            try:
                connection.execute("ROLLBACK TO work")
                connection.execute("RELEASE work")
                return True
            except sqlite3.Error:
                try:
                    connection.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
        return False

    def _forget(self) -> None:
        """
        Drop what the caches may hold of a change that did not commit.
        """
        self._cache.clear()
        self.keeper.forget()

    def _checkOthers(self) -> None:
        """
        Catch the interval index up with what other connections (a tool,
        another process) committed since the last transaction: C{PRAGMA
        data_version} moves only for their commits, and C{schedule_changes}
        names the nodes whose blocking windows changed, so a commit of
        heartbeats costs nothing and a booking re-reads its nodes only.
        """
        connection = self._connection
        version = connection.execute("PRAGMA data_version").fetchone()[0]
        if version == self._dataVersion:
            return
        self._dataVersion = version
        self._cache.pop("longest", None)
        catchUp(connection, self.index, self._seenChange)
        self._seenChange = lastChange(connection)

    def close(self) -> None:
        """
        Close the connection.
        """
        self._connection.close()
        if self._writerLock is not None:
            self._writerLock.close()


@implementer(IStore)
class SQLiteStore:
    """
    L{IStore} over a SQLite file, with one writer thread so the reactor never blocks.
    """

    def __init__(
        self, path: str, reactor: Any, synchronous: str = "full", maxBatch: int = MAX_BATCH,
        shared: bool = False,
    ) -> None:
        self._database = SQLiteDatabase(path, synchronous, shared)
        # Bumped by every user change of the processes sharing the file (am.store.sharedfile).
        self.usersVersion = SharedCounter(path + "-users.version") if shared and path != ":memory:" else None
        self._reactor = reactor
        self._pool = WriterThread(name="marvin-sqlite")
        self._pool.start()
        self._committer = GroupCommitter(
            reactor, self._pool, self._database.runBatch, maxBatch, turn=self._database.turn
        )

    def transact(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        # Batched with whatever else is queued: one commit, one fsync (am.store.groupcommit).
        return self._committer.submit(function, args, kwargs)

    def read(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        # One connection, one writer thread: a read is just another transaction.
        return self.transact(function, *args, **kwargs)

    def close(self) -> Deferred:
        """
        Let queued transactions finish, then close the connection. The
        waiting (joining the writer thread) happens in a thread of its own,
        never in the reactor; the Deferred fires in the reactor when done.
        """
        done: Deferred = Deferred()

        def shutdown() -> None:
            try:
                self._pool.stop()
                self._database.close()
            finally:
                self._reactor.callFromThread(done.callback, None)

        threading.Thread(target=shutdown, name="marvin-sqlite-close").start()
        return done
