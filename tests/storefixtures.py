"""
The stores under test, for the store contract and the tests beside it: a
temporary PostgreSQL database per module (from C{MARVIN_TEST_POSTGRES}, by
default the local socket; the tests fail, never skip, when none answers) and
the C{store} fixture that gives each test the SQLite and the PostgreSQL store.
"""

from __future__ import annotations

import os
import secrets
import urllib.parse
from typing import Any, Callable, Iterator

import psycopg
import pytest

from am.store.postgres import PostgresDatabase
from am.store.sqlite import SQLiteDatabase

SERVER = os.environ.get("MARVIN_TEST_POSTGRES", "postgresql:///postgres?host=/var/run/postgresql")



def withQuery(url: str, **params: str) -> str:
    """
    C{url} with query parameters added (or replaced).
    """
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query))
    query.update(params)
    return _unsplit(parts._replace(query=urllib.parse.urlencode(query, quote_via=urllib.parse.quote)))


def _unsplit(parts: urllib.parse.SplitResult) -> str:
    # urlunsplit drops the empty host of postgresql:///db?host=/socket/dir
    query = f"?{parts.query}" if parts.query else ""
    return f"{parts.scheme}://{parts.netloc}{parts.path}{query}"


class TemporaryDatabase:
    """
    A database of its own on the test server, made now and dropped by L{drop}.

    @ivar url: its URL.
    """

    def __init__(self, server: str = SERVER) -> None:
        try:
            self._admin = psycopg.connect(server, autocommit=True, connect_timeout=5)
        except psycopg.OperationalError as e:
            pytest.fail(
                f"These tests need a PostgreSQL server; none answers at {server} "
                f"(set MARVIN_TEST_POSTGRES to a URL where databases may be created): {e}",
                pytrace=False,
            )
        self.name = f"marvin_test_{secrets.token_hex(6)}"
        self._admin.execute(f'CREATE DATABASE "{self.name}"')
        parts = urllib.parse.urlsplit(server)
        self.url = _unsplit(parts._replace(path="/" + self.name))

    def schema(self, name: str) -> str:
        """
        The URL of a new schema of this database: tables made there do not see
        those of other schemas.
        """
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(f'CREATE SCHEMA "{name}"')
        return withQuery(self.url, options=f"-csearch_path={name}")

    def execute(self, sql: str) -> None:
        """
        Run one statement in this database as the administrator.
        """
        with psycopg.connect(self.url, autocommit=True) as connection:
            connection.execute(sql)

    def drop(self) -> None:
        self._admin.execute(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)')
        self._admin.close()


@pytest.fixture(scope="module")
def postgres() -> Iterator[TemporaryDatabase]:
    database = TemporaryDatabase()
    yield database
    database.drop()


class Backend:
    """
    One store under test: C{db} is open; L{reopen} closes it and opens the same data.
    """

    def __init__(self, name: str, opener: Callable[[], Any]) -> None:
        self.name = name
        self._opener = opener
        self.opened: list[Any] = []
        self.db = self.open()

    def open(self) -> Any:
        db = self._opener()
        self.opened.append(db)
        return db

    def reopen(self) -> Any:
        self.db.close()
        self.db = self.open()
        return self.db

    def run(self, function: Callable[..., Any], *args: Any) -> Any:
        return self.db.run(function, *args)

    def close(self) -> None:
        for db in self.opened:
            db.close()


def _backend(kind: str, request: Any, tmp_path: Any) -> Iterator[Backend]:
    if kind == "sqlite":
        path = str(tmp_path / "contract.db")
        backend = Backend("sqlite", lambda: SQLiteDatabase(path))
    else:
        url = request.getfixturevalue("postgres").schema(f"s_{secrets.token_hex(4)}")
        backend = Backend("postgres", lambda: PostgresDatabase(url))
    yield backend
    backend.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: Any, tmp_path: Any) -> Iterator[Backend]:
    yield from _backend(request.param, request, tmp_path)


@pytest.fixture
def both(request: Any, tmp_path: Any) -> Iterator[tuple[Backend, Backend]]:
    """
    One store of each kind, for tests that compare their answers.
    """
    sqlite = _backend("sqlite", request, tmp_path)
    postgres = _backend("postgres", request, tmp_path)
    yield next(sqlite), next(postgres)
    for rest in (sqlite, postgres):
        next(rest, None)
