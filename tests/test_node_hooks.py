"""
Tests for L{node.hooks}: the exit-code tables, and the process hook runner
with real (tiny) shell scripts, since the process boundary is the point.
"""

from __future__ import annotations

import os
import signal
import stat
import time

from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import SynchronousTestCase, TestCase

from node.config import MarvindConfig, Timeouts
from node.hooks import HookResult, ProcessHookRunner, deployStatus, startStatus, stopStatus
from node.state import StateStore, TaskRecord


class StatusTableTests(SynchronousTestCase):
    """
    Hook outcomes map to the statuses of the legacy table (§11.4).
    """

    def test_deploy(self) -> None:
        """
        Deploy exit codes: 0 deployed, 100-105 delayed or failed, others failed.
        """
        self.assertEqual(deployStatus(HookResult("deploy", 0)), "deployed")
        self.assertEqual(
            deployStatus(HookResult("deploy", 101)), "delayed; insufficient disk space"
        )
        self.assertEqual(
            deployStatus(HookResult("deploy", 105)), "delayed; currently running another experiment"
        )
        self.assertEqual(deployStatus(HookResult("deploy", 7)), "failed; deploy hook exit code 7")

    def test_abnormal(self) -> None:
        """
        A timeout, a signal, or a hook that cannot be run all fail the task
        with a reason naming the hook.
        """
        self.assertEqual(
            startStatus(HookResult("start", None, 15, True, timeout=120), "started"),
            "failed; start hook timed out after 120 s",
        )
        self.assertEqual(
            stopStatus(HookResult("stop", None, 9)), "failed; stop hook killed by signal 9"
        )
        self.assertEqual(
            deployStatus(HookResult("deploy", error="/x is not an executable file")),
            "failed; deploy hook could not be run: /x is not an executable file",
        )

    def test_start(self) -> None:
        """
        Start exit 0 gives the requested status; known codes their reason.
        """
        self.assertEqual(startStatus(HookResult("start", 0), "restarted"), "restarted")
        self.assertEqual(
            startStatus(HookResult("start", 11), "started"),
            "failed; network namespace does not exist.",
        )
        self.assertEqual(
            startStatus(HookResult("start", 127), "started"),
            "failed; docker run exit code 127: entry point not found?",
        )

    def test_stop(self) -> None:
        """
        Stop exit 0 is stopped, 10 finished, anything else failed.
        """
        self.assertEqual(stopStatus(HookResult("stop", 0)), "stopped")
        self.assertEqual(stopStatus(HookResult("stop", 10)), "finished")
        self.assertEqual(stopStatus(HookResult("stop", 2)), "failed; stop hook exit code 2")


def _alive(pid: int) -> bool:
    """
    Whether C{pid} is a live process (zombies count as dead).
    """
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (FileNotFoundError, ProcessLookupError):
        return False


class ProcessHookRunnerTests(TestCase):
    """
    L{ProcessHookRunner} with real scripts and the real reactor.
    """

    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)
        self.store = StateStore(os.path.join(self.base, "state"))
        self.task = TaskRecord(
            id="42", expid=7, start=1000, stop=2000,
            options={"script": "registry.example/exp:1", "_key": "TOPSECRET"},
        )
        self.store.writeTaskConfig(self.task, "5")

    def runner(self, scripts: dict[str, str], **timeouts: float) -> ProcessHookRunner:
        hooks = {}
        for action, body in scripts.items():
            path = os.path.join(self.base, action)
            with open(path, "w") as f:
                f.write("#!/bin/sh\n" + body)
            os.chmod(path, stat.S_IRWXU)
            hooks[action] = path
        config = MarvindConfig(
            controllerURL="https://ctl.example/v1", caFile="", nodeId="5", certificateFile="",
            keyFile="", stateDirectory=self.store.directory, hooks=hooks,
            hookEnvironment={"DOCKER_HOST": "unix:///run/docker.sock"},
            timeouts=Timeouts(**timeouts),
        )
        return ProcessHookRunner(reactor, config, self.store)

    def log(self) -> str:
        with open(self.store.logPath("42")) as f:
            return f.read()

    async def test_contract(self) -> None:
        """
        A hook gets its arguments and the documented environment, runs in the
        task directory, and its output lands in the task's log between the
        agent's lines; the exit code comes back.
        """
        runner = self.runner(
            {"start": 'echo "args=$*"; env | grep ^MARVIN_ | sort; echo "docker=$DOCKER_HOST";'
             ' echo "cwd=$(pwd)"; echo oops >&2; exit 3\n'}
        )
        result = await runner.runHook("start", self.task, "restarted")
        self.assertEqual((result.exitCode, result.timedOut), (3, False))
        log = self.log()
        self.assertIn("args=42 restarted\n", log)
        for line in [
            "MARVIN_ACTION=start", "MARVIN_SCHEDID=42", "MARVIN_EXPID=7", "MARVIN_NODEID=5",
            "MARVIN_START=1000", "MARVIN_STOP=2000", "MARVIN_IMAGE=registry.example/exp:1",
            "MARVIN_STATUS=restarted", f"MARVIN_CONFIG={self.store.configPath('42')}",
            f"MARVIN_TASK_DIR={self.store.taskDirectory('42')}",
            f"MARVIN_STATE_DIR={self.store.directory}", "MARVIN_TIMEOUT=120",
            "docker=unix:///run/docker.sock", f"cwd={self.store.taskDirectory('42')}", "oops",
        ]:
            self.assertIn(line + "\n", log)
        self.assertNotIn("TOPSECRET", log)
        self.assertRegex(log.splitlines()[0], r"^=== \S+Z start 42 restarted \(limit 120 s\) ===$")
        self.assertRegex(log.splitlines()[-1], r"^=== start ended: exit code 3 \([0-9.]+ s\) ===$")

    async def test_doesNotBlock(self) -> None:
        """
        C{runHook} returns at once; the reactor keeps running while the hook
        does.
        """
        release = os.path.join(self.base, "release")
        # The hook waits for a file that only the reactor, running while
        # the hook runs, can make.
        runner = self.runner({"check": f'while [ ! -e "{release}" ]; do sleep 0.01; done\n'})
        d = runner.runHook("check", self.task)
        self.assertNoResult(d)
        reactor.callLater(0, lambda: open(release, "w").close())
        result = await d
        self.assertEqual(result.exitCode, 0)

    async def test_timeoutKillsGroup(self) -> None:
        """
        A hook past its timeout is killed with SIGTERM, and so are the
        processes it started.
        """
        pidFile = os.path.join(self.base, "child.pid")
        runner = self.runner(
            {"deploy": f"sleep 60 &\necho $! > {pidFile}\nwait\n"}, deploy=0.5, killGrace=5.0
        )
        started = time.monotonic()
        result = await runner.runHook("deploy", self.task, self.task.image)
        self.assertLess(time.monotonic() - started, 4)
        self.assertTrue(result.timedOut)
        self.assertEqual(result.signal, signal.SIGTERM)
        with open(pidFile) as f:
            child = int(f.read())
        # The SIGTERM was sent to the group; wait (bounded) until it is gone.
        deadline = time.monotonic() + 10
        while _alive(child) and time.monotonic() < deadline:
            await deferLater(reactor, 0.01, lambda: None)
        self.assertFalse(_alive(child))
        self.assertRegex(self.log(), r"=== deploy ended: timed out after 0.5 s \([0-9.]+ s\) ===")

    async def test_killAfterGrace(self) -> None:
        """
        A hook that ignores SIGTERM gets SIGKILL after the grace period.
        """
        runner = self.runner({"stop": "trap '' TERM\nsleep 60 & wait; sleep 60 & wait\n"}, stop=0.3, killGrace=0.3)
        started = time.monotonic()
        result = await runner.runHook("stop", self.task, "stopped")
        self.assertLess(time.monotonic() - started, 4)
        self.assertTrue(result.timedOut)
        self.assertEqual(result.signal, signal.SIGKILL)

    async def test_backgroundLeftAlone(self) -> None:
        """
        A hook that exits leaving a process in the background (a deploy going
        on pulling) ends at once, and its background process is not killed.
        """
        pidFile = os.path.join(self.base, "bg.pid")
        runner = self.runner({"deploy": f"sleep 30 >/dev/null 2>&1 &\necho $! > {pidFile}\nexit 104\n"})
        result = await runner.runHook("deploy", self.task, self.task.image)
        self.assertEqual(result.exitCode, 104)
        with open(pidFile) as f:
            child = int(f.read())
        self.addCleanup(os.kill, child, signal.SIGKILL)
        self.assertTrue(_alive(child))

    async def test_notExecutable(self) -> None:
        """
        A hook file that is not executable gives an error result, no process.
        """
        runner = self.runner({"stop": "exit 0\n"})
        os.chmod(os.path.join(self.base, "stop"), 0o600)
        result = await runner.runHook("stop", self.task, "stopped")
        self.assertIsNone(result.exitCode)
        self.assertIn("is not an executable file", result.error or "")

    async def test_missingCheckHook(self) -> None:
        """
        An action without a configured hook gives an error result.
        """
        runner = self.runner({})
        result = await runner.runHook("check", self.task)
        self.assertEqual(result.error, "no hook configured")
