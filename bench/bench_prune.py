"""
The outbox's retention pass on a SQLite file (not a test): how long one
prune transaction of 500 settled rows holds the writer, how long a whole
pass (20 of them) takes, and what a pass costs once only the rows it must
keep (each experiment's newest) are left below the cut.

Run: python bench/bench_prune.py [--experiments 2000] [--rows 10]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main() -> None:
    from twisted.internet.task import Clock

    from am.core.model import Experiment, Notification, User
    from am.core.policy import Policy
    from am.core.scheduler import Scheduler
    from am.ctl.housekeeping import PRUNE_CHUNK, PRUNE_CHUNKS
    from am.store.sqlite import SQLiteDatabase
    from am.testing import SynchronousStore

    parser = argparse.ArgumentParser()
    parser.add_argument("--experiments", type=int, default=2000)
    parser.add_argument("--rows", type=int, default=10, help="settled rows per experiment")
    options = parser.parse_args()
    now = 1_800_000_000
    with tempfile.TemporaryDirectory() as tmp:
        store = SynchronousStore(SQLiteDatabase(os.path.join(tmp, "bench.db")))
        clock = Clock()
        clock.advance(now)
        scheduler = Scheduler(store, clock, Policy(maintenance=()))

        def fill(txn: object) -> None:
            owner = txn.addUser(User(name="o", role="user", fingerprint="0" * 40))  # type: ignore[attr-defined]
            for e in range(options.experiments):
                expid = txn.addExperiment(Experiment(name="e", ownerid=owner, script="img"))  # type: ignore[attr-defined]
                for r in range(options.rows):
                    txn.addNotification(Notification(  # type: ignore[attr-defined]
                        expid=expid, ownerid=owner, url="https://h.example/x", kind="schedule.status",
                        body={"kind": "schedule.status", "n": r}, created=now - 86400 * 40, eventid=f"{e}-{r}",
                        due=now, state="delivered", delivered=now,
                    ))

        store.run(fill)
        total = options.experiments * options.rows
        chunks: list[float] = []
        deleted = 0
        passes = 0
        while True:
            passes += 1
            started = time.perf_counter()
            inPass = 0
            for _ in range(PRUNE_CHUNKS):
                t = time.perf_counter()
                results: list = []
                scheduler.pruneNotifications(now - 86400 * 30, PRUNE_CHUNK).addCallback(results.append)
                chunks.append(time.perf_counter() - t)
                inPass += results[0]
                if results[0] < PRUNE_CHUNK:
                    break
            deleted += inPass
            passTime = time.perf_counter() - started
            if passes == 1:
                print(f"first pass: {inPass} rows in {passTime * 1000:.0f} ms")
            if inPass == 0:
                print(f"a pass with nothing to prune ({options.experiments} newest rows kept): "
                      f"{passTime * 1000:.1f} ms")
                break
        full = sorted(chunks[:-1])
        print(f"{total} settled rows of {options.experiments} experiments: {deleted} pruned in {passes - 1} "
              f"pass(es); one chunk of {PRUNE_CHUNK} holds the writer {full[len(full) // 2] * 1000:.1f} ms "
              f"(median; max {full[-1] * 1000:.1f} ms)")


if __name__ == "__main__":
    main()
