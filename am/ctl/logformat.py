# -*- test-case-name: tests.test_ctl_logformat -*-
"""
Twisted's log text, made cheaper: the same characters as
L{twisted.logger.formatEvent} and L{twisted.logger.formatEventAsClassicLogText}
(the default text log), for a fraction of the CPU.

marvinctld writes one line per request; Twisted formats it with
C{string.Formatter} (a Python-level parser run again for every line) and
works out the local time zone for every timestamp, about a tenth of the CPU
of a REST heartbeat. Here a format string is parsed once and remembered,
and a timestamp is worked out once per second. Only the simple shape is
done here -- fields named by a plain identifier, with an optional
conversion and a format spec without nested fields -- and everything else
(attribute and index access, C{()} calls, flattened events, failures, any
error) goes to Twisted's own functions, so no line can differ.
"""

from __future__ import annotations

import string
from typing import Any, Callable, Optional

from twisted.logger import formatEvent, formatEventAsClassicLogText, formatTime, timeFormatRFC3339

# A parsed format: (literal text, field name or None, spec, conversion) per part.
_Parsed = tuple[tuple[str, Optional[str], str, Optional[str]], ...]

_parser = string.Formatter()
_CONVERT: dict[str, Callable[[Any], str]] = {"s": str, "r": repr, "a": ascii}
# Formats remembered (formats are the constant first arguments of log calls:
# few; bounded all the same).
_LIMIT = 1000
_parsed: dict[str, Optional[_Parsed]] = {}


def _parse(text: str) -> Optional[_Parsed]:
    """
    C{text} parsed, or C{None} when it has a part this module leaves to Twisted.
    """
    try:
        parts = tuple(_parser.parse(text))
    except ValueError:
        return None
    for _, field, spec, conversion in parts:
        if field is None:
            continue
        if not field.isidentifier() or "{" in (spec or ""):
            return None
        if conversion is not None and conversion not in _CONVERT:
            return None
    return tuple((literal, field, spec or "", conversion) for literal, field, spec, conversion in parts)


def _quick(event: dict[str, Any]) -> Optional[str]:
    """
    The event's message, or C{None} when only Twisted can say what it is.
    """
    if "log_flattened" in event:
        return None
    text = event.get("log_format")
    if text is None:
        return ""
    if type(text) is not str:
        return None
    if text in _parsed:
        parsed = _parsed[text]
    else:
        if len(_parsed) >= _LIMIT:
            _parsed.clear()
        parsed = _parsed[text] = _parse(text)
    if parsed is None:
        return None
    pieces = []
    try:
        for literal, field, spec, conversion in parsed:
            pieces.append(literal)
            if field is not None:
                value = event[field]
                if conversion is not None:
                    value = _CONVERT[conversion](value)
                pieces.append(format(value, spec))
    except Exception:
        return None  # Twisted says how it failed
    return "".join(pieces)


def messageOf(event: dict[str, Any]) -> str:
    """
    What L{twisted.logger.formatEvent} returns for C{event}.
    """
    message = _quick(event)
    return formatEvent(event) if message is None else message


class _Stamps:
    """
    Twisted's RFC 3339 timestamps (local time, whole seconds), one worked out per second.
    """

    def __init__(self) -> None:
        self._second: Optional[int] = None
        self._text = ""

    def __call__(self, when: Optional[float]) -> str:
        if when is None:
            return formatTime(when, timeFormatRFC3339)
        second = int(when // 1)
        if when - second >= 0.9999995:  # datetime rounds this up into the next second
            return formatTime(when, timeFormatRFC3339)
        if second != self._second:
            self._text = formatTime(second, timeFormatRFC3339)
            self._second = second
        return self._text


def _system(event: dict[str, Any]) -> str:
    system = event.get("log_system")
    if system is None:
        level = event.get("log_level")
        return f"{event.get('log_namespace', '-')}#{'-' if level is None else level.name}"
    try:
        return str(system)
    except Exception:
        return "UNFORMATTABLE"


def classicLineFormatter() -> Any:
    """
    A formatter for L{twisted.logger.FileLogObserver} writing what
    L{twisted.logger.textFileLogObserver} writes (one per observer: each
    remembers its last timestamp).
    """
    stamps = _Stamps()

    def formatLine(event: dict[str, Any]) -> Optional[str]:
        message = None if "log_failure" in event else _quick(event)
        if message is None:
            return formatEventAsClassicLogText(event, formatTime=stamps)
        if not message:
            return None
        line = f"{stamps(event.get('log_time'))} [{_system(event)}] {message}"
        return line.replace("\n", "\n\t") + "\n"

    return formatLine
