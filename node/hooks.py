# -*- test-case-name: tests.test_node_hooks -*-
"""
Running hooks: the executables that deploy, start, stop and check a task's
container.

The hook contract
=================

Arguments (as in the legacy agent, plus the image for deploy)::

    deploy <schedid> <image>
    start  <schedid> started|restarted
    stop   <schedid> stopped|finished|failed|aborted
    check  <schedid>

C{stop}'s second argument says why the agent stops the task: C{stopped} at
the scheduled stop time, C{finished} to clean up after the container ended by
itself, C{failed} to clean up after a failure, C{aborted} when the schedule
was canceled or aborted on the controller.

Environment (nothing else is inherited but C{PATH}, C{HOME} and C{LANG}, plus
the C{hooks.environment} mapping of the configuration):

    - C{MARVIN_ACTION}: deploy, start, stop or check
    - C{MARVIN_SCHEDID}, C{MARVIN_EXPID}, C{MARVIN_NODEID}
    - C{MARVIN_START}, C{MARVIN_STOP}: the window, unix seconds
    - C{MARVIN_IMAGE}: the container image URL (deployment option C{script})
    - C{MARVIN_STATUS}: the second argument, if any
    - C{MARVIN_CONFIG}: path of the task's JSON configuration: the deployment
      options (secrets, the keys starting with C{_}, included; mode 0600)
      plus C{script}, C{start}, C{stop}, C{schedid}, C{expid}, C{nodeid}.
      Secrets are only in this file: never in arguments or the environment.
    - C{MARVIN_TASK_DIR}: a directory for the task (the working directory)
    - C{MARVIN_STATE_DIR}: marvind's state directory
    - C{MARVIN_TIMEOUT}: seconds before the hook is killed

Standard input is C{/dev/null}; standard output and error are appended to
C{<state dir>/logs/<schedid>.log}, between lines written by the agent
giving the action, the time and the outcome. Hooks must not print secrets.

Each hook runs in its own session (process group). At its timeout the whole
group gets SIGTERM, then SIGKILL after C{timeouts.kill_grace} seconds.
Processes a hook leaves in the background after exiting normally are left
alone (a deploy hook may go on pulling, see exit code 104).

Exit codes and the status the agent reports:

    - deploy: 0 C{deployed}; 100, 101, 103, 104, 105 C{delayed; ...} (the
      deploy is tried again on the next heartbeat); 102, 124 and anything else
      C{failed; ...} (see L{DEPLOY_CODES}).
    - start: 0 C{started} or C{restarted} (also when already running); 10, 11,
      12, 13, 125, 127 and anything else C{failed; ...} (see L{START_CODES}).
    - stop: 0 C{stopped}; 10 C{finished} (the container had already exited);
      anything else C{failed; stop hook exit code N}.
    - check (optional, run for a running task once per heartbeat): 0 still
      running; 10 ended by itself (the agent runs C{stop <id> finished} and
      reports C{finished}); anything else: unknown, logged and ignored.

A hook killed at its timeout gives C{failed; <action> hook timed out after N
s}; one killed by a signal C{failed; <action> hook killed by signal N}.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.interfaces import IDelayedCall, IReactorProcess, IReactorTime
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure
from zope.interface import Interface, implementer

from node.config import MarvindConfig
from node.state import StateStore, TaskRecord

_log = Logger()

#: Exit code of C{check} and C{stop} meaning "the container ended by itself".
ENDED = 10

DEPLOY_CODES = {
    0: "deployed",
    100: "delayed; container does not exist, or i/o timeout",
    101: "delayed; insufficient disk space",
    102: "failed; storage quota exceeded during deployment",
    103: "delayed; cannot deploy while node is in maintenance mode",
    104: "delayed; container downloading in background",
    105: "delayed; currently running another experiment",
    124: "failed; container downloading timeout",
}

START_CODES = {
    10: "failed; container exited immediately.",
    11: "failed; network namespace does not exist.",
    12: "failed; container image not found.",
    13: "failed; started into maintenance mode.",
    125: "failed; docker run command failed.",
    127: "failed; docker run exit code 127: entry point not found?",
}

# The child side of every hook: a new session (so that a timeout kills the
# whole process group), the task directory as working directory, then exec.
_SHIM = """\
import os, sys
os.setsid()
try:
    os.chdir(os.environ.get("MARVIN_TASK_DIR") or "/")
except OSError:
    os.chdir("/")
try:
    os.execv(sys.argv[1], sys.argv[1:])
except OSError as e:
    sys.stderr.write("marvind: cannot execute %s: %s\\n" % (sys.argv[1], e.strerror))
    os._exit(127)
"""


@attrs.frozen
class HookResult:
    """
    How a hook run ended.

    @ivar exitCode: the exit code, or C{None} if killed by a signal or not run.
    @ivar signal: the signal that killed it, if any.
    @ivar timedOut: it was killed because it ran past C{timeout}.
    @ivar error: why it could not be run at all, if so.
    """

    action: str
    exitCode: int | None = None
    signal: int | None = None
    timedOut: bool = False
    error: str | None = None
    timeout: float = 0.0

    @property
    def ok(self) -> bool:
        return self.exitCode == 0


def _abnormal(result: HookResult) -> str | None:
    if result.error is not None:
        return f"failed; {result.action} hook could not be run: {result.error}"
    if result.timedOut:
        return f"failed; {result.action} hook timed out after {result.timeout:g} s"
    if result.exitCode is None:
        return f"failed; {result.action} hook killed by signal {result.signal}"
    return None


def describeResult(result: HookResult) -> str:
    """
    How a hook run ended, in a few words for a log line.
    """
    if result.error is not None:
        return f"could not be run: {result.error}"
    if result.timedOut:
        return f"timed out after {result.timeout:g} s"
    if result.exitCode is None:
        return f"killed by signal {result.signal}"
    return f"exit code {result.exitCode}"


def deployStatus(result: HookResult) -> str:
    """
    The status to report after the deploy hook (legacy table, §11.4).
    """
    abnormal = _abnormal(result)
    if abnormal is not None:
        return abnormal
    assert result.exitCode is not None
    return DEPLOY_CODES.get(result.exitCode, f"failed; deploy hook exit code {result.exitCode}")


def startStatus(result: HookResult, status: str) -> str:
    """
    The status to report after the start hook run with C{status}
    (C{started} or C{restarted}).
    """
    abnormal = _abnormal(result)
    if abnormal is not None:
        return abnormal
    if result.exitCode == 0:
        return status
    assert result.exitCode is not None
    return START_CODES.get(result.exitCode, f"failed; start hook exit code {result.exitCode}.")


def stopStatus(result: HookResult) -> str:
    """
    The status to report after the stop hook at the scheduled stop time.
    """
    abnormal = _abnormal(result)
    if abnormal is not None:
        return abnormal
    if result.exitCode == 0:
        return "stopped"
    if result.exitCode == ENDED:
        return "finished"
    return f"failed; stop hook exit code {result.exitCode}"


class IHookRunner(Interface):
    """
    Runs a task's hooks without blocking the caller.
    """

    def runHook(action: str, task: TaskRecord, argument: str | None = None) -> Deferred[HookResult]:
        """
        Run the hook for C{action} on C{task}.

        @param argument: the second argument (image, or status), if any.
        @return: a Deferred that fires with a L{HookResult} and never fails.
        """


@attrs.define
class _HookProtocol(ProcessProtocol):
    """
    Watches one hook process: kills it at its timeout, reports how it ended.
    """

    action: str
    timeout: float
    grace: float
    clock: IReactorTime
    logPath: str
    started: float
    done: Deferred[HookResult] = attrs.field(factory=Deferred)
    _timedOut: bool = False
    _calls: list[IDelayedCall] = attrs.field(factory=list)
    _ended: bool = False

    def armTimeout(self) -> None:
        self._calls.append(self.clock.callLater(self.timeout, self._expire))

    def _signalGroup(self, signum: int) -> None:
        pid = getattr(self.transport, "pid", None)
        if pid is None:
            return
        try:
            os.killpg(pid, signum)
        except ProcessLookupError:
            # The shim has not called setsid() yet, or the group is gone.
            try:
                os.kill(pid, signum)
            except ProcessLookupError:
                pass
        except PermissionError:
            pass

    def _expire(self) -> None:
        self._timedOut = True
        _log.warn(
            "{action} hook ran past its {timeout} s limit: killing it", action=self.action,
            timeout=self.timeout,
        )
        self._signalGroup(signal.SIGTERM)
        self._calls.append(self.clock.callLater(self.grace, self._signalGroup, signal.SIGKILL))

    def processEnded(self, reason: Failure) -> None:
        if self._ended:
            return
        self._ended = True
        for call in self._calls:
            if call.active():
                call.cancel()
        if self._timedOut:
            # Whatever of the group ignored SIGTERM goes now.
            self._signalGroup(signal.SIGKILL)
        exitCode: int | None = None
        sig: int | None = None
        if isinstance(reason.value, ProcessDone):
            exitCode = 0
        elif isinstance(reason.value, ProcessTerminated):
            exitCode = reason.value.exitCode
            sig = reason.value.signal
        result = HookResult(
            self.action, exitCode=exitCode, signal=sig, timedOut=self._timedOut,
            timeout=self.timeout,
        )
        elapsed = self.clock.seconds() - self.started
        _appendLog(
            self.logPath, f"=== {self.action} ended: {describeResult(result)} ({elapsed:.1f} s) ===\n"
        )
        self.done.callback(result)


def _appendLog(path: str, text: str) -> None:
    try:
        with open(path, "a", encoding="utf-8") as f:
            f.write(text)
    except OSError as e:
        _log.warn("Cannot write hook log {path}: {error}", path=path, error=e.strerror)


@implementer(IHookRunner)
@attrs.define
class ProcessHookRunner:
    """
    Runs hooks as child processes with C{reactor.spawnProcess}.
    """

    _reactor: Any  # IReactorProcess and IReactorTime
    _config: MarvindConfig
    _store: StateStore

    def environment(self, action: str, task: TaskRecord, argument: str | None) -> dict[str, str]:
        """
        The hook's environment (see the module docstring).
        """
        env = {
            key: os.environ[key] for key in ("PATH", "HOME", "LANG") if key in os.environ
        }
        env.setdefault("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        env.update(self._config.hookEnvironment)
        env.update(
            MARVIN_ACTION=action,
            MARVIN_SCHEDID=task.id,
            MARVIN_EXPID=str(task.expid),
            MARVIN_NODEID=self._config.nodeId,
            MARVIN_START=str(int(task.start)),
            MARVIN_STOP=str(int(task.stop)),
            MARVIN_IMAGE=task.image,
            MARVIN_STATUS=argument if action in ("start", "stop") and argument else "",
            MARVIN_CONFIG=self._store.configPath(task.id),
            MARVIN_SSH_KEYS=self._store.keysPath(task.id),
            MARVIN_TASK_DIR=self._store.taskDirectory(task.id),
            MARVIN_RESULTS_DIR=self._store.resultsDirectory(task.id),
            MARVIN_STORAGE=str(task.storage),
            MARVIN_STATE_DIR=self._store.directory,
            MARVIN_TIMEOUT=f"{self._config.timeouts.forHook(action):g}",
        )
        return env

    def runHook(self, action: str, task: TaskRecord, argument: str | None = None) -> Deferred[HookResult]:
        path = self._config.hooks.get(action)
        timeout = self._config.timeouts.forHook(action)
        if path is None:
            return succeed(HookResult(action, error="no hook configured", timeout=timeout))
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            return succeed(HookResult(action, error=f"{path} is not an executable file", timeout=timeout))
        os.makedirs(self._store.taskDirectory(task.id), mode=0o700, exist_ok=True)
        args = [path, task.id] + ([argument] if argument else [])
        logPath = self._store.logPath(task.id)
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self._reactor.seconds()))
        _appendLog(
            logPath, f"=== {stamp} {action} {' '.join(args[1:])} (limit {timeout:g} s) ===\n"
        )
        protocol = _HookProtocol(
            action=action, timeout=timeout, grace=self._config.timeouts.killGrace,
            clock=self._reactor, logPath=logPath, started=self._reactor.seconds(),
        )
        logFd = os.open(logPath, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        nullFd = os.open(os.devnull, os.O_RDONLY)
        try:
            IReactorProcess(self._reactor).spawnProcess(
                protocol,
                sys.executable,
                [sys.executable, "-I", "-S", "-c", _SHIM] + args,
                env=self.environment(action, task, argument),
                childFDs={0: nullFd, 1: logFd, 2: logFd},
            )
        except OSError as e:
            return succeed(HookResult(action, error=e.strerror or str(e), timeout=timeout))
        finally:
            os.close(logFd)
            os.close(nullFd)
        protocol.armTimeout()
        return protocol.done
