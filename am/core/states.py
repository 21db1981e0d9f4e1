# -*- test-case-name: tests.test_states -*-
"""
The schedule status state machine: which transitions exist and who may cause each.

This table is the only place that decides; both faces and the node routes ask it.
"""

from __future__ import annotations

from enum import Enum

from am.core.errors import TransitionRefused


class Actor(str, Enum):
    """
    Who asks for a status change.
    """

    NODE = "node"
    SCHEDULER = "scheduler"
    OWNER = "owner"
    ADMIN = "admin"


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

N, S, O, A = Actor.NODE, Actor.SCHEDULER, Actor.OWNER, Actor.ADMIN

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
    # A task whose window passed without the node ever taking it.
    ((ALLOCATED,), FAILED, frozenset({S})),
)

TRANSITIONS: dict[tuple[str, str], frozenset[Actor]] = {}
for _froms, _to, _actors in _RULES:
    for _from in _froms:
        TRANSITIONS[(_from, _to)] = TRANSITIONS.get((_from, _to), frozenset()) | _actors


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


def checkTransition(current: str, new: str, actor: Actor) -> bool:
    """
    Decide a status change.

    @return: C{True} when the status changes, C{False} for a harmless repeat of the
        current active status (a node re-sending C{started}).
    @raise TransitionRefused: when the change is not allowed; the message says why.
    """
    if new not in ALL_STATES:
        raise TransitionRefused(f"Unknown status code ({new}).", code="unknown")
    if isFinal(current):
        raise TransitionRefused(
            f"Status {current} cannot be reset.", code="final", status=current
        )
    if current == new:
        if actor is Actor.NODE and new in NODE_REPORTABLE:
            return False
        raise TransitionRefused(f"Status is already {current}.", code="same", status=current)
    actors = TRANSITIONS.get((current, new))
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
