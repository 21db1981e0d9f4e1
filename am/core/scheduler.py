# -*- test-case-name: tests.test_lifecycle,tests.test_store -*-
"""
The scheduling core as both faces see it (L{IScheduler}): every change is a
named command that takes ids and plain values, runs exactly one atomic store
transaction with the time taken from the injected clock, and decides every
rule inside the core. The faces translate their protocols into these calls
and back; they read through L{Scheduler.read} and never see the store.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any, Callable, Iterable, Mapping, Optional

from twisted.internet.defer import Deferred, fail
from twisted.internet.interfaces import IReactorTime
from zope.interface import implementer

from am.core import (
    accounts, allocation, commands, healing, lifecycle, occurrences, outbox, results, slices,
)
from am.core.errors import Conflict
from am.core.events import BookingRefused, Event, EventStream, runCommand
from am.core.interfaces import IScheduler, IStore
from am.core.policy import Policy
from am.core.requests import AllocationRequest
from am.core.slices import SliceRequest, SliceTarget
from am.core.values import requireStorable
from am.core.waiters import Waiters


@functools.lru_cache(maxsize=512)
def _parameterNames(function: Callable[..., Any]) -> tuple[str, ...]:
    """
    The names of C{function}'s parameters after the transaction (read once
    per function: a signature costs more than the check itself).
    """
    try:
        return tuple(inspect.signature(function).parameters)[1:]
    except (TypeError, ValueError):
        return ()


def checkArguments(
    function: Callable[..., Any], args: tuple, kwargs: dict[str, Any], checked: Any = None,
) -> None:
    """
    Refuse, by parameter name, text no store can hold in the arguments of a
    command or query (both faces, every command: one rule at the door).

    @param checked: an argument checked before (the scheduler's own policy:
        walking it field by field cost more than the rest of a heartbeat's check).
    @raise am.core.errors.BadRequest: naming the parameter.
    """
    names: tuple[str, ...] = ()
    if args:
        try:
            names = _parameterNames(function)
        except TypeError:  # an unhashable callable
            names = _parameterNames.__wrapped__(function)
    for index, value in enumerate(args):
        if value is not checked or checked is None:
            requireStorable(names[index] if index < len(names) else f"argument {index + 1}", value)
    for name, value in kwargs.items():
        if value is not checked or checked is None:
            requireStorable(name, value)


@implementer(IScheduler)
class Scheduler:
    """
    One scheduling core over one store.

    @ivar events: the core's event stream: every change a command commits is
        delivered to its subscribers after commit (L{am.core.events}).
    @ivar waiters: requests waiting for a change (L{am.core.waiters}).
    """

    def __init__(self, store: IStore, clock: IReactorTime, policy: Optional[Policy] = None) -> None:
        self._store = store
        self.clock = clock
        self.policy = policy or Policy()
        self._policyChecked: Optional[Policy] = None
        self.events = EventStream()
        self.events.subscribeInTransaction(outbox.record)
        self.waiters = Waiters(self.events, clock)

    def _checkedPolicy(self) -> Policy:
        """
        The policy, its text checked once (it is frozen; tests may replace it).
        """
        policy = self.policy
        if policy is not self._policyChecked:
            requireStorable("policy", policy)
            self._policyChecked = policy
        return policy

    def now(self) -> int:
        """
        Whole seconds: the core and both faces speak UNIX seconds.
        """
        return int(self.clock.seconds())

    def read(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        """
        Run a read-only function of the transaction (faces' queries).
        """
        try:
            checkArguments(function, args, kwargs, self._checkedPolicy())
        except Exception:
            return fail()
        return self._store.read(function, *args, **kwargs)

    def _change(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        """
        The one commit path of every command: run C{function} in one store
        transaction, then deliver the events it recorded.
        """
        return self._command(function, args, kwargs)

    def _command(
        self,
        function: Callable[..., Any],
        args: tuple,
        kwargs: dict,
        refused: Optional[Callable[[Conflict], Event]] = None,
    ) -> Deferred:
        """
        Run C{function(txn, *args, **kwargs)} as one transaction. Once it has
        committed, its events go to the subscribers (on the reactor thread,
        never the store's); if it fails nothing is delivered, except the event
        C{refused} makes of a L{Conflict} (a refused booking). Text no store
        can hold is refused first, naming the parameter.
        """
        try:
            checkArguments(function, args, kwargs, self._checkedPolicy())
        except Exception:
            return fail()
        d = self._store.transact(runCommand, function, args, kwargs, self.events.recorders)

        def committed(outcome: tuple[Any, tuple[Event, ...]]) -> Any:
            result, events = outcome
            self.events.deliver(events)
            return result

        def failed(failure: Any) -> Any:
            if refused is not None and failure.check(Conflict):
                self.events.deliver([refused(failure.value)])
            return failure

        return d.addCallbacks(committed, failed)

    # -- queries -------------------------------------------------------------

    def find(self, **query: Any) -> Deferred:
        """
        Search free windows without booking.
        """
        return self.read(allocation.find, self.now(), self.policy, **query)

    def resolveSlice(self, target: SliceTarget) -> Deferred:
        """
        The slice and the slivers a GENI call names that still exist (for
        Describe and Status).
        """
        return self.read(slices.resolve, target, self.now())

    def offer(self, availableOnly: bool) -> Deferred:
        """
        What a GENI advertisement shows now.
        """
        return self.read(slices.offer, self.now(), self.policy, availableOnly)

    # -- bookings and schedules ----------------------------------------------

    def allocate(self, request: AllocationRequest) -> Deferred:
        """
        Book a request (REST C{POST /experiments}); a dry run only reads.
        """
        now = self.now()
        if request.dryrun:
            return self.read(allocation.allocate, request, now, self.policy)
        return self._command(
            allocation.allocate, (request, now, self.policy), {},
            refused=lambda e: refusal(request.ownerid, request.name, request.sliceURN, e, now),
        )

    def changeStatus(self, schedid: Any, status: Any, userid: int, when: Any = None) -> Deferred:
        """
        A node's status report (C{when} it happened, if it says) or an owner's change.
        """
        return self._change(commands.changeStatus, schedid, status, userid, self.now(), self.policy, when)

    def reportTraffic(self, schedid: Any, report: dict, userid: int) -> Deferred:
        """
        A node's traffic report for one of its schedules.
        """
        return self._change(commands.reportTraffic, schedid, report, userid, self.now(), self.policy)

    def heartbeat(
        self, userid: int, nodeid: str, maintenance: bool = False,
        interfaces: Optional[list] = None, limit: int = 3,
    ) -> Deferred:
        """
        A node's heartbeat; fires with its tasks.
        """
        return self._change(
            commands.heartbeat, userid, nodeid, self.now(), self.policy,
            maintenance=maintenance, interfaces=interfaces, limit=limit,
        )

    # -- results (docs/results.md) ------------------------------------------------

    def admitUpload(self, schedid: Any, userid: int, path: Any, size: Any, sha256: Any) -> Deferred:
        """
        Whether a node may upload C{size} bytes to C{path} of its task; fires
        with an L{results.Admission} (read only: nothing changes).
        """
        return self.read(commands.admitUpload, schedid, userid, path, size, sha256, self.now())

    def recordResult(self, schedid: Any, userid: int, path: Any, size: Any, sha256: Any) -> Deferred:
        """
        A result file arrived whole and verified; fires with its L{am.core.model.ResultFile}.
        """
        return self._change(commands.recordResult, schedid, userid, path, size, sha256, self.now())

    def settleResults(self) -> Deferred:
        """
        Close due upload windows, refunding unused storage; fires with how many closed.
        """
        return self._change(results.settle, self.now(), self.policy)

    def expireResults(self) -> Deferred:
        """
        Forget result files past their retention; fires with those forgotten.
        """
        return self._change(results.expire, self.now(), self.policy)

    def deleteExperiment(self, expid: Any, userid: int) -> Deferred:
        """
        Cancel or abort everything of an experiment and archive it.
        """
        return self._change(commands.deleteExperiment, expid, userid, self.now(), self.policy)

    def mergeExperiments(self, into: Any, source: Any, userid: int, name: Optional[str] = None) -> Deferred:
        """
        Move every schedule of C{source} into C{into} (legacy REST merge);
        fires with C{(moved, into id, source id)}.
        """
        return self._change(commands.mergeExperiments, into, source, userid, name, self.now())

    def cancelOccurrences(
        self, expid: Any, userid: int, occurrence: Any = None, since: Any = None
    ) -> Deferred:
        """
        Cancel one occurrence of a recurring booking, or every occurrence
        from C{since} on; fires with an L{occurrences.Cancellation}.
        """
        return self._change(
            occurrences.cancelOccurrences, expid, userid, self.now(), self.policy,
            occurrence=occurrence, since=since,
        )

    def moveOccurrence(self, expid: Any, occurrence: Any, userid: int, start: Any, placement: Any) -> Deferred:
        """
        Move one occurrence of a recurring booking to the window at C{start},
        on the same nodes or the same filter; fires with the
        L{am.core.series.Occurrence} as it is now.
        """
        return self._change(
            occurrences.moveOccurrence, expid, occurrence, userid, start, placement, self.now(), self.policy
        )

    def expireAllocations(self) -> Deferred:
        """
        Cancel unprovisioned GENI allocations whose time is up, and queued
        tasks whose queue expiry passed.
        """
        return self._change(lifecycle.expireAllocations, self.now(), self.policy)

    def sweep(self) -> Deferred:
        """
        Fail what nobody ran (L{lifecycle.sweep}); fires with a L{lifecycle.Sweep}.
        """
        return self._change(lifecycle.sweep, self.now(), self.policy)

    def heal(self) -> Deferred:
        """
        One self-healing pass (L{healing.heal}); fires with a L{healing.Healing}.
        """
        return self._change(healing.heal, self.now(), self.policy)

    # -- GENI slices -----------------------------------------------------------

    def allocateSlice(self, request: SliceRequest, userid: int) -> Deferred:
        """
        GENI Allocate; fires with C{(schedules, what best effort left out)}.
        A dry run (C{request.dryrun}) only reads and fires with
        C{(L{am.core.requests.Allocation}, what best effort left out)}.
        """
        now = self.now()
        if request.dryrun:
            return self.read(slices.previewSlice, request, userid, now, self.policy)
        return self._command(
            slices.allocateSlice, (request, userid, now, self.policy), {},
            refused=lambda e: refusal(userid, request.sliceURN, request.sliceURN, e, now),
        )

    def provision(self, target: SliceTarget, userid: int, updates: Mapping[str, Any]) -> Deferred:
        """
        GENI Provision; fires with the schedules provisioned.
        """
        return self._change(slices.provision, target, userid, dict(updates), self.now(), self.policy)

    def performAction(
        self, target: SliceTarget, userid: int, action: str, updates: Mapping[str, Any]
    ) -> Deferred:
        """
        A GENI operational action; fires with the target's schedules as they are now.
        """
        return self._change(slices.performAction, target, userid, action, dict(updates), self.now(), self.policy)

    def renewSlivers(
        self, target: SliceTarget, userid: int, stop: int, text: str, bestEffort: bool = False
    ) -> Deferred:
        """
        GENI Renew; fires with C{(schedules, refusals by sliver id)}.
        """
        return self._change(
            slices.renewSlivers, target, userid, stop, text, bestEffort, self.now(), self.policy
        )

    def endSlivers(self, target: SliceTarget, userid: int) -> Deferred:
        """
        GENI Delete; fires with the schedules named.
        """
        return self._change(slices.endSlivers, target, userid, self.now(), self.policy)

    def shutdownSlice(self, sliceURN: str, operatorURN: str) -> Deferred:
        """
        GENI Shutdown by an operator.
        """
        return self._change(slices.shutdownSlice, sliceURN, operatorURN, self.now(), self.policy)

    # -- users and nodes -------------------------------------------------------

    def addUser(self, **kwargs: Any) -> Deferred:
        """
        Create a user with default quotas.
        """
        return self._change(accounts.addUser, now=self.now(), policy=self.policy, **kwargs)

    def updateUser(
        self, userid: Any, fingerprint: Optional[str] = None, quota: Optional[dict[str, Any]] = None
    ) -> Deferred:
        """
        Change a user's fingerprint or quotas.
        """
        return self._change(
            accounts.updateUser, userid, self.now(), self.policy, fingerprint=fingerprint, quota=quota
        )

    def invalidateUser(self, userid: Any) -> Deferred:
        """
        Invalidate a user.
        """
        return self._change(accounts.invalidateUser, userid, self.now())

    def userForURN(self, urn: str) -> Deferred:
        """
        The user of a GENI URN a trusted authority vouched for, registered on
        first use.
        """
        return self._change(accounts.userForURN, urn, self.now(), self.policy)

    def bootstrapUsers(self, users: Iterable[Mapping[str, Any]]) -> Deferred:
        """
        Create the configured users not known yet; fires with what became of each.
        """
        return self._change(accounts.bootstrapUsers, [dict(u) for u in users], self.now(), self.policy)

    def setNode(
        self, nodeid: str, tags: Optional[str] = None, status: Optional[str] = None,
        pair: Optional[str] = None, unpair: bool = False,
    ) -> Deferred:
        """
        An admin's node settings, all or nothing.
        """
        return self._change(accounts.setNode, nodeid, tags, status, pair, unpair, self.now())

    def setNodeTags(self, nodeid: str, text: str) -> Deferred:
        """
        Replace a node's admin tags.
        """
        return self.setNode(nodeid, tags=text)

    def setNodeStatus(self, nodeid: str, status: str) -> Deferred:
        """
        An admin takes a node out of service or back.
        """
        return self.setNode(nodeid, status=status)

    def setNodePair(self, headid: str, tailid: str) -> Deferred:
        """
        Pair two nodes (head, tail), replacing the pairs either was in.
        """
        return self._change(accounts.setNodePair, headid, tailid, self.now())

    def deleteNodePair(self, nodeid: str) -> Deferred:
        """
        Remove the pair a node is in.
        """
        return self._change(accounts.deleteNodePair, nodeid, self.now())

    def applyInventory(self, entries: list, complete: bool = True) -> Deferred:
        """
        Apply an inventory snapshot.
        """
        return self._change(accounts.applyInventory, entries, complete, self.now())

    # -- notifications (am.core.outbox) ---------------------------------------

    def rotateNotifySecret(self, userid: Any, actorid: int) -> Deferred:
        """
        Replace a user's notification signing secret; fires with the new one.
        """
        return self._change(outbox.rotateSecret, userid, actorid, self.now())

    def notifySecret(self, userid: Any, actorid: int) -> Deferred:
        """
        The user's current signing secret (C{None}: none made yet).
        """
        return self.read(outbox.readSecret, userid, actorid)

    def claimNotifications(self, worker: str, limit: int = 50, lease: int = 60) -> Deferred:
        """
        Lease due notifications to C{worker}; fires with L{outbox.Delivery}s.
        """
        return self._change(outbox.claim, worker, self.now(), limit, lease)

    def settleNotification(
        self, outid: int, worker: str, ok: bool, error: str = "", permanent: bool = False
    ) -> Deferred:
        """
        Record one delivery attempt (L{outbox.settle}).
        """
        return self._change(outbox.settle, outid, worker, ok, error, self.now(), self.policy, permanent)

    def releaseNotifications(self, worker: str) -> Deferred:
        """
        Give back C{worker}'s unsettled claims (a deliverer stopping).
        """
        return self._change(outbox.release, worker)

    def nextNotificationDue(self) -> Deferred:
        """
        When the earliest pending notification is due, or C{None}.
        """
        return self.read(outbox.nextDue)

    def pruneNotifications(self, before: int, limit: int = 500) -> Deferred:
        """
        Delete at most C{limit} settled notifications of events before
        C{before} (L{outbox.prune}); fires with how many.
        """
        return self._change(outbox.prune, before, limit)


def refusal(
    ownerid: Optional[int], name: Any, sliceURN: Optional[str], error: Conflict, now: int
) -> BookingRefused:
    """
    The event of a booking the core refused.
    """
    return BookingRefused(
        time=now, actor="owner", reason=error.message, ownerid=ownerid,
        name=str(name)[:200], sliceURN=sliceURN,
    )
