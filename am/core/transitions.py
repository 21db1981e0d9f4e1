# -*- test-case-name: tests.test_transitions -*-
"""
Applying a state change: L{transition} checks it against its table
(L{am.core.states}) and does every side effect that goes with it, so no rule
writes a status itself.

Side effects:
  - schedule: the refund of what a final schedule did not use (with its
    journal entries), the upload window of its results (L{results.openWindow}), C{expires} cleared once a node may see it, the write,
    the event, and, when someone other than its node ended it, the archive
    check of its experiment (L{settle}, once per experiment and command);
  - experiment: the write and the event;
  - node: the write and the event.
"""

from __future__ import annotations

from typing import Any, Optional, Union

from am.core import quotas, results, states
from am.core.events import (
    ExperimentArchived,
    NodeStatusChanged,
    ScheduleStatusChanged,
    beforeCommit,
    emit,
)
from am.core.interfaces import IStoreTransaction
from am.core.model import Experiment, Node, Schedule
from am.core.policy import Policy
from am.core.states import Actor

# Meters of a traffic report that are not interface traffic (legacy §3.6).
NON_INTERFACE_METERS = ("deployment", "results")


def dataUsed(txn: IStoreTransaction, schedule: Schedule) -> Optional[int]:
    """
    Bytes the node reported on its interfaces for this schedule, if it reported.
    """
    meters = txn.trafficOf(schedule.id)
    used = [v for k, v in meters.items() if k not in NON_INTERFACE_METERS]
    return sum(used) if used else None


def neverRan(old: str, new: str, actor: Actor, happened: int, schedule: Schedule) -> bool:
    """
    Whether a schedule that just became final never ran on a node: canceled,
    ended before its window, or failed by the scheduler because no node ever
    took it (L{states.NEVER_DEPLOYED}).
    """
    return (
        new == states.CANCELED
        or happened < schedule.start
        or (actor is Actor.SCHEDULER and old in states.NEVER_DEPLOYED)
    )


def refundUnused(
    txn: IStoreTransaction, schedule: Schedule, ownerid: int, now: int, policy: Policy,
    ran: bool = True,
) -> dict[str, int]:
    """
    Give back what a schedule that just became final did not use: everything if
    it never ran on a node, otherwise the node-time after C{now} and the data
    its node reported not to have used.
    """
    unused = not ran
    used = None if unused else dataUsed(txn, schedule)
    amounts = {
        "time": schedule.chargedTime if unused else min(schedule.chargedTime, max(0, schedule.stop - now)),
        "data": schedule.chargedData if unused else (0 if used is None else max(0, schedule.chargedData - used)),
        "storage": schedule.chargedStorage if unused else 0,
    }
    schedule.chargedTime -= amounts["time"]
    schedule.chargedData -= amounts["data"]
    schedule.chargedStorage -= amounts["storage"]
    quotas.refund(
        txn, ownerid, amounts, f"schedule {schedule.id} {schedule.status}: unused part refunded", now, policy
    )
    return amounts


def transition(
    txn: IStoreTransaction,
    obj: Union[Schedule, Experiment, Node],
    to: str,
    actor: Actor,
    reason: str,
    now: int,
    policy: Optional[Policy] = None,
    *,
    at: Optional[int] = None,
    experiment: Optional[Experiment] = None,
) -> bool:
    """
    Move C{obj} to status C{to} on behalf of C{actor}, with the side effects.

    @param at: when it happened, if earlier than C{now} (a node's late
        report): refunds count from then.
    @param experiment: the schedule's experiment, if the caller has it.
    @return: whether the status changed (C{False} for a harmless repeat).
    @raise TransitionRefused: the table does not allow it.
    """
    if isinstance(obj, Schedule):
        return _schedule(txn, obj, to, actor, reason, now, policy or Policy(), at, experiment)
    if isinstance(obj, Experiment):
        return _experiment(txn, obj, to, actor, reason, now)
    if isinstance(obj, Node):
        return _node(txn, obj, to, actor, reason, now)
    raise TypeError(f"no state machine for {type(obj).__name__}")


def _schedule(
    txn: IStoreTransaction, schedule: Schedule, to: str, actor: Actor, reason: str, now: int,
    policy: Policy, at: Optional[int], experiment: Optional[Experiment],
) -> bool:
    if not states.SCHEDULE.check(schedule.status, to, actor):
        return False
    old = schedule.status
    if experiment is None:
        experiment = txn.getExperiment(schedule.expid)
    happened = now if at is None else at
    schedule.status, schedule.reason, schedule.updated = to, reason, now
    if to == states.DEFINED:
        schedule.expires = 0  # nodes see it now: no allocation or queue expiry
    if states.isFinal(to):
        ran = not neverRan(old, to, actor, happened, schedule)
        refundUnused(txn, schedule, experiment.ownerid, happened, policy, ran)
        results.openWindow(txn, schedule, now, policy)
    txn.updateSchedule(schedule)
    emit(txn, ScheduleStatusChanged(
        time=now, actor=actor.value, reason=reason, schedid=schedule.id, expid=schedule.expid,
        ownerid=experiment.ownerid, nodeid=schedule.nodeid, old=old, new=to,
    ))
    if states.isFinal(to) and actor is not Actor.NODE:
        expid = schedule.expid
        beforeCommit(txn, ("settle", expid), lambda: settle(txn, expid, actor, now))
    return True


def settle(txn: IStoreTransaction, expid: int, actor: Actor, now: int) -> bool:
    """
    The one archive rule: an experiment whose schedules are all final is
    archived, once someone other than its nodes ended one of them (its owner
    or an admin deleting, the scheduler expiring or failing). A node's own
    final report never archives: the experiment stays listed until deleted,
    as with the legacy server.

    @return: whether the experiment is archived now.
    """
    experiment = txn.getExperiment(expid)
    if experiment is None or experiment.status != states.EXPERIMENT_ACTIVE:
        return False
    if not all(states.isFinal(s.status) for s in txn.schedulesOfExperiment(expid)):
        return False
    return _experiment(txn, experiment, states.EXPERIMENT_ARCHIVED, actor, "all schedules ended", now)


def _experiment(
    txn: IStoreTransaction, experiment: Experiment, to: str, actor: Actor, reason: str, now: int
) -> bool:
    if not states.EXPERIMENT.check(experiment.status, to, actor):
        return False
    old = experiment.status
    experiment.status = to
    txn.updateExperiment(experiment)
    emit(txn, ExperimentArchived(
        time=now, actor=actor.value, reason=reason, expid=experiment.id,
        ownerid=experiment.ownerid, old=old, new=to,
    ))
    return True


def _node(txn: IStoreTransaction, node: Node, to: str, actor: Actor, reason: str, now: int) -> bool:
    if not states.NODE.check(node.status, to, actor):
        return False
    old = node.status
    node.status = to
    txn.putNode(node)
    emit(txn, NodeStatusChanged(time=now, actor=actor.value, reason=reason, nodeid=node.id, old=old, new=to))
    return True


def nodeAppeared(txn: IStoreTransaction, node: Node, actor: Actor, now: int) -> None:
    """
    Record a node that did not exist before (from the inventory).
    """
    txn.putNode(node)
    emit(txn, NodeStatusChanged(
        time=now, actor=actor.value, reason="new node", nodeid=node.id, old=None, new=node.status,
    ))
