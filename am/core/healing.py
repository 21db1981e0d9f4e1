# -*- test-case-name: tests.test_healing -*-
"""
Self-healing bookings (issue 16): a booking made with C{options.heal} has
each of its future windows that sits on a node that is down or failing
(L{am.core.health.assess}) moved, before it starts, to a healthy node that
matches the booking's filter and is free for the same window. One pass is
one command and one transaction (the background loop runs it, see
C{housekeeping.heal_period}), so a window is never moved onto a node
another move of the same pass took.

Only windows starting within C{heal_ahead} seconds move, and only
schedules no node has fetched (C{allocated}, C{defined}) whose window has
not begun: a running task never moves. When no healthy node is free, the
owner is told once per node: the schedule's status text says so and a
L{HealFailed} event is emitted.
"""

from __future__ import annotations

from typing import Any

import attrs

from am.core import occurrences
from am.core.errors import Conflict
from am.core.events import HealFailed, emit
from am.core.health import assessAll
from am.core.interfaces import IStoreTransaction
from am.core.model import Experiment, Schedule
from am.core.policy import Policy
from am.core.series import occurrenceOf
from am.core.states import Actor

# Hidden deployment option: the node whose failure the owner was already told
# about (so a pass does not tell again).
TOLD = "_heal.told"


@attrs.define
class Healing:
    """
    What one pass did: schedules moved, and schedules that could not move.
    """

    moved: int = 0
    stranded: int = 0


def wantsHealing(experiment: Experiment) -> bool:
    """
    Whether the booking opted in (C{options.heal}).
    """
    return bool((experiment.options or {}).get("heal"))


def heal(txn: IStoreTransaction, now: int, policy: Policy) -> Healing:
    """
    One pass over the nodes that are not healthy.
    """
    result = Healing()
    nodes = txn.listNodes()
    health = assessAll(txn, nodes, now, policy)
    for node in nodes:
        verdict = health[node.id]
        if verdict.healthy:
            continue
        for schedule in txn.schedulesOfNode(node.id, now + 1, now + policy.healAhead):
            if schedule.status not in occurrences.MOVABLE or schedule.start <= now:
                continue
            experiment = txn.getExperiment(schedule.expid)
            if experiment is None or not wantsHealing(experiment):
                continue
            target = _target(txn, experiment, schedule, health, now, policy)
            if target is not None:
                schedule.reason = f"moved from node {node.id} ({verdict.why})"
                schedule.deploymentOptions.pop(TOLD, None)
                occurrences.relocate(
                    txn, schedule, target, schedule.start, occurrenceOf(schedule, experiment), experiment.ownerid,
                    now, Actor.SCHEDULER.value, f"healed: node {node.id} {verdict.why}",
                )
                result.moved += 1
            elif schedule.deploymentOptions.get(TOLD) != node.id:
                _tell(txn, schedule, experiment, node.id, verdict.why, now)
                result.stranded += 1
    return result


def _target(
    txn: IStoreTransaction, experiment: Experiment, schedule: Schedule, health: dict[str, Any],
    now: int, policy: Policy,
) -> Any:
    """
    The best ranked healthy node matching the booking's filter that is free
    for the schedule's window and not used by the same occurrence, or C{None}.
    """
    try:
        pool = occurrences.candidates(txn, experiment, now, policy)
    except Conflict:
        return None  # named nodes or pairs: nothing else may take it
    siblings = {
        s.nodeid for s in txn.schedulesOfExperiment(experiment.id)
        if s.start < schedule.stop and schedule.start < s.stop
    }
    pool = [n for n in pool if n not in siblings and n in health and health[n].healthy]
    free = occurrences.freeNodes(txn, pool, schedule.start, schedule.stop, policy)
    return free[0] if free else None


def _tell(txn: IStoreTransaction, schedule: Schedule, experiment: Experiment, nodeid: str, why: str, now: int) -> None:
    """
    Tell the owner a window could not be healed: in the schedule's status
    text, and with an event.
    """
    schedule.reason = f"node {nodeid} is {why}; no healthy node matching the filter is free: not moved"
    schedule.deploymentOptions[TOLD] = nodeid
    schedule.updated = now
    txn.updateSchedule(schedule)
    emit(txn, HealFailed(
        time=now, actor=Actor.SCHEDULER.value, reason=schedule.reason, schedid=schedule.id, expid=schedule.expid,
        ownerid=experiment.ownerid, nodeid=nodeid, start=schedule.start, stop=schedule.stop,
    ))
