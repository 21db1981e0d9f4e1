"""
The JSON log format (one object per line: ISO-8601 time, level, logger,
message and the event's fields), and --version of both programs.
"""

from __future__ import annotations

import io
import json
import subprocess
import sys

from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from am.ctl.logs import eventAsJSON, isoTime, jsonLineObserver, marvinVersion


class JSONTests(SynchronousTestCase):
    def test_accessLine(self):
        """
        A REST access event becomes one line with the standard keys and its fields.
        """
        stream = io.StringIO()
        log = Logger(namespace="rest_compat.resource", observer=jsonLineObserver(stream))
        log.info(
            "{method} {path} {user} {status} {duration:.1f} ms", face="rest", method="GET", path="/v1/resources",
            route="resources", user="alice#2", status=200, duration=1.25, requestId="abc123", logger="clash",
        )
        line = stream.getvalue()
        self.assertTrue(line.endswith("\n"))
        self.assertEqual(line.count("\n"), 1)
        record = json.loads(line)
        self.assertRegex(record.pop("time"), r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
        self.assertEqual(record, {
            "level": "info", "logger": "rest_compat.resource", "message": "GET /v1/resources alice#2 200 1.2 ms",
            "face": "rest", "method": "GET", "path": "/v1/resources", "route": "resources", "user": "alice#2",
            "status": 200, "duration": 1.25, "requestId": "abc123", "field_logger": "clash",
        })

    def test_failureAndOddValues(self):
        """
        A failure adds its traceback; values JSON cannot hold become text.
        """
        try:
            1 / 0
        except ZeroDivisionError:
            failure = Failure()
        record = json.loads(eventAsJSON({
            "log_format": "broke {thing}", "log_level": None, "log_namespace": "x", "log_time": 0.0,
            "log_failure": failure, "thing": object, "isError": 1,
        }))
        self.assertEqual((record["level"], record["time"]), ("error", "1970-01-01T00:00:00.000Z"))
        self.assertIn("ZeroDivisionError", record["traceback"])
        self.assertEqual(record["thing"], "<class 'object'>")

    def test_isoTime(self):
        self.assertEqual(isoTime(1764947244.1209), "2025-12-05T15:07:24.120Z")


class VersionTests(SynchronousTestCase):
    def test_version(self):
        """
        Both programs print Marvin's version, not Twisted's.
        """
        number = marvinVersion()
        self.assertRegex(number, r"^\d+\.\d+")
        for module, name in (("am.ctl.service", "marvinctld"), ("node.tap", "marvind")):
            out = subprocess.run(
                [sys.executable, "-c", f"import {module} as m; m.main(['--version'])"],
                capture_output=True, text=True, timeout=60,
            )
            self.assertEqual((out.returncode, out.stdout), (0, f"{name} (Marvin) {number}\n"), out.stderr)
