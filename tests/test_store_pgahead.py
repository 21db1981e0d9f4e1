"""
A heartbeat batch's first reads in one statement on PostgreSQL
(am/store/pgahead.py): the same answers as the reads they replace, each once,
never for two heartbeats of one node or one user.
"""

from __future__ import annotations

from typing import Any

from am.core import accounts, commands
from am.core.errors import NotFound
from am.core.events import runCommand
from am.core.interfaces import ReadAhead
from am.core.model import Node
from am.store import pgahead
from am.store.postgres import PostgresDatabase
from tests.core_helpers import NOW
from tests.test_store_pgtrips import _book, _filled, recording
from tests.test_store_postgres import POLICY
from tests.test_store_postgres import server  # noqa: F401 (a fixture)


def _nodeUsers(db: PostgresDatabase, count: int) -> list[int]:
    return db.run(lambda txn: [
        accounts.addUser(txn, f"n{i}", "node", NOW, POLICY, fingerprint=f"{i:040d}", nodeid=str(i)).id
        for i in range(1, count + 1)
    ])


def _beat(userid: int, nodeid: str, when: int) -> Any:
    # As the group committer hands a queued heartbeat to runBatch.
    return (runCommand, (commands.heartbeat, (userid, nodeid, when, POLICY), {}, ()), {})


def _tasks(reply: Any) -> list[tuple]:
    return [(t.id, t.status) for t in reply.tasks]


def test_batchInThreeStatements() -> None:
    """
    A batch of three heartbeats makes three round trips (BEGIN, the reads,
    the held writes with the COMMIT) and answers each node what it answers
    a heartbeat alone: its booked task, a queued task placed, nothing.
    """
    db, owner = _filled()
    users = _nodeUsers(db, 3)
    booked = _book(db, owner, NOW + 1000, nodes=["1"]).schedules[0]
    queued = _book(db, owner, -1, nodes=["2"]).schedules[0]
    db.runBatch([_beat(users[i], str(i + 1), NOW) for i in range(3)])
    sent = recording(db)
    outcomes = db.runBatch([_beat(users[i], str(i + 1), NOW + 10) for i in range(3)])
    assert all(ok for ok, _ in outcomes), outcomes
    replies = [result for _, (result, _events) in outcomes]
    assert [_tasks(r) for r in replies] == [[(booked.id, "requested")], [(queued.id, "requested")], []]
    assert [r.node.heartbeat for r in replies] == [NOW + 10] * 3
    assert len(sent) == 3, sent
    assert sent[0].startswith("BEGIN") and sent[1].startswith("SELECT json_build_array")
    assert sent[2].endswith("COMMIT") and sent[2].count("UPDATE nodes SET heartbeat") == 3
    assert db.read(lambda txn: [txn.getNode(str(i)).heartbeat for i in (1, 2, 3)]) == [NOW + 10] * 3
    db.close()


def test_aloneInTwoRoundTrips() -> None:
    """
    A heartbeat alone, or run again alone after its batch failed, reads
    ahead too (in its BEGIN's round trip); the one that failed (an unknown
    node) fails alone.
    """
    db, owner = _filled()
    users = _nodeUsers(db, 2)
    db.runBatch([_beat(users[0], "1", NOW)])
    sent = recording(db)
    [(ok, _)] = db.runBatch([_beat(users[0], "1", NOW + 10)])
    assert ok and len(sent) == 2 and sent[0].startswith("BEGIN") and "json_build_array" in sent[0], sent
    db.run(lambda txn: txn.deleteNode("2"))
    sent.clear()
    outcomes = db.runBatch([_beat(users[0], "1", NOW + 20), _beat(users[1], "2", NOW + 20)])
    assert outcomes[0][0] and not outcomes[1][0] and outcomes[1][1].check(NotFound)
    assert len([s for s in sent if "SELECT json_build_array" in s]) == 3, sent
    db.close()


def test_readsAsTheyWouldBe() -> None:
    """
    What is read ahead is what the reads would answer: users, nodes (none
    for an unknown one), queued tasks oldest first and at most as many as
    asked, tasks of the window in start order (none outside it).
    """
    db, owner = _filled(nodes=3)
    users = _nodeUsers(db, 2)
    for start in (NOW + 5000, NOW + 1000, NOW + 10 ** 6):
        _book(db, owner, start, nodes=["1"])
    for _ in range(3):
        _book(db, owner, -1, nodes=["1"])
    window = (NOW, NOW + 86400, 2)
    reads = [ReadAhead(users[0], "1", *window), ReadAhead(users[1], "9", *window), ReadAhead(10 ** 6, "3", *window)]

    def direct(txn: Any) -> list[Any]:
        return [
            [txn.getUser(r.userid) for r in reads],
            [txn.getNode(r.nodeid) for r in reads],
            [txn.tasksOfNode(r.nodeid, *window) for r in reads],
        ]

    def ahead(txn: Any) -> list[Any]:
        txn.readAhead(reads)
        return direct(txn)

    expected, found = db.run(direct), db.run(ahead)
    assert found == expected
    waiting, upcoming = expected[2][0]
    assert len(waiting) == 2 and [s.id for s in waiting] == sorted(s.id for s in waiting)
    assert [s.start for s in upcoming] == [NOW + 1000, NOW + 5000]
    assert expected[1][1] is None and expected[0][2] is None
    db.close()


def test_eachAnsweredOnce() -> None:
    """
    A read made ahead answers once: the same read again in the transaction
    goes to the database and sees what the transaction wrote meanwhile.
    """
    db, _owner = _filled()
    [user] = _nodeUsers(db, 1)

    def work(txn: Any) -> tuple[int, int, int]:
        txn.readAhead([ReadAhead(user, "1", NOW, NOW + 60, 1)])
        first = txn.getNode("1").heartbeat
        txn.setHeartbeat("1", NOW + 99, None, None)
        return first, txn.getNode("1").heartbeat, len(sent)

    sent = recording(db)
    first, again, statements = db.run(work)
    assert (first, again) == (NOW, NOW + 99)
    # BEGIN, the reads, the held write, the node again
    assert statements == 4, sent
    db.close()


def test_sameNodeOrUserNotAhead() -> None:
    """
    Two heartbeats of one batch naming the same node (or the same user) are
    not read ahead: one writes what the other reads.
    """
    beats = [_beat(1, "1", NOW), _beat(2, "2", NOW), _beat(3, "1", NOW + 1), _beat(2, "4", NOW)]
    assert pgahead.hints(beats) == []
    beats = [_beat(1, "1", NOW), _beat(2, "2", NOW), _beat(3, "1", NOW + 1), _beat(4, "4", NOW)]
    assert [(r.userid, r.nodeid) for r in pgahead.hints(beats)] == [(2, "2"), (4, "4")]
    assert pgahead.hints([(runCommand, (commands.changeStatus, (1, "x", 1, NOW, POLICY), {}, ()), {})]) == []


def test_twiceInABatch() -> None:
    """
    Two heartbeats of one node in one batch: the second sees the first's
    writes (its heartbeat, the task the first placed from the queue).
    """
    db, owner = _filled()
    [user] = _nodeUsers(db, 1)
    queued = _book(db, owner, -1, nodes=["1"]).schedules[0]
    db.run(lambda txn: txn.putNode(Node(id="1", hostname="n1", status="active", heartbeat=NOW - 5)))
    outcomes = db.runBatch([_beat(user, "1", NOW), _beat(user, "1", NOW + 1)])
    (ok1, (first, _)), (ok2, (second, _)) = outcomes
    assert ok1 and ok2
    assert _tasks(first) == _tasks(second) == [(queued.id, "requested")]
    assert second.tasks[0].start == first.tasks[0].start
    db.close()


def test_batchPlansOnce() -> None:
    """
    A batch's statements use their generic plans (the reads ahead take
    arrays of the batch's length, which PostgreSQL would plan anew at each
    run); that ends with the batch, and other transactions plan as usual.
    """
    db, _owner = _filled()

    def mode(txn: Any) -> str:
        return txn._db.execute("SHOW plan_cache_mode").fetchone()[0]

    assert [r for _, r in db.runBatch([(mode, (), {}), (mode, (), {})])] == ["force_generic_plan"] * 2
    assert db.run(mode) == "auto"
    assert db.read(mode) == "auto"
    db.close()
