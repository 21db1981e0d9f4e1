"""
Group commit (am/store/groupcommit.py, SQLiteDatabase.runBatch): transactions
queued together share one commit; nothing is acknowledged before it; one that
fails loses only itself; a failed commit fails them all.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from typing import Any, Callable, Iterator

from twisted.internet import defer, reactor
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase, TestCase

from am.core.model import Node
from am.store.groupcommit import GroupCommitter, WriterThread
from am.store.sqlite import SQLiteDatabase, SQLiteStore


class FakePool:
    """
    A writer thread run by hand.
    """

    def __init__(self) -> None:
        self.jobs: list[Callable[[], Any]] = []

    def callInThread(self, func: Callable[..., Any], *args: Any, **kw: Any) -> None:
        self.jobs.append(lambda: func(*args, **kw))

    def runOne(self) -> None:
        self.jobs.pop(0)()


class FakeReactor:
    """
    C{callFromThread} calls queued until the test runs them.
    """

    def __init__(self) -> None:
        self.calls: list[Callable[[], Any]] = []

    def callFromThread(self, func: Callable[..., Any], *args: Any) -> None:
        self.calls.append(lambda: func(*args))

    def runAll(self) -> None:
        while self.calls:
            self.calls.pop(0)()


class WriterThreadTests(SynchronousTestCase):
    """
    The store's writer thread: one thread, work in order, errors logged.
    """

    def test_inOrderOnItsThread(self) -> None:
        """
        Callables run in the order handed over, with their arguments, on one
        thread that is not the caller's; C{stop} runs what was queued first.
        """
        writer = WriterThread(name="test-writer")
        writer.start()
        ran: list[tuple[int, str, Any]] = []
        for n in range(50):
            writer.callInThread(lambda n, k: ran.append((n, threading.current_thread().name, k)), n, k=n * 2)
        writer.stop()
        self.assertEqual([(n, k) for n, _, k in ran], [(n, n * 2) for n in range(50)])
        self.assertEqual({name for _, name, _ in ran}, {"test-writer"})
        self.assertNotIn("test-writer", [t.name for t in threading.enumerate()])
        writer.stop()  # a second stop is harmless

    def test_severalThreads(self) -> None:
        """
        With several threads (PostgreSQL's connections), callables run side
        by side, each once, on the writer's own named threads.
        """
        writer = WriterThread(name="test-pg", threads=3)
        writer.start()
        together = threading.Barrier(3, timeout=30)
        ran: list[str] = []
        for _ in range(3):
            writer.callInThread(lambda: (together.wait(), ran.append(threading.current_thread().name)))
        writer.stop()
        self.assertEqual(sorted(ran), ["test-pg-0", "test-pg-1", "test-pg-2"])
        self.assertFalse([t for t in threading.enumerate() if t.name.startswith("test-pg")])

    def test_errorsAreLoggedAndWorkGoesOn(self) -> None:
        """
        A callable that raises is logged; the next one still runs.
        """
        logged: list[dict] = []
        writer = WriterThread(name="test-writer")
        writer.log = Logger(observer=logged.append)
        writer.start()
        ran: list[int] = []
        writer.callInThread(lambda: 1 / 0)
        writer.callInThread(ran.append, 1)
        writer.stop()
        self.assertEqual(ran, [1])
        [event] = logged
        self.assertTrue(event["log_failure"].check(ZeroDivisionError))
        self.assertEqual(event["name"], "test-writer")


class GroupCommitterTests(SynchronousTestCase):
    """
    The queue in front of the writer thread, with a fake thread and reactor.
    """

    def setUp(self) -> None:
        self.pool, self.reactor = FakePool(), FakeReactor()
        self.batches: list[list[Any]] = []
        self.committed: list[Any] = []

    def runBatch(self, work: list) -> list:
        self.batches.append([args[0] for _, args, _ in work])
        outcomes = []
        for function, args, kwargs in work:
            try:
                outcomes.append((True, function(None, *args, **kwargs)))
            except Exception:
                outcomes.append((False, Failure()))
        self.committed.extend(self.batches[-1])
        return outcomes

    def committer(self, maxBatch: int = 64) -> GroupCommitter:
        return GroupCommitter(self.reactor, self.pool, self.runBatch, maxBatch)

    def test_oneBatchFiresAfterItRan(self) -> None:
        """
        Transactions queued together run in one batch on one writer job, and
        their Deferreds fire only on the reactor, after the batch, in order.
        """
        committer = self.committer()
        fired: list[Any] = []
        for n in range(3):
            committer.submit(lambda txn, n: n * 10, (n,), {}).addCallback(
                lambda r: fired.append((r, list(self.committed)))
            )
        self.assertEqual(len(self.pool.jobs), 1)
        self.pool.runOne()
        self.assertEqual(self.batches, [[0, 1, 2]])
        self.assertEqual(fired, [])
        self.reactor.runAll()
        self.assertEqual(fired, [(0, [0, 1, 2]), (10, [0, 1, 2]), (20, [0, 1, 2])])

    def test_batchFormedOnceTheTurnIsHad(self) -> None:
        """
        What queues while the drainer waits for its turn (another process's
        writer holding the file) joins the batch it then runs.
        """
        turns: list[str] = []

        @contextlib.contextmanager
        def turn() -> Iterator[None]:
            # Two more arrive while the turn is awaited.
            committer.submit(lambda txn, n: n, (1,), {})
            committer.submit(lambda txn, n: n, (2,), {})
            turns.append("in")
            yield
            turns.append("out")

        committer = GroupCommitter(self.reactor, self.pool, self.runBatch, 64, turn=turn)
        committer.submit(lambda txn, n: n, (0,), {})
        self.pool.runOne()
        self.assertEqual(self.batches, [[0, 1, 2]])
        self.assertEqual(turns, ["in", "out"])
        self.assertEqual(self.pool.jobs, [])

    def test_noTurnFailsTheQueued(self) -> None:
        """
        A turn that cannot be had fails what is queued (nobody hangs), and
        the next submission drains again.
        """
        broken = [True]

        @contextlib.contextmanager
        def turn() -> Iterator[None]:
            if broken[0]:
                raise OSError("no lock")
            yield

        committer = GroupCommitter(self.reactor, self.pool, self.runBatch, 64, turn=turn)
        failed = committer.submit(lambda txn: 1, (), {})
        self.pool.runOne()
        self.reactor.runAll()
        self.failureResultOf(failed, OSError)
        self.assertEqual(self.batches, [])
        broken[0] = False
        ok = committer.submit(lambda txn, n: n, (7,), {})
        self.pool.runOne()
        self.reactor.runAll()
        self.assertEqual(self.successResultOf(ok), 7)

    def test_severalDrainers(self) -> None:
        """
        With C{drainers=2} (PostgreSQL, a connection per thread) a second
        thread starts while the first is busy, no third; each takes what is
        queued when it starts, and a drainer that finds nothing ends.
        """
        committer = GroupCommitter(self.reactor, self.pool, self.runBatch, 64, drainers=2)
        for n in range(3):
            committer.submit(lambda txn, n: n, (n,), {})
        self.assertEqual(len(self.pool.jobs), 2)
        self.pool.runOne()
        self.pool.runOne()
        self.assertEqual(self.batches, [[0, 1, 2]])
        committer.submit(lambda txn, n: n, (3,), {})
        self.assertEqual(len(self.pool.jobs), 1)
        self.pool.runOne()
        self.assertEqual(self.batches, [[0, 1, 2], [3]])

    def test_failureStaysItsOwn(self) -> None:
        """
        A transaction that raises fails its own Deferred only.
        """
        committer = self.committer()

        def work(txn: Any, n: int) -> int:
            if n == 1:
                raise ValueError("bad")
            return n

        ds = [committer.submit(work, (n,), {}) for n in range(3)]
        self.pool.runOne()
        self.reactor.runAll()
        self.assertEqual(self.successResultOf(ds[0]), 0)
        self.failureResultOf(ds[1], ValueError)
        self.assertEqual(self.successResultOf(ds[2]), 2)

    def test_bounded(self) -> None:
        """
        A batch carries at most C{maxBatch} transactions; one writer job
        drains the queue batch after batch, including work queued meanwhile.
        """
        committer = self.committer(maxBatch=2)
        ds = [committer.submit(lambda txn, n: n, (n,), {}) for n in range(3)]
        original = self.runBatch

        def runBatch(work: list) -> list:
            if len(self.batches) == 0:
                ds.append(committer.submit(lambda txn, n: n, (3,), {}))
            return original(work)

        committer._runBatch = runBatch
        self.pool.runOne()
        self.assertEqual(self.pool.jobs, [])
        self.assertEqual(self.batches, [[0, 1], [2, 3]])
        self.reactor.runAll()
        self.assertEqual([self.successResultOf(d) for d in ds], [0, 1, 2, 3])
        self.assertEqual((committer.batches, committer.transactions), (2, 4))

    def test_brokenStoreFailsAllAndRecovers(self) -> None:
        """
        Should C{runBatch} itself raise, every Deferred of the batch fails and
        the next submission is served by a new writer job.
        """
        committer = self.committer()

        def broken(work: list) -> list:
            raise RuntimeError("store bug")

        committer._runBatch = broken
        ds = [committer.submit(lambda txn: 1, (), {}) for _ in range(2)]
        self.pool.runOne()
        self.reactor.runAll()
        for d in ds:
            self.failureResultOf(d, RuntimeError)
        committer._runBatch = self.runBatch
        d = committer.submit(lambda txn, n: n, (7,), {})
        self.assertEqual(len(self.pool.jobs), 1)
        self.pool.runOne()
        self.reactor.runAll()
        self.assertEqual(self.successResultOf(d), 7)


class FailingCommit:
    """
    A connection whose next C{COMMIT} fails (a disk error, say).
    """

    def __init__(self, connection: sqlite3.Connection) -> None:
        self._connection = connection

    def execute(self, sql: str, *args: Any) -> Any:
        if sql == "COMMIT":
            raise sqlite3.OperationalError("disk I/O error (test)")
        return self._connection.execute(sql, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._connection, name)


def _node(nodeid: str, fail: bool = False) -> Callable[[Any], str]:
    def put(txn: Any) -> str:
        txn.putNode(Node(id=nodeid))
        if fail:
            raise ValueError(nodeid)
        return nodeid

    return put


def _stored(path: str) -> list[str]:
    with sqlite3.connect(path) as other:
        return [r[0] for r in other.execute("SELECT id FROM nodes ORDER BY id")]


def test_batchSavepoints(tmp_path) -> None:
    """
    In one batch, a transaction that raises is rolled back to its savepoint:
    what it wrote is gone, the others' writes are committed.
    """
    path = str(tmp_path / "m.db")
    db = SQLiteDatabase(path)
    outcomes = db.runBatch([(_node("a"), (), {}), (_node("b", fail=True), (), {}), (_node("c"), (), {})])
    assert [ok for ok, _ in outcomes] == [True, False, True]
    assert outcomes[0][1] == "a" and outcomes[1][1].check(ValueError)
    assert _stored(path) == ["a", "c"]
    db.close()


def test_failedCommitFailsAll(tmp_path) -> None:
    """
    When the one commit fails, every transaction of the batch fails (with
    the commit's error, or its own), nothing is stored, the heartbeats
    they recorded leave the node view and the connection stays usable.
    """
    path = str(tmp_path / "m.db")
    db = SQLiteDatabase(path)
    db.run(lambda txn: [txn.putNode(Node(id=n, heartbeat=1)) for n in ("1", "2")])
    assert {n.id: n.heartbeat for n in db.run(lambda txn: txn.nodeView().nodes())} == {"1": 1, "2": 1}
    real = db._connection
    db._connection = FailingCommit(real)  # type: ignore[assignment]
    outcomes = db.runBatch([
        (lambda txn: txn.setHeartbeat("1", 50, None, None), (), {}),
        (lambda txn: {n.id: n.heartbeat for n in txn.nodeView().nodes()}, (), {}),
        (_node("x", fail=True), (), {}),
        (_node("y"), (), {}),
    ])
    assert not any(ok for ok, _ in outcomes)
    assert [f.check(sqlite3.OperationalError, ValueError) for _, f in outcomes] == [
        sqlite3.OperationalError, sqlite3.OperationalError, ValueError, sqlite3.OperationalError,
    ]
    db._connection = real
    assert not real.in_transaction
    assert _stored(path) == ["1", "2"]
    assert {n.id: n.heartbeat for n in db.run(lambda txn: txn.nodeView().nodes())} == {"1": 1, "2": 1}
    db.close()


def test_lostTransaction(tmp_path) -> None:
    """
    When SQLite abandons the transaction under a batch (seen here as a
    transaction that ends it), what ran in it fails and the rest of the
    batch runs in a new transaction.
    """
    path = str(tmp_path / "m.db")
    db = SQLiteDatabase(path)

    def abandon(txn: Any) -> None:
        txn._db.execute("ROLLBACK")
        raise sqlite3.OperationalError("database disk image is malformed (test)")

    outcomes = db.runBatch([(_node("a"), (), {}), (abandon, (), {}), (_node("c"), (), {})])
    assert [ok for ok, _ in outcomes] == [False, False, True]
    assert outcomes[0][1].check(sqlite3.OperationalError)
    assert _stored(path) == ["c"]
    db.close()


def test_runRaisesTheTransactionsError(tmp_path) -> None:
    """
    C{run} (a batch of one) raises what the function raised, and rolls it back.
    """
    db = SQLiteDatabase(str(tmp_path / "m.db"))
    try:
        try:
            db.run(_node("a", fail=True))
        except ValueError as e:
            assert str(e) == "a"
        else:
            raise AssertionError("no error")
        assert db.run(lambda txn: txn.listNodes()) == []
    finally:
        db.close()


class ThreadedGroupCommitTests(TestCase):
    """
    The real store, writer thread and reactor.
    """

    def setUp(self) -> None:
        self.path = self.mktemp()
        self.store = SQLiteStore(self.path, reactor)
        self.addCleanup(self.store.close)

    @defer.inlineCallbacks
    def test_acknowledgedOnlyOnceCommitted(self):
        """
        Transactions queued behind a running one commit together, in one
        batch, and each Deferred fires only when another connection already
        sees what it wrote.
        """
        running, release = threading.Event(), threading.Event()

        def slow(txn: Any) -> None:
            running.set()
            release.wait(30)

        first = self.store.transact(slow)
        self.assertTrue(running.wait(30))
        seen: list[tuple[str, list[str]]] = []
        ds = []
        for n in "abcdef":
            d = self.store.transact(_node(n))
            d.addCallback(lambda nodeid: seen.append((nodeid, _stored(self.path))))
            ds.append(d)
        release.set()
        yield first
        yield defer.gatherResults(ds)
        self.assertEqual(seen, [(n, list("abcdef")) for n in "abcdef"])
        self.assertEqual(self.store._committer.batches, 2)
