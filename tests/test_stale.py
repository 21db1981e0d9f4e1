"""
No lost updates (issue 9): a decision made on rows read in an earlier
transaction is never written back. Commands re-read inside their own
transaction; and any write of a row that moved on since it was read is
refused by the store (compare-and-set on the row's version), on SQLite and
PostgreSQL alike.

The reproduction: Alice's GENI allocation is read; the expiry cancels and
refunds it; Bob books the same node and window; then Provision used to hand
the stale schedule objects to the rules in a new transaction, which wrote
their status back: two blocking intervals on one node, and Alice refunded in
full for a booking she kept. Likewise Delete used to cancel (full refund) a
task its node had just reported started.
"""

from __future__ import annotations

import secrets
from typing import Any, Iterator

import pytest

from am.core import lifecycle
from am.core.errors import Conflict, NotFound, StaleWrite
from am.core.model import User
from am.core.policy import Policy
from am.core.requests import AllocationRequest
from am.core.scheduler import Scheduler
from am.core.slices import SliceRequest, SliceTarget
from am.geni.envelope import BUSY, fromException
from am.store.postgres import PostgresDatabase
from am.store.sqlite import SQLiteDatabase
from am.testing import SynchronousStore, makeScheduler
from rest_compat.resource import _STATUS
from tests.core_helpers import NOW, assertNoOverlap
from tests.storefixtures import postgres  # noqa: F401 (the fixture)

POLICY = Policy(maintenance=())
SLICE = "urn:publicid:IDN+example.org:proj+slice+s1"


class World:
    """
    A scheduler over one store, two experimenters and a node user for node 1.
    """

    def __init__(self, store: SynchronousStore) -> None:
        self.scheduler, self.store, self.clock = makeScheduler(3, NOW, POLICY, store=store)
        add = lambda **kw: self.done(self.scheduler.addUser(**kw))  # noqa: E731
        self.alice: User = add(name="alice", role="user", fingerprint="a" * 40)
        self.bob: User = add(name="bob", role="user", fingerprint="b" * 40)
        self.node: User = add(name="Node 1", role="node", fingerprint="e" * 40)

    def done(self, d: Any) -> Any:
        results: list[Any] = []
        d.addBoth(results.append)
        [result] = results
        if hasattr(result, "raiseException"):
            result.raiseException()
        return result

    def blocking(self) -> list[tuple[str, int, int]]:
        return sorted(
            (i.nodeid, i.start, i.stop) for i in self.store.run(lambda txn: txn.blockingIntervals(0, 2**62))
        )

    def journal(self, user: User) -> list[Any]:
        return self.store.run(lambda txn: txn.listJournal(user.id))

    def quota(self, user: User) -> int:
        return self.store.run(lambda txn: txn.getQuotas(user.id))["time"].current


@pytest.fixture(params=["sqlite", "postgres"])
def world(request: Any, tmp_path: Any) -> Iterator[World]:
    if request.param == "sqlite":
        database: Any = SQLiteDatabase(str(tmp_path / "stale.db"))
    else:
        database = PostgresDatabase(request.getfixturevalue("postgres").schema(f"s_{secrets.token_hex(4)}"))
    world = World(SynchronousStore(database))
    yield world
    database.close()


def _allocate(world: World) -> list[Any]:
    start = NOW + 3600
    request = SliceRequest(sliceURN=SLICE, name="s1", image="docker.io/x/y", nodes=("1",), start=start, stop=start + 600)
    schedules, missing = world.done(world.scheduler.allocateSlice(request, world.alice.id))
    assert missing == ""
    return schedules


def test_provisionAfterExpiryAndRebooking(world: World) -> None:
    """
    Provision after the allocation expired and Bob booked the window provisions
    nothing: one blocking interval, Alice refunded once; the stale objects
    themselves cannot be written back.
    """
    _allocate(world)
    stale = world.done(world.scheduler.resolveSlice(SliceTarget(sliceURN=SLICE))).schedules
    world.clock.advance(POLICY.allocationExpiry + 1)
    assert world.done(world.scheduler.expireAllocations()) == 1
    refunded = world.quota(world.alice)
    bob = world.done(world.scheduler.allocate(AllocationRequest(
        ownerid=world.bob.id, name="b", script="docker.io/x/y", nodes=["1"],
        start=stale[0].start, duration=600,
    )))
    # The expired allocation is gone (canceled): neither the slice nor the
    # sliver named has anything left to provision.
    with pytest.raises(NotFound, match="no slivers"):
        world.done(world.scheduler.provision(SliceTarget(sliceURN=SLICE), world.alice.id, {}))
    named = SliceTarget(sliverIds=(stale[0].id,))
    with pytest.raises(NotFound, match="gone"):
        world.done(world.scheduler.provision(named, world.alice.id, {}))
    # The old path: the rules handed the stale objects in a new transaction.
    alice = world.store.run(lambda txn: txn.getUser(world.alice.id))
    with pytest.raises(StaleWrite):
        world.store.run(lifecycle.provision, stale, alice, world.scheduler.now(), POLICY, {})
    assert world.blocking() == [("1", bob.schedules[0].start, bob.schedules[0].stop)]
    assertNoOverlap(world.blocking(), POLICY.padding)
    assert world.quota(world.alice) == refunded
    assert world.store.run(lambda txn: txn.getSchedule(stale[0].id)).status == "canceled"


def test_deleteAfterStarted(world: World) -> None:
    """
    Delete right after the node reported the task started aborts it and refunds
    only the unused part; the stale objects' cancel is refused.
    """
    _allocate(world)
    target = SliceTarget(sliceURN=SLICE)
    [provisioned] = world.done(world.scheduler.provision(target, world.alice.id, {}))
    world.clock.advance(3600 + 60)
    stale = world.done(world.scheduler.resolveSlice(target)).schedules
    world.done(world.scheduler.changeStatus(provisioned.id, "started", world.node.id))
    alice = world.store.run(lambda txn: txn.getUser(world.alice.id))
    with pytest.raises(StaleWrite):
        world.store.run(lifecycle.endSchedules, stale, alice, world.scheduler.now(), POLICY)
    before = world.quota(world.alice)
    [ended] = world.done(world.scheduler.endSlivers(target, world.alice.id))
    assert ended.status == "aborted"
    assert world.quota(world.alice) - before == provisioned.stop - world.scheduler.now()


def test_staleWriteOfEveryVersionedRow(world: World) -> None:
    """
    Schedules, experiments and users: the second of two writes based on the
    same read is refused and leaves the first one in place.
    """
    [schedule] = _allocate(world)
    for get, update, change in (
        (lambda txn: txn.getSchedule(schedule.id), "updateSchedule", lambda s: setattr(s, "reason", "x")),
        (lambda txn: txn.getExperiment(schedule.expid), "updateExperiment", lambda e: setattr(e, "name", "x")),
        (lambda txn: txn.getUser(world.bob.id), "updateUser", lambda u: setattr(u, "project", "x")),
    ):
        first, second = world.store.run(get), world.store.run(get)
        change(first)
        world.store.run(lambda txn: getattr(txn, update)(first))
        world.store.run(lambda txn: getattr(txn, update)(first))  # its own writes move it on
        with pytest.raises(StaleWrite):
            world.store.run(lambda txn: getattr(txn, update)(second))
        assert world.store.run(get).version == first.version == second.version + 2


def test_facesMapStaleWrite() -> None:
    """
    GENI answers BUSY (the same call again may succeed); REST 409.
    """
    error = StaleWrite("Schedule 1 changed meanwhile; nothing was written, try again.")
    answer = fromException(error, "Provision")
    assert answer["code"]["geni_code"] == BUSY
    assert "changed meanwhile" in answer["output"]
    assert [status for kind, status in _STATUS if isinstance(error, kind)][0] == 409


def test_commandsTakeIds() -> None:
    """
    Commands act for the user as stored now: an invalidated user is refused
    even when the face authenticated it earlier.
    """
    scheduler, store, _ = makeScheduler(1, NOW, POLICY)
    world = World.__new__(World)
    alice = World.done(world, scheduler.addUser(name="alice", role="user", fingerprint="a" * 40))
    World.done(world, scheduler.invalidateUser(alice.id))
    start = NOW + 3600
    request = SliceRequest(sliceURN=SLICE, name="s1", image="docker.io/x/y", nodes=("1",), start=start, stop=start + 600)
    failures: list[Any] = []
    scheduler.allocateSlice(request, alice.id).addErrback(failures.append)
    assert "invalidated" in failures[0].value.message
    assert isinstance(scheduler, Scheduler)
