# -*- test-case-name: tests.test_ctl_housekeeping -*-
"""
The controller's background passes: expiry, sweep, healing, results
housekeeping and the notification outbox's retention, each a core command run on a timer by the leading controller
only (docs/postgresql.md, "One leader for the background loops").
"""

from __future__ import annotations

from typing import Any, Callable, Coroutine

from twisted.application.internet import TimerService
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger

from am.core.interfaces import IScheduler
from am.results.hub import resultKey

log = Logger(namespace="marvinctld")

Pass = Callable[[], Coroutine[Any, Any, object]]


class LeaderLoop(TimerService):
    """
    A pass every C{period} seconds, skipped while another controller leads;
    a failure is logged and the next run comes on time.

    @ivar what: names the pass in the failure's log line.
    """

    def __init__(self, name: str, period: float, clock: Any, leading: Callable[[], bool], run: Pass,
                 what: str) -> None:
        super().__init__(period, self.once)
        self.clock = clock
        self.setName(name)
        self.leading = leading
        self.run = run
        self.what = what

    def once(self) -> Deferred:
        """
        One run (the timer's call); fires when it is over, never with a failure.
        """
        if not self.leading():
            return succeed(None)
        return Deferred.fromCoroutine(self.run()).addErrback(
            lambda failure: log.failure("{what} failed; will retry", failure, what=self.what)
        )


async def expire(scheduler: IScheduler) -> None:
    """
    Expire unprovisioned allocations and queued tasks past their time.
    """
    count = await scheduler.expireAllocations()
    if count:
        log.info("{count} unprovisioned allocation(s) or queued task(s) expired", count=count)


async def sweep(scheduler: IScheduler) -> None:
    """
    Fail what nobody ran.
    """
    result = await scheduler.sweep()
    if result.total:
        log.info(
            "sweep: {never} task(s) no node deployed, {silent} of silent nodes failed",
            never=result.neverDeployed, silent=result.silent,
        )


async def heal(scheduler: IScheduler) -> None:
    """
    Move windows of self-healing bookings off nodes that are down or failing.
    """
    result = await scheduler.heal()
    if result.moved or result.stranded:
        log.info(
            "heal: {moved} window(s) moved off failing nodes, {stranded} with no healthy node free",
            moved=result.moved, stranded=result.stranded,
        )


async def results(scheduler: IScheduler, hub: Any) -> None:
    """
    Close upload windows (refunding unused storage) and delete results past
    their retention from C{hub}'s store.
    """
    settled = await scheduler.settleResults()
    if settled:
        log.info("results: {count} upload window(s) closed, unused storage refunded", count=settled)
    expired = await scheduler.expireResults()
    for result in expired:
        await hub.delete(resultKey(result.schedid, result.path))
    if expired:
        log.info("results: {count} file(s) past their retention deleted", count=len(expired))


# The outbox's retention: rows per transaction (the writer is held briefly),
# transactions per pass (a huge backlog goes over several passes).
PRUNE_CHUNK = 500
PRUNE_CHUNKS = 20


def prunePeriod(keep: int) -> float:
    """
    Seconds between prune passes: a 24th of the retention, from a minute to an hour.
    """
    return float(min(3600, max(60, keep // 24)))


async def pruneNotifications(
    scheduler: IScheduler, keep: int, chunk: int = PRUNE_CHUNK, chunks: int = PRUNE_CHUNKS
) -> int:
    """
    Delete settled notifications whose event is older than C{keep} seconds,
    C{chunk} rows per transaction, until none is left or C{chunks} ran.

    @return: how many were deleted.
    """
    before = scheduler.now() - keep
    total = 0
    for _ in range(chunks):
        count = await scheduler.pruneNotifications(before, chunk)
        total += count
        if count < chunk:
            break
    if total:
        log.info("notifications: {count} settled event(s) older than {keep} s pruned", count=total, keep=keep)
    return total
