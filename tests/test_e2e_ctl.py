"""
End to end: the real marvinctld process (C{python -m am.ctl.service}) on free ports
with a temporary configuration and SQLite file, driven over HTTPS with client
certificates and over the plain listener as a trusted proxy; killed with
SIGKILL and restarted on the same database; 30 parallel conflicting
submissions; and the demo's printed curl commands run as they stand.

Waits are on conditions with deadlines, never fixed sleeps.
"""

from __future__ import annotations

import http.client
import json
import xmlrpc.client
import os
import queue
import re
import shutil
import signal
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml

from am.devtools.demopki import DEMO_NODES, ensureDemoPKI

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
START_DEADLINE = 60.0
LISTENING = re.compile(r"listening for (https|http) on [0-9.]+:(\d+)")


class Process:
    """
    A marvinctld child process whose output is read line by line in a thread.
    """

    def __init__(self, args, cwd=ROOT):
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "am.ctl.service", *args], cwd=cwd, env=env,
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1,
        )
        self.lines: "queue.Queue[str | None]" = queue.Queue()
        self.output: list[str] = []
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))
        self.lines.put(None)

    def waitFor(self, pattern, deadline=START_DEADLINE):
        """
        The first line matching C{pattern} from now on; fails at the deadline
        or when the process ends first.
        """
        end = time.monotonic() + deadline
        while True:
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no line matching {pattern!r} in {deadline}s:\n" + "\n".join(self.output))
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                continue
            if line is None:
                raise AssertionError(f"marvinctld exited ({self.proc.wait()}):\n" + "\n".join(self.output))
            self.output.append(line)
            match = re.search(pattern, line)
            if match:
                return match

    def ports(self, count=2):
        found = {}
        while len(found) < count:
            match = self.waitFor(LISTENING)
            found[match.group(1)] = int(match.group(2))
        return found

    def kill(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)


class Client:
    """
    HTTP(S) calls to one controller: as a certificate holder over TLS, or as a
    fingerprint passed by a trusted proxy over the plain listener.
    """

    def __init__(self, ports, pki):
        self.ports = ports
        self.pki = pki
        self.contexts = {}

    def context(self, who):
        if who not in self.contexts:
            context = ssl.create_default_context(cafile=self.pki.certificate("ca"))
            context.load_cert_chain(self.pki.certificate(who), self.pki.key(who))
            self.contexts[who] = context
        return self.contexts[who]

    def call(self, method, path, who=None, fingerprint=None, form=None, body=None, timeout=30):
        headers = {}
        payload = None
        if form is not None:
            payload = urllib.parse.urlencode(form)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        elif body is not None:
            payload = json.dumps(body)
            headers["Content-Type"] = "application/json"
        if who is not None:
            connection = http.client.HTTPSConnection(
                "localhost", self.ports["https"], context=self.context(who), timeout=timeout
            )
        else:
            connection = http.client.HTTPConnection("127.0.0.1", self.ports["http"], timeout=timeout)
            if fingerprint is not None:
                headers.update({"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": fingerprint})
        try:
            connection.request(method, path, body=payload, headers=headers)
            response = connection.getresponse()
            data = response.read()
        finally:
            connection.close()
        try:
            decoded = json.loads(data) if data else None
        except ValueError:
            decoded = data.decode("utf-8", "replace")
        return response.status, decoded


@pytest.fixture(scope="module")
def pki():
    directory = tempfile.mkdtemp(prefix="marvin-e2e-pki-")
    yield ensureDemoPKI(directory)
    shutil.rmtree(directory, ignore_errors=True)


def writeConfig(tmp, pki, **overrides):
    inventory = os.path.join(tmp, "inventory.yaml")
    with open(inventory, "w") as f:
        yaml.safe_dump({"nodes": DEMO_NODES}, f)
    document = {
        "database": os.path.join(tmp, "marvin.db"),
        "listen": {
            "tls": {
                "address": "127.0.0.1", "port": 0, "certificate": pki.certificate("server"),
                "key": pki.key("server"), "client_ca": [pki.certificate("ca")],
            },
            "http": {"address": "127.0.0.1", "port": 0},
        },
        "admins": [{"name": "Operator", "certificate": pki.certificate("admin")}],
        "inventory": {"file": inventory, "period": 3600},
        "scheduling": {"require_heartbeat": False, "maintenance_windows": []},
        "log": {"file": "-", "level": "info"},
    }
    document.update(overrides)
    path = os.path.join(tmp, "marvinctld.conf")
    with open(path, "w") as f:
        yaml.safe_dump(document, f)
    return path


def start(path):
    process = Process(["--config", path])
    return process, process.ports()


def statuses(client, expid, fingerprint):
    status, body = client.call("GET", f"/v1/experiments/{expid}/schedules", fingerprint=fingerprint)
    assert status == 200, body
    return {str(k): v["status"] for k, v in body["schedules"].items()}


def test_lifecycleKillAndRestart(pki, tmp_path):
    path = writeConfig(str(tmp_path), pki)
    process, ports = start(path)
    try:
        client = Client(ports, pki)
        # wait for the inventory
        deadline = time.monotonic() + START_DEADLINE
        while True:
            status, body = client.call("GET", "/v1/resources", who="admin")
            if status == 200 and len(body) == len(DEMO_NODES):
                break
            assert time.monotonic() < deadline, (status, body)

        status, body = client.call("GET", "/v1/backend/auth", who="admin")
        assert (status, body["user"]["name"], body["user"]["role"]) == (200, "Operator", "admin")

        # users of each role, created by the bootstrap admin
        alice, bob = "a1" * 20, "b2" * 20
        for form in (
            {"name": "alice", "ssl": alice, "role": "user", "project": "e2e"},
            {"name": "bob", "ssl": bob, "role": "user"},
            {"name": "Node 1", "ssl": pki.fingerprints["node"], "role": "node"},
            {"name": "Node 2", "ssl": "c3" * 20, "role": "node"},
        ):
            status, body = client.call("POST", "/v1/users", who="admin", form=form)
            assert status == 201, body
        status, body = client.call("POST", "/v1/users", who="admin", form={"name": "x", "ssl": alice, "role": "user"})
        assert status == 409, body
        status, body = client.call("GET", "/v1/users", who="admin")
        assert sorted(u["name"] for u in body) == ["Node 1", "Node 2", "Operator", "alice", "bob"]
        # roles are enforced: a user may not create users, an admin may not submit
        assert client.call("POST", "/v1/users", fingerprint=alice, form={"name": "y", "ssl": "d4" * 20, "role": "admin"})[0] in (401, 403)
        assert client.call("POST", "/v1/experiments", who="admin", body={"name": "x"})[0] in (401, 403)
        # an unknown certificate of our CA is nobody
        assert client.call("GET", "/v1/users", who="user")[0] == 401

        status, body = client.call("GET", "/v1/resources/1", fingerprint=alice)
        assert status == 200 and body[0]["hostname"] == "demo-node-1" and body[0]["type"] == "testing"

        status, slots = client.call("GET", "/v1/schedules/find?nodecount=2&duration=600&nodetypes=type:testing", fingerprint=alice)
        assert status == 200 and slots and slots[0]["nodecount"] == 2 and slots[0]["max_nodecount"] == 2

        # JSON submission on node 1, ASAP
        status, body = client.call(
            "POST", "/v1/experiments", fingerprint=alice,
            body={"name": "json", "script": "docker.io/alice/ping", "nodecount": 1, "nodetypes": "",
                  "start": 0, "duration": 600, "options": {"nodes": "1"}},
        )
        assert status == 201, body
        deployedExp = body["experiment"]
        # form submission on node 2, ASAP
        status, body = client.call(
            "POST", "/v1/experiments", fingerprint=bob,
            form={"name": "form", "script": "docker.io/bob/trace", "nodecount": "1", "nodetypes": "",
                  "duration": "600", "options": json.dumps({"nodes": "2"})},
        )
        assert status == 201, body
        definedExp = body["experiment"]
        # a conflicting one is refused with the legacy code
        status, body = client.call(
            "POST", "/v1/experiments", fingerprint=bob,
            body={"name": "late", "script": "docker.io/bob/x", "nodecount": 3, "nodetypes": "type:testing",
                  "start": 0, "duration": 600},
        )
        assert status == 409 and "Could not allocate" in body["message"], body

        # node 1 heartbeats (over TLS with its own certificate) and reports
        status, body = client.call("PUT", "/v1/resources/1", who="node", form={"maintenance": "0", "limit": "3"})
        assert status == 200, body
        [task] = body["tasks"]
        schedid = str(task["id"])
        assert task["deployment_options"]["script"] == "docker.io/alice/ping"
        status, body = client.call("PUT", f"/v1/schedules/{schedid}", who="node", body={"status": "deployed"})
        assert status == 200, body
        # node 2 may not report on node 1's task
        assert client.call("PUT", f"/v1/schedules/{schedid}", fingerprint="c3" * 20, form={"status": "started"})[0] in (401, 403)

        # delete after deployment (aborted) and before (canceled)
        status, body = client.call("DELETE", f"/v1/experiments/{deployedExp}", fingerprint=alice)
        assert status == 200 and body["aborted"] == 1, body
        assert client.call("DELETE", f"/v1/experiments/{definedExp}", fingerprint=alice)[0] in (401, 403)
        status, body = client.call("DELETE", f"/v1/experiments/{definedExp}", fingerprint=bob)
        assert status == 200 and body["canceled"] == 1, body
        before = {
            "aborted": statuses(client, deployedExp, alice),
            "canceled": statuses(client, definedExp, bob),
            "users": client.call("GET", "/v1/users", who="admin")[1],
            "node": client.call("GET", "/v1/resources/1", fingerprint=alice)[1],
        }
        assert list(before["aborted"].values()) == ["aborted"]
        assert list(before["canceled"].values()) == ["canceled"]
        assert before["node"][0]["heartbeat"] > 0
    finally:
        process.kill()
    assert process.proc.returncode == -signal.SIGKILL

    # same database, after kill -9: nothing lost
    process, ports = start(path)
    try:
        client = Client(ports, pki)
        assert statuses(client, deployedExp, alice) == before["aborted"]
        assert statuses(client, definedExp, bob) == before["canceled"]
        assert client.call("GET", "/v1/users", who="admin")[1] == before["users"]
        assert client.call("GET", "/v1/resources/1", fingerprint=alice)[1] == before["node"]
        # and it still works: the canceled window on node 2 is free again
        status, body = client.call(
            "POST", "/v1/experiments", fingerprint=bob,
            body={"name": "again", "script": "docker.io/bob/trace", "nodecount": 1, "nodetypes": "",
                  "start": 0, "duration": 600, "options": {"nodes": "2"}},
        )
        assert status == 201, body
        assert process.stop() == 0
    finally:
        process.kill()


def assertEachNodeBookedOnce(client: Client) -> None:
    """
    30 clients, as three users, ask at once for one node each in the same
    window: exactly as many succeed as there are active nodes (the others
    get 409), and each active node is booked once.
    """
    users = [f"{i:02x}" * 20 for i in range(3)]
    for i, fingerprint in enumerate(users):
        status, body = client.call("POST", "/v1/users", who="admin", form={"name": f"u{i}", "ssl": fingerprint, "role": "user"})
        assert status == 201, body
    active = [n["id"] for n in DEMO_NODES if n["status"] == "active"]
    start = int(time.time()) + 7200

    def submit(i: int) -> tuple[int, object]:
        return client.call(
            "POST", "/v1/experiments", fingerprint=users[i % 3],
            body={"name": f"race{i}", "script": "docker.io/x/y", "nodecount": 1, "nodetypes": "",
                  "start": start, "duration": 1800},
        )

    with ThreadPoolExecutor(max_workers=30) as pool:
        results = list(pool.map(submit, range(30)))
    codes = sorted(status for status, _ in results)
    assert codes.count(201) == len(active), results
    assert codes.count(409) == 30 - len(active), results
    status, rows = client.call("GET", "/v1/schedules", fingerprint=users[0])
    assert status == 200
    booked = [r for r in rows if r["start"] < start + 1800 and r["stop"] > start]
    assert sorted(str(r["nodeid"]) for r in booked) == sorted(active)


def test_parallelConflictingSubmissions(pki, tmp_path):
    """
    30 clients ask at once for one node each in the same window: exactly as
    many succeed as there are active nodes, and no node is booked twice.
    """
    path = writeConfig(str(tmp_path), pki)
    process, ports = start(path)
    try:
        assertEachNodeBookedOnce(Client(ports, pki))
    finally:
        process.kill()


def test_demoPrintsCurlCommandsThatWork(tmp_path):
    """
    C{--demo}: the certificates and users are made on first start, and every
    printed curl command works as it stands (ports are free ones here).
    """
    if shutil.which("curl") is None:
        raise AssertionError("curl is needed for this test")
    config = tmp_path / "demo.conf"
    config.write_text(yaml.safe_dump({"demo": True, "demo_dir": "demo", "listen": {"tls": {"port": 0}, "http": {"port": 0}}}))
    process = Process(["--config", str(config)])
    try:
        process.waitFor(r"^Marvin demo controller is running\.$")
        commands = []
        while True:
            line = process.waitFor(r".*").group(0)
            if line.startswith("  curl "):
                commands.append(line.strip())
            if line.startswith("  curl -H 'VERIFIED"):
                break
        assert len(commands) == 11, commands
        # the demo's node agents heartbeat before bookings can use their nodes
        end = time.monotonic() + 60
        while True:
            listing = json.loads(subprocess.run(commands[1], shell=True, capture_output=True, text=True, timeout=30).stdout)
            if all(n["heartbeat"] > 0 for n in listing if n["status"] == "active") or time.monotonic() > end:
                break
            time.sleep(0.2)
        outputs = []
        for command in commands:
            done = subprocess.run(command, shell=True, capture_output=True, text=True, timeout=30)
            assert done.returncode == 0, (command, done.stderr)
            if ".ics" in command:
                assert done.stdout.startswith("BEGIN:VCALENDAR"), done.stdout
                continue
            if "xmlrpc" in command:
                (version,), _ = xmlrpc.client.loads(done.stdout)
                assert (version["code"]["geni_code"], version["geni_api"]) == (0, 3)
                continue
            outputs.append(json.loads(done.stdout))
        auth, nodes, slots, submitted, task, watched, users, heartbeat, proxied = (
            outputs[0], outputs[1], outputs[2], outputs[3], outputs[4], outputs[5], outputs[6], outputs[7], outputs[8:]
        )
        assert task["message"].startswith("Allocated"), task
        assert {e["expid"] for e in watched["events"]} == {submitted["experiment"], task["experiment"]}
        assert auth["user"]["name"] == "Marvin demo user"
        assert len(nodes) == len(DEMO_NODES)
        assert slots and slots[0]["nodecount"] == 2
        assert submitted["message"].startswith("Allocated"), submitted
        assert {u["name"] for u in users} == {"Marvin demo admin", "Marvin demo user"} | {f"Node {n}" for n in "12345"}
        assert "tasks" in heartbeat
        assert proxied[-1]["user"]["name"] == "Marvin demo user"
        assert (tmp_path / "demo" / "pki" / "ca-cert.pem").exists()
        assert process.stop() == 0
    finally:
        process.kill()


def test_sweepFailsTaskNoNodeRan(pki, tmp_path):
    """
    A REST booking on a node with no agent ends C{failed} with a reason
    shortly after its window: the controller's own sweep, seen over sockets.
    """
    path = writeConfig(
        str(tmp_path), pki,
        housekeeping={"expiry_period": 60, "sweep_period": 1},
        scheduling={"require_heartbeat": False, "maintenance_windows": [], "min_delay": 0,
                    "min_runtime": 1, "padding": 0},
    )
    process, ports = start(path)
    try:
        client = Client(ports, pki)
        alice = "a1" * 20
        status, body = client.call("POST", "/v1/users", who="admin",
                                   form={"name": "alice", "ssl": alice, "role": "user"})
        assert status == 201, body
        status, body = client.call(
            "POST", "/v1/experiments", fingerprint=alice,
            body={"name": "nobody", "script": "docker.io/alice/ping", "nodecount": 1, "nodetypes": "",
                  "start": 0, "duration": 2, "options": {"nodes": "1"}},
        )
        assert status == 201, body
        expid = body["experiment"]
        assert list(statuses(client, expid, alice).values()) == ["defined"]
        process.waitFor(r"sweep: 1 task\(s\) no node deployed")
        status, body = client.call("GET", f"/v1/experiments/{expid}/schedules", fingerprint=alice)
        assert status == 200, body
        [row] = body["schedules"].values()
        assert row["status"] == "failed; node 1 never deployed the task", row
        assert row["stop"] <= time.time()
        assert process.stop() == 0
    finally:
        process.kill()
