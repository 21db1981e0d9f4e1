# -*- test-case-name: tests.test_store_pgfast -*-
"""
The store's hot statements run on the libpq connection directly.

Why: psycopg's cursor spends about 65 us of Python per statement on this
class of machine (its query conversion, prepare bookkeeping, result set-up
and generator-driven wait), against about 25 us for the same prepared
statement sent straight through libpq; a booking on PostgreSQL runs about ten
statements, a heartbeat four. L{Statements} keeps what psycopg would compute
per call: the query converted once per text, each statement prepared once per
parameter types, its parameters dumped and its rows loaded by psycopg's own
(C) L{Transformer}, so values and errors are exactly psycopg's.

Only the texts a connection has run before are prepared here, up to
L{MOST_PREPARED}; the others run through psycopg, unprepared: the connection's
own prepared statements are turned off (C{prepare_threshold = None}), since
psycopg deallocates all of a session's statements after a ROLLBACK.
"""

from __future__ import annotations

import re
import select
from typing import Any, Optional, Sequence

import psycopg
from psycopg import ClientCursor, errors, pq
from psycopg.adapt import PyFormat, Transformer

#: The most statements one connection prepares here (psycopg keeps 100).
MOST_PREPARED = 256

_PLACEHOLDER = re.compile(r"%([%s])")
_OTHER = re.compile(r"%[(bt]")
_NEW = object()
_TUPLES_OK = pq.ExecStatus.TUPLES_OK
_COMMAND_OK = pq.ExecStatus.COMMAND_OK
_BAD = pq.ConnStatus.BAD
_SYNC = pq.ExecStatus.PIPELINE_SYNC
# "cached plan must not change result type" (the schema changed under a
# prepared statement: another controller migrated) and "prepared statement
# does not exist" (somebody deallocated ours): prepare anew next time.
_FORGET = frozenset({"0A000", "26000"})


class Rows:
    """
    The part of a psycopg cursor the store reads: C{fetchone}, C{fetchall},
    C{rowcount}.
    """

    __slots__ = ("_rows", "rowcount")

    def __init__(self, rows: list[tuple], rowcount: int) -> None:
        self._rows = rows
        self.rowcount = rowcount

    def fetchone(self) -> Optional[tuple]:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[tuple]:
        return self._rows


class Statements:
    """
    Prepared statements of one psycopg connection (used by one thread at a
    time, as the store's connections are).
    """

    def __init__(self, connection: psycopg.Connection) -> None:
        connection.prepare_threshold = None
        self.connection = connection
        self._pgconn = connection.pgconn
        self._transformer = Transformer(connection)
        self._encoding = connection.info.encoding
        # Per text: the converted query and its parameter count, once it ran twice.
        self._seen: dict[str, Any] = {}
        # Per (text, parameter types): the prepared statement's name.
        self._names: dict[tuple[str, tuple[int, ...]], bytes] = {}
        self._serial = 0
        # Per held text: its pieces between placeholders (False: psycopg binds it).
        self._pieces: dict[str, Any] = {}

    def execute(self, sql: str, args: Sequence[Any] = ()) -> Any:
        """
        Run C{sql} (C{%s} placeholders) with C{args}: rows as psycopg would
        give them, or psycopg's own cursor for a text seen for the first time.
        """
        converted = self._seen.get(sql, _NEW)
        if converted.__class__ is not tuple:
            converted = self._promote(sql, args, converted)
            if converted is None:
                return self.connection.execute(sql, args)
        if len(args) != converted[1]:
            return self.connection.execute(sql, args)
        return self._rows(self._pgconn.exec_prepared(*self._bound(sql, args, converted), 0))

    def _bound(self, sql: str, args: Sequence[Any], converted: tuple[bytes, int]) -> tuple[bytes, Sequence[Any], Any]:
        # The prepared statement's name (prepared now if need be), the
        # parameters dumped and their formats.
        query, count = converted
        transformer = self._transformer
        params = transformer.dump_sequence(args, [PyFormat.AUTO] * count) if count else []
        key = (sql, transformer.types if count else ())
        name = self._names.get(key)
        if name is None:
            name = self._prepare(key, query)
        return name, params, transformer.formats if count else None

    def _rows(self, result: Any) -> Rows:
        # A statement's result as psycopg would give it, or its error raised.
        if result is None:
            raise errors.OperationalError("the connection was lost")
        if result.status == _TUPLES_OK:
            self._transformer.set_pgresult(result)
            return Rows(self._transformer.load_rows(0, result.ntuples, tuple), result.ntuples)
        if result.status == _COMMAND_OK:
            return Rows([], result.command_tuples or 0)
        raise self._error(result)

    def command(self, sql: str) -> None:
        """
        Run C{sql}, commands without parameters or rows (C{BEGIN ...},
        C{COMMIT}), through libpq directly: about half the CPU of psycopg's
        C{execute}, on every transaction's two ends.
        """
        result = self._pgconn.exec_(sql.encode(self._encoding))
        if result.status != _COMMAND_OK:
            raise self._error(result)

    def pipeline(
        self, statements: Sequence[tuple[str, Sequence[Any]]], end: Optional[bytes] = None,
        start: Sequence[bytes] = (),
    ) -> Optional[list[Rows]]:
        """
        Run the commands C{start} (C{BEGIN ...}), C{statements}, then the
        command C{end} if given (C{COMMIT}), in one round trip (libpq's
        pipeline mode), in order: each still runs as a statement of its own
        on the server, prepared, so under READ COMMITTED each sees what was
        committed when it started. The first error raises, and the
        statements after it did not run.

        @return: each statement's rows (and C{end}'s); C{None}, with nothing
            sent, while one of the texts is not prepared here yet (a text is
            at its second sighting, here or in L{execute}): send them
            another way.
        """
        ready = []
        for sql, args in statements:
            # (Every text is looked at: all of them are promoted at once.)
            converted = self._seen.get(sql, _NEW)
            if converted.__class__ is not tuple:
                converted = self._promote(sql, args, converted)
            if converted is not None and len(args) == converted[1]:
                ready.append(converted)
        if len(ready) != len(statements):
            return None
        sends = [self._bound(sql, args, converted) for (sql, args), converted in zip(statements, ready)]
        pgconn = self._pgconn
        pgconn.enter_pipeline_mode()
        try:
            for command in start:
                pgconn.send_query_params(command, None)
            for name, params, formats in sends:
                pgconn.send_query_prepared(name, params, formats, 0)
            if end is not None:
                pgconn.send_query_params(end, None)
            pgconn.pipeline_sync()
            _flush(pgconn)
            results = _results(pgconn)
        finally:
            if pgconn.status != _BAD:
                pgconn.exit_pipeline_mode()
        return [self._rows(result) for result in results][len(start):]

    def bind(self, sql: str, args: Sequence[Any]) -> str:
        """
        C{sql} with C{args} bound on the client, as psycopg's C{ClientCursor}
        binds them (the same literals), for the held writes of
        L{am.store.pgheld}: the text's pieces are split once.
        """
        parts = self._pieces.get(sql)
        if parts is None:
            parts = _pieces(sql)
            if len(self._pieces) < 4 * MOST_PREPARED:
                self._pieces[sql] = parts
        if parts is False or len(parts) != len(args) + 1:
            return ClientCursor(self.connection).mogrify(sql, args)
        literal, encoding = self._transformer.as_literal, self._encoding
        out = [parts[0]]
        for value, part in zip(args, parts[1:]):
            out.append(literal(value).decode(encoding))
            out.append(part)
        return "".join(out)

    def _promote(self, sql: str, args: Sequence[Any], state: Any) -> Optional[tuple[bytes, int]]:
        # A text's states: new, seen once (None), converted (a tuple), or
        # left to psycopg for good (False).
        if state is _NEW:
            if len(self._seen) < 4 * MOST_PREPARED:
                self._seen[sql] = None
            return None
        if state is None and len(self._names) < MOST_PREPARED:
            converted = self._convert(sql, len(args))
            self._seen[sql] = converted if converted is not None else False
            return converted
        return None

    def _convert(self, sql: str, count: int) -> Optional[tuple[bytes, int]]:
        # "%s" -> "$1", "$2", ... between the pieces L{bind} uses too;
        # psycopg's other placeholders (named, binary, text) stay with psycopg.
        pieces = _pieces(sql)
        if pieces is False or len(pieces) != count + 1:
            return None
        query = pieces[0] + "".join(f"${n}{piece}" for n, piece in enumerate(pieces[1:], 1))
        return query.encode(self._encoding), count

    def _prepare(self, key: tuple[str, tuple[int, ...]], query: bytes) -> bytes:
        self._serial += 1
        name = f"marvin_{self._serial}".encode()
        result = self._pgconn.prepare(name, query, key[1] or None)
        if result.status != _COMMAND_OK:
            raise self._error(result)
        self._names[key] = name
        return name

    def _error(self, result: pq.abc.PGresult) -> psycopg.Error:
        if self._pgconn.status == _BAD:
            return errors.OperationalError(result.get_error_message(self._encoding) or "the connection was lost")
        error = errors.error_from_result(result, encoding=self._encoding)
        if error.sqlstate in _FORGET:
            # Forgotten here; the server drops them with the session.
            self._names.clear()
        return error


def _flush(pgconn: Any) -> None:
    # Send what libpq buffered (the connection is non-blocking), waiting
    # without the GIL.
    while pgconn.flush():
        _wait(pgconn, select.POLLOUT)


def _results(pgconn: Any) -> list[Any]:
    # A pipeline's results up to its sync, each statement's once (libpq
    # follows each with a None), reading the socket only when libpq has
    # nothing buffered; None for one cut short by a lost connection. Waits
    # without the GIL: libpq's own wait in get_result would hold it, and a
    # statement waiting for a lock that another thread of this process holds
    # would then wait for ever.
    results: list[Any] = []
    while True:
        while pgconn.is_busy():
            _wait(pgconn, select.POLLIN)
            pgconn.consume_input()
        result = pgconn.get_result()
        if result is None:
            if pgconn.status == _BAD:
                return results + [None]
            continue
        if result.status == _SYNC:
            return results
        results.append(result)


def _wait(pgconn: Any, event: int) -> None:
    poll = select.poll()
    poll.register(pgconn.socket, event)
    poll.poll()


def _pieces(sql: str) -> Any:
    """
    The text around each C{%s} of C{sql} (C{%%} read as C{%}), or False for
    psycopg's other placeholders.
    """
    if _OTHER.search(sql.replace("%%", "")):
        return False
    pieces, last = [""], 0
    for match in _PLACEHOLDER.finditer(sql):
        pieces[-1] += sql[last:match.start()]
        if match.group(1) == "%":
            pieces[-1] += "%"
        else:
            pieces.append("")
        last = match.end()
    pieces[-1] += sql[last:]
    return pieces
