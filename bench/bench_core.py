"""
Benchmark of the scheduling core on the real SQLite store (not a test).

1,000 nodes with 10,000 and with 100,000 existing schedules: median and p99 of
an allocation (nodecount 5, a filter, as soon as possible) and of a slot search.
Target: median under 20 ms at 100,000 schedules, and no growth with the total.

Run: python bench/bench_core.py [--allocations N] [--postgres URL]

With C{--postgres URL} (a database where a schema may be created) the same runs
are made on the PostgreSQL store too, each in a schema of its own, dropped after.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import random
import secrets
import statistics
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from am.core import accounts, allocation  # noqa: E402
from am.core.allocation import AllocationRequest  # noqa: E402
from am.core.model import Experiment, Node, Schedule  # noqa: E402
from am.core.policy import Policy  # noqa: E402
from am.store.sqlite import SQLiteDatabase  # noqa: E402

NOW = 1_000_080_000
POLICY = Policy(maintenance=())
NODES = 1000
FILTER = "type:testing,-model:apu2d"


def populate(db: SQLiteDatabase, schedules: int) -> int:
    rng = random.Random(1)
    models = ["apu1d", "apu2d", "apu3"]

    def fill(txn):
        for i in range(NODES):
            txn.putNode(Node(id=str(i), hostname=f"node{i}", heartbeat=NOW, inventoryTags={
                "type": "testing" if i % 4 else "deployed", "model": models[i % 3],
                "country": rng.choice(["se", "no", "es", "it"])}))
        owner = accounts.addUser(txn, "bench", "user", NOW, POLICY, fingerprint="b" * 40).id
        expid = txn.addExperiment(Experiment(name="bulk", ownerid=owner, script="img", created=NOW))
        perNode = schedules // NODES
        span = POLICY.horizon // perNode
        rows = []
        for i in range(NODES):
            for k in range(perNode):
                start = NOW + k * span + rng.randrange(0, max(1, span - 3600 - 240))
                rows.append(Schedule(expid=expid, nodeid=str(i), start=start, stop=start + 3600))
        txn.addSchedules(rows)
        return owner

    return db.run(fill)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


@contextlib.contextmanager
def sqliteDatabase():
    with tempfile.TemporaryDirectory() as tmp:
        yield SQLiteDatabase(os.path.join(tmp, "bench.db")), lambda: None


@contextlib.contextmanager
def postgresDatabase(url: str):
    """
    A PostgreSQL database in a new schema of C{url}; the second value, run
    after populating, updates the planner's statistics as autovacuum would.
    """
    import urllib.parse

    import psycopg

    from am.store.postgres import PostgresDatabase

    schema = f"marvin_bench_{secrets.token_hex(4)}"
    parts = urllib.parse.urlsplit(url)
    query = dict(urllib.parse.parse_qsl(parts.query), options=f"-csearch_path={schema}")
    query = urllib.parse.urlencode(query, quote_via=urllib.parse.quote)
    inSchema = f"{parts.scheme}://{parts.netloc}{parts.path}?{query}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(f'CREATE SCHEMA "{schema}"')
        try:
            yield PostgresDatabase(inSchema), lambda: psycopg.connect(inSchema, autocommit=True).execute("ANALYZE")
        finally:
            admin.execute(f'DROP SCHEMA "{schema}" CASCADE')


def measure(schedules: int, allocations: int, opener=sqliteDatabase) -> dict[str, float]:
    with opener() as (db, populated):
        owner = populate(db, schedules)
        populated()
        booking, searching = [], []
        for _ in range(allocations):
            t0 = time.perf_counter()
            db.run(allocation.allocate, AllocationRequest(
                ownerid=owner, name="b", script="img", nodecount=5, duration=3600, nodetypes=FILTER,
                start=0), NOW, POLICY)
            booking.append((time.perf_counter() - t0) * 1000)
            t0 = time.perf_counter()
            db.run(allocation.find, NOW, POLICY, nodecount=5, duration=3600, nodetypes=FILTER, results=1)
            searching.append((time.perf_counter() - t0) * 1000)
        db.close()
    return {
        "alloc_median": statistics.median(booking),
        "alloc_p99": percentile(booking, 0.99),
        "find_median": statistics.median(searching),
        "find_p99": percentile(searching, 0.99),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--allocations", type=int, default=200)
    parser.add_argument("--postgres", metavar="URL", help="also run on PostgreSQL, in a new schema of this database")
    args = parser.parse_args()
    stores = [("SQLite", sqliteDatabase)]
    if args.postgres:
        stores.append(("PostgreSQL", lambda: postgresDatabase(args.postgres)))
    for name, opener in stores:
        print(name)
        report(args.allocations, opener)


def report(allocations: int, opener) -> None:
    rows = {}
    print(f"{'schedules':>10} {'alloc med ms':>13} {'alloc p99 ms':>13} {'find med ms':>12} {'find p99 ms':>12}")
    for count in (10_000, 100_000):
        r = rows[count] = measure(count, allocations, opener)
        print(f"{count:>10} {r['alloc_median']:>13.2f} {r['alloc_p99']:>13.2f} "
              f"{r['find_median']:>12.2f} {r['find_p99']:>12.2f}")
    ratio = rows[100_000]["alloc_median"] / rows[10_000]["alloc_median"]
    fratio = rows[100_000]["find_median"] / rows[10_000]["find_median"]
    print(f"ratio 100k/10k: allocation median x{ratio:.2f}, search median x{fratio:.2f} (1.0 = no growth)")
    verdict = "PASS" if rows[100_000]["alloc_median"] < 20 and rows[100_000]["find_median"] < 20 else "MISS"
    print(f"target median < 20 ms at 100,000 schedules: {verdict}")


if __name__ == "__main__":
    main()
