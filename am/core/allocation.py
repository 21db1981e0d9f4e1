# -*- test-case-name: tests.test_slots,tests.test_allocation_ssh -*-
"""
Booking: one function, used by REST C{POST /experiments} and GENI C{Allocate} alike,
that validates a request, finds its window and books it inside one transaction.
"""

from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Any, Optional

import attrs

from am.core import health, quotas, slots, sshkeys, states
from am.core.events import BookingMade, emit
from am.core.errors import BadRequest, Conflict, Forbidden, NotFound
from am.core.interfaces import IStoreTransaction
from am.core.model import Experiment, Schedule
from am.core.notifyurl import STORED as NOTIFY_STORED, checkURL
from am.core.nodefilter import Atom, Filter, FilterSyntaxError, Group, parse
from am.core.policy import Policy
from am.core.recurrence import expandOffsets
from am.core.requests import Allocation, AllocationRequest  # noqa: F401 (re-exported)
from am.core.values import integer

# Legacy whitelist for container URLs (legacy reference §4.3 step 8).
_SCRIPT = re.compile(r"^[A-Za-z0-9!#$&'()*+,\-./:;=?@\[\]_~]+$")
# Scheduling keys kept on the experiment; everything else goes to the node.
SCHEDULING_KEYS = ("shared", "recurrence", "period", "until", "storage", "traffic", "nodes")
_NOT_DEPLOYED = Group((Atom("type", "deployed"),), negated=True)
# The legacy start that puts a request in the low-priority queue (and that a
# queued schedule keeps until it is placed).
QUEUE_START = states.QUEUE_START


def iso(when: int) -> str:
    """
    UTC without a zone, as the legacy messages print times.
    """
    return datetime.fromtimestamp(when, timezone.utc).strftime("%Y-%m-%dT%H:%M:%S")


def compileFilter(request: AllocationRequest, policy: Policy) -> Filter:
    """
    The node filter, with the deployment-repository rule (legacy §4.3 step 9).
    """
    if request.nodes is not None:
        nodeFilter = Filter()
    else:
        try:
            nodeFilter = parse(request.nodetypes or "")
        except FilterSyntaxError as e:
            raise BadRequest(str(e), parameter="nodetypes", position=e.position) from None
    repo = policy.deploymentRepository
    if repo:
        scripts = [s.strip() for s in (request.script or "").split("|")]
        trusted = all(s.startswith(repo) or s.startswith("https://" + repo) for s in scripts)
        if not trusted:
            if nodeFilter.requires("type", "deployed"):
                raise Conflict(f"Deployed nodes can only schedule experiments hosted by {repo}")
            nodeFilter = nodeFilter.withTerm(_NOT_DEPLOYED)
    return nodeFilter


def _truthy(value: Any) -> bool:
    """
    Option flags from forms and JSON alike: "0", "false", "no", "" and 0 are false
    (the legacy took the string "0" as true).
    """
    if isinstance(value, str):
        return value.strip().lower() not in ("", "0", "false", "no", "off")
    return bool(value)


def _slotData(slot: slots.Slot, size: int = 1) -> dict[str, int]:
    """
    A slot as the faces show it: counts in nodes (C{size} nodes per unit).
    """
    return {
        "start": slot.start,
        "stop": slot.stop,
        "max_stop": slot.maxStop,
        "nodecount": slot.nodecount * size,
        "max_nodecount": slot.maxNodecount * size,
    }


def checkScripts(value: Any) -> list[str]:
    """
    One container image URL, or two separated by C{|} (paired execution: the
    head runs the first, the tail the second).
    """
    if not isinstance(value, str) or not value.strip():
        raise BadRequest("script must be a container image URL", parameter="script")
    scripts = [s.strip() for s in value.split("|")]
    if len(scripts) > 2:
        raise Conflict("Only two scripts allowed in script parameter", code="sc2")
    for script in scripts:
        if not _SCRIPT.match(script):
            raise Conflict("Container URL contains invalid characters")
    return scripts


def interfacesOf(pairing: slots.Pairing, pairs: dict[str, str], position: int, nodeid: str) -> int:
    """
    The interfaces a booked node is charged data for (legacy reference §9.1):
    in a pair the head has two and the tail one (1.5 per node); a node named
    explicitly counts two if it is a head; otherwise what the request asked
    for: two for head nodes (C{interfaceCount=2}), else one.
    """
    if pairing.paired:
        return 2 if position == 0 else 1
    if pairing.heads and pairing.tails:
        return 2 if nodeid in pairs else 1
    return 2 if pairing.heads else 1


def _checkRuntime(duration: int, policy: Policy) -> None:
    if duration < policy.minRuntime:
        raise Conflict(f"Tasks must run for a minimum of {policy.minRuntime} seconds.")
    if duration > policy.maxRuntime:
        raise Conflict(f"Tasks may not run for more than {policy.maxRuntime} seconds.")


def queueExpiry(until: Any, now: int, policy: Policy) -> int:
    """
    When a queued request is given up (its C{until}): at most, and by default,
    the scheduling horizon away (legacy: the past when absent, so the queue
    dropped the request within the hour).
    """
    latest = now + policy.horizon
    if until is None or (isinstance(until, str) and not until.strip()):
        return latest
    until = integer("until", until)
    if until <= now:
        raise Conflict("The queue expiry (until) must be in the future.")
    return min(until, latest)


def _selection(request: AllocationRequest) -> Optional[list[str]]:
    return list(request.nodes) if request.nodes is not None else None


def _chooseWindow(
    txn: IStoreTransaction,
    request: AllocationRequest,
    eligible: slots.Eligible,
    pairing: slots.Pairing,
    units: int,
    duration: int,
    start: int,
    asap: bool,
    offsets: tuple[int, ...],
    now: int,
    policy: Policy,
) -> tuple[int, tuple[tuple[tuple[str, ...], ...], ...]]:
    """
    The start and the units per instance of a booking: the earliest window for
    as soon as possible, else the window asked for, refused with the legacy
    reason and three suggestions.
    """
    latest = now + policy.horizon
    if asap:
        found, shortage = slots.search(txn, eligible, units, duration, start, latest, offsets, extent=False)
        if not found:
            raise Conflict(
                "Could not find available time slot matching these criteria.",
                code="sc1",
                available=shortage.available if shortage else 0,
                requested=units,
                suggestions=[],
            )
        return found[0].start, found[0].nodes
    chosen, shortage, _ = slots.tryWindow(txn, eligible, units, start, duration, offsets)
    if chosen is None:
        assert shortage is not None
        suggestions, _ = slots.search(txn, eligible, units, duration, start, latest, offsets, results=3)
        raise Conflict(
            f"Only {shortage.available}/{shortage.requested} {'node pairs' if pairing.paired else 'nodes'} "
            f"are available during interval {shortage.instance + 1} "
            f"({iso(shortage.start)} to {iso(shortage.stop)}).",
            code="sc1",
            available=shortage.available,
            requested=shortage.requested,
            selection=_selection(request),
            start=shortage.start,
            stop=shortage.stop,
            suggestions=[_slotData(s, pairing.size) for s in suggestions],
        )
    return start, chosen


def allocate(
    txn: IStoreTransaction, request: AllocationRequest, now: int, policy: Policy
) -> Allocation:
    """
    Validate, find the window, check quotas and book, atomically. C{start=-1}
    puts the request in the low-priority queue instead: one C{queued}
    schedule per node, without a window until a heartbeat of the node places
    it (L{am.core.lifecycle.placeQueued}).

    @raise BadRequest: ill-typed or missing values.
    @raise Conflict: the request cannot be satisfied; C{extra["suggestions"]} holds
        up to three earliest windows in which the same request would fit.
    """
    # (A booking charges the owner's quotas; a dry run only reads.)
    owner = txn.getUser(request.ownerid) if request.dryrun else quotas.chargedUser(txn, request.ownerid)
    if owner is None or not owner.active:
        raise NotFound("Unknown user.")
    if owner.role != "user":
        raise Forbidden("You'd have to be a user to do that.")
    nodecount = integer("nodecount", request.nodecount, 1)
    duration = integer("duration", request.duration)
    start = integer("start", request.start)
    storage = integer("storage", request.storage or 0, 0)
    traffic = integer("traffic", request.traffic or 0, 0)
    interfaceCount = integer("interfaceCount", 1 if request.interfaceCount is None else request.interfaceCount)
    if nodecount > policy.maxNodecount:
        raise Conflict(f"At most {policy.maxNodecount} nodes per request.")
    scripts = checkScripts(request.script)
    notify = None if request.notify is None else checkURL(request.notify, policy)
    if storage > policy.maxStorage:
        raise Conflict("Too much storage requested.", max_storage=policy.maxStorage, requested=storage)
    if traffic > policy.maxTraffic:
        raise Conflict("Requested data quota too high.", max_data=policy.maxTraffic, requested=traffic)
    nodeFilter = compileFilter(request, policy)
    pairing = slots.Pairing.choose(interfaceCount, len(scripts), request.nodes is not None)
    if pairing.paired and nodecount % 2:
        raise Conflict("Node count must be even for paired nodes.")
    if request.heal and (request.nodes is not None or pairing.paired):
        raise Conflict("options.heal needs unbound single nodes (a nodetypes filter): "
                       "a booking that names its nodes or books pairs cannot move elsewhere.")
    units = nodecount // pairing.size

    offsets: tuple[int, ...]
    queued = start == QUEUE_START
    asap = start == 0
    if queued:
        if request.allocateOnly:
            raise Conflict("The low-priority queue (start=-1) is not available to GENI allocations.")
        if pairing.paired:
            raise Conflict("Node pairs cannot be queued (start=-1): book them with a start time, or 0.")
        _checkRuntime(duration, policy)
        until = queueExpiry(request.until, now, policy)
        start, offsets = 0, (0,)
    else:
        earliest = now + policy.minDelay
        if asap:
            start = earliest
        elif start < earliest:
            raise Conflict(
                f"Tasks may not be scheduled immediately or in the past ({policy.minDelay} second delay)."
            )
        _checkRuntime(duration, policy)
        if start > now + policy.horizon:
            raise Conflict(f"Tasks may not be scheduled more than {policy.horizon} seconds in advance.")
        offsets = tuple(expandOffsets(start, duration, request.recurrence, request.period, request.until, now, policy))
    k = len(offsets)
    # Data is charged per interface (legacy reference §9.1); for nodes named
    # explicitly that depends on which are heads, so it is checked once chosen.
    byRequest = pairing.paired or not (pairing.heads and pairing.tails)
    perUnit = 3 if pairing.paired else (2 if pairing.heads else 1)
    amounts = {
        "time": duration * nodecount * k,
        "data": traffic * units * k * perUnit if byRequest else 0,
        "storage": storage * nodecount * k,
    }
    # A dry run reads only (its transaction may be read-only): no reset is written.
    userQuotas = (quotas.preview if request.dryrun else quotas.currentQuotas)(txn, owner.id, now, policy)
    quotas.check(userQuotas, amounts)

    view = txn.nodeView()
    if request.nodes is not None:
        unknown = [str(n) for n in request.nodes if view.get(str(n)) is None]
        if unknown:
            raise Conflict(f"Unknown node(s): {', '.join(unknown)}", nodes=unknown)
    pairs = view.pairs
    if queued:
        # Queued requests wait for their nodes: no window, so no heartbeat age.
        anyAge = attrs.evolve(policy, requireHeartbeat=False)
        eligible = slots.eligibleNodes(view, nodeFilter, request.nodes, now, anyAge, pairing)
        if not eligible.atLeast(units):
            raise Conflict(
                f"Only {len(eligible.units)}/{units} nodes are available for scheduling this task.",
                code="sc1",
                available=len(eligible.units),
                requested=units,
                selection=_selection(request),
                start=QUEUE_START,
                stop=duration,
            )
        chosen: tuple[tuple[tuple[str, ...], ...], ...] = (
            tuple(tuple(n.id for n in unit) for unit in eligible.first(units)),
        )
    else:
        ranking = health.penalties(txn.listHealth(), now, policy)
        eligible = slots.eligibleNodes(view, nodeFilter, request.nodes, now, policy, pairing, ranking)
        start, chosen = _chooseWindow(
            txn, request, eligible, pairing, units, duration, start, asap, offsets, now, policy
        )
    booked = [
        (offset, position, nodeid)
        for offset, instance in zip(offsets, chosen)
        for unit in instance
        for position, nodeid in enumerate(unit)
    ]
    amounts["data"] = sum(traffic * interfacesOf(pairing, pairs, p, n) for _, p, n in booked)
    if not byRequest:
        quotas.check(userQuotas, {"data": amounts["data"]})

    options = {k: v for k, v in request.options.items() if k not in ("recurrence", "period", "until")}
    schedulingOptions: dict[str, Any] = {"shared": request.shared, "storage": storage, "traffic": traffic}
    if queued:
        schedulingOptions.update(queued=True, until=until)
    elif request.recurrence:
        schedulingOptions.update(recurrence=request.recurrence, period=request.period, until=request.until)
    if request.nodes is not None:
        schedulingOptions["nodes"] = [str(n) for n in request.nodes]
    if interfaceCount != 1:
        schedulingOptions["interfaceCount"] = interfaceCount
    if pairing.paired:
        schedulingOptions["paired"] = True
    if request.heal:
        schedulingOptions["heal"] = True
    if notify is not None:
        schedulingOptions[NOTIFY_STORED] = notify
    experiment = Experiment(
        name=request.name,
        ownerid=owner.id,
        script="|".join(scripts),
        nodetypes=str(nodeFilter) if request.nodes is None else "",
        # A queued experiment spans its time in the queue (legacy: now to until).
        start=now if queued else start,
        stop=until if queued else start + duration,
        options=schedulingOptions,
        recurringUntil=start + offsets[-1] + duration if k > 1 else 0,
        sliceURN=request.sliceURN,
        created=now,
    )
    if queued:
        # No window yet (legacy form: start -1, stop = duration); the queue expiry is C{expires}.
        status, expires = states.QUEUED, until
    elif request.allocateOnly:
        status, expires = states.ALLOCATED, now + policy.allocationExpiry
    else:
        status, expires = states.DEFINED, 0
    # A pair's head runs the first script, its tail the second (or the same one).
    schedules = [
        Schedule(
            expid=0,
            nodeid=nodeid,
            start=QUEUE_START if queued else start + offset,
            stop=duration if queued else start + offset + duration,
            status=status,
            shared=request.shared,
            deploymentOptions=dict(options, script=scripts[min(position, len(scripts) - 1)]),
            chargedTime=duration,
            chargedData=traffic * interfacesOf(pairing, pairs, position, nodeid),
            chargedStorage=storage,
            expires=expires,
            updated=now,
        )
        for offset, position, nodeid in booked
    ]
    result = Allocation(
        experiment, schedules, k, units, amounts, pairing.paired,
        remaining=quotas.remaining(userQuotas, amounts),
        resets={kind: q.resetDate for kind, q in userQuotas.items()},
    )
    if request.dryrun:
        return result
    txn.addBooking(experiment, schedules)
    if _truthy(request.options.get("ssh")):
        for schedule in schedules:
            private, public = sshkeys.newKeyPair()
            schedule.deploymentOptions["_ssh.private"] = private
            schedule.deploymentOptions["ssh.public"] = public
            txn.updateSchedule(schedule)
            if not queued:
                # A queued task's public key is served once it has a window.
                txn.addPublicKey(schedule.id, public, schedule.stop)
    what = "node pairs" if pairing.paired else "nodes"
    if queued:
        reason = f"experiment #{experiment.id} queued {units} {what} x {duration} s"
    else:
        reason = f"experiment #{experiment.id} requested {units} {what} x {k} intervals x {duration} s"
    quotas.charge(txn, owner.id, userQuotas, amounts, reason, now)
    emit(txn, BookingMade(
        time=now, actor="owner", reason=reason, expid=experiment.id, ownerid=owner.id,
        schedids=tuple(s.id for s in schedules), nodeids=tuple(s.nodeid for s in schedules),
        status=status, start=experiment.start, stop=experiment.stop, sliceURN=experiment.sliceURN,
    ))
    return result


def find(
    txn: IStoreTransaction,
    now: int,
    policy: Policy,
    nodecount: Any = 1,
    duration: Any = 1,
    start: Any = 0,
    nodetypes: str = "",
    nodes: Optional[list[str]] = None,
    results: Any = 1,
    interfaceCount: Any = 1,
) -> list[dict[str, Any]]:
    """
    The slot search of C{GET /schedules/find}: up to C{results} disjoint windows.
    With C{interfaceCount} 3 or more it looks for node pairs; C{nodecount} then
    counts nodes, as in a booking (the legacy search compared it with pairs).
    """
    nodecount = integer("nodecount", nodecount, 1)
    duration = integer("duration", duration, 1)
    start = integer("start", start)
    results = min(integer("results", results, 1), 100)
    interfaceCount = integer("interfaceCount", 1 if interfaceCount is None else interfaceCount)
    pairing = slots.Pairing.choose(interfaceCount, 1, nodes is not None)
    if pairing.paired and nodecount % 2:
        raise Conflict("Node count must be even for paired nodes.")
    request = AllocationRequest(ownerid=0, name="", script="", nodetypes=nodetypes, nodes=nodes)
    nodeFilter = compileFilter(request, attrs.evolve(policy, deploymentRepository=None))
    earliest = max(start, now + policy.minDelay)
    latest = now + policy.horizon
    if earliest > latest:
        raise Conflict(
            f"Provided start time is outside the allowed scheduling range ({now + policy.minDelay}, {latest})"
        )
    eligible = slots.eligibleNodes(
        txn.nodeView(), nodeFilter, nodes, now, policy, pairing, health.penalties(txn.listHealth(), now, policy)
    )
    found, _ = slots.search(
        txn, eligible, nodecount // pairing.size, duration, earliest, latest, (0,), results
    )
    if not found:
        raise Conflict("Could not find available time slot matching these criteria.")
    return [dict(_slotData(s, pairing.size), nodetypes=nodetypes) for s in found]
