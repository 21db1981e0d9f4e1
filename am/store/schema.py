# -*- test-case-name: tests.test_store -*-
"""
The SQLite schema as numbered migrations; C{PRAGMA user_version} records how far a file is.
"""

from __future__ import annotations

import sqlite3

MIGRATIONS: tuple[str, ...] = (
    # 1: the first schema.
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
    INSERT INTO meta (key, value) VALUES ('longest_window', 0);
    INSERT INTO meta (key, value) VALUES ('nodes_version', 0);

    CREATE TABLE nodes (
        id TEXT PRIMARY KEY,
        hostname TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        heartbeat INTEGER NOT NULL DEFAULT 0,
        interfaces TEXT NOT NULL DEFAULT '[]'
    );
    CREATE TABLE node_tags (
        nodeid TEXT NOT NULL REFERENCES nodes(id) ON DELETE CASCADE,
        source TEXT NOT NULL,
        tag TEXT NOT NULL,
        value TEXT NOT NULL,
        PRIMARY KEY (nodeid, source, tag)
    );

    CREATE TABLE users (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        role TEXT NOT NULL,
        fingerprint TEXT UNIQUE,
        urn TEXT UNIQUE,
        project TEXT NOT NULL DEFAULT '',
        invalid INTEGER NOT NULL DEFAULT 0,
        nodeid TEXT
    );
    CREATE TABLE quotas (
        userid INTEGER NOT NULL REFERENCES users(id),
        kind TEXT NOT NULL,
        current INTEGER NOT NULL,
        reset_value INTEGER NOT NULL,
        reset_date INTEGER NOT NULL,
        last_reset INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (userid, kind)
    );
    CREATE TABLE quota_journal (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        timestamp INTEGER NOT NULL,
        userid INTEGER NOT NULL,
        kind TEXT NOT NULL,
        delta INTEGER NOT NULL,
        new_value INTEGER NOT NULL,
        reason TEXT NOT NULL
    );
    CREATE INDEX quota_journal_user ON quota_journal (userid, id);

    CREATE TABLE experiments (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        name TEXT NOT NULL,
        ownerid INTEGER NOT NULL REFERENCES users(id),
        script TEXT NOT NULL,
        nodetypes TEXT NOT NULL DEFAULT '',
        start INTEGER NOT NULL,
        stop INTEGER NOT NULL,
        recurring_until INTEGER NOT NULL DEFAULT 0,
        options TEXT NOT NULL DEFAULT '{}',
        status TEXT NOT NULL,
        slice_urn TEXT,
        created INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX experiments_owner ON experiments (ownerid);
    CREATE INDEX experiments_slice ON experiments (slice_urn) WHERE slice_urn IS NOT NULL;

    CREATE TABLE schedules (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        expid INTEGER NOT NULL REFERENCES experiments(id),
        nodeid TEXT NOT NULL REFERENCES nodes(id),
        start INTEGER NOT NULL,
        stop INTEGER NOT NULL,
        status TEXT NOT NULL,
        reason TEXT NOT NULL DEFAULT '',
        shared INTEGER NOT NULL DEFAULT 0,
        blocking INTEGER NOT NULL,
        deployment_options TEXT NOT NULL DEFAULT '{}',
        charged_time INTEGER NOT NULL DEFAULT 0,
        charged_data INTEGER NOT NULL DEFAULT 0,
        charged_storage INTEGER NOT NULL DEFAULT 0,
        expires INTEGER NOT NULL DEFAULT 0,
        updated INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX schedules_blocking ON schedules (blocking, start);
    CREATE INDEX schedules_node ON schedules (nodeid, start);
    CREATE INDEX schedules_experiment ON schedules (expid);
    CREATE INDEX schedules_start ON schedules (start);
    CREATE INDEX schedules_allocated ON schedules (expires) WHERE status = 'allocated';
    """,
    # 2: user look-ups by name and project (creation checks them).
    """
    CREATE INDEX users_name ON users (name, project);
    """,
    # 3: traffic reports from nodes (the last value per schedule and meter).
    """
    CREATE TABLE traffic_reports (
        schedid INTEGER NOT NULL REFERENCES schedules(id),
        meter TEXT NOT NULL,
        value INTEGER NOT NULL,
        PRIMARY KEY (schedid, meter)
    );
    """,
    # 4: public halves of per-task SSH keys, served to the tunnel server until the task ends.
    """
    CREATE TABLE public_keys (
        schedid INTEGER PRIMARY KEY REFERENCES schedules(id),
        public TEXT NOT NULL,
        expires INTEGER NOT NULL
    );
    CREATE INDEX public_keys_expires ON public_keys (expires);
    """,
    # 5: node pairs (legacy head/tail nodes): a node is the head or the tail of at most one pair.
    """
    CREATE TABLE node_pairs (
        head TEXT PRIMARY KEY REFERENCES nodes(id) ON DELETE CASCADE,
        tail TEXT NOT NULL UNIQUE REFERENCES nodes(id) ON DELETE CASCADE,
        CHECK (head <> tail)
    );
    """,
    # 6: the low-priority queue: a node's queued schedules, oldest first, and their expiry.
    """
    CREATE INDEX schedules_queued ON schedules (nodeid, id) WHERE status = 'queued';
    CREATE INDEX schedules_queue_expiry ON schedules (expires) WHERE status = 'queued';
    """,
    # 7: row versions: every update compares and sets them, so a write based on
    # a stale read is refused instead of lost (docs/scheduling.md).
    """
    ALTER TABLE schedules ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE experiments ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE users ADD COLUMN version INTEGER NOT NULL DEFAULT 0;
    """,
    # 8: the sweep: open schedules (no final report yet) by the end of their window.
    """
    CREATE INDEX schedules_open ON schedules (stop)
        WHERE status IN ('defined', 'requested', 'deployed', 'delayed', 'started', 'restarted');
    """,
    # 9: the notification outbox (rows written in the transaction of the change
    # they report) and each user's signing secret (docs/notifications.md).
    """
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        eventid TEXT NOT NULL UNIQUE,
        expid INTEGER NOT NULL,
        ownerid INTEGER NOT NULL,
        seq INTEGER NOT NULL,
        url TEXT NOT NULL,
        kind TEXT NOT NULL,
        body TEXT NOT NULL,
        created INTEGER NOT NULL,
        state TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        due INTEGER NOT NULL,
        delivered INTEGER NOT NULL DEFAULT 0,
        last_error TEXT NOT NULL DEFAULT '',
        lease_owner TEXT NOT NULL DEFAULT '',
        lease_until INTEGER NOT NULL DEFAULT 0,
        UNIQUE (expid, seq)
    );
    CREATE INDEX outbox_due ON outbox (due, id) WHERE state = 'pending';
    CREATE TABLE notify_secrets (
        userid INTEGER PRIMARY KEY REFERENCES users(id),
        secret TEXT NOT NULL,
        created INTEGER NOT NULL
    );
    """,
    # 10: node health records (self-healing bookings, issue 16).
    """
    CREATE TABLE node_health (
        nodeid TEXT PRIMARY KEY,
        gaps INTEGER NOT NULL DEFAULT 0,
        last_gap INTEGER NOT NULL DEFAULT 0,
        failures INTEGER NOT NULL DEFAULT 0,
        last_failure INTEGER NOT NULL DEFAULT 0
    );
    """,
    # 11: results (docs/results.md): the files each schedule's node uploaded,
    # and the upload window of ended schedules (closes: when its storage settles).
    """
    CREATE TABLE result_files (
        schedid INTEGER NOT NULL REFERENCES schedules(id),
        path TEXT NOT NULL,
        size INTEGER NOT NULL,
        sha256 TEXT NOT NULL,
        stored INTEGER NOT NULL,
        PRIMARY KEY (schedid, path)
    );
    CREATE INDEX result_files_stored ON result_files (stored);
    CREATE TABLE result_windows (
        schedid INTEGER PRIMARY KEY REFERENCES schedules(id),
        closes INTEGER NOT NULL
    );
    CREATE INDEX result_windows_closes ON result_windows (closes);
    """,
    # 12: which nodes' blocking windows changed, in commit order, so another
    # process on the file (marvinctld's workers, docs/sqlite.md) re-reads
    # only those nodes into its interval index. Triggers write it, so every
    # writer of the file does; the last 4,096 changes are kept (trimmed every 256).
    """
    CREATE TABLE schedule_changes (seq INTEGER PRIMARY KEY, nodeid TEXT NOT NULL);
    CREATE TRIGGER schedule_changes_insert AFTER INSERT ON schedules WHEN NEW.blocking = 1
    BEGIN
        INSERT INTO schedule_changes (nodeid) VALUES (NEW.nodeid);
    END;
    CREATE TRIGGER schedule_changes_update AFTER UPDATE ON schedules
    WHEN (OLD.blocking = 1 OR NEW.blocking = 1) AND (OLD.nodeid IS NOT NEW.nodeid
        OR OLD.start IS NOT NEW.start OR OLD.stop IS NOT NEW.stop OR OLD.blocking IS NOT NEW.blocking)
    BEGIN
        INSERT INTO schedule_changes (nodeid) VALUES (OLD.nodeid);
        INSERT INTO schedule_changes (nodeid) SELECT NEW.nodeid WHERE NEW.nodeid IS NOT OLD.nodeid;
    END;
    CREATE TRIGGER schedule_changes_delete AFTER DELETE ON schedules WHEN OLD.blocking = 1
    BEGIN
        INSERT INTO schedule_changes (nodeid) VALUES (OLD.nodeid);
    END;
    CREATE TRIGGER schedule_changes_trim AFTER INSERT ON schedule_changes WHEN NEW.seq % 256 = 0
    BEGIN
        DELETE FROM schedule_changes WHERE seq <= NEW.seq - 4096;
    END;
    """,
    # 13: the version of the health records: every write of node_health bumps
    # it, so each connection keeps its records until another version commits
    # (am/store/healthcache.py), whichever process writes.
    """
    INSERT INTO meta (key, value) VALUES ('health_version', 0);
    """,
)

LATEST = len(MIGRATIONS)


class SchemaTooNew(Exception):
    """
    The file was written by a newer Marvin; refuse rather than corrupt it.
    """


def statements(script: str) -> list[str]:
    """
    The statements of C{script}, whole: a trigger's body keeps its semicolons.
    """
    found, pending = [], ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \n;"):
                found.append(pending)
            pending = ""
    if pending.strip(" \n;"):
        found.append(pending)
    return found


def migrate(connection: sqlite3.Connection) -> int:
    """
    Bring the database up to L{LATEST} in one transaction per step.

    @return: the version the file is now at.
    """
    version = connection.execute("PRAGMA user_version").fetchone()[0]
    if version > LATEST:
        raise SchemaTooNew(f"database schema {version} is newer than this Marvin ({LATEST})")
    while version < LATEST:
        script = MIGRATIONS[version]
        connection.execute("BEGIN IMMEDIATE")
        try:
            for statement in statements(script):
                connection.execute(statement)
            version += 1
            connection.execute(f"PRAGMA user_version = {version}")
            connection.execute("COMMIT")
        except BaseException:
            connection.execute("ROLLBACK")
            raise
    return version
