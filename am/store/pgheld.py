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
from typing import Any, Iterable, Optional, Sequence

import psycopg
from psycopg import ClientCursor

from am.store.pgfast import Statements

# A plain one-row INSERT, its row of placeholders apart.
_ROW = re.compile(r"INSERT INTO \w+ \([\w, ]+\) VALUES (\((?:%s, )*%s\))")
# A table named as a word in a statement (compiled once per table).
_WORDS: dict[str, re.Pattern[str]] = {}


def _word(table: str) -> re.Pattern[str]:
    pattern = _WORDS.get(table)
    if pattern is None:
        pattern = _WORDS[table] = re.compile(rf"\b{re.escape(table)}\b")
    return pattern


class LostAtBegin(psycopg.OperationalError):
    """
    The connection was found lost by a transaction's first round trip, its
    C{BEGIN} in it: nothing of the transaction reached the server, so it may
    run again from the start on a new connection.
    """


class Opening:
    """
    A psycopg connection inside one transaction whose C{BEGIN} (given) and
    locks (L{precede}) wait for its next statement and go in its round trip:
    nobody reads their answers, and the server still runs each before it.
    A transaction that sends nothing sends no C{BEGIN} either.
    """

    def __init__(
        self, connection: psycopg.Connection, statements: Optional[Statements] = None, begin: Optional[str] = None,
    ) -> None:
        self.connection = connection
        self.statements = statements
        self._begin = begin
        self._first: list[tuple[str, tuple]] = []
        # A read expected next (L{soon}), and what it answered once sent.
        self._soon: Optional[tuple[str, tuple]] = None
        self._early: Optional[tuple[str, tuple, Any]] = None

    def precede(self, sql: str, args: Iterable[Any] = ()) -> None:
        """
        Send C{sql} (C{%s} placeholders; its rows unread) just before the next
        statement, in its round trip: a lock, which waits there as it would alone.
        """
        self._first.append((sql, tuple(args)))

    def soon(self, sql: str, args: Iterable[Any] = ()) -> None:
        """
        A read the caller expects to make right after its next statement:
        sent after that statement, in its round trip. If the statement after
        it is this read (same text and values), it is answered from there,
        as if it had run then (nothing of the transaction came between);
        otherwise that answer is dropped.
        """
        self._soon = (sql, tuple(args))

    def _opening(self) -> bool:
        return self._begin is not None or bool(self._first)

    def _together(
        self, statements: list[tuple[str, tuple]], end: Optional[str] = None,
    ) -> Optional[list[Any]]:
        # The opening, then statements (and end), in one round trip: each of
        # statements' rows (and end's), or None with nothing sent while a
        # text is not prepared yet (see Statements.pipeline).
        assert self.statements is not None
        begin, first = self._begin, self._first
        start = [part.encode() for part in begin.split("; ")] if begin else []
        try:
            rows = self.statements.pipeline(first + statements, end.encode() if end else None, start)
        except psycopg.OperationalError as e:
            raise self._lost(e, begin) from e
        if rows is not None:
            self._begin, self._first = None, []
            return rows[len(first):]
        return None

    def _open(self) -> None:
        # The opening alone, a round trip each (a text not prepared yet, or
        # a statement going through psycopg).
        begin, self._begin = self._begin, None
        first, self._first = self._first, []
        if begin is not None:
            try:
                _command(self.connection, self.statements, begin)
            except psycopg.OperationalError as e:
                raise self._lost(e, begin) from e
        for sql, args in first:
            if self.statements is not None:
                self.statements.execute(sql, args)
            else:
                self.connection.execute(sql, args)

    def _lost(self, error: psycopg.OperationalError, begin: Optional[str]) -> psycopg.OperationalError:
        if begin is not None and self.connection.broken:
            return LostAtBegin(str(error))
        return error

    def run(self, sql: str, args: Any = ()) -> Any:
        """
        Like C{execute}, through the connection's prepared L{Statements}.
        """
        return self.runAll([(sql, tuple(args))])[0]

    def runAll(self, statements: list[tuple[str, tuple]]) -> list[Any]:
        """
        Run C{statements} (prepared) in one round trip, each a statement of
        its own (under READ COMMITTED each sees what was committed when it
        started: one after a lock sees what the lock waited for): their rows.
        """
        assert self.statements is not None
        early, self._early = self._early, None
        if early is not None and len(statements) == 1 and statements[0] == early[:2]:
            return [early[2]]
        soon, self._soon = self._soon, None
        extra = [soon] if soon is not None else []
        if self._opening() or len(statements) + len(extra) > 1:
            rows = self._together(statements + extra)
            if rows is not None:
                if soon is not None:
                    self._early = (*soon, rows.pop())
                return rows
            self._open()
        return [self.statements.execute(sql, args) for sql, args in statements]

    def execute(self, sql: Any, args: Any = None, **kwargs: Any) -> psycopg.Cursor:
        self._open()
        self._early = None
        return self.connection.execute(sql, args, **kwargs)

    def cursor(self, *args: Any, **kwargs: Any) -> psycopg.Cursor:
        self._open()
        self._early = None
        return self.connection.cursor(*args, **kwargs)

    def commit(self) -> None:
        """
        C{COMMIT}; nothing at all if nothing was sent (the locks waiting
        for a next statement protected none).
        """
        if self._begin is None:
            _command(self.connection, self.statements, "COMMIT")

    def __getattr__(self, name: str) -> Any:
        return getattr(self.connection, name)


class HeldConnection(Opening):
    """
    A psycopg connection inside one writing transaction, holding back the
    writes given to L{hold} until a statement needs them or the commit.
    """

    def __init__(
        self, connection: psycopg.Connection, statements: Optional[Statements] = None, begin: Optional[str] = None,
    ) -> None:
        super().__init__(connection, statements, begin)
        self._held: list[tuple[str, tuple]] = []
        # The text of the last held write if rows may join it.
        self._lastRow: Optional[str] = None
        self._tables: set[str] = set()
        self._binder: Optional[ClientCursor] = None

    def hold(self, sql: str, args: Iterable[Any], tables: Iterable[str]) -> None:
        """
        Send C{sql} (C{%s} placeholders) later: with the commit, or before the
        first statement naming one of C{tables}. A plain one-row C{INSERT}
        right after another of the same text joins it as one more row (a
        booking's three quota journal lines: one statement for the server).
        """
        args = tuple(args)
        row = _ROW.fullmatch(sql)
        if row is not None and self._held and self._lastRow == sql:
            text, before = self._held[-1]
            self._held[-1] = (f"{text}, {row.group(1)}", before + args)
        else:
            self._held.append((sql, args))
        self._lastRow = sql if row is not None else None
        self._tables.update(tables)

    def _send(self, end: Optional[str] = None, then: Sequence[tuple[str, tuple]] = ()) -> list[Any]:
        # The opening, the held writes, then statements or END, in one round
        # trip: as prepared statements in a pipeline once the connection has
        # prepared them all (the server neither parses nor plans them again),
        # else as one text. The statements' rows.
        held, self._held = self._held, []
        self._tables.clear()
        self._lastRow = self._early = None
        if self.statements is not None:
            rows = self._together(held + list(then), end)
            if rows is not None:
                return rows[len(held):len(held) + len(then)]
            self._open()
            texts = [self.statements.bind(sql, args) for sql, args in held]
        else:
            self._open()
            if self._binder is None:
                self._binder = ClientCursor(self.connection)
            texts = [self._binder.mogrify(sql, args) for sql, args in held]
        if texts or end:
            self.connection.execute("; ".join(texts + ([end] if end else [])), prepare=False)
        return [self.statements.execute(sql, args) for sql, args in then] if self.statements is not None else []

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
        return super().execute(sql, args, **kwargs)

    def runAll(self, statements: list[tuple[str, tuple]]) -> list[Any]:
        # (Behind what is held that they name, in the same round trip.)
        assert self.statements is not None
        if self._held and any(self._needs(sql) for sql, _ in statements):
            return self._send(then=statements)
        return super().runAll(statements)

    def cursor(self, *args: Any, **kwargs: Any) -> psycopg.Cursor:
        # Whatever it will run, it sees every held write.
        self.flush()
        return super().cursor(*args, **kwargs)

    def commit(self) -> None:
        """
        Send what is held and C{COMMIT}, in one round trip.
        """
        if self._held:
            self._send("COMMIT")
        else:
            super().commit()


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


class Direct(Opening):
    """
    A connection inside a read-only transaction: nothing to hold back.
    """


def _command(connection: psycopg.Connection, statements: Optional[Statements], sql: str) -> None:
    # A command alone (BEGIN, COMMIT): through libpq directly where the connection can.
    if statements is not None:
        statements.command(sql)
    else:
        connection.execute(sql)
