"""
Heartbeat throughput of one marvinctld process (not a test).

10,000 simulated nodes heartbeat (C{PUT /v1/resources/<id>}, the form marvind
sends, with three modem interfaces) through the plain listener as a trusted
TLS proxy would pass them. The load client is another process on loopback:
open loop (requests are due at fixed times, and latency counts from when a
request was due, so a slow server is not hidden by a waiting client), with a
bounded number of keep-alive connections, bounded in count and time.

Phase 1: the target, 10,000 nodes at a 60 s period (167 heartbeats/s), for
C{--duration} seconds: p50/p99 latency, controller CPU and RSS.
Phase 2: rising rates for C{--step} seconds each, up to the first rate that is
not sustained (achieved rate under 95% of the offered one, p99 over 100 ms, or
errors): the maximum sustained rate is the last rate that was.

Target: 167/s with p99 under 100 ms and RSS under 200 MB.

Run: python bench/bench_heartbeat.py [--nodes 10000] [--duration 60]
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

TICK = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")


def fingerprint(i: int) -> str:
    return hashlib.sha1(f"bench-node-{i}".encode()).hexdigest()


# -- set-up -------------------------------------------------------------------


def populate(path: str, nodes: int, tasks: int) -> None:
    """
    Nodes, one node user each, and C{tasks} nodes with a task in the next
    24 h (so a share of heartbeats hand one out), written straight into the
    SQLite file through the store's transaction API. (Bulk rows, not the
    inventory sync or allocation: both are quadratic in the node count today,
    see the report.)
    """
    from am.core import quotas
    from am.core.model import Experiment, Node, Schedule, User
    from am.core.policy import Policy
    from am.store.sqlite import SQLiteDatabase

    now = int(time.time())
    policy = Policy(maintenance=(), requireHeartbeat=False)
    db = SQLiteDatabase(path)

    def fill(txn):
        for i in range(1, nodes + 1):
            txn.putNode(Node(id=str(i), hostname=f"bench-{i}",
                             inventoryTags={"type": "testing", "country": "se", "model": "apu2d"}))
            userid = txn.addUser(User(name=f"Node {i}", role="node", fingerprint=fingerprint(i), nodeid=str(i)))
            quotas.currentQuotas(txn, userid, now, policy)
        owner = txn.addUser(User(name="bench", role="user", fingerprint="b" * 40))
        quotas.currentQuotas(txn, owner, now, policy)
        step = max(1, nodes // max(1, tasks))
        for k in range(tasks):
            start = now + 3600 + (k % 10) * 60
            expid = txn.addExperiment(Experiment(name=f"t{k}", ownerid=owner, script="docker.io/bench/x",
                                                 start=start, stop=start + 1800, created=now))
            txn.addSchedules([Schedule(expid=expid, nodeid=str(1 + k * step), start=start, stop=start + 1800,
                                       deploymentOptions={"script": "docker.io/bench/x"})])

    db.run(fill)
    db.close()


def writeConfig(directory: str) -> str:
    import yaml

    path = os.path.join(directory, "marvinctld.conf")
    with open(path, "w") as f:
        yaml.safe_dump(
            {
                "database": os.path.join(directory, "marvin.db"),
                "listen": {"http": {"address": "127.0.0.1", "port": 0}},
                "trusted_proxies": ["127.0.0.1/32"],
                "scheduling": {"require_heartbeat": False, "maintenance_windows": []},
                # one line per request, as in production, to a file
                "log": {"file": os.path.join(directory, "marvinctld.log"), "level": "info"},
            },
            f,
        )
    return path


class Controller:
    """
    The controller under test, as a child process; its port is read from
    the log file it writes.
    """

    def __init__(self, config: str, log: str) -> None:
        env = dict(os.environ, PYTHONPATH=ROOT)
        self.proc = subprocess.Popen([sys.executable, "-m", "am.ctl.service", "--config", config], cwd=ROOT, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        self.port = None
        while self.port is None:
            if self.proc.poll() is not None:
                raise SystemExit(f"marvinctld exited: {self.proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                raise SystemExit("marvinctld did not start in 60 s")
            if os.path.exists(log):
                with open(log) as f:
                    match = re.search(r"listening for http on [0-9.]+:(\d+)", f.read())
                if match:
                    self.port = int(match.group(1))
                    break
            time.sleep(0.05)

    def cpuSeconds(self) -> float:
        with open(f"/proc/{self.proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / TICK

    def memory(self) -> tuple[float, float]:
        """
        Current and peak resident set size, in MB.
        """
        values = {}
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmRSS", "VmHWM"):
                    values[key] = int(value.split()[0]) / 1024
        return values["VmRSS"], values["VmHWM"]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# -- the load client (runs in its own process) ----------------------------------------


INTERFACES = json.dumps([
    {"iccid": "8946000000000000001", "opname": "telia", "host": 123456, "netns": 65432},
    {"iccid": "8946000000000000002", "opname": "tele2", "host": 234567, "netns": 76543},
    {"iccid": "8946000000000000003", "opname": "telenor", "host": 345678, "netns": 87654},
])


def heartbeatRequest(nodeid: int) -> bytes:
    from urllib.parse import urlencode

    body = urlencode({"maintenance": "0", "limit": "3", "interfaces": INTERFACES}).encode()
    head = (
        f"PUT /v1/resources/{nodeid} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\nVERIFIED: SUCCESS\r\nSSL_FINGERPRINT: {fingerprint(nodeid)}\r\n\r\n"
    )
    return head.encode() + body


async def readResponse(reader: asyncio.StreamReader) -> int:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
    if "content-length" in headers:
        await reader.readexactly(int(headers["content-length"]))
    elif headers.get("transfer-encoding", "").lower() == "chunked":
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    return status


async def runLoad(port: int, nodes: int, rate: float, duration: float, connections: int, first: int) -> dict:
    """
    Offer C{rate} heartbeats/s for C{duration} s over at most C{connections}
    keep-alive connections; latency counts from when each request was due.
    """
    due = [i / rate for i in range(int(rate * duration))]
    idle: asyncio.Queue = asyncio.Queue()
    opened = 0
    latencies: list[float] = []
    errors: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    start = loop.time() + 0.2

    async def connection():
        nonlocal opened
        if idle.empty() and opened < connections:
            opened += 1
            return await asyncio.open_connection("127.0.0.1", port)
        return await idle.get()

    async def one(k: int, at: float) -> None:
        delay = start + at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        pair = await connection()
        reader, writer = pair
        nodeid = 1 + (first + k) % nodes
        try:
            writer.write(heartbeatRequest(nodeid))
            status = await asyncio.wait_for(readResponse(reader), 30)
        except Exception as e:
            errors[type(e).__name__] = errors.get(type(e).__name__, 0) + 1
            writer.close()
            nonlocal opened
            opened -= 1
            return
        latencies.append(loop.time() - (start + at))
        if status != 200:
            errors[f"HTTP {status}"] = errors.get(f"HTTP {status}", 0) + 1
        idle.put_nowait(pair)

    began = time.monotonic()
    await asyncio.gather(*(one(k, at) for k, at in enumerate(due)))
    elapsed = time.monotonic() - began - 0.2
    while not idle.empty():
        idle.get_nowait()[1].close()
    latencies.sort()

    def pct(q: float) -> float:
        return latencies[min(len(latencies) - 1, int(q * len(latencies)))] * 1000 if latencies else float("nan")

    return {
        "offered": rate, "sent": len(due), "answered": len(latencies), "achieved": len(latencies) / elapsed,
        "p50_ms": pct(0.50), "p99_ms": pct(0.99), "max_ms": latencies[-1] * 1000 if latencies else float("nan"),
        "errors": errors, "connections": opened,
    }


def clientMain(args: argparse.Namespace) -> None:
    result = asyncio.run(runLoad(args.port, args.nodes, args.rate, args.duration, args.connections, args.first))
    print(json.dumps(result))


def phase(controller: Controller, args: argparse.Namespace, rate: float, duration: float, first: int) -> dict:
    """
    One load phase from a separate client process, with the controller's CPU
    and memory sampled around it.
    """
    cpu0, t0 = controller.cpuSeconds(), time.monotonic()
    peak = [0.0]
    done = threading.Event()

    def sample():
        while not done.wait(0.5):
            peak[0] = max(peak[0], controller.memory()[0])

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    client = subprocess.run(
        [sys.executable, __file__, "--client", "--port", str(controller.port), "--nodes", str(args.nodes),
         "--rate", str(rate), "--duration", str(duration), "--connections", str(args.connections),
         "--first", str(first)],
        capture_output=True, text=True, timeout=duration * 4 + 120,
    )
    done.set()
    sampler.join()
    if client.returncode != 0:
        raise SystemExit(f"load client failed: {client.stderr}")
    result = json.loads(client.stdout)
    result["cpu_percent"] = 100 * (controller.cpuSeconds() - cpu0) / (time.monotonic() - t0)
    rss, hwm = controller.memory()
    result["rss_mb"], result["rss_peak_mb"] = max(rss, peak[0]), hwm
    return result


def sustained(result: dict) -> bool:
    return not result["errors"] and result["achieved"] >= 0.95 * result["offered"] and result["p99_ms"] <= 100


def line(result: dict) -> str:
    errors = ", ".join(f"{k}: {v}" for k, v in result["errors"].items()) or "none"
    return (
        f"offered {result['offered']:7.0f}/s  achieved {result['achieved']:7.1f}/s  "
        f"p50 {result['p50_ms']:7.1f} ms  p99 {result['p99_ms']:7.1f} ms  max {result['max_ms']:7.1f} ms  "
        f"CPU {result['cpu_percent']:5.1f}%  RSS {result['rss_mb']:6.1f} MB (peak {result['rss_peak_mb']:.1f})  "
        f"errors {errors}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", type=int, default=10000)
    parser.add_argument("--period", type=float, default=60.0, help="heartbeat period of each node (s)")
    parser.add_argument("--duration", type=float, default=60.0, help="length of the target phase (s)")
    parser.add_argument("--ramp", default="250,500,750,1000,1500,2000,3000", help="rates of phase 2 (1/s)")
    parser.add_argument("--step", type=float, default=10.0, help="length of each ramp step (s)")
    parser.add_argument("--connections", type=int, default=64, help="most keep-alive connections")
    parser.add_argument("--tasks", type=int, default=1000, help="nodes with a task in the next 24 h")
    parser.add_argument("--client", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--rate", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--first", type=int, default=0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.client:
        return clientMain(args)

    with tempfile.TemporaryDirectory(prefix="marvin-bench-") as directory:
        t0 = time.monotonic()
        populate(os.path.join(directory, "marvin.db"), args.nodes, args.tasks)
        print(f"set-up: {args.nodes} nodes, {args.nodes} node users, {args.tasks} tasks in "
              f"{time.monotonic() - t0:.1f} s", flush=True)
        controller = Controller(writeConfig(directory), os.path.join(directory, "marvinctld.log"))
        try:
            rss, _ = controller.memory()
            print(f"controller pid {controller.proc.pid}, port {controller.port}, RSS at start {rss:.1f} MB")
            target = args.nodes / args.period
            print(f"\nphase 1: {args.nodes} nodes every {args.period:g} s = {target:.0f} heartbeats/s "
                  f"for {args.duration:g} s")
            result = phase(controller, args, target, args.duration, 0)
            print("  " + line(result), flush=True)
            ok = sustained(result) and result["rss_peak_mb"] < 200
            print(f"  target (p99 < 100 ms, RSS < 200 MB): {'met' if ok else 'NOT met'}")

            print(f"\nphase 2: rising rates, {args.step:g} s each")
            best = target if sustained(result) else 0.0
            first = int(target * args.duration)
            for rate in (float(r) for r in args.ramp.split(",")):
                result = phase(controller, args, rate, args.step, first)
                first += int(rate * args.step)
                print("  " + line(result), flush=True)
                if not sustained(result):
                    break
                best = rate
            print(f"\nmaximum sustained rate: {best:.0f} heartbeats/s "
                  f"(= {best * args.period:.0f} nodes at a {args.period:g} s period)")
            print(f"controller RSS at the end: {controller.memory()[0]:.1f} MB, peak {controller.memory()[1]:.1f} MB")
        finally:
            controller.stop()


if __name__ == "__main__":
    main()
