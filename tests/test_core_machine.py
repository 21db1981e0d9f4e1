"""
A state machine over the scheduling core, driving both faces' commands as
they use them (REST-like booking, deletion and node reports; GENI-like
allocate, provision, renew and delete of slices) plus allocation expiry,
the sweep of what nobody ran, heartbeats and clock advances, on the in-memory SQLite store and on
PostgreSQL, and there also with two controllers racing (two commands at
once, each on its own connection, both deciding before either writes).
After every step:

- no two blocking intervals of one node come closer than the padding;
- every user's quota journal adds up to the quota it has now;
- every status change the core committed is an edge of the schedule table
  (L{am.core.states.SCHEDULE}) for the actor that made it.
"""

from __future__ import annotations

import secrets
import threading
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from am.core import states
from am.core.errors import MarvinError
from am.core.events import Event, ScheduleStatusChanged
from am.core.model import QUOTA_KINDS
from am.core.policy import Policy
from am.core.requests import AllocationRequest
from am.core.scheduler import Scheduler
from am.core.slices import SliceRequest, SliceTarget
from am.store.postgres import PostgresDatabase
from am.testing import MemoryStore, SynchronousStore, makeScheduler
from tests.core_helpers import NOW, assertNoOverlap
from tests.storefixtures import TemporaryDatabase

POLICY = Policy(maintenance=(), allocationExpiry=900)
NODES = ("1", "2")
SLICES = tuple(f"urn:publicid:IDN+example.org:proj+slice+s{i}" for i in (1, 2))
IMAGE = "docker.io/monroe/ping"


def _done(d: Any) -> Any:
    """
    The result of a synchronous store's Deferred, raising its failure.
    """
    out: list[Any] = []
    d.addBoth(out.append)
    if hasattr(out[0], "raiseException"):
        out[0].raiseException()
    return out[0]


def _tried(d: Any) -> Any:
    """
    Like L{_done}, but a refusal of the core (any L{MarvinError}) is an
    acceptable outcome: C{None}. Anything else is a bug.
    """
    try:
        return _done(d)
    except MarvinError:
        return None


# The commands' arguments, shared by their rules and by the racing pairs of
# commands on PostgreSQL (L{RacingMachine}).
ARGUMENTS: dict[str, dict[str, Any]] = {
    "restAllocate": dict(
        owner=st.integers(0, 1), nodes=st.lists(st.sampled_from(NODES), min_size=1, max_size=2, unique=True),
        start=st.sampled_from([0, 600, 3600, 7200]), duration=st.sampled_from([300, 1800, 3600]),
        shared=st.booleans(), byCount=st.booleans(),
    ),
    "restDelete": dict(pick=st.integers(0, 50), asAdmin=st.booleans()),
    "nodeReport": dict(
        pick=st.integers(0, 50), status=st.sampled_from(states.NODE_REPORTABLE), wrongNode=st.booleans()
    ),
    "heartbeat": dict(node=st.sampled_from(NODES), maintenance=st.booleans()),
    "geniAllocate": dict(
        which=st.integers(0, 1), node=st.sampled_from(NODES), start=st.sampled_from([None, 1200, 3600]),
        length=st.sampled_from([600, 1800]), bestEffort=st.booleans(),
    ),
    "geniProvision": dict(which=st.integers(0, 1)),
    "geniRenew": dict(which=st.integers(0, 1), extra=st.sampled_from([300, 1800, 7200]), bestEffort=st.booleans()),
    "geniAction": dict(which=st.integers(0, 1), action=st.sampled_from(["start", "restart", "stop"])),
    "geniDelete": dict(which=st.integers(0, 1)),
}
#: One command with its arguments, C{(rule name, keyword arguments)}; the
#: bookings (which race for windows) weigh more.
def _move(name: str) -> Any:
    return st.fixed_dictionaries(ARGUMENTS[name]).map(lambda kw: (name, kw))


MOVES = st.one_of(*[_move(name) for name in [*ARGUMENTS, *["restAllocate"] * 4, *["geniAllocate", "geniRenew"] * 2]])


class CoreMachine(RuleBasedStateMachine):
    """
    One scheduler over a fresh store per run (the store comes from L{openStore}).
    """

    openStore: Any = staticmethod(MemoryStore)

    @initialize()
    def setUp(self) -> None:
        self.scheduler, self.store, self.clock = makeScheduler(len(NODES), NOW, POLICY, store=self.openStore())
        add = lambda **kw: _done(self.scheduler.addUser(**kw)).id  # noqa: E731
        self.users = [add(name="alice", role="user", fingerprint="a" * 40),
                      add(name="bob", role="user", fingerprint="b" * 40)]
        self.geni = _done(self.scheduler.userForURN("urn:publicid:IDN+example.org:proj+user+carol")).id
        self.nodeUsers = {n: add(name=f"Node {n}", role="node", fingerprint=f"{n}" * 40) for n in NODES}
        self.experiments: list[tuple[int, int]] = []  # (expid, owner)
        self.schedules: list[int] = []
        self.changes: list[ScheduleStatusChanged] = []
        self.scheduler.events.subscribe(self._observe)

    def teardown(self) -> None:
        if hasattr(self, "store"):
            self.store.close()

    def _observe(self, event: Event) -> None:
        if isinstance(event, ScheduleStatusChanged):
            self.changes.append(event)

    # -- REST-like --------------------------------------------------------------

    @rule(**ARGUMENTS["restAllocate"])
    def restAllocate(self, owner: int, nodes: list[str], start: int, duration: int, shared: bool,
                     byCount: bool) -> None:
        request = AllocationRequest(
            ownerid=self.users[owner], name="e", script=IMAGE, nodecount=len(nodes), duration=duration,
            start=start and self.scheduler.now() + start, nodes=None if byCount else nodes, shared=shared,
        )
        booked = _tried(self.scheduler.allocate(request))
        if booked is not None:
            self.experiments.append((booked.experiment.id, self.users[owner]))
            self.schedules += [s.id for s in booked.schedules]

    @rule(**ARGUMENTS["restDelete"])
    def restDelete(self, pick: int, asAdmin: bool) -> None:
        if self.experiments:
            expid, owner = self.experiments[pick % len(self.experiments)]
            _tried(self.scheduler.deleteExperiment(expid, owner if not asAdmin else self.users[0]))

    @rule(**ARGUMENTS["nodeReport"])
    def nodeReport(self, pick: int, status: str, wrongNode: bool) -> None:
        if self.schedules:
            schedid = self.schedules[pick % len(self.schedules)]
            schedule = self.store.run(lambda txn: txn.getSchedule(schedid))
            node = NODES[(NODES.index(schedule.nodeid) + 1) % len(NODES)] if wrongNode else schedule.nodeid
            _tried(self.scheduler.changeStatus(schedid, status, self.nodeUsers[node]))

    @rule(**ARGUMENTS["heartbeat"])
    def heartbeat(self, node: str, maintenance: bool) -> None:
        _done(self.scheduler.heartbeat(self.nodeUsers[node], node, maintenance=maintenance))

    # -- GENI-like --------------------------------------------------------------

    @rule(**ARGUMENTS["geniAllocate"])
    def geniAllocate(self, which: int, node: str, start: Any, length: int, bestEffort: bool) -> None:
        begin = None if start is None else self.scheduler.now() + start
        request = SliceRequest(
            sliceURN=SLICES[which], name=f"s{which}", image=IMAGE, nodes=(node,), start=begin,
            stop=None if begin is None else begin + length, duration=length, bestEffort=bestEffort,
        )
        booked = _tried(self.scheduler.allocateSlice(request, self.geni))
        if booked is not None:
            self.schedules += [s.id for s in booked[0]]

    @rule(**ARGUMENTS["geniProvision"])
    def geniProvision(self, which: int) -> None:
        _tried(self.scheduler.provision(SliceTarget(sliceURN=SLICES[which]), self.geni, {"ssh_keys": []}))

    @rule(**ARGUMENTS["geniRenew"])
    def geniRenew(self, which: int, extra: int, bestEffort: bool) -> None:
        stop = self.scheduler.now() + extra
        _tried(self.scheduler.renewSlivers(SliceTarget(sliceURN=SLICES[which]), self.geni, stop, str(stop),
                                           bestEffort))

    @rule(**ARGUMENTS["geniAction"])
    def geniAction(self, which: int, action: str) -> None:
        _tried(self.scheduler.performAction(SliceTarget(sliceURN=SLICES[which]), self.geni, action, {}))

    @rule(**ARGUMENTS["geniDelete"])
    def geniDelete(self, which: int) -> None:
        _tried(self.scheduler.endSlivers(SliceTarget(sliceURN=SLICES[which]), self.geni))

    # -- time ---------------------------------------------------------------------

    @rule()
    def expire(self) -> None:
        _done(self.scheduler.expireAllocations())

    @rule()
    def sweep(self) -> None:
        _done(self.scheduler.sweep())

    @rule(seconds=st.sampled_from([30, 300, 1000, 4000]))
    def advance(self, seconds: int) -> None:
        self.clock.advance(seconds)

    # -- invariants ---------------------------------------------------------------

    @invariant()
    def noDoubleBooking(self) -> None:
        windows = [(i.nodeid, i.start, i.stop) for i in self.store.run(lambda txn: txn.blockingIntervals(0, 2**62))]
        assertNoOverlap(windows, POLICY.padding)

    @invariant()
    def journalBalances(self) -> None:
        def check(txn: Any) -> None:
            for userid in [*self.users, self.geni]:
                quotas = txn.getQuotas(userid)
                journal = txn.listJournal(userid)
                for kind in QUOTA_KINDS:
                    total = sum(e.delta for e in journal if e.kind == kind)
                    assert total == quotas[kind].current, (userid, kind, total, quotas[kind].current)

        self.store.run(check)

    @invariant()
    def everyChangeIsAnEdge(self) -> None:
        for change in self.changes:
            assert states.SCHEDULE.allows(change.old, change.new, states.Actor(change.actor)), change
        self.changes.clear()


CoreMachine.TestCase.settings = settings(
    max_examples=300, stateful_step_count=40, deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCoreOnSQLite = CoreMachine.TestCase


@pytest.fixture(scope="module")
def postgresServer() -> Any:
    database = TemporaryDatabase()
    yield database
    database.drop()


def test_coreOnPostgreSQL(postgresServer: TemporaryDatabase) -> None:
    """
    The same machine on PostgreSQL (fewer runs: each gets a schema of its own).
    """

    class OnPostgres(CoreMachine):
        @staticmethod
        def openStore() -> SynchronousStore:
            url = postgresServer.schema(f"m_{secrets.token_hex(4)}")
            return SynchronousStore(PostgresDatabase(url))

    OnPostgres.TestCase.settings = settings(
        max_examples=6, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    OnPostgres.TestCase().runTest()


class Rendezvous:
    """
    Where two racing commands meet: each arrives once (at its first write, or
    when done) and waits until the other has arrived too, or a moment has
    passed (the other may be waiting for a lock this one holds).
    """

    def __init__(self) -> None:
        self._arrived: set[int] = set()
        self._condition = threading.Condition()

    def arrive(self) -> None:
        me = threading.get_ident()
        with self._condition:
            if me in self._arrived:
                return
            self._arrived.add(me)
            self._condition.notify_all()
            self._condition.wait_for(lambda: len(self._arrived) >= 2, timeout=0.2)


# The writes that follow a decision the other command could invalidate.
_WRITES = frozenset({"addSchedules", "updateSchedule", "putQuota"})


class Gated:
    """
    A store transaction whose first write goes through the race's L{Rendezvous}.
    """

    def __init__(self, txn: Any, meeting: Rendezvous) -> None:
        self._txn, self._meeting = txn, meeting

    def __getattr__(self, name: str) -> Any:
        if name in _WRITES:
            self._meeting.arrive()
        return getattr(self._txn, name)


class RacingMachine(CoreMachine):
    """
    The machine on PostgreSQL with two controllers: a second scheduler over a
    connection of its own, and a rule that runs two commands at once, one on
    each, released together from a barrier. The invariants (no overlap, the
    quota journal balanced, every change an edge) must hold whatever the
    interleaving: only the database's locks keep the two apart.
    """

    # Each thread of a race uses its own controller's scheduler and store.
    _racer = threading.local()

    @property  # type: ignore[override]
    def scheduler(self) -> Any:
        return getattr(self._racer, "scheduler", None) or self._scheduler

    @scheduler.setter
    def scheduler(self, value: Any) -> None:
        self._scheduler = value

    @property  # type: ignore[override]
    def store(self) -> Any:
        return getattr(self._racer, "store", None) or self._store

    @store.setter
    def store(self, value: Any) -> None:
        self._store = value

    @initialize()
    def setUp(self) -> None:
        super().setUp()
        self.otherStore = SynchronousStore(PostgresDatabase(self._store.database.url, migrate=False))
        self.other = Scheduler(self.otherStore, self.clock, POLICY)
        self.other.events.subscribe(self._observe)

    def teardown(self) -> None:
        super().teardown()
        if hasattr(self, "otherStore"):
            self.otherStore.close()

    @rule(pairs=st.lists(st.tuples(MOVES, MOVES, st.booleans()), min_size=1, max_size=4))
    def race(self, pairs: list[tuple[tuple[str, dict], tuple[str, dict], bool]]) -> None:
        for first, second, mirror in pairs:
            if mirror:
                # The same command for the other owner (or slice): the same
                # nodes and windows, decided by two controllers at once.
                name, arguments = first
                flip = {k: 1 - v for k, v in arguments.items() if k in ("owner", "which")}
                second = (name, {**arguments, **flip})
            self._race(first, second)

    def _race(self, first: tuple[str, dict], second: tuple[str, dict]) -> None:
        barrier, meeting = threading.Barrier(2), Rendezvous()
        failures: list[BaseException] = []

        def play(move: tuple[str, dict], scheduler: Any, store: Any) -> None:
            self._racer.scheduler, self._racer.store = scheduler, store
            database = store.database
            run = database.run
            # Each transaction's first write waits (briefly) until the other
            # command has read too: both decide before either writes, the
            # interleaving that a missing lock would let through.
            def gated(function: Any, *args: Any, **kwargs: Any) -> Any:
                def inner(txn: Any, *a: Any, **kw: Any) -> Any:
                    return function(Gated(txn, meeting), *a, **kw)

                inner.rerunnable = getattr(function, "rerunnable", False)  # type: ignore[attr-defined]
                return run(inner, *args, **kwargs)

            database.run = gated
            try:
                barrier.wait()
                getattr(self, move[0])(**move[1])
            except BaseException as e:
                failures.append(e)
            finally:
                meeting.arrive()
                del database.run
                self._racer.scheduler = self._racer.store = None

        threads = [
            threading.Thread(target=play, args=(first, self._scheduler, self._store)),
            threading.Thread(target=play, args=(second, self.other, self.otherStore)),
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        if failures:
            raise failures[0]


def test_concurrentCoreOnPostgreSQL(postgresServer: TemporaryDatabase) -> None:
    """
    Two controllers racing on one PostgreSQL database (fresh schema per run).
    """

    class Racing(RacingMachine):
        @staticmethod
        def openStore() -> SynchronousStore:
            return SynchronousStore(PostgresDatabase(postgresServer.schema(f"r_{secrets.token_hex(4)}")))

    Racing.TestCase.settings = settings(
        max_examples=15, stateful_step_count=30, deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )
    Racing.TestCase().runTest()
