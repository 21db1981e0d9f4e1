"""
marvinctld with C{workers: 2} (am/ctl/workers.py), real processes on a real
socket: both processes answer; a booking made through one is seen and
respected by the other, and a cancellation through one frees the slot for the
other; 30 racing submissions book each node once; a worker killed with
SIGKILL is started again, and the workers stop with the main process (also
when it is killed). Waits are on conditions with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import signal
import time
from typing import Any

import pytest

from tests.test_e2e_ctl import (  # noqa: F401 (pki: the fixture)
    START_DEADLINE, Client, Process, assertEachNodeBookedOnce, pki, writeConfig,
)
from tests.test_store_postgres import fresh
from tests.test_store_postgres import server  # noqa: F401 (a fixture: this module's PostgreSQL database)

SERVING = r"worker 1 serving \(pid (\d+)\)"
WORKER = re.compile(r'^marvin_worker\{pid="(\d+)",worker="(\d+)"\}', re.M)


class Connection:
    """
    One keep-alive connection to the plain listener (as a trusted proxy):
    it stays with the process that accepted it.
    """

    def __init__(self, port: int) -> None:
        self.connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(self, method: str, path: str, fingerprint: str | None = None, body: Any = None) -> tuple[int, Any]:
        headers = {"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": fingerprint} if fingerprint else {}
        payload = None
        if body is not None:
            payload = json.dumps(body)
            headers["Content-Type"] = "application/json"
        self.connection.request(method, path, body=payload, headers=headers)
        response = self.connection.getresponse()
        data = response.read()
        try:
            return response.status, json.loads(data) if data else None
        except ValueError:
            return response.status, data.decode()

    def worker(self) -> tuple[int, int]:
        """
        (worker number, pid) of the process holding this connection.
        """
        status, text = self.call("GET", "/metrics")
        assert status == 200, text
        pid, number = WORKER.search(text).groups()
        return int(number), int(pid)

    def close(self) -> None:
        self.connection.close()


def oneOnEach(port: int) -> dict[int, Connection]:
    """
    A keep-alive connection held by each of the two processes.
    """
    found: dict[int, Connection] = {}
    deadline = time.monotonic() + START_DEADLINE
    while len(found) < 2:
        assert time.monotonic() < deadline, f"only {sorted(found)} answered"
        connection = Connection(port)
        number, _ = connection.worker()
        if number in found:
            connection.close()
        else:
            found[number] = connection
    return found


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def waitGone(pid: int) -> None:
    deadline = time.monotonic() + START_DEADLINE
    while not gone(pid):
        assert time.monotonic() < deadline, f"process {pid} still runs"
        time.sleep(0.05)


def startWorkers(tmp_path, pki, **config: Any) -> tuple[Process, dict[str, int], int]:
    process = Process(["--config", writeConfig(str(tmp_path), pki, workers=2, **config)])
    ports = process.ports()
    worker = int(process.waitFor(SERVING).group(1))
    return process, ports, worker


def aliceOnBoth(process: Process, ports: dict[str, int], workerPid: int, pki: Any) -> tuple[Any, str, dict]:
    """
    A user "alice" made, and a keep-alive connection held by each process
    (0: the main one, 1: the worker): the admin's client, her fingerprint
    and the connections.
    """
    client = Client(ports, pki)
    alice = "a1" * 20
    status, body = client.call("POST", "/v1/users", who="admin", form={"name": "alice", "ssl": alice, "role": "user"})
    assert status == 201, body
    connections = oneOnEach(ports["http"])
    assert connections[0].worker()[1] == process.proc.pid and connections[1].worker()[1] == workerPid
    return client, alice, connections


def test_bookingsAcrossWorkers(pki, tmp_path) -> None:
    """
    Both processes answer; what one books the other sees and refuses to book
    again; what one cancels the other may book; a user invalidated through
    one is refused by the other at once; a worker killed with SIGKILL is
    started again; a clean stop ends the worker too.
    """
    process, ports, workerPid = startWorkers(tmp_path, pki)
    try:
        client, alice, connections = aliceOnBoth(process, ports, workerPid, pki)
        main, worker = connections[0], connections[1]
        start = int(time.time()) + 7200
        booking = {"name": "w", "script": "docker.io/x/y", "nodecount": 1, "nodetypes": "",
                   "start": start, "duration": 1800, "options": {"nodes": "1"}}

        # booked through the main process: seen and refused by the worker
        status, body = main.call("POST", "/v1/experiments", alice, booking)
        assert status == 201, body
        first = body["experiment"]
        status, body = worker.call("GET", f"/v1/experiments/{first}/schedules", alice)
        assert status == 200 and len(body["schedules"]) == 1, body
        assert worker.call("POST", "/v1/experiments", alice, booking)[0] == 409
        # cancelled through the worker: the main process books the slot again
        status, body = worker.call("DELETE", f"/v1/experiments/{first}", alice)
        assert status in (200, 204), body
        status, body = main.call("POST", "/v1/experiments", alice, booking)
        assert status == 201, body
        second = body["experiment"]
        # and the other way round
        assert worker.call("POST", "/v1/experiments", alice, booking)[0] == 409
        assert main.call("DELETE", f"/v1/experiments/{second}", alice)[0] in (200, 204)
        status, body = worker.call("POST", "/v1/experiments", alice, booking)
        assert status == 201, body
        assert main.call("POST", "/v1/experiments", alice, booking)[0] == 409

        # a user invalidated through one process is refused at once by the
        # other, which remembered it (callers follow the shared counter)
        admin = pki.fingerprints["admin"]
        bob = "b2" * 20
        status, body = client.call("POST", "/v1/users", who="admin", form={"name": "bob", "ssl": bob, "role": "user"})
        assert status == 201, body
        ids = {u["name"]: u["id"] for u in client.call("GET", "/v1/users", who="admin")[1]}
        for changer, other, who in ((main, worker, alice), (worker, main, bob)):
            assert other.call("GET", "/v1/experiments", who)[0] == 200
            assert changer.call("GET", "/v1/experiments", who)[0] == 200
            status, body = changer.call("DELETE", f"/v1/users/{ids['alice' if who == alice else 'bob']}", admin)
            assert status in (200, 204), body
            assert other.call("GET", "/v1/experiments", who)[0] in (401, 403)
            assert changer.call("GET", "/v1/experiments", who)[0] in (401, 403)
        for connection in connections.values():
            connection.close()

        # a worker killed is started again, on the same socket
        os.kill(workerPid, signal.SIGKILL)
        process.waitFor(rf"worker 1 \(pid {workerPid}\) ended")
        restarted = int(process.waitFor(SERVING).group(1))
        assert restarted != workerPid
        connections = oneOnEach(ports["http"])
        assert connections[1].worker()[1] == restarted
        for connection in connections.values():
            connection.close()

        assert process.stop() == 0
        waitGone(restarted)
    finally:
        process.kill()


def test_racingSubmissionsOverWorkers(pki, tmp_path) -> None:
    """
    30 clients on fresh connections (spread over both processes) ask at once
    for one node each in the same window: each active node is booked once.
    """
    process, ports, _ = startWorkers(tmp_path, pki)
    try:
        assertEachNodeBookedOnce(Client(ports, pki))
    finally:
        process.kill()


def test_workerStopsWhenMainIsKilled(pki, tmp_path) -> None:
    """
    SIGKILL of the main process ends its lifeline pipe: the worker stops.
    """
    process, _, workerPid = startWorkers(tmp_path, pki)
    try:
        process.kill()
        waitGone(workerPid)
    finally:
        process.kill()
        if not gone(workerPid):
            os.kill(workerPid, signal.SIGKILL)


@pytest.mark.parametrize("value", [0, "two", True, 65])
def test_badWorkers(value, tmp_path) -> None:
    """
    C{workers} is a whole number 1-64, named in the message.
    """
    from am.ctl.config import ConfigError, parseConfig

    with pytest.raises(ConfigError, match="^workers: "):
        parseConfig({"database": str(tmp_path / "m.db"), "workers": value}, str(tmp_path), checkFiles=False)


def test_workersNeedSharedDatabase(tmp_path) -> None:
    """
    More than one worker needs a database they can share: a SQLite file or
    PostgreSQL, not one in memory.
    """
    from am.ctl.config import ConfigError, parseConfig

    listen = {"http": {"address": "127.0.0.1", "port": 0}}
    with pytest.raises(ConfigError, match="^workers: more than one only with a SQLite file or PostgreSQL"):
        parseConfig({"database": ":memory:", "workers": 2, "listen": listen}, str(tmp_path), checkFiles=False)
    assert parseConfig({"database": ":memory:", "listen": listen}, str(tmp_path), checkFiles=False).workers == 1
    url = "postgresql://localhost/marvin"
    assert parseConfig({"database": url, "workers": 3, "listen": listen}, str(tmp_path), checkFiles=False).workers == 3


def test_workersOnPostgreSQL(pki, tmp_path) -> None:
    """
    C{workers: 2} on PostgreSQL: both processes answer on one port; what one
    books the other refuses, what one cancels the other books; 30 racing
    submissions book each node once; a user invalidated through one is
    refused by the other once its notification arrives (docs/postgresql.md,
    "Remembered callers"); a clean stop ends both.
    """
    process, ports, workerPid = startWorkers(tmp_path, pki, database=fresh())
    try:
        client, alice, connections = aliceOnBoth(process, ports, workerPid, pki)
        main, worker = connections[0], connections[1]
        booking = {"name": "w", "script": "docker.io/x/y", "nodecount": 1, "nodetypes": "",
                   "start": int(time.time()) + 86400, "duration": 1800, "options": {"nodes": "1"}}
        status, body = main.call("POST", "/v1/experiments", alice, booking)
        assert status == 201, body
        assert worker.call("POST", "/v1/experiments", alice, booking)[0] == 409
        status, body = worker.call("DELETE", f"/v1/experiments/{body['experiment']}", alice)
        assert status in (200, 204), body
        assert main.call("POST", "/v1/experiments", alice, booking)[0] == 201

        assertEachNodeBookedOnce(client)

        assert worker.call("GET", "/v1/experiments", alice)[0] == 200  # remembered there
        ids = {u["name"]: u["id"] for u in client.call("GET", "/v1/users", who="admin")[1]}
        status, body = main.call("DELETE", f"/v1/users/{ids['alice']}", pki.fingerprints["admin"])
        assert status in (200, 204), body
        assert main.call("GET", "/v1/experiments", alice)[0] in (401, 403)
        deadline = time.monotonic() + START_DEADLINE
        while worker.call("GET", "/v1/experiments", alice)[0] not in (401, 403):
            assert time.monotonic() < deadline, "the worker still serves the invalidated user"
        for connection in connections.values():
            connection.close()
        assert process.stop() == 0
        waitGone(workerPid)
    finally:
        process.kill()
