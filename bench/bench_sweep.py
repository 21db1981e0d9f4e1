"""
Benchmark of the sweep and of the event path on the real SQLite store (not a test).

100,000 past schedules, all final but C{overdue} still C{defined}: one sweep
that fails them, then the steady state (a sweep with nothing to do, as every
minute); and a status report through the Scheduler with and without event
subscribers.

Run: python bench/bench_sweep.py [--overdue N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from twisted.internet.defer import succeed  # noqa: E402
from twisted.internet.task import Clock  # noqa: E402

from am.core import accounts, lifecycle  # noqa: E402
from am.core.events import runCommand  # noqa: E402
from am.core.model import Experiment, Node, Schedule  # noqa: E402
from am.core.policy import Policy  # noqa: E402
from am.core.scheduler import Scheduler  # noqa: E402
from am.store.sqlite import SQLiteDatabase  # noqa: E402

NOW = 1_000_080_000
POLICY = Policy(maintenance=())
NODES = 1000
HISTORY = 100_000


class SyncStore:
    """
    The SQLite database run inline (no thread), to time the transaction alone.
    """

    def __init__(self, db: SQLiteDatabase) -> None:
        self.db = db

    def transact(self, function, *args, **kwargs):
        return succeed(self.db.run(function, *args, **kwargs))

    read = transact


def populate(db: SQLiteDatabase, overdue: int) -> tuple[int, int]:
    def fill(txn):
        for i in range(NODES):
            txn.putNode(Node(id=str(i), hostname=f"node{i}", heartbeat=NOW))
        owner = accounts.addUser(txn, "bench", "user", NOW, POLICY, fingerprint="b" * 40).id
        node = accounts.addUser(txn, "Node 1", "node", NOW, POLICY, fingerprint="1" * 40).id
        rows = []
        for k in range(HISTORY):
            expid = txn.addExperiment(Experiment(name=f"e{k}", ownerid=owner, script="img", created=NOW))
            start = NOW - 86400 * 30 + k * 20
            status = "defined" if k >= HISTORY - overdue else "finished"
            rows.append(Schedule(expid=expid, nodeid=str(k % NODES), start=start, stop=start + 600,
                                 status=status, chargedTime=600))
        txn.addSchedules(rows)
        return owner, node

    return db.run(fill)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--overdue", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        db = SQLiteDatabase(os.path.join(tmp, "bench.db"))
        owner, node = populate(db, args.overdue)
        clock = Clock()
        clock.advance(NOW)
        scheduler = Scheduler(SyncStore(db), clock, POLICY)
        seen = []
        scheduler.events.subscribe(seen.append)
        began = time.perf_counter()
        result = db.run(runCommand, lifecycle.sweep, (NOW, POLICY), {})[0]
        first = time.perf_counter() - began
        print(f"sweep over {HISTORY} past schedules failing {result.total}: {first * 1000:.1f} ms")
        idle = []
        for _ in range(50):
            began = time.perf_counter()
            d = scheduler.sweep()
            idle.append(time.perf_counter() - began)
            assert d.result.total == 0, d.result
        print(f"idle sweep (nothing to fail), median of 50: {statistics.median(idle) * 1000:.3f} ms")

        timings: dict[int, list[float]] = {0: [], 10: []}
        for subscribers in timings:
            stream = Scheduler(SyncStore(db), clock, POLICY)
            for _ in range(subscribers):
                stream.events.subscribe(lambda event: None)
            for i in range(300):
                start = NOW + 10**6 + (subscribers * 1000 + i) * 1000

                def book(txn, start=start):
                    expid = txn.addExperiment(Experiment(name="r", ownerid=owner, script="img"))
                    txn.addSchedules([Schedule(expid=expid, nodeid="1", start=start, stop=start + 600)])
                    return txn.schedulesOfExperiment(expid)[0].id

                schedid = db.run(book)
                began = time.perf_counter()
                d = stream.changeStatus(schedid, "deployed", node)
                timings[subscribers].append(time.perf_counter() - began)
                assert d.result[1] is True, d.result
        for subscribers, values in timings.items():
            print(f"status report with {subscribers} subscriber(s), median of 300: "
                  f"{statistics.median(values) * 1000:.3f} ms")


if __name__ == "__main__":
    main()
