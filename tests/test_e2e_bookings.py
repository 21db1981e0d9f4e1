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
    overrides.setdefault("scheduling", FAST)
    process, ports = start(writeConfig(str(tmp_path), pki, **overrides))
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


def test_occurrences(pki, tmp_path):  # noqa: F811
    """
    A recurring booking over the wire: listed under its series, one
    occurrence moved, one canceled, the rest canceled from a date on (the
    experiment then archived), with the time quota refunded.
    """
    process, client = controller(tmp_path, pki)
    try:
        now = int(time.time())
        start = now + 3600
        status, body = client.call("POST", "/v1/experiments", fingerprint=ALICE, body={
            "name": "r", "script": IMAGE, "nodecount": 1, "nodetypes": "", "start": start, "duration": 600,
            "options": {"recurrence": "simple", "period": 3600, "until": start + 2 * 3600 + 10}})
        assert status == 201, body
        base = f"/v1/experiments/{body['experiment']}/occurrences"
        status, body = client.call("GET", base, fingerprint=ALICE)
        assert status == 200, body
        assert [(o["occurrence"], o["start"]) for o in body["occurrences"]] == [
            (k, start + k * 3600) for k in range(3)]
        status, body = client.call("PUT", f"{base}/1", fingerprint=ALICE,
                                   body={"start": start + 3600 + 1200, "placement": "filter"})
        assert (status, body["start"], body["moved"]) == (200, start + 3600 + 1200, True), body
        status, body = client.call("DELETE", f"{base}/2", fingerprint=ALICE)
        assert (status, body["occurrences"], body["canceled"]) == (200, [2], 1), body
        status, users = client.call("GET", "/v1/users", fingerprint=ALICE)
        left = users[0]["quota_time"]
        status, body = client.call("DELETE", f"{base}?from=0", fingerprint=ALICE)
        assert (status, body["occurrences"], body["archived"]) == (200, [0, 1], True), body
        status, users = client.call("GET", "/v1/users", fingerprint=ALICE)
        assert users[0]["quota_time"] == left + 1200
        assert process.stop() == 0
    finally:
        process.kill()


def test_selfHealing(pki, tmp_path):  # noqa: F811
    """
    A self-healing booking whose node an admin puts in maintenance is moved
    to another node by the controller's own heal loop, the status text
    saying why.
    """
    scheduling = dict(FAST, heal_silence=10**10)
    process, client = controller(tmp_path, pki, scheduling=scheduling,
                                 housekeeping={"expiry_period": 60, "sweep_period": 60, "heal_period": 1})
    try:
        status, body = client.call("POST", "/v1/experiments", fingerprint=ALICE, body={
            "name": "h", "script": IMAGE, "nodecount": 1, "nodetypes": "", "start": int(time.time()) + 3600,
            "duration": 600, "options": {"heal": True}})
        assert status == 201, body
        path = f"/v1/experiments/{body['experiment']}/schedules"
        status, body = client.call("GET", path, fingerprint=ALICE)
        [(schedid, row)] = body["schedules"].items()
        first = str(row["nodeid"])
        status, body = client.call("PUT", f"/v1/resources/{first}", who="admin", form={"status": "maintenance"})
        assert status == 200, body
        process.waitFor(r"heal: 1 window\(s\) moved off failing nodes")
        status, body = client.call("GET", path, fingerprint=ALICE)
        row = body["schedules"][schedid]
        assert str(row["nodeid"]) != first, row
        assert row["status"] == f"defined; moved from node {first} (in status maintenance)", row
        assert process.stop() == 0
    finally:
        process.kill()
