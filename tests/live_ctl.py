"""
A real marvinctld process on SQLite for wire-level tests: plain HTTP (as the
trusted proxy on loopback) and TLS listeners on free ports, the demo
inventory, a bootstrap admin, and a user made through the API.
"""

from __future__ import annotations

import os
import time
from typing import Any

from am.devtools.demopki import DEMO_NODES
from tests.test_e2e_ctl import START_DEADLINE, Client, Process, writeConfig

USER = "a1" * 20


class LiveController:
    """
    One started controller; C{call} as in L{Client.call}.
    """

    def __init__(self, tmp: str, pki: Any, **overrides: Any) -> None:
        self.tmp, self.pki, self.overrides = tmp, pki, overrides
        self.path = writeConfig(tmp, pki, **overrides)
        self.start()

    def start(self) -> None:
        self.process = Process(["--config", self.path])
        self.ports = self.process.ports()
        self.client = Client(self.ports, self.pki)
        deadline = time.monotonic() + START_DEADLINE
        while True:
            status, body = self.call("GET", "/v1/resources", who="admin")
            if status == 200 and len(body) == len(DEMO_NODES):
                break
            assert time.monotonic() < deadline, (status, body)

    def ensureUser(self, fingerprint: str = USER, name: str = "alice") -> None:
        status, body = self.call("POST", "/v1/users", who="admin", form={"name": name, "ssl": fingerprint, "role": "user"})
        assert status in (201, 409), body

    def call(self, *args: Any, **kwargs: Any) -> Any:
        return self.client.call(*args, **kwargs)

    def logged(self, pattern: str) -> Any:
        """
        Wait for a log line matching C{pattern} (the controller logs to stdout).
        """
        return self.process.waitFor(pattern, deadline=30)

    def stop(self) -> None:
        self.process.stop()


def url(live: LiveController) -> str:
    return f"http://127.0.0.1:{live.ports['http']}"


__all__ = ["LiveController", "USER", "url", "os"]
