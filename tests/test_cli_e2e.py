"""
The C{marvin} command line against a real marvinctld process over real
sockets (HTTPS with client certificates from the demo PKI): an admin adds
users and sets quotas, a user lists nodes, finds and books windows, sees a
refusal's suggestions, follows an experiment that a node runs, and cancels;
errors give the documented exit codes. The console script runs once as a
child process; the other calls run L{cli.main.main} in this process (the
server is still another process, over TLS).

Nothing waits on a timer: C{watch} is given a sleep that plays the node's
part, so each poll sees the next status.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import threading
import time
from datetime import datetime

import pytest

from am.devtools.demopki import DEMO_NODES, ensureDemoPKI
from cli.main import main
from tests.test_e2e_ctl import ROOT, START_DEADLINE, Client, start, writeConfig


@pytest.fixture(scope="module")
def controller(tmp_path_factory):
    """
    A running marvinctld with the demo inventory; the demo admin is its
    bootstrap admin; the demo user and node certificates are not users yet.
    """
    tmp = tmp_path_factory.mktemp("cli-e2e")
    pki = ensureDemoPKI(str(tmp / "pki"))
    process, ports = start(writeConfig(str(tmp), pki))
    try:
        client = Client(ports, pki)
        deadline = time.monotonic() + START_DEADLINE
        while True:
            status, body = client.call("GET", "/v1/resources", who="admin")
            if status == 200 and len(body) == len(DEMO_NODES):
                break
            assert time.monotonic() < deadline, (status, body)
        yield ports, pki, client
    finally:
        process.kill()


class Marvin:
    """
    Runs C{marvin} as one of the demo identities, settings from the environment.
    """

    def __init__(self, controller):
        self.ports, self.pki, self.http = controller
        self.sleeps: list[float] = []
        self.onSleep = None

    def environ(self, who):
        return {
            "MARVIN_URL": f"https://localhost:{self.ports['https']}",
            "MARVIN_CERT": self.pki.certificate(who),
            "MARVIN_KEY": self.pki.key(who),
            "MARVIN_CA": self.pki.certificate("ca"),
            "XDG_CONFIG_HOME": "/nonexistent",
        }

    def sleep(self, seconds):
        self.sleeps.append(seconds)
        if self.onSleep is not None:
            self.onSleep()

    def __call__(self, *argv, who="user"):
        out, err = io.StringIO(), io.StringIO()
        code = main(list(argv), out=out, err=err, environ=self.environ(who), sleep=self.sleep)
        return code, out.getvalue(), err.getvalue()

    def json(self, *argv, who="user"):
        code, out, err = self("--json", *argv, who=who)
        assert code == 0, (out, err)
        return json.loads(out)


@pytest.fixture(scope="module")
def marvin(controller):
    """
    The CLI, after the admin made the demo user (alice) and node 1 users.
    """
    run = Marvin(controller)
    pki = run.pki
    code, out, err = run("users", "add", "alice", "--project", "e2e", "--user-cert", pki.certificate("user"), who="admin")
    assert code == 0, (out, err)
    assert "alice" in out and pki.fingerprints["user"] in out
    code, out, err = run("users", "add", "Node 1", "--role", "node", "--user-cert", pki.certificate("node"), who="admin")
    assert code == 0, (out, err)
    return run


def rows(text):
    """
    The table's rows (header excluded) as lists of cells split on runs of 2+ spaces.
    """
    import re

    lines = [line for line in text.splitlines() if line.strip()]
    return [re.split(r"\s{2,}", line.strip()) for line in lines[1:]]


def test_whoamiAndUsers(marvin):
    code, out, err = marvin("whoami")
    assert code == 0, err
    assert "alice" in out and "user" in out and marvin.pki.fingerprints["user"] in out
    me = marvin.json("whoami")
    assert me["user"]["name"] == "alice" and me["user"]["project"] == "e2e"

    code, out, err = marvin("users", "quota", "alice", "--time", "500h", "--data", "100G", "--storage", "2GiB", who="admin")
    assert code == 0, err
    user = marvin.json("whoami")["user"]
    assert (user["quota_time"], user["quota_data"], user["quota_storage"]) == (500 * 3600, 10**11, 2 * 2**30)
    code, out, err = marvin("whoami")
    assert "20d20h" in out and "100 GB" in out

    # a user made by fingerprint, rekeyed, listed, then invalidated
    code, out, err = marvin("users", "add", "bob", "--fingerprint", ":".join(["ab"] * 20), who="admin")
    assert code == 0, err
    code, out, err = marvin("users", "rekey", "bob", "--fingerprint", "cd" * 20, who="admin")
    assert code == 0 and "cd" * 20 in out, (out, err)
    listed = {u["name"]: u for u in marvin.json("users", "list", who="admin")}
    assert {"Operator", "alice", "bob", "Node 1"} <= set(listed)
    assert listed["bob"]["ssl_id"] == "cd" * 20
    code, out, err = marvin("users", "delete", "bob", who="admin")
    assert code == 0, err
    assert {u["name"]: u for u in marvin.json("users", "list", who="admin")}["bob"]["role"] == "invalid"

    # a user may not create users: the server's refusal, exit 1
    code, out, err = marvin("users", "add", "mallory", "--fingerprint", "ef" * 20)
    assert code == 1 and ("HTTP 403" in err or "HTTP 401" in err), err
    # the same user twice: 409 with the server's message
    code, out, err = marvin("users", "add", "alice2", "--user-cert", marvin.pki.certificate("user"), who="admin")
    assert code == 1 and "HTTP 409" in err, err


def test_nodes(marvin):
    code, out, err = marvin("nodes")
    assert code == 0, err
    table = rows(out)
    assert [r[0] for r in table] == ["1", "2", "3", "4", "5", "6"]
    assert out.splitlines()[0].split() == ["ID", "HOSTNAME", "STATUS", "HEARTBEAT", "PAIR", "TAGS"]
    assert "type:testing" in out and "country:se" in out
    code, out, err = marvin("nodes", "--filter", "type:deployed,-country:no")
    assert [r[0] for r in rows(out)] == ["5"]
    listed = marvin.json("nodes", "--filter", "country:se|country:it")
    assert [n["hostname"] for n in listed] == ["demo-node-1", "demo-node-2", "demo-node-6"]
    # free in a window: the disabled node 6 never is
    code, out, err = marvin("nodes", "--free-from", "in 1 hour", "--for", "30m")
    assert code == 0, err
    assert [r[0] for r in rows(out)] == ["1", "2", "3", "4", "5"]
    code, out, err = marvin("nodes", "--filter", "type")
    assert code == 2 and "not tag:value" in err


def test_findBookRefuseShowCancel(marvin):
    code, out, err = marvin("find", "--count", "2", "--filter", "type:testing", "--duration", "10m", "--results", "3")
    assert code == 0, err
    assert out.splitlines()[0].split() == ["START", "STOP", "FREE", "UNTIL", "NODES", "FREE", "NODES"]
    slots = marvin.json("find", "--count", "2", "--filter", "type:testing", "--duration", "10m")
    assert slots[0]["nodecount"] == 2 and slots[0]["stop"] - slots[0]["start"] == 600

    start = (int(time.time()) // 3600 + 5) * 3600
    when = datetime.fromtimestamp(start).astimezone().isoformat()
    code, out, err = marvin("book", "--nodes", "3", "--start", when, "--duration", "1h", "--script", "docker.io/alice/ping:1")
    assert code == 0, err
    assert out.startswith("Experiment ") and "booked: 1 node(s) x 1 interval(s)" in out
    expid = int(out.split()[1])
    [schedule] = rows(out.split("\n", 1)[1])
    assert schedule[1:2] == ["3"] and schedule[-1] == "defined"

    # the same node and window again: refused, with the earliest windows that fit
    code, out, err = marvin("book", "--nodes", "3", "--start", when, "--duration", "1h", "--script", "docker.io/alice/ping:1")
    assert code == 1 and "Could not allocate" in err and "HTTP 409" in err, (out, err)
    assert "The earliest windows where it fits:" in out and "Book one with --start" in out
    code, out, err = marvin("--json", "book", "--nodes", "3", "--start", when, "--duration", "1h", "--script", "x/y")
    refusal = json.loads(out)
    assert code == 1 and refusal["suggestions"] and refusal["suggestions"][0]["start"] >= start + 3600

    # a dry run books nothing
    code, out, err = marvin("book", "--count", "2", "--filter", "type:testing", "--duration", "30m",
                            "--script", "docker.io/alice/ping", "--dry-run")
    assert code == 0 and out.startswith("Dry run: would book 2 node(s) x 1 interval(s)"), (out, err)
    assert sorted(r[0] for r in rows(out.split("\n", 1)[1])) == ["1", "2"]

    # daily for three days
    code, out, err = marvin("book", "--nodes", "4", "--start", when, "--duration", "30m", "--script", "x/daily",
                            "--recur", "daily", "--until", datetime.fromtimestamp(start + 3 * 86400 - 60).astimezone().isoformat())
    assert code == 0 and "1 node(s) x 3 interval(s)" in out, (out, err)
    daily = int(out.split()[1])

    listed = marvin.json("experiments")
    assert {expid, daily} <= {e["id"] for e in listed}
    code, out, err = marvin("experiments")
    assert any(r[0] == str(expid) and r[1] == "ping" for r in rows(out)), out

    code, out, err = marvin("show", str(daily))
    assert code == 0, err
    assert f"Experiment {daily} 'daily' (active)" in out
    shown = rows(out[out.index("SCHEDULE"):])
    assert len(shown) == 3 and all(r[1] == "4" and r[-1] == "defined" for r in shown)
    # local times: the first window starts at the local rendering of `start`
    assert datetime.fromtimestamp(start).strftime("%Y-%m-%d %H:%M") in out

    code, out, err = marvin("cancel", str(daily))
    assert code == 0 and f"Experiment {daily}: 3 schedule(s) canceled, 0 aborted, archived." in out, (out, err)
    assert daily not in {e["id"] for e in marvin.json("experiments")}
    assert daily in {e["id"] for e in marvin.json("experiments", "--all")}
    code, out, err = marvin("cancel", str(expid))
    assert code == 0, err


def test_watchFollowsTheNode(marvin):
    """
    The node heartbeats and reports between polls; watch prints one line per
    change and waits longer while nothing changes.
    """
    http = marvin.http
    code, out, err = marvin("book", "--nodes", "1", "--duration", "10m", "--script", "docker.io/alice/watched")
    assert code == 0, (out, err)
    expid = int(out.split()[1])
    steps = []

    def heartbeatAndDeploy():
        status, body = http.call("PUT", "/v1/resources/1", who="node", form={"maintenance": "0"})
        assert status == 200, body
        [task] = [t for t in body["tasks"] if t["expid"] == expid]
        steps.append(str(task["id"]))
        report("deployed")

    def report(status):
        code, body = http.call("PUT", f"/v1/schedules/{steps[0]}", who="node", body={"status": status})
        assert code == 200, body

    plays = iter([heartbeatAndDeploy, lambda: report("started"), lambda: None, lambda: report("finished")])
    marvin.onSleep = lambda: next(plays)()
    marvin.sleeps.clear()
    try:
        code, out, err = marvin("watch", "--poll", str(expid))
    finally:
        marvin.onSleep = None
    assert code == 0, err
    assert marvin.sleeps == [10.0, 10.0, 10.0, 15.0]
    lines = out.splitlines()
    assert "[--------------------] 0/1 final  defined 1" in lines[0]
    assert lines[1].strip() == f"schedule {steps[0]} on node 1: defined"
    assert "requested -> deployed" in out or "defined -> deployed" in out
    assert "started -> finished" in out and "[####################] 1/1 final  finished 1" in out

    # a watched experiment already over: one JSON line, no poll
    marvin.sleeps.clear()
    code, out, err = marvin("--json", "watch", str(expid))
    assert code == 0 and marvin.sleeps == []
    [line] = out.splitlines()
    assert json.loads(line)["final"] == 1 and json.loads(line)["changed"] == {steps[0]: "finished"}


def test_watchHeldByTheServer(marvin):
    """
    Without C{--poll}, watch holds one request at a time on the server
    (C{wait=change}): it never sleeps, and sees the node's reports, made
    meanwhile from another thread, as they commit.
    """
    http = marvin.http
    code, out, err = marvin("book", "--nodes", "1", "--duration", "10m", "--script", "docker.io/alice/held")
    assert code == 0, (out, err)
    expid = int(out.split()[1])
    status, body = http.call("PUT", "/v1/resources/1", who="node", form={"maintenance": "0"})
    [task] = [t for t in body["tasks"] if t["expid"] == expid]

    def node():
        for status in ("deployed", "started", "finished"):
            code, body = http.call("PUT", f"/v1/schedules/{task['id']}", who="node", body={"status": status})
            assert code == 200, body

    worker = threading.Thread(target=node)
    marvin.sleeps.clear()
    worker.start()
    try:
        code, out, err = marvin("watch", str(expid))
    finally:
        worker.join(30)
    assert code == 0, err
    assert marvin.sleeps == []
    assert "[####################] 1/1 final  finished 1" in out
    # The node may finish before watch's first read: then the only line is
    # the final state, not a transition into it.
    last = out.splitlines()[-1].strip()
    assert last.endswith("-> finished") or last.endswith(": finished"), out


def test_errorsAndExitCodes(marvin, tmp_path):
    code, out, err = marvin("book", "--count", "1", "--duration", "3 parsecs", "--script", "x/y")
    assert code == 2 and "unknown unit 'parsecs'" in err
    code, out, err = marvin("book", "--count", "1", "--duration", "5m", "--start", "yesterday-ish", "--script", "x/y")
    assert code == 2 and "not a time" in err
    code, out, err = marvin("show", "987654")
    assert code == 1 and "HTTP 404" in err, err
    code, out, err = marvin("--json", "show", "987654")
    assert code == 1 and "message" in json.loads(out)
    code, out, err = marvin("book", "--count", "1", "--duration", "5m", "--script", "x/y", "--recur", "daily")
    assert code == 2 and "--recur needs --until" in err
    # an unknown certificate is refused by the server with its message
    code, out, err = marvin("whoami", who="server")
    assert code == 1 and "HTTP 401" in err, err
    # nobody listening: exit 3
    environ = dict(marvin.environ("user"), MARVIN_URL="https://localhost:1")
    err = io.StringIO()
    assert main(["whoami"], out=io.StringIO(), err=err, environ=environ) == 3
    assert "cannot reach https://localhost:1" in err.getvalue()
    # settings from a file; flags win over it
    settings = tmp_path / "cli.yaml"
    settings.write_text(f"url: https://localhost:1\ncert: {marvin.pki.certificate('user')}\n"
                        f"key: {marvin.pki.key('user')}\nca: {marvin.pki.certificate('ca')}\n")
    out = io.StringIO()
    code = main(["--config", str(settings), "--url", f"https://localhost:{marvin.ports['https']}", "--json", "whoami"],
                out=out, err=io.StringIO(), environ={})
    assert code == 0 and json.loads(out.getvalue())["user"]["name"] == "alice"


def test_consoleScript(marvin):
    """
    C{python -m cli} (what the C{marvin} entry point runs) in a child process.
    """
    env = dict(os.environ, **marvin.environ("user"), PYTHONPATH=ROOT)
    done = subprocess.run([sys.executable, "-m", "cli", "--json", "whoami"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["user"]["name"] == "alice"
    done = subprocess.run([sys.executable, "-m", "cli", "show", "987654"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr.startswith("marvin show: ") and "HTTP 404" in done.stderr
