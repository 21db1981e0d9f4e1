"""
What a heartbeat batch and a booking cost on PostgreSQL, without HTTP (issue
11; not a test): each runs straight on one L{PostgresDatabase}, as a store
thread of the controller runs it, and each figure comes with this process's
CPU (the controller's share) and the CPU of its server backend, read from
/proc (so the server must run on this machine). Steadier than the REST benches
on a shared box: one thread, no load client, per-process CPU.

    .venv/bin/python bench/bench_pgstore.py --postgres postgresql://postgres@127.0.0.1/postgres

C{--auto-plans} also runs the heartbeat batches with PostgreSQL's usual plan
choice instead of their generic plans (am/store/postgres.py C{_GENERIC}), in
alternation, to show what that costs the server.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from typing import Any, Callable

from loadsetup import (  # noqa: I100 (bench/ on the path)
    SCRIPT, _cpu, createDatabase, databaseUrl, defaultPostgres, populate, referenceLoop,
)

from am.core import commands
from am.core.allocation import AllocationRequest, allocate
from am.core.events import runCommand
from am.core.policy import Policy
from am.store import pgahead
from am.store.postgres import PostgresDatabase

POLICY = Policy(maintenance=(), requireHeartbeat=False, defaultQuotaTime=10**15,
                defaultQuotaData=10**15, defaultQuotaStorage=10**15)


class Meter:
    """
    Wall time, this process's CPU and the server backend's CPU of a run of operations.
    """

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    def measure(self, run: Callable[[], int]) -> tuple[float, float, float]:
        """
        C{run()} (returning how many operations it made): microseconds of
        wall time, controller CPU and server CPU per operation.
        """
        backend = self.db._connection.info.backend_pid
        wall, cpu, server = time.perf_counter(), time.process_time(), _cpu(backend)
        count = run()
        if self.db._connection.info.backend_pid != backend:
            raise RuntimeError("the connection was replaced during the run")
        scale = 1e6 / count
        return (
            (time.perf_counter() - wall) * scale,
            (time.process_time() - cpu) * scale,
            (_cpu(backend) - server) * scale,
        )


def _setGeneric(on: bool) -> None:
    pgahead.together.genericPlans = on  # type: ignore[attr-defined]
    pgahead.alone.genericPlans = on  # type: ignore[attr-defined]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--postgres", metavar="URL", help="a PostgreSQL server on this machine (a database of our own is made)",
        default=defaultPostgres(),
    )
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--operations", type=int, default=600, help="batches or bookings per measured run")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", default="1,4,16", help="heartbeats per batch")
    parser.add_argument("--auto-plans", action="store_true")
    args = parser.parse_args()

    name = f"marvin_pgstore_{os.getpid()}"
    createDatabase(args.postgres, name)
    url = databaseUrl(args.postgres, name)
    now = int(time.time())
    try:
        populate(url, args.nodes, args.tasks, now)
        db = PostgresDatabase(url)
        run(db, args, now)
        db.close()
    finally:
        createDatabase(args.postgres, name, drop=True)


def run(db: PostgresDatabase, args: argparse.Namespace, now: int) -> None:
    nodeUsers = db.read(lambda txn: {u.nodeid: u.id for u in txn.listUsers() if u.role == "node"})
    owner = db.read(lambda txn: txn.findUser(name="bench").id)
    nodes = sorted(nodeUsers, key=int)
    meter = Meter(db)
    clock = [now]
    booked = [0]

    def beats(size: int) -> Callable[[], int]:
        def go() -> int:
            for k in range(0, args.operations * size, size):
                clock[0] += 1
                batch = [nodes[(k + j) % len(nodes)] for j in range(size)]
                work: list[Any] = [
                    (runCommand, (commands.heartbeat, (nodeUsers[n], n, clock[0], POLICY), {}, ()), {}) for n in batch
                ]
                for ok, outcome in db.runBatch(work):
                    if not ok:
                        outcome.raiseException()
            return args.operations
        return go

    def bookings() -> int:
        for _ in range(args.operations):
            booked[0] += 1
            # As bench_rest_load's: one node, as soon as possible (each takes the next free node).
            request = AllocationRequest(ownerid=owner, name=f"b{booked[0]}", script=SCRIPT, nodecount=1,
                                        duration=300, nodetypes="type:testing")
            db.run(runCommand, allocate, (request, now, POLICY), {}, ())
        return args.operations

    variants: list[tuple[str, Callable[[], int], bool]] = []
    for size in (int(s) for s in args.batches.split(",")):
        variants.append((f"heartbeat batch of {size:>2}", beats(size), True))
        if args.auto_plans:
            variants.append((f"  of {size:>2}, auto plans", beats(size), False))
    variants.append(("any-node booking", bookings, True))

    for _label, work, generic in variants:  # warm: statements prepared, caches filled
        _setGeneric(generic)
        work()
    figures: dict[str, list[tuple[float, float, float]]] = {label: [] for label, _, _ in variants}
    for _ in range(args.rounds):
        for label, work, generic in variants:
            _setGeneric(generic)
            figures[label].append(meter.measure(work))
    _setGeneric(True)

    print(f"PostgreSQL store, no HTTP: {args.nodes} nodes, {args.tasks} tasks before the start, "
          f"reference loop {referenceLoop():.0f} ms (one core, lower is faster), "
          f"{args.operations} operations a run, medians of {args.rounds} rounds (lowest-highest), "
          "microseconds per operation:")
    print(f"  {'':26} {'wall':>18} {'controller CPU':>18} {'server CPU':>18}")
    for label, runs in figures.items():
        cells = []
        for i in range(3):
            values = [r[i] for r in runs]
            cells.append(f"{statistics.median(values):6.0f} ({min(values):4.0f}-{max(values):4.0f})")
        print(f"  {label:26} " + " ".join(f"{c:>18}" for c in cells))
    print("(a heartbeat batch is one operation, of as many nodes' heartbeats; the server's CPU is its\n"
          " backend's, read from /proc in 10 ms ticks)")


if __name__ == "__main__":
    main()
