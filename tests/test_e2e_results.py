"""
Results come home, end to end with the real programs over real sockets: the
controller and two node agents (local runtime) as processes. A task writes
files on both nodes; while they upload (a small bandwidth cap keeps them
uploading for a while), one agent is killed with SIGKILL and the controller
is killed too; both come back and the uploads resume where the controller
stands. The owner then lists and downloads every file and the experiment's
tar: byte-identical to what the tasks wrote, within the storage allowance.
The same with the S3-compatible store (moto's server as a subprocess).

Waits are on conditions with deadlines (polling), never fixed sleeps.
"""

from __future__ import annotations

import hashlib
import http.client
import io
import os
import stat
import sys
import tarfile
import time
from typing import Any
from urllib.parse import quote

import pytest
import yaml

from cli.main import main as cli
from tests.s3server import ACCESS, REGION, SECRET, S3Server
from tests.test_e2e_node import PKI, Agent, Controller, schedules
from tests.waiting import waitFor

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOCAL_HOOKS = os.path.join(ROOT, "files", "hooks", "local")
LEAD, DURATION, STORAGE = 3, 8, 200_000

#: What the task writes: file name -> size; the content depends on the node.
FILES = {"data/a.bin": 40_000, "b.txt": 24_000, "empty": 0}

CONTENT = '''
def content(node, name, size):
    seed = f"{node}:{name}:".encode()
    out = bytearray()
    i = 0
    while len(out) < size:
        out += seed + str(i).encode() + b"\\n"
        i += 1
    return bytes(out[:size])
'''
namespace: dict[str, Any] = {}
exec(CONTENT, namespace)
content = namespace["content"]

PROGRAM = f"""#!{sys.executable}
# A task for the local runtime: writes its results once (a restarted task
# finds them there), then waits for its stop.
import os, time
{CONTENT}
results = os.environ["MARVIN_RESULTS_DIR"]
node = os.environ["MARVIN_NODEID"]
for name, size in {FILES!r}.items():
    path = os.path.join(results, name)
    if not os.path.exists(path):
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path + ".tmp", "wb") as f:
            f.write(content(node, name, size))
        os.replace(path + ".tmp", path)
while True:
    time.sleep(1)
"""


def download(client: Any, path: str, fingerprint: str) -> tuple[int, bytes]:
    """
    A raw GET over the plain listener as a trusted proxy's user.
    """
    connection = http.client.HTTPConnection("127.0.0.1", client.ports["http"], timeout=30)
    try:
        connection.request("GET", path, headers={"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": fingerprint})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def partials(spool: str, schedid: str) -> int:
    """
    Bytes of uploads in progress for a schedule in the controller's spool.
    """
    directory = os.path.join(spool, schedid)
    if not os.path.isdir(directory):
        return 0
    return sum(os.path.getsize(os.path.join(directory, n)) for n in os.listdir(directory) if n.endswith(".part"))


@pytest.fixture(params=["local", "s3"])
def results(request: Any, tmp_path: Any) -> Any:
    """
    The controller's results configuration, and the S3 server when needed.
    """
    spool = str(tmp_path / "spool")
    if request.param == "local":
        yield {"store": "local", "directory": str(tmp_path / "results"), "spool": spool, "period": 1}
        return
    server = S3Server()
    secret = tmp_path / "s3-secret"
    secret.write_text(SECRET)
    try:
        server.bucket("marvin-results")
        yield {
            "store": "s3", "spool": spool, "period": 1,
            "s3": {"bucket": "marvin-results", "endpoint": server.url, "region": REGION,
                   "access_key": ACCESS, "secret_key_file": str(secret), "prefix": "e2e/"},
        }
    finally:
        server.stop()


def test_resultsComeHome(tmp_path: Any, results: dict[str, Any]) -> None:
    base = str(tmp_path)
    programs = os.path.join(base, "programs")
    os.makedirs(programs)
    with open(os.path.join(programs, "writer"), "w") as f:
        f.write(PROGRAM)
    os.chmod(os.path.join(programs, "writer"), stat.S_IRWXU)
    pki = PKI(os.path.join(base, "pki"))
    controller = Controller(base, pki)
    controller.document["results"] = results
    controller.write()
    agents: list[Agent] = []
    try:
        _run(base, pki, controller, agents, programs, results["spool"])
    finally:
        for agent in agents:
            if agent.proc is not None:
                agent.kill()
        if controller.process is not None:
            controller.process.kill()


def _run(base: str, pki: PKI, controller: Controller, agents: list[Agent], programs: str, spool: str) -> None:
    client = controller.start()

    def detail() -> str:
        return "\n".join([controller.output()] + [a.output() for a in agents])

    waitFor(lambda: len(client.call("GET", "/v1/resources", who="admin")[1]) == 2, 30, "the inventory", detail)
    for form in (
        {"name": "alice", "ssl": pki.fingerprints["alice"], "role": "user", "project": "e2e"},
        {"name": "Node 1", "ssl": pki.fingerprints["node1"], "role": "node"},
        {"name": "Node 2", "ssl": pki.fingerprints["node2"], "role": "node"},
    ):
        status, body = client.call("POST", "/v1/users", who="admin", form=form)
        assert status == 201, body
    port = controller.document["listen"]["tls"]["port"]
    for nodeid in ("1", "2"):
        agent = Agent(base, nodeid, pki, port, os.path.join(LOCAL_HOOKS, "deploy"))
        with open(agent.config) as f:
            document = yaml.safe_load(f)
        document["hooks"] = {
            action: os.path.join(LOCAL_HOOKS, action) for action in ("deploy", "start", "stop", "check")
        }
        document["hooks"]["environment"] = {"MARVIN_LOCAL_PROGRAMS": programs, "MARVIN_START_SETTLE": "0.1"}
        # Slow enough to be caught mid-upload, small chunks: a few seconds in all.
        document["results"] = {"period": 0.3, "bandwidth": 16_000, "chunk": 4096}
        with open(agent.config, "w") as f:
            yaml.safe_dump(document, f)
        agents.append(agent)
        agent.start()
    one, two = agents

    def heard(nodeid: str) -> bool:
        status, body = client.call("GET", f"/v1/resources/{nodeid}", who="admin")
        return status == 200 and body[0]["heartbeat"] > 0

    waitFor(lambda: heard("1") and heard("2"), 30, "heartbeats from both agents", detail)
    start = int(time.time()) + LEAD
    status, body = client.call(
        "POST", "/v1/experiments", who="alice",
        body={"name": "results", "script": "local/writer", "nodecount": 2, "nodetypes": "",
              "start": start, "duration": DURATION, "options": {"storage": STORAGE}},
    )
    assert status == 201, body
    expid = body["experiment"]
    sid = {nodeid: schedid for nodeid, (schedid, _) in schedules(client, expid, pki).items()}

    # Both nodes are mid-upload: kill agent 1 and the controller, then bring both back.
    waitFor(lambda: partials(spool, sid["1"]) and partials(spool, sid["2"]), 30, "uploads in progress", detail)
    one.kill()
    controller.kill()
    assert partials(spool, sid["1"]) < sum(FILES.values())
    client = controller.start()
    one.start()

    def final() -> bool:
        return {s for _, s in schedules(client, expid, pki).values()} <= {"stopped", "finished"}

    def listed() -> dict[str, dict[str, Any]]:
        found = {}
        for nodeid, schedid in sid.items():
            status, body = client.call("GET", f"/v1/schedules/{schedid}/results", fingerprint=pki.fingerprints["alice"])
            assert status == 200, body
            found[nodeid] = {f["path"]: f for f in body["files"]}
        return found

    expected = {node: {name: content(node, name, size) for name, size in FILES.items()} for node in sid}

    def complete() -> bool:
        have = listed()
        return all(set(have[n]) >= set(FILES) for n in sid)

    waitFor(lambda: final() and complete(), start + DURATION + 30 - time.time(), "every result home", detail)
    # The nodes remove what they shipped, once everything is home (the
    # local runtime's task.log and exit-code too).
    for agent in agents:
        directory = os.path.join(os.path.dirname(agent.state), "tasks", sid[agent.nodeid], "results")
        waitFor(lambda d=directory: not os.path.exists(d), 20, f"node {agent.nodeid} cleaned up", detail)
    have = listed()
    for node, files in expected.items():
        # the local runtime adds task.log and exit-code beside what the task wrote
        assert set(have[node]) - set(files) <= {"task.log", "exit-code"}, (node, have[node], detail())
        assert sum(f["size"] for f in have[node].values()) <= STORAGE
        for name, data in files.items():
            assert have[node][name]["sha256"] == hashlib.sha256(data).hexdigest()
            status, got = download(client, f"/v1/schedules/{sid[node]}/results/{quote(name, safe='')}",
                                   pki.fingerprints["alice"])
            assert status == 200 and got == data, (node, name)
    status, archive = download(client, f"/v1/experiments/{expid}/results.tar", pki.fingerprints["alice"])
    assert status == 200
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    assert set(members) == {f"{sid[n]}-{n}/{path}" for n in sid for path in have[n]}
    for node, files in expected.items():
        for name, data in files.items():
            assert members[f"{sid[node]}-{node}/{name}"] == data
    # The command line fetches and verifies them too; a second run keeps what is there.
    out = os.path.join(base, "fetched")
    environ = {
        "MARVIN_URL": f"https://localhost:{client.ports['https']}", "MARVIN_CERT": pki.certificate("alice"),
        "MARVIN_KEY": pki.key("alice"), "MARVIN_CA": pki.certificate("ca"), "XDG_CONFIG_HOME": "/nonexistent",
    }
    printed, errors = io.StringIO(), io.StringIO()
    assert cli(["results", str(expid), "-o", out], out=printed, err=errors, environ=environ) == 0, errors.getvalue()
    for node, files in expected.items():
        for name, data in files.items():
            with open(os.path.join(out, f"{sid[node]}-{node}", name), "rb") as f:
                assert f.read() == data
    printed = io.StringIO()
    assert cli(["results", str(expid), "-o", out], out=printed, err=errors, environ=environ) == 0
    assert printed.getvalue().startswith("0 file(s) downloaded")
