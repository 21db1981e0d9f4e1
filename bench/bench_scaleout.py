"""
PostgreSQL scale-out over HTTP (issue 11; not a test): real marvinctld processes,
driven by the closed-loop clients of L{bench_rest_load} (whose set-up, clients and
report it reuses), printing the three PostgreSQL goals:

  1. one controller on PostgreSQL against one on SQLite (goal >= 80 %);
  2. two controllers on one PostgreSQL database against one (goal >= 1.5x) on
     heartbeats (16 clients) and on allocations;
  3. disjoint bookings per second against concurrent connections (1 to 16),
     with the CPU the controllers and the whole machine used: it should grow
     until the CPU is the limit.

Allocations come in two kinds: "any node" (C{nodecount=1}, C{nodetypes=type:testing},
the legacy bench's request by its one user: each locks the first free candidates
and that user's row, so they serialise) and "disjoint" (one named node each, request k on node k mod N at that
node's next window, by one of 32 users in turn: what many experimenters booking different
nodes look like; they lock only their node and their user).

Each deployment is a fresh store: a SQLite file, or a PostgreSQL database named
C{pg11_bench_<pid>_<n>} made on the C{--postgres} server and dropped at the end.

Run (the bench lock keeps benches from overlapping on a shared machine):
  flock /tmp/marvin-bench.lock .venv/bin/python bench/bench_scaleout.py \\
      --postgres 'postgresql:///postgres?host=/var/run/postgresql'     # ~3 min
  ... --rounds 3: everything three times, each goal judged on its median ratio (one
  round's figures move by 15-30 % on a shared virtual box)
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from typing import Callable, Optional

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bench_rest_load as load  # noqa: E402 (the path above first)
import loadsetup as setup  # noqa: E402

USERS = 32


def userFingerprint(n: int) -> str:
    return f"{n + 1:040x}"


def addUsers(database: str, now: int) -> None:
    """
    L{USERS} experimenters with the bench's large quotas.
    """
    from am.core import quotas
    from am.core.model import User
    from am.core.policy import Policy

    policy = Policy(maintenance=(), defaultQuotaTime=setup.BIG_QUOTA, defaultQuotaData=setup.BIG_QUOTA,
                    defaultQuotaStorage=setup.BIG_QUOTA)
    db = setup.openStore(database)

    def fill(txn):
        for n in range(USERS):
            userid = txn.addUser(User(name=f"user{n}", role="user", fingerprint=userFingerprint(n)))
            quotas.currentQuotas(txn, userid, now, policy)

    db.run(fill)
    db.close()


class Deployment:
    """
    A fresh store with nodes, tasks and users, and C{count} controllers on it.
    """

    serial = itertools.count()

    def __init__(
        self, directory: str, postgres: Optional[str], count: int, nodes: int, tasks: int, health: bool = True,
    ) -> None:
        self.postgres = postgres
        self.name = f"pg11_bench_{os.getpid()}_{next(self.serial)}"
        self.controllers: list[setup.Controller] = []
        here = os.path.join(directory, self.name)
        os.makedirs(here)
        if postgres:
            setup.createDatabase(postgres, self.name)
            database = setup.databaseUrl(postgres, self.name)
        else:
            database = os.path.join(here, "marvin.db")
        now = int(time.time())
        self.first, self.last = setup.populate(database, nodes, tasks, now, health)
        addUsers(database, now)
        inventory = setup.writeInventory(here, nodes)
        try:
            for n in range(count):
                config = setup.writeConfig(here, f"ctl{n}", database, inventory)
                self.controllers.append(setup.Controller(config, os.path.join(here, f"ctl{n}.log")))
        except BaseException:
            self.close()
            raise
        self.ports = [c.port for c in self.controllers]
        load.warmCallers(self.ports, nodes)
        # Disjoint windows start past every preloaded task.
        self.base = self.last + 86400

    def close(self) -> None:
        for c in self.controllers:
            c.stop()
        if self.postgres:
            setup.createDatabase(self.postgres, self.name, drop=True)


def machineBusy() -> tuple[float, float]:
    """
    Busy and total jiffies of the whole machine (/proc/stat), for cores busy.
    """
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]
    return sum(fields) - idle, sum(fields)


def phase(deployment: Deployment, name: str, clients: int, duration: float, nodes: int,
          counter: Callable[[], int]) -> dict:
    """
    One closed-loop phase (heartbeats, any-node or disjoint allocations) with
    the machine's busy cores added to the result.
    """

    def disjoint(k: int) -> load.Request:
        n = counter()
        # Booking n: node n mod N, its (n div N)-th window (all within the horizon).
        start = deployment.base + (n // nodes) * 600
        body, headers = load.form({
            "name": f"d{n}", "script": load.SCRIPT, "nodecount": "1", "start": str(start), "duration": "300",
            "options": json.dumps({"nodes": str(1 + n % nodes)}),
        }, userFingerprint(n % USERS))
        return "POST", "/v1/experiments", body, headers

    make = {
        "heartbeats": lambda k: load.heartbeat(k, nodes),
        "any-node": lambda k: load.allocation(k, nodes),
        "disjoint": disjoint,
    }[name]
    busy0, total0 = machineBusy()
    result = load.run(deployment.ports, clients, duration, make, deployment.controllers)
    busy1, total1 = machineBusy()
    result["machine_cores"] = (os.cpu_count() or 1) * (busy1 - busy0) / max(1, total1 - total0)
    load.report(name, result, clients)
    return result


def versus(label: str, ours: list[dict], base: list[dict], goal: float) -> None:
    """
    One goal's ratio of rates, judged on its median over the rounds (each
    round's two figures were measured minutes apart, on the same box's mood).
    """
    clean = not any(r["errors"] for r in ours + base)
    values = [o["rate"] / b["rate"] if b["rate"] else float("nan") for o, b in zip(ours, base)]
    value = statistics.median(values)
    spread = f" (rounds {min(values):.2f}-{max(values):.2f})" if len(values) > 1 else ""
    rates = f"{statistics.median(o['rate'] for o in ours):.1f} / {statistics.median(b['rate'] for b in base):.1f} req/s"
    print(f"  {label}: {rates} = {value:.2f}x{spread}  "
          f"(goal >= {goal:g}x: {load.verdict(value >= goal and clean)})", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--postgres", metavar="URL", help="a PostgreSQL server (databases of our own are made)",
        default=setup.defaultPostgres(),
    )
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=2000, help="tasks written before the start")
    parser.add_argument("--duration", type=float, default=8.0, help="seconds per phase")
    parser.add_argument("--clients", type=int, default=16, help="heartbeat clients")
    parser.add_argument("--booking-clients", type=int, default=8, help="disjoint booking clients (goals 1 and 2)")
    parser.add_argument("--series", default="1,2,4,8,16", help="connections for the disjoint booking series")
    parser.add_argument("--quick", action="store_true", help="3 s phases, series 1,4,16")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run everything this many times and judge each goal on its median ratio")
    parser.add_argument("--no-health", action="store_true",
                        help="no node health records (by default every node has an old one, as on a testbed)")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.series = 3.0, "1,4,16"
    counter = itertools.count().__next__
    print(f"machine: {os.cpu_count()} cores, reference loop {setup.referenceLoop():.0f} ms (one core; lower is "
          f"faster), load average {os.getloadavg()[0]:.2f} at the start; "
          f"{args.nodes} nodes, {args.tasks} tasks, {args.duration:g} s phases; the load client "
          "and PostgreSQL share the cores with the controllers\n", flush=True)
    rounds = [oneRound(args, counter, k) for k in range(1, args.rounds + 1)]

    def each(label: str, kind: str) -> list[dict]:
        return [results[label][kind] for results, _series in rounds]

    print("issue 11, PostgreSQL goals" + (f" (medians of {args.rounds} rounds)" if args.rounds > 1 else "") + ":")
    print(" one controller, PostgreSQL against SQLite (goal >= 0.8x):")
    for kind in ("heartbeats", "any-node", "disjoint"):
        versus(kind, each("postgres x1", kind), each("sqlite x1", kind), 0.8)
    print(" two controllers against one, on PostgreSQL (goal >= 1.5x):")
    for kind in ("heartbeats", "any-node", "disjoint"):
        versus(kind, each("postgres x2", kind), each("postgres x1", kind), 1.5)
    print(" disjoint bookings against connections (two controllers): connections, bookings/s, "
          "controllers' cores, machine's cores busy" + (" (medians)" if args.rounds > 1 else ""))
    for i, (n, _r) in enumerate(rounds[0][1]):
        runs = [series[i][1] for _results, series in rounds]
        rate, cores, busy = (statistics.median(r[key] for r in runs) for key in ("rate", "cores", "machine_cores"))
        print(f"  {n:3d}  {rate:8.1f}/s  {cores:.2f}  {busy:.2f} of {os.cpu_count()}")
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


def oneRound(args: argparse.Namespace, counter: Callable[[], int], k: int) -> tuple[dict, list]:
    """
    SQLite x1, PostgreSQL x1 and x2 in turn: each one's phases, and the
    disjoint booking series of the two controllers.
    """
    if args.rounds > 1:
        print(f"-- round {k} of {args.rounds} --", flush=True)
    results: dict[str, dict[str, dict]] = {}
    series: list = []
    with tempfile.TemporaryDirectory(prefix="marvin-scaleout-") as directory:
        for label, postgres, count in (("sqlite x1", None, 1), ("postgres x1", args.postgres, 1),
                                       ("postgres x2", args.postgres, 2)):
            print(f"{label}:", flush=True)
            deployment = Deployment(directory, postgres, count, args.nodes, args.tasks, not args.no_health)
            try:
                results[label] = {
                    "heartbeats": phase(deployment, "heartbeats", args.clients, args.duration, args.nodes, counter),
                    "any-node": phase(deployment, "any-node", count, args.duration, args.nodes, counter),
                    "disjoint": phase(deployment, "disjoint", args.booking_clients, args.duration, args.nodes,
                                      counter),
                }
                if count == 2:
                    print("  disjoint bookings against connections:", flush=True)
                    series = [
                        (n, phase(deployment, "disjoint", n, args.duration, args.nodes, counter))
                        for n in (int(x) for x in args.series.split(","))
                    ]
            finally:
                deployment.close()
            print(flush=True)
    return results, series


if __name__ == "__main__":
    main()
