# -*- test-case-name: tests.test_states -*-
"""
The core's state machines, each one table: schedule status, experiment
status and node status. Which transitions exist and who may cause each is
decided here and nowhere else; L{am.core.transitions.transition} applies a
change with its side effects. The GENI allocation state is a view derived
from the schedule status (L{am.geni.statemap}); the node agent's task phases
are marvind's own table (L{node.phases}).
"""

from __future__ import annotations

from enum import Enum
from typing import Iterable

import attrs

from am.core.errors import TransitionRefused


class Actor(str, Enum):
    """
    Who asks for a status change.
    """

    NODE = "node"
    SCHEDULER = "scheduler"
    OWNER = "owner"
    ADMIN = "admin"
    INVENTORY = "inventory"


ALLOCATED = "allocated"  # booked through GENI Allocate, not yet provisioned; invisible to nodes
QUEUED = "queued"  # in the low-priority queue (start=-1): no window yet, never blocks; invisible to nodes
DEFINED = "defined"
REQUESTED = "requested"
DEPLOYED = "deployed"
DELAYED = "delayed"
STARTED = "started"
RESTARTED = "restarted"
STOPPED = "stopped"
FINISHED = "finished"
FAILED = "failed"
CANCELED = "canceled"
ABORTED = "aborted"

# A schedule that never had a window (queued, or canceled while queued) keeps
# the legacy form: start -1 and its duration as stop. Interval queries skip it.
QUEUE_START = -1

ACTIVE_STATES = (ALLOCATED, QUEUED, DEFINED, REQUESTED, DEPLOYED, DELAYED, STARTED, RESTARTED)
FINAL_STATES = (STOPPED, FINISHED, FAILED, CANCELED, ABORTED)
ALL_STATES = ACTIVE_STATES + FINAL_STATES

# States a node may report, in the legacy agent's vocabulary.
NODE_REPORTABLE = (DEPLOYED, DELAYED, STARTED, RESTARTED, STOPPED, FINISHED, FAILED)

N, S, O, A, I = Actor.NODE, Actor.SCHEDULER, Actor.OWNER, Actor.ADMIN, Actor.INVENTORY

# Statuses the scheduler fails when nobody ran them (L{am.core.lifecycle.sweep}):
# no node ever took the task, or its node went silent before reporting an end.
NEVER_DEPLOYED = (DEFINED, REQUESTED)
ON_NODE = (DEPLOYED, DELAYED, STARTED, RESTARTED)

# (from-states, to-state, actors allowed)
_RULES: tuple[tuple[tuple[str, ...], str, frozenset[Actor]], ...] = (
    ((ALLOCATED,), DEFINED, frozenset({O, A})),  # GENI Provision
    ((QUEUED,), DEFINED, frozenset({S})),  # placed by a heartbeat of its node
    ((ALLOCATED, QUEUED, DEFINED), CANCELED, frozenset({O, A, S})),
    ((DEFINED,), REQUESTED, frozenset({S})),  # first delivered by a heartbeat
    ((REQUESTED, DEPLOYED, DELAYED, STARTED, RESTARTED), ABORTED, frozenset({O, A, S})),
    ((DEFINED, REQUESTED, DELAYED), DEPLOYED, frozenset({N})),
    ((DEFINED, REQUESTED, DEPLOYED), DELAYED, frozenset({N})),
    ((DEFINED, REQUESTED, DEPLOYED, DELAYED), STARTED, frozenset({N})),
    ((DEPLOYED, STARTED), RESTARTED, frozenset({N})),
    ((DEPLOYED, STARTED, RESTARTED), STOPPED, frozenset({N})),
    # Stopped on request inside its window (GENI geni_stop): ready to run again.
    ((STARTED, RESTARTED), DEPLOYED, frozenset({N})),
    ((DEPLOYED, DELAYED, STARTED, RESTARTED), FINISHED, frozenset({N})),
    ((DEFINED, REQUESTED, DEPLOYED, DELAYED, STARTED, RESTARTED), FAILED, frozenset({N, S})),
    # Kept for an allocation whose window passed unprovisioned; in practice
    # its allocation expires (canceled) before its window starts.
    ((ALLOCATED,), FAILED, frozenset({S})),
)

def isFinal(status: str) -> bool:
    """
    Final states are sticky and free the schedule's window.
    """
    return status in FINAL_STATES


def splitStatus(text: str) -> tuple[str, str]:
    """
    Split the legacy C{"code; reason"} form into its code and reason.
    """
    code, _, reason = text.strip().partition(";")
    return code.strip(), reason.strip()


@attrs.frozen
class Machine:
    """
    One state machine as a table.

    @ivar name: what it is the status of, for messages.
    @ivar states: every state, in display order.
    @ivar final: the states nothing leaves.
    @ivar table: C{(from, to) -> actors allowed}.
    @ivar repeats: C{(state, actor)} pairs for which asking for the current
        state again is a harmless no-op rather than a refusal.
    """

    name: str
    states: tuple[str, ...]
    final: tuple[str, ...]
    table: dict[tuple[str, str], frozenset[Actor]]
    repeats: frozenset[tuple[str, Actor]] = frozenset()

    @classmethod
    def fromRules(
        cls,
        name: str,
        allStates: tuple[str, ...],
        final: tuple[str, ...],
        rules: Iterable[tuple[tuple[str, ...], str, frozenset[Actor]]],
        repeats: Iterable[tuple[str, Actor]] = (),
    ) -> "Machine":
        """
        Build the table from C{(from-states, to-state, actors)} rules.
        """
        table: dict[tuple[str, str], frozenset[Actor]] = {}
        for froms, to, actors in rules:
            for start in froms:
                table[(start, to)] = table.get((start, to), frozenset()) | actors
        return cls(name, allStates, final, table, frozenset(repeats))

    def allows(self, current: str, new: str, actor: Actor) -> bool:
        """
        Whether C{actor} may move C{current} to C{new} (a harmless repeat included).
        """
        try:
            self.check(current, new, actor)
        except TransitionRefused:
            return False
        return True

    def check(self, current: str, new: str, actor: Actor) -> bool:
        """
        Decide a change.

        @return: C{True} when the state changes, C{False} for a harmless repeat
            of the current state (a node re-sending C{started}).
        @raise TransitionRefused: when the change is not allowed; the message says why.
        """
        if new not in self.states:
            raise TransitionRefused(f"Unknown status code ({new}).", code="unknown")
        if current in self.final:
            raise TransitionRefused(
                f"Status {current} cannot be reset.", code="final", status=current
            )
        if current == new:
            if (new, actor) in self.repeats:
                return False
            raise TransitionRefused(f"Status is already {current}.", code="same", status=current)
        actors = self.table.get((current, new))
        if actors is None:
            raise TransitionRefused(
                f"Status {current} cannot change to {new}.", code="order", status=current
            )
        if actor not in actors:
            raise TransitionRefused(
                f"A {actor.value} may not change status {current} to {new}.",
                code="actor",
                status=current,
            )
        return True


SCHEDULE = Machine.fromRules(
    "schedule", ALL_STATES, FINAL_STATES, _RULES,
    repeats=[(s, N) for s in NODE_REPORTABLE],
)
TRANSITIONS = SCHEDULE.table


def checkTransition(current: str, new: str, actor: Actor) -> bool:
    """
    Decide a schedule status change (L{Machine.check} of L{SCHEDULE}).
    """
    return SCHEDULE.check(current, new, actor)


# -- experiments ------------------------------------------------------------

EXPERIMENT_ACTIVE = "active"
EXPERIMENT_ARCHIVED = "archived"

EXPERIMENT = Machine.fromRules(
    "experiment",
    (EXPERIMENT_ACTIVE, EXPERIMENT_ARCHIVED),
    (EXPERIMENT_ARCHIVED,),
    (
        # deleted by its owner or an admin; merged into another by its owner;
        # or every schedule of it ended by someone other than its nodes.
        ((EXPERIMENT_ACTIVE,), EXPERIMENT_ARCHIVED, frozenset({O, A, S})),
    ),
)


# -- nodes --------------------------------------------------------------------

NODE_ACTIVE = "active"
NODE_MAINTENANCE = "maintenance"
NODE_DISABLED = "disabled"
NODE_MISSING = "missing"
NODE_STATUSES = (NODE_ACTIVE, NODE_MAINTENANCE, NODE_DISABLED, NODE_MISSING)

NODE = Machine.fromRules(
    "node",
    NODE_STATUSES,
    (),
    (
        # The node's own heartbeat says whether it is in maintenance mode.
        ((NODE_ACTIVE,), NODE_MAINTENANCE, frozenset({N, A, I})),
        # Back from maintenance: the node or an admin, never the inventory
        # (the heartbeat owns active/maintenance).
        ((NODE_MAINTENANCE,), NODE_ACTIVE, frozenset({N, A})),
        # Out of service and back: admins and the inventory.
        ((NODE_ACTIVE, NODE_MAINTENANCE, NODE_MISSING), NODE_DISABLED, frozenset({A, I})),
        ((NODE_ACTIVE, NODE_MAINTENANCE, NODE_DISABLED), NODE_MISSING, frozenset({A, I})),
        ((NODE_DISABLED, NODE_MISSING), NODE_ACTIVE, frozenset({A, I})),
        ((NODE_DISABLED, NODE_MISSING), NODE_MAINTENANCE, frozenset({A, I})),
    ),
    # Saying a node's status again changes nothing, whoever says it.
    repeats=[(s, a) for s in NODE_STATUSES for a in Actor],
)
