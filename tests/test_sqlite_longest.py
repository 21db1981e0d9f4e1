"""
The longest window ever stored (C{meta.longest_window}) as a SQLite
connection keeps it between transactions: a listing reaches back by it, so a
kept value must never be below the file's, whoever raised it (another
connection, a rolled-back transaction of our own).
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from am.store.sqlite import SQLiteDatabase
from tests.core_helpers import NOW
from tests.test_sharedfile import _book, twoConnections

DAY = 86400


def _meta(path: str) -> int:
    reader = SQLiteDatabase(path)
    try:
        return reader.run(lambda txn: txn._longest())
    finally:
        reader.close()


class KeptLongestTests(SynchronousTestCase):
    """
    Two connections on one file stand for two processes (or a tool beside marvinctld).
    """

    def setUp(self) -> None:
        self.path, self.mine, self.other = twoConnections(self, 2)
        self.mine.run(_book("1", NOW, NOW + 300))

    def listed(self, start: int, stop: int) -> list[Any]:
        return self.mine.run(lambda txn: txn.bookedIn(start, stop))

    def test_anotherConnectionsLongerWindow(self) -> None:
        """
        After another connection stored a window longer than any this one
        knew, a listing of its last hour still finds it.
        """
        self.assertEqual(len(self.listed(NOW, NOW + 600)), 1)
        self.other.run(_book("2", NOW, NOW + 10 * DAY))
        found = self.listed(NOW + 10 * DAY - 3600, NOW + 10 * DAY)
        self.assertEqual([(b.nodeid, b.start, b.stop) for b in found], [("2", NOW, NOW + 10 * DAY)])

    def test_ownRaiseWritten(self) -> None:
        """
        A longer window of our own raises the file's value, which other
        connections (another process, the next start) read.
        """
        self.mine.run(_book("2", NOW, NOW + 2 * DAY))
        self.assertEqual(_meta(self.path), 2 * DAY)
        found = self.other.run(lambda txn: txn.bookedIn(NOW + 2 * DAY - 60, NOW + 2 * DAY))
        self.assertEqual([b.nodeid for b in found], ["2"])

    def test_rolledBackRaiseForgotten(self) -> None:
        """
        A transaction that raised the value and then failed leaves nothing
        kept: the same window booked again is written to the file.
        """
        def failing(txn: Any) -> None:
            _book("2", NOW, NOW + 3 * DAY)(txn)
            raise ValueError("no")

        self.assertRaises(ValueError, self.mine.run, failing)
        self.assertEqual(_meta(self.path), 300)
        self.mine.run(_book("2", NOW, NOW + 3 * DAY))
        self.assertEqual(_meta(self.path), 3 * DAY)

    def test_keptBetweenTransactions(self) -> None:
        """
        With nothing else writing, the value is read once, not per listing.
        """
        self.listed(NOW, NOW + 60)
        statements: list[str] = []
        self.mine._connection.set_trace_callback(statements.append)
        self.addCleanup(self.mine._connection.set_trace_callback, None)
        self.listed(NOW, NOW + 60)
        self.mine.run(_book("2", NOW + 600, NOW + 900))
        self.assertFalse([s for s in statements if "longest_window" in s], statements)
