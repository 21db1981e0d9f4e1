# -*- test-case-name: tests.test_geni_api,tests.test_door -*-
"""
GENI slice semantics over the scheduling core: a slice is one experiment (its
URN kept on the experiment), a sliver is one schedule. The GENI face parses
URNs, RSpecs and credentials; every rule about slices is decided here, inside
the one transaction of the L{am.core.scheduler.Scheduler} command that runs it:
single allocation, best effort, a past start meaning "as soon as possible"
with a shrunk window, renew or hold, slice resolution, and Shutdown's
operator acting as an admin on that one slice.

Every function re-reads what it acts on from the transaction it is given,
so nothing read by an earlier call (a stale status) is ever written back.
"""

from __future__ import annotations

import datetime
from typing import Any, Optional

import attrs

from am.core import allocation, lifecycle, slots, states
from am.core.accounts import actingUser
from am.core.errors import AlreadyExists, BadRequest, Conflict, MarvinError, NotFound
from am.core.interfaces import IStoreTransaction
from am.core.model import Experiment, Node, Schedule
from am.core.policy import Policy
from am.core.requests import AllocationRequest

# Operational actions (GENI's C{geni_start} etc. without the prefix).
START, RESTART, STOP, UPDATE_USERS = "start", "restart", "stop", "update_users"
ACTIONS = (START, RESTART, STOP, UPDATE_USERS)

# Deployment options the node agent follows: whether the task should run
# (RUNNING) or stay stopped (STOPPED) inside its window, and a counter raised
# by every start, stop and restart so the node sees each one exactly once.
RUN_STATE, RUN_SERIAL = "run_state", "run_serial"
RUNNING, STOPPED = "running", "stopped"


@attrs.frozen
class SliceTarget:
    """
    What a call names: one slice URN, or sliver (schedule) ids of one slice.
    """

    sliceURN: Optional[str] = None
    sliverIds: tuple[int, ...] = ()


@attrs.define
class Slice:
    """
    A resolved target: the slice URN, its live (or last) experiment and the
    schedules named (all of the experiment's when the slice was named).
    """

    urn: Optional[str]
    experiment: Optional[Experiment]
    schedules: list[Schedule]
    named: bool  # slivers were named, not the whole slice


@attrs.frozen
class SliverName:
    """
    How the client calls one sliver: its node's and lease's client ids and
    the foreign RSpec extensions to echo in manifests.
    """

    clientId: Optional[str]
    lease: Optional[str] = None
    extensions: tuple[str, ...] = ()


@attrs.frozen
class SliceRequest:
    """
    A GENI Allocate in plain values, as the face read it from the RSpec and
    options. C{nodes} names bound nodes (then C{names} maps each to its
    client names); otherwise C{nodecount} unbound nodes matching C{nodetypes}
    get C{unbound} names in order. C{start}/C{stop} are the lease or option
    times if any; C{duration} the RSpec's own; C{notAfter} the slice
    credential's expiry.
    """

    sliceURN: str
    name: str
    image: str
    nodes: Optional[tuple[str, ...]] = None
    nodecount: int = 1
    nodetypes: str = ""
    start: Optional[int] = None
    stop: Optional[int] = None
    duration: Optional[int] = None
    defaultDuration: int = 3600
    notAfter: Optional[float] = None
    shared: bool = False
    recurrence: Optional[str] = None
    period: Any = None
    until: Any = None
    storage: int = 0
    traffic: int = 0
    options: dict[str, Any] = attrs.field(factory=dict)
    names: dict[str, SliverName] = attrs.field(factory=dict)
    unbound: tuple[SliverName, ...] = ()
    bestEffort: bool = False
    notify: Optional[str] = None
    dryrun: bool = False


# A failed sliver stays listed this long after its end time, so its owner can
# read why (geni_failed with the reason), unless deleted.
FAILED_VISIBLE = 3600
DELETED = "geni_deleted"  # deployment option: when Delete named a sliver whose task was already over


def gone(schedule: Schedule, now: int) -> bool:
    """
    Whether a sliver no longer exists: deleted (canceled or aborted: Delete,
    Shutdown, an allocation left to expire; or an ended task named by
    Delete) or past its end time (a failed one L{FAILED_VISIBLE} later). A
    sliver whose task failed or ended early exists until then.
    """
    if schedule.status in (states.CANCELED, states.ABORTED) or schedule.deploymentOptions.get(DELETED):
        return True
    return now >= schedule.stop + (FAILED_VISIBLE if schedule.status == states.FAILED else 0)


def resolve(txn: IStoreTransaction, target: SliceTarget, now: Optional[int] = None) -> Slice:
    """
    The slice and the slivers a target names that still exist at C{now}
    (see L{gone}; all of them when C{now} is not given). A slice URN resolves
    to its active experiment, or the last one when none is active; a slice
    whose slivers are all gone has none. Slivers must be of one slice made
    through the GENI face.

    @raise NotFound: an unknown or gone sliver, or one not made through GENI.
    @raise BadRequest: both kinds named, several slices, or slivers of several slices.
    """
    if (target.sliceURN is None) == (not target.sliverIds):
        raise BadRequest("give exactly one slice URN, or sliver URNs of one slice")
    if target.sliceURN is not None:
        found = txn.findExperiments(sliceURN=target.sliceURN)
        live = [e for e in found if e.status == "active"] or found[-1:]
        experiment = live[-1] if live else None
        schedules = txn.schedulesOfExperiment(experiment.id) if experiment else []
        if now is not None:
            schedules = [s for s in schedules if not gone(s, now)]
        return Slice(target.sliceURN, experiment, schedules, named=False)
    schedules, sliceURN, experiment = [], None, None
    for sid in target.sliverIds:
        schedule = txn.getSchedule(sid)
        if schedule is None:
            raise NotFound(f"no sliver #{sid} at this aggregate")
        if now is not None and gone(schedule, now):
            raise NotFound(f"sliver #{sid} is gone (deleted or past its end time)")
        experiment = txn.getExperiment(schedule.expid)
        if experiment is None or experiment.sliceURN is None:
            raise NotFound(f"sliver #{sid} was not made through this API")
        if sliceURN not in (None, experiment.sliceURN):
            raise BadRequest("the slivers belong to different slices")
        sliceURN = experiment.sliceURN
        schedules.append(schedule)
    return Slice(sliceURN, experiment, schedules, named=True)


def _slivers(txn: IStoreTransaction, target: SliceTarget, now: int) -> Slice:
    found = resolve(txn, target, now)
    if not found.schedules:
        raise NotFound(f"no slivers in {found.urn} at this aggregate")
    return found


def _iso(seconds: int) -> str:
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def window(request: SliceRequest, now: int, policy: Policy) -> tuple[bool, int, int]:
    """
    The window of an allocation: C{(asap, begin, duration)}. A start that is
    missing, past or sooner than the minimum delay means as soon as possible;
    an end time then shrinks the window (it keeps the end asked for).

    @raise Conflict: the window lies in the past, or would end after the
        slice credential expires.
    """
    if request.stop is not None and request.stop <= now:
        raise Conflict(
            f"the requested window lies in the past: it ends at {_iso(request.stop)}, "
            f"and it is now {_iso(now)}"
        )
    earliest = now + policy.minDelay
    asap = request.start is None or request.start <= earliest
    begin = earliest if asap or request.start is None else request.start
    if request.stop is not None:
        duration = request.stop - begin
    else:
        duration = request.duration or request.defaultDuration
    if request.notAfter is not None and begin + duration > request.notAfter:
        raise Conflict("the requested window ends after the slice credential expires")
    return asap, begin, duration


def allocateSlice(
    txn: IStoreTransaction, request: SliceRequest, userid: int, now: int, policy: Policy
) -> tuple[list[Schedule], str]:
    """
    GENI Allocate: book the slice's slivers as C{allocated} schedules (invisible
    to nodes until provisioned). A slice has one live allocation at a time;
    with C{bestEffort} a refusal for want of nodes books what fits instead.

    @return: the schedules booked and a note of what was left out ("" if nothing).
    @raise AlreadyExists: the slice has live slivers here.
    """
    booked, missing = _book(txn, request, userid, now, policy)
    _name(txn, booked.schedules, request)
    return booked.schedules, missing


def previewSlice(
    txn: IStoreTransaction, request: SliceRequest, userid: int, now: int, policy: Policy
) -> tuple[allocation.Allocation, str]:
    """
    A GENI Allocate's dry run (the C{marvin_dryrun} option): what it would
    book and charge per quota, and what would remain; nothing is written.
    Refused exactly as the Allocate would be (a quota refusal says which
    quota, how much is missing and when it resets).
    """
    return _book(txn, attrs.evolve(request, dryrun=True), userid, now, policy)


def _book(
    txn: IStoreTransaction, request: SliceRequest, userid: int, now: int, policy: Policy
) -> tuple[allocation.Allocation, str]:
    """
    The rules of Allocate and of its dry run: single allocation, the
    window, best effort.
    """
    user = actingUser(txn, userid)
    live = [
        s
        for e in txn.findExperiments(sliceURN=request.sliceURN, status="active")
        for s in txn.schedulesOfExperiment(e.id)
        if not states.isFinal(s.status)
    ]
    if live:
        raise AlreadyExists("this slice has slivers here already (single allocation): Delete them first")
    asap, begin, duration = window(request, now, policy)
    booking = AllocationRequest(
        ownerid=user.id or 0,
        name=request.name,
        script=request.image,
        nodecount=len(request.nodes) if request.nodes is not None else request.nodecount,
        duration=duration,
        start=0 if asap else begin,
        nodetypes=request.nodetypes,
        nodes=list(request.nodes) if request.nodes is not None else None,
        shared=request.shared,
        recurrence=request.recurrence,
        period=request.period,
        until=request.until,
        storage=request.storage,
        traffic=request.traffic,
        options=dict(request.options),
        sliceURN=request.sliceURN,
        allocateOnly=True,
        notify=request.notify,
        dryrun=request.dryrun,
    )
    missing = ""
    try:
        booked = allocation.allocate(txn, booking, now, policy)
    except Conflict as e:
        if not request.bestEffort or e.extra.get("code") != "sc1":
            raise
        booking, missing = _bestEffort(txn, booking, e, now, policy)
        booked = allocation.allocate(txn, booking, now, policy)
    return booked, missing


def _name(txn: IStoreTransaction, schedules: list[Schedule], request: SliceRequest) -> None:
    """
    Remember the client's names of each sliver; unbound names go to the
    nodes of each instance in order.
    """
    perStart: dict[int, int] = {}
    for schedule in schedules:
        name = request.names.get(schedule.nodeid)
        if name is None:
            index = perStart.get(schedule.start, 0)
            perStart[schedule.start] = index + 1
            name = request.unbound[index] if index < len(request.unbound) else SliverName(schedule.nodeid)
        schedule.deploymentOptions["geni_client_id"] = name.clientId
        if name.lease:
            schedule.deploymentOptions["geni_lease_client_id"] = name.lease
        if name.extensions:
            schedule.deploymentOptions["geni_extensions"] = list(name.extensions)
        txn.updateSchedule(schedule)


def _bestEffort(
    txn: IStoreTransaction, request: AllocationRequest, refusal: Conflict, now: int, policy: Policy
) -> tuple[AllocationRequest, str]:
    """
    C{geni_best_effort}: the part of a refused request that can be booked,
    and what is left out; refuse as before when nothing can.
    """
    if request.nodes is not None:
        free = []
        for node in request.nodes:
            try:
                allocation.allocate(txn, attrs.evolve(request, nodes=[node], nodecount=1, dryrun=True), now, policy)
                free.append(node)
            except Conflict:
                pass
        if not free:
            raise refusal
        left = [n for n in request.nodes if n not in free]
        return attrs.evolve(request, nodes=free, nodecount=len(free)), "nodes " + ", ".join(left)
    available = int(refusal.extra.get("available") or 0)
    if available < 1:
        raise refusal
    return attrs.evolve(request, nodecount=available), f"{request.nodecount - available} of {request.nodecount} nodes"


def provision(
    txn: IStoreTransaction, target: SliceTarget, userid: int, updates: dict[str, Any],
    now: int, policy: Policy,
) -> list[Schedule]:
    """
    GENI Provision: make the target's allocated schedules visible to their
    nodes, with the users' keys and logins. Only schedules that are still
    allocated now are provisioned (one canceled by expiry meanwhile stays so).

    @return: the schedules provisioned.
    @raise Conflict: a whole slice was named and nothing in it is allocated.
    """
    user = actingUser(txn, userid)
    found = _slivers(txn, target, now)
    pending = [s for s in found.schedules if s.status == states.ALLOCATED]
    if not pending and not found.named:
        raise Conflict("nothing to provision: no allocated slivers in this slice")
    return lifecycle.provision(txn, pending, user, now, policy, updates)


def performAction(
    txn: IStoreTransaction, target: SliceTarget, userid: int, action: str,
    updates: dict[str, Any], now: int, policy: Policy,
) -> list[Schedule]:
    """
    An operational action on provisioned slivers. It changes whether their
    tasks run, never the reservation: C{stop} has the node stop the task and
    keep the sliver until its end time; C{start} runs a stopped task again
    (a task not stopped starts at its window's start anyway); C{restart}
    stops and starts a running one; C{update_users} replaces the login keys
    the node has. Each reaches the node with its next heartbeat.

    @return: every schedule of the target, as it is now.
    @raise Conflict: unprovisioned slivers, or a start or restart of a
        sliver whose task is over (failed or finished before its end time).
    """
    if action not in ACTIONS:
        raise BadRequest(f"unknown action {action[:64]!r}")
    user = actingUser(txn, userid)
    found = _slivers(txn, target, now)
    if any(s.status == states.ALLOCATED for s in found.schedules):
        raise Conflict("provision the slivers before acting on them")
    live = [s for s in found.schedules if not states.isFinal(s.status)]
    if action in (START, RESTART):
        over = [s for s in found.schedules if states.isFinal(s.status)]
        if over:
            raise Conflict(f"sliver #{over[0].id} is {over[0].status}: its task is over and cannot run again")
    if action == UPDATE_USERS:
        lifecycle.updateOptions(txn, live, user, now, updates)
        return found.schedules
    for schedule in live:
        running = schedule.deploymentOptions.get(RUN_STATE, RUNNING) == RUNNING
        if (action == STOP and not running) or (action == START and running):
            continue  # already so
        serial = schedule.deploymentOptions.get(RUN_SERIAL, 0)
        wanted = STOPPED if action == STOP else RUNNING
        change = {RUN_STATE: wanted, RUN_SERIAL: (serial if isinstance(serial, int) else 0) + 1}
        lifecycle.updateOptions(txn, [schedule], user, now, change)
    return found.schedules


def renewSlivers(
    txn: IStoreTransaction, target: SliceTarget, userid: int, stop: int, text: str,
    bestEffort: bool, now: int, policy: Policy,
) -> tuple[list[Schedule], dict[int, str]]:
    """
    GENI Renew: hold allocations until C{stop}, and lengthen provisioned
    windows to end at C{stop}, remembering the client's spelling C{text}.
    Without C{bestEffort} it is all or nothing; with it each sliver on its
    own, the refused ones named with why.

    @return: every schedule of the target as it is now, and the refusals by sliver id.
    """
    user = actingUser(txn, userid)
    found = _slivers(txn, target, now)
    live = [s for s in found.schedules if not states.isFinal(s.status)]
    errors: dict[int, str] = {}
    for schedule in found.schedules:
        if states.isFinal(schedule.status):
            why = f"sliver #{schedule.id} is {schedule.status}: its task is over, so it cannot be renewed"
            if not bestEffort:
                raise Conflict(why)
            errors[schedule.id or 0] = why
    groups = [g for g in (
        [s for s in live if s.status == states.ALLOCATED],
        [s for s in live if s.status != states.ALLOCATED],
    ) if g]
    if bestEffort:
        groups = [[s] for group in groups for s in group]
    for group in groups:
        try:
            _renew(txn, group, stop, text, user, now, policy)
        except MarvinError as e:
            # Every renewal rule refuses before it writes anything.
            if not bestEffort:
                raise
            errors[group[0].id or 0] = e.message
    return found.schedules, errors


def _renew(
    txn: IStoreTransaction, schedules: list[Schedule], stop: int, text: str, user: Any,
    now: int, policy: Policy,
) -> None:
    if schedules[0].status == states.ALLOCATED:
        lifecycle.holdAllocations(txn, schedules, stop, user, now, policy)
    else:
        lifecycle.renew(txn, schedules, stop, user, now, policy)
    for schedule in schedules:
        schedule.deploymentOptions["geni_expires_text"] = text
        txn.updateSchedule(schedule)


def endSlivers(
    txn: IStoreTransaction, target: SliceTarget, userid: int, now: int, policy: Policy
) -> list[Schedule]:
    """
    GENI Delete: cancel what no node has yet, abort the rest, as each
    schedule's status is now (a task its node just started is aborted, and
    refunded only its unused part).

    @return: the schedules named.
    """
    user = actingUser(txn, userid)
    found = _slivers(txn, target, now)
    lifecycle.endSchedules(txn, found.schedules, user, now, policy)
    for schedule in found.schedules:
        # A task already over keeps its status; the sliver is gone all the same.
        fresh = txn.getSchedule(schedule.id)
        if fresh is not None and not gone(fresh, now):
            fresh.deploymentOptions[DELETED] = now
            txn.updateSchedule(fresh)
    return found.schedules


def shutdownSlice(
    txn: IStoreTransaction, sliceURN: str, operatorURN: str, now: int, policy: Policy
) -> int:
    """
    GENI Shutdown: the operator (whose credential the face verified) acts with
    admin rights on this one slice and ends everything in it.

    @return: how many schedules were named.
    """
    found = resolve(txn, SliceTarget(sliceURN=sliceURN))
    operator = txn.findUser(urn=operatorURN)
    if found.schedules and operator is not None:
        admin = attrs.evolve(operator, role="admin")
        lifecycle.endSchedules(txn, found.schedules, admin, now, policy, "shutdown")
    return len(found.schedules)


@attrs.frozen
class Offer:
    """
    What an advertisement shows: the nodes, their leases and which can be booked now.
    """

    nodes: list[Node]
    leases: list[tuple[Optional[int], str, int, int]]
    usable: frozenset[str]


def offer(txn: IStoreTransaction, now: int, policy: Policy, availableOnly: bool) -> Offer:
    """
    The nodes and blocking leases up to the horizon; with C{availableOnly}
    only nodes free now and usable (active, heard recently).
    """
    nodes = txn.listNodes()
    leases = [
        (s.id, s.nodeid, s.start, s.stop)
        for s in txn.schedulesOverlapping(now, now + policy.horizon + policy.maxRuntime)
        if s.blocking
    ]
    usable = frozenset(n.id for n in nodes if slots.usable(n, now, policy))
    if availableOnly:
        busy = {nodeid for _, nodeid, start, stop in leases if start <= now < stop}
        nodes = [n for n in nodes if n.id not in busy and n.id in usable]
    return Offer(nodes, leases, usable)
