"""
End to end with the real programs: the controller (C{python -m am.ctl.service}) and
two node agents (C{python -m node.tap}) as processes on 127.0.0.1, talking
HTTPS with certificates from a temporary CA made by the development authority
(every certificate carries GENI URNs, which the agents' TLS must cope with).

One experiment on both nodes is deployed, started and stopped on time by hooks
that only log their calls; one agent is killed with SIGKILL mid-run and comes
back (C{restarted}); the controller is killed while the tasks end and comes
back on the same database, and the status reports queued meanwhile (one of
them by an agent restarted during the outage) all arrive, in order.

Waits are on conditions with deadlines (polling), never fixed sleeps.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import stat
import subprocess
import sys
import time
from typing import Any, Callable

import pytest
import yaml

from am.devtools.demopki import fingerprint
from am.devtools.authority import makeAM, makeCA, makeUser
from node.client import ControllerResponse
from node.wire import SETTLED, classifyReply, parseTask
from tests.test_e2e_ctl import ROOT, Client, Process
from tests.waiting import waitFor

#: How far ahead the experiment starts, how long it runs, and how late
#: (seconds) a hook may run after its due time.
LEAD, DURATION, LATE = 5, 12, 2.0

HOOK = """\
#!/bin/sh
# Log the call: time, action, arguments.
printf '%s %s %s\\n' "$(date +%s.%N)" "$MARVIN_ACTION" "$*" >> "$MARVIN_CALLS"
"""

REPORT_LINE = re.compile(r"PUT /v1/schedules/(\d+) (Node [^#\s]+)\S* (\d{3}) ")


class PKI:
    """
    A CA made by L{am.devtools.authority}, the controller's certificate for
    C{localhost}, and client certificates for an admin, a user and two nodes,
    as L{Client} wants them.
    """

    def __init__(self, directory: str) -> None:
        self.directory = directory
        ca = makeCA(directory, "marvin-e2e")
        makeAM(directory, ca, "localhost")
        self.fingerprints = {
            name: fingerprint(makeUser(directory, ca, name).certificate)
            for name in ("admin", "alice", "node1", "node2")
        }

    def _stem(self, name: str) -> str:
        return os.path.join(self.directory, {"ca": "ca", "server": "am"}.get(name, f"user-{name}"))

    def certificate(self, name: str) -> str:
        return self._stem(name) + "-cert.pem"

    def key(self, name: str) -> str:
        return self._stem(name) + "-key.pem"


class Agent:
    """
    One marvind process, its files, and what its hooks were called with.
    """

    def __init__(self, base: str, nodeid: str, pki: PKI, port: int, hook: str) -> None:
        self.nodeid = nodeid
        directory = os.path.join(base, f"node{nodeid}")
        os.makedirs(directory)
        self.calls = os.path.join(directory, "calls.log")
        self.log = os.path.join(directory, "marvind.log")
        self.state = os.path.join(directory, "state", "state.json")
        self.config = os.path.join(directory, "marvind.conf")
        document = {
            "controller": {"url": f"https://localhost:{port}/v1", "ca": pki.certificate("ca")},
            "node": {"id": nodeid},
            "tls": {"certificate": pki.certificate(f"node{nodeid}"), "key": pki.key(f"node{nodeid}")},
            "state_directory": os.path.join(directory, "state"),
            "heartbeat": {"period": 1, "jitter": 0, "limit": 10},
            "hooks": {"deploy": hook, "start": hook, "stop": hook, "environment": {"MARVIN_CALLS": self.calls}},
            "timeouts": {"request": 3, "deploy": 10, "start": 10, "stop": 10, "kill_grace": 1},
        }
        with open(self.config, "w") as f:
            yaml.safe_dump(document, f)
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "node.tap", "--config", self.config],
                cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
            )

    def kill(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(timeout=30)

    def stop(self) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=30)

    def hookCalls(self) -> list[tuple[float, str, list[str]]]:
        """
        C{(time, action, arguments)} of every hook run so far.
        """
        try:
            with open(self.calls) as f:
                lines = f.read().splitlines()
        except FileNotFoundError:
            return []
        calls = []
        for line in lines:
            when, action, *arguments = line.split()
            calls.append((float(when), action, arguments))
        return calls

    def actions(self) -> list[str]:
        return [" ".join([action, *arguments]) for (_, action, arguments) in self.hookCalls()]

    def saved(self) -> dict[str, Any]:
        """
        The agent's state file: its tasks and undelivered reports.
        """
        try:
            with open(self.state) as f:
                return json.load(f)
        except (FileNotFoundError, ValueError):
            return {"tasks": [], "queue": []}

    def queued(self) -> list[str]:
        return [report["status"] for report in self.saved()["queue"]]

    def output(self) -> str:
        with open(self.log, errors="replace") as f:
            return f"--- node {self.nodeid} log:\n" + "".join(f.readlines()[-40:])


class Controller:
    """
    The marvinctld process, started and restarted on one configuration file
    whose TLS port is fixed after the first start (the agents know it).
    """

    def __init__(self, base: str, pki: PKI) -> None:
        inventory = os.path.join(base, "inventory.yaml")
        with open(inventory, "w") as f:
            yaml.safe_dump({"nodes": [
                {"id": str(i), "hostname": f"e2e-node-{i}", "status": "active", "tags": {"type": "testing"}}
                for i in (1, 2)
            ]}, f)
        self.path = os.path.join(base, "ctl.yaml")
        self.document = {
            "database": os.path.join(base, "marvin.db"),
            "listen": {
                "tls": {
                    "address": "127.0.0.1", "port": 0, "certificate": pki.certificate("server"),
                    "key": pki.key("server"), "client_ca": [pki.certificate("ca")],
                },
                "http": {"address": "127.0.0.1", "port": 0},
            },
            "admins": [{"name": "Operator", "certificate": pki.certificate("admin")}],
            "inventory": {"file": inventory, "period": 3600},
            "scheduling": {
                "min_delay": 1, "min_runtime": 1, "padding": 1, "maintenance_windows": [],
                "require_heartbeat": False,
            },
            "log": {"file": "-", "level": "info"},
        }
        self.pki = pki
        self.process: Process | None = None
        self.earlier: list[str] = []
        self.write()

    def write(self) -> None:
        with open(self.path, "w") as f:
            yaml.safe_dump(self.document, f)

    def start(self) -> Client:
        self.process = Process(["--config", self.path])
        ports = self.process.ports(2)
        if self.document["listen"]["tls"]["port"] == 0:
            self.document["listen"]["tls"]["port"] = ports["https"]
            self.write()
        assert ports["https"] == self.document["listen"]["tls"]["port"]
        return Client(ports, self.pki)

    def lines(self) -> list[str]:
        """
        Everything the running process has printed so far.
        """
        assert self.process is not None
        while True:
            try:
                line = self.process.lines.get_nowait()
            except queue.Empty:
                return self.process.output
            if line is not None:
                self.process.output.append(line)

    def kill(self) -> int:
        assert self.process is not None
        self.earlier += self.lines()
        self.process.kill()
        return self.process.proc.returncode

    def output(self) -> str:
        current = self.lines() if self.process is not None else []
        return "--- controller output:\n" + "\n".join((self.earlier + current)[-60:])


@pytest.fixture
def world(tmp_path):
    """
    PKI, controller and agent files; every process started is killed at the
    end, whatever happened.
    """
    base = str(tmp_path)
    hook = os.path.join(base, "hook")
    with open(hook, "w") as f:
        f.write(HOOK)
    os.chmod(hook, stat.S_IRWXU)
    pki = PKI(os.path.join(base, "pki"))
    controller = Controller(base, pki)
    agents: list[Agent] = []
    try:
        yield base, pki, controller, agents, hook
    finally:
        for agent in agents:
            if agent.proc is not None:
                agent.kill()
        if controller.process is not None:
            controller.process.kill()


def schedules(client: Client, expid: int, pki: PKI) -> dict[str, tuple[str, str]]:
    """
    Node id to C{(schedule id, status)} of the experiment, as its owner sees it.
    """
    status, body = client.call("GET", f"/v1/experiments/{expid}/schedules", fingerprint=pki.fingerprints["alice"])
    assert status == 200, body
    return {str(s["nodeid"]): (sid, s["status"]) for sid, s in body["schedules"].items()}


def test_experimentOnTwoAgents(world):
    """
    One experiment on two nodes, from submission to the last report, with an
    agent killed mid-run and the controller killed while the tasks end.
    """
    base, pki, controller, agents, hook = world
    began = time.monotonic()
    client = controller.start()

    def detail() -> str:
        return "\n".join([controller.output()] + [a.output() for a in agents])

    waitFor(
        lambda: len(client.call("GET", "/v1/resources", who="admin")[1]) == 2, 30, "the inventory", detail
    )
    for form in (
        {"name": "alice", "ssl": pki.fingerprints["alice"], "role": "user", "project": "e2e"},
        {"name": "Node 1", "ssl": pki.fingerprints["node1"], "role": "node"},
        {"name": "Node 2", "ssl": pki.fingerprints["node2"], "role": "node"},
    ):
        status, body = client.call("POST", "/v1/users", who="admin", form=form)
        assert status == 201, body

    port = controller.document["listen"]["tls"]["port"]
    agents += [Agent(base, nodeid, pki, port, hook) for nodeid in ("1", "2")]
    one, two = agents
    for agent in agents:
        agent.start()

    # Both agents heartbeat over TLS (the controller's certificate has URNs).
    def heard(nodeid: str) -> bool:
        status, body = client.call("GET", f"/v1/resources/{nodeid}", who="admin")
        return status == 200 and body[0]["heartbeat"] > 0

    waitFor(lambda: heard("1") and heard("2"), 30, "heartbeats from both agents", detail)
    ready = time.monotonic() - began

    start = int(time.time()) + LEAD
    stop = start + DURATION
    status, body = client.call(
        "POST", "/v1/experiments", who="alice",
        body={"name": "e2e", "script": "registry.example/e2e:1", "nodecount": 2, "nodetypes": "",
              "start": start, "duration": DURATION},
    )
    assert status == 201, body
    expid = body["experiment"]
    booked = schedules(client, expid, pki)
    assert sorted(booked) == ["1", "2"], booked
    sid = {nodeid: schedid for nodeid, (schedid, _) in booked.items()}

    def statuses() -> dict[str, str]:
        return {nodeid: s for nodeid, (_, s) in schedules(client, expid, pki).items()}

    def are(expected: dict[str, str]) -> Callable[[], bool]:
        return lambda: statuses() == expected

    # Deployed at once, before the start time.
    waitFor(are({"1": "deployed", "2": "deployed"}), start - time.time(), "deployed before the start", detail)
    # Started on time.
    waitFor(are({"1": "started", "2": "started"}), start + LATE + 1 - time.time(), "started on both", detail)
    lateness = []
    for agent in agents:
        image = f"deploy {sid[agent.nodeid]} registry.example/e2e:1"
        assert agent.actions() == [image, f"start {sid[agent.nodeid]} started"], detail()
        deployed, started = agent.hookCalls()
        assert deployed[0] < start <= started[0] <= start + LATE, (deployed[0], start, started[0])
        lateness.append(started[0] - start)
    # The heartbeat reply is what node.wire expects, task included.
    status, body = client.call(
        "PUT", "/v1/resources/1", who="node1", form={"maintenance": "0", "limit": "10", "interfaces": "[]"}
    )
    assert status == 200 and body["interfaces"] == {}, body
    [task] = [parseTask(raw) for raw in body["tasks"]]
    assert (task.id, task.expid, task.start, task.stop, task.status) == (sid["1"], expid, start, stop, "started")
    assert task.options["script"] == "registry.example/e2e:1"

    # Node 2's agent dies mid-run and comes back: the task is restarted.
    assert two.kill() == -signal.SIGKILL
    two.start()
    waitFor(are({"1": "started", "2": "restarted"}), 15, "node 2 restarted its task", detail)
    assert two.actions()[-1] == f"start {sid['2']} restarted"

    # The controller dies before the tasks end ...
    assert time.time() < stop - 2, "too slow: the controller must go down before the stop time"
    assert controller.kill() == -signal.SIGKILL
    # ... and node 1's agent dies and comes back meanwhile: its reports wait on disk.
    assert one.kill() == -signal.SIGKILL
    one.start()
    waitFor(lambda: one.queued() == ["restarted"], 15, "node 1 queued 'restarted'", detail)
    assert one.actions()[-1] == f"start {sid['1']} restarted"
    # The tasks end on time with no controller; the reports wait.
    waitFor(
        lambda: one.queued() == ["restarted", "stopped"] and two.queued() == ["stopped"],
        stop + LATE + 1 - time.time(), "both 'stopped' reports queued", detail,
    )
    for agent in agents:
        when, action, arguments = agent.hookCalls()[-1]
        assert (action, arguments) == ("stop", [sid[agent.nodeid], "stopped"])
        assert stop <= when <= stop + LATE, (stop, when)
        lateness.append(when - stop)

    # The controller comes back on the same database and port: every queued report arrives.
    client = controller.start()
    outage = time.time()
    waitFor(are({"1": "stopped", "2": "stopped"}), 15, "the queued reports delivered", detail)
    waitFor(lambda: one.queued() == [] and two.queued() == [], 5, "queues empty", detail)
    delivered = time.time() - outage
    reports = [m.groups() for m in map(REPORT_LINE.search, controller.lines()) if m]
    # Each report exactly once, each taken (200): "stopped" first would have
    # made "restarted" a 409 (a final status cannot be reset).
    assert sorted(reports) == sorted([
        (sid["1"], "Node 1", "200"), (sid["1"], "Node 1", "200"), (sid["2"], "Node 2", "200"),
    ]), (reports, detail())

    # A report on a task in a final status is refused as the agent expects: dropped, not retried.
    status, body = client.call("PUT", f"/v1/schedules/{sid['1']}", who="node1", form={"status": "stopped", "when": "1"})
    assert body["code"] == "final"
    assert classifyReply(ControllerResponse(status, body, json.dumps(body), None)) == SETTLED, (status, body)
    assert (status, body["message"]) == (409, "Status stopped cannot be reset."), body

    # The whole story, as the hooks saw it.
    for agent in agents:
        s = sid[agent.nodeid]
        assert agent.actions() == [
            f"deploy {s} registry.example/e2e:1", f"start {s} started", f"start {s} restarted",
            f"stop {s} stopped",
        ], detail()
    # Finished tasks are forgotten once reported; everything stops cleanly.
    waitFor(lambda: one.saved()["tasks"] == [] and two.saved()["tasks"] == [], 5, "tasks forgotten", detail)
    for agent in agents:
        assert agent.stop() == 0, detail()
    assert controller.process.stop() == 0, detail()
    print(
        f"ready after {ready:.1f} s; hooks late by at most {max(lateness):.2f} s; "
        f"reports delivered {delivered:.1f} s after the controller came back; "
        f"whole test {time.monotonic() - began:.1f} s"
    )
