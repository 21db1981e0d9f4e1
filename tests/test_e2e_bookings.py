"""
End to end over real sockets (issue 16): the cost preview, per-occurrence
control and self-healing bookings against a real marvinctld on SQLite.
Waits are on conditions with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import time

from tests.test_e2e_ctl import Client, pki, start, writeConfig  # noqa: F401 (pki is a fixture)

ALICE = "a1" * 20
IMAGE = "docker.io/alice/ping"
FAST = {"require_heartbeat": False, "maintenance_windows": [], "min_delay": 0, "min_runtime": 1, "padding": 0,
        "recurrence_minimum": 60, "recurrence_step": 60}


def controller(tmp_path, pki, **overrides):  # noqa: F811
    process, ports = start(writeConfig(str(tmp_path), pki, scheduling=FAST, **overrides))
    client = Client(ports, pki)
    status, body = client.call("POST", "/v1/users", who="admin", form={"name": "alice", "ssl": ALICE, "role": "user"})
    assert status == 201, body
    return process, client


def test_costPreview(pki, tmp_path):  # noqa: F811
    """
    A dry run answers the charge per quota, what would remain and the
    resets, and books nothing; a refusal for quota names the quota, what is
    missing and the reset.
    """
    process, client = controller(tmp_path, pki)
    try:
        now = int(time.time())
        booking = {"name": "p", "script": IMAGE, "nodecount": 2, "nodetypes": "", "start": now + 3600,
                   "duration": 600, "dryrun": True, "options": {"storage": 1000}}
        status, body = client.call("POST", "/v1/experiments", fingerprint=ALICE, body=booking)
        assert status == 200, body
        assert body["charged"] == {"time": 1200, "data": 0, "storage": 2000}
        assert body["remaining"]["time"] == 100 * 86400 - 1200
        assert body["resets"]["time"] > now
        status, body = client.call("GET", "/v1/experiments", fingerprint=ALICE)
        assert (status, body) == (200, [])
        status, body = client.call("GET", "/v1/users", fingerprint=ALICE)
        userid = body[0]["id"]
        status, body = client.call("PUT", f"/v1/users/{userid}", who="admin", form={"time": "1000"})
        assert status == 200, body
        status, body = client.call("POST", "/v1/experiments", fingerprint=ALICE, body=booking)
        assert status == 409, body
        assert (body["quota"], body["missing"]) == ("time", 200), body
        assert body["resets"] > now
        assert process.stop() == 0
    finally:
        process.kill()
