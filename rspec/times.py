# -*- test-case-name: tests.test_rspec_times -*-
"""
RFC 3339 times as RSpecs carry them: liberal in, strict out.

Clients send every variant (jFed's editor writes fractional seconds and a
local offset, old jFed wrote C{+0100} without a colon), so reading accepts
them all as long as the instant is unambiguous. A time without a zone is
I{not} unambiguous and is refused: reading it as UTC would silently shift a
booking by the client's offset. Writing always gives C{YYYY-MM-DDTHH:MM:SSZ},
the only form every GENI client parses.
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

__all__ = ["parseTime", "formatTime"]

# date, 'T' (or 't' or one space, RFC 3339 section 5.6 note), time,
# optional fraction, then 'Z' or an offset with or without the colon.
_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt ](\d{2}):(\d{2}):(\d{2})(\.\d{1,12})?"
    r"(?:([Zz])|([+-])(\d{2}):?(\d{2}))"
)
_MAX_LENGTH = 64


def parseTime(text: object, what: str = "time") -> int:
    """
    Read an RFC 3339 date-time as whole UNIX seconds (fractions are dropped).

    @param what: names the value in the error message, e.g. C{"valid_from"}.
    @raise ValueError: with a message naming C{what}, if C{text} is not a
        zoned RFC 3339 date-time.
    """
    if not isinstance(text, str) or len(text) > _MAX_LENGTH:
        raise ValueError(f"{what} is not an RFC 3339 time")
    match = _RFC3339.fullmatch(text.strip())
    if match is None:
        raise ValueError(
            f"{what} {text!r} is not an RFC 3339 time with a zone "
            "(e.g. 2026-05-01T12:00:00Z or 2026-05-01T14:00:00+02:00)"
        )
    year, month, day, hour, minute, second = (int(g) for g in match.group(1, 2, 3, 4, 5, 6))
    leap = second == 60
    if leap:
        # A leap second names the instant just before the next minute.
        second = 59
    offset = 0
    if match.group(9):
        oh, om = int(match.group(10)), int(match.group(11))
        if oh > 23 or om > 59:
            raise ValueError(f"{what} {text!r} has an invalid zone offset")
        offset = (oh * 60 + om) * (1 if match.group(9) == "+" else -1)
    try:
        when = datetime(
            year, month, day, hour, minute, second,
            tzinfo=timezone(timedelta(minutes=offset)),
        )
    except ValueError:
        raise ValueError(f"{what} {text!r} is not a valid calendar time") from None
    return int(when.timestamp()) + (1 if leap else 0)


def formatTime(when: int | float) -> str:
    """
    UNIX seconds as C{YYYY-MM-DDTHH:MM:SSZ} (fractions are dropped).
    """
    return datetime.fromtimestamp(int(when), timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
