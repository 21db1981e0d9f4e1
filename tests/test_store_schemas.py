"""
The two stores' schemas agree: a fresh SQLite file (its whole migration
ladder) and a fresh PostgreSQL schema (its own ladder) have the same tables
with the same columns, except for the differences declared here, each with
its reason. A column added to one ladder only fails this test.
"""

from __future__ import annotations

import psycopg

from am.store.postgres import PostgresDatabase
from am.store.sqlite import SQLiteDatabase
from tests.storefixtures import TemporaryDatabase

#: table -> (columns only SQLite has, columns only PostgreSQL has), by design.
DECLARED = {
    # SQLite keeps node tags in rows of their own; PostgreSQL keeps each
    # source's tags as a JSON document on the node.
    "node_tags": ({"nodeid", "source", "tag", "value"}, set()),
    "nodes": (set(), {"admin_tags", "inventory_tags"}),
    # PostgreSQL records each applied migration; SQLite keeps its version
    # in PRAGMA user_version.
    "schema_version": (set(), {"version", "applied"}),
    # Both logs feed an interval index with other processes' writes of
    # schedules: SQLite's (worker processes, docs/sqlite.md) is read in commit
    # order by sequence number; PostgreSQL's by transaction id since a snapshot,
    # pruned by time (docs/postgresql.md).
    "schedule_changes": ({"seq"}, {"xid", "at"}),
}


def sqliteColumns(path: str) -> dict[str, set[str]]:
    db = SQLiteDatabase(path)
    try:
        connection = db._connection
        tables = [
            name for (name,) in connection.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        ]
        return {t: {row[1] for row in connection.execute(f"PRAGMA table_info('{t}')")} for t in tables}
    finally:
        db.close()


def postgresColumns(database: TemporaryDatabase, schema: str) -> dict[str, set[str]]:
    db = PostgresDatabase(database.schema(schema))
    db.close()
    with psycopg.connect(database.url) as connection:
        rows = connection.execute(
            "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = %s",
            (schema,),
        ).fetchall()
    columns: dict[str, set[str]] = {}
    for table, column in rows:
        columns.setdefault(table, set()).add(column)
    return columns


def test_schemasAgree(tmp_path) -> None:
    """
    Every table and column of one fresh store is in the other, but for the
    declared differences (which must still be real).
    """
    lite = sqliteColumns(str(tmp_path / "fresh.db"))
    database = TemporaryDatabase()
    try:
        postgres = postgresColumns(database, "fresh")
    finally:
        database.drop()
    found = {}
    for table in sorted(set(lite) | set(postgres)):
        a, b = lite.get(table, set()), postgres.get(table, set())
        if a != b:
            found[table] = (a - b, b - a)
    assert found == DECLARED
