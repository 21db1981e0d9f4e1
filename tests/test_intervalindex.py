"""
The interval index: its lookups, its coherence with the SQLite store (commits,
rollbacks, other connections) and that a stale index never double books.
"""

from __future__ import annotations

import os
import random
import tempfile
from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from am.core import slots
from am.core.intervalindex import FOREVER, UNKNOWN, IntervalIndex
from am.core.model import Experiment, Schedule, User
from am.core.nodefilter import Filter
from am.core.policy import Policy
from am.store.sqlite import SQLiteDatabase
from am.testing import demoNodes
from tests.core_helpers import NOW, CoreTestCase, assertNoOverlap


class LookupTests(SynchronousTestCase):
    """
    C{freeFrom} and C{windows} over per-node arrays.
    """

    def setUp(self) -> None:
        self.index = IntervalIndex()
        self.index.load([("a", 100, 200), ("a", 300, 1300), ("b", 50, 60)])

    def test_longWindowReachesBack(self) -> None:
        """
        A window that started long before C{low} is found (the node's longest window).
        """
        self.assertEqual(self.index.windows("a", 1200, 1250), [(300, 1300)])

    def test_freeFrom(self) -> None:
        """
        The next start at which a node is free, across a chain of conflicts:
        a gap too short for the duration (with padding) does not free it.
        """
        free = self.index.freeFrom
        self.assertEqual(
            [free("a", 0, 50, 10), free("a", 0, 100, 10), free("a", 150, 50, 10), free("a", 150, 90, 10),
             free("a", 150, 70, 10), free("c", 0, 10, 10)],
            [None, 1310, 210, 1310, 210, None],
        )

    def test_freeThrough(self) -> None:
        """
        A free node stays free through the last start before its next window
        (padded) blocks, and not one second longer.
        """
        self.assertEqual(self.index.freeThrough("a", 210, 70, 10), 220)
        self.assertIsNone(self.index.freeFrom("a", 220, 70, 10))
        self.assertIsNotNone(self.index.freeFrom("a", 221, 70, 10))
        self.assertEqual(self.index.freeThrough("a", 1310, 70, 10), FOREVER)

    def test_pendingUnknown(self) -> None:
        """
        A node the open transaction wrote is not answered for.
        """
        self.index.touch(["b"])
        self.assertEqual(self.index.freeFrom("b", 0, 100, 0), UNKNOWN)
        self.index.replace(["b"], [])
        self.assertIsNone(self.index.freeFrom("b", 0, 100, 0))
        self.assertEqual(self.index.changed[-2:], ["b", "b"])


def _book(nodeid: str, start: int, stop: int):
    def add(txn: Any) -> None:
        owner = txn.addUser(User(name="u", role="user", fingerprint=os.urandom(20).hex()))
        expid = txn.addExperiment(Experiment(name="x", ownerid=owner, script="s", start=start, stop=stop))
        txn.addSchedules([Schedule(expid=expid, nodeid=nodeid, start=start, stop=stop)])
    return add


class CoherenceTests(SynchronousTestCase):
    """
    The store's index holds exactly the committed blocking windows.
    """

    def setUp(self) -> None:
        directory = tempfile.mkdtemp()
        self.path = os.path.join(directory, "m.db")
        self.db = SQLiteDatabase(self.path)
        for node in demoNodes(3, NOW):
            self.db.run(lambda txn, n=node: txn.putNode(n))
        self.addCleanup(self.db.close)

    def agrees(self) -> None:
        index = self.db.run(lambda txn: txn.intervalIndex())
        rows = self.db.run(lambda txn: txn.blockingIntervals(-2**62, 2**62))
        fromDb = sorted((i.nodeid, i.start, i.stop) for i in rows)
        fromIndex = sorted((n, a, b) for n in ("1", "2", "3") for a, b in index.windows(n, -2**62, 2**62))
        self.assertEqual(fromIndex, fromDb)
        self.assertEqual(index.pending, set())

    def test_commitAndRollback(self) -> None:
        """
        Committed windows appear, a rolled-back one never does, and a moved
        schedule leaves its old node.
        """
        self.agrees()
        self.db.run(_book("1", NOW + 100, NOW + 200))
        self.agrees()

        def fails(txn: Any) -> None:
            _book("2", NOW, NOW + 50)(txn)
            raise RuntimeError("no")

        self.assertRaises(RuntimeError, self.db.run, fails)
        self.agrees()

        def move(txn: Any) -> None:
            [schedule] = txn.schedulesOfNode("1", 0, 2**62)
            schedule.nodeid = "3"
            txn.updateSchedule(schedule)

        self.db.run(move)
        self.agrees()
        self.assertEqual(self.db.run(lambda txn: txn.intervalIndex()).windows("1", 0, 2**62), [])

    def test_otherConnection(self) -> None:
        """
        A commit by another connection (another process) is seen: the index is reloaded.
        """
        self.agrees()
        other = SQLiteDatabase(self.path)
        self.addCleanup(other.close)
        other.run(_book("2", NOW + 100, NOW + 200))
        self.agrees()

    def test_staleIndexNeverDoubleBooks(self) -> None:
        """
        An index that lost a window (as if another controller booked) leads
        the search to that node; the check against the database refuses it,
        repairs the index and another node is chosen.
        """
        self.db.run(_book("1", NOW + 100, NOW + 1000))
        index = self.db.run(lambda txn: txn.intervalIndex())
        index.replace(["1"], [])  # the index now believes node 1 is free
        policy = Policy(maintenance=())

        def choose(txn: Any) -> Any:
            eligible = slots.eligibleNodes(txn.nodeView(), Filter(), None, NOW, policy)
            return slots.search(txn, eligible, 1, 300, NOW + 200, NOW + 10**6, extent=False)

        found, _ = self.db.run(choose)
        self.assertEqual(found[0].start, NOW + 200)
        self.assertNotEqual(found[0].nodes, ((("1",),),))
        self.assertEqual(index.windows("1", 0, 2**62), [(NOW + 100, NOW + 1000)])


class _NoIndex:
    """
    A transaction whose store keeps no index: the search asks the database.
    """

    def __init__(self, txn: Any) -> None:
        self._txn = txn

    def __getattr__(self, name: str) -> Any:
        return getattr(self._txn, name)

    def intervalIndex(self) -> None:
        return None


class SameAnswerTests(CoreTestCase):
    """
    Searches through the index (and walks kept between them) find what the
    database search finds, through bookings, cancellations and rollbacks.
    """

    nodes = 12
    policy = Policy(maintenance=(), requireHeartbeat=False)

    pairing = slots.SINGLE

    def test_randomBookingsAndCancellations(self) -> None:
        rng = random.Random(11)
        booked = []
        for step in range(150):
            duration = rng.choice([300, 600, 1800])
            query = dict(nodecount=rng.choice([1, 1, 2, 3]), duration=duration, results=rng.choice([1, 3]))
            units = query["nodecount"] if not self.pairing.paired else 1

            def both(txn: Any, q: dict = query) -> tuple[Any, Any]:
                eligible = slots.eligibleNodes(txn.nodeView(), Filter(), None, NOW, self.policy, self.pairing)
                plain = slots.eligibleNodes(txn.nodeView(), Filter(), None, NOW, self.policy, self.pairing)
                args = (units, q["duration"], NOW + 60, NOW + 10**6, (0,), q["results"])
                return slots.search(txn, eligible, *args), slots.search(_NoIndex(txn), plain, *args)

            viaIndex, viaDb = self.inTxn(both)
            self.assertEqual(viaIndex, viaDb, f"step {step}")
            if booked and rng.random() < 0.3:
                experiment = booked.pop(rng.randrange(len(booked)))
                self.successResultOf(self.scheduler.deleteExperiment(experiment.id, self.alice.id))
            else:
                result = self.book(start=0, duration=duration, nodecount=query["nodecount"])
                booked.append(result.experiment)
        assertNoOverlap(self.blocking(), self.policy.padding)


class SameAnswerPairTests(SameAnswerTests):
    """
    The same with whole head/tail pairs as units (a pair is free from the
    later of its nodes' next free starts).
    """

    pairing = slots.Pairing(heads=True, tails=True, paired=True)

    def setUp(self) -> None:
        super().setUp()
        for head in range(1, 9, 2):
            self.successResultOf(self.scheduler.setNodePair(str(head), str(head + 1)))
