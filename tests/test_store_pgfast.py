"""
The store's statements on libpq directly (L{am.store.pgfast}): the values,
row counts and errors are psycopg's own; a text is prepared at its second
run; a lost connection is an OperationalError that the store reconnects after.
"""

from __future__ import annotations

import json
import threading

import psycopg
import pytest

from am.store import pgfast
from am.store.pgfast import Statements
from tests.test_store_postgres import fresh
from tests.test_store_postgres import server  # noqa: F401 (a fixture)

_ROWS = "SELECT id, big, name, flag, doc, missing FROM t WHERE id = ANY(%s::int[]) ORDER BY id"


def _connection() -> psycopg.Connection:
    connection = psycopg.connect(fresh(), autocommit=True)
    connection.execute(
        "CREATE TABLE t (id int PRIMARY KEY, big bigint, name text, flag boolean, doc jsonb, missing text)"
    )
    connection.execute(
        "INSERT INTO t VALUES (1, 9007199254740993, 'ä \"x\"', true, %s, NULL), (2, -1, '', false, 'null', NULL)",
        (json.dumps({"a": [1, 2.5, None]}),),
    )
    return connection


def _prepared(connection: psycopg.Connection) -> list[str]:
    # (The view shows the session's own statements only.)
    return [r[0] for r in connection.execute("SELECT name FROM pg_prepared_statements ORDER BY name").fetchall()]


def test_valuesAsPsycopgGivesThem() -> None:
    """
    Integers of every size, text, booleans, JSON and NULL come back as
    psycopg's cursor gives them, at the first run (psycopg's own) and once
    prepared; a statement's row count too.
    """
    connection = _connection()
    expected = connection.execute(_ROWS, ([1, 2],)).fetchall()
    statements = Statements(connection)
    runs = [statements.execute(_ROWS, ([1, 2],)).fetchall() for _ in range(3)]
    assert runs == [expected] * 3
    assert statements.execute(_ROWS, ([3],)).fetchone() is None
    assert [n for n in _prepared(connection) if n.startswith("marvin_")] == ["marvin_1"]
    update = "UPDATE t SET big = big + %s WHERE id <= %s"
    assert [statements.execute(update, (1, 2)).rowcount for _ in range(3)] == [2, 2, 2]
    assert statements.execute("SELECT big FROM t WHERE id = %s", (2,)).fetchone() == (2,)
    connection.close()


def test_parameterTypesPreparedApart() -> None:
    """
    One text with parameters of other types (a small and a large integer)
    is prepared once per types, as psycopg would, so both keep their values.
    """
    connection = _connection()
    statements = Statements(connection)
    sql = "SELECT %s + 1"
    assert [statements.execute(sql, (n,)).fetchone()[0] for n in (1, 1, 2**40, 2**40, 5)] == [
        2, 2, 2**40 + 1, 2**40 + 1, 6
    ]
    assert len(_prepared(connection)) == 2
    connection.close()


def test_errorsAsPsycopgRaisesThem() -> None:
    """
    A unique violation, a value PostgreSQL cannot hold, a statement deallocated
    under us: psycopg's classes and SQLSTATEs; the last one is prepared anew.
    """
    connection = _connection()
    statements = Statements(connection)
    insert = "INSERT INTO t (id, name) VALUES (%s, %s)"
    statements.execute(insert, (10, "a"))
    statements.execute(insert, (11, "b"))
    with pytest.raises(psycopg.errors.UniqueViolation) as caught:
        statements.execute(insert, (11, "c"))
    assert caught.value.sqlstate == "23505"
    with pytest.raises(psycopg.DataError):
        statements.execute(insert, (12, "nul \x00"))
    connection.execute("DEALLOCATE ALL")
    with pytest.raises(psycopg.errors.InvalidSqlStatementName):
        statements.execute(insert, (13, "d"))
    statements.execute(insert, (14, "e"))
    assert connection.execute("SELECT count(*) FROM t WHERE id IN (13, 14)").fetchone() == (1,)
    connection.close()


def test_lostConnection() -> None:
    """
    A session killed under a prepared statement is an OperationalError, and
    the connection says it is broken (the store then reconnects).
    """
    connection = _connection()
    statements = Statements(connection)
    sql = "SELECT name FROM t WHERE id = %s"
    statements.execute(sql, (1,))
    statements.execute(sql, (1,))
    with psycopg.connect(connection.info.dsn, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (connection.info.backend_pid,))
    with pytest.raises(psycopg.OperationalError):
        statements.execute(sql, (1,))
    assert connection.broken


def test_mostPrepared(monkeypatch: pytest.MonkeyPatch) -> None:
    """
    Past L{pgfast.MOST_PREPARED} statements, new texts run through psycopg,
    unprepared (the connection's own preparing is off).
    """
    monkeypatch.setattr(pgfast, "MOST_PREPARED", 2)
    connection = _connection()
    statements = Statements(connection)
    for n in range(4):
        for _ in range(3):
            assert statements.execute(f"SELECT %s::int + {n}", (1,)).fetchone() == (1 + n,)
    assert len([n for n in _prepared(connection) if n.startswith("marvin_")]) == 2
    assert [n for n in _prepared(connection) if not n.startswith("marvin_")] == []
    connection.close()


def test_bindAsClientCursor() -> None:
    """
    A held write's text binds its values exactly as psycopg's client-side
    cursor does: quotes, backslashes, NUL-free unicode, NULL, booleans,
    numbers, lists, and a literal percent sign.
    """
    connection = _connection()
    statements = Statements(connection)
    sql = "INSERT INTO t (id, big, name, flag, doc) VALUES (%s, %s, %s, %s, %s) -- 100%% %s"
    values = [
        (1, 2**62, "it's a \\ back'slash", True, json.dumps({"é": "ü"}), [1, 2]),
        (-5, None, "", False, None, ["a", "b'c"]),
        (0, 1.5, "ä", None, "null", []),
    ]
    for args in values:
        for _ in range(2):  # (the second from the cached pieces)
            assert statements.bind(sql, args) == psycopg.ClientCursor(connection).mogrify(sql, args)
    named = "SELECT %(a)s"
    assert statements.bind(named, {"a": 1}) == "SELECT 1"
    connection.close()


def test_pipelineInOrder() -> None:
    """
    Statements in one round trip: nothing sent while one of the texts is not
    prepared yet; then each one's rows or row count, in order, as one by one.
    """
    connection = _connection()
    statements = Statements(connection)
    update = "UPDATE t SET big = big + %s WHERE id = %s"
    pair = [(update, (1, 2)), (_ROWS, ([1, 2],))]
    assert statements.pipeline(pair) is None
    assert connection.execute("SELECT big FROM t WHERE id = 2").fetchone() == (-1,)
    for sql, args in pair + pair:
        statements.execute(sql, args)
    done = statements.pipeline(pair)
    assert done is not None and done[0].rowcount == 1
    assert done[1].fetchall() == connection.execute(_ROWS, ([1, 2],)).fetchall()
    assert done[1].fetchall()[1][1] == 2
    connection.close()


def test_pipelineStopsAtAnError() -> None:
    """
    The first statement's error is raised as psycopg raises it, the next one
    did not run, and the connection is usable once the transaction is rolled back.
    """
    connection = _connection()
    statements = Statements(connection)
    insert = "INSERT INTO t (id, name) VALUES (%s, %s)"
    fails = "SELECT 1 / %s"
    for args in ((1,), (2,)):
        statements.execute(fails, args)
    statements.execute(insert, (20, "a"))
    statements.execute(insert, (21, "b"))
    connection.execute("BEGIN")
    with pytest.raises(psycopg.errors.DivisionByZero):
        statements.pipeline([(fails, (0,)), (insert, (22, "c"))])
    connection.execute("ROLLBACK")
    assert connection.execute("SELECT count(*) FROM t WHERE id = 22").fetchone() == (0,)
    assert statements.pipeline([(insert, (23, "d")), (fails, (1,))])[1].fetchone() == (1,)
    connection.close()


def test_pipelineBetweenCommands() -> None:
    """
    Commands before the statements (a BEGIN and a SET LOCAL) and after them
    (a COMMIT) go in the same round trip; only the statements' rows and the
    end's are answered; a transaction rolled back by an error keeps nothing.
    """
    connection = _connection()
    statements = Statements(connection)
    insert = "INSERT INTO t (id, name) VALUES (%s, %s)"
    mode = "SELECT current_setting('plan_cache_mode') WHERE %s"
    for args in ((30, "a"), (31, "b")):
        statements.execute(insert, args)
    statements.execute(mode, (True,))
    statements.execute(mode, (True,))
    start = [b"BEGIN", b"SET LOCAL plan_cache_mode = force_generic_plan"]
    done = statements.pipeline([(insert, (32, "c")), (mode, (True,))], b"COMMIT", start)
    assert done is not None and len(done) == 3
    assert done[0].rowcount == 1 and done[1].fetchall() == [("force_generic_plan",)]
    assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert statements.execute(mode, (True,)).fetchall() == [("auto",)]
    with pytest.raises(psycopg.errors.UniqueViolation):
        statements.pipeline([(insert, (33, "d")), (insert, (32, "again"))], None, [b"BEGIN"])
    connection.execute("ROLLBACK")
    assert connection.execute("SELECT count(*) FROM t WHERE id IN (32, 33)").fetchone() == (1,)
    connection.close()


def test_pipelineWaitsWithoutTheGIL() -> None:
    """
    A pipeline waiting for a lock that another thread of the process holds
    lets that thread run and release it (libpq's own wait would hold the
    GIL, and both would wait until the lock timeout).
    """
    connection = _connection()
    statements = Statements(connection)
    lock = "SELECT pg_advisory_xact_lock(%s)"
    read = "SELECT name FROM t WHERE id = %s"
    for sql, args in ((lock, (7,)), (lock, (7,)), (read, (1,)), (read, (1,))):
        statements.execute(sql, args)
    connection.execute("SET lock_timeout = 5000")
    holder = psycopg.connect(connection.info.dsn, autocommit=True)
    holder.execute("BEGIN")
    holder.execute("SELECT pg_advisory_xact_lock(7)")
    outcome: list[object] = []

    def pipelined() -> None:
        connection.execute("BEGIN")
        try:
            outcome.append(statements.pipeline([(lock, (7,)), (read, (1,))])[1].fetchone())
        except Exception as e:
            outcome.append(e)
        connection.execute("ROLLBACK")

    thread = threading.Thread(target=pipelined)
    thread.start()
    pid = connection.info.backend_pid
    waiting = "SELECT wait_event_type FROM pg_stat_activity WHERE pid = %s"
    with psycopg.connect(connection.info.dsn, autocommit=True) as watcher:
        while watcher.execute(waiting, (pid,)).fetchone() != ("Lock",) and thread.is_alive():
            pass
    holder.execute("COMMIT")
    thread.join()
    assert outcome == [('ä "x"',)]
    holder.close()
    connection.close()


def test_commandAsPsycopg() -> None:
    """
    A transaction's ends through libpq directly: the transaction opens and
    commits; a refused command and a lost session raise psycopg's errors.
    """
    connection = _connection()
    statements = Statements(connection)
    statements.command("BEGIN ISOLATION LEVEL READ COMMITTED READ WRITE; SET LOCAL jit = off")
    assert connection.info.transaction_status == psycopg.pq.TransactionStatus.INTRANS
    connection.execute("INSERT INTO t (id) VALUES (30)")
    statements.command("COMMIT")
    assert connection.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    assert connection.execute("SELECT count(*) FROM t WHERE id = 30").fetchone() == (1,)
    with pytest.raises(psycopg.errors.SyntaxError):
        statements.command("BEGINN")
    with psycopg.connect(connection.info.dsn, autocommit=True) as other:
        other.execute("SELECT pg_terminate_backend(%s)", (connection.info.backend_pid,))
    with pytest.raises(psycopg.OperationalError):
        statements.command("BEGIN")
    assert connection.broken
