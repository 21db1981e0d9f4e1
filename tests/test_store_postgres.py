"""
The PostgreSQL store beyond the shared contract: several controllers on one
database (threads with their own connections, two stores under the reactor,
two real marvinctld processes), migrations, the lock's timeout, reconnection,
read-only snapshots, and values PostgreSQL cannot hold.
"""

from __future__ import annotations

import secrets
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Iterator

import psycopg
import pytest
from twisted.internet import defer, reactor
from twisted.trial.unittest import TestCase
from zope.interface.verify import verifyObject

from am.core import accounts, allocation
from am.core.allocation import AllocationRequest
from am.devtools.demopki import DEMO_NODES
from am.core.errors import BadRequest, Conflict
from am.core.interfaces import IStore
from am.core.model import Node, Schedule, User
from am.core.policy import Policy
from am.core.scheduler import Scheduler
from am.store import pgschema
from am.store.pgstore import PostgresStore
from am.store.postgres import PostgresDatabase, PostgresTransaction
from am.testing import demoNodes
from tests.core_helpers import NOW, assertNoOverlap
from tests.test_e2e_ctl import START_DEADLINE, Client, start, writeConfig
from tests.test_e2e_ctl import pki  # noqa: F401 (a fixture)
from tests.storefixtures import TemporaryDatabase, withQuery

POLICY = Policy(maintenance=())
_server: list[TemporaryDatabase] = []


@pytest.fixture(scope="module", autouse=True)
def server() -> Iterator[TemporaryDatabase]:
    """
    A database for this module, dropped at its end; each test takes a schema.
    """
    database = TemporaryDatabase()
    _server.append(database)
    yield database
    _server.remove(database)
    database.drop()


def fresh(*settings: str) -> str:
    """
    The URL of a new empty schema, with extra C{-c} server settings.
    """
    name = f"s_{secrets.token_hex(4)}"
    _server[0].schema(name)
    return withQuery(_server[0].url, options=" ".join([f"-csearch_path={name}", *settings]))


def _setup(db: PostgresDatabase, nodes: int = 3) -> int:
    def fill(txn):
        for node in demoNodes(nodes, NOW):
            txn.putNode(node)
        return accounts.addUser(txn, "alice", "user", NOW, POLICY, fingerprint="a" * 40).id

    return db.run(fill)


def test_allocationsFromSeveralControllers() -> None:
    """
    50 allocations for the same node and window from 10 threads, each with its
    own connection as several controllers would have: exactly one succeeds and
    nothing overlaps, even when the server's default isolation is REPEATABLE
    READ (under which a lock taken after the snapshot would not protect).
    """
    url = fresh(r"-cdefault_transaction_isolation=repeatable\ read")
    setup = PostgresDatabase(url)
    owner = _setup(setup, nodes=1)
    assert setup.run(lambda txn: txn._db.execute("SHOW transaction_isolation").fetchone()[0]) == "read committed"
    assert setup.read(lambda txn: txn._db.execute("SHOW transaction_isolation").fetchone()[0]) == "repeatable read"
    outcomes: list[str] = []
    barrier = threading.Barrier(10)

    def worker():
        db = PostgresDatabase(url)
        barrier.wait()
        for _ in range(5):
            try:
                db.run(allocation.allocate, AllocationRequest(
                    ownerid=owner, name="race", script="img", nodecount=1, duration=600,
                    start=NOW + 1000), NOW, POLICY)
                outcomes.append("ok")
            except Conflict:
                outcomes.append("conflict")
            except Exception as e:
                outcomes.append(f"error {e!r}")
        db.close()

    threads = [threading.Thread(target=worker) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["conflict"] * 49 + ["ok"], outcomes
    windows = [(i.nodeid, i.start, i.stop) for i in setup.run(lambda txn: txn.blockingIntervals(0, 2**62))]
    assert len(windows) == 1 and setup.run(lambda txn: txn.countSchedules()) == 1
    setup.close()


def test_migrationsIdempotent() -> None:
    """
    Opening again applies nothing; each step is recorded once; data stays.
    """
    url = fresh()
    first = PostgresDatabase(url)
    assert first.schemaVersion == pgschema.LATEST
    first.run(lambda txn: txn.putNode(Node(id="1")))
    again = PostgresDatabase(url)
    assert again.schemaVersion == pgschema.LATEST
    assert again.run(lambda txn: txn.schemaVersion) == pgschema.LATEST
    rows = again.run(lambda txn: txn._db.execute("SELECT version FROM schema_version ORDER BY version").fetchall())
    assert [r[0] for r in rows] == list(range(1, pgschema.LATEST + 1))
    assert [n.id for n in again.run(lambda txn: txn.listNodes())] == ["1"]
    first.close()
    again.close()


def test_controllersStartingTogetherMigrateOnce() -> None:
    url = fresh()
    with ThreadPoolExecutor(max_workers=6) as pool:
        opened = list(pool.map(lambda _: PostgresDatabase(url), range(6)))
    assert {db.schemaVersion for db in opened} == {pgschema.LATEST}
    rows = opened[0].run(lambda txn: txn._db.execute("SELECT count(*) FROM schema_version").fetchone()[0])
    assert rows == pgschema.LATEST
    for db in opened:
        db.close()


def test_migrationStepsAndNewerSchemaRefused() -> None:
    """
    A later migration is applied on top; a failing one leaves nothing behind;
    a database newer than the code is refused, by the database and the store.
    """
    url = fresh()
    PostgresDatabase(url).close()
    with psycopg.connect(url, autocommit=True) as connection:
        broken = pgschema.MIGRATIONS + ("CREATE TABLE extra (x int); SELECT 1 / 0",)
        with pytest.raises(psycopg.errors.DivisionByZero):
            pgschema.migrate(connection, broken)
        assert pgschema.currentVersion(connection) == pgschema.LATEST
        assert connection.execute("SELECT to_regclass('extra')").fetchone()[0] is None
        newer = pgschema.MIGRATIONS + ("CREATE TABLE extra (x int)",)
        assert pgschema.migrate(connection, newer) == pgschema.LATEST + 1
        assert pgschema.migrate(connection, newer) == pgschema.LATEST + 1
    with pytest.raises(pgschema.SchemaTooNew):
        PostgresDatabase(url)
    with pytest.raises(pgschema.SchemaTooNew):
        PostgresStore(url, reactor)


def test_emptyDatabaseMigratesInOneTransaction() -> None:
    url = fresh()
    with psycopg.connect(url, autocommit=True) as connection:
        with pytest.raises(psycopg.errors.DivisionByZero):
            pgschema.migrate(connection, pgschema.MIGRATIONS + ("SELECT 1 / 0",))
        assert pgschema.currentVersion(connection) == 0
        assert connection.execute("SELECT to_regclass('schedules')").fetchone()[0] is None


def test_lockTimeout() -> None:
    """
    A writer waits for another controller's only on a node both examine (other
    writes go on meanwhile); past the lock timeout it fails on its own, and the
    store works once the other one ends.
    """
    url = fresh()
    db = PostgresDatabase(url, lockTimeout=0.2)
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        other = PostgresTransaction(connection, writing=True)
        assert other.blockingIntervals(NOW, NOW + 60, ["1"]) == []
        db.run(lambda txn: txn.putNode(Node(id="1")))
        assert db.run(lambda txn: txn.blockingIntervals(NOW, NOW + 60, ["2"])) == []
        with pytest.raises(psycopg.errors.LockNotAvailable):
            db.run(lambda txn: txn.blockingIntervals(NOW, NOW + 60, ["2", "1"]))
        with pytest.raises(psycopg.errors.LockNotAvailable):
            db.run(lambda txn: txn.blockingIntervals(NOW, NOW + 60))  # every node
        with pytest.raises(psycopg.errors.LockNotAvailable):  # too many nodes: the testbed lock
            db.run(lambda txn: txn.blockingIntervals(NOW, NOW + 60, [str(i) for i in range(2, 300)]))
        assert db.read(lambda txn: txn.blockingIntervals(NOW, NOW + 60, ["1"])) == []
        connection.execute("COMMIT")
    assert db.run(lambda txn: txn.blockingIntervals(NOW, NOW + 60)) == []
    assert [n.id for n in db.read(lambda txn: txn.listNodes())] == ["1"]
    db.close()


def test_claimsOfTwoControllersAreDisjoint() -> None:
    """
    Two controllers claiming due notifications at once never take the same
    row: the second skips what the first holds, and sees it leased after.
    """
    from am.core import outbox
    from am.core.model import Notification

    url = fresh()
    db = PostgresDatabase(url)
    _setup(db)
    db.run(lambda txn: [
        txn.addNotification(Notification(expid=1, ownerid=1, url="https://x", kind="k", body={}, created=NOW,
                                         eventid=f"e{i}", due=NOW))
        for i in range(4)
    ] + [outbox.ensureSecret(txn, 1, NOW)])
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("BEGIN ISOLATION LEVEL READ COMMITTED")
        first = [d.notification.id for d in outbox.claim(PostgresTransaction(connection, writing=True), "a", NOW, 2, 60)]
        second = [d.notification.id for d in db.run(outbox.claim, "b", NOW, 10, 60)]
        assert len(first) == 2 and len(second) == 2 and not set(first) & set(second)
        connection.execute("COMMIT")
    assert db.run(outbox.claim, "c", NOW, 10, 60) == []
    db.close()


def test_readOnlySnapshot() -> None:
    url = fresh()
    db = PostgresDatabase(url)
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        db.read(lambda txn: txn.putNode(Node(id="1")))
    db.run(lambda txn: txn.putNode(Node(id="1")))

    calls = []

    def twice(txn):
        # (Tried first without a transaction, as one statement: its second
        # makes it run again in a snapshot, where the other write happens.)
        calls.append(1)
        first = [n.id for n in txn.listNodes()]
        if len(calls) == 2:
            other = PostgresDatabase(url, migrate=False)
            other.run(lambda t: t.putNode(Node(id="2")))
            other.close()
        return first, [n.id for n in txn.listNodes()]

    assert db.read(twice) == (["1"], ["1"]) and len(calls) == 2
    assert [n.id for n in db.read(lambda txn: txn.listNodes())] == ["1", "2"]
    db.close()


def test_reconnects() -> None:
    """
    A connection killed between transactions is replaced without the caller
    noticing; one killed inside a transaction fails that transaction only.
    """
    url = fresh()
    db = PostgresDatabase(url)
    admin = psycopg.connect(url, autocommit=True)

    def kill():
        admin.execute("SELECT pg_terminate_backend(%s)", (db._connection.info.backend_pid,))

    kill()
    db.run(lambda txn: txn.putNode(Node(id="1")))

    def killedInside(txn):
        txn.putNode(Node(id="2"))
        kill()
        txn.putNode(Node(id="3"))

    with pytest.raises(psycopg.OperationalError):
        db.run(killedInside)
    assert [n.id for n in db.run(lambda txn: txn.listNodes())] == ["1"]
    admin.close()
    db.close()


def test_swallowedErrorIsNotCommitted() -> None:
    """
    A function that catches a database error and returns normally does not
    look committed: PostgreSQL would roll the whole transaction back.
    """
    db = PostgresDatabase(fresh())

    def swallow(txn):
        txn.putNode(Node(id="1"))
        try:
            txn.deleteNode("1") or txn.addSchedules([Schedule(expid=1, nodeid="1", start=0, stop=1)])
        except psycopg.IntegrityError:
            pass
        return "done"

    with pytest.raises(psycopg.errors.InFailedSqlTransaction):
        db.run(swallow)
    assert db.run(lambda txn: txn.listNodes()) == []
    db.close()


def test_unstorableValues() -> None:
    """
    SQLite stores NUL characters; PostgreSQL text cannot: a clear BadRequest,
    and the store goes on. Ids that cannot be numbers find nothing, as in SQLite.
    """
    db = PostgresDatabase(fresh())
    owner = _setup(db)
    with pytest.raises(BadRequest, match="NUL"):
        db.run(lambda txn: txn.addUser(User(name="a\x00b", role="user", fingerprint="e" * 40)))
    assert db.run(lambda txn: (txn.getUser("x"), txn.getExperiment(None), txn.getSchedule(2**70))) == (None,) * 3
    assert db.run(lambda txn: (txn.findExperiments(ownerid="x"), txn.schedulesOfExperiment("y"))) == ([], [])
    assert db.run(lambda txn: txn.getUser(str(owner))).name == "alice"
    db.close()


def test_intervalQueriesUseIndexes() -> None:
    """
    The blocking-interval queries can be answered by an index range scan on
    the start (which index the planner picks depends on the data).
    """
    db = PostgresDatabase(fresh())
    plans = []

    class Spy:
        def __init__(self, connection):
            self._connection = connection

        def execute(self, sql, args=()):
            if sql.startswith("SELECT nodeid, start, stop"):
                self._connection.execute("SET LOCAL enable_seqscan = off")
                rows = self._connection.execute("EXPLAIN " + sql, args).fetchall()
                plans.append(" ".join(r[0] for r in rows))
            return self._connection.execute(sql, args)

    db.run(lambda txn: PostgresTransaction(Spy(txn._db)).blockingIntervals(0, 100))
    db.run(lambda txn: PostgresTransaction(Spy(txn._db)).blockingIntervals(0, 100, ["1", "2"]))
    for plan in plans:
        assert "Index" in plan and "Seq Scan" not in plan, plan
    assert "Index Cond: ((start >= " in plans[0], plans[0]
    db.close()


class StoreTests(TestCase):
    """
    The asynchronous store on its threads under the real reactor.
    """

    def setUp(self) -> None:
        self.url = fresh()
        self.store = PostgresStore(self.url, reactor, threads=4)
        self.addCleanup(lambda: self.store.close() if not self.store._closed else None)

    def test_interface(self) -> None:
        verifyObject(IStore, self.store)
        self.assertEqual(self.store.schemaVersion, pgschema.LATEST)

    @defer.inlineCallbacks
    def test_concurrentSchedulerAllocations(self):
        """
        50 concurrent ASAP requests for 2 of 3 nodes through one scheduler all
        succeed and never overlap.
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
        self.assertEqual([ok for ok, _ in results], [True] * 50, [r for ok, r in results if not ok][:1])
        windows = yield self.store.read(
            lambda txn: [(i.nodeid, i.start, i.stop) for i in txn.blockingIntervals(0, 2**62)])
        self.assertEqual(len(windows), 100)
        assertNoOverlap(windows, POLICY.padding)

    @defer.inlineCallbacks
    def test_twoStoresOneWindow(self):
        """
        Two controllers' stores ask for the same node and window at once:
        one booking in all.
        """
        other = PostgresStore(self.url, reactor, threads=4)
        self.addCleanup(other.close)
        setup = PostgresDatabase(self.url)
        owner = _setup(setup, nodes=1)
        setup.close()
        request = AllocationRequest(ownerid=owner, name="x", script="img", nodecount=1, duration=600,
                                    start=NOW + 1000)
        results = yield defer.DeferredList(
            [s.transact(allocation.allocate, request, NOW, POLICY) for _ in range(10) for s in (self.store, other)],
            consumeErrors=True,
        )
        failures = [r for ok, r in results if not ok]
        self.assertEqual(len(failures), 19)
        for failure in failures:
            failure.trap(Conflict)

    @defer.inlineCallbacks
    def test_errorDoesNotPoison(self):
        def boom(txn):
            txn.putNode(Node(id="x"))
            raise ValueError("bad")

        yield self.assertFailure(self.store.transact(boom), ValueError)
        yield self.store.transact(lambda txn: txn.putNode(Node(id="y")))
        nodes = yield self.store.transact(lambda txn: [n.id for n in txn.listNodes()])
        self.assertEqual(nodes, ["y"])

    @defer.inlineCallbacks
    def test_close(self):
        """
        Closing waits for running work, closes every connection, and refuses
        later work.
        """
        def slow(txn):
            return txn._db.execute("SELECT pg_sleep(0.05), pg_backend_pid()").fetchone()[1]

        pids = yield defer.gatherResults([self.store.transact(slow) for _ in range(4)])
        databases = list(self.store._idle)
        self.assertEqual(len(databases), len(set(pids)))
        running = [self.store.transact(slow) for _ in range(4)]
        yield self.store.close()
        yield defer.gatherResults(running)
        self.assertEqual([db._connection.closed for db in databases], [True] * len(databases))
        yield self.assertFailure(self.store.transact(lambda txn: None), RuntimeError)


def test_twoControllerProcessesShareOneDatabase(pki, tmp_path) -> None:  # noqa: F811
    """
    Two real marvinctld processes on one PostgreSQL database: users made on one
    are known to the other, 30 conflicting submissions spread over both book
    each active node once, and everything is there after both are restarted.
    """
    url = fresh()
    path = writeConfig(str(tmp_path), pki, database=url)
    controllers = [start(path) for _ in range(2)]
    try:
        first, second = (Client(ports, pki) for _, ports in controllers)
        deadline = time.monotonic() + START_DEADLINE
        while len(first.call("GET", "/v1/resources", who="admin")[1]) != len(DEMO_NODES):
            assert time.monotonic() < deadline
        users = [f"{i:02x}" * 20 for i in range(3)]
        for i, fingerprint in enumerate(users):
            status, body = (first, second)[i % 2].call(
                "POST", "/v1/users", who="admin", form={"name": f"u{i}", "ssl": fingerprint, "role": "user"})
            assert status == 201, body
        duplicate = {"name": "x", "ssl": users[0], "role": "user"}
        assert second.call("POST", "/v1/users", who="admin", form=duplicate)[0] == 409
        active = sorted(n["id"] for n in DEMO_NODES if n["status"] == "active")
        begin = int(time.time()) + 7200

        def submit(i):
            return (first, second)[i % 2].call(
                "POST", "/v1/experiments", fingerprint=users[i % 3],
                body={"name": f"race{i}", "script": "docker.io/x/y", "nodecount": 1, "nodetypes": "",
                      "start": begin, "duration": 1800})

        with ThreadPoolExecutor(max_workers=30) as pool:
            codes = sorted(status for status, _ in pool.map(submit, range(30)))
        assert codes == [201] * len(active) + [409] * (30 - len(active)), codes
        rows = second.call("GET", "/v1/schedules", fingerprint=users[0])[1]
        assert sorted(str(r["nodeid"]) for r in rows) == active
    finally:
        for process, _ in controllers:
            assert process.stop() == 0, "\n".join(process.output)

    process, ports = start(path)
    try:
        client = Client(ports, pki)
        assert client.call("GET", "/v1/schedules", fingerprint=users[0])[1] == rows
        assert [u["name"] for u in client.call("GET", "/v1/users", who="admin")[1]].count("u2") == 1
        status, body = client.call(
            "POST", "/v1/experiments", fingerprint=users[1],
            body={"name": "later", "script": "docker.io/x/y", "nodecount": len(active), "nodetypes": "",
                  "start": begin + 7200, "duration": 600})
        assert status == 201, body
        assert process.stop() == 0
    finally:
        process.kill()


def _leads(process: Any) -> bool:
    """
    Whether the controller said it leads the background loops (waiting for it).
    """
    return any("controller leads the background loops" in line for line in process.output) or bool(
        process.waitFor("controller leads the background loops"))


def test_killedControllerHandsOver(pki, tmp_path) -> None:  # noqa: F811
    """
    kill -9 of the leading one of two controllers on one database in the middle
    of 30 conflicting submissions: the other answers all of its own, no node is
    booked twice, it takes over the background loops, and the killed one comes
    back on the same data.
    """
    url = fresh()
    path = writeConfig(str(tmp_path), pki, database=url)
    first, firstPorts = start(path)
    second, secondPorts = start(path)
    try:
        assert _leads(first)
        a, b = Client(firstPorts, pki), Client(secondPorts, pki)
        deadline = time.monotonic() + START_DEADLINE
        while len(b.call("GET", "/v1/resources", who="admin")[1]) != len(DEMO_NODES):
            assert time.monotonic() < deadline
        users = [f"{i:02x}" * 20 for i in range(3)]
        for i, fingerprint in enumerate(users):
            status, body = b.call("POST", "/v1/users", who="admin", form={"name": f"u{i}", "ssl": fingerprint, "role": "user"})
            assert status == 201, body
        active = sorted(n["id"] for n in DEMO_NODES if n["status"] == "active")
        begin = int(time.time()) + 7200

        def submit(i: int) -> Any:
            try:
                return (a, b)[i % 2].call(
                    "POST", "/v1/experiments", fingerprint=users[i % 3],
                    body={"name": f"race{i}", "script": "docker.io/x/y", "nodecount": 1, "nodetypes": "",
                          "start": begin, "duration": 1800})[0]
            except OSError:
                return None  # the killed controller's

        with ThreadPoolExecutor(max_workers=30) as pool:
            futures = [pool.submit(submit, i) for i in range(30)]
            first.kill()
            codes = [f.result() for f in futures]
        # The survivor answered every one of its own; with what the killed
        # one committed before dying, each active node is booked exactly once.
        assert set(codes[1::2]) <= {201, 409} and codes[1::2].count(201) >= 1, codes
        rows = b.call("GET", "/v1/schedules", fingerprint=users[0])[1]
        assert sorted(str(r["nodeid"]) for r in rows) == active
        assert codes.count(201) <= len(active), codes
        assert _leads(second)
    finally:
        first.kill()
        second.kill()
    again, ports = start(path)
    try:
        assert Client(ports, pki).call("GET", "/v1/schedules", fingerprint=users[0])[1] == rows
        assert _leads(again)
    finally:
        again.kill()
