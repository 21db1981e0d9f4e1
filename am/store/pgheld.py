# -*- test-case-name: tests.test_store_postgres -*-
"""
Writes whose answer nobody reads, held back and sent with a later round trip.

Each statement costs the controller a round trip to the server: a send, a
wait and a wake-up of its thread (on a busy 2-core box about as much CPU as
the statement's Python). Some writes of a writing transaction are only
written: a heartbeat's time, a quota's new value, its journal line, the
longest window. L{HeldConnection} keeps those and sends them in one round
trip together with the C{COMMIT}, or before any statement that names one of
the tables they write, so every statement still sees them; the order of the
writes among themselves is kept. Once the connection has prepared them they
go as prepared statements in a pipeline (L{Statements.pipeline}: the server
neither parses nor plans them again); until then as one text, bound on the
client as the server would have bound them.

What changes: a held write takes its row lock and meets its constraints at
the commit (or the next statement on its table) rather than at once. A
failure then fails the transaction exactly as before (the store rolls it back
and, for a lost race, runs it again); only writes that nobody catches an
error of are held.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Optional

import psycopg
from psycopg import ClientCursor

from am.store.pgfast import Statements

# A table named as a word in a statement (compiled once per table).
_WORDS: dict[str, re.Pattern[str]] = {}


def _word(table: str) -> re.Pattern[str]:
    pattern = _WORDS.get(table)
    if pattern is None:
        pattern = _WORDS[table] = re.compile(rf"\b{re.escape(table)}\b")
    return pattern


class HeldConnection:
    """
    A psycopg connection inside one writing transaction, holding back the
    writes given to L{hold} until a statement needs them or the commit.
    """

    def __init__(self, connection: psycopg.Connection, statements: Optional[Statements] = None) -> None:
        self.connection = connection
        self.statements = statements
        self._held: list[tuple[str, tuple]] = []
        self._tables: set[str] = set()
        self._binder: Optional[ClientCursor] = None

    def hold(self, sql: str, args: Iterable[Any], tables: Iterable[str]) -> None:
        """
        Send C{sql} (C{%s} placeholders) later: with the commit, or before the
        first statement naming one of C{tables}.
        """
        self._held.append((sql, tuple(args)))
        self._tables.update(tables)

    def _send(self, end: Optional[str] = None) -> None:
        # The held writes (and END), in one round trip: as prepared statements
        # in a pipeline once the connection has prepared them all (the
        # server neither parses nor plans them again), else as one text.
        held, self._held = self._held, []
        self._tables.clear()
        if self.statements is not None:
            if self.statements.pipeline(held, end.encode() if end else None) is not None:
                return
            texts = [self.statements.bind(sql, args) for sql, args in held]
        else:
            if self._binder is None:
                self._binder = ClientCursor(self.connection)
            texts = [self._binder.mogrify(sql, args) for sql, args in held]
        self.connection.execute("; ".join(texts + ([end] if end else [])), prepare=False)

    def _needs(self, sql: Any) -> bool:
        text = sql if isinstance(sql, str) else str(sql)
        return any(_word(table).search(text) for table in self._tables)

    def flush(self) -> None:
        """
        Send what is held now, in one round trip.
        """
        if self._held:
            self._send()

    def execute(self, sql: Any, args: Any = None, **kwargs: Any) -> psycopg.Cursor:
        if self._held and self._needs(sql):
            self.flush()
        return self.connection.execute(sql, args, **kwargs)

    def run(self, sql: str, args: Any = ()) -> Any:
        """
        Like L{execute}, through the connection's prepared L{Statements}.
        """
        assert self.statements is not None
        if self._held and self._needs(sql):
            self.flush()
        return self.statements.execute(sql, args)

    def cursor(self, *args: Any, **kwargs: Any) -> psycopg.Cursor:
        # Whatever it will run, it sees every held write.
        self.flush()
        return self.connection.cursor(*args, **kwargs)

    def commit(self) -> None:
        """
        Send what is held and C{COMMIT}, in one round trip.
        """
        if self._held:
            self._send("COMMIT")
        else:
            _commit(self.connection, self.statements)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)


class OneStatementOnly(BaseException):
    """
    A read run without a transaction asked for a second statement: it runs
    again in a snapshot. (A BaseException, so that no C{except Exception} in
    the read swallows it.)
    """


class OneStatement:
    """
    A connection in autocommit mode for a read that is expected to run one
    statement, a snapshot of its own: the C{BEGIN} and C{COMMIT} round trips
    of a transaction are saved. A second statement is refused unsent.
    """

    def __init__(self, connection: psycopg.Connection, statements: Optional[Statements] = None) -> None:
        self.connection = connection
        self.statements = statements
        self._sent = False

    def execute(self, sql: Any, args: Any = None, **kwargs: Any) -> psycopg.Cursor:
        if self._sent:
            raise OneStatementOnly()
        self._sent = True
        return self.connection.execute(sql, args, **kwargs)

    def run(self, sql: str, args: Any = ()) -> Any:
        assert self.statements is not None
        if self._sent:
            raise OneStatementOnly()
        self._sent = True
        return self.statements.execute(sql, args)

    def cursor(self, *args: Any, **kwargs: Any) -> psycopg.Cursor:
        raise OneStatementOnly()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)


class Direct:
    """
    A connection inside a read-only transaction: nothing to hold back.
    """

    def __init__(self, connection: psycopg.Connection, statements: Optional[Statements] = None) -> None:
        self.connection = connection
        self.statements = statements

    def run(self, sql: str, args: Any = ()) -> Any:
        assert self.statements is not None
        return self.statements.execute(sql, args)

    def commit(self) -> None:
        _commit(self.connection, self.statements)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)


def _commit(connection: psycopg.Connection, statements: Optional[Statements]) -> None:
    # A COMMIT alone: through libpq directly where the connection can.
    if statements is not None:
        statements.command("COMMIT")
    else:
        connection.execute("COMMIT")
