"""
Waiting on a condition in the end-to-end tests: poll it until it holds, with
a deadline, never a fixed sleep for timing.
"""

from __future__ import annotations

import time
from typing import Any, Callable


def waitFor(
    condition: Callable[[], Any], deadline: float, what: str, detail: Callable[[], str] = str,
    interval: float = 0.1,
) -> Any:
    """
    Poll C{condition} every C{interval} seconds until it returns something
    true, and return that; fail after C{deadline} seconds saying what was
    awaited (and C{detail()}, for the state at that moment).
    """
    end = time.monotonic() + deadline
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > end:
            raise AssertionError(f"not within {deadline:.1f} s: {what}\n{detail()}")
        time.sleep(interval)
