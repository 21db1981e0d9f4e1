"""
The round trips of a booking on PostgreSQL: the owner's row lock travels with
the owner's read, and the node view's version with the interval index's
update; what they protect and what they read stays as it was.
"""

from __future__ import annotations

import threading
from typing import Any, Optional

import psycopg
import pytest

from am.core import accounts, allocation, outbox
from am.core.allocation import AllocationRequest
from am.core.errors import Conflict
from am.core.events import runCommand
from am.core.model import Experiment, Node, NodeHealth, Schedule
from am.core.policy import Policy
from am.store.postgres import PostgresDatabase, PostgresTransaction
from am.testing import demoNodes
from tests.core_helpers import NOW
from tests.test_store_postgres import POLICY, fresh
from tests.test_store_postgres import server  # noqa: F401 (a fixture)


class _Recording:
    """
    A connection that records the statements sent through it.
    """

    def __init__(self, connection: Any, sent: Optional[list[str]] = None) -> None:
        self._connection = connection
        self.sent: list[str] = [] if sent is None else sent

    def execute(self, sql: Any, args: Any = None, **kwargs: Any) -> Any:
        self.sent.append(" ".join(str(sql).split()))
        return self._connection.execute(sql, args, **kwargs)

    def command(self, sql: str) -> None:
        self.sent.append(sql)
        self._connection.command(sql)

    def pipeline(self, statements: Any, end: Optional[bytes] = None, start: Any = ()) -> Any:
        # One round trip: its commands, statements (and END) joined by " | ".
        done = self._connection.pipeline(statements, end, start)
        if done is not None:
            texts = [c.decode() for c in start] + [" ".join(sql.split()) for sql, _ in statements]
            texts += [end.decode()] if end else []
            self.sent.append(" | ".join(texts))
        return done

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def recording(db: PostgresDatabase) -> list[str]:
    """
    Record what C{db} sends from now on (its connection and its prepared
    statements): the list it records into, a round trip an entry.
    """
    spy = db._connection = _Recording(db._connection)  # type: ignore[assignment]
    db._statements = _Recording(db._statements, spy.sent)  # type: ignore[assignment]
    return spy.sent


def _filled(policy: Policy = POLICY, nodes: int = 3) -> tuple[PostgresDatabase, int]:
    db = PostgresDatabase(fresh())

    def fill(txn):
        for node in demoNodes(nodes, NOW):
            txn.putNode(node)
        return accounts.addUser(txn, "alice", "user", NOW, policy, fingerprint="a" * 40).id

    return db, db.run(fill)


def _book(db: PostgresDatabase, owner: int, start: int, policy: Policy = POLICY, **more: Any) -> Any:
    # As the scheduler runs a command (runCommand: one that may run again).
    return db.run(runCommand, allocation.allocate, (AllocationRequest(
        ownerid=owner, name="b", script="img", nodecount=1, duration=600, start=start, **more
    ), NOW, policy), {})[0]


def test_bookingStatements() -> None:
    """
    Once the connection's index is loaded and its statements prepared, a
    booking makes 4 round trips: its BEGIN travels with the owner's row lock,
    the owner's quotas (a statement of their own after the lock) and the
    interval index's update (with the node view's version); the node locks
    with the interval query (a statement after them); the experiment and its
    schedule are one statement; the held writes go with the COMMIT. No read
    of the health records (kept while unchanged).
    """
    db, owner = _filled()
    _book(db, owner, NOW + 1000)
    _book(db, owner, NOW + 3000)
    sent = recording(db)
    _book(db, owner, NOW + 5000)
    assert len(sent) == 4, sent
    first = sent[0].split(" | ")
    assert first[0].startswith("BEGIN ISOLATION LEVEL READ COMMITTED") and len(first) == 4
    assert first[1].startswith("SELECT id, name, role") and first[1].endswith("FOR NO KEY UPDATE")
    assert first[2].startswith("SELECT kind, current")
    assert "nodes_version" in first[3] and "schedule_changes" in first[3]
    locks = sent[1].split(" | ")
    assert len(locks) == 2 and "pg_advisory_xact_lock" in locks[0]
    assert locks[1].startswith("SELECT nodeid, start, stop FROM schedules WHERE nodeid = %s")
    assert sent[2].startswith("WITH e AS (INSERT INTO experiments") and "INSERT INTO schedules" in sent[2]
    assert sent[-1].endswith("COMMIT")
    assert not [s for s in sent if "SELECT 1 FROM users" in s or s.startswith("SELECT value FROM meta")]
    db.close()


def test_bookedExperimentReadOnce() -> None:
    """
    The experiment a booking stored answers the command's next read of it
    (the notification outbox's, before commit) without a round trip, as the
    database has it; a later read, or one after a change of it, goes to the
    database.
    """
    db, owner = _filled()
    request = AllocationRequest(ownerid=owner, name="b", script="img", nodecount=1, duration=600)
    for k in range(3):
        sent = recording(db)
        request.start = NOW + 1000 + 2000 * k
        db.run(runCommand, allocation.allocate, (request, NOW, POLICY), {}, (outbox.record,))
    assert len(sent) == 4 and not [s for s in sent if "FROM experiments" in s], sent

    def book(txn, rename):
        experiment = Experiment(name="e", ownerid=owner, script="img", start=NOW, stop=NOW + 10)
        start = NOW + (9000 if rename else 8000)
        txn.addBooking(experiment, [Schedule(expid=0, nodeid="2", start=start, stop=start + 10)])
        if rename:
            experiment.name = "renamed"
            txn.updateExperiment(experiment)
        return txn.getExperiment(experiment.id), txn.getExperiment(experiment.id)

    first, again = db.run(book, False)
    assert first == again == db.read(lambda txn: txn.getExperiment(first.id)) and first is not again
    renamed, _ = db.run(book, True)
    assert renamed.name == "renamed" and renamed.version == 1
    db.close()


def _genericPlan(url: str, text: str, types: str, values: str) -> str:
    # The plan PostgreSQL settles on for a prepared statement of ours (text with %s).
    numbered = text.split("%s")
    query = numbered[0] + "".join(f"${n}{piece}" for n, piece in enumerate(numbered[1:], 1))
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("SET plan_cache_mode = force_generic_plan")
        connection.execute(f"PREPARE intervals ({types}) AS {query}")
        return "\n".join(r[0] for r in connection.execute(f"EXPLAIN EXECUTE intervals ({values})"))


def test_intervalsReadPerNode() -> None:
    """
    A booking reads its nodes' intervals through the per-node index, also in
    the generic plan a prepared statement settles on: the other nodes' bookings
    in the window are not walked (they were, with "nodeid = ANY(...)"). And
    the server settles on that generic plan (planning the read at each run
    cost it more than running it): one node's read, and several nodes' read,
    its ids padded to a power of two.
    """
    db, owner = _filled(nodes=3)
    for k in range(12):
        _book(db, owner, NOW + 1000 + 1000 * k, nodes=["2"])
        _book(db, owner, NOW + 1000 + 1000 * k, nodes=["3"])
    sent = recording(db)
    _book(db, owner, NOW + 1000, nodes=["1"])
    db.read(lambda txn: txn.blockingIntervals(NOW, NOW + 20000, ["2", "1", "2"]))
    pieces = [p for s in sent for p in s.split(" | ") if p.startswith("SELECT") and "FROM schedules" in p]
    one = next(p for p in pieces if p.startswith("SELECT nodeid, start, stop FROM schedules WHERE nodeid = %s"))
    several = next(p for p in pieces if "FROM (VALUES (%s::text), (%s::text)) AS n(id), LATERAL" in p)
    window = f"{NOW + 1000}, {NOW + 13000}, {NOW + 1000}"
    plan = _genericPlan(db.url, one, "text, bigint, bigint, bigint", f"'1', {window}")
    # (Which per-node index depends on the statistics: schedules_node or the exclusion constraint's.)
    assert "Index Cond: (nodeid = $1" in plan or "Index Cond: ((nodeid = $1)" in plan, plan
    assert "schedules_blocking" not in plan and "Seq Scan on schedules" not in plan, plan
    plan = _genericPlan(db.url, several, "text, text, bigint, bigint, bigint", f"'1', NULL, {window}")
    assert "Index Cond: (nodeid = \"*VALUES*\".column1" in plan and "schedules_blocking" not in plan, plan
    assert "Seq Scan on schedules" not in plan, plan
    for _ in range(9):  # as a booking of three nodes reads them (padded to four)
        three = db.run(lambda txn: txn.blockingIntervals(NOW, NOW + 20000, ["3", "1", "2"]))
        assert [i.nodeid for i in three] == ["1"] + ["2"] * 12 + ["3"] * 12
    rows = db.read(lambda txn: txn._all(
        "SELECT statement, generic_plans, custom_plans FROM pg_prepared_statements "
        "WHERE statement LIKE %s OR statement LIKE %s ORDER BY statement",
        "SELECT nodeid, start, stop FROM schedules WHERE nodeid = $1 %",
        "SELECT s.nodeid, s.start, s.stop FROM (VALUES %",
    ))
    # Prepared at a text's second run, planned five times (custom plans to
    # compare with), then run in the generic plan: one node's read (the
    # bookings') and three nodes' (the nine reads; two nodes' ran once,
    # unprepared).
    assert sorted((generic, custom) for _text, generic, custom in rows) == [(4, 5), (20, 5)], rows
    assert [i.nodeid for i in db.read(lambda txn: txn.blockingIntervals(NOW, NOW + 20000, ["2", "1", "2"]))] == (
        ["1"] + ["2"] * 12
    )
    db.close()


def test_nodeViewVersionWithIndex() -> None:
    """
    A node another controller added meanwhile is seen by the next booking
    (its node view's version came with the index's update), and a writer
    whose index would be loaded whole reads the version alone.
    """
    db, owner = _filled(nodes=1)
    _book(db, owner, NOW + 1000)
    other = PostgresDatabase(db.url, migrate=False)
    other.run(lambda txn: txn.putNode(Node(id="9", hostname="n9", status="active", heartbeat=NOW)))
    booked = _book(db, owner, NOW + 1000, nodes=["9"])
    assert [s.nodeid for s in booked.schedules] == ["9"]
    sent = recording(other)
    assert "9" in other.run(lambda txn: txn.nodeView().byId)
    assert [s for s in sent if "schedule_changes" in s or "FROM schedules" in s] == []
    other.close()
    db.close()


def test_ownerLockedWithItsRead() -> None:
    """
    A booking waits for another writer holding its owner's row (past the lock
    timeout it fails), as when the lock was a statement of its own; a dry run
    (a read) does not.
    """
    url = fresh()
    db = PostgresDatabase(url, lockTimeout=0.2)

    def fill(txn):
        for node in demoNodes(2, NOW):
            txn.putNode(node)
        return accounts.addUser(txn, "alice", "user", NOW, POLICY, fingerprint="a" * 40).id

    owner = db.run(fill)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        holder = PostgresTransaction(connection, writing=True)
        assert holder.getUserToCharge(owner).id == owner
        with pytest.raises(psycopg.errors.LockNotAvailable):
            _book(db, owner, NOW + 1000)
        dry = AllocationRequest(ownerid=owner, name="b", script="img", nodecount=1, duration=600,
                                start=NOW + 1000, dryrun=True)
        assert db.read(allocation.allocate, dry, NOW, POLICY).schedules
        connection.execute("COMMIT")
    assert len(_book(db, owner, NOW + 1000).schedules) == 1
    db.close()


def test_quotaChargedOncePerBooking() -> None:
    """
    Bookings by one user from several connections at once, with time left
    for two: exactly two are booked and the quota is spent, never overspent.
    """
    policy = Policy(maintenance=(), defaultQuotaTime=1200)
    db, owner = _filled(policy, nodes=8)
    outcomes: list[str] = []
    barrier = threading.Barrier(6)

    def worker(i: int) -> None:
        mine = PostgresDatabase(db.url, migrate=False)
        barrier.wait()
        try:
            _book(mine, owner, NOW + 1000 + i * 1000, policy)
            outcomes.append("booked")
        except Conflict:
            outcomes.append("refused")
        except Exception as e:
            outcomes.append(f"error {e!r}")
        mine.close()

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["booked"] * 2 + ["refused"] * 4, outcomes
    assert db.read(lambda txn: txn.getQuotas(owner)["time"].current) == 0
    db.close()


def test_healthRecordsKept() -> None:
    """
    A booking reads the health records' version with the index's update: no
    statement of its own while no health write committed; after another
    controller's, one statement loads them (with their version) again.
    """
    db, owner = _filled()
    db.run(lambda txn: [txn.putHealth(NodeHealth(str(n), gaps=1, lastGap=NOW - 10)) for n in (1, 2, 3)])
    _book(db, owner, NOW + 1000)
    _book(db, owner, NOW + 3000)
    other = PostgresDatabase(db.url, migrate=False)
    other.run(lambda txn: txn.putHealth(NodeHealth("1", gaps=5, lastGap=NOW)))
    sent = recording(db)
    _book(db, owner, NOW + 5000)
    assert len(sent) == 5 and len([s for s in sent if "node_health" in s]) == 1, sent
    assert db.read(lambda txn: txn.listHealth()["1"].gaps) == 5
    sent.clear()
    _book(db, owner, NOW + 9000)
    assert len(sent) == 4 and not [s for s in sent if "node_health" in s], sent
    other.close()
    db.close()


def test_heartbeatStatements() -> None:
    """
    A heartbeat alone makes 5 round trips (in a batch the BEGIN and COMMIT
    are shared): BEGIN, its user, its node, its queued and upcoming tasks in
    one statement, and the held time with the COMMIT (unchanged interfaces
    are not written).
    """
    from am.core import commands

    db, owner = _filled()
    node = db.run(lambda txn: accounts.addUser(txn, "n1", "node", NOW, POLICY, fingerprint="1" * 40, nodeid="1"))
    booked = _book(db, owner, NOW + 1000)
    interfaces = [{"name": "op0", "iccid": "1"}]

    def beat(when):
        return db.run(commands.heartbeat, node.id, "1", when, POLICY, interfaces=interfaces)

    beat(NOW + 10)
    sent = recording(db)
    reply = beat(NOW + 20)
    assert [t.id for t in reply.tasks] == [s.id for s in booked.schedules]
    assert len(sent) == 5, sent
    assert sent[0].startswith("BEGIN") and sent[-1].endswith("COMMIT")
    assert "status = 'queued'" in sent[3] and "UNION ALL" in sent[3]
    assert "UPDATE nodes SET heartbeat" in sent[-1] and "interfaces" not in sent[-1]
    db.close()
