# -*- test-case-name: tests.test_recurrence -*-
"""
Recurrence: C{recurrence=simple}, C{period}, C{until} expand into instance offsets.

All or nothing: the expansion either yields every instance or raises with the
legacy message (legacy reference §5.4); the bounds come from L{am.core.policy.Policy}.
"""

from __future__ import annotations

from typing import Any, Optional

from am.core.errors import Conflict
from am.core.policy import Policy
from am.core.values import integer


def expandOffsets(
    start: int,
    duration: int,
    recurrence: Optional[str],
    period: Any,
    until: Any,
    now: int,
    policy: Policy,
) -> list[int]:
    """
    The start offsets, relative to C{start}, of every instance.

    With no recurrence there is one instance at offset 0. With C{simple}, the
    instances start at C{start + k*period} while that is before
    C{min(until, now + horizon)}.

    @raise Conflict: for a policy violation, with the legacy message.
    @raise BadRequest: for ill-typed parameters.
    """
    if recurrence in (None, "", "none"):
        return [0]
    if recurrence != "simple":
        raise Conflict("Unsupported recurrence scheme")
    period = integer("period", period)
    until = integer("until", until if until is not None else 0)
    end = min(now + policy.horizon, until)
    if end < start:
        raise Conflict("End of recurrence set to before start time.")
    if period < duration:
        raise Conflict("Recurrence period too small. Must be greater than task runtime.")
    if period < policy.recurrenceMinimum:
        raise Conflict(
            f"Recurrence period too small. Must be greater than {policy.recurrenceMinimum} seconds."
        )
    if period % policy.recurrenceStep:
        raise Conflict(f"Recurrence must be a multiple of {policy.recurrenceStep} seconds.")
    count = max(0, -(-(end - start) // period))
    if count == 0:
        raise Conflict("Something unexpected happened (no intervals generated)")
    if count > policy.maxIntervals:
        raise Conflict(f"Too many recurrences ({count}); at most {policy.maxIntervals}.")
    return [k * period for k in range(count)]
