"""
Several processes on one SQLite file (am/store/sharedfile.py): the interval
index follows another connection's bookings and cancellations node by node
(a commit of heartbeats alone leaves it as it is), and shared writers hold an
OS lock through their transactions. Two connections on one file stand for
two processes: SQLite cannot tell them apart.
"""

from __future__ import annotations

import errno
import fcntl
import os
import tempfile
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from am.core import states
from am.core.model import Experiment, Schedule, User
from am.store import sharedfile
from am.store.sqlite import SQLiteDatabase
from am.testing import demoNodes
from tests.core_helpers import NOW


def _book(nodeid: str, start: int, stop: int):
    def add(txn: Any) -> int:
        owner = txn.addUser(User(name="u", role="user", fingerprint=os.urandom(20).hex()))
        expid = txn.addExperiment(Experiment(name="x", ownerid=owner, script="s", start=start, stop=stop))
        [schedid] = txn.addSchedules([Schedule(expid=expid, nodeid=nodeid, start=start, stop=stop)])
        return schedid
    return add


def _cancel(nodeid: str):
    def cancel(txn: Any) -> None:
        for schedule in txn.schedulesOfNode(nodeid, 0, 2**62):
            schedule.status = states.CANCELED
            txn.updateSchedule(schedule)
    return cancel


def twoConnections(case: SynchronousTestCase, nodes: int) -> tuple[str, SQLiteDatabase, SQLiteDatabase]:
    """
    A new file's path and two shared connections on it (closed at the
    test's end), the other one having stored C{nodes} demo nodes.
    """
    path = os.path.join(tempfile.mkdtemp(), "m.db")
    mine = SQLiteDatabase(path, shared=True)
    other = SQLiteDatabase(path, shared=True)
    case.addCleanup(mine.close)
    case.addCleanup(other.close)
    for node in demoNodes(nodes, NOW):
        other.run(lambda txn, n=node: txn.putNode(n))
    return path, mine, other


class CatchUpTests(SynchronousTestCase):
    """
    One connection's index after another connection's commits.
    """

    def setUp(self) -> None:
        self.path, self.mine, self.other = twoConnections(self, 3)
        self.index = self.mine.run(lambda txn: txn.intervalIndex())
        self.loads = 0
        load = self.index.load

        def counted(rows: Any) -> None:
            self.loads += 1
            load(rows)

        self.index.load = counted  # type: ignore[method-assign]

    def windows(self, nodeid: str) -> list[tuple[int, int]]:
        index = self.mine.run(lambda txn: txn.intervalIndex())
        return list(index.windows(nodeid, -2**62, 2**62))

    def test_bookingAndCancellation(self) -> None:
        """
        Another connection's booking is in the index at the next
        transaction, its cancellation frees the node, and neither reloads
        the whole index.
        """
        self.other.run(_book("2", NOW + 100, NOW + 200))
        self.assertEqual(self.windows("2"), [(NOW + 100, NOW + 200)])
        self.other.run(_cancel("2"))
        self.assertEqual(self.windows("2"), [])
        self.assertEqual(self.loads, 0)
        self.assertTrue(self.index.valid)

    def test_movedSchedule(self) -> None:
        """
        A schedule another connection moves to another node leaves its old node.
        """
        self.other.run(_book("1", NOW + 100, NOW + 200))

        def move(txn: Any) -> None:
            [schedule] = txn.schedulesOfNode("1", 0, 2**62)
            schedule.nodeid = "3"
            txn.updateSchedule(schedule)

        self.assertEqual(self.windows("1"), [(NOW + 100, NOW + 200)])
        self.other.run(move)
        self.assertEqual((self.windows("1"), self.windows("3")), ([], [(NOW + 100, NOW + 200)]))
        self.assertEqual(self.loads, 0)

    def test_heartbeatsLeaveIt(self) -> None:
        """
        A commit of heartbeats (or of a status that keeps the window) by
        another connection logs no change: the index is kept as it is.
        """
        self.other.run(_book("1", NOW + 100, NOW + 200))
        self.windows("1")
        replaced: list[Any] = []
        self.index.replace = lambda *a: replaced.append(a)  # type: ignore[method-assign]
        self.other.run(lambda txn: txn.setHeartbeat("1", NOW + 5, None, None))

        def deploy(txn: Any) -> None:
            [schedule] = txn.schedulesOfNode("1", 0, 2**62)
            schedule.status = states.DEPLOYED
            txn.updateSchedule(schedule)

        self.other.run(deploy)
        self.assertEqual(self.windows("1"), [(NOW + 100, NOW + 200)])
        self.assertEqual((replaced, self.loads), ([], 0))

    def test_ownCommitsNotReread(self) -> None:
        """
        This connection's own bookings are settled after its commit and not
        read again when another connection commits afterwards.
        """
        self.mine.run(_book("1", NOW + 100, NOW + 200))
        replaced: list[Any] = []
        replace = self.index.replace

        def spy(nodeids: Any, rows: Any) -> None:
            replaced.append(sorted(nodeids))
            replace(nodeids, rows)

        self.index.replace = spy  # type: ignore[method-assign]
        self.other.run(_book("2", NOW + 100, NOW + 200))
        self.assertEqual(self.windows("1"), [(NOW + 100, NOW + 200)])
        self.assertEqual(replaced, [["2"]])

    def test_tooManyReloads(self) -> None:
        """
        Past L{sharedfile.CATCH_UP_LIMIT} changes the index is reloaded
        whole, and still agrees with the database.
        """
        self.patch(sharedfile, "CATCH_UP_LIMIT", 2)
        for start in (100, 300, 500):
            self.other.run(_book("3", NOW + start, NOW + start + 100))
        self.assertEqual(len(self.windows("3")), 3)
        self.assertEqual(self.loads, 1)

    def test_trimmedLog(self) -> None:
        """
        The log keeps the last 4,096 changes (trimmed every 256), and a
        catch-up past them reloads the index.
        """
        def many(txn: Any) -> None:
            for i in range(5000):
                _book("1", NOW + 10 * i, NOW + 10 * i + 5)(txn)

        self.other.run(many)
        count, low, high = self.other.run(
            lambda txn: txn._one("SELECT count(*), min(seq), max(seq) FROM schedule_changes")
        )
        self.assertEqual((high, high - low + 1, count), (5000, count, count))
        self.assertTrue(4096 <= count < 4096 + 256, count)
        self.assertEqual(len(self.windows("1")), 5000)


class WriterLockTests(SynchronousTestCase):
    """
    A shared writer holds the lock file through its transaction.
    """

    def tryLock(self, path: str) -> bool:
        fd = os.open(path, os.O_RDWR)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            self.assertIn(e.errno, (errno.EAGAIN, errno.EACCES))
            return False
        finally:
            os.close(fd)
        return True

    def test_heldDuringTransaction(self) -> None:
        """
        Inside a transaction another open file description cannot take the
        lock; before and after it can.
        """
        path = os.path.join(tempfile.mkdtemp(), "m.db")
        db = SQLiteDatabase(path, shared=True)
        self.addCleanup(db.close)
        lock = path + "-writer.lock"
        self.assertTrue(self.tryLock(lock))
        self.assertFalse(db.run(lambda txn: self.tryLock(lock)))
        self.assertTrue(self.tryLock(lock))

    def test_turnSpansTransactions(self) -> None:
        """
        The group commit's turn holds the lock across the transactions run
        in it (each takes it again: re-entrant), and lets it go at its end.
        """
        path = os.path.join(tempfile.mkdtemp(), "m.db")
        db = SQLiteDatabase(path, shared=True)
        self.addCleanup(db.close)
        lock = path + "-writer.lock"
        with db.turn():
            self.assertFalse(self.tryLock(lock))
            db.run(lambda txn: None)
            self.assertFalse(self.tryLock(lock))
            self.assertFalse(db.run(lambda txn: self.tryLock(lock)))
            self.assertFalse(self.tryLock(lock))
        self.assertTrue(self.tryLock(lock))

    def test_turnAloneOnItsFile(self) -> None:
        """
        Not shared, the turn is nothing to take.
        """
        path = os.path.join(tempfile.mkdtemp(), "m.db")
        db = SQLiteDatabase(path)
        self.addCleanup(db.close)
        with db.turn():
            self.assertEqual(db.run(lambda txn: 1), 1)
        self.assertFalse(os.path.exists(path + "-writer.lock"))

    def test_notShared(self) -> None:
        """
        A store alone on its file (the default) makes no lock file.
        """
        path = os.path.join(tempfile.mkdtemp(), "m.db")
        SQLiteDatabase(path).close()
        self.assertFalse(os.path.exists(path + "-writer.lock"))
