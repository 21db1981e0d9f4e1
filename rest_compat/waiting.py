# -*- test-case-name: tests.test_rest_wait -*-
"""
C{?wait=<status|final>&timeout=<s>} on C{GET /experiments/<id>} (and its
C{/schedules} forms) and C{GET /schedules/<id>}: the answer is held until the
condition holds or the timeout passes, with no thread and no polling: the
request waits on one Deferred of the core's L{am.core.waiters.Waiters},
woken by committed events, and re-reads once per wake. A client that goes
away cancels its waiter (docs/rest.md, "Waiting for a change").
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterable, Optional

import attrs

from am.core import states
from am.core.errors import BadRequest
from rest_compat.context import Context, Reply
from rest_compat.params import intParam, text

FINAL = "final"
HEADER = "X-Marvin-Wait"


@attrs.frozen
class Condition:
    """
    What a wait waits for: every schedule in C{status} or final (C{final}:
    every schedule final; an archived experiment is final).
    """

    status: str
    timeout: int

    def holds(self, statuses: Iterable[str], archived: bool = False) -> bool:
        if archived:
            return True
        return all(states.isFinal(s) or s == self.status for s in statuses)


def condition(ctx: Context) -> Optional[Condition]:
    """
    The wait a request asks for, or C{None}; the timeout defaults to and is
    capped at the operator's C{notifications.wait_max}.

    @raise BadRequest: an unknown status or a negative timeout.
    """
    wanted = text(ctx.params, "wait")
    if wanted is None or not wanted.strip():
        if ctx.params.get("timeout") is not None:
            raise BadRequest("timeout needs wait=<status|final>", parameter="timeout")
        return None
    wanted = wanted.strip().lower()
    if wanted != FINAL and wanted not in states.ALL_STATES:
        raise BadRequest(
            f"wait must be final or a schedule status ({', '.join(states.ALL_STATES)})", parameter="wait"
        )
    longest = ctx.scheduler.policy.waitMax
    timeout = intParam(ctx.params, "timeout", longest, minimum=0)
    return Condition(wanted, min(timeout, longest))


async def held(
    ctx: Context,
    keys: Iterable[tuple[str, int]],
    read: Callable[[], Awaitable[tuple[Any, bool]]],
    wait: Optional[Condition],
) -> Reply:
    """
    Answer with C{read()}'s body once its flag (the condition) is true, or at
    the timeout; without C{wait}, at once. The reply says which in the
    C{X-Marvin-Wait} header (C{met} or C{timeout}).
    """
    if wait is None:
        body, _ = await read()
        return Reply(200, body)
    keys = tuple(keys)
    clock, waiters = ctx.scheduler.clock, ctx.scheduler.waiters
    deadline = clock.seconds() + wait.timeout
    pending: list[Any] = []
    gone: list[bool] = []

    def disconnected(_: Any) -> None:
        gone.append(True)
        for waiting in pending:
            waiting.cancel()

    ctx.request.notifyFinish().addErrback(disconnected)
    while True:
        woken = waiters.wait(keys, deadline - clock.seconds())
        pending[:] = [woken]
        try:
            body, met = await read()
        except BaseException:
            woken.cancel()
            raise
        if met or gone or clock.seconds() >= deadline:
            woken.cancel()
            return Reply(200, body, headers={HEADER: "met" if met else "timeout"})
        await woken
        if gone:
            return Reply(200, body, headers={HEADER: "timeout"})
