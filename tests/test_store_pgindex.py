"""
The interval index on PostgreSQL (L{am.store.pgindex}): each connection's
index follows every other connection's commits through the C{schedule_changes}
log, including a writer that was still running when the index was brought up
to date, cancellations, and its own rolled-back writes; an index left alone
too long is loaded whole.
"""

from __future__ import annotations

import psycopg
import pytest

from am.core import allocation
from am.core.allocation import AllocationRequest
from am.core.model import Experiment, Schedule
from am.store import pgindex
from am.store.postgres import PostgresDatabase
from tests.core_helpers import NOW
from tests.test_store_postgres import POLICY, _setup, fresh
from tests.test_store_postgres import server  # noqa: F401 (a fixture)

FAR = 2**62


def windows(db: PostgresDatabase, nodeid: str, read: bool = True) -> list[tuple[int, int]]:
    """
    The windows the connection's index holds for C{nodeid}, brought up to date.
    """
    run = db.read if read else db.run
    return run(lambda txn: txn.intervalIndex().windows(nodeid, 0, FAR))


def twoControllers(nodes: int = 2) -> tuple[PostgresDatabase, PostgresDatabase, int, int]:
    first = PostgresDatabase(fresh())
    owner = _setup(first, nodes)
    second = PostgresDatabase(first.url, migrate=False)
    expid = first.run(lambda txn: txn.addExperiment(Experiment(name="e", ownerid=owner, script="s", start=0, stop=1)))
    return first, second, owner, expid


def test_followsAnotherConnection() -> None:
    """
    A booking and its cancellation by another connection are in the index
    at the next transaction; a status change that moves no window is not logged.
    """
    first, second, _, expid = twoControllers()
    assert windows(first, "1") == []
    [schedid] = second.run(lambda txn: txn.addSchedules([Schedule(expid=expid, nodeid="1", start=100, stop=200)]))
    assert windows(first, "1") == [(100, 200)]

    def setStatus(txn, status):
        schedule = txn.getSchedule(schedid)
        schedule.status = status
        txn.updateSchedule(schedule)

    logged = first.read(lambda txn: txn._one("SELECT count(*) FROM schedule_changes")[0])
    second.run(setStatus, "requested")
    assert first.read(lambda txn: txn._one("SELECT count(*) FROM schedule_changes")[0]) == logged
    second.run(setStatus, "canceled")
    assert windows(first, "1") == [] and windows(first, "1", read=False) == []
    first.close()
    second.close()


def test_writerRunningAtUpdateIsCaught() -> None:
    """
    A writer that had its xid, but had not committed, when the index was
    brought up to date is read at the next update, whatever the order of commits.
    """
    first, second, _, expid = twoControllers()
    windows(first, "1")
    slow = psycopg.connect(first.url, autocommit=True)
    slow.execute("BEGIN")
    slow.execute("INSERT INTO schedules (expid, nodeid, start, stop, status, blocking) "
                 "VALUES (%s, '1', 10, 20, 'defined', true)", (expid,))
    second.run(lambda txn: txn.addSchedules([Schedule(expid=expid, nodeid="2", start=30, stop=40)]))
    assert (windows(first, "1"), windows(first, "2")) == ([], [(30, 40)])
    slow.execute("COMMIT")
    slow.close()
    assert windows(first, "1") == [(10, 20)]
    first.close()
    second.close()


def test_ownWrites() -> None:
    """
    Nodes a transaction writes are pending in it (asked of the database); a
    rolled-back write never reaches the index, a committed one does.
    """
    db, _, _, expid = twoControllers()

    def book(txn, nodeid, fail):
        txn.intervalIndex()
        txn.addSchedules([Schedule(expid=expid, nodeid=nodeid, start=NOW, stop=NOW + 60)])
        pending = set(txn.intervalIndex().pending)
        if fail:
            raise RuntimeError("no")
        return pending

    with pytest.raises(RuntimeError):
        db.run(book, "1", True)
    assert windows(db, "1") == []
    assert db.run(book, "2", False) == {"2"}
    assert windows(db, "2") == [(NOW, NOW + 60)]
    db.close()


def test_staleIndexLoadedWhole() -> None:
    """
    The leader prunes the log; an index not brought up to date for
    L{pgindex.STALE} seconds is loaded whole, so it misses nothing pruned.
    """
    first, second, _, expid = twoControllers()
    seconds = [0.0]
    first.feed.clock = lambda: seconds[0]
    windows(first, "1")
    second.run(lambda txn: txn.addSchedules([Schedule(expid=expid, nodeid="1", start=5, stop=9)]))
    with psycopg.connect(first.url, autocommit=True) as leader:
        assert pgindex.prune(leader, keep=0) >= 1
    assert windows(first, "1") == []  # (a hint: the booking path verifies)
    seconds[0] += pgindex.STALE + 1
    assert windows(first, "1") == [(5, 9)]
    first.close()
    second.close()


def test_bookingFindsNodeFreedElsewhere() -> None:
    """
    An any-node booking through the index takes the node another connection
    just freed, at once, rather than the next free window.
    """
    first, second, owner, expid = twoControllers(nodes=1)

    def book(db):
        return db.run(allocation.allocate, AllocationRequest(
            ownerid=owner, name="b", script="img", nodecount=1, duration=600, start=NOW + 1000,
        ), NOW, POLICY)

    booked = book(first)
    [schedule] = booked.schedules
    windows(second, "1")

    def cancel(txn):
        s = txn.getSchedule(schedule.id)
        s.status = "canceled"
        txn.updateSchedule(s)

    first.run(cancel)
    again = book(second)
    assert [(s.nodeid, s.start) for s in again.schedules] == [("1", NOW + 1000)]
    first.close()
    second.close()


def test_updateReadsOnlyChangedNodes() -> None:
    """
    The update's plan, generic as a prepared statement's is after a few runs,
    looks each changed node's windows up by node: it never reads every
    schedule (a hash join over all of them once cost a booking about 1 ms of
    server time at a few thousand schedules).
    """
    db, _, _, expid = twoControllers(nodes=50)
    db.run(lambda txn: txn.addSchedules([
        Schedule(expid=expid, nodeid=str(1 + n % 50), start=n * 100, stop=n * 100 + 50) for n in range(1000)
    ]))
    text = pgindex._CHANGES.replace("%s", "$1", 1).replace("%s", "$2", 1)
    with psycopg.connect(db.url, autocommit=True) as connection:
        connection.execute("ANALYZE schedules")
        connection.execute("SET plan_cache_mode = force_generic_plan")
        connection.execute(f"PREPARE changes(text, text[]) AS {text}")
        [[plan]] = connection.execute("EXPLAIN (FORMAT JSON) EXECUTE changes('1', '{}')").fetchall()

    def scans(node):
        yield node["Node Type"], node.get("Relation Name")
        for child in node.get("Plans", ()):
            yield from scans(child)

    found = list(scans(plan[0]["Plan"]))
    assert ("Seq Scan", "schedules") not in found
    assert any(relation == "schedules" for _, relation in found)
    # Nor is such a plan, however large its estimate, JIT-compiled at each run.
    assert db.read(lambda txn: txn._one("SHOW jit")[0]) == "off"
    db.close()
