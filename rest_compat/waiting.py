# -*- test-case-name: tests.test_rest_wait -*-
"""
C{?wait=<status|final>&timeout=<s>} on C{GET /experiments/<id>} (and its
C{/schedules} forms) and C{GET /schedules/<id>}: the answer is held until the
condition holds (or, with C{wait=change&from=<state>}, until a status differs
from the state a previous answer showed) or the timeout passes, with no thread and no polling: the
request waits on one Deferred of the core's L{am.core.waiters.Waiters},
woken by committed events, and re-reads once per wake. A client that goes
away cancels its waiter (docs/rest.md, "Waiting for a change").
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Iterable, Optional

import hashlib

import attrs

from am.core import states
from am.core.errors import BadRequest
from rest_compat.context import Context, Reply
from rest_compat.params import intParam, text

FINAL = "final"
CHANGE = "change"
HEADER = "X-Marvin-Wait"
STATE = "X-Marvin-State"

#: What a read hands the wait: the body, each schedule's C{(id, status)}, archived or not.
Seen = tuple[Any, list[tuple[int, str]], bool]


def stateToken(pairs: Iterable[tuple[int, str]], archived: bool) -> str:
    """
    A short digest of the statuses a reply showed (the C{X-Marvin-State}
    header), for C{wait=change&from=<token>}.
    """
    text = ";".join(f"{i}={s}" for i, s in sorted(pairs)) + ("|archived" if archived else "")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


@attrs.frozen
class Condition:
    """
    What a wait waits for: every schedule in C{status} or final (C{final}:
    every schedule final; an archived experiment is final), or (C{change})
    any status other than the state C{since} names.
    """

    status: str
    timeout: int
    since: str = ""

    def holds(self, pairs: list[tuple[int, str]], archived: bool = False) -> bool:
        if self.status == CHANGE:
            return stateToken(pairs, archived) != self.since
        if archived:
            return True
        return all(states.isFinal(s) or s == self.status for _, s in pairs)


def condition(ctx: Context) -> Optional[Condition]:
    """
    The wait a request asks for, or C{None}; the timeout defaults to and is
    capped at the operator's C{notifications.wait_max}.

    @raise BadRequest: an unknown status, a negative timeout, C{change}
        without C{from}.
    """
    wanted = text(ctx.params, "wait")
    if wanted is None or not wanted.strip():
        for name in ("timeout", "from"):
            if ctx.params.get(name) is not None:
                raise BadRequest(f"{name} needs wait=<status|final|change>", parameter=name)
        return None
    wanted = wanted.strip().lower()
    if wanted not in (FINAL, CHANGE) and wanted not in states.ALL_STATES:
        raise BadRequest(
            f"wait must be final, change or a schedule status ({', '.join(states.ALL_STATES)})", parameter="wait"
        )
    since = (text(ctx.params, "from") or "").strip()
    if wanted == CHANGE and not since:
        raise BadRequest(f"wait=change needs from=<the {STATE} header of the last answer>", parameter="from")
    longest = ctx.scheduler.policy.waitMax
    timeout = intParam(ctx.params, "timeout", longest, minimum=0)
    return Condition(wanted, min(timeout, longest), since)


async def held(
    ctx: Context,
    keys: Iterable[tuple[str, int]],
    read: Callable[[], Awaitable[Seen]],
    wait: Optional[Condition],
) -> Reply:
    """
    Answer with C{read()}'s body once the condition holds, or at the
    timeout; without C{wait}, at once. The reply says which in the
    C{X-Marvin-Wait} header (C{met} or C{timeout}) and always carries the
    state it shows (C{X-Marvin-State}).
    """
    if wait is None:
        body, pairs, archived = await read()
        return Reply(200, body, headers={STATE: stateToken(pairs, archived)})
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
            body, pairs, archived = await read()
        except BaseException:
            woken.cancel()
            raise
        met = wait.holds(pairs, archived)
        headers = {STATE: stateToken(pairs, archived)}
        if met or gone or clock.seconds() >= deadline:
            woken.cancel()
            return Reply(200, body, headers={**headers, HEADER: "met" if met else "timeout"})
        # Hold nothing of this read while waiting: the next one replaces it.
        body = pairs = None
        await woken
        if gone:
            return Reply(200, None, headers={**headers, HEADER: "timeout"})
