"""
The PostgreSQL store's held writes (L{am.store.pgheld}): writes nobody reads
an answer of travel with the commit or with the next statement on their
table; they are seen, committed and rolled back exactly as if sent at once.
"""

from __future__ import annotations

import psycopg
import pytest

from am.core.model import Experiment, JournalEntry, Node, Quota, Schedule
from am.store.postgres import PostgresDatabase
from tests.core_helpers import NOW
from tests.test_store_pgtrips import recording
from tests.test_store_postgres import _setup, fresh
from tests.test_store_postgres import server  # noqa: F401 (a fixture)


def _quota(current: int) -> Quota:
    return Quota(kind="time", current=current, resetValue=100, resetDate=NOW + 10, lastReset=NOW)


def test_heldWritesAreSeenAndCommitted() -> None:
    """
    A held quota is seen by the next statement reading quotas; a statement
    on another table does not send it; the commit carries what is left.
    """
    db = PostgresDatabase(fresh())
    owner = _setup(db)
    journal = len(db.read(lambda txn: txn.listJournal(owner)))

    def charge(txn):
        txn.putQuota(owner, _quota(7))
        txn.addJournal(JournalEntry(NOW, owner, "time", -3, 7, "booking"))
        held = list(txn._db._held)
        txn.getNode("1")
        stillHeld = list(txn._db._held)
        seen = txn.getQuotas(owner)["time"].current
        return held, stillHeld, seen, list(txn._db._held)

    held, stillHeld, seen, after = db.run(charge)
    assert len(held) == 2 and stillHeld == held
    assert seen == 7
    assert after == []
    assert db.read(lambda txn: (txn.getQuotas(owner)["time"].current, len(txn.listJournal(owner)))) == (7, journal + 1)
    db.close()


def test_heldWritesRollBack() -> None:
    """
    A transaction that fails after a held write leaves nothing of it.
    """
    db = PostgresDatabase(fresh())
    owner = _setup(db)
    before = db.read(lambda txn: txn.getQuotas(owner))

    def fails(txn):
        txn.putQuota(owner, _quota(1))
        txn.setHeartbeat("1", NOW + 99, None, None)
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        db.run(fails)
    assert db.read(lambda txn: (txn.getQuotas(owner), txn.getNode("1").heartbeat)) == (before, NOW)
    db.close()


def test_heldWriteFailingAtCommit() -> None:
    """
    A held write the database refuses fails the transaction at the commit:
    nothing of it is kept, and the store goes on.
    """
    db = PostgresDatabase(fresh())
    _setup(db)

    def orphan(txn):
        txn.putNode(Node(id="new"))
        txn.putQuota(10**9, _quota(1))  # no such user

    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        db.run(orphan)
    assert db.read(lambda txn: txn.getNode("new")) is None
    assert db.run(lambda txn: txn.getNode("1").id) == "1"
    db.close()


def test_longestWindowKnown() -> None:
    """
    C{meta.longest_window} is raised once per length this connection saw
    committed: a rolled-back raise is made again, a shorter window writes nothing.
    """
    db = PostgresDatabase(fresh())
    owner = _setup(db)
    expid = db.run(lambda txn: txn.addExperiment(Experiment(name="e", ownerid=owner, script="s", start=0, stop=1)))

    def book(txn, start, length, fail=False):
        txn.addSchedules([Schedule(expid=expid, nodeid="1", start=start, stop=start + length)])
        held = [sql for sql, _args in txn._db._held if "longest_window" in sql]
        if fail:
            raise RuntimeError("no")
        return held

    def longest(txn):
        return txn._one("SELECT value FROM meta WHERE key = 'longest_window'")[0]

    with pytest.raises(RuntimeError):
        db.run(book, NOW, 500, fail=True)
    assert db.read(longest) == 0
    assert len(db.run(book, NOW, 500)) == 1
    assert db.read(longest) == 500
    assert db.run(book, NOW + 1000, 300) == []
    assert db.run(book, NOW + 2000, 500) == []
    other = PostgresDatabase(db.url, migrate=False)
    assert len(other.run(book, NOW + 3000, 400)) == 1  # another connection learns by writing
    assert other.read(longest) == 500
    other.close()
    db.close()


def _lookup(txn):
    return txn.getNode("1").id


def _both(txn):
    try:
        first = txn.getNode("1").id
        return first, len(txn.listUsers())
    except Exception:  # (what a read might do: never swallows the retry)
        return None


def test_oneStatementReads() -> None:
    """
    A read of one statement runs without a transaction (no BEGIN, no
    COMMIT), read only all the same; a read of more runs again in a snapshot,
    and from then on in a snapshot at once, its BEGIN in its first
    statement's round trip once that statement is prepared.
    """
    db = PostgresDatabase(fresh())
    _setup(db)
    sent = recording(db)

    def words() -> list[str]:
        # Each round trip's statements by their first word.
        found = [" | ".join(part.split()[0] for part in s.split(" | ")) for s in sent]
        del sent[:]
        return found

    assert db.read(_lookup) == "1"
    assert words() == ["SELECT"]
    assert db.read(_both) == ("1", 1)
    assert words() == ["SELECT", "BEGIN", "SELECT", "SELECT", "COMMIT"]
    assert db.read(_both) == ("1", 1)
    assert words() == ["BEGIN | SELECT", "SELECT", "COMMIT"]
    with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
        db.read(lambda txn: txn.setHeartbeat("1", NOW + 1, None, None))
    assert db.run(lambda txn: txn.getNode("1").heartbeat) == NOW
    db.close()


def test_heldWritesPrepared() -> None:
    """
    Once the connection has prepared them, held writes travel as prepared
    statements with the COMMIT in one round trip (a pipeline), and are
    written as before.
    """
    from tests.test_store_pgtrips import recording

    db = PostgresDatabase(fresh())
    owner = _setup(db)
    journal = len(db.read(lambda txn: txn.listJournal(owner)))

    def charge(txn, current):
        txn.putQuota(owner, _quota(current))
        txn.addJournal(JournalEntry(NOW, owner, "time", -1, current, "booking"))
        txn.setHeartbeat("1", NOW + current, None, None)

    db.run(charge, 9)
    db.run(charge, 8)
    sent = recording(db)
    db.run(charge, 7)
    assert len(sent) == 2 and sent[0].startswith("BEGIN"), sent
    writes = sent[1].split(" | ")
    assert len(writes) == 4 and writes[-1] == "COMMIT" and "%s" in writes[0], writes
    assert db.read(lambda txn: (
        txn.getQuotas(owner)["time"].current, len(txn.listJournal(owner)), txn.getNode("1").heartbeat,
    )) == (7, journal + 3, NOW + 7)
    db.close()


def test_preparedHeldWriteFailingAtCommit() -> None:
    """
    A prepared held write the database refuses fails the transaction at the
    commit: nothing of it is kept (not the writes before it in the same
    round trip), and the connection goes on.
    """
    db = PostgresDatabase(fresh())
    owner = _setup(db)

    def charge(txn, userid, current):
        txn.setHeartbeat("1", NOW + current, None, None)
        txn.putQuota(userid, _quota(current))

    db.run(charge, owner, 9)
    db.run(charge, owner, 8)
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        db.run(charge, 10**9, 5)  # no such user
    assert db.read(lambda txn: (txn.getNode("1").heartbeat, txn.getQuotas(owner)["time"].current)) == (NOW + 8, 8)
    db.run(charge, owner, 4)
    assert db.read(lambda txn: txn.getQuotas(owner)["time"].current) == 4
    db.close()


def test_connectionLostAtAPreparedCommit() -> None:
    """
    The server's session ends before the held writes' pipeline is sent: the
    transaction fails with an OperationalError, nothing of it is kept, and
    the next transaction runs on a new connection.
    """
    db = PostgresDatabase(fresh())
    owner = _setup(db)

    def charge(txn, current, kill=False):
        txn.putQuota(owner, _quota(current))
        if kill:
            with psycopg.connect(db.url, autocommit=True) as other:
                other.execute("SELECT pg_terminate_backend(%s)", (txn._db.connection.info.backend_pid,))

    db.run(charge, 9)
    db.run(charge, 8)
    with pytest.raises(psycopg.OperationalError):
        db.run(charge, 5, kill=True)
    assert db.read(lambda txn: txn.getQuotas(owner)["time"].current) == 8
    db.run(charge, 4)
    assert db.read(lambda txn: txn.getQuotas(owner)["time"].current) == 4
    db.close()


def _rerunnable(function):
    function.rerunnable = True
    return function


def test_beginWithTheFirstStatement() -> None:
    """
    A transaction that may run again (a core command, a read) sends its
    BEGIN with its first statement; one that sends nothing sends no BEGIN
    or COMMIT; the node locks go with the statement after them.
    """
    db = PostgresDatabase(fresh())
    owner = _setup(db)
    sent = recording(db)

    @_rerunnable
    def nothing(txn):
        return txn.lockNodes(["1"])

    @_rerunnable
    def quota(txn):
        txn.lockNodes(["1"])
        return txn.getQuotas(owner)["time"].current

    for _ in range(3):
        db.run(nothing)
        assert sent == []
        db.run(quota)
        last = sent[:]
        del sent[:]
    assert len(last) == 2, last
    first = last[0].split(" | ")
    assert [p.split()[0] for p in first] == ["BEGIN", "SELECT", "SELECT", "SELECT"], last
    assert "pg_advisory_xact_lock" in first[1] and "FOR NO KEY UPDATE" in first[2] and "FROM quotas" in first[3]
    assert last[1] == "COMMIT", last
    db.close()


def test_lostBeforeBegin() -> None:
    """
    A connection found lost by a transaction's first round trip (its BEGIN in
    it) is replaced and the transaction runs again, unnoticed: nothing of it
    had reached the server. Lost later, the transaction fails as before.
    """
    url = fresh()
    db = PostgresDatabase(url)
    owner = _setup(db)
    admin = psycopg.connect(url, autocommit=True)
    runs = []

    def kill():
        admin.execute("SELECT pg_terminate_backend(%s)", (db._connection.info.backend_pid,))

    @_rerunnable
    def charge(txn, current):
        runs.append(current)
        txn.getQuotas(owner)
        txn.putQuota(owner, _quota(current))

    for value in (9, 8):
        db.run(charge, value)
    kill()
    db.run(charge, 7)
    assert runs[2:] == [7, 7]
    assert db.read(lambda txn: (txn.getNode("1").id, txn.getQuotas(owner)["time"].current)) == ("1", 7)
    kill()
    assert db.read(lambda txn: (txn.getNode("1").id, txn.getQuotas(owner)["time"].current)) == ("1", 7)

    @_rerunnable
    def killedInside(txn):
        txn.getQuotas(owner)
        kill()
        txn.putQuota(owner, _quota(1))
        txn.getNode("1")

    with pytest.raises(psycopg.OperationalError):
        db.run(killedInside)
    assert db.read(lambda txn: txn.getQuotas(owner)["time"].current) == 7
    admin.close()
    db.close()


def test_heldRowsJoined() -> None:
    """
    One-row inserts held one after another with the same text go as one
    statement of several rows, in their order; a write between them, or
    another text, starts a statement of its own.
    """
    db = PostgresDatabase(fresh())
    owner = _setup(db)
    sent = recording(db)

    @_rerunnable
    def journal(txn, base):
        txn.getQuotas(owner)
        for kind in ("time", "data", "storage"):
            txn.addJournal(JournalEntry(NOW, owner, kind, -base, base, "booking"))
        txn.putQuota(owner, _quota(base))
        txn.addJournal(JournalEntry(NOW, owner, "time", base, 2 * base, "refund"))

    for base in (1, 2, 3):
        del sent[:]
        db.run(journal, base)
    held = sent[-1].split(" | ")
    assert [h.split()[2] if h != "COMMIT" else h for h in held] == [
        "quota_journal", "quotas", "quota_journal", "COMMIT",
    ], held
    assert held[0].count("(%s, %s, %s, %s, %s, %s)") == 3 and held[2].count("(%s") == 1
    entries = db.read(lambda txn: txn.listJournal(owner))
    assert [(e.kind, e.delta, e.reason) for e in entries[-4:]] == [
        ("time", -3, "booking"), ("data", -3, "booking"), ("storage", -3, "booking"), ("time", 3, "refund"),
    ]
    db.close()


def test_readSoon() -> None:
    """
    A read expected next goes in the round trip of the statement before it
    and answers that next read; if another statement comes between, its
    answer is dropped and the read goes to the database, seeing what came
    between.
    """
    db = PostgresDatabase(fresh())
    _setup(db)
    sent = recording(db)
    beat = "SELECT heartbeat FROM nodes WHERE id = %s"
    name = "SELECT hostname FROM nodes WHERE id = %s"
    move = "UPDATE nodes SET heartbeat = heartbeat + %s WHERE id = %s"

    @_rerunnable
    def reads(txn):
        connection = txn._db
        connection.soon(beat, ("1",))
        connection.run(name, ("1",))
        first = connection.run(beat, ("1",)).fetchall()
        connection.soon(beat, ("1",))
        connection.run(name, ("1",))
        connection.run(move, (5, "1"))
        second = connection.run(beat, ("1",)).fetchall()
        return first[0][0], second[0][0]

    for k in range(3):
        del sent[:]
        assert db.run(reads) == (NOW + 5 * k, NOW + 5 * k + 5)
    assert [len(s.split(" | ")) for s in sent] == [3, 2, 1, 1, 1], sent
    assert sent[0].split(" | ")[2].startswith("SELECT heartbeat") and sent[3].startswith("SELECT heartbeat")
    db.close()
