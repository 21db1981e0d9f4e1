"""
Benchmark of the GENI face over real TLS (not a test).

A real marvinctld process with 1,000 nodes serves ListResources with one
verified user credential, called sequentially over one kept-alive TLS connection
and with a new TLS connection per call. Prints median ms and calls/s per mode
and the controller's CPU time per call. Targets: at least 300 calls/s kept
alive and 50 calls/s with a new connection per call, on one core.

Run: python bench/bench_geni.py [--calls N]
"""

from __future__ import annotations

import argparse
import http.client
import os
import re
import socket
import ssl
import statistics
import subprocess
import sys
import tempfile
import time
import xmlrpc.client

import yaml

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from am.core.model import Node  # noqa: E402
from am.store.sqlite import SQLiteDatabase  # noqa: E402
from am.devtools import authority  # noqa: E402


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpuSeconds(pid: int) -> float:
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--nodes", type=int, default=1000)
    args = parser.parse_args()
    tmp = tempfile.mkdtemp(prefix="marvin-bench-geni-")
    ca = authority.makeCA(tmp, "bench")
    authority.makeAM(tmp, ca, "localhost")
    alice = authority.makeUser(tmp, ca, "alice")
    credential = authority.issueUserCredential(ca, alice)
    database = os.path.join(tmp, "marvin.db")
    db = SQLiteDatabase(database)
    db.run(lambda txn: [txn.putNode(Node(id=str(i), hostname=f"node{i}", heartbeat=int(time.time()),
                                         inventoryTags={"type": "testing", "country": "se", "model": "apu2d"}))
                        for i in range(args.nodes)])
    db.close()
    port = freePort()
    config = {
        "database": database,
        "listen": {"tls": {"address": "127.0.0.1", "port": port, "certificate": f"{tmp}/am-cert.pem",
                           "key": f"{tmp}/am-key.pem", "client_ca": [f"{tmp}/ca-cert.pem"]}},
        "geni": {"authority": "bench", "trust_roots": [f"{tmp}/ca-cert.pem"]},
        "log": {"level": "warn"},
    }
    with open(os.path.join(tmp, "ctl.yaml"), "w") as f:
        yaml.safe_dump(config, f)
    env = dict(os.environ, PYTHONPATH=ROOT)
    server = subprocess.Popen([sys.executable, "-m", "am.ctl.service", "--config", os.path.join(tmp, "ctl.yaml")],
                              env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.time() > deadline or server.poll() is not None:
                    raise SystemExit("marvinctld did not start")
                time.sleep(0.1)
        context = ssl.create_default_context(cafile=f"{tmp}/ca-cert.pem")
        context.check_hostname = False  # the AM certificate carries a GENI URN; the chain is checked
        context.load_cert_chain(f"{tmp}/user-alice-cert.pem", f"{tmp}/user-alice-key.pem")
        body = xmlrpc.client.dumps(
            ([{"geni_type": "geni_sfa", "geni_version": "3", "geni_value": credential}],
             {"geni_rspec_version": {"type": "GENI", "version": "3"}}), "ListResources").encode()

        success = re.compile(rb"<name>geni_code</name>\s*<value><int>0</int></value>")

        def call(connection: http.client.HTTPSConnection, parse: bool = False) -> None:
            # The client only checks geni_code (in the first bytes) so that the
            # figures measure the server, not the client's XML-RPC decoding;
            # every 50th answer is decoded in full.
            connection.request("POST", "/xmlrpc/am/3.0", body, {"Content-Type": "text/xml"})
            data = connection.getresponse().read()
            assert success.search(data[:400]), data[:400]
            if parse:
                (answer,), _ = xmlrpc.client.loads(data)
                assert answer["value"].startswith("<?xml") or answer["value"].startswith("<rspec")

        warm = http.client.HTTPSConnection("127.0.0.1", port, context=context)
        call(warm)
        results = {}
        for mode in ("kept-alive", "new connection"):
            times = []
            cpu0, wall0 = cpuSeconds(server.pid), time.perf_counter()
            connection = warm
            for _ in range(args.calls):
                t0 = time.perf_counter()
                if mode == "new connection":
                    connection = http.client.HTTPSConnection("127.0.0.1", port, context=context)
                call(connection, parse=len(times) % 50 == 0)
                if mode == "new connection":
                    connection.close()
                times.append((time.perf_counter() - t0) * 1000)
            wall = time.perf_counter() - wall0
            results[mode] = (statistics.median(times), args.calls / wall,
                             (cpuSeconds(server.pid) - cpu0) / args.calls * 1000)
        size = len(body)
        print(f"ListResources, {args.nodes} nodes, one verified user credential ({size} bytes per call)")
        print(f"{'mode':>16} {'median ms':>10} {'calls/s':>9} {'server CPU ms/call':>19}")
        for mode, (median, rate, cpu) in results.items():
            print(f"{mode:>16} {median:>10.2f} {rate:>9.1f} {cpu:>19.2f}")
        ok = results["kept-alive"][1] >= 300 and results["new connection"][1] >= 50
        print(f"targets (>= 300/s kept-alive, >= 50/s new connection): {'PASS' if ok else 'MISS'}")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
