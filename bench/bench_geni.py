"""
Benchmark of the GENI face over real TLS (not a test).

A real marvinctld process with 1,000 nodes serves ListResources with one
verified user credential and geni_compressed (omni's default), called by one
sequential client: over one kept-alive TLS connection, with a new connection
and full handshake per call (omni's pattern), and with a new connection that
resumes its TLS session from a ticket (jFed's Java client). Prints median ms,
calls/s and the controller's CPU time per call for each, then where the
server's time goes (bench/geni_breakdown.py), each goal met or not, and the
machine's load. Goals: new-connection median <= 3 ms, kept-alive >= 1,200
calls/s. Wall-clock figures move with the machine's load; --callgrind counts
the server's instructions per call instead (steady, for comparing changes),
--profile shows its Python functions by CPU time.

Run: python bench/bench_geni.py [--calls N] [--am-key ec|rsa] [--uncompressed]
       [--only MODE] [--callgrind DIR | --profile FILE]
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
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from am.core.model import Node  # noqa: E402
from am.store.sqlite import SQLiteDatabase  # noqa: E402
from am.devtools import authority  # noqa: E402
from am.devtools.pki import newKey  # noqa: E402
from geni_breakdown import breakdown  # noqa: E402


def freePort() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpuSeconds(pid: int) -> tuple[float, float]:
    """
    The user and system CPU seconds process C{pid} has used.
    """
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def instructions(pid: int, calls: int) -> int:
    """
    The instructions callgrind counted in process C{pid} since it was last
    zeroed, per call; counting stops until turned on again.
    """
    out = subprocess.run(["callgrind_control", "-e", "Ir", str(pid)], check=True, capture_output=True, text=True).stdout
    subprocess.run(["callgrind_control", "-i", "off", str(pid)], check=True, capture_output=True)
    threads = re.findall(r"Th \d+\s+([\d,]+)", out)
    if not threads:
        raise SystemExit(f"cannot read callgrind's totals: {out}")
    return sum(int(t.replace(",", "")) for t in threads) // calls


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--am-key", choices=("ec", "rsa"), default="ec", help="the AM certificate's key type")
    parser.add_argument("--uncompressed", action="store_true", help="ask for the advertisement uncompressed")
    parser.add_argument("--only", choices=("kept-alive", "new connection", "resumed"),
                        help="measure this mode only, without the breakdown")
    parser.add_argument("--callgrind", metavar="DIR", help="run the server under valgrind's callgrind and print "
                        "the instructions it executes per call in each mode (steady: the machine's load does not "
                        "move them); its output goes to DIR")
    parser.add_argument("--profile", metavar="FILE", help="run the server under cProfile (new connections only), "
                        "write its stats to FILE and print the top functions")
    args = parser.parse_args()
    load = os.getloadavg()
    tmp = tempfile.mkdtemp(prefix="marvin-bench-geni-")
    ca = authority.makeCA(tmp, "bench")
    authority.makeAM(tmp, ca, "localhost", key=newKey(args.am_key))
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
        # Under callgrind the run is slow enough for the advertisement cache
        # (60 s) to expire in the middle of a mode: rebuilding it is no
        # per-call cost, so it is kept for the whole run there.
        "geni": {"authority": "bench", "trust_roots": [f"{tmp}/ca-cert.pem"], "ad_cache": 3600 if args.callgrind else 60},
        "log": {"level": "warn"},
    }
    with open(os.path.join(tmp, "ctl.yaml"), "w") as f:
        yaml.safe_dump(config, f)
    env = dict(os.environ, PYTHONPATH=ROOT)
    serve = ([os.path.join(ROOT, "bench", "profiled_server.py"), os.path.abspath(args.profile)] if args.profile
             else ["-m", "am.ctl.service"])
    valgrind = []
    if args.callgrind:
        os.makedirs(args.callgrind, exist_ok=True)
        valgrind = ["valgrind", "--tool=callgrind", "--instr-atstart=no",
                    f"--callgrind-out-file={os.path.abspath(args.callgrind)}/callgrind.out"]
    server = subprocess.Popen([*valgrind, sys.executable, *serve, "--config", os.path.join(tmp, "ctl.yaml")],
                              env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + (600 if args.callgrind else 30)
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
             {"geni_rspec_version": {"type": "GENI", "version": "3"}, "geni_compressed": not args.uncompressed}),
            "ListResources").encode()

        success = re.compile(rb"<name>geni_code</name>\s*<value><int>0</int></value>")

        def call(connection: http.client.HTTPSConnection, parse: bool = False) -> None:
            # The client only checks geni_code (in the first bytes) so that the
            # figures measure the server, not the client's XML-RPC decoding;
            # every 50th answer is decoded in full.
            connection.request("POST", "/xmlrpc/am/3.0", body, {"Content-Type": "text/xml"})
            data = connection.getresponse().read()
            assert success.search(data[:400]), data[:400]
            sizes.append(len(data))
            if parse:
                (answer,), _ = xmlrpc.client.loads(data)
                answers.append(answer["value"])
            if isinstance(connection, Resuming):
                # TLS 1.3 tickets come after the handshake: keep the session
                # once the answer has been read, so the ticket is in it.
                reused.append(connection.sock.session_reused)
                session[0] = connection.sock.session

        sizes: list[int] = []
        answers: list[str] = []
        session: list = [None]
        reused: list[bool] = []

        class Resuming(http.client.HTTPSConnection):
            """
            A new connection per call that offers the last TLS session back.
            """

            def connect(self) -> None:
                raw = socket.create_connection((self.host, self.port))
                raw.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                self.sock = context.wrap_socket(raw, session=session[0])

        warm = http.client.HTTPSConnection("127.0.0.1", port, context=context)
        call(warm)
        results = {}
        modes = {"kept-alive": None, "new connection": http.client.HTTPSConnection, "resumed": Resuming}
        if args.only or args.profile:
            only = args.only or "new connection"
            modes = {only: modes[only]}
        counted: dict[str, int] = {}
        for mode, fresh in modes.items():
            if args.callgrind:
                for _ in range(5):  # warm: caches filled, the first ticket issued
                    connection = warm if fresh is None else fresh("127.0.0.1", port, context=context)
                    call(connection)
                    if fresh is not None:
                        connection.close()
                subprocess.run(["callgrind_control", "-z", str(server.pid)], check=True, capture_output=True)
                subprocess.run(["callgrind_control", "-i", "on", str(server.pid)], check=True, capture_output=True)
            times = []
            cpu0, wall0 = cpuSeconds(server.pid), time.perf_counter()
            connection = warm
            for _ in range(args.calls):
                t0 = time.perf_counter()
                if fresh is not None:
                    connection = fresh("127.0.0.1", port, context=context)
                call(connection, parse=len(times) % 50 == 0)
                if fresh is not None:
                    connection.close()
                times.append((time.perf_counter() - t0) * 1000)
            wall = time.perf_counter() - wall0
            cpu1 = cpuSeconds(server.pid)
            if args.callgrind:
                counted[mode] = instructions(server.pid, args.calls)
            user, system = ((b - a) / args.calls * 1000 for a, b in zip(cpu0, cpu1))
            results[mode] = (statistics.median(times), args.calls / wall, user + system, user, system)
        kind = "uncompressed" if args.uncompressed else "geni_compressed"
        print("load average (1, 5, 15 min) at the start: {:.2f} {:.2f} {:.2f} on {} cores".format(*load, os.cpu_count()))
        print(f"ListResources, {args.nodes} nodes, {kind}, one verified user credential, AM key {args.am_key}: "
              f"request {len(body)} bytes, answer {sizes[-1]} bytes")
        print(f"{'mode':>16} {'median ms':>10} {'calls/s':>9} {'server CPU ms/call':>19} {'(user + system)':>16}")
        for mode, (median, rate, cpu, user, system) in results.items():
            print(f"{mode:>16} {median:>10.2f} {rate:>9.1f} {cpu:>19.2f} {user:>8.2f} + {system:<5.2f}")
        if reused:
            print(f"{'':>16} resumed: {sum(reused)} of {len(reused)} handshakes reused the session")
        for mode, count in counted.items():
            print(f"{mode:>16} {count:>12,} instructions per call on the server (callgrind)")
        if (args.only or args.callgrind) and not args.profile:
            return
        if args.profile:
            server.terminate()
            server.wait(timeout=30)
            import pstats

            pstats.Stats(args.profile).sort_stats("tottime").print_stats(40)
            return
        print("\nWhere the server's time goes (in process, median server CPU ms):")
        rows = breakdown(ca, alice, credential, body, answers[-1], f"urn:publicid:IDN+bench+authority+am")
        for name, ms in rows:
            print(f"  {name:<52} {ms:>7.3f}")
        perCall = [ms for name, ms in rows if name.startswith(("client certificate", "XML-RPC", "credential check, cached"))]
        hand = dict(rows)[f"TLS 1.3 full handshake, AM key {'ECDSA P-256' if args.am_key == 'ec' else 'RSA-2048'}"]
        rest = results["new connection"][2] - hand - sum(perCall)
        print(f"  {'rest of a new-connection call (Twisted HTTP, TLS records, sockets, ad cache)':<52} {rest:>7.3f}")
        newMedian, keptRate = results["new connection"][0], results["kept-alive"][1]
        print(f"goal: new-connection median <= 3 ms: {newMedian:.2f} ms, {'met' if newMedian <= 3.0 else 'NOT met'}")
        print(f"goal: kept-alive >= 1,200 calls/s: {keptRate:,.0f} calls/s, {'met' if keptRate >= 1200 else 'NOT met'}")
        print("load average (1, 5, 15 min) at the end: {:.2f} {:.2f} {:.2f} on {} cores".format(*os.getloadavg(), os.cpu_count()))
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
