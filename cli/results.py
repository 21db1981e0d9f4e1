"""
C{marvin results EXPID [-o DIR]}: download every result file of an
experiment (docs/results.md), one directory per schedule
(C{<schedule id>-<node id>/<path>}), each file checked against the SHA-256
the controller lists. A file already there with the right digest is not
fetched again, so an interrupted download is resumed by running it again.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import tempfile
from typing import Any
from urllib.parse import quote

REFUSED = 1


def register(commands: Any, common: argparse.ArgumentParser) -> None:
    parser = commands.add_parser(
        "results", parents=[common], help="Download an experiment's results and verify their checksums.",
        description="Download an experiment's results and verify their checksums.",
    )
    parser.set_defaults(handler=downloadResults)
    parser.add_argument("expid", type=int)
    parser.add_argument("-o", "--output", default=None, metavar="DIR",
                        help="where to put them (default: ./results-EXPID)")


def _digest(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _inside(root: str, relative: str) -> str:
    """
    The local path of a listed file, refusing anything that would leave C{root}.
    """
    target = os.path.normpath(os.path.join(root, relative))
    if os.path.commonpath([os.path.abspath(root), os.path.abspath(target)]) != os.path.abspath(root):
        raise ValueError(f"unsafe path {relative!r}")
    return target


def downloadResults(run: Any, args: argparse.Namespace) -> int:
    experiment = run.client.get(f"experiments/{args.expid}/schedules")
    root = args.output or f"results-{args.expid}"
    fetched = kept = failed = 0
    files: list[dict[str, Any]] = []
    for schedid in sorted(experiment.get("schedules", {}), key=int):
        listing = run.client.get(f"schedules/{schedid}/results")
        folder = f"{schedid}-{listing['nodeid']}"
        for item in listing["files"]:
            try:
                target = _inside(root, os.path.join(folder, item["path"]))
            except ValueError as e:
                run.say(f"skipped: {e}")
                failed += 1
                continue
            entry = {"schedule": int(schedid), "path": item["path"], "size": item["size"],
                     "sha256": item["sha256"], "file": target}
            files.append(entry)
            if os.path.isfile(target) and _digest(target) == item["sha256"]:
                kept += 1
                entry["verified"] = True
                continue
            os.makedirs(os.path.dirname(target), exist_ok=True)
            fd, temporary = tempfile.mkstemp(prefix=".part-", dir=os.path.dirname(target))
            with os.fdopen(fd, "wb") as out:
                got = run.client.download(f"schedules/{schedid}/results/{quote(item['path'], safe='')}", out)
            if got != item["sha256"]:
                os.unlink(temporary)
                run.say(f"checksum mismatch: {folder}/{item['path']} (got {got}, listed {item['sha256']})")
                entry["verified"] = False
                failed += 1
                continue
            os.replace(temporary, target)
            entry["verified"] = True
            fetched += 1
    if run.json:
        run.dump({"directory": root, "files": files, "fetched": fetched, "kept": kept, "failed": failed})
    else:
        run.say(f"{fetched} file(s) downloaded, {kept} already there, {failed} failed; all in {root}/")
    return REFUSED if failed else 0
