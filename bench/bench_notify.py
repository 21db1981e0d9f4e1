"""
Notifications and waits, the figures of issue 16 (not a test).

1. The memory of 10,000 waiters: 10,000 held C{GET /experiments/<id>?wait=final}
   handlers of the REST face (the handler coroutine, its waiter Deferred and
   timer, the core's registry; the HTTP connection itself is Twisted's and is
   the same for any request) pending at once, measured with tracemalloc, then
   how long one event takes to wake them all; and the core's registry alone.
2. The outbox throughput on a SQLite file: events written per second by
   commands of notified experiments (book and delete: 3 events each, against
   the same commands without C{notify}), and events delivered per second by
   the controller's deliverer (claim, signed POST over loopback to a Twisted
   receiver in the same process, settle) with the default batch of 50.

Run: python bench/bench_notify.py [--waiters 10000] [--experiments 1000]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import time
import tracemalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def waiterMemory(count: int) -> None:
    from twisted.internet import reactor
    from twisted.internet.defer import Deferred
    from twisted.web.test.requesthelper import DummyRequest

    from am.core.events import EventStream
    from am.core.policy import Policy
    from am.core.scheduler import Scheduler
    from am.core.waiters import Waiters
    from am.testing import MemoryStore, demoNodes
    from rest_compat import experiments
    from rest_compat.auth import Caller
    from rest_compat.context import Context

    # The reactor's timers (a heap), not task.Clock's (sorted on each call),
    # which the reactor never runs here: nothing times out during the bench.
    # The registry alone.
    events = EventStream()
    waiters = Waiters(events, reactor)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    held = [waiters.wait([("experiment", i % 100)], 300) for i in range(count)]
    registry = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    for d in held:
        d.cancel()

    # Held REST handlers on one experiment.
    store = MemoryStore()
    for node in demoNodes(3, int(reactor.seconds())):
        store.run(lambda txn, n=node: txn.putNode(n))
    scheduler = Scheduler(store, reactor, Policy(maintenance=(), waitMax=300))
    from am.core.requests import AllocationRequest

    user: list = []
    scheduler.addUser(name="alice", role="user", fingerprint="a" * 40).addCallback(user.append)
    booked: list = []
    scheduler.allocate(AllocationRequest(
        ownerid=user[0].id, name="e", script="docker.io/a/b", nodecount=1, duration=600,
    )).addCallback(booked.append)
    expid = booked[0].experiment.id
    caller = Caller(user=user[0])
    # The requests exist for any request; the wait is what comes on top.
    requests = [DummyRequest([b""]) for _ in range(count)]
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    pending = []
    for request in requests:
        ctx = Context(request, scheduler, caller, (str(expid),), {"wait": "final", "timeout": "300"})
        pending.append((request, Deferred.fromCoroutine(experiments.getExperiment(ctx))))
    handlers = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    assert len(scheduler.waiters) == count, len(scheduler.waiters)
    started = time.perf_counter()
    done: list = []
    scheduler.deleteExperiment(expid, user[0].id).addCallback(done.append)
    woken = time.perf_counter() - started
    answered = sum(1 for _, d in pending if d.called)
    for call in reactor.getDelayedCalls():
        call.cancel()
    print(f"waiters: {count} held REST waits use {handlers / 1e6:.1f} MB ({handlers / count:.0f} B each); "
          f"the core's registry alone {registry / 1e6:.2f} MB ({registry / count:.0f} B each)")
    print(f"waiters: one event woke and answered {answered} of {count} in {woken * 1000:.0f} ms "
          f"(one re-read each); none left: {len(scheduler.waiters) == 0}")


def outboxThroughput(experimentsCount: int) -> None:
    from twisted.internet import defer, reactor
    from twisted.web.resource import Resource
    from twisted.web.server import Site

    from am.core.model import Node
    from am.core.policy import Policy
    from am.core.requests import AllocationRequest
    from am.core.scheduler import Scheduler
    from am.ctl.notifier import Notifier
    from am.ctl.notifyconfig import NotifierSettings
    from am.ctl.service import openStore

    received = [0]

    class Hook(Resource):
        isLeaf = True

        def render_POST(self, request):  # noqa: N802
            received[0] += 1
            request.setResponseCode(204)
            return b""

    async def run() -> None:
        port = reactor.listenTCP(0, Site(Hook()), interface="127.0.0.1")
        url = f"http://127.0.0.1:{port.getHost().port}/hook"
        directory = tempfile.mkdtemp(prefix="marvin-bench-notify-")
        store = openStore(os.path.join(directory, "m.db"), reactor)
        policy = Policy(maintenance=(), notifyPrivate=True, requireHeartbeat=False)
        scheduler = Scheduler(store, reactor, policy)
        for i in range(1, 11):
            await store.transact(lambda txn, i=i: txn.putNode(Node(id=str(i), hostname=f"n{i}")))
        user = await scheduler.addUser(name="alice", role="user", fingerprint="a" * 40)

        async def cycle(notify):
            booked = await scheduler.allocate(AllocationRequest(
                ownerid=user.id, name="e", script="docker.io/a/b", nodecount=1, duration=600, notify=notify,
            ))
            await scheduler.deleteExperiment(booked.experiment.id, user.id)

        rates = {}
        for label, notify in (("without notify", None), ("with notify", url)):
            started = time.perf_counter()
            for _ in range(experimentsCount):
                await cycle(notify)
            rates[label] = (time.perf_counter() - started) / experimentsCount
        events = 3 * experimentsCount
        print(f"outbox write: {experimentsCount} book+delete commands of notified experiments, "
              f"{events} events written: {events / (rates['with notify'] * experimentsCount):.0f} events/s "
              f"({rates['with notify'] * 1000 / 2:.2f} ms per command; without notify "
              f"{rates['without notify'] * 1000 / 2:.2f} ms)")

        notifier = Notifier(lambda: scheduler, reactor, NotifierSettings(allowPrivate=True))
        started = time.perf_counter()
        notifier.startService()
        while received[0] < events:
            await defer.Deferred.fromCoroutine(_later(reactor, 0.01))
        # The last settle commits after the receiver counted the POST.
        while await scheduler.nextNotificationDue() is not None:
            await defer.Deferred.fromCoroutine(_later(reactor, 0.01))
        elapsed = time.perf_counter() - started
        notifier.stopService()
        print(f"outbox delivery: {events} events claimed, POSTed (signed, loopback) and settled "
              f"in {elapsed:.2f} s: {events / elapsed:.0f} events/s (batch {notifier.settings.batch})")
        await port.stopListening()
        await store.close()

    def main() -> None:
        d = defer.Deferred.fromCoroutine(run())
        d.addErrback(lambda f: f.printTraceback())
        d.addBoth(lambda _: reactor.stop())

    reactor.callWhenRunning(main)
    reactor.run()


async def _later(reactor, seconds: float) -> None:
    from twisted.internet import task

    await task.deferLater(reactor, seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--waiters", type=int, default=10000)
    parser.add_argument("--experiments", type=int, default=1000)
    args = parser.parse_args()
    waiterMemory(args.waiters)
    outboxThroughput(args.experiments)


if __name__ == "__main__":
    main()
