# -*- test-case-name: tests.test_store_health -*-
"""
The node health records a store keeps between transactions (issue 11).

Why: every booking and every slot search ranks the nodes by their health
records (L{am.core.health.penalties}); on a testbed that has run a while
nearly every node has one, and reading them all (thousands of rows) on each
request was most of its cost.

How they stay coherent: C{meta.health_version} is bumped, in the writing
transaction, by every write of C{node_health} (a record put, a node's
deleted), whichever controller or process writes. Each connection keeps the
records of one version (L{am.core.health.HealthRecords}, read-only), loaded
in one statement with the version they belong to; a transaction whose
snapshot has another version loads them again. Records are never kept while
a health write of the open database transaction is uncommitted (it may roll
back, and another writer then commit the same version number), so only
committed records are ever kept.
"""

from __future__ import annotations

from typing import Any, Callable, Iterable, Optional

from am.core.health import HealthRecords
from am.core.model import NodeHealth

#: The records and the version they belong to, in one snapshot (one row when there are none).
LOAD = (
    "SELECT m.value, h.nodeid, h.gaps, h.last_gap, h.failures, h.last_failure "
    "FROM meta m LEFT JOIN node_health h ON 1 = 1 WHERE m.key = 'health_version'"
)
VERSION = "SELECT value FROM meta WHERE key = 'health_version'"
BUMP = "UPDATE meta SET value = value + 1 WHERE key = 'health_version'"


def decode(rows: Iterable[tuple]) -> tuple[Any, HealthRecords]:
    """
    The version and the records of the rows of L{LOAD}.
    """
    rows = list(rows)
    return rows[0][0], HealthRecords(NodeHealth(*r[1:]) for r in rows if r[1] is not None)


class HealthCache:
    """
    The health records of one connection (one transaction at a time).

    @ivar pending: a health write of the open database transaction is not committed yet.
    """

    def __init__(self) -> None:
        self._version: Any = None
        self._records: Optional[HealthRecords] = None
        self.pending = False

    def records(self, version: Callable[[], Any], load: Callable[[], tuple[Any, HealthRecords]]) -> HealthRecords:
        """
        The kept records if C{version()} (the transaction's) is theirs, else
        C{load()} (a version and its records), kept unless a write is pending.
        """
        if not self.pending and self._records is not None and version() == self._version:
            return self._records
        loaded, records = load()
        if not self.pending:
            self._version, self._records = loaded, records
        return records

    def wrote(self) -> None:
        """
        The open transaction wrote health: keep nothing until it ends.
        """
        self.pending = True

    def ended(self) -> None:
        """
        The database transaction committed or rolled back.
        """
        self.pending = False

    def forget(self) -> None:
        """
        Keep nothing (a new connection, maybe to another database).
        """
        self._version = self._records = None
