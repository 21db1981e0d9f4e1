# -*- test-case-name: tests.test_node_agent,tests.test_node_resume,tests.test_node_controller -*-
"""
marvind's state on disk: the tasks it knows and the status reports it still
has to deliver.

Everything lives in one JSON file, C{state.json}, rewritten atomically (temp
file, fsync, C{os.replace}, fsync of the directory) on every change, so that a
crash or a power cut leaves either the old or the new state, never half of
one. The legacy agent kept its report queue in memory and lost it on restart;
here a report is on disk before it is first sent.

The file holds deployment options, secrets included, so it and the per-task
configuration files are created with mode 0600.

Layout of the state directory::

    state.json             tasks and report queue
    tasks/<schedid>/       per-task directory handed to the hooks
    tasks/<schedid>/config.json   the task's configuration (secrets: 0600)
    tasks/<schedid>/results/      what the task writes, shipped to the controller
    results.json           the results shipping queue (L{node.shipper})
    logs/<schedid>.log     output of every hook run for the task
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from typing import Any

import attrs
from twisted.logger import Logger

_log = Logger()

STATE_VERSION = 1

# Local phases of a task.
NEW = "new"  # to be deployed (first time, or again after "delayed")
DEPLOYED = "deployed"  # deploy hook succeeded; waiting for the start time
STARTING = "starting"  # start hook launched
RUNNING = "running"  # start hook succeeded; waiting for the stop time
STOPPING = "stopping"  # stop hook launched (see TaskRecord.stopAs)
DONE = "done"  # final status queued; kept until the window has passed
PHASES = (NEW, DEPLOYED, STARTING, RUNNING, STOPPING, DONE)

_FALSE = {"0", "false", "no", "off"}


def atomicWrite(path: str, data: bytes, mode: int = 0o600) -> None:
    """
    Replace C{path} with C{data} so that readers (and a crash) see either the
    old or the new content.
    """
    directory = os.path.dirname(path) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=directory)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dirfd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dirfd)
    finally:
        os.close(dirfd)


@attrs.define
class TaskRecord:
    """
    What the agent knows about one schedule.

    @ivar options: the task's C{deployment_options}, secrets included.
    @ivar phase: one of L{PHASES}.
    @ivar lastStatus: the last status queued for the controller, so that an
        unchanged status (e.g. the same C{delayed}) is not sent twice.
    @ivar canceled: the controller shows a final status we did not set
        (canceled, aborted...): stop and forget the task.
    @ivar interrupted: the task was running when the agent went down (or the
        controller says it runs but we had no record): it is restarted
        (C{restarted}) or failed, per its C{restart} option.
    @ivar retryAt: after C{delayed}, when to try the deploy hook again.
    @ivar stopAs: in L{STOPPING}, why: C{stopped} (stop time), C{finished}
        (it ended by itself), C{failed} (clean-up after a failure),
        C{aborted} (canceled on the controller), C{paused} (stopped on
        request inside its window) or C{restart} (stopped to run again).
    @ivar runSerial: the last C{run_serial} deployment option acted on: the
        controller raises it with every requested stop, start and restart.
    @ivar paused: stopped on request (C{run_state} C{stopped}); it stays
        (deployed again when started) until C{geni_start} or its stop time.
    @ivar ran: its start hook succeeded once (a later start is C{restarted}).
    """

    id: str
    expid: int
    start: float
    stop: float
    options: dict[str, Any]
    phase: str = NEW
    lastStatus: str | None = None
    canceled: bool = False
    interrupted: bool = False
    retryAt: float | None = None
    stopAs: str | None = None
    runSerial: int = 0
    paused: bool = False
    ran: bool = False

    @property
    def storage(self) -> int:
        """
        The task's storage allowance in bytes (its C{storage} option; 0 if none).
        """
        value = self.options.get("storage", 0)
        try:
            return max(0, int(value))
        except (TypeError, ValueError):
            return 0

    @property
    def image(self) -> str:
        """
        The container image URL (the C{script} deployment option).
        """
        script = self.options.get("script")
        return script if isinstance(script, str) else ""

    @property
    def restartAllowed(self) -> bool:
        """
        Whether an interrupted task may be started again (default: yes).
        """
        value = self.options.get("restart", True)
        if isinstance(value, str):
            return value.strip().lower() not in _FALSE
        return bool(value)

    def toJSON(self) -> dict[str, Any]:
        """
        A JSON-able dict of every field.
        """
        return attrs.asdict(self)

    @classmethod
    def fromJSON(cls, data: dict[str, Any]) -> TaskRecord:
        """
        The inverse of L{toJSON}.

        @raise ValueError: for a malformed record.
        """
        try:
            record = cls(**data)
        except TypeError as e:
            raise ValueError(str(e)) from None
        if record.phase not in PHASES or not isinstance(record.options, dict):
            raise ValueError(f"bad task record {data.get('id')!r}")
        return record


def sshKeys(options: dict[str, Any]) -> list[str]:
    """
    The login keys in a task's options (C{ssh_keys}: GENI C{geni_users}),
    one line each; anything else (not text, line breaks) is left out.
    """
    keys = options.get("ssh_keys")
    if not isinstance(keys, list):
        return []
    return [k.strip() for k in keys if isinstance(k, str) and k.strip() and "\n" not in k.strip()
            and "\r" not in k]


@attrs.frozen
class Report:
    """
    One status report waiting for the controller.
    """

    schedid: str
    status: str
    when: int


@attrs.define
class StateStore:
    """
    The state directory.

    @ivar directory: its path; created (mode 0700) if missing.
    """

    directory: str

    def __attrs_post_init__(self) -> None:
        os.makedirs(self.directory, mode=0o700, exist_ok=True)
        os.makedirs(os.path.join(self.directory, "tasks"), mode=0o700, exist_ok=True)
        os.makedirs(os.path.join(self.directory, "logs"), mode=0o700, exist_ok=True)

    @property
    def statePath(self) -> str:
        return os.path.join(self.directory, "state.json")

    def taskDirectory(self, schedid: str) -> str:
        return os.path.join(self.directory, "tasks", schedid)

    def configPath(self, schedid: str) -> str:
        return os.path.join(self.taskDirectory(schedid), "config.json")

    def resultsDirectory(self, schedid: str) -> str:
        """
        Where the task writes its results (shipped by L{node.shipper}).
        """
        return os.path.join(self.taskDirectory(schedid), "results")

    def logPath(self, schedid: str) -> str:
        return os.path.join(self.directory, "logs", f"{schedid}.log")

    def load(self) -> tuple[dict[str, TaskRecord], list[Report]]:
        """
        Read the saved state; a missing file is an empty state.

        A corrupt file is moved aside (C{state.json.corrupt-<time>}) and an
        empty state returned: the controller still knows the schedules, and
        refusing to start would keep the node out of service.
        """
        try:
            with open(self.statePath, "rb") as f:
                raw = f.read()
        except FileNotFoundError:
            return {}, []
        try:
            data = json.loads(raw)
            if data.get("version") != STATE_VERSION:
                raise ValueError(f"unknown state version {data.get('version')!r}")
            tasks = {}
            for item in data["tasks"]:
                record = TaskRecord.fromJSON(item)
                tasks[record.id] = record
            queue = [
                Report(str(r["schedid"]), str(r["status"]), int(r["when"])) for r in data["queue"]
            ]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            aside = f"{self.statePath}.corrupt-{int(time.time())}"
            os.replace(self.statePath, aside)
            _log.error(
                "State file {path} is unreadable ({error}); moved to {aside}, starting empty",
                path=self.statePath, error=str(e), aside=aside,
            )
            return {}, []
        return tasks, queue

    def save(self, tasks: dict[str, TaskRecord], queue: list[Report]) -> None:
        """
        Atomically replace the saved state.
        """
        data = {
            "version": STATE_VERSION,
            "tasks": [t.toJSON() for t in tasks.values()],
            "queue": [attrs.asdict(r) for r in queue],
        }
        atomicWrite(self.statePath, json.dumps(data, indent=1, sort_keys=True).encode("utf-8"))

    def writeTaskConfig(self, task: TaskRecord, nodeId: str) -> str:
        """
        Write the configuration the hooks (and the container) read.

        It is the deployment options (secrets included, hence mode 0600) plus
        C{script}, C{start}, C{stop}, C{schedid}, C{expid} and C{nodeid}.

        @return: its path.
        """
        directory = self.taskDirectory(task.id)
        os.makedirs(directory, mode=0o700, exist_ok=True)
        config = dict(task.options)
        config.update(
            script=task.image, start=int(task.start), stop=int(task.stop),
            schedid=task.id, expid=task.expid, nodeid=nodeId,
        )
        path = self.configPath(task.id)
        atomicWrite(path, json.dumps(config, sort_keys=True).encode("utf-8"))
        atomicWrite(self.keysPath(task.id), "".join(f"{k}\n" for k in sshKeys(task.options)).encode("utf-8"))
        return path

    def keysPath(self, schedid: str) -> str:
        """
        The task's login keys, C{authorized_keys} form (C{MARVIN_SSH_KEYS}).
        """
        return os.path.join(self.taskDirectory(schedid), "authorized_keys")

    def removeTaskFiles(self, schedid: str) -> None:
        """
        Delete the task's configuration (it holds secrets) and its directory
        if the hooks left nothing else there. Logs are kept.
        """
        try:
            os.unlink(self.configPath(schedid))
        except FileNotFoundError:
            pass
        try:
            os.rmdir(self.taskDirectory(schedid))
        except OSError:
            pass
