"""
One log line per GENI call, as the REST face logs each request: method,
caller URN, slice URN, number of slivers, geni_code and duration.

The face knows the method, the caller and the answer; only the AM's slice
lookup knows the slice a list of sliver URNs belongs to. It notes it on the
call's record through a context variable, so the methods' signatures stay the
GENI ones.
"""

from __future__ import annotations

import contextvars
from typing import Any, Optional

import attrs

__all__ = ["CallRecord", "current", "noteSlice", "sliversIn"]


@attrs.define
class CallRecord:
    """
    What one call did, filled in as it goes.
    """

    method: str
    caller: str = "-"
    sliceURN: str = "-"


_current: contextvars.ContextVar[Optional[CallRecord]] = contextvars.ContextVar("geniCall", default=None)


def current() -> contextvars.ContextVar[Optional[CallRecord]]:
    """
    The context variable holding the running call's record.
    """
    return _current


def noteSlice(urn: Optional[str]) -> None:
    """
    The running call acts on slice C{urn} (a no-op outside a call).
    """
    record = _current.get()
    if record is not None and isinstance(urn, str):
        record.sliceURN = urn[:300]


def sliversIn(answer: dict[str, Any]) -> int:
    """
    How many slivers an answer reports.
    """
    value = answer.get("value")
    if isinstance(value, dict):
        value = value.get("geni_slivers")
    if isinstance(value, list):
        return sum(1 for v in value if isinstance(v, dict) and "geni_sliver_urn" in v)
    return 0
