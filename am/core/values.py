# -*- test-case-name: tests.test_rest_params,tests.test_slots -*-
"""
Checking the loosely typed values that arrive from form fields, JSON and XML-RPC.
"""

from __future__ import annotations

import re
from typing import Any, Callable, Optional, TypeVar

from am.core.errors import BadRequest, NotFound

T = TypeVar("T")

_INTEGER = re.compile(r"-?\d{1,18}")
# SQLite stores signed 64-bit integers; stay well inside.
LIMIT = 2**62


def integer(name: str, value: Any, minimum: Optional[int] = None) -> int:
    """
    Accept ints, integral floats and integral strings (form fields); refuse
    everything else by name, so the caller learns which parameter was bad.
    """
    if isinstance(value, bool) or value is None:
        raise BadRequest(f"{name} must be an integer", parameter=name)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str):
        text = value.strip()
        if not _INTEGER.fullmatch(text):
            raise BadRequest(f"{name} must be an integer", parameter=name)
        value = int(text)
    if not isinstance(value, int) or not -LIMIT < value < LIMIT:
        raise BadRequest(f"{name} must be an integer", parameter=name)
    if minimum is not None and value < minimum:
        raise BadRequest(f"{name} must be at least {minimum}", parameter=name)
    return value


def identifier(value: Any) -> Optional[int]:
    """
    A row id from a path or a parameter, or C{None} when it cannot be one
    (the caller answers "not found").
    """
    text = str(value).strip()
    if not _INTEGER.fullmatch(text):
        return None
    number = int(text)
    return number if 0 < number < LIMIT else None


def lookup(fetch: Callable[[int], Optional[T]], value: Any, message: str) -> T:
    """
    The row C{fetch} finds for the id in C{value}, or L{NotFound} with C{message}.
    """
    key = identifier(value)
    row = fetch(key) if key is not None else None
    if row is None:
        raise NotFound(message)
    return row
