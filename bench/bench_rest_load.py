"""
REST load on real marvinctld processes, against the legacy figures of issue 11 (not a test).

Starts one or two controllers (C{python -m am.ctl.service}) with a configuration of
its own: the plain listener on loopback, 127.0.0.1 as trusted proxy, so clients
speak as users and nodes with the C{VERIFIED}/C{SSL_FINGERPRINT} headers (no TLS).
The store is a fresh SQLite file, or with C{--postgres URL} a database of its own
created on that server and dropped at the end. N nodes with 2 interfaces each are
listed in a static inventory file it writes; the same nodes, one node user each,
a bench user and C{--tasks} tasks are written into the store before the
controller starts (bulk rows: booking 10k tasks over HTTP would take minutes).

Then closed-loop clients (threads, one persistent C{http.client} connection each,
in this process) drive it phase by phase for a fixed time:

  - heartbeats: C{--clients} nodes (default 16) C{PUT /v1/resources/<id>};
  - allocations: C{--query-clients} (default 1) C{POST /v1/experiments}, 1 node, 5 min;
  - finds: C{GET /v1/schedules/find} (1 node, 5 min, earliest);
  - lists: C{GET /v1/schedules?start=&stop=} over a C{--window} within the tasks;
  - pages: the same with C{limit=--page} (the first page of the window; the
    cursor paging of docs/rest.md);
  - feeds (not by default): the calendar feed C{GET /v1/schedules.json} of such a window.

For each phase: rate, p50/p99 latency, controller CPU seconds per request (from
/proc/<pid>/stat, all controllers summed), controller RSS, the ratio to the legacy
figures (issue 11's table) and whether the issue's goal is met. The client shares
the machine's cores with the controller(s); its own CPU is printed too.

With C{--controllers 2} (needs C{--postgres}) two controllers share the database
and client i talks to controller i mod 2. With C{--workers N} the one controller
runs N processes on its port (C{workers: N}, docs/sqlite.md, docs/postgresql.md); the
CPU is that of all of them, and the heartbeat line says each one's share.

With C{--rounds N} the whole session runs N times (a fresh set-up each) and the
goals are judged on the medians, each figure shown with its range: on a shared
or virtual machine one round's figures can move by 15 % or more.

Run:  .venv/bin/python bench/bench_rest_load.py            # ~2 min, 1,000 nodes, 10k tasks
      .venv/bin/python bench/bench_rest_load.py --scale    # and the flatness and memory goals (+~5 min)
      .venv/bin/python bench/bench_rest_load.py --quick    # ~20 s
      .venv/bin/python bench/bench_rest_load.py --rounds 3 # ~6 min, the goals on medians
      .venv/bin/python bench/bench_rest_load.py --postgres 'postgresql:///postgres?host=/var/run/postgresql' \\
          --controllers 2
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import random
import statistics
import tempfile
import threading
import time
import urllib.parse
from typing import Callable, Optional

from loadsetup import (
    SCRIPT, USER_FINGERPRINT, Controller, createDatabase, databaseUrl, interfaces, nodeFingerprint, populate,
    referenceLoop, writeConfig, writeInventory,
)

# Issue 11's legacy figures (Python 2.7 marvinctld, same 2-core machine), as (low, high).
LEGACY = {
    "heartbeat_rate": (182.0, 200.0),
    "allocation_p50": (8.1, 9.0),
    "allocation_p99": (12.8, 13.3),
    "allocation_rate": (109.0, 121.0),
    "find_p50": (8.5, 9.4),
    "find_p99": (9.1, 10.7),
    "list_p50": (9.5, 10.2),
}


# -- the load ----------------------------------------------------------------------------


Request = tuple[str, str, Optional[bytes], dict]


class Client:
    """
    One persistent HTTP/1.1 connection; reconnects when the server closes it.
    """

    def __init__(self, port: int) -> None:
        self.port = port
        self.connection: Optional[http.client.HTTPConnection] = None

    def call(self, request: Request) -> int:
        method, path, body, headers = request
        for attempt in (0, 1):
            if self.connection is None:
                self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.connection.request(method, path, body=body, headers=headers)
                response = self.connection.getresponse()
                response.read()
                if response.will_close:
                    self.close()
                return response.status
            except (http.client.HTTPException, ConnectionError):
                self.close()
                if attempt:
                    raise
        raise AssertionError("unreachable")

    def close(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None


def form(fields: dict, fingerprint: str) -> tuple[bytes, dict]:
    return urllib.parse.urlencode(fields).encode(), {
        "Content-Type": "application/x-www-form-urlencoded", "VERIFIED": "SUCCESS", "SSL_FINGERPRINT": fingerprint,
    }


def heartbeat(k: int, nodes: int) -> Request:
    i = 1 + k % nodes
    body, headers = form({"maintenance": "0", "limit": "3", "interfaces": json.dumps(interfaces(i))},
                         nodeFingerprint(i))
    return "PUT", f"/v1/resources/{i}", body, headers


USER = {"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": USER_FINGERPRINT}


def allocation(k: int, nodes: int) -> Request:
    body, headers = form({"name": f"load-{k}", "nodecount": "1", "script": SCRIPT, "duration": "300",
                          "nodetypes": "type:testing"}, USER_FINGERPRINT)
    return "POST", "/v1/experiments", body, headers


def find(k: int, nodes: int) -> Request:
    return "GET", "/v1/schedules/find?nodecount=1&duration=300&nodetypes=type:testing", None, USER


def run(ports: list[int], clients: int, duration: float, make: Callable[[int], Request],
        controllers: list[Controller]) -> dict:
    """
    C{clients} closed-loop threads for C{duration} s; client i talks to
    C{ports[i % len(ports)]}. Latencies in ms; CPU of controllers and of this process.
    """
    latencies: list[list[float]] = [[] for _ in range(clients)]
    statuses: dict[int, int] = {}
    lock = threading.Lock()
    counter = iter(range(10**9))
    start = threading.Event()
    end = [0.0]

    def work(n: int) -> None:
        client = Client(ports[n % len(ports)])
        mine = latencies[n]
        start.wait()
        try:
            while time.monotonic() < end[0]:
                with lock:
                    k = next(counter)
                request = make(k)
                t0 = time.perf_counter()
                status = client.call(request)
                mine.append((time.perf_counter() - t0) * 1000)
                if status >= 300:
                    with lock:
                        statuses[status] = statuses.get(status, 0) + 1
        except Exception as e:  # counted, the phase goes on with the other clients
            with lock:
                statuses[type(e).__name__] = statuses.get(type(e).__name__, 0) + 1
        finally:
            client.close()

    threads = [threading.Thread(target=work, args=(n,), daemon=True) for n in range(clients)]
    for t in threads:
        t.start()
    cpu0 = sum(c.cpuSeconds() for c in controllers)
    each0 = [x for c in controllers for x in c.cpuEach()]
    own0 = sum(os.times()[:2])
    t0 = time.monotonic()
    end[0] = t0 + duration
    start.set()
    for t in threads:
        t.join(duration + 120)
    elapsed = time.monotonic() - t0
    each = [(b - a) / elapsed for a, b in zip(each0, [x for c in controllers for x in c.cpuEach()])]
    everything = sorted(x for mine in latencies for x in mine)
    count = len(everything)

    def pct(q: float) -> float:
        return everything[min(count - 1, int(q * count))] if count else float("nan")

    return {
        "count": count, "rate": count / elapsed, "p50": pct(0.5), "p99": pct(0.99),
        "cpu_ms": 1000 * (sum(c.cpuSeconds() for c in controllers) - cpu0) / max(1, count),
        "cores": (sum(c.cpuSeconds() for c in controllers) - cpu0) / elapsed,
        "client_cores": (sum(os.times()[:2]) - own0) / elapsed, "cores_each": each,
        "rss": [round(c.rssMB(), 1) for c in controllers], "errors": statuses,
    }


# -- report ------------------------------------------------------------------------------


def ratio(ours: float, legacy: tuple[float, float], higherBetter: bool) -> str:
    """
    How many times better than the legacy range (above 1 is better), as a range.
    """
    if ours != ours or ours == 0:
        return "n/a"
    values = sorted((ours / v) if higherBetter else (v / ours) for v in legacy)
    return f"{values[0]:.2f}-{values[1]:.2f}x"


def verdict(ok: bool) -> str:
    return "MET" if ok else "NOT met"


def report(name: str, result: dict, clients: int) -> None:
    errors = ", ".join(f"{k}: {v}" for k, v in result["errors"].items()) or "none"
    print(f"  {name:<11} {clients:>2} client(s)  {result['count']:6d} req  {result['rate']:8.1f} req/s  "
          f"p50 {result['p50']:7.2f} ms  p99 {result['p99']:7.2f} ms  "
          f"ctl CPU {result['cpu_ms']:.3f} ms/req ({result['cores']:.2f} cores)  "
          f"{'(' + ' + '.join(f'{c:.2f}' for c in result['cores_each']) + ' by process)  ' if len(result['cores_each']) > 1 else ''}"
          f"client {result['client_cores']:.2f} cores  RSS {'+'.join(map(str, result['rss']))} MB  errors {errors}",
          flush=True)


# The figures of a phase that rounds are combined on (their medians).
MEDIAN_KEYS = ("rate", "p50", "p99", "cpu_ms", "cores", "client_cores")


def medians(rounds: list[dict]) -> dict:
    """
    Each phase's figures as the medians over C{rounds}, with C{spread} holding
    each figure's (lowest, highest) and the errors of every round summed.
    """
    combined = {}
    for phase in rounds[0]:
        runs = [r[phase] for r in rounds]
        result = dict(runs[-1])
        result["spread"] = {}
        for key in MEDIAN_KEYS:
            values = [run[key] for run in runs]
            result[key] = statistics.median(values)
            result["spread"][key] = (min(values), max(values))
        result["count"] = sum(run["count"] for run in runs)
        errors: dict = {}
        for run in runs:
            for kind, n in run["errors"].items():
                errors[kind] = errors.get(kind, 0) + n
        result["errors"] = errors
        combined[phase] = result
    return combined


def reportMedians(combined: dict, rounds: int) -> None:
    print(f"\nmedians of {rounds} rounds (lowest-highest):")
    for phase, r in combined.items():
        low, high = zip(*(r["spread"][k] for k in ("rate", "p50", "p99", "cpu_ms")))
        print(f"  {phase:<11} {r['rate']:8.1f} req/s ({low[0]:.0f}-{high[0]:.0f})  "
              f"p50 {r['p50']:.2f} ms ({low[1]:.2f}-{high[1]:.2f})  p99 {r['p99']:.2f} ms ({low[2]:.2f}-{high[2]:.2f})  "
              f"ctl CPU {r['cpu_ms']:.3f} ms/req ({low[3]:.3f}-{high[3]:.3f})", flush=True)


def goals(results: dict, args: argparse.Namespace) -> None:
    hb, al, fi, li, pg = (results.get(k) for k in ("heartbeats", "allocations", "finds", "lists", "pages"))
    print("\nagainst the legacy marvinctld (issue 11; above 1x = Marvin better):")
    if hb:
        print(f"  heartbeats/s at {args.clients} clients: {ratio(hb['rate'], LEGACY['heartbeat_rate'], True)}")
    if al:
        print(f"  allocation p50: {ratio(al['p50'], LEGACY['allocation_p50'], False)}   "
              f"p99: {ratio(al['p99'], LEGACY['allocation_p99'], False)}   "
              f"allocations/s ({args.query_clients} client): {ratio(al['rate'], LEGACY['allocation_rate'], True)}")
    if fi:
        print(f"  find p50: {ratio(fi['p50'], LEGACY['find_p50'], False)}   "
              f"p99: {ratio(fi['p99'], LEGACY['find_p99'], False)}")
    if li:
        print(f"  list p50 (legacy at 1.5k tasks, whole table): {ratio(li['p50'], LEGACY['list_p50'], False)}")
    print("\nissue 11 goals:")
    if al:
        print(f"  allocation p50 <= 1.6 ms: {verdict(al['p50'] <= 1.6)} ({al['p50']:.2f});  "
              f"p99 <= 5 ms: {verdict(al['p99'] <= 5)} ({al['p99']:.2f})")
    if fi:
        print(f"  find p50 <= 2 ms: {verdict(fi['p50'] <= 2)} ({fi['p50']:.2f})")
    if li:
        note = "" if args.tasks >= 10000 else f"  [only {args.tasks} tasks; the goal is at 10k]"
        print(f"  list p50 <= 2 ms at 10k tasks: {verdict(li['p50'] <= 2 and args.tasks >= 10000)} "
              f"({li['p50']:.2f}, whole window){note}")
    if pg:
        note = "" if args.tasks >= 10000 else f"  [only {args.tasks} tasks; the goal is at 10k]"
        print(f"  list p50 <= 2 ms at 10k tasks, paged: {verdict(pg['p50'] <= 2 and args.tasks >= 10000)} "
              f"({pg['p50']:.2f}, limit={args.page}){note}")
    if hb:
        note = "" if args.clients == 16 else f"  [at {args.clients} clients; the goal is at 16]"
        print(f"  heartbeats >= 1,900/s with p99 < 30 ms: {verdict(hb['rate'] >= 1900 and hb['p99'] < 30)} "
              f"({hb['rate']:.0f}/s, p99 {hb['p99']:.1f} ms){note}")
    if any(r["errors"] for r in results.values()):
        print("  (errors above: a phase with errors does not count as met)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=10000, help="tasks written before the start")
    parser.add_argument("--clients", type=int, default=16, help="concurrent heartbeat clients")
    parser.add_argument("--query-clients", type=int, default=1, help="concurrent allocation/find/list clients")
    parser.add_argument("--duration", type=float, default=20.0, help="seconds per phase")
    parser.add_argument("--window", type=int, default=3600, help="seconds of each listed window")
    parser.add_argument("--page", type=int, default=100, help="limit of the paged lists")
    parser.add_argument("--phases", default="heartbeats,allocations,finds,lists,pages")
    parser.add_argument("--postgres", metavar="URL", help="a PostgreSQL server (a database of our own is made)")
    parser.add_argument("--controllers", type=int, default=1, choices=(1, 2))
    parser.add_argument("--workers", type=int, default=1,
                        help="processes of the controller: workers: N in its configuration")
    parser.add_argument("--quick", action="store_true", help="~20 s: 4 s phases, 2,000 tasks")
    parser.add_argument("--rounds", type=int, default=1,
                        help="run the session this many times and judge the goals on the medians")
    parser.add_argument("--no-health", action="store_true",
                        help="no node health records (by default every node has an old one, as on a testbed)")
    parser.add_argument("--list-scale", action="store_true",
                        help="then lists and pages at 10k and 100k tasks (flat as the table grows)")
    parser.add_argument("--profile", metavar="FILE",
                        help="run the (first) controller under cProfile (CPU time); stats to FILE, top lines printed")
    parser.add_argument("--scale", action="store_true",
                        help="then the flatness and memory runs (1k/1k, 1k/100k, 10k nodes/100k schedules)")
    args = parser.parse_args()
    if args.quick:
        args.duration, args.tasks = 4.0, min(args.tasks, 2000)
    if args.workers > 1 and args.controllers > 1:
        parser.error("--workers with one controller (or --controllers 2 of one process each)")
    if args.controllers == 2 and not args.postgres:
        parser.error("--controllers 2 needs --postgres (two controllers cannot share a SQLite file)")

    if args.rounds < 1 or (args.rounds > 1 and args.profile):
        parser.error("--rounds must be at least 1 (and 1 with --profile)")
    rounds = []
    for n in range(args.rounds):
        if args.rounds > 1:
            print(f"\n-- round {n + 1} of {args.rounds} --", flush=True)
        rounds.append(session(args, args.nodes, args.tasks, args.phases.split(","), args.duration)[0])
    results = rounds[0] if args.rounds == 1 else medians(rounds)
    if args.rounds > 1:
        reportMedians(results, args.rounds)
    if args.profile:
        import pstats

        print(f"\ncontroller profile (CPU time, cumulative), stats in {args.profile}:")
        pstats.Stats(args.profile).sort_stats("cumulative").print_stats(40)
        return
    goals(results, args)
    if args.scale:
        scale(args)
    if args.list_scale:
        listScale(args)


def warmCallers(ports: list[int], nodeCount: int) -> None:
    """
    One heartbeat of every node on each controller, not measured: a node
    beats every minute with the same certificate, so the steady state is a
    controller that has seen it (on PostgreSQL a first caller costs a read).
    """
    for port in ports:
        warm = Client(port)
        for k in range(nodeCount):
            warm.call(heartbeat(k, nodeCount))
        warm.close()


def session(args: argparse.Namespace, nodeCount: int, tasks: int, phases: list[str], duration: float,
            ) -> tuple[dict, list[float]]:
    """
    One controller set-up (C{nodeCount} nodes, C{tasks} tasks) driven through
    C{phases}; returns the results by phase and the controllers' RSS at the end.
    """
    now = int(time.time())
    pgName = f"marvin_bench_{os.getpid()}"
    controllers: list[Controller] = []
    with tempfile.TemporaryDirectory(prefix="marvin-load-") as directory:
        try:
            if args.postgres:
                createDatabase(args.postgres, pgName)
                database = databaseUrl(args.postgres, pgName)
            else:
                database = os.path.join(directory, "marvin.db")
            t0 = time.monotonic()
            first, last = populate(database, nodeCount, tasks, now, not getattr(args, "no_health", False))
            inventory = writeInventory(directory, nodeCount)
            store = f"PostgreSQL database {pgName}" if args.postgres else "SQLite"
            records = "no health records" if getattr(args, "no_health", False) else "a health record each"
            print(f"set-up: {nodeCount} nodes (2 interfaces each, {records}), {tasks} tasks, {store}, "
                  f"in {time.monotonic() - t0:.1f} s", flush=True)
            for n in range(args.controllers):
                workers = getattr(args, "workers", 1)
                config = writeConfig(directory, f"ctl{n}", database, inventory, workers)
                controllers.append(Controller(config, os.path.join(directory, f"ctl{n}.log"),
                                              args.profile if n == 0 else None, workers))
            ports = [c.port for c in controllers]
            # Wait for the start-up work (the inventory sync, the first node
            # view) to be done: one search on each controller, not measured.
            for port in ports:
                # a fresh connection each: with workers, each process gets some
                for _ in range(4 * getattr(args, "workers", 1)):
                    warm = Client(port)
                    warm.call(find(0, nodeCount))
                    warm.close()
            warmCallers(ports, nodeCount)
            print(f"{len(controllers)} controller(s), pids {[c.pids for c in controllers]}, "
                  f"RSS at start {[round(c.rssMB(), 1) for c in controllers]} MB; machine: {os.cpu_count()} cores "
                  f"(reference loop {referenceLoop():.0f} ms on one core, lower is faster), shared with this load client (threads, http.client keep-alive, loopback)\n", flush=True)
            rng = random.Random(11)
            width = args.window

            def listing(k: int, nodes: int) -> Request:
                start = rng.randrange(first, max(first + 1, last - width))
                return "GET", f"/v1/schedules?start={start}&stop={start + width}", None, USER

            def paging(k: int, nodes: int) -> Request:
                method, path, body, who = listing(k, nodes)
                return method, f"{path}&limit={args.page}", body, who

            def feed(k: int, nodes: int) -> Request:
                method, path, body, who = listing(k, nodes)
                return method, path.replace("/v1/schedules?", "/v1/schedules.json?"), body, who

            makers = {"heartbeats": heartbeat, "allocations": allocation, "finds": find, "lists": listing,
                      "pages": paging, "feeds": feed}
            results = {}
            for name in phases:
                clients = args.clients if name == "heartbeats" else args.query_clients
                make = makers[name]
                results[name] = run(ports, clients, duration, lambda k, m=make: m(k, nodeCount), controllers)
                report(name, results[name], clients)
            if {"lists", "pages", "feeds"} & set(results):
                rows = tasks * width / max(1, last - first)
                print(f"  (each list window: {width} s, about {rows:.0f} of the {tasks} tasks)")
            rss = [round(c.rssMB(), 1) for c in controllers]
            print(f"controller RSS at the end: {rss} MB", flush=True)
            return results, rss
        finally:
            for c in controllers:
                c.stop()
            if args.postgres:
                createDatabase(args.postgres, pgName, drop=True)


# The flatness checks: a p50 within this factor of the small set-up's is flat.
FLAT = 1.5


def scale(args: argparse.Namespace) -> None:
    """
    Allocation and find at 1k nodes with 1k and with 100k schedules, and at
    10k nodes with 100k schedules (also the memory goal: RSS < 200 MB).
    """
    phases, duration = ["allocations", "finds"], max(2.0, args.duration / 2)
    runs = {}
    for nodeCount, tasks in ((1000, 1000), (1000, 100000), (10000, 100000)):
        print(f"\n-- scale: {nodeCount} nodes, {tasks} schedules --", flush=True)
        runs[nodeCount, tasks] = session(args, nodeCount, tasks, phases, duration)
    small, many, wide = runs[1000, 1000][0], runs[1000, 100000][0], runs[10000, 100000][0]
    print("\nscale goals (flat: p50 within {:.1f}x; finds count every free node, so only shown):".format(FLAT))
    for phase in phases:
        for label, base, other in (("1k -> 100k schedules", small, many), ("1k -> 10k nodes", many, wide)):
            if phase != "allocations":
                label += " [not a goal]"
            factor = other[phase]["p50"] / base[phase]["p50"]
            errors = base[phase]["errors"] or other[phase]["errors"]
            print(f"  {phase} p50 flat from {label}: {verdict(factor <= FLAT and not errors)} "
                  f"({base[phase]['p50']:.2f} -> {other[phase]['p50']:.2f} ms, x{factor:.2f})")
    rss = max(runs[10000, 100000][1])
    print(f"  memory, 10k nodes + 100k schedules, RSS < 200 MB: {verdict(rss < 200)} ({rss:.1f} MB)")



def listScale(args: argparse.Namespace) -> None:
    """
    Whole-window lists and first pages at 1k nodes with 10k and 100k tasks:
    each window holds as many tasks either way, so the p50 must not grow.
    """
    phases, duration = ["lists", "pages"], max(2.0, args.duration / 2)
    runs = {}
    for tasks in (10000, 100000):
        print(f"\n-- list scale: 1000 nodes, {tasks} tasks --", flush=True)
        runs[tasks] = session(args, 1000, tasks, phases, duration)[0]
    print(f"\nlist scale goals (flat: p50 within {FLAT:.1f}x from 10k to 100k tasks):")
    for phase in phases:
        base, other = runs[10000][phase], runs[100000][phase]
        factor = other["p50"] / base["p50"]
        errors = base["errors"] or other["errors"]
        print(f"  {phase} p50 flat: {verdict(factor <= FLAT and not errors)} "
              f"({base['p50']:.2f} -> {other['p50']:.2f} ms, x{factor:.2f}; "
              f"CPU {base['cpu_ms']:.3f} -> {other['cpu_ms']:.3f} ms/req)")


if __name__ == "__main__":
    main()
