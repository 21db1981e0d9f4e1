"""
The SQLite store: persistence across reopen, rollback, migrations, indexed
interval queries, and atomic allocation under concurrency.
"""

from __future__ import annotations

import sqlite3
import threading

import pytest
from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from am.core import allocation
from am.core.allocation import AllocationRequest
from am.core.errors import Conflict
from am.core.interfaces import IStore, IStoreTransaction
from am.core.model import Experiment, Node, Schedule, User
from am.core.policy import Policy
from am.core.scheduler import Scheduler
from am.store import schema
from am.store.sqlite import SQLiteDatabase, SQLiteStore, SQLiteTransaction
from am.testing import MemoryStore, demoNodes
from tests.core_helpers import NOW, assertNoOverlap

POLICY = Policy(maintenance=())


def _setup(db: SQLiteDatabase, nodes: int = 3) -> int:
    from am.core import accounts

    def fill(txn):
        for node in demoNodes(nodes, NOW):
            txn.putNode(node)
        return accounts.addUser(txn, "alice", "user", NOW, POLICY, fingerprint="a" * 40).id

    return db.run(fill)


def test_interfaces(tmp_path) -> None:
    """
    Both stores and the transaction provide their interfaces.
    """
    store = MemoryStore()
    verifyObject(IStore, store)
    verifyObject(IStoreTransaction, store.run(lambda txn: txn))
    db = SQLiteStore(str(tmp_path / "m.db"), reactor)
    verifyObject(IStore, db)
    db.close()


def test_reopenRestoresEverything(tmp_path) -> None:
    """
    Closing and reopening the file gives back every row, WAL included.
    """
    path = str(tmp_path / "marvin.db")
    db = SQLiteDatabase(path)
    owner = _setup(db)
    booked = db.run(allocation.allocate, AllocationRequest(
        ownerid=owner, name="e", script="img", nodecount=2, duration=600, start=NOW + 100,
        options={"_secret": "x", "k": 1}), NOW, POLICY)
    db.close()
    again = SQLiteDatabase(path)
    schedules = again.run(lambda txn: txn.schedulesOfExperiment(booked.experiment.id))
    assert [(s.nodeid, s.start, s.stop, s.status) for s in schedules] == [
        (s.nodeid, s.start, s.stop, s.status) for s in booked.schedules
    ]
    assert schedules[0].deploymentOptions == {"_secret": "x", "k": 1, "script": "img"}
    assert again.run(lambda txn: txn.getQuotas(owner))["time"].current == 8640000 - 1200
    assert again.run(lambda txn: txn.getExperiment(booked.experiment.id)).name == "e"
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_rollbackLeavesConnectionUsable(tmp_path) -> None:
    """
    An error inside a transaction undoes all of it and the next one works
    (the legacy connection stayed locked after one failed write).
    """
    db = SQLiteDatabase(str(tmp_path / "m.db"))
    _setup(db)

    def half(txn):
        txn.putNode(Node(id="new"))
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        db.run(half)
    assert db.run(lambda txn: txn.getNode("new")) is None
    db.run(lambda txn: txn.putNode(Node(id="new")))
    assert db.run(lambda txn: txn.getNode("new")).id == "new"
    other = SQLiteDatabase(db.path)
    other.run(lambda txn: txn.putNode(Node(id="other")))


def test_schemaVersion(tmp_path) -> None:
    """
    New files are migrated to the latest version; newer files are refused.
    """
    path = str(tmp_path / "m.db")
    assert SQLiteDatabase(path).schemaVersion == schema.LATEST
    connection = sqlite3.connect(path)
    connection.execute(f"PRAGMA user_version = {schema.LATEST + 1}")
    connection.close()
    with pytest.raises(schema.SchemaTooNew):
        SQLiteDatabase(path)


def test_intervalQueriesUseIndexes() -> None:
    """
    The blocking-interval and per-node queries are index range scans.
    """
    store = MemoryStore()
    connection = store.database._connection
    plans = []
    original = connection.execute

    class Spy:
        def execute(self, sql, args=()):
            if sql.lstrip().startswith("SELECT nodeid, start, stop"):
                plans.append(" ".join(r[-1] for r in original("EXPLAIN QUERY PLAN " + sql, args)))
            return original(sql, args)

        def executemany(self, *a):
            return connection.executemany(*a)

    txn = SQLiteTransaction(Spy())
    txn.blockingIntervals(0, 100)
    txn.blockingIntervals(0, 100, ["1", "2"])
    assert "USING INDEX schedules_blocking" in plans[0], plans[0]
    assert "USING INDEX schedules_node" in plans[1], plans[1]


def test_longestWindowBoundsQueries() -> None:
    """
    A long window that started well before the queried span is still found: the
    index range reaches back by the longest window ever stored, and no further.
    """
    store = MemoryStore()

    def fill(txn):
        for node in demoNodes(2):
            txn.putNode(node)
        owner = txn.addUser(User(name="o", role="user", fingerprint="0" * 40))
        expid = txn.addExperiment(Experiment(name="e", ownerid=owner, script="x"))
        txn.addSchedules([
            Schedule(expid=expid, nodeid="1", start=0, stop=90000),
            Schedule(expid=expid, nodeid="2", start=80000, stop=80600),
            Schedule(expid=expid, nodeid="2", start=90000, stop=90600, shared=True),
        ])

    store.run(fill)
    found = store.run(lambda txn: txn.blockingIntervals(85000, 85100))
    assert [(i.nodeid, i.start, i.stop) for i in found] == [("1", 0, 90000)]
    found = store.run(lambda txn: txn.blockingIntervals(80500, 90100, ["2"]))
    assert [(i.nodeid, i.start) for i in found] == [("2", 80000)]
    assert [s.start for s in store.run(lambda txn: txn.schedulesOfNode("2", 80500, 95000))] == [80000, 90000]


def test_concurrentAllocationsAcrossConnections(tmp_path) -> None:
    """
    50 allocations for the same node and window from 10 threads, each with its own
    connection (as several processes would): exactly one succeeds, no overlap.
    """
    path = str(tmp_path / "race.db")
    owner = _setup(SQLiteDatabase(path), nodes=1)
    outcomes: list[str] = []
    barrier = threading.Barrier(10)

    def worker():
        db = SQLiteDatabase(path)
        barrier.wait()
        for _ in range(5):
            try:
                db.run(allocation.allocate, AllocationRequest(
                    ownerid=owner, name="race", script="img", nodecount=1, duration=600,
                    start=NOW + 1000), NOW, POLICY)
                outcomes.append("ok")
            except Conflict:
                outcomes.append("conflict")
        db.close()

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes).count("ok") == 1
    assert len(outcomes) == 50
    db = SQLiteDatabase(path)
    windows = [(i.nodeid, i.start, i.stop) for i in db.run(lambda txn: txn.blockingIntervals(0, 2**62))]
    assert len(windows) == 1
    assertNoOverlap(windows, POLICY.padding)


class ThreadedStoreTests(TestCase):
    """
    The real store with its writer thread, under the real reactor.
    """

    def setUp(self) -> None:
        self.store = SQLiteStore(self.mktemp(), reactor)
        self.addCleanup(self.store.close)

    @defer.inlineCallbacks
    def test_concurrentSchedulerAllocations(self):
        """
        50 concurrent ASAP requests for 2 of 3 nodes through one scheduler all
        succeed, serialised by the writer thread, and never overlap.
        """
        class WallClock:
            def seconds(self):
                return NOW

        scheduler = Scheduler(self.store, WallClock(), POLICY)
        yield self.store.transact(lambda txn: [txn.putNode(n) for n in demoNodes(3, NOW)])
        alice = yield scheduler.addUser(name="alice", role="user", fingerprint="a" * 40)
        results = yield defer.DeferredList(
            [scheduler.allocate(AllocationRequest(ownerid=alice.id, name="x", script="img",
                                                  nodecount=2, duration=600)) for _ in range(50)],
            consumeErrors=True,
        )
        self.assertTrue(all(ok for ok, _ in results))
        windows = yield self.store.transact(lambda txn: [(i.nodeid, i.start, i.stop) for i in txn.blockingIntervals(0, 2**62)])
        self.assertEqual(len(windows), 100)
        assertNoOverlap(windows, POLICY.padding)

    @defer.inlineCallbacks
    def test_errorDoesNotPoison(self):
        """
        A failing transaction reports its error and the next one succeeds.
        """
        def boom(txn):
            txn.putNode(Node(id="x"))
            raise ValueError("bad")

        yield self.assertFailure(self.store.transact(boom), ValueError)
        yield self.store.transact(lambda txn: txn.putNode(Node(id="y")))
        nodes = yield self.store.transact(lambda txn: [n.id for n in txn.listNodes()])
        self.assertEqual(nodes, ["y"])


    @defer.inlineCallbacks
    def test_closeDoesNotBlockTheReactor(self):
        """
        C{close} returns at once while a transaction still runs on the writer
        thread, and fires once that transaction is over and the file closed.
        """
        store = SQLiteStore(self.mktemp(), reactor)
        running, release = threading.Event(), threading.Event()

        def slow(txn):
            running.set()
            release.wait(30)
            return "done"

        first = store.transact(slow)
        self.assertTrue(running.wait(30))
        closed = store.close()
        self.assertFalse(closed.called)
        release.set()
        self.assertEqual((yield first), "done")
        yield closed
        self.assertRaises(Exception, store._database.run, lambda txn: None)


def test_tagCacheFollowsOtherWritersAndRollback(tmp_path) -> None:
    """
    Cached node tags are refreshed when another connection changes a node, and a
    rolled-back change never lingers in the cache.
    """
    path = str(tmp_path / "m.db")
    a, b = SQLiteDatabase(path), SQLiteDatabase(path)
    a.run(lambda txn: txn.putNode(Node(id="1", inventoryTags={"type": "testing"})))
    assert a.run(lambda txn: txn.getNode("1")).tags == {"type": "testing"}
    b.run(lambda txn: txn.putNode(Node(id="1", inventoryTags={"type": "deployed"})))
    assert a.run(lambda txn: txn.getNode("1")).tags == {"type": "deployed"}

    def rolledBack(txn):
        txn.putNode(Node(id="1", inventoryTags={"type": "ghost"}))
        assert txn.getNode("1").tags == {"type": "ghost"}
        raise ValueError()

    with pytest.raises(ValueError):
        a.run(rolledBack)
    b.run(lambda txn: txn.putNode(Node(id="1", inventoryTags={"type": "retired"})))
    assert a.run(lambda txn: txn.getNode("1")).tags == {"type": "retired"}
