# -*- test-case-name: tests.test_lifecycle,tests.test_store -*-
"""
The scheduling core as both faces see it: every operation is one atomic store
transaction running one of the rule functions, with the time taken from the
injected clock. The faces translate their protocols into these calls and back.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IReactorTime

from am.core import accounts, allocation, lifecycle
from am.core.allocation import AllocationRequest
from am.core.interfaces import IStore
from am.core.model import User
from am.core.policy import Policy


class Scheduler:
    """
    One scheduling core over one store.

    @ivar listeners: callables run after every successful change, e.g. to
        invalidate a cached advertisement.
    """

    def __init__(self, store: IStore, clock: IReactorTime, policy: Optional[Policy] = None) -> None:
        self.store = store
        self.clock = clock
        self.policy = policy or Policy()
        self.listeners: list[Callable[[], None]] = []

    def now(self) -> int:
        """
        Whole seconds: the core and both faces speak UNIX seconds.
        """
        return int(self.clock.seconds())

    def read(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        """
        Run a read-only function of the transaction (faces' queries).
        """
        return self.store.read(function, *args, **kwargs)

    def _change(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        d = self.store.transact(function, *args, **kwargs)

        def notify(result: Any) -> Any:
            for listener in self.listeners:
                listener()
            return result

        return d.addCallback(notify)

    def allocate(self, request: AllocationRequest) -> Deferred:
        """
        Book a request (both REST C{POST /experiments} and GENI C{Allocate}).
        """
        change = self.read if request.dryrun else self._change
        return change(allocation.allocate, request, self.now(), self.policy)

    def find(self, **query: Any) -> Deferred:
        """
        Search free windows without booking.
        """
        return self.read(allocation.find, self.now(), self.policy, **query)

    def changeStatus(self, schedid: Any, status: Any, user: User, when: Any = None) -> Deferred:
        """
        A node's status report (C{when} it happened, if it says) or an owner's change.
        """
        return self._change(lifecycle.changeStatus, schedid, status, user, self.now(), self.policy, when)

    def reportTraffic(self, schedid: Any, report: dict, user: User) -> Deferred:
        """
        A node's traffic report for one of its schedules.
        """
        return self._change(lifecycle.reportTraffic, schedid, report, user, self.now(), self.policy)

    def heartbeat(self, user: User, nodeid: str, **kwargs: Any) -> Deferred:
        """
        A node's heartbeat; fires with its tasks.
        """
        return self._change(lifecycle.heartbeat, user, nodeid, self.now(), self.policy, **kwargs)

    def deleteExperiment(self, expid: Any, user: User) -> Deferred:
        """
        Cancel or abort everything of an experiment and archive it.
        """
        return self._change(lifecycle.deleteExperiment, expid, user, self.now(), self.policy)

    def expireAllocations(self) -> Deferred:
        """
        Cancel unprovisioned GENI allocations whose time is up, and queued
        tasks whose queue expiry passed.
        """
        return self._change(lifecycle.expireAllocations, self.now(), self.policy)

    def addUser(self, **kwargs: Any) -> Deferred:
        """
        Create a user with default quotas.
        """
        return self._change(accounts.addUser, now=self.now(), policy=self.policy, **kwargs)

    def updateUser(self, userid: Any, **kwargs: Any) -> Deferred:
        """
        Change a user's fingerprint or quotas.
        """
        return self._change(accounts.updateUser, userid, self.now(), self.policy, **kwargs)

    def invalidateUser(self, userid: Any) -> Deferred:
        """
        Invalidate a user.
        """
        return self._change(accounts.invalidateUser, userid)

    def setNodeTags(self, nodeid: str, text: str) -> Deferred:
        """
        Replace a node's admin tags.
        """
        return self._change(accounts.setNodeTags, nodeid, text)

    def setNodeStatus(self, nodeid: str, status: str) -> Deferred:
        """
        An admin takes a node out of service or back.
        """
        return self._change(accounts.setNodeStatus, nodeid, status)

    def setNodePair(self, headid: str, tailid: str) -> Deferred:
        """
        Pair two nodes (head, tail), replacing the pairs either was in.
        """
        return self._change(accounts.setNodePair, headid, tailid)

    def deleteNodePair(self, nodeid: str) -> Deferred:
        """
        Remove the pair a node is in.
        """
        return self._change(accounts.deleteNodePair, nodeid)

    def applyInventory(self, entries: list, complete: bool = True) -> Deferred:
        """
        Apply an inventory snapshot.
        """
        return self._change(accounts.applyInventory, entries, complete)

    def transact(self, function: Callable[..., Any], *args: Any, **kwargs: Any) -> Deferred:
        """
        Run a changing function of the transaction that needs no clock (GENI
        provisioning, renewals), notifying listeners afterwards.
        """
        return self._change(function, *args, **kwargs)
