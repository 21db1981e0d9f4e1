"""
Results, the figures of issue 17 (not a test), against a real marvinctld
process (SQLite, the local results store) over loopback HTTP:

1. Upload throughput: a node uploads one file in chunks (1 MiB, the largest
   the controller takes, and the agent's default 256 KiB), each chunk
   checked, synced and acknowledged before the next (as the agent does).
2. A 1 GB result set streamed as a tar: the experiment's files (written to
   the store beforehand, with their rows) downloaded as
   C{GET /v1/experiments/<id>/results.tar}, its throughput, and the
   controller's resident memory before and at its peak during the download
   (sampled every 50 ms from /proc).

Run: python bench/bench_results.py [--upload-mb 64] [--tar-mb 1024] [--files 16]
"""

from __future__ import annotations

import argparse
import hashlib
import http.client
import os
import shutil
import sys
import tempfile
import threading
import time
from urllib.parse import quote, urlencode

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench.loadsetup import BIG_QUOTA, USER_FINGERPRINT, Controller, writeInventory  # noqa: E402

NODE_FINGERPRINT = "c" * 40
MB = 1 << 20


def populate(database: str, results: str, tarBytes: int, files: int, now: int) -> tuple[int, int, int]:
    """
    Node 1, its node user, the bench user, two experiments with a running
    schedule on node 1 each (one to upload to, one holding the tar's files,
    written straight into the local store with their rows).
    """
    from am.core import quotas
    from am.core.model import Experiment, Node, ResultFile, Schedule, User
    from am.core.policy import Policy
    from am.results.hub import resultKey
    from am.results.local import LocalResultStore
    from am.store.sqlite import SQLiteDatabase

    policy = Policy(maintenance=(), requireHeartbeat=False, defaultQuotaStorage=BIG_QUOTA)
    db = SQLiteDatabase(database)
    store = LocalResultStore(results)
    block = os.urandom(MB)
    size = tarBytes // files

    def fill(txn):
        txn.putNode(Node(id="1", hostname="bench-1", heartbeat=now))
        txn.addUser(User(name="Node 1", role="node", fingerprint=NODE_FINGERPRINT, nodeid="1"))
        owner = txn.addUser(User(name="bench", role="user", fingerprint=USER_FINGERPRINT))
        quotas.currentQuotas(txn, owner, now, policy)
        ids = [txn.addExperiment(Experiment(name=f"r{i}", ownerid=owner, script="x", start=now, stop=now + 86400))
               for i in range(2)]
        made = [Schedule(expid=expid, nodeid="1", start=now - 10, stop=now + 86400, status="started",
                         deploymentOptions={"script": "x", "storage": BIG_QUOTA}, chargedStorage=BIG_QUOTA)
                for expid in ids]
        txn.addSchedules(made)
        return ids[1], made[0].id, made[1].id

    expid, upload, holder = db.run(fill)
    rows = []
    for i in range(files):
        path = f"part-{i:03d}.bin"
        source = os.path.join(results, "source")
        digest = hashlib.sha256()
        with open(source, "wb") as f:
            for _ in range(size // MB):
                f.write(block)
                digest.update(block)
        store.put(resultKey(holder, path), source)
        os.unlink(source)
        rows.append(ResultFile(holder, path, size, digest.hexdigest(), now))
    db.run(lambda txn: [txn.putResultFile(r) for r in rows])
    db.close()
    return expid, upload, holder


def writeConfig(directory: str, database: str, results: str, inventory: str) -> str:
    import yaml

    path = os.path.join(directory, "ctl.conf")
    with open(path, "w") as f:
        yaml.safe_dump({
            "database": database,
            "listen": {"http": {"address": "127.0.0.1", "port": 0}},
            "trusted_proxies": ["127.0.0.1/32"],
            "inventory": {"file": inventory, "period": 3600},
            "scheduling": {"require_heartbeat": False, "maintenance_windows": []},
            "results": {"store": "local", "directory": results, "spool": os.path.join(results, "spool")},
            "log": {"file": os.path.join(directory, "ctl.log"), "level": "info"},
        }, f)
    return path


def upload(port: int, schedid: int, total: int, chunk: int) -> float:
    """
    Upload C{total} bytes in C{chunk}-byte requests; MB/s.
    """
    data = os.urandom(total)
    digest = hashlib.sha256(data).hexdigest()
    path = f"upload-{chunk}.bin"
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    headers = {"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": NODE_FINGERPRINT,
               "Content-Type": "application/octet-stream"}
    began = time.perf_counter()
    offset = 0
    while True:
        piece = data[offset:offset + chunk]
        query = urlencode({"size": total, "sha256": digest, "offset": offset,
                           "chunk_sha256": hashlib.sha256(piece).hexdigest()})
        connection.request("PUT", f"/v1/schedules/{schedid}/uploads/{quote(path, safe='')}?{query}",
                           body=piece, headers=headers)
        response = connection.getresponse()
        body = response.read()
        if response.status != 200:
            raise SystemExit(f"upload refused: {response.status} {body[:200]!r}")
        offset += len(piece)
        if b'"complete": true' in body:
            break
    elapsed = time.perf_counter() - began
    connection.close()
    return total / MB / elapsed


def streamTar(controller: Controller, expid: int) -> tuple[float, float, float, int]:
    """
    Download the tar, discarding it; (MB/s, RSS before, peak RSS, bytes).
    """
    before = controller.rssMB()
    peak = [before]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], controller.rssMB())
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    connection = http.client.HTTPConnection("127.0.0.1", controller.port, timeout=120)
    began = time.perf_counter()
    connection.request("GET", f"/v1/experiments/{expid}/results.tar",
                       headers={"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": USER_FINGERPRINT})
    response = connection.getresponse()
    if response.status != 200:
        raise SystemExit(f"tar refused: {response.status} {response.read()[:200]!r}")
    expected = int(response.getheader("Content-Length"))
    received = 0
    while True:
        block = response.read(MB)
        if not block:
            break
        received += len(block)
    elapsed = time.perf_counter() - began
    done.set()
    sampler.join()
    connection.close()
    if received != expected:
        raise SystemExit(f"tar cut short: {received} of {expected} bytes")
    return received / MB / elapsed, before, peak[0], received


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upload-mb", type=int, default=64)
    parser.add_argument("--tar-mb", type=int, default=1024)
    parser.add_argument("--files", type=int, default=16)
    args = parser.parse_args()
    directory = tempfile.mkdtemp(prefix="marvin-bench-results-")
    controller = None
    try:
        database, results = os.path.join(directory, "marvin.db"), os.path.join(directory, "results")
        now = int(time.time())
        from am.store.sqlite import SQLiteDatabase

        SQLiteDatabase(database).close()
        expid, uploadTo, _ = populate(database, results, args.tar_mb * MB, args.files, now)
        config = writeConfig(directory, database, results, writeInventory(directory, 1))
        controller = Controller(config, os.path.join(directory, "ctl.log"))
        for chunk in (MB, 256 * 1024):
            rate = upload(controller.port, uploadTo, args.upload_mb * MB, chunk)
            print(f"upload_throughput_{chunk // 1024}KiB_chunks: {rate:.1f} MB/s "
                  f"({args.upload_mb} MB, each chunk checked and synced before the next)")
        rate, before, peak, size = streamTar(controller, expid)
        print(f"tar_stream_throughput: {rate:.1f} MB/s ({size / MB:.0f} MB, {args.files} files)")
        print(f"controller_rss_before_tar: {before:.1f} MB")
        print(f"controller_rss_peak_during_tar: {peak:.1f} MB (+{peak - before:.1f} MB for a {size / MB:.0f} MB tar)")
    finally:
        if controller is not None:
            controller.stop()
        shutil.rmtree(directory, ignore_errors=True)


if __name__ == "__main__":
    main()
