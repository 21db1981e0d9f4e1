"""
The set-up of the REST load benches (L{bench_rest_load}, L{bench_scaleout}): a
fresh store with nodes, their users, a bench user and bulk tasks, the
controller's configuration and inventory, and the controller processes with
their CPU and memory read from /proc.
"""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
import time
import urllib.parse
from typing import Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TICK = os.sysconf("SC_CLK_TCK")
USER_FINGERPRINT = "b" * 40
SCRIPT = "docker.io/bench/x"
BIG_QUOTA = 10**15



def nodeFingerprint(i: int) -> str:
    return hashlib.sha1(f"bench-node-{i}".encode()).hexdigest()


def interfaces(i: int) -> list[dict]:
    return [
        {"iccid": f"89460{i:07d}{k}", "opname": op, "host": 100000 + i * 2 + k, "netns": 200000 + i * 2 + k}
        for k, op in enumerate(("telia", "tele2"))
    ]


def tags(i: int) -> dict[str, str]:
    return {"type": "testing", "country": ("se", "no", "es", "it")[i % 4], "model": "apu2d"}




def referenceLoop() -> float:
    """
    Milliseconds one core takes for a fixed pure-Python loop (best of three):
    printed with the figures, so runs on different boxes (or one box in a
    slower spell) can be told apart. Lower is faster.
    """
    best = float("inf")
    for _ in range(3):
        began = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        best = min(best, time.perf_counter() - began)
    return best * 1000


def defaultPostgres() -> str:
    """
    The PostgreSQL server a bench uses when none is named: the test suite's
    (C{MARVIN_TEST_POSTGRES}), else the local one's socket.
    """
    return os.environ.get("MARVIN_TEST_POSTGRES") or "postgresql:///postgres?host=/var/run/postgresql"


def databaseUrl(base: str, name: str) -> str:
    """
    C{base} with its database name replaced by C{name}.
    """
    parts = urllib.parse.urlsplit(base)
    return f"{parts.scheme}://{parts.netloc}/{name}" + (f"?{parts.query}" if parts.query else "")


def createDatabase(base: str, name: str, drop: bool = False) -> None:
    import psycopg

    with psycopg.connect(base, autocommit=True) as connection:
        connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        if not drop:
            connection.execute(f'CREATE DATABASE "{name}"')


def openStore(database: str):
    if database.startswith("postgres"):
        from am.store.postgres import PostgresDatabase

        return PostgresDatabase(database)
    from am.store.sqlite import SQLiteDatabase

    return SQLiteDatabase(database)


def populate(database: str, nodes: int, tasks: int, now: int, health: bool = True) -> tuple[int, int]:
    """
    Nodes (as the inventory file lists them, with 2 interfaces and a fresh
    heartbeat), their node users, the bench user and C{tasks} one-node tasks:
    task k on node k mod N, 30 min long, the node's tasks 4 h apart from
    now + 2 h and staggered across nodes, so any window within them holds a
    share proportional to its length. Returns the first and last task start.

    With C{health}, every node has a health record, as on a testbed that has
    run a while (a heartbeat gap and a failed task each, older than the heal
    window: no penalty, so the ranking is the same as without).
    """
    from am.core import quotas
    from am.core.model import Experiment, Node, NodeHealth, Schedule, User
    from am.core.policy import Policy

    policy = Policy(maintenance=(), requireHeartbeat=False, defaultQuotaTime=BIG_QUOTA,
                    defaultQuotaData=BIG_QUOTA, defaultQuotaStorage=BIG_QUOTA)
    db = openStore(database)
    first, spacing = now + 7200, 14400

    def fill(txn):
        for i in range(1, nodes + 1):
            txn.putNode(Node(id=str(i), hostname=f"bench-{i}", heartbeat=now, inventoryTags=tags(i),
                             interfaces=interfaces(i)))
            txn.addUser(User(name=f"Node {i}", role="node", fingerprint=nodeFingerprint(i), nodeid=str(i)))
            if health:
                old = now - policy.healWindow - 3600 - i
                txn.putHealth(NodeHealth(str(i), gaps=1, lastGap=old, failures=1, lastFailure=old - 60))
        owner = txn.addUser(User(name="bench", role="user", fingerprint=USER_FINGERPRINT))
        quotas.currentQuotas(txn, owner, now, policy)
        for k in range(tasks):
            node = k % nodes
            start = first + (k // nodes) * spacing + node * spacing // nodes
            expid = txn.addExperiment(Experiment(name=f"t{k}", ownerid=owner, script=SCRIPT,
                                                 start=start, stop=start + 1800, created=now))
            txn.addSchedules([Schedule(expid=expid, nodeid=str(node + 1), start=start, stop=start + 1800,
                                       deploymentOptions={"script": SCRIPT})])

    db.run(fill)
    db.close()
    return first, first + ((tasks - 1) // max(1, nodes)) * spacing + spacing


def writeConfig(directory: str, name: str, database: str, inventory: str, workers: int = 1) -> str:
    import yaml

    path = os.path.join(directory, f"{name}.conf")
    with open(path, "w") as f:
        yaml.safe_dump({
            **({"workers": workers} if workers > 1 else {}),
            "database": database,
            "listen": {"http": {"address": "127.0.0.1", "port": 0}},
            "trusted_proxies": ["127.0.0.1/32"],
            "inventory": {"file": inventory, "period": 3600},
            "scheduling": {"require_heartbeat": False, "maintenance_windows": [],
                           "default_quota_time": BIG_QUOTA, "default_quota_data": BIG_QUOTA,
                           "default_quota_storage": BIG_QUOTA},
            # one line per request to a file, as in production
            "log": {"file": os.path.join(directory, f"{name}.log"), "level": "info"},
        }, f)
    return path


def writeInventory(directory: str, nodes: int) -> str:
    import yaml

    path = os.path.join(directory, "inventory.yaml")
    with open(path, "w") as f:
        yaml.safe_dump({"nodes": [{"id": str(i), "hostname": f"bench-{i}", "status": "active", "tags": tags(i)}
                                  for i in range(1, nodes + 1)]}, f)
    return path


def _stat(pid: int) -> list[str]:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()
    except OSError:
        return []


def _parent(pid: int) -> int:
    fields = _stat(pid)
    return int(fields[1]) if fields else 0


def _cpu(pid: int) -> float:
    fields = _stat(pid)
    return (int(fields[11]) + int(fields[12])) / TICK if fields else 0.0


class Controller:
    """
    One marvinctld child process (with its workers); its port is read from the log it writes.
    """

    def __init__(self, config: str, log: str, profile: Optional[str] = None, workers: int = 1) -> None:
        env = dict(os.environ, PYTHONPATH=ROOT)
        command = [sys.executable, "-m", "am.ctl.service"]
        if profile:
            command = [sys.executable, os.path.join(ROOT, "bench", "profiled_server.py"), profile]
        self.proc = subprocess.Popen(command + ["--config", config], cwd=ROOT,
                                     env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        self.port = 0
        while not self.port:
            if self.proc.poll() is not None:
                raise SystemExit(f"marvinctld exited: {self.proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                self.stop()
                raise SystemExit("marvinctld did not start in 60 s")
            if os.path.exists(log):
                with open(log) as f:
                    text = f.read()
                match = re.search(r"listening for http on [0-9.]+:(\d+)", text)
                if match and text.count("serving (pid") >= workers - 1:
                    self.port = int(match.group(1))
                    break
            time.sleep(0.05)
        # The main process and its workers (children of it).
        self.pids = [self.proc.pid] + sorted(
            int(entry) for entry in os.listdir("/proc") if entry.isdigit() and _parent(int(entry)) == self.proc.pid
        )

    def cpuEach(self) -> list[float]:
        """
        CPU seconds of the main process and of each worker.
        """
        return [_cpu(pid) for pid in self.pids]

    def cpuSeconds(self) -> float:
        return sum(self.cpuEach())

    def rssMB(self) -> float:
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return float("nan")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
