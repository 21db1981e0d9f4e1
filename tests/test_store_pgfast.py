"""
The store's statements on libpq directly (L{am.store.pgfast}): the values,
row counts and errors are psycopg's own; a text is prepared at its second
run; a lost connection is an OperationalError that the store reconnects after.
"""

from __future__ import annotations

import json

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
