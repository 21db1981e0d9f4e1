"""
The experiment and node tables cell by cell, the GENI view derived from the
schedule table, and the side effects of L{am.core.transitions.transition}.
"""

from __future__ import annotations

import itertools

import pytest

from am.core import states
from am.core.errors import TransitionRefused
from am.core.model import Node
from am.core.states import Actor
from am.core.transitions import transition
from am.geni import statemap
from tests.core_helpers import NOW, CoreTestCase

EXPERIMENT_ALLOWED = {("active", "archived"): {"owner", "admin", "scheduler"}}

ALL_NODE = {"node", "scheduler", "owner", "admin", "inventory"}
NODE_ALLOWED = {
    ("active", "maintenance"): {"node", "admin", "inventory"},
    ("maintenance", "active"): {"node", "admin"},
    ("active", "disabled"): {"admin", "inventory"},
    ("maintenance", "disabled"): {"admin", "inventory"},
    ("missing", "disabled"): {"admin", "inventory"},
    ("active", "missing"): {"admin", "inventory"},
    ("maintenance", "missing"): {"admin", "inventory"},
    ("disabled", "missing"): {"admin", "inventory"},
    ("disabled", "active"): {"admin", "inventory"},
    ("missing", "active"): {"admin", "inventory"},
    ("disabled", "maintenance"): {"admin", "inventory"},
    ("missing", "maintenance"): {"admin", "inventory"},
}


@pytest.mark.parametrize("current,new,actor", list(itertools.product(
    ("active", "archived"), ("active", "archived"), list(Actor))))
def test_experimentCell(current: str, new: str, actor: Actor) -> None:
    """
    Experiments only go from active to archived, never by a node; archived is final.
    """
    if actor.value in EXPERIMENT_ALLOWED.get((current, new), set()):
        assert states.EXPERIMENT.check(current, new, actor) is True
    else:
        with pytest.raises(TransitionRefused):
            states.EXPERIMENT.check(current, new, actor)


@pytest.mark.parametrize("current,new,actor", list(itertools.product(
    states.NODE_STATUSES, states.NODE_STATUSES, list(Actor))))
def test_nodeCell(current: str, new: str, actor: Actor) -> None:
    """
    Every node cell: the heartbeat owns active/maintenance, the inventory and
    admins the rest; saying the current status again is a no-op for anyone.
    """
    if current == new:
        assert states.NODE.check(current, new, actor) is False
    elif actor.value in NODE_ALLOWED.get((current, new), set()):
        assert states.NODE.check(current, new, actor) is True
    else:
        with pytest.raises(TransitionRefused):
            states.NODE.check(current, new, actor)


def test_tablesMatchExpectation() -> None:
    """
    The tables have exactly the documented cells.
    """
    def flat(machine: states.Machine) -> dict:
        return {k: {a.value for a in v} for k, v in machine.table.items()}

    assert flat(states.EXPERIMENT) == EXPERIMENT_ALLOWED
    assert flat(states.NODE) == NODE_ALLOWED


GENI_ALLOCATION_EDGES = {
    ("geni_allocated", "geni_provisioned"),
    ("geni_allocated", "geni_unallocated"),
    ("geni_provisioned", "geni_unallocated"),
}


def test_geniViewFollowsGENIAllocationStates() -> None:
    """
    Every schedule transition shows to GENI as no change of allocation state
    or one of GENI's own allocation edges.
    """
    for (old, new) in states.TRANSITIONS:
        before, after = statemap.geniStates(old)[0], statemap.geniStates(new)[0]
        assert before == after or (before, after) in GENI_ALLOCATION_EDGES, (old, new, before, after)


def test_unknownObject() -> None:
    """
    Only schedules, experiments and nodes have tables.
    """
    with pytest.raises(TypeError):
        transition(None, object(), "x", Actor.ADMIN, "", 0)


class SideEffectTests(CoreTestCase):
    """
    What transition() does besides the status.
    """

    def setUp(self) -> None:
        super().setUp()
        self.node1 = self.successResultOf(self.scheduler.addUser(name="Node 1", role="node", fingerprint="1" * 40))

    def experiment(self, expid: int):
        return self.inTxn(lambda txn: txn.getExperiment(expid))

    def test_nodeReportDoesNotArchive(self) -> None:
        """
        A node's final report leaves the experiment listed (active) even when
        it was the last open schedule: the owner deletes it.
        """
        booked = self.book(nodes=["1"], start=NOW + 100)
        sid = booked.schedules[0].id
        self.successResultOf(self.scheduler.changeStatus(sid, "started", self.node1.id))
        self.successResultOf(self.scheduler.changeStatus(sid, "finished", self.node1.id))
        self.assertEqual(self.experiment(booked.experiment.id).status, "active")

    def test_schedulerEndArchives(self) -> None:
        """
        When the scheduler ends the last open schedule (an expired
        allocation), the experiment is archived with it, once.
        """
        booked = self.book(nodes=["1", "2"], nodecount=2, start=NOW + 2000, allocateOnly=True)
        seen = []
        self.scheduler.events.subscribe(seen.append)
        self.clock.advance(self.policy.allocationExpiry + 1)
        self.assertEqual(self.successResultOf(self.scheduler.expireAllocations()), 2)
        self.assertEqual(self.experiment(booked.experiment.id).status, "archived")
        self.assertEqual([e.kind for e in seen].count("experiment.archived"), 1)

    def test_partialEndKeepsActive(self) -> None:
        """
        An owner ending some schedules leaves the experiment active while others are open.
        """
        from am.core import lifecycle

        booked = self.book(nodes=["1", "2"], nodecount=2, start=NOW + 100)
        first = booked.schedules[0]
        result = self.successResultOf(self.scheduler._change(
            lifecycle.endSchedules, [first], self.alice, NOW, self.policy))
        self.assertEqual((result.canceled, result.archived), (1, False))
        self.assertEqual(self.experiment(booked.experiment.id).status, "active")

    def test_definedClearsExpiry(self) -> None:
        """
        Provisioning (allocated -> defined) clears the allocation expiry.
        """
        from am.core import lifecycle

        booked = self.book(nodes=["1"], start=NOW + 2000, allocateOnly=True)
        [done] = self.successResultOf(self.scheduler._change(
            lifecycle.provision, booked.schedules, self.alice, NOW, self.policy))
        self.assertEqual((done.status, done.expires), ("defined", 0))

    def test_heartbeatRespectsTable(self) -> None:
        """
        A heartbeat of a disabled node does not bring it back.
        """
        self.successResultOf(self.scheduler.setNodeStatus("1", "disabled"))
        reply = self.successResultOf(self.scheduler.heartbeat(self.node1.id, "1", maintenance=False))
        self.assertEqual(reply.node.status, "disabled")
        self.assertEqual(self.inTxn(lambda txn: txn.getNode("1")).status, "disabled")

    def test_inventoryLeavesMaintenance(self) -> None:
        """
        The inventory cannot end a node's maintenance mode (its heartbeat can).
        """
        self.putNode(Node(id="1", status="maintenance", heartbeat=NOW))
        self.successResultOf(self.scheduler.applyInventory([{"id": "1", "status": "active", "hostname": "h1"}],
                                                           complete=False))
        node = self.inTxn(lambda txn: txn.getNode("1"))
        self.assertEqual((node.status, node.hostname), ("maintenance", "h1"))
