# -*- test-case-name: tests.test_store_pgtrips -*-
"""
A writer's lock on a user's row and the user's quotas, in one round trip
(PostgreSQL).

A writer reads a user's quotas to charge or refund them: the user's row lock
(C{FOR NO KEY UPDATE}) serialises that per user, missing quotas being created
included. The quotas are read by a statement of their own after the lock's,
so they are what the lock waited for; both go in one round trip
(L{am.store.pgheld.Opening.runAll}). A booking reads its owner with that lock
(C{getUserToCharge}, L{am.core.quotas.chargedUser}) and the quotas next: they
come with it and are answered once.
"""

from __future__ import annotations

from typing import Any, Optional

from am.core.model import Quota, User
from am.store.pgahead import MISSING, Ahead
from am.store.rows import USER_COLUMNS, recordKey, userFromRow
from am.store.sqlcommon import QUOTAS, quotasFromRows

_LOCK = "SELECT 1 FROM users WHERE id = %s FOR NO KEY UPDATE"
_READ_LOCKED = f"SELECT {USER_COLUMNS} FROM users WHERE id = %s FOR NO KEY UPDATE"
_QUOTAS = QUOTAS.replace("?", "%s")


class QuotaLocks:
    """
    Quotas read under their user's row lock (a mixin of the PostgreSQL transaction).
    """

    _writing: bool
    _db: Any
    _statements: Any
    _ahead: Ahead
    # Users whose row this (writing) transaction has locked.
    _usersLocked: set[Any]

    def _lockAndQuotas(self, lock: str, key: Any) -> tuple[Optional[tuple], dict[str, Quota]]:
        statements = [(lock, (key,)), (_QUOTAS, (key,))]
        if self._statements is None:
            rows = [self._db.execute(sql, args) for sql, args in statements]
        else:
            rows = self._db.runAll(statements)
        self._usersLocked.add(key)
        return rows[0].fetchone(), quotasFromRows(rows[1].fetchall())

    def getQuotas(self, userid: int) -> dict[str, Quota]:
        key = recordKey(userid)
        if self._writing and key not in self._usersLocked:
            return self._lockAndQuotas(_LOCK, key)[1]
        kept = self._ahead.take("quotas", key)
        return super().getQuotas(userid) if kept is MISSING else kept  # type: ignore[misc]

    def getUserToCharge(self, userid: Any) -> Optional[User]:
        """
        The user, read with the row lock L{getQuotas} takes in a writer; its
        quotas come in the same round trip, for the next L{getQuotas}.
        """
        if not self._writing:
            return self.getUser(userid)  # type: ignore[attr-defined, no-any-return]
        key = recordKey(userid)
        row, quotas = self._lockAndQuotas(_READ_LOCKED, key)
        self._ahead.keep(quotas, "quotas", key)
        return userFromRow(row) if row else None

    def putQuota(self, userid: int, quota: Quota) -> None:
        # (What was read in passing is no longer what is stored.)
        self._ahead.take("quotas", recordKey(userid))
        super().putQuota(userid, quota)  # type: ignore[misc]
