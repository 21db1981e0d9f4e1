# -*- test-case-name: tests.test_lifecycle -*-
"""
What happens to schedules after booking: status reports, heartbeats, deletion,
provisioning, renewal and expiry, with quota refunds for time not used.
"""

from __future__ import annotations

from typing import Any, Optional

import attrs

from am.core import health, quotas, states
from am.core.errors import BadRequest, Conflict, Forbidden, NotFound
from am.core.events import NodeHeard, ScheduleWindowChanged, emit
from am.core.interfaces import IStoreTransaction, ReadAhead
from am.core.model import NODE_ACTIVE, NODE_MAINTENANCE, Experiment, Schedule, User
from am.core.policy import Policy
from am.core.states import Actor
from am.core.transitions import NON_INTERFACE_METERS, dataUsed, settle, transition
from am.core.values import identifier, integer, lookup


def actorFor(user: User, experiment: Experiment) -> Actor:
    """
    How the state machine sees this user acting on that experiment.

    @raise Forbidden: for anyone else.
    """
    if user.active and user.role == "admin":
        return Actor.ADMIN
    if user.active and user.role == "user" and user.id == experiment.ownerid:
        return Actor.OWNER
    raise Forbidden(f"Only admins and user {experiment.ownerid} can do this")


def changeStatus(
    txn: IStoreTransaction, schedid: Any, text: Any, user: User, now: int, policy: Policy,
    when: Any = None,
) -> tuple[Schedule, bool]:
    """
    A status report (from a node) or an owner's or admin's change.

    @param when: when the node says it happened (a report queued during an
        outage arrives late); used for refunds, clamped between the schedule's
        last change and now.

    @return: the schedule and whether it changed.
    @raise TransitionRefused: with the legacy message for a final status.
    """
    if not isinstance(text, str) or not text.strip():
        raise BadRequest("Parameters missing (required: status)", parameter="status")
    code, reason = states.splitStatus(text)
    if code not in states.ALL_STATES:
        raise BadRequest(f"Unknown status code ({text.strip()}).", parameter="status")
    schedule = getSchedule(txn, schedid)
    experiment = txn.getExperiment(schedule.expid)
    if user.role == "node":
        if not user.active or str(user.nodeid) != schedule.nodeid:
            raise Forbidden(f"Wrong user to update this status ({user.name})")
        actor = Actor.NODE
    else:
        actor = actorFor(user, experiment)
    at = None
    if actor is Actor.NODE and when is not None:
        stamp = identifier(str(when).split(".")[0])
        if stamp is not None:
            at = min(now, max(stamp, schedule.updated))
    changed = transition(txn, schedule, code, actor, reason[:500], now, policy, at=at, experiment=experiment)
    return schedule, changed


def getSchedule(txn: IStoreTransaction, schedid: Any) -> Schedule:
    """
    Look a schedule up by its id (an int, or its string form).
    """
    return lookup(txn.getSchedule, schedid, "Could not find schedule entry with this id.")


@attrs.define
class HeartbeatReply:
    """
    What a node learns from a heartbeat.
    """

    node: Any
    tasks: list[Schedule]


def heartbeat(
    txn: IStoreTransaction,
    user: User,
    nodeid: str,
    now: int,
    policy: Policy,
    maintenance: bool = False,
    interfaces: Optional[list] = None,
    limit: int = 3,
) -> HeartbeatReply:
    """
    Record that a node is alive and hand it its upcoming tasks (final ones too, so
    it can drop what was canceled); C{defined} tasks become C{requested}. An
    active node's oldest queued task is placed first when it fits.
    """
    if user.role != "node" or not user.active or str(user.nodeid) != str(nodeid):
        raise Forbidden(f"Wrong user to update this status. ({user.name})")
    node = txn.getNode(nodeid)
    if node is None:
        raise NotFound("Node id does not exist.")
    wanted = NODE_MAINTENANCE if maintenance else NODE_ACTIVE
    if states.NODE.allows(node.status, wanted, Actor.NODE):
        transition(txn, node, wanted, Actor.NODE, "heartbeat", now, policy)
    previous, node.heartbeat = node.heartbeat, now
    if interfaces is not None and interfaces == node.interfaces:
        # Nodes send their interfaces with every heartbeat; most often they
        # did not change, and writing them again costs the store for nothing.
        interfaces = None
    elif interfaces is not None:
        node.interfaces = interfaces
    txn.setHeartbeat(node.id, now, None, interfaces)
    if previous < now - policy.imminentHeartbeatAge:
        emit(txn, NodeHeard(time=now, actor=Actor.NODE.value, reason="heartbeat", nodeid=node.id, previous=previous))
        if previous:
            health.noteGap(txn, node.id, now, policy)
    # Read before a queued task is placed: the one placed is added below.
    waiting, upcoming = txn.tasksOfNode(node.id, *_taskWindow(now, policy))
    placed = placeQueued(txn, node.id, now, policy, waiting) if node.status == NODE_ACTIVE else None
    limit = max(1, min(limit, 100))
    tasks = [s for s in upcoming if s.status != states.ALLOCATED][:limit]
    if placed is not None and all(t.id != placed.id for t in tasks):
        # Shared or final tasks before it must not hide what was just placed.
        tasks = sorted(tasks[: limit - 1] + [placed], key=lambda t: (t.start, t.id))
    for task in tasks:
        if task.status == states.DEFINED:
            transition(txn, task, states.REQUESTED, Actor.SCHEDULER, "", now, policy)
    return HeartbeatReply(node, tasks)


# How many of a node's queued tasks one heartbeat looks at (expired ones are
# dropped on the way to the oldest live one).
_QUEUE_LOOKAHEAD = 16


def _taskWindow(now: int, policy: Policy) -> tuple[int, int, int]:
    # The window of upcoming tasks a heartbeat hands out, and how many queued ones it looks at.
    return now, now + policy.prefetch, _QUEUE_LOOKAHEAD


def heartbeatReads(userid: Any, nodeid: str, now: int, policy: Policy, **kwargs: Any) -> ReadAhead:
    """
    What L{heartbeat} (as the command C{am.core.commands.heartbeat}) reads
    before it writes, for a store that reads a batch's at once.
    """
    return ReadAhead(userid, str(nodeid), *_taskWindow(now, policy))


def placeQueued(
    txn: IStoreTransaction, nodeid: str, now: int, policy: Policy, waiting: list[Schedule]
) -> Optional[Schedule]:
    """
    The low-priority queue (legacy reference §5.5): give the node's oldest
    queued task the window C{[now + padding, now + padding + duration)} when
    the node has no blocking schedule near it (padding included) and no
    maintenance window is in the way; the task then is an ordinary C{defined}
    one. Otherwise it stays queued for a later heartbeat. Queued tasks whose
    queue expired are canceled on the way (legacy: only the first three
    tasks were looked at, so a queued task could land on a booked one).
    C{waiting}: the node's first queued tasks, oldest first (C{IStoreTransaction.tasksOfNode}).

    @return: the task placed, if any.
    """
    for task in waiting:
        if task.expires < now:
            expireQueued(txn, task, now, policy)
            continue
        duration = task.stop  # not placed yet: start -1, stop = duration
        start = now + policy.padding
        stop = start + duration
        if policy.maintenanceConflict(start, stop) is not None:
            return None
        if txn.blockingIntervals(start - policy.padding, stop + policy.padding, [nodeid]):
            return None
        oldStart, oldStop = task.start, task.stop
        task.start, task.stop = start, stop
        transition(txn, task, states.DEFINED, Actor.SCHEDULER, "", now, policy)
        emit(txn, ScheduleWindowChanged(
            time=now, actor=Actor.SCHEDULER.value, reason="placed from the queue", schedid=task.id,
            expid=task.expid, nodeid=task.nodeid, start=start, stop=stop, oldStart=oldStart, oldStop=oldStop,
        ))
        public = task.deploymentOptions.get("ssh.public")
        if public:
            txn.addPublicKey(task.id, public, stop)
        return task
    return None


def expireQueued(txn: IStoreTransaction, schedule: Schedule, now: int, policy: Policy) -> None:
    """
    Cancel a queued task whose queue expiry passed, refunding it (its
    experiment is archived once nothing of it is left open: L{settle}).
    """
    transition(txn, schedule, states.CANCELED, Actor.SCHEDULER, "queue expired", now, policy)


@attrs.define
class Deletion:
    """
    What deleting an experiment did.
    """

    canceled: int = 0
    aborted: int = 0
    archived: bool = False


def deleteExperiment(
    txn: IStoreTransaction, expid: Any, user: User, now: int, policy: Policy
) -> Deletion:
    """
    Cancel what has not reached a node, abort what has, and archive the experiment.
    Unlike the legacy scheduler, one call is enough and unused quota is refunded.
    """
    experiment = getExperiment(txn, expid)
    if experiment.status != states.EXPERIMENT_ACTIVE:
        raise NotFound(f"Experiment {experiment.id} not found.")
    actor = actorFor(user, experiment)
    result = endSchedules(txn, txn.schedulesOfExperiment(experiment.id), user, now, policy)
    if not result.archived:
        experiment = getExperiment(txn, expid)
        transition(txn, experiment, states.EXPERIMENT_ARCHIVED, actor, "deleted", now, policy)
    result.archived = True
    return result


def endSchedules(
    txn: IStoreTransaction, schedules: list[Schedule], user: User, now: int, policy: Policy,
    reason: str = "",
) -> Deletion:
    """
    Cancel the schedules no node has yet and abort the others (final ones stay
    as they are); archive an experiment once all its schedules are final.
    """
    result = Deletion()
    touched: dict[int, tuple[Experiment, Actor]] = {}
    for schedule in schedules:
        experiment, actor = touched.get(schedule.expid) or (None, None)
        if experiment is None or actor is None:
            experiment = txn.getExperiment(schedule.expid)
            actor = actorFor(user, experiment)
            touched[schedule.expid] = (experiment, actor)
        if schedule.status in (states.ALLOCATED, states.QUEUED, states.DEFINED):
            transition(txn, schedule, states.CANCELED, actor, reason, now, policy, experiment=experiment)
            result.canceled += 1
        elif not states.isFinal(schedule.status):
            transition(txn, schedule, states.ABORTED, actor, reason, now, policy, experiment=experiment)
            result.aborted += 1
    for expid, (_, actor) in touched.items():
        if settle(txn, expid, actor, now):
            result.archived = True
    return result


def updateOptions(
    txn: IStoreTransaction, schedules: list[Schedule], user: User, now: int, updates: dict[str, Any]
) -> list[Schedule]:
    """
    Change deployment options of live schedules (GENI C{geni_update_users},
    operator restart requests); nodes see them on their next heartbeat.
    """
    for schedule in schedules:
        actorFor(user, txn.getExperiment(schedule.expid))
        if states.isFinal(schedule.status):
            raise Conflict(f"Schedule {schedule.id} is {schedule.status}.")
        schedule.deploymentOptions.update(updates)
        schedule.updated = now
        txn.updateSchedule(schedule)
    return schedules


def getExperiment(txn: IStoreTransaction, expid: Any) -> Experiment:
    """
    Look an experiment up by id.
    """
    return lookup(txn.getExperiment, expid, "Could not find experiment with this id.")


def provision(
    txn: IStoreTransaction, schedules: list[Schedule], user: User, now: int, policy: Policy,
    options: Optional[dict] = None,
) -> list[Schedule]:
    """
    Make allocated schedules visible to their nodes (GENI Provision).
    """
    for schedule in schedules:
        experiment = txn.getExperiment(schedule.expid)
        actor = actorFor(user, experiment)
        if schedule.status == states.ALLOCATED:
            if options:
                schedule.deploymentOptions.update(options)
            transition(txn, schedule, states.DEFINED, actor, schedule.reason, now, policy, experiment=experiment)
    return schedules


def renew(
    txn: IStoreTransaction, schedules: list[Schedule], stop: int, user: User, now: int,
    policy: Policy,
) -> list[Schedule]:
    """
    Move the end of each schedule to C{stop} when the node is free until then,
    all or nothing, charging the extra node-time.
    """
    if stop <= now:
        raise Conflict("Cannot renew into the past.")
    extra = 0
    for schedule in schedules:
        if states.isFinal(schedule.status) or schedule.status == states.QUEUED:
            raise Conflict(f"Schedule {schedule.id} is {schedule.status} and cannot be renewed.")
        if stop - schedule.start > policy.maxRuntime:
            raise Conflict(f"Tasks may not run for more than {policy.maxRuntime} seconds.")
        if stop - schedule.start < policy.minRuntime:
            # Shortening is allowed, but never to before the start (a window
            # ending before it starts would block nothing: a double booking).
            raise Conflict(
                f"Schedule {schedule.id} starts at {schedule.start}: a renewal must leave it "
                f"at least {policy.minRuntime} seconds."
            )
        if stop > schedule.stop:
            if policy.maintenanceConflict(schedule.stop, stop) is not None:
                raise Conflict("The renewed window would overlap a maintenance window.")
            if not schedule.shared:
                others = [
                    i
                    for i in txn.blockingIntervals(
                        schedule.stop - policy.padding, stop + policy.padding, [schedule.nodeid]
                    )
                    if not (i.start == schedule.start and i.stop == schedule.stop)
                ]
                if others:
                    raise Conflict(f"Node {schedule.nodeid} is booked before {stop}.")
            extra += stop - schedule.stop
    owner = actorOwner(txn, schedules, user)
    if extra > 0:
        userQuotas = quotas.currentQuotas(txn, owner, now, policy)
        quotas.charge(txn, owner, userQuotas, {"time": extra}, "renewal", now)
    for schedule in schedules:
        oldStop = schedule.stop
        if stop > schedule.stop:
            schedule.chargedTime += stop - schedule.stop
        schedule.stop, schedule.updated = stop, now
        txn.updateSchedule(schedule)
        if stop != oldStop:
            emit(txn, ScheduleWindowChanged(
                time=now, actor=actorFor(user, txn.getExperiment(schedule.expid)).value, reason="renewed",
                schedid=schedule.id, expid=schedule.expid, nodeid=schedule.nodeid,
                start=schedule.start, stop=stop, oldStart=schedule.start, oldStop=oldStop,
            ))
    return schedules


def holdAllocations(
    txn: IStoreTransaction, schedules: list[Schedule], until: int, user: User, now: int, policy: Policy
) -> list[Schedule]:
    """
    Keep unprovisioned (GENI C{allocated}) schedules booked until C{until}
    instead of letting them expire; never past the start of their window.
    """
    if until <= now:
        raise Conflict("Cannot renew into the past.")
    for schedule in schedules:
        actorFor(user, txn.getExperiment(schedule.expid))
        if schedule.status != states.ALLOCATED:
            raise Conflict(f"Schedule {schedule.id} is not an unprovisioned allocation.")
        if until > schedule.start:
            raise Conflict("An allocation can be held until its window starts; provision it to keep it longer.")
    for schedule in schedules:
        schedule.expires, schedule.updated = until, now
        txn.updateSchedule(schedule)
    return schedules


def actorOwner(txn: IStoreTransaction, schedules: list[Schedule], user: User) -> int:
    """
    The owner of the experiments these schedules belong to, checking the user may act.
    """
    owner = None
    for schedule in schedules:
        experiment = txn.getExperiment(schedule.expid)
        actorFor(user, experiment)
        owner = experiment.ownerid
    return owner if owner is not None else (user.id or 0)


def expireAllocations(txn: IStoreTransaction, now: int, policy: Policy) -> int:
    """
    Cancel allocations that were never provisioned in time (GENI), and queued
    tasks whose queue expiry (C{until}) passed before their node had room
    (legacy: the hourly pass), refunding both.
    """
    count = 0
    for schedule in txn.expiredAllocations(now):
        transition(txn, schedule, states.CANCELED, Actor.SCHEDULER, "allocation expired", now, policy)
        count += 1
    for schedule in txn.expiredQueue(now):
        expireQueued(txn, schedule, now, policy)
        count += 1
    return count


@attrs.define
class Sweep:
    """
    What one sweep failed: schedules no node ever deployed, and schedules
    whose node went silent before reporting an end.
    """

    neverDeployed: int = 0
    silent: int = 0

    @property
    def total(self) -> int:
        """
        Both counts together.
        """
        return self.neverDeployed + self.silent


def sweep(txn: IStoreTransaction, now: int, policy: Policy) -> Sweep:
    """
    Fail what nobody ran (the scheduler's own C{failed} transitions):

      - a C{defined} schedule whose window ended: no node ever fetched it;
      - a C{requested} one whose window ended C{reportGrace} ago: its node
        fetched it but never said it deployed it;
      - a C{deployed}, C{delayed}, C{started} or C{restarted} one whose window
        ended C{reportGrace} ago while its node has been silent (no heartbeat,
        no report) for C{reportGrace}: a node that still heartbeats delivers
        its queued reports itself, so it is left alone.

    The first two never ran: everything charged is refunded. For a silent
    node the time after its last sign of life (heartbeat or report) in the
    window is refunded, with data it did not report using.
    """
    result = Sweep()
    nodes: dict[str, Any] = {}
    for schedule in txn.overdueSchedules(now):
        if schedule.status == states.DEFINED or (
            schedule.status == states.REQUESTED and schedule.stop + policy.reportGrace <= now
        ):
            transition(txn, schedule, states.FAILED, Actor.SCHEDULER,
                       f"node {schedule.nodeid} never deployed the task", now, policy)
            result.neverDeployed += 1
            health.noteFailure(txn, schedule.nodeid, now, policy)
        elif schedule.status in states.ON_NODE and schedule.stop + policy.reportGrace <= now:
            if schedule.nodeid not in nodes:
                nodes[schedule.nodeid] = txn.getNode(schedule.nodeid)
            node = nodes[schedule.nodeid]
            lastSign = max(node.heartbeat if node is not None else 0, schedule.updated)
            if lastSign + policy.reportGrace > now:
                continue
            transition(txn, schedule, states.FAILED, Actor.SCHEDULER,
                       f"node {schedule.nodeid} went silent ({schedule.status} when last heard of)",
                       now, policy, at=min(lastSign, schedule.stop))
            result.silent += 1
            health.noteFailure(txn, schedule.nodeid, now, policy)
    return result


def mergeExperiments(
    txn: IStoreTransaction, into: Any, source: Any, user: User, name: Optional[str], now: int = 0
) -> tuple[int, int, int]:
    """
    Move every schedule of C{source} into C{into}, optionally rename C{into},
    and archive C{source}; both must be the caller's active REST experiments.

    @return: how many schedules moved, and the two experiment ids.

    Schedules only change owner experiment: no window or status changes, so no
    scheduling rule is involved (legacy C{PUT /experiments/<a>/<b>}).
    """
    target = getExperiment(txn, into)
    other = getExperiment(txn, source)
    if target.id == other.id:
        raise BadRequest("Cannot merge an experiment into itself.", parameter="from")
    for experiment in (target, other):
        if experiment.ownerid != user.id:
            raise Forbidden(f"Only user {experiment.ownerid} can do this")
        if experiment.status != states.EXPERIMENT_ACTIVE:
            raise NotFound("Experiment does not exist.")
        if experiment.sliceURN:
            raise Conflict("Experiments of GENI slices cannot be merged.")
    moved = txn.schedulesOfExperiment(other.id)
    for schedule in moved:
        schedule.expid = target.id
        txn.updateSchedule(schedule)
    placed = [s for s in moved if s.start != states.QUEUE_START]  # queued ones have no window
    target.start = min([target.start] + [s.start for s in placed])
    target.stop = max([target.stop] + [s.stop for s in placed])
    if name:
        target.name = name
    txn.updateExperiment(target)
    transition(txn, other, states.EXPERIMENT_ARCHIVED, Actor.OWNER, f"merged into experiment {target.id}", now)
    return len(moved), target.id, other.id


def reportTraffic(
    txn: IStoreTransaction, schedid: Any, report: dict[str, Any], user: User, now: int, policy: Policy
) -> Schedule:
    """
    A node's traffic report (legacy C{{deployment, results, interfaces: {id: bytes}}}):
    the latest value per meter is kept; a final schedule gets back the data it
    was charged for and did not use.
    """
    schedule = getSchedule(txn, schedid)
    if user.role != "node" or not user.active or str(user.nodeid) != schedule.nodeid:
        raise Forbidden(f"Wrong user to update this status ({user.name})")
    meters: dict[str, int] = {}
    for key in NON_INTERFACE_METERS:
        if key in report:
            meters[key] = integer(key, report[key], 0)
    interfaces = report.get("interfaces") or {}
    if not isinstance(interfaces, dict) or len(interfaces) > 64:
        raise BadRequest("traffic interfaces must be an object of at most 64 meters", parameter="traffic")
    for name, value in interfaces.items():
        name = str(name)[:64]
        if name in NON_INTERFACE_METERS:
            raise BadRequest(f"traffic interface may not be called {name}", parameter="traffic")
        meters[name] = integer(f"traffic of {name}", value, 0)
    for meter, value in meters.items():
        txn.putTraffic(schedule.id, meter, value)
    if states.isFinal(schedule.status) and schedule.status != states.CANCELED:
        used = dataUsed(txn, schedule)
        if used is not None and schedule.chargedData > used:
            refund = schedule.chargedData - used
            schedule.chargedData = used
            txn.updateSchedule(schedule)
            experiment = txn.getExperiment(schedule.expid)
            quotas.refund(txn, experiment.ownerid, {"data": refund},
                          f"schedule {schedule.id}: {refund} bytes of data not used", now, policy)
    return schedule
