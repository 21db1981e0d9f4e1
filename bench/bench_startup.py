"""
Start-up time of a real marvinctld with a static inventory of N nodes (not a test).

For each size: a fresh SQLite store (empty, as on a first start, or with the
nodes already there, as on a restart), an inventory file of N nodes with tags
(as bench_rest_load writes it), then C{python -m am.ctl.service}: seconds until
the log says "listening", until it says "inventory applied" (the first sync
over), and the process's CPU seconds at that point; median of C{--rounds}.

Run:  .venv/bin/python bench/bench_startup.py                 # 1,000 and 10,000 nodes
      .venv/bin/python bench/bench_startup.py --root /work/main   # another tree's code, same venv
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "bench"))

import loadsetup as load  # noqa: E402 (the load benches' set-up)


def startOnce(root: str, config: str, log: str) -> tuple[float, float, float]:
    """
    Seconds to "listening", to "inventory applied", and CPU seconds then.
    """
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "am.ctl.service", "--config", config], cwd=root,
                            env=dict(os.environ, PYTHONPATH=root), stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    listening = applied = 0.0
    try:
        while not applied:
            if proc.poll() is not None:
                raise SystemExit(f"marvinctld exited: {proc.stderr.read().decode()}")
            if time.monotonic() - t0 > 300:
                raise SystemExit("marvinctld did not start in 300 s")
            text = open(log).read() if os.path.exists(log) else ""
            if not listening and re.search(r"listening for http", text):
                listening = time.monotonic() - t0
            if re.search(r"inventory applied", text):
                applied = time.monotonic() - t0
            time.sleep(0.01)
        with open(f"/proc/{proc.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / load.TICK
    finally:
        proc.terminate()
        proc.wait(30)
    return listening, applied, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nodes", default="1000,10000", help="comma-separated inventory sizes")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--root", default=ROOT, help="the source tree to run (default: this one)")
    args = parser.parse_args()
    print(f"code: {args.root}; {os.cpu_count()} cores; load {os.getloadavg()[0]:.2f}", flush=True)
    for count in (int(n) for n in args.nodes.split(",")):
        for restart in (False, True):
            rounds = []
            for _ in range(args.rounds):
                with tempfile.TemporaryDirectory(prefix="marvin-start-") as directory:
                    database = os.path.join(directory, "marvin.db")
                    if restart:
                        load.populate(database, count, 0, int(time.time()))
                    inventory = load.writeInventory(directory, count)
                    config = load.writeConfig(directory, "ctl", database, inventory)
                    rounds.append(startOnce(args.root, config, os.path.join(directory, "ctl.log")))
            listening, applied, cpu = (statistics.median(r[i] for r in rounds) for i in range(3))
            kind = "restart (nodes stored)" if restart else "first start (empty store)"
            print(f"  {count:>6} nodes, {kind:<26} listening {listening:6.2f} s   inventory applied "
                  f"{applied:6.2f} s   CPU {cpu:6.2f} s   (median of {args.rounds})", flush=True)


if __name__ == "__main__":
    main()
