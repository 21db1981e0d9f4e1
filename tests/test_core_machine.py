"""
A state machine over the scheduling core, driving both faces' commands as
they use them (REST-like booking, deletion and node reports; GENI-like
allocate, provision, renew and delete of slices) plus allocation expiry,
the sweep of what nobody ran, heartbeats and clock advances, on the in-memory SQLite store and on
PostgreSQL. After every step:

- no two blocking intervals of one node come closer than the padding;
- every user's quota journal adds up to the quota it has now;
- every status change the core committed is an edge of the schedule table
  (L{am.core.states.SCHEDULE}) for the actor that made it.
"""

from __future__ import annotations

import secrets
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
from am.core.slices import SliceRequest, SliceTarget
from am.store.postgres import PostgresDatabase
from am.testing import MemoryStore, SynchronousStore, makeScheduler
from tests.core_helpers import NOW, assertNoOverlap
from tests.test_store_contract import TemporaryDatabase

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

    @rule(owner=st.integers(0, 1), nodes=st.lists(st.sampled_from(NODES), min_size=1, max_size=2, unique=True),
          start=st.sampled_from([0, 600, 3600, 7200]), duration=st.sampled_from([300, 1800, 3600]),
          shared=st.booleans(), byCount=st.booleans())
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

    @rule(pick=st.integers(0, 50), asAdmin=st.booleans())
    def restDelete(self, pick: int, asAdmin: bool) -> None:
        if self.experiments:
            expid, owner = self.experiments[pick % len(self.experiments)]
            _tried(self.scheduler.deleteExperiment(expid, owner if not asAdmin else self.users[0]))

    @rule(pick=st.integers(0, 50), status=st.sampled_from(states.NODE_REPORTABLE), wrongNode=st.booleans())
    def nodeReport(self, pick: int, status: str, wrongNode: bool) -> None:
        if self.schedules:
            schedid = self.schedules[pick % len(self.schedules)]
            schedule = self.store.run(lambda txn: txn.getSchedule(schedid))
            node = NODES[(NODES.index(schedule.nodeid) + 1) % len(NODES)] if wrongNode else schedule.nodeid
            _tried(self.scheduler.changeStatus(schedid, status, self.nodeUsers[node]))

    @rule(node=st.sampled_from(NODES), maintenance=st.booleans())
    def heartbeat(self, node: str, maintenance: bool) -> None:
        _done(self.scheduler.heartbeat(self.nodeUsers[node], node, maintenance=maintenance))

    # -- GENI-like --------------------------------------------------------------

    @rule(which=st.integers(0, 1), node=st.sampled_from(NODES), start=st.sampled_from([None, 1200, 3600]),
          length=st.sampled_from([600, 1800]), bestEffort=st.booleans())
    def geniAllocate(self, which: int, node: str, start: Any, length: int, bestEffort: bool) -> None:
        begin = None if start is None else self.scheduler.now() + start
        request = SliceRequest(
            sliceURN=SLICES[which], name=f"s{which}", image=IMAGE, nodes=(node,), start=begin,
            stop=None if begin is None else begin + length, duration=length, bestEffort=bestEffort,
        )
        booked = _tried(self.scheduler.allocateSlice(request, self.geni))
        if booked is not None:
            self.schedules += [s.id for s in booked[0]]

    @rule(which=st.integers(0, 1))
    def geniProvision(self, which: int) -> None:
        _tried(self.scheduler.provision(SliceTarget(sliceURN=SLICES[which]), self.geni, {"ssh_keys": []}))

    @rule(which=st.integers(0, 1), extra=st.sampled_from([300, 1800, 7200]), bestEffort=st.booleans())
    def geniRenew(self, which: int, extra: int, bestEffort: bool) -> None:
        stop = self.scheduler.now() + extra
        _tried(self.scheduler.renewSlivers(SliceTarget(sliceURN=SLICES[which]), self.geni, stop, str(stop),
                                           bestEffort))

    @rule(which=st.integers(0, 1), action=st.sampled_from(["start", "restart", "stop"]))
    def geniAction(self, which: int, action: str) -> None:
        _tried(self.scheduler.performAction(SliceTarget(sliceURN=SLICES[which]), self.geni, action, {}))

    @rule(which=st.integers(0, 1))
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
