# -*- test-case-name: tests.test_cli_units -*-
"""
Human times, durations and sizes on the command line, and their display in
the user's local time zone.

The API speaks epoch seconds; people say C{"in 10 min"}, C{"tomorrow 9:00"},
C{"30m"} or C{"1h30m"}. Everything here is pure (the current time and time
zone are parameters) so it can be tested exactly.
"""

from __future__ import annotations

import re
from datetime import datetime, time as dtime, timedelta, tzinfo
from typing import Optional

from dateutil import parser as dateparser
from dateutil import tz as dateutiltz

__all__ = [
    "TimeError", "parseDuration", "parseWhen", "parseSize",
    "formatDuration", "formatSize", "formatTime", "localZone",
]


class TimeError(ValueError):
    """
    A time, duration or size the command line could not read; the message
    says what was expected.
    """


_UNITS = {
    "s": 1, "sec": 1, "secs": 1, "second": 1, "seconds": 1,
    "m": 60, "min": 60, "mins": 60, "minute": 60, "minutes": 60,
    "h": 3600, "hr": 3600, "hrs": 3600, "hour": 3600, "hours": 3600,
    "d": 86400, "day": 86400, "days": 86400,
    "w": 604800, "week": 604800, "weeks": 604800,
}
_PART = re.compile(r"\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*,?", re.IGNORECASE)
_CLOCK = re.compile(r"^(\d+):([0-5]\d)(?::([0-5]\d))?$")


def parseDuration(text: str) -> int:
    """
    Seconds in C{text}: C{"30m"}, C{"1h30m"}, C{"1h 30 min"}, C{"2 hours"},
    C{"1.5h"}, C{"1d"}, C{"1:30"} (hours:minutes), C{"1:30:15"}; a bare
    number is seconds, as in the API.

    @raise TimeError: for anything else, or a duration of zero.
    """
    raw = text.strip()
    clock = _CLOCK.match(raw)
    if clock:
        hours, minutes, seconds = clock.groups()
        total: float = int(hours) * 3600 + int(minutes) * 60 + int(seconds or 0)
    else:
        total, position, parts = 0.0, 0, 0
        while position < len(raw):
            match = _PART.match(raw, position)
            if not match or match.end() == position:
                break
            number, unit = match.groups()
            if unit.lower() not in _UNITS and not (unit == "" and parts == 0 and match.end() == len(raw)):
                raise TimeError(f"not a duration: {text!r} (unknown unit {unit!r}; try 30m, 1h30m, 2 hours)")
            total += float(number) * _UNITS.get(unit.lower(), 1)
            position, parts = match.end(), parts + 1
        if parts == 0 or position != len(raw):
            raise TimeError(f"not a duration: {text!r} (try 30m, 1h30m, 2 hours, 1:30)")
    seconds = int(round(total))
    if seconds <= 0:
        raise TimeError(f"not a duration: {text!r} (must be more than zero)")
    return seconds


_RELATIVE = re.compile(r"^(?:in\s+|\+\s*)(.+?)(?:\s+from\s+now)?$", re.IGNORECASE)
_DAYWORD = re.compile(r"^(today|tomorrow)(?:\s+(?:at\s+)?(.+))?$", re.IGNORECASE)


def parseWhen(text: str, now: datetime) -> Optional[int]:
    """
    Epoch seconds for C{text}, read relative to C{now} (an aware datetime
    in the user's zone), or C{None} for C{"now"}/C{"asap"} (the API's
    "as soon as possible").

    Accepted: C{"now"}, C{"asap"}; C{"in 10 min"}, C{"+2h"}, C{"10 min from
    now"}; C{"today 18:00"}, C{"tomorrow"}, C{"tomorrow 9:30"}; epoch
    seconds; and anything dateutil reads (ISO 8601 C{"2026-12-24T10:00"},
    C{"Dec 24 10:00"}, C{"14:30"}), in the user's zone unless it names one.
    A bare clock time already past today means tomorrow, as at(1) does.

    @raise TimeError: when none of these fit.
    """
    raw = " ".join(text.split())
    if not raw:
        raise TimeError("empty time")
    lowered = raw.lower()
    if lowered in ("now", "asap"):
        return None
    relative = _RELATIVE.match(raw) or re.match(r"^(.+?)\s+from\s+now$", raw, re.IGNORECASE)
    if relative:
        return int(now.timestamp()) + parseDuration(relative.group(1))
    if raw.isdigit() and len(raw) >= 9:
        return int(raw)
    zone = now.tzinfo
    day = _DAYWORD.match(raw)
    if day:
        date = now.date() + timedelta(days=1 if day.group(1).lower() == "tomorrow" else 0)
        clock = dtime(0, 0)
        if day.group(2):
            clock = _clock(day.group(2), text)
        return int(datetime.combine(date, clock, tzinfo=zone).timestamp())
    try:
        midnight = now.replace(hour=0, minute=0, second=0, microsecond=0, tzinfo=None)
        parsed = dateparser.parse(raw, default=midnight)
    except (ValueError, OverflowError):
        raise TimeError(
            f"not a time: {text!r} (try: now, \"in 10 min\", \"tomorrow 9:00\", 2026-12-24T10:00)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=zone)
    if _isClockOnly(raw) and parsed < now:
        parsed += timedelta(days=1)
    return int(parsed.timestamp())


def _clock(text: str, whole: str) -> dtime:
    try:
        parsed = dateparser.parse(text, default=datetime(2000, 1, 1))
    except (ValueError, OverflowError):
        raise TimeError(f"not a time of day in {whole!r}: {text!r}") from None
    return parsed.time()


def _isClockOnly(text: str) -> bool:
    return re.fullmatch(r"\d{1,2}(:\d\d){1,2}(\s*[ap]\.?m\.?)?|\d{1,2}\s*[ap]\.?m\.?", text.strip(), re.IGNORECASE) is not None


_SIZES = {"": 1, "b": 1, "k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parseSize(text: str) -> int:
    """
    Bytes in C{"500M"}, C{"100G"}, C{"1.5T"}, C{"2GiB"} or a bare number
    (decimal units, as the quotas are counted; C{KiB} and friends binary).

    @raise TimeError: for anything else.
    """
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgt]i?b?|b)?\s*", text, re.IGNORECASE)
    if not match:
        raise TimeError(f"not a size: {text!r} (try 500M, 100G, 2GiB)")
    number, unit = match.groups()
    unit = (unit or "").lower()
    if unit.endswith("b") and unit not in _SIZES:
        unit = unit[:-1]
    if unit.endswith("i"):
        unit += "b"
    return int(round(float(number) * _SIZES[unit]))


def localZone() -> tzinfo:
    """
    The user's zone: C{$TZ} when set, else the system's.
    """
    return dateutiltz.gettz() or dateutiltz.tzlocal()


def formatTime(epoch: int, zone: tzinfo) -> str:
    """
    C{"2026-12-05 16:10 CET"} for display; C{-1} (a queued task with no
    window yet) is C{"queued"}.
    """
    if epoch is None or epoch < 0:
        return "queued"
    moment = datetime.fromtimestamp(epoch, zone)
    name = moment.tzname() or ""
    text = moment.strftime("%Y-%m-%d %H:%M")
    if moment.second:
        text += moment.strftime(":%S")
    return f"{text} {name}".rstrip()


def formatDuration(seconds: int) -> str:
    """
    C{5400} is C{"1h30m"}; C{90} is C{"1m30s"}; C{2*86400} is C{"2d"}.
    """
    if seconds <= 0:
        return "0s"
    parts = []
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        count, seconds = divmod(seconds, size)
        if count:
            parts.append(f"{count}{unit}")
    return "".join(parts)


def formatSize(count: int) -> str:
    """
    C{10**11} is C{"100 GB"}; C{2**31} is C{"2.147 GB"} (decimal units, as quotas count).
    """
    for unit, size in (("TB", 10**12), ("GB", 10**9), ("MB", 10**6), ("kB", 10**3)):
        if count >= size:
            return f"{count / size:.4g} {unit}"
    return f"{count} B"
