"""
The command line's pure parts: human times, durations and sizes; tables;
settings from file, environment and flags; the client-side node filter; and
the polling of C{watch} (with a recorded sleep, no timers).
"""

from __future__ import annotations

from datetime import datetime

import pytest
from dateutil import tz

from cli.config import ConfigError, Settings, loadSettings
from cli.filters import FilterError, matches
from cli.tables import renderTable
from cli.times import (
    TimeError, formatDuration, formatSize, formatTime, parseDuration, parseSize, parseWhen,
)
from cli.watch import HeldFetch, Snapshot, follow

ZONE = tz.gettz("Europe/Stockholm")
NOW = datetime(2026, 12, 5, 16, 10, 0, tzinfo=ZONE)  # 15:10 UTC
T = int(NOW.timestamp())


def local(*fields):
    return int(datetime(*fields, tzinfo=ZONE).timestamp())


@pytest.mark.parametrize("text, expected", [
    ("now", None), ("ASAP", None),
    ("in 10 min", T + 600), ("in 1h30m", T + 5400), ("+2h", T + 7200), ("10 minutes from now", T + 600),
    ("today 18:00", local(2026, 12, 5, 18, 0)), ("tomorrow", local(2026, 12, 6, 0, 0)),
    ("tomorrow 9:30", local(2026, 12, 6, 9, 30)), ("tomorrow at 9pm", local(2026, 12, 6, 21, 0)),
    ("2026-12-24T10:00", local(2026, 12, 24, 10, 0)),
    ("2026-12-24 10:00", local(2026, 12, 24, 10, 0)),
    ("2026-12-24T10:00Z", local(2026, 12, 24, 11, 0)),
    ("2026-12-24T10:00+05:00", local(2026, 12, 24, 6, 0)),
    ("Dec 24 10:00", local(2026, 12, 24, 10, 0)),
    ("18:30", local(2026, 12, 5, 18, 30)),
    ("9:00", local(2026, 12, 6, 9, 0)),  # already past today: tomorrow, as at(1)
    ("1796484000", 1796484000),
    # summer time is the zone's own: 10:00 in July is UTC+2
    ("2027-07-01T10:00", int(datetime(2027, 7, 1, 8, 0, tzinfo=tz.UTC).timestamp())),
])
def test_parseWhen(text, expected):
    assert parseWhen(text, NOW) == expected


@pytest.mark.parametrize("text", ["", "blah", "in 3 parsecs", "2026-13-01", "10:00 blah", "in", "tomorrow at noonish"])
def test_parseWhenRefuses(text):
    with pytest.raises(TimeError):
        parseWhen(text, NOW)


@pytest.mark.parametrize("text, seconds", [
    ("30m", 1800), ("1h30m", 5400), ("1h 30 min", 5400), ("1h, 30m", 5400), ("2 hours", 7200),
    ("1.5h", 5400), ("1d", 86400), ("1w", 604800), ("90s", 90), ("600", 600), ("1:30", 5400),
    ("1:30:15", 5415), ("45 Minutes", 2700),
])
def test_parseDuration(text, seconds):
    assert parseDuration(text) == seconds


@pytest.mark.parametrize("text", ["", "m", "0m", "3 parsecs", "1:75", "-5m", "5m later", "10 20"])
def test_parseDurationRefuses(text):
    with pytest.raises(TimeError):
        parseDuration(text)


@pytest.mark.parametrize("text, count", [
    ("12", 12), ("500M", 5 * 10**8), ("100G", 10**11), ("100GB", 10**11), ("1.5T", 15 * 10**11),
    ("2GiB", 2 * 2**30), ("3kb", 3000), ("64 MiB", 64 * 2**20),
])
def test_parseSize(text, count):
    assert parseSize(text) == count


def test_parseSizeRefuses():
    for text in ("", "x", "5 Q", "-1G"):
        with pytest.raises(TimeError):
            parseSize(text)


def test_formatting():
    assert formatTime(local(2026, 12, 24, 10, 0), ZONE) == "2026-12-24 10:00 CET"
    assert formatTime(local(2027, 7, 1, 10, 0, 5), ZONE) == "2027-07-01 10:00:05 CEST"
    assert formatTime(-1, ZONE) == "queued"
    assert [formatDuration(s) for s in (0, 59, 90, 5400, 86400 * 2, 90061)] == ["0s", "59s", "1m30s", "1h30m", "2d", "1d1h1m1s"]
    assert [formatSize(n) for n in (0, 999, 10**11, 2**31)] == ["0 B", "999 B", "100 GB", "2.147 GB"]


def test_table():
    text = renderTable(["ID", "NAME", "STATUS"], [[1, "alpha", "defined"], [12, "b\nc", None], [3, "", True]])
    assert text == (
        "ID  NAME   STATUS\n"
        " 1  alpha  defined\n"
        "12  b c    -\n"
        " 3  -      yes\n"
    )
    assert renderTable(["A"], [], empty="(no nodes)") == "(no nodes)\n"
    # a column mixing numbers and text is left-aligned
    assert renderTable(["ID"], [[1], ["x12"]]) == "ID\n1\nx12\n"


def test_settingsPrecedence(tmp_path):
    for name in ("c.pem", "k.pem", "ca.pem", "other.pem"):
        (tmp_path / name).write_text("x")
    config = tmp_path / "cli.yaml"
    config.write_text("url: https://file.example\ncert: c.pem\nkey: k.pem\nca: ca.pem\ntimeout: 5\n")
    fromFile = loadSettings({"config": str(config)}, {})
    assert fromFile == Settings(url="https://file.example", cert=str(tmp_path / "c.pem"),
                                key=str(tmp_path / "k.pem"), ca=str(tmp_path / "ca.pem"), timeout=5.0)
    environ = {"MARVIN_CONFIG": str(config), "MARVIN_URL": "https://env.example", "MARVIN_CA": str(tmp_path / "other.pem")}
    fromEnv = loadSettings({}, environ)
    assert (fromEnv.url, fromEnv.ca, fromEnv.cert) == ("https://env.example", str(tmp_path / "other.pem"), str(tmp_path / "c.pem"))
    fromFlags = loadSettings({"url": "https://flag.example"}, environ)
    assert fromFlags.url == "https://flag.example"
    # the default file under XDG_CONFIG_HOME
    (tmp_path / "marvin").mkdir()
    (tmp_path / "marvin" / "cli.yaml").write_text("url: https://default.example\n")
    assert loadSettings({}, {"XDG_CONFIG_HOME": str(tmp_path)}).url == "https://default.example"


@pytest.mark.parametrize("content, flags, message", [
    (None, {}, "no controller URL"),
    ("url: ftp://x\n", {}, "must start with https://"),
    ("- a\n", {}, "must be a mapping"),
    ("url: https://x\nproxy: y\n", {}, "unknown key 'proxy'"),
    ("url: https://x\ncert: missing.pem\n", {}, "cert: no such file"),
    ("url: https://x\ntimeout: soon\n", {}, "timeout: must be a number"),
    ("url: [\n", {}, "not YAML"),
])
def test_settingsErrors(tmp_path, content, flags, message):
    path = tmp_path / "cli.yaml"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        loadSettings(flags, {"XDG_CONFIG_HOME": str(tmp_path / "none")} if content is None else {"MARVIN_CONFIG": str(path)})
    # an explicitly named file that is missing
    with pytest.raises(ConfigError, match="no such file"):
        loadSettings({"config": str(tmp_path / "absent.yaml")}, {})


def test_filter():
    node = {"id": 1, "hostname": "n1", "type": "testing", "country": "se", "address": "fe80::1"}
    assert matches("", node) and matches(" , ", node)
    assert matches("type:testing", node) and not matches("type:deployed", node)
    assert matches("type:deployed|type:testing", node)
    assert matches("type:testing, -country:no", node) and not matches("-country:se|country:no", node)
    assert matches("address:fe80::1", node)
    assert not matches("model:apu2d", node)
    assert not matches("Type:testing", node)  # case-sensitive
    for bad in ("type", "-", "a:b|-c:d", ":x", "a:"):
        with pytest.raises(FilterError):
            matches(bad, node)


def experiment(*statuses):
    return {"schedules": {str(i + 1): {"nodeid": i + 1, "status": s} for i, s in enumerate(statuses)}}


def test_followPolitely():
    """
    A snapshot per change; the wait grows by half while nothing changes (up
    to the cap) and falls back after a change; it stops when all are final.
    """
    answers = iter([
        experiment("defined", "defined"),
        experiment("defined", "defined"), experiment("defined", "defined"), experiment("defined", "defined"),
        experiment("defined", "defined"), experiment("deployed", "defined"),
        experiment("started", "failed; no image"),
        experiment("finished", "failed; no image"),
    ])
    sleeps = []
    seen = [s.progress(width=4) for s in follow(lambda: next(answers), interval=10, maxInterval=30, sleep=sleeps.append)]
    assert sleeps == [10, 15, 22.5, 30, 30, 10, 10]
    assert seen == [
        "[----] 0/2 final  defined 2",
        "[----] 0/2 final  defined 1, deployed 1",
        "[##--] 1/2 final  failed 1, started 1",
        "[####] 2/2 final  failed 1, finished 1",
    ]


def test_followEmptyAndDone():
    sleeps = []
    assert [s.done for s in follow(lambda: experiment(), sleep=sleeps.append)] == [True]
    assert [s.final for s in follow(lambda: experiment("canceled", "aborted"), sleep=sleeps.append)] == [2]
    assert sleeps == []
    assert Snapshot(experiment("stopped")).progress(width=2) == "[##] 1/1 final  stopped 1"


def test_followHeld():
    """
    With a server-side wait, no sleep: each held answer is compared; a held
    read the server does not support (C{None}) falls back to polling.
    """
    held = iter([experiment("defined"), experiment("deployed"), experiment("finished")])
    sleeps = []
    seen = [s.progress(width=2) for s in follow(lambda: experiment("defined"), sleep=sleeps.append, held=lambda: next(held))]
    assert sleeps == []
    assert seen == ["[--] 0/1 final  defined 1", "[--] 0/1 final  deployed 1", "[##] 1/1 final  finished 1"]
    polled = iter([experiment("defined"), experiment("finished")])
    seen = [s.final for s in follow(lambda: next(polled), interval=5, sleep=sleeps.append, held=lambda: None)]
    assert (seen, sleeps) == ([0, 1], [5])


def test_heldFetchFollowsTheState():
    calls = []

    def exchange(method, path, query=None):
        calls.append(query)
        if query is None:
            return {"schedules": {}}, {"x-marvin-state": "s1"}
        return {"schedules": {}}, {"x-marvin-state": "s2", "x-marvin-wait": "met"}

    reads = HeldFetch(exchange, "experiments/4/schedules", 50)
    reads.fetch()
    reads.held()
    reads.held()
    assert calls == [None, {"wait": "change", "from": "s1", "timeout": 50}, {"wait": "change", "from": "s2", "timeout": 50}]
    old = HeldFetch(lambda method, path, query=None: ({}, {}), "x", 50)
    old.fetch()
    assert old.held() is None
