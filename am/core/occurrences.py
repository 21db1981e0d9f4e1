# -*- test-case-name: tests.test_occurrences -*-
"""
Per-occurrence control of a recurring booking (issue 16): cancel one
occurrence, cancel every occurrence from a date on, move one occurrence to
another free window on the same nodes or on nodes matching the same filter.

Cancelling ends schedules as deleting the experiment does (cancel what no
node has, abort the rest), so refunds follow the usual rules
(L{am.core.transitions.refundUnused}). A move keeps the duration, so it
charges and refunds nothing; only schedules no node has fetched yet
(C{allocated}, C{defined}) move. Both check the window exactly as a booking
does: padding around other blocking schedules, maintenance windows, the
minimum delay and the horizon.
"""

from __future__ import annotations

from typing import Any, Iterable, Sequence

import attrs

from am.core import lifecycle, slots, states
from am.core.accounts import actingUser
from am.core.errors import BadRequest, Conflict, NotFound
from am.core.events import ScheduleMoved, emit
from am.core.interfaces import IStoreTransaction
from am.core.model import NODE_ACTIVE, Experiment, Schedule, User
from am.core.nodefilter import FilterSyntaxError, parse
from am.core.policy import Policy
from am.core.series import OCCURRENCE, Occurrence, group, period
from am.core.values import integer

# How a moved occurrence finds its nodes.
SAME_NODES, SAME_FILTER = "nodes", "filter"
PLACEMENTS = (SAME_NODES, SAME_FILTER)
# Schedules a move or a heal may take elsewhere: no node has them yet.
MOVABLE = (states.ALLOCATED, states.DEFINED)


@attrs.define
class Cancellation:
    """
    What cancelling occurrences did.
    """

    occurrences: list[int] = attrs.field(factory=list)
    canceled: int = 0
    aborted: int = 0
    archived: bool = False


def _series(txn: IStoreTransaction, expid: Any, userid: int) -> tuple[Experiment, User, list[Occurrence]]:
    """
    The caller, the active recurring experiment and its occurrences, checking
    the caller is its owner or an admin.
    """
    user = actingUser(txn, userid)
    experiment = lifecycle.getExperiment(txn, expid)
    if experiment.status != states.EXPERIMENT_ACTIVE:
        raise NotFound(f"Experiment {experiment.id} not found.")
    lifecycle.actorFor(user, experiment)
    if period(experiment) is None:
        raise Conflict(f"Experiment {experiment.id} is not a recurring booking: delete it instead.")
    return experiment, user, group(experiment, txn.schedulesOfExperiment(experiment.id))


def _find(occurrences: Sequence[Occurrence], index: Any, expid: Any) -> Occurrence:
    k = integer("occurrence", index, 0)
    for occurrence in occurrences:
        if occurrence.index == k:
            return occurrence
    raise NotFound(f"Experiment {expid} has no occurrence {k}.")


def cancelOccurrences(
    txn: IStoreTransaction, expid: Any, userid: int, now: int, policy: Policy,
    occurrence: Any = None, since: Any = None,
) -> Cancellation:
    """
    Cancel one occurrence (C{occurrence}, its index) or every occurrence
    starting at or after C{since} (UNIX seconds): what no node has is
    canceled and refunded in full, what a node has is aborted (the unused
    part refunded); the experiment is archived once nothing of it is left.

    @raise BadRequest: neither or both of C{occurrence} and C{since}.
    @raise NotFound: no such occurrence, or none from C{since} on that is not over.
    @raise Conflict: the occurrence named is over already.
    """
    if (occurrence is None) == (since is None):
        raise BadRequest("give one occurrence, or a date (from) to cancel every occurrence from then on",
                         parameter="from")
    experiment, user, occurrences = _series(txn, expid, userid)
    if occurrence is not None:
        chosen = [_find(occurrences, occurrence, experiment.id)]
        if not chosen[0].live:
            raise Conflict(f"Occurrence {chosen[0].index} of experiment {experiment.id} is over ({chosen[0].status}).")
    else:
        when = integer("from", since)
        chosen = [o for o in occurrences if o.start >= when and o.live]
        if not chosen:
            raise NotFound(f"Experiment {experiment.id} has no open occurrence from {when} on.")
    result = Cancellation(occurrences=[o.index for o in chosen])
    for o in chosen:
        ended = lifecycle.endSchedules(txn, o.live, user, now, policy, reason=f"occurrence {o.index} canceled")
        result.canceled += ended.canceled
        result.aborted += ended.aborted
        result.archived = result.archived or ended.archived
    return result


def checkWindow(start: int, duration: int, now: int, policy: Policy) -> None:
    """
    The booking rules for a window on its own: not too soon, within the
    horizon, clear of maintenance windows.

    @raise Conflict: with the reason.
    """
    if start < now + policy.minDelay:
        raise Conflict(f"Tasks may not be scheduled immediately or in the past ({policy.minDelay} second delay).")
    if start > now + policy.horizon:
        raise Conflict(f"Tasks may not be scheduled more than {policy.horizon} seconds in advance.")
    if policy.maintenanceConflict(start, start + duration) is not None:
        raise Conflict("The window overlaps a maintenance window.")


def freeNodes(
    txn: IStoreTransaction, nodeids: Iterable[str], start: int, stop: int, policy: Policy,
    own: Iterable[Schedule] = (),
) -> list[str]:
    """
    The given nodes (in their order) with no blocking schedule within the
    padding of C{[start, stop)}, not counting the schedules C{own} (those
    about to move away).
    """
    ids = list(dict.fromkeys(str(n) for n in nodeids))
    mine = {(s.nodeid, s.start, s.stop) for s in own if s.blocking}
    busy = {
        i.nodeid
        for i in txn.blockingIntervals(start - policy.padding, stop + policy.padding, ids if len(ids) <= 64 else None)
        if (i.nodeid, i.start, i.stop) not in mine
    }
    return [n for n in ids if n not in busy]


def relocate(
    txn: IStoreTransaction, schedule: Schedule, nodeid: str, start: int, index: int, ownerid: int,
    now: int, actor: str, reason: str,
) -> None:
    """
    Give a schedule no node has yet another node and/or window (same
    duration), remembering its occurrence; one L{ScheduleMoved} event.
    """
    oldNode, oldStart, oldStop = schedule.nodeid, schedule.start, schedule.stop
    schedule.nodeid, schedule.start, schedule.stop = nodeid, start, start + (oldStop - oldStart)
    schedule.deploymentOptions[OCCURRENCE] = index
    schedule.updated = now
    txn.updateSchedule(schedule)
    public = schedule.deploymentOptions.get("ssh.public")
    if public:
        txn.addPublicKey(schedule.id, public, schedule.stop)
    emit(txn, ScheduleMoved(
        time=now, actor=actor, reason=reason, schedid=schedule.id, expid=schedule.expid, ownerid=ownerid,
        nodeid=nodeid, oldNodeid=oldNode, start=schedule.start, stop=schedule.stop,
        oldStart=oldStart, oldStop=oldStop,
    ))


def candidates(txn: IStoreTransaction, experiment: Experiment, now: int, policy: Policy) -> list[str]:
    """
    The nodes an unbound booking's filter allows now, best first (the
    ranking of L{slots.eligibleNodes}).

    @raise Conflict: the booking named its nodes or books node pairs.
    """
    options = experiment.options or {}
    if options.get("nodes") is not None:
        raise Conflict(f"Experiment {experiment.id} names its nodes: it can only move on the same nodes.")
    if options.get("paired"):
        raise Conflict(f"Experiment {experiment.id} books node pairs: it can only move on the same nodes.")
    try:
        nodeFilter = parse(experiment.nodetypes or "")
    except FilterSyntaxError:
        raise Conflict(f"Experiment {experiment.id} has a node filter this version cannot read.") from None
    interfaces = integer("interfaceCount", options.get("interfaceCount", 1))
    pairing = slots.Pairing.choose(interfaces, 1, False)
    eligible = slots.eligibleNodes(txn.nodeView(), nodeFilter, None, now, policy, pairing)
    return [unit[0].id for unit in eligible.units]


def moveOccurrence(
    txn: IStoreTransaction, expid: Any, occurrence: Any, userid: int, start: Any, placement: Any,
    now: int, policy: Policy,
) -> Occurrence:
    """
    Move one occurrence to the window starting at C{start} (same duration),
    on the same nodes (C{placement="nodes"}) or on free nodes matching the
    booking's filter (C{"filter"}: the current nodes first when free, then
    the best ranked). All its open schedules move or none.

    @return: the occurrence as it is now.
    @raise Conflict: a schedule of it has reached its node, the window breaks
        a booking rule, or not enough nodes are free.
    """
    if placement not in PLACEMENTS:
        raise BadRequest(f"placement must be one of {', '.join(PLACEMENTS)}", parameter="placement")
    experiment, user, occurrences = _series(txn, expid, userid)
    found = _find(occurrences, occurrence, experiment.id)
    live = found.live
    if not live:
        raise Conflict(f"Occurrence {found.index} of experiment {experiment.id} is over ({found.status}).")
    started = [s for s in live if s.status not in MOVABLE]
    if started:
        raise Conflict(
            f"Occurrence {found.index} has reached its node(s) (schedule {started[0].id} is "
            f"{started[0].status}): it can be canceled, not moved."
        )
    begin = integer("start", start)
    duration = live[0].stop - live[0].start
    checkWindow(begin, duration, now, policy)
    if placement == SAME_NODES:
        wanted = [s.nodeid for s in live]
        for nodeid in wanted:
            node = txn.getNode(nodeid)
            if node is None or node.status != NODE_ACTIVE:
                raise Conflict(f"Node {nodeid} is not active.")
        free = freeNodes(txn, wanted, begin, begin + duration, policy, own=live)
        if len(free) < len(set(wanted)):
            raise Conflict(
                f"Node {next(n for n in wanted if n not in free)} is booked within {policy.padding} s of that window.",
                available=len(free), requested=len(set(wanted)),
            )
        chosen = wanted
    else:
        pool = [s.nodeid for s in live] + candidates(txn, experiment, now, policy)
        free = freeNodes(txn, pool, begin, begin + duration, policy, own=live)
        if len(free) < len(live):
            raise Conflict(
                f"Only {len(free)}/{len(live)} nodes matching the filter are free for that window.",
                available=len(free), requested=len(live),
            )
        chosen = free[: len(live)]
    actor = lifecycle.actorFor(user, experiment).value
    for schedule, nodeid in zip(live, chosen):
        relocate(txn, schedule, nodeid, begin, found.index, experiment.ownerid, now, actor,
                 f"occurrence {found.index} moved")
    return _find(group(experiment, txn.schedulesOfExperiment(experiment.id)), found.index, experiment.id)
