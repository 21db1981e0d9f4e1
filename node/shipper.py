# -*- test-case-name: tests.test_node_shipper -*-
"""
Shipping each task's results directory to the controller (docs/results.md).

Every C{results.period} seconds, and at once when a task ends, the shipper
scans the directory of every task it tracks: a file that is new, or whose
size or modification time changed, is hashed (SHA-256, off the reactor
thread) and queued. Queued files are uploaded one by one in chunks: the
shipper asks the controller how much of this version it already has and
sends the rest, each chunk with its digest, through the node's bandwidth cap
(L{node.ratelimit.TokenBucket}). Files past the task's storage allowance are
not sent; a running task whose directory outgrows it is reported (the agent
stops it: C{failed; storage quota exceeded}).

The queue lives in C{results.json} in the state directory (written
atomically), so a restart resumes where the controller stands; a controller
that does not answer is tried again next period. Bytes sent are reported as
the task's C{results} traffic meter (not charged to the user's data quota).
Once a task has ended and everything is shipped (or refused), its results
directory is deleted.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from typing import Any, Callable, Optional

import attrs
from twisted.application.service import Service
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import LoopingCall
from twisted.internet.threads import deferToThread
from twisted.logger import Logger

from node.client import ControllerResponse, ControllerUnreachable, IControllerClient
from node.ratelimit import TokenBucket
from node.state import atomicWrite

_log = Logger()

SHIP_VERSION = 1


@attrs.define
class FileRecord:
    """
    One file as last scanned: C{done} once the controller holds this version,
    C{refused} with the reason when it will never take it.
    """

    size: int
    mtime: int
    sha256: str
    done: bool = False
    refused: Optional[str] = None


@attrs.define
class ShipTask:
    """
    One task's results directory and what became of its files.

    @ivar final: the task has ended here: ship what is left, then delete.
    @ivar scannedFinal: a scan ran since the task ended.
    @ivar sent: bytes sent for it so far (the C{results} meter).
    @ivar reported: the value of the meter the controller has.
    """

    schedid: str
    directory: str
    allowance: int
    final: bool = False
    scannedFinal: bool = False
    sent: int = 0
    reported: int = 0
    files: dict[str, FileRecord] = attrs.field(factory=dict)

    def toJSON(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def fromJSON(cls, data: dict[str, Any]) -> "ShipTask":
        files = {str(k): FileRecord(**v) for k, v in data.pop("files", {}).items()}
        return cls(files=files, **data)


def sha256File(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def threadedHash(path: str) -> Deferred[str]:
    return deferToThread(sha256File, path)


class _Stop(Exception):
    """
    The controller cannot take uploads now: end this cycle.
    """


class ResultShipper(Service):
    """
    @param hasher: C{path -> Deferred[hex digest]} (tests pass a synchronous one).
    @param overQuota: called with a task's id when its running task's
        directory outgrows the allowance.
    """

    name = "results"

    def __init__(
        self,
        clock: IReactorTime,
        client: IControllerClient,
        stateDirectory: str,
        period: float = 60.0,
        chunk: int = 256 * 1024,
        bandwidth: float = 0.0,
        hasher: Callable[[str], Deferred[str]] = threadedHash,
        overQuota: Callable[[str], None] = lambda schedid: None,
    ) -> None:
        self._clock = clock
        self._client = client
        self.path = os.path.join(stateDirectory, "results.json")
        self.period = period
        self.chunk = chunk
        self.bucket = TokenBucket(clock, bandwidth)
        self._hash = hasher
        self.overQuota = overQuota
        self.tasks: dict[str, ShipTask] = {}
        self._loop: Optional[LoopingCall] = None
        self._cycling = False
        self._again = False

    # -- service and the agent's calls ----------------------------------------

    def startService(self) -> None:
        super().startService()
        self.tasks = self._load()
        self._loop = LoopingCall(self.kick)
        self._loop.clock = self._clock
        self._loop.start(self.period, now=bool(self.tasks))

    def stopService(self) -> Deferred[None]:
        super().stopService()
        if self._loop is not None and self._loop.running:
            self._loop.stop()
        return succeed(None)

    def track(self, schedid: str, directory: str, allowance: int) -> None:
        """
        Ship C{directory} for task C{schedid}, within C{allowance} bytes.
        """
        task = self.tasks.get(schedid)
        if task is None:
            self.tasks[schedid] = ShipTask(schedid, directory, allowance)
        else:
            task.directory, task.allowance = directory, allowance
        self._save()

    def finish(self, schedid: str) -> None:
        """
        Task C{schedid} ended: ship what is left now, then delete its directory.
        """
        task = self.tasks.get(schedid)
        if task is None or task.final:
            return
        task.final, task.scannedFinal = True, False
        self._save()
        self.kick()

    def kick(self) -> None:
        """
        Run a cycle now (or right after the one running).
        """
        if not self.running:
            return
        if self._cycling:
            self._again = True
            return
        d = Deferred.fromCoroutine(self._cycle())
        d.addErrback(lambda f: _log.failure("Shipping results failed", f))

    # -- persistence ----------------------------------------------------------------

    def _load(self) -> dict[str, ShipTask]:
        try:
            with open(self.path, "rb") as f:
                data = json.load(f)
            if data.get("version") != SHIP_VERSION:
                raise ValueError(f"unknown version {data.get('version')!r}")
            return {t["schedid"]: ShipTask.fromJSON(dict(t)) for t in data["tasks"]}
        except FileNotFoundError:
            return {}
        except (ValueError, KeyError, TypeError) as e:
            _log.error("Results queue {path} is unreadable ({error}); starting empty", path=self.path, error=str(e))
            return {}

    def _save(self) -> None:
        data = {"version": SHIP_VERSION, "tasks": [t.toJSON() for t in self.tasks.values()]}
        atomicWrite(self.path, json.dumps(data, sort_keys=True).encode("utf-8"))

    # -- one cycle ------------------------------------------------------------------

    async def _cycle(self) -> None:
        self._cycling = True
        try:
            while True:
                self._again = False
                for task in sorted(self.tasks.values(), key=lambda t: t.schedid):
                    if not self.running:
                        return
                    await self._scan(task)
                    try:
                        await self._ship(task)
                        await self._report(task)
                    except _Stop:
                        return
                    self._settle(task)
                if not self._again:
                    return
        finally:
            self._cycling = False

    async def _scan(self, task: ShipTask) -> None:
        """
        Hash what is new or changed; forget what disappeared.
        """
        final = task.final
        seen: dict[str, os.stat_result] = {}
        for root, _, names in os.walk(task.directory):
            for name in names:
                full = os.path.join(root, name)
                try:
                    st = os.lstat(full)
                except OSError:
                    continue
                if os.path.isfile(full) and not os.path.islink(full):
                    seen[os.path.relpath(full, task.directory).replace(os.sep, "/")] = st
        changed = False
        for path in list(task.files):
            if path not in seen:
                del task.files[path]
                changed = True
        for path, st in sorted(seen.items()):
            record = task.files.get(path)
            if record is not None and (record.size, record.mtime) == (st.st_size, st.st_mtime_ns):
                continue
            try:
                digest = await self._hash(os.path.join(task.directory, path))
            except OSError:
                continue
            task.files[path] = FileRecord(st.st_size, st.st_mtime_ns, digest)
            changed = True
        total = sum(st.st_size for st in seen.values())
        if total > task.allowance and not final:
            _log.warn(
                "Task {id} wrote {total} bytes of results, more than its storage allowance of {allowance}",
                id=task.schedid, total=total, allowance=task.allowance,
            )
            self.overQuota(task.schedid)
        if final and not task.scannedFinal:
            task.scannedFinal = True
            changed = True
        if changed:
            self._save()

    async def _ship(self, task: ShipTask) -> None:
        """
        Upload every pending file that fits the allowance, in path order.
        """
        used = 0
        for path, record in sorted(task.files.items()):
            if record.refused is not None:
                continue
            if used + record.size > task.allowance:
                record.refused = "over the task's storage allowance"
                _log.warn("Task {id}: {path} not shipped: over the storage allowance", id=task.schedid, path=path)
                self._save()
                continue
            used += record.size
            if not record.done:
                await self._shipFile(task, path, record)
            if task.schedid not in self.tasks:
                return

    async def _shipFile(self, task: ShipTask, path: str, record: FileRecord) -> None:
        answer = await self._call(self._client.uploadStatus, task.schedid, path, record.size, record.sha256)
        full = os.path.join(task.directory, path)
        for _ in range(3 + record.size // max(1, self.chunk) * 2):
            if not self._settleAnswer(task, path, record, answer):
                return
            offset = answer.body["offset"]
            try:
                st = os.lstat(full)
                if (st.st_size, st.st_mtime_ns) != (record.size, record.mtime):
                    return  # changed meanwhile: the next scan hashes it again
                with open(full, "rb") as f:
                    f.seek(offset)
                    chunk = f.read(min(self.chunk, record.size - offset))
            except OSError:
                return
            await self.bucket.take(len(chunk))
            answer = await self._call(
                self._client.uploadChunk, task.schedid, path, record.size, record.sha256, offset, chunk
            )
            task.sent += len(chunk)

    def _settleAnswer(self, task: ShipTask, path: str, record: FileRecord, answer: ControllerResponse) -> bool:
        """
        Act on the controller's answer about one file; whether to send (more) chunks.
        """
        body = answer.body if isinstance(answer.body, dict) else {}
        if answer.code in (200, 409) and isinstance(body.get("offset"), int) and "complete" not in body:
            return True  # 409: resume at the controller's offset
        if answer.code == 200 and isinstance(body.get("offset"), int):
            if body.get("complete"):
                record.done = True
                self._save()
                return False
            return True
        if answer.code == 409 and "allowance" in body:
            record.refused = answer.message
            self._save()
            return False
        if answer.code in (403, 404) or (answer.code == 409 and "closed" in answer.message):
            _log.warn(
                "The controller takes no more results for task {id} ({code}: {message}); dropping them",
                id=task.schedid, code=answer.code, message=answer.message,
            )
            self._drop(task)
            return False
        if answer.code == 409:
            return False  # not on its node yet, as the controller sees it: next cycle
        raise _Stop()

    async def _call(self, method: Callable[..., Deferred[ControllerResponse]], *args: Any) -> ControllerResponse:
        try:
            return await method(*args)
        except ControllerUnreachable as e:
            _log.info("Results wait for the controller ({error})", error=str(e))
            raise _Stop() from None

    async def _report(self, task: ShipTask) -> None:
        """
        Report the bytes sent as the C{results} traffic meter.
        """
        if task.schedid not in self.tasks or task.sent == task.reported:
            return
        answer = await self._call(self._client.reportTraffic, task.schedid, {"results": task.sent})
        if answer.code == 200 or answer.code in (403, 404, 409):
            task.reported = task.sent
            self._save()

    def _settle(self, task: ShipTask) -> None:
        """
        An ended task whose files are all shipped or refused is done: delete them.
        """
        if task.schedid not in self.tasks or not (task.final and task.scannedFinal):
            return
        if all(r.done or r.refused is not None for r in task.files.values()) and task.sent == task.reported:
            _log.info(
                "Results of task {id} shipped ({count} file(s)); removing them here",
                id=task.schedid, count=len(task.files),
            )
            self._drop(task)

    def _drop(self, task: ShipTask) -> None:
        self.tasks.pop(task.schedid, None)
        shutil.rmtree(task.directory, ignore_errors=True)
        self._save()
