"""
L{am.ctl.logformat} writes exactly what Twisted's text log writes: the
message of every kind of event (simple fields, specs, conversions, the
shapes left to Twisted, broken events) and the classic line around it.
"""

from __future__ import annotations

import io
import re

from twisted.logger import (
    LogLevel,
    Logger,
    formatEvent,
    textFileLogObserver,
)
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from am.ctl import logformat
from am.ctl.logformat import classicLineFormatter, messageOf
from am.ctl.logs import textLineObserver


class _Thing:
    name = "thing"

    def __repr__(self) -> str:
        return "<Thing>"

    def call(self) -> str:
        return "called"


class _Broken:
    def __str__(self) -> str:
        raise RuntimeError("no text")

    __repr__ = __str__


def _failure() -> Failure:
    try:
        1 / 0
    except ZeroDivisionError:
        return Failure()
    raise AssertionError("unreachable")


# (format, fields): every shape a log call may take.
EVENTS: list[dict] = [
    {"log_format": "{method} {path} {user} {status} {duration:.1f} ms", "method": "PUT", "path": "/v1/resources/3",
     "user": "Node 3#5", "status": 200, "duration": 0.04999},
    {"log_format": "plain text, no fields"},
    {"log_format": "{a!r} {a!s} {a!a} {b:>8} {c:08.3f} {{literal}}", "a": "é\n'x'", "b": "right", "c": 3.14159},
    {"log_format": "{thing.name} {items[0]} {thing.call()} {now()}", "thing": _Thing(), "items": [7],
     "now": lambda: "later"},
    {"log_format": "{missing} here"},
    {"log_format": "{bad}", "bad": _Broken()},
    {"log_format": "{n:{width}}", "n": 5, "width": 4},
    {"log_format": "{0} positional {}", "0": "zero"},
    {"log_format": "unbalanced {"},
    {"log_format": b"bytes {x}", "x": 1},
    {"log_format": 12},
    {"log_format": None},
    {},
    {"log_format": ""},
    {"log_format": "two\nlines {x}", "x": "and\nmore"},
    {"log_format": "{x:d}", "x": "not a number"},
    {"log_format": "{x}", "x": None, "log_flattened": {"x!:": "flat"}},
]


class MessageTests(SynchronousTestCase):
    def test_sameAsTwisted(self) -> None:
        """
        Every event's message is what L{formatEvent} says, twice in a row
        (the second time from the remembered parse).
        """
        for event in EVENTS:
            for _ in range(2):
                self.assertEqual(messageOf(dict(event)), formatEvent(dict(event)), event)

    def test_remembersFewFormats(self) -> None:
        """
        The parsed formats are bounded: past the limit they are forgotten,
        and still formatted the same.
        """
        self.patch(logformat, "_LIMIT", 3)
        self.patch(logformat, "_parsed", {})
        for n in range(10):
            event = {"log_format": f"{n} {{x}}", "x": n}
            self.assertEqual(messageOf(event), formatEvent(event))
        self.assertLessEqual(len(logformat._parsed), 3)


class LineTests(SynchronousTestCase):
    def lines(self, events: list[dict]) -> tuple[str, str]:
        ours, theirs = io.StringIO(), io.StringIO()
        mine, twisted = textLineObserver(ours), textFileLogObserver(theirs)
        for event in events:
            mine(dict(event))
            twisted(dict(event))
        return ours.getvalue(), theirs.getvalue()

    def test_sameLines(self) -> None:
        """
        The classic line (timestamp, system, message, continuation lines
        indented, nothing for an empty message) is Twisted's, whatever the
        time, namespace, level, system or failure.
        """
        events = []
        for when in (1764947244.0, 1764947244.25, 1764947244.9999996, 1764947245.5, None, 0.0):
            for event in EVENTS:
                events.append(dict(event, log_time=when, log_namespace="rest_compat.resource",
                                   log_level=LogLevel.info))
        events += [
            dict(EVENTS[0], log_time=1.5, log_system="custom"),
            dict(EVENTS[0], log_time=1.5, log_level=LogLevel.warn),
            dict(EVENTS[0], log_time=1.5),
            dict(EVENTS[0], log_time=1.5, log_system=_Broken()),
            {"log_format": "failed {x}", "x": 1, "log_failure": _failure(), "log_time": 2.0,
             "log_namespace": "n", "log_level": LogLevel.error},
            {"log_failure": _failure(), "log_time": 2.0},
        ]
        ours, theirs = self.lines(events)
        self.assertEqual(ours, theirs)
        self.assertIn("PUT /v1/resources/3 Node 3#5 200 0.0 ms", ours)

    def test_throughALogger(self) -> None:
        """
        Events a L{Logger} emits come out the same.
        """
        ours, theirs = io.StringIO(), io.StringIO()
        mine, twisted = textLineObserver(ours), textFileLogObserver(theirs)
        for observer in (mine, twisted):
            log = Logger(namespace="marvinctld", observer=observer)
            log.info("{method} {path} {status}", method="GET", path="/v1/version", status=200)
            log.warn("careful: {what!r}", what="this")
        # The timestamps are of two calls a moment apart: compared by shape.
        stamp = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d{4} ", re.M)
        self.assertEqual(len(stamp.findall(ours.getvalue())), 2)
        self.assertEqual(stamp.sub("", ours.getvalue()), stamp.sub("", theirs.getvalue()))

    def test_oneFormatterPerObserver(self) -> None:
        """
        Each formatter remembers its own last second.
        """
        first, second = classicLineFormatter(), classicLineFormatter()
        event = {"log_format": "x", "log_time": 1764947244.0, "log_system": "s"}
        self.assertEqual(first(event), second(event))
        later = dict(event, log_time=1764947300.0)
        self.assertNotEqual(first(later), first(event))
