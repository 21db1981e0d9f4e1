# -*- test-case-name: tests.test_ctl_logs -*-
"""
Where marvinctld's log goes and in what form: Twisted's plain text lines by
default (the same text, formatted more cheaply by L{am.ctl.logformat}), or
with C{log.format: json} one JSON object per line that log shippers read
without a Twisted parser::

    {"time": "2026-12-05T15:07:24.120Z", "level": "info", "logger": "rest_compat.resource.RESTApplication",
     "message": "POST /v1/experiments alice#2 201 3.1 ms", "method": "POST", "route": "experiments",
     "status": 201, "duration": 3.1, "user": "alice#2", "requestId": "4f1c2a9b0e7d", "face": "rest"}

Besides C{time}, C{level}, C{logger} and C{message}, every field the event
carries is a key of its own (a field named like one of those four gets a
C{field_} prefix); a failure adds C{traceback}.
"""

from __future__ import annotations

import datetime
import json
import sys
from typing import Any, Optional, TextIO

from twisted.logger import (
    FileLogObserver,
    FilteringLogObserver,
    ILogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
)
from zope.interface import provider

from am.ctl.config import LogConfig
from am.ctl.logformat import classicLineFormatter, messageOf

_RESERVED = {"time", "level", "logger", "message"}
# Twisted's own bookkeeping and the legacy log's keys: not fields.
_INTERNAL = {"format", "isError", "system", "message", "time", "failure", "why", "log_trace"}


def isoTime(seconds: float) -> str:
    """
    UTC ISO-8601 with milliseconds and a C{Z}.
    """
    moment = datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _plain(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    return str(value)


def eventAsJSON(event: dict[str, Any]) -> str:
    """
    One event as one line of JSON (with its newline).
    """
    level = event.get("log_level")
    record: dict[str, Any] = {
        "time": isoTime(event.get("log_time") or 0.0),
        "level": level.name if isinstance(level, type(LogLevel.info)) else ("error" if event.get("isError") else "info"),
        "logger": event.get("log_namespace") or event.get("system") or "-",
        "message": messageOf(event),
    }
    for key, value in event.items():
        if key.startswith("log_") or key in _INTERNAL:
            continue
        name = f"field_{key}" if key in _RESERVED else key
        record[name] = _plain(value)
    failure = event.get("log_failure")
    if failure is not None:
        try:
            record["traceback"] = failure.getTraceback()
        except Exception:
            record["traceback"] = repr(failure)
    return json.dumps(record, ensure_ascii=False) + "\n"


def jsonLineObserver(stream: TextIO) -> ILogObserver:
    """
    An observer writing L{eventAsJSON} lines to C{stream}.
    """
    return FileLogObserver(stream, eventAsJSON)


def workerObserver(observer: ILogObserver, worker: int) -> ILogObserver:
    """
    C{observer} with each event marked by the process that logged it
    (C{workers: N}, L{am.ctl.workers}; 0 is the main process): a C{worker}
    field, and in text lines C{[namespace#level w1]}.
    """

    @provider(ILogObserver)
    def observe(event: dict[str, Any]) -> None:
        event = dict(event, worker=worker)
        system = event.get("log_system")
        if system is None:
            level = event.get("log_level")
            system = f"{event.get('log_namespace', '-')}#{getattr(level, 'name', '-')}"
        event["log_system"] = f"{system} w{worker}"
        observer(event)

    return observe


def textLineObserver(stream: TextIO) -> ILogObserver:
    """
    An observer writing Twisted's classic text lines to C{stream}, exactly as
    L{twisted.logger.textFileLogObserver} does, formatted more cheaply
    (L{am.ctl.logformat}).
    """
    return FileLogObserver(stream, classicLineFormatter())


def startLogging(config: LogConfig, stdout: Optional[TextIO] = None, worker: Optional[int] = None) -> Any:
    """
    Send the global log to a file or standard output, in C{config.format},
    filtered by level, each event marked with C{worker} when one is given.
    (Under twistd, twistd's own log options apply instead.)
    """
    stream = stdout or sys.stdout
    if config.file != "-":
        stream = open(config.file, "a", encoding="utf-8", buffering=1)
    observer = jsonLineObserver(stream) if config.format == "json" else textLineObserver(stream)
    if worker is not None:
        observer = workerObserver(observer, worker)
    predicate = LogLevelFilterPredicate(defaultLogLevel=LogLevel.levelWithName(config.level))
    filtered = FilteringLogObserver(observer, [predicate])
    globalLogBeginner.beginLoggingTo([filtered], redirectStandardIO=False)
    return filtered


def marvinVersion() -> str:
    """
    The installed distribution's version, or C{unknown} when running from a
    tree that was never installed.
    """
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("marvin")
    except PackageNotFoundError:
        return "unknown"
