"""
What SQLite's C{synchronous=FULL} (the booking database's default) costs against
C{NORMAL}: median and p99 of one committed booking (an experiment with five
schedules on a real file), for each level.

Run: python bench/bench_durability.py [--bookings N] [--dir DIR]

DIR should be on the disk the controller's database lives on; the default is
the system's temporary directory (often tmpfs, where a sync costs nothing).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from am.core import accounts  # noqa: E402
from am.core.model import Experiment, Node, Schedule  # noqa: E402
from am.core.policy import Policy  # noqa: E402
from am.store.sqlite import SQLiteDatabase, synchronousLevel  # noqa: E402

NOW = 1_000_080_000
POLICY = Policy(maintenance=())


def measure(path: str, level: str, bookings: int) -> list[float]:
    db = SQLiteDatabase(path, synchronous=level)
    assert synchronousLevel(db._connection) == level

    def setup(txn):
        for i in range(5):
            txn.putNode(Node(id=str(i), hostname=f"n{i}", heartbeat=NOW))
        return accounts.addUser(txn, "bench", "user", NOW, POLICY, fingerprint="c" * 40).id

    owner = db.run(setup)

    def book(txn, k):
        expid = txn.addExperiment(Experiment(name=f"e{k}", ownerid=owner, script="img", created=NOW))
        start = NOW + k * 1000
        txn.addSchedules([Schedule(expid=expid, nodeid=str(i), start=start, stop=start + 600) for i in range(5)])

    times = []
    try:
        for k in range(bookings):
            began = time.perf_counter()
            db.run(book, k)
            times.append((time.perf_counter() - began) * 1000)
    finally:
        db.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("--bookings", type=int, default=500)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for level in ("normal", "full"):
            times = sorted(measure(os.path.join(tmp, f"{level}.db"), level, args.bookings))
            results[level] = times
            p99 = times[min(len(times) - 1, int(len(times) * 0.99))]
            print(f"synchronous={level.upper():6} {args.bookings} bookings: "
                  f"median {statistics.median(times):.3f} ms, p99 {p99:.3f} ms, total {sum(times) / 1000:.2f} s")
    ratio = statistics.median(results["full"]) / statistics.median(results["normal"])
    print(f"FULL / NORMAL median: {ratio:.2f}x (directory {args.dir or tempfile.gettempdir()})")


if __name__ == "__main__":
    main()
