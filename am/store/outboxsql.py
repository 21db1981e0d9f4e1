# -*- test-case-name: tests.test_store_contract -*-
"""
The notification outbox and the users' signing secrets, in SQL both stores
share (mixed into L{am.store.sqlcommon.SQLTransaction}).
"""

from __future__ import annotations

import json
from typing import Any, Optional

from am.core.model import Notification
from am.store.rows import _json, recordKey

_COLUMNS = (
    "id, eventid, expid, ownerid, seq, url, kind, body, created, state, attempts, due, "
    "delivered, last_error, lease_owner, lease_until"
)


def _notification(row: tuple) -> Notification:
    return Notification(
        id=row[0], eventid=row[1], expid=row[2], ownerid=row[3], seq=row[4], url=row[5], kind=row[6],
        body=_json(row[7]), created=row[8], state=row[9], attempts=row[10], due=row[11],
        delivered=row[12], lastError=row[13], leaseOwner=row[14], leaseUntil=row[15],
    )


class OutboxSQL:
    """
    Outbox rows in and out as L{Notification}s; no rules.
    """

    def _one(self, sql: str, *args: Any) -> Optional[tuple]:
        raise NotImplementedError()

    def _all(self, sql: str, *args: Any) -> list[tuple]:
        raise NotImplementedError()

    def _exec(self, sql: str, args: Any = ()) -> Any:
        raise NotImplementedError()

    def _forUpdate(self, skipLocked: bool = False) -> str:
        """
        The row-lock clause a writer's read of outbox rows takes: none where
        writers are serialised anyway (SQLite); PostgreSQL's says its own.
        """
        return ""

    def addNotification(self, entry: Notification) -> int:
        row = self._one("SELECT coalesce(max(seq), 0) FROM outbox WHERE expid = ?", entry.expid)
        entry.seq = (row[0] if row else 0) + 1
        self._exec(
            "INSERT INTO outbox (eventid, expid, ownerid, seq, url, kind, body, created, state, due) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (entry.eventid, entry.expid, entry.ownerid, entry.seq, entry.url, entry.kind,
             json.dumps(entry.body), entry.created, entry.state, entry.due),
        )
        found = self._one("SELECT id FROM outbox WHERE eventid = ?", entry.eventid)
        assert found is not None
        entry.id = found[0]
        return entry.id  # type: ignore[return-value]

    def updateNotification(self, entry: Notification) -> None:
        self._exec(
            "UPDATE outbox SET state = ?, attempts = ?, due = ?, delivered = ?, last_error = ?, "
            "lease_owner = ?, lease_until = ? WHERE id = ?",
            (entry.state, entry.attempts, entry.due, entry.delivered, entry.lastError,
             entry.leaseOwner, entry.leaseUntil, entry.id),
        )

    def getNotification(self, outid: int) -> Optional[Notification]:
        row = self._one(f"SELECT {_COLUMNS} FROM outbox WHERE id = ?{self._forUpdate()}", recordKey(outid))
        return _notification(row) if row else None

    def dueNotifications(self, now: int, limit: int) -> list[Notification]:
        return [
            _notification(r)
            for r in self._all(
                f"SELECT {_COLUMNS} FROM outbox WHERE state = 'pending' AND due <= ? "
                f"AND lease_until <= ? ORDER BY due, id LIMIT ?{self._forUpdate(skipLocked=True)}",
                now, now, limit,
            )
        ]

    def leasedNotifications(self, worker: str) -> list[Notification]:
        return [
            _notification(r)
            for r in self._all(
                f"SELECT {_COLUMNS} FROM outbox WHERE state = 'pending' AND lease_owner = ? ORDER BY id", worker
            )
        ]

    def nextNotificationDue(self) -> Optional[int]:
        row = self._one("SELECT min(due) FROM outbox WHERE state = 'pending'")
        return row[0] if row else None

    def notificationsOf(self, expid: int) -> list[Notification]:
        return [
            _notification(r)
            for r in self._all(f"SELECT {_COLUMNS} FROM outbox WHERE expid = ? ORDER BY seq", recordKey(expid))
        ]

    def pruneNotifications(self, states: tuple[str, ...], before: int, limit: int) -> int:
        """
        Delete up to C{limit} rows in one of C{states} that happened before
        C{before}, oldest first, never an experiment's newest row (its C{seq}
        is where the next one's numbering continues, L{addNotification}).
        """
        marks = ", ".join("?" for _ in states)
        ids = [
            r[0]
            for r in self._all(
                f"SELECT id FROM outbox WHERE state IN ({marks}) AND created < ? "
                "AND seq < (SELECT max(seq) FROM outbox AS newest WHERE newest.expid = outbox.expid) "
                "ORDER BY id LIMIT ?",
                *states, before, limit,
            )
        ]
        if ids:
            self._exec(f"DELETE FROM outbox WHERE id IN ({', '.join('?' for _ in ids)})", tuple(ids))
        return len(ids)

    def getNotifySecret(self, userid: int) -> Optional[str]:
        row = self._one("SELECT secret FROM notify_secrets WHERE userid = ?", recordKey(userid))
        return row[0] if row else None

    def putNotifySecret(self, userid: int, secret: str, now: int) -> None:
        self._exec(
            "INSERT INTO notify_secrets (userid, secret, created) VALUES (?, ?, ?) "
            "ON CONFLICT (userid) DO UPDATE SET secret = EXCLUDED.secret, created = EXCLUDED.created",
            (userid, secret, now),
        )
