# -*- test-case-name: tests.test_store_postgres -*-
"""
The PostgreSQL store, for operators who run several controllers on one database.

No database-wide lock (docs/postgresql.md): writers run concurrently under
READ COMMITTED and wait for each other only where they touch the same thing.
A writer that reads a node's blocking intervals first takes an advisory lock
on the node (all of a call's nodes in one statement, in key order, after a
shared lock on the testbed; the testbed exclusively for a long list); the
interval query that follows is a new statement, so it sees what the previous
holder committed. An exclusion constraint (btree_gist) proves that no two
blocking windows of a node overlap, whatever a transaction locked. A reader of
a user's quotas locks the user's row; records keep their version
compare-and-set. A transaction that loses a race (deadlock, serialisation
failure, exclusion, unique or foreign-key violation, stale version) runs again
from the start, a few times; a booking still refused by the constraint is a
L{Conflict}. Every C{BEGIN} names its isolation level (under REPEATABLE READ a
statement after a lock wait would not see the previous holder's rows); reads
through L{am.store.pgstore.PostgresStore.read} run in a READ ONLY REPEATABLE READ snapshot.

Writes nobody reads an answer of travel with a later round trip
(L{am.store.pgheld}); the slot search walks an interval index kept in step with
every controller's commits (L{am.store.pgindex}); the reads of schedules by
window are L{am.store.pgschedules}. L{am.store.pgstore} runs these
transactions off the reactor thread.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

try:
    import psycopg
except ImportError as e:  # pragma: no cover - depends on the install
    raise ImportError(f"PostgreSQL databases need psycopg 3 (the 'postgres' extra): {e}") from None
from twisted.python.failure import Failure
from zope.interface import implementer

from am.core.errors import BadRequest, Conflict, StaleWrite
from am.core.interfaces import IStoreTransaction
from am.core.model import Node, Schedule, User
from am.core.nodeview import NodeView
from am.core.states import FINAL_STATES
from am.core.intervalindex import IntervalIndex
from am.store.groupcommit import Outcome, Work
from am.store import healthcache, pgahead
from am.store.pgfast import Statements
from am.store.pgheld import Direct, HeldConnection, LostAtBegin, OneStatement, OneStatementOnly
from am.store.pglocks import MOST_NODE_LOCKS, NODE_LOCK_CLASS, NodeLocks, nodeKey  # noqa: F401 (names of this store)
from am.store.pgindex import IndexFeed
from am.store.pginserts import BookingRows
from am.store.pgquotas import QuotaLocks
from am.store.pgschedules import ScheduleReads
from am.store.pgschema import NODE_COLUMNS, currentVersion
from am.store.pgschema import migrate as migrateSchema
from am.store.sqlcommon import SQLTransaction
from am.store.viewkeeper import HeartbeatHub, ViewKeeper
from am.store.rows import nodeFromRow

_BEGIN_WRITE = "BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE"
_BEGIN_READ = "BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY"
# For a transaction whose function asks for it (C{genericPlans}: a heartbeat
# batch's, am/store/pgahead.py, whose reads ahead take arrays of the batch's
# length, which PostgreSQL would plan anew at every run: about 0.4 ms of the
# server's CPU, three times their execution).
_GENERIC = "; SET LOCAL plan_cache_mode = force_generic_plan"
# Outside the writers' explicit READ WRITE, nothing writes (a one-statement
# read runs without a transaction: L{PostgresDatabase._single}).
_READ_ONLY = "SET default_transaction_read_only = on"
_FINAL = ", ".join(f"'{s}'" for s in FINAL_STATES)
# Lost races a writing transaction is run again for: serialization failure,
# deadlock, unique, foreign key and exclusion violations.
_RETRY = frozenset({"40001", "40P01", "23505", "23503", "23P01"})
_EXCLUSION = "23P01"
#: How many times a writing transaction runs at most.
ATTEMPTS = 8


@implementer(IStoreTransaction)
class PostgresTransaction(pgahead.ReadsAhead, NodeLocks, QuotaLocks, BookingRows, ScheduleReads, SQLTransaction):
    """
    L{IStoreTransaction} over one open PostgreSQL transaction.
    """

    def __init__(
        self, connection: Any, writing: bool = False, keeper: Optional[ViewKeeper] = None,
        longest: int = 0, feed: Optional[IndexFeed] = None, statements: Optional[Statements] = None,
        health: Optional[healthcache.HealthCache] = None, begin: Optional[str] = None,
    ) -> None:
        # A writer's statements go through a HeldConnection (am.store.pgheld);
        # the shared queries through the connection's prepared statements.
        # (C{begin}: the transaction's BEGIN, left for its first statement to carry.)
        self._statements = statements
        self._db: Any
        if writing:
            self._db = HeldConnection(connection, statements, begin)
        elif isinstance(connection, OneStatement):
            self._db = connection
        else:
            self._db = Direct(connection, statements, begin)
        self._writing = writing
        self._keeper = keeper if keeper is not None else ViewKeeper(HeartbeatHub())
        #: A window length C{meta.longest_window} is known to be at least
        #: (committed: it never shrinks); what this transaction raised it to.
        self.longestKnown = self.longestNoted = longest
        # The connection's interval index (am.store.pgindex), brought up to
        # date at its first use in this transaction.
        self._feed = feed
        self._index: Optional[IntervalIndex] = None
        # The connection's health records, and their version when a statement
        # of this transaction read it with something else (no round trip of its own).
        self._health = health if health is not None else healthcache.HealthCache()
        self._healthSeen: Optional[int] = None
        self.heard: list[tuple[str, int, Optional[list]]] = []
        self._locked: set[int] = set()
        self._testbed: Optional[str] = None
        # Users whose row this (writing) transaction has locked.
        self._usersLocked: set[Any] = set()
        # A batch's first reads, made at its start (L{pgahead.ReadsAhead.readAhead}).
        self._ahead = pgahead.Ahead()

    def _sql(self, text: str) -> str:
        # The shared queries use "?"; psycopg wants "%s" (and none of ours has a literal "?").
        return text.replace("?", "%s")

    def _exec(self, sql: str, args: Any = ()) -> Any:
        text = self._sql(sql)
        if self._statements is None or ";" in text:
            return self._db.execute(text, args)
        return self._db.run(text, args)

    def _precede(self, sql: str, args: Any) -> None:
        if self._statements is not None:
            self._db.precede(sql, args)
        else:
            self._exec(sql, args)

    def _write(self, sql: str, args: Any, *tables: str) -> None:
        if self._writing:
            self._db.hold(self._sql(sql), args, tables)
        else:
            self._exec(sql, args)

    def _raiseLongest(self, longest: int) -> None:
        # The stored value only grows: nothing to write for a window no
        # longer than one this connection saw committed.
        if longest > max(self.longestKnown, self.longestNoted):
            self.longestNoted = longest
            super()._raiseLongest(longest)

    def intervalIndex(self) -> Optional[IntervalIndex]:
        """
        The connection's interval index, up to date with what was committed
        when this transaction first asked; nodes it wrote are pending.
        """
        if self._index is None and self._feed is not None:
            self._index = self._feed.current(self._exec)
            self._healthSeen = self._feed.healthVersion
        return self._index

    def updateSchedule(self, schedule: Schedule) -> None:
        # (A node it leaves is read again at the next update, through the log.)
        if self._feed is not None:
            self._feed.written([schedule.nodeid])
        super().updateSchedule(schedule)

    def commit(self) -> None:
        """
        Send the held writes and C{COMMIT} (a writer), or C{COMMIT}.
        """
        if self._writing:
            if self._health.pending:
                # Once, as the last write: every writer takes this one row last (no deadlock).
                self._db.hold(healthcache.BUMP, (), ("meta",))
        self._db.commit()

    @property
    def schemaVersion(self) -> int:
        return currentVersion(self._db)

    # nodes

    def putNode(self, node: Node) -> None:
        self._db.execute(
            f"INSERT INTO nodes ({NODE_COLUMNS}) VALUES (%s, %s, %s, %s, %s, %s, %s) "
            "ON CONFLICT (id) DO UPDATE SET hostname = EXCLUDED.hostname, status = EXCLUDED.status, "
            "heartbeat = EXCLUDED.heartbeat, interfaces = EXCLUDED.interfaces, "
            "admin_tags = EXCLUDED.admin_tags, inventory_tags = EXCLUDED.inventory_tags",
            (
                str(node.id), node.hostname, node.status, node.heartbeat, json.dumps(node.interfaces),
                json.dumps(node.adminTags), json.dumps(node.inventoryTags),
            ),
        )
        self._bumpNodes()

    def getNode(self, nodeid: str) -> Optional[Node]:
        kept = self._ahead.take("node", str(nodeid))
        if kept is not pgahead.MISSING:
            return kept
        row = self._one(f"SELECT {NODE_COLUMNS} FROM nodes WHERE id = %s", str(nodeid))
        return nodeFromRow(row) if row else None

    def listNodes(self) -> list[Node]:
        # One JSON document for all nodes: a single json.loads is several times
        # cheaper than three per row (the allocation path reads every node).
        document = self._one(
            f"SELECT json_agg(json_build_array({NODE_COLUMNS}) ORDER BY id)::text FROM nodes"
        )[0]
        return [nodeFromRow(r) for r in json.loads(document)] if document else []

    def nodeView(self) -> NodeView:
        return self._keeper.view(
            self._nodesVersion(),
            lambda: (self.listNodes(), self.listPairs()),
            lambda: self._all("SELECT id, heartbeat FROM nodes"),
        )

    def getUserToCharge(self, userid: Any) -> Optional[User]:
        # A booking reads the node view next (am.core.allocation): the index's
        # update by what changed comes in the same round trip (_nodesVersion).
        feed = self._feed
        if self._writing and self._index is None and feed is not None and feed.warm() and self._statements is not None:
            self._db.soon(*feed.changes())
        return super().getUserToCharge(userid)

    def _nodesVersion(self) -> int:
        # A writer reads the node view to search slots next (a booking, a
        # move): it brings its interval index up to date in the same
        # statement, if that reads only what changed (never the whole index
        # for a writer that may not search).
        feed = self._feed
        if self._writing and self._index is None and feed is not None and feed.warm():
            self.intervalIndex()
            if feed.nodesVersion is not None:
                return feed.nodesVersion
        nodes, self._healthSeen = self._one(
            "SELECT (SELECT value FROM meta WHERE key = 'nodes_version'), "
            "(SELECT value FROM meta WHERE key = 'health_version')"
        )
        return nodes

    def _healthVersion(self) -> Any:
        return self._healthSeen if self._healthSeen is not None else super()._healthVersion()

    def _bumpHealth(self) -> None:
        # Written at the commit (L{commit}), once.
        self._health.wrote()

    def setHeartbeat(
        self, nodeid: str, when: int, status: Optional[str], interfaces: Optional[list]
    ) -> None:
        sets, args = ["heartbeat = %s"], [when]  # type: list[str], list[Any]
        if status is not None:
            sets.append("status = %s")
            args.append(status)
        if interfaces is not None:
            sets.append("interfaces = %s")
            args.append(json.dumps(interfaces))
        self._write(f"UPDATE nodes SET {', '.join(sets)} WHERE id = %s", (*args, str(nodeid)), "nodes")
        self.heard.append((str(nodeid), when, interfaces))

    def nodeHasSchedules(self, nodeid: str) -> bool:
        return self._one("SELECT 1 FROM schedules WHERE nodeid = %s LIMIT 1", str(nodeid)) is not None

    def deleteNode(self, nodeid: str) -> None:
        if self._db.execute("DELETE FROM node_health WHERE nodeid = %s", (str(nodeid),)).rowcount:
            self._bumpHealth()
        self._db.execute("DELETE FROM nodes WHERE id = %s", (str(nodeid),))
        self._bumpNodes()

    # users and quotas

    def _userRow(self, user: User) -> tuple:
        return (
            user.name, user.role, user.fingerprint, user.urn, user.project, bool(user.invalid),
            None if user.nodeid is None else str(user.nodeid),
        )

    def addUser(self, user: User) -> int:
        user.id = self._one(
            "INSERT INTO users (name, role, fingerprint, urn, project, invalid, nodeid) "
            "VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id",
            *self._userRow(user),
        )[0]
        return user.id

    def _forUpdate(self, skipLocked: bool = False) -> str:
        # Two controllers claiming due notifications at once each take rows
        # the other has not locked (no two send one row); a settle locks its row.
        if not self._writing:
            return ""
        return " FOR UPDATE SKIP LOCKED" if skipLocked else " FOR UPDATE"


class PostgresDatabase:
    """
    One connection to one PostgreSQL database, running transactions synchronously.

    L{am.store.pgstore.PostgresStore} runs several of these on its threads; tests and tools may
    run one directly. A broken connection is replaced at the next transaction.

    @ivar schemaVersion: the schema version found or made at open.
    """

    def __init__(
        self, url: str, migrate: bool = True, lockTimeout: float = 30.0,
        hub: Optional[HeartbeatHub] = None,
    ) -> None:
        self.url = url
        self._lockTimeout = lockTimeout
        # Each connection keeps its own node view (no locking between
        # threads); the store's connections share one hub of heartbeats.
        self.keeper = ViewKeeper(hub if hub is not None else HeartbeatHub())
        self.feed = IndexFeed()
        self.health = healthcache.HealthCache()
        #: How many writing transactions lost a race and ran again.
        self.retries = 0
        # Reads known to run more than one statement (by their code).
        self._snapshots: set[Any] = set()
        self._connection = self._connect(readOnly=False)
        try:
            self.schemaVersion = migrateSchema(self._connection) if migrate else None
            self._connection.execute(_READ_ONLY)
        except BaseException:
            self._connection.close()
            raise

    def _connect(self, readOnly: bool = True) -> psycopg.Connection:
        # What this connection learnt of the database starts again.
        self._longest = 0
        self.feed.forget()
        self.health.forget()
        connection = psycopg.connect(self.url, autocommit=True, connect_timeout=10)
        self._statements = Statements(connection)
        # A controller stuck inside a transaction must not hold its locks
        # forever; one waiting too long fails its request rather than piling up.
        milliseconds = max(1, int(self._lockTimeout * 1000))
        connection.execute(f"SET lock_timeout = {milliseconds}")
        connection.execute(f"SET idle_in_transaction_session_timeout = {2 * milliseconds}")
        # Short statements only: a generic plan estimated large (the index
        # update over a long change log) would be JIT-compiled at every run.
        connection.execute("SET jit = off")
        if readOnly:
            connection.execute(_READ_ONLY)
        return connection

    def _begin(self, readOnly: bool, generic: bool = False, later: bool = False) -> Optional[str]:
        """
        Open a transaction (C{generic}: whose prepared statements use their
        generic plans). A connection found broken here (the server
        restarted, the session was killed) is replaced once: nothing is lost.

        @param later: return the C{BEGIN} unsent, for the transaction's first
            statement to carry (L{am.store.pgheld.Opening}); a connection found
            lost then raises L{LostAtBegin}.
        """
        # The isolation level is explicit, whatever the server's default: the
        # node locks rely on READ COMMITTED.
        begin = _BEGIN_READ if readOnly else _BEGIN_WRITE
        if generic:
            begin += _GENERIC
        for attempt in (1, 2):
            if self._connection.closed or self._connection.broken:
                self._reconnect()
            if later:
                return begin
            try:
                self._statements.command(begin)
                return None
            except psycopg.OperationalError:
                if attempt == 2 or not self._connection.broken:
                    self._rollback()
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def _reconnect(self) -> None:
        self._connection.close()
        self._connection = self._connect()

    def _rollback(self) -> None:
        if not (self._connection.closed or self._connection.broken):
            try:
                self._connection.execute("ROLLBACK")
            except psycopg.OperationalError:
                pass

    def _transaction(self, readOnly: bool, function: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        if readOnly:
            code = getattr(getattr(function, "__func__", function), "__code__", None)
            if code is not None and code not in self._snapshots:
                try:
                    return self._single(function, args, kwargs)
                except OneStatementOnly:
                    if len(self._snapshots) > 4096:
                        self._snapshots.clear()
                    self._snapshots.add(code)
            return self._onNew(True, function, args, kwargs)
        # Only a function marked as safe to run again is (a core command, which
        # takes plain values): another may have changed the objects it was given.
        attempts = ATTEMPTS if getattr(function, "rerunnable", False) else 1
        for attempt in range(1, attempts + 1):
            try:
                return self._onNew(False, function, args, kwargs)
            except StaleWrite:
                if attempt == attempts:
                    raise
            except psycopg.Error as e:
                if e.sqlstate not in _RETRY or attempt == attempts:
                    if e.sqlstate == _EXCLUSION:
                        raise Conflict(
                            "The window was booked meanwhile by another request; try again."
                        ) from None
                    raise
            self.retries += 1
        raise AssertionError("unreachable")  # pragma: no cover

    def _onNew(self, readOnly: bool, function: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        # Once; again on a new connection if the first round trip found this
        # one lost (nothing of the transaction reached the server).
        try:
            return self._once(readOnly, function, args, kwargs)
        except LostAtBegin:
            self._reconnect()
            return self._once(readOnly, function, args, kwargs)

    def _once(self, readOnly: bool, function: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        # The BEGIN goes with the first statement for a function that may run
        # again from its start (a read, a core command): a round trip less.
        later = readOnly or getattr(function, "rerunnable", False)
        begin = self._begin(readOnly, getattr(function, "genericPlans", False), later)
        connection = self._connection
        txn = PostgresTransaction(
            connection, not readOnly, self.keeper, self._longest, self.feed, self._statements, self.health,
            begin=begin,
        )
        try:
            result = function(txn, *args, **kwargs)
            if connection.info.transaction_status == psycopg.pq.TransactionStatus.INERROR:
                # The function swallowed a database error: COMMIT would quietly roll back.
                raise psycopg.errors.InFailedSqlTransaction("the transaction failed and was rolled back")
            txn.commit()
            self._longest = max(self._longest, txn.longestNoted)
            self.keeper.committed(txn.heard)
            return result
        except psycopg.DataError as e:
            self.keeper.forget()
            self._rollback()
            # Values PostgreSQL cannot hold (a NUL character in a text, a number
            # out of range) are the caller's error, not the server's.
            raise BadRequest(f"Value cannot be stored: {str(e).splitlines()[0]}") from None
        except BaseException:
            self.keeper.forget()
            self._rollback()
            raise
        finally:
            self.feed.ended()
            self.health.ended()

    def _single(self, function: Callable[..., Any], args: Any, kwargs: Any) -> Any:
        """
        Run a read without a transaction: its one statement is a snapshot of
        its own. A second statement raises L{OneStatementOnly} before it is
        sent, and the read runs again in a transaction (it changed nothing).
        """
        if self._connection.closed or self._connection.broken:
            self._reconnect()
        txn = PostgresTransaction(
            OneStatement(self._connection, self._statements), False, self.keeper, self._longest, self.feed,
            health=self.health,
        )
        try:
            return function(txn, *args, **kwargs)
        except psycopg.DataError as e:
            self.keeper.forget()
            raise BadRequest(f"Value cannot be stored: {str(e).splitlines()[0]}") from None
        except psycopg.OperationalError:
            if not self._connection.broken:
                raise
            # Lost between transactions: again, on a new connection.
            return self._onNew(True, function, args, kwargs)
        except OneStatementOnly:
            raise
        except BaseException:
            self.keeper.forget()
            raise
        finally:
            self.feed.ended()

    def run(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """
        Run C{function(transaction, ...)} in one writing transaction; again
        from the start when it lost a race (up to L{ATTEMPTS} times in all)
        if it is marked C{rerunnable}, as core commands are.
        """
        return self._transaction(False, function, args, kwargs)

    def read(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """
        Run C{function(transaction, ...)} in a read-only snapshot, without the
        locks: for queries, which then never wait for writers.
        """
        return self._transaction(True, function, args, kwargs)

    def runBatch(self, work: list[Work]) -> list[Outcome]:
        """
        Run several writing transactions (C{rerunnable} ones) as one: one
        C{BEGIN}, one C{COMMIT}, nothing answered before it. If any fails (or
        the commit, or the batch lost a race), all roll back and each runs
        again alone, with its own retries.

        @return: C{(True, result)} or C{(False, Failure)} for each, in order.
        """
        if len(work) > 1:
            try:
                return [(True, r) for r in self.run(pgahead.together, work, pgahead.hints(work))]
            except Exception:
                pass
        outcomes: list[Outcome] = []
        for function, args, kwargs in work:
            reads = pgahead.hints([(function, args, kwargs)])
            try:
                if reads and getattr(function, "rerunnable", False):
                    outcomes.append((True, self.run(pgahead.alone, reads, function, args, kwargs)))
                else:
                    outcomes.append((True, self.run(function, *args, **kwargs)))
            except BaseException:
                outcomes.append((False, Failure()))
        return outcomes

    def close(self) -> None:
        """
        Close the connection.
        """
        self._connection.close()

