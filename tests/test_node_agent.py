"""
Tests for L{node.agent}: a task's life, failures, operational actions and
cancels, driven by a L{Clock} through L{tests.agentharness}.
"""

from __future__ import annotations

import json
import os

from twisted.trial.unittest import SynchronousTestCase

from node.state import StateStore

from tests.agentharness import NOW, AgentHarness


class LifeCycleTests(SynchronousTestCase):
    """
    A task's normal life: deploy, start, stop, or ending by itself.
    """

    def test_deployStartStop(self) -> None:
        """
        A new task is deployed at once (C{deployed}), started at its start time
        (C{started}) and stopped at its stop time (C{stopped}); each hook gets
        the documented arguments.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900, image="registry.example/ping:2", _secret="s3cr3t")
        h.start()
        self.assertEqual(h.controller.statuses("10"), ["deployed"])
        self.assertEqual(h.hooks.runs, [("deploy", "10", "registry.example/ping:2")])
        h.advanceTo(NOW + 299)
        self.assertEqual(h.controller.statuses("10"), ["deployed"])
        h.advanceTo(NOW + 300)
        self.assertEqual(h.controller.statuses("10"), ["deployed", "started"])
        self.assertEqual(h.controller.reports[-1][2], NOW + 300)
        h.advanceTo(NOW + 900)
        self.assertEqual(h.controller.statuses("10"), ["deployed", "started", "stopped"])
        self.assertEqual(
            [r for r in h.hooks.runs if r[0] != "check"],
            [
                ("deploy", "10", "registry.example/ping:2"),
                ("start", "10", "started"),
                ("stop", "10", "stopped"),
            ],
        )

    def test_configurationFileForHooks(self) -> None:
        """
        Before the deploy hook runs, the task's configuration (deployment
        options, secrets included, plus the window and ids) is written with
        mode 0600; it is removed once the task is over.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900, _secret="s3cr3t", storage=100)
        h.start()
        store = StateStore(h.directory)
        path = store.configPath("10")
        with open(path) as f:
            config = json.load(f)
        self.assertEqual(config["_secret"], "s3cr3t")
        self.assertEqual(config["storage"], 100)
        self.assertEqual((config["start"], config["stop"], config["schedid"]), (NOW + 300, NOW + 900, "10"))
        self.assertEqual(config["nodeid"], "1")
        self.assertEqual(os.stat(path).st_mode & 0o777, 0o600)
        h.advanceTo(NOW + 900)
        self.assertFalse(os.path.exists(path))

    def test_endsByItself(self) -> None:
        """
        When the check hook says the container has ended (exit 10), the stop
        hook cleans up (argument C{finished}) and C{finished} is reported; no
        second stop happens at the stop time.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900)
        h.start()
        h.advanceTo(NOW + 300)
        h.hooks.setResult("check", 10)
        h.advanceTo(NOW + 360)
        self.assertEqual(h.controller.statuses("10"), ["deployed", "started", "finished"])
        self.assertIn(("stop", "10", "finished"), h.hooks.runs)
        h.advanceTo(NOW + 1000)
        self.assertEqual(h.hooks.actions("10").count("stop"), 1)
        self.assertEqual(h.controller.statuses("10"), ["deployed", "started", "finished"])

    def test_stopHookSaysFinished(self) -> None:
        """
        A stop hook that exits 10 at the stop time means the container had
        already exited: C{finished}.
        """
        h = AgentHarness(self, hooks={"deploy": "/d", "start": "/s", "stop": "/t"})
        h.task("10", 300, 900)
        h.hooks.setResult("stop", 10)
        h.start()
        h.advanceTo(NOW + 900)
        self.assertEqual(h.controller.statuses("10"), ["deployed", "started", "finished"])

    def test_lateDeployStartsAtOnce(self) -> None:
        """
        A task whose start time has already passed when it is deployed is
        started at once.
        """
        h = AgentHarness(self)
        h.task("10", -30, 600)
        h.start()
        self.assertEqual(h.controller.statuses("10"), ["deployed", "started"])

    def test_finishedTasksForgotten(self) -> None:
        """
        Once its window has passed and its reports are delivered, a task is
        no longer known (nor sent as C{known_tasks}).
        """
        h = AgentHarness(self)
        h.task("10", 300, 900)
        h.start()
        beat = h.controller.routeCalls("heartbeat")[-1]
        self.assertEqual(beat.fields.get("known_tasks"), None)
        h.advanceTo(NOW + 400)
        beat = h.controller.routeCalls("heartbeat")[-1]
        self.assertEqual(beat.fields["known_tasks"], ["10"])
        h.advanceTo(NOW + 1000)
        assert h.agent is not None
        self.assertEqual(h.agent.tasks, {})
        beat = h.controller.routeCalls("heartbeat")[-1]
        self.assertEqual(beat.fields.get("known_tasks"), None)


class FailureTests(SynchronousTestCase):
    """
    Failures are reported as C{failed} with the reason.
    """

    def deployed(self, action: str, exitCode: int | None, timedOut: bool = False) -> list[str]:
        h = AgentHarness(self)
        h.task("10", 300, 900)
        h.hooks.setResult(action, exitCode, timedOut=timedOut)
        h.start()
        h.advanceTo(NOW + 1000)
        self.hooks = h.hooks
        return h.controller.statuses("10")

    def test_deployExitCodes(self) -> None:
        """
        Deploy hook exit codes map to the legacy table, others to their number.
        """
        self.assertEqual(self.deployed("deploy", 102), ["failed; storage quota exceeded during deployment"])
        self.assertEqual(self.deployed("deploy", 124), ["failed; container downloading timeout"])
        self.assertEqual(self.deployed("deploy", 42), ["failed; deploy hook exit code 42"])
        self.assertNotIn("start", self.hooks.actions("10"))

    def test_deployTimeout(self) -> None:
        """
        A deploy hook killed at its timeout fails the task and says so.
        """
        self.assertEqual(
            self.deployed("deploy", None, timedOut=True), ["failed; deploy hook timed out after 30 s"]
        )

    def test_startFailure(self) -> None:
        """
        A start hook failure is reported with its reason, and the stop hook
        then cleans up (argument C{failed}); nothing is reported after it.
        """
        self.assertEqual(
            self.deployed("start", 12), ["deployed", "failed; container image not found."]
        )
        self.assertEqual(self.hooks.runs[-1], ("stop", "10", "failed"))
        self.assertEqual(
            self.deployed("start", 3), ["deployed", "failed; start hook exit code 3."]
        )

    def test_stopFailure(self) -> None:
        """
        A failing stop hook gives C{failed; stop hook exit code N}.
        """
        self.assertEqual(
            self.deployed("stop", 1), ["deployed", "started", "failed; stop hook exit code 1"]
        )

    def test_noImage(self) -> None:
        """
        A task without a container image fails without running any hook.
        """
        h = AgentHarness(self)
        h.controller.addTask("10", NOW + 300, NOW + 900, image="")
        h.start()
        self.assertEqual(
            h.controller.statuses("10"), ["failed; no container image (deployment option script)"]
        )
        self.assertEqual(h.hooks.runs, [])

    def test_delayedIsRetried(self) -> None:
        """
        A C{delayed} deploy (exit 104) is reported once and retried one
        period later.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900)
        h.hooks.setResult("deploy", 104, times=2)
        h.start()
        self.assertEqual(h.controller.statuses("10"), ["delayed; container downloading in background"])
        h.advanceTo(NOW + 60)
        self.assertEqual(h.hooks.actions("10"), ["deploy", "deploy"])
        self.assertEqual(len(h.controller.statuses("10")), 1)
        h.advanceTo(NOW + 120)
        self.assertEqual(
            h.controller.statuses("10"), ["delayed; container downloading in background", "deployed"]
        )

    def test_windowMissed(self) -> None:
        """
        A task that could not be deployed before its stop time fails.
        """
        h = AgentHarness(self)
        h.task("10", 30, 100)
        h.hooks.setResult("deploy", 100)
        h.start()
        h.advanceTo(NOW + 200)
        self.assertEqual(
            h.controller.statuses("10"),
            [
                "delayed; container does not exist, or i/o timeout",
                "failed; the task window closed before it could be deployed",
            ],
        )

    def test_maintenance(self) -> None:
        """
        In maintenance nothing is deployed (C{delayed}); the heartbeat says
        C{maintenance=1}; once the flag is cleared the task is deployed.
        """
        flag = self.mktemp()
        with open(flag, "w") as f:
            f.write("1\n")
        h = AgentHarness(self, maintenanceFile=flag)
        h.task("10", 300, 900)
        h.start()
        self.assertEqual(h.controller.routeCalls("heartbeat")[0].fields["maintenance"], ["1"])
        self.assertEqual(h.hooks.runs, [])
        self.assertEqual(
            h.controller.statuses("10"), ["delayed; cannot deploy while node is in maintenance mode"]
        )
        with open(flag, "w") as f:
            f.write("0\n")
        h.advanceTo(NOW + 120)
        self.assertEqual(h.controller.routeCalls("heartbeat")[-1].fields["maintenance"], ["0"])
        self.assertEqual(h.controller.statuses("10")[-1], "deployed")


class OperationalActionTests(SynchronousTestCase):
    """
    Stop, start and restart of one schedule inside its window, as the
    controller asks through C{run_state} and C{run_serial}; login keys.
    """

    def ask(self, h: AgentHarness, state: str, serial: int) -> None:
        options = h.controller.tasks["10"]["deployment_options"]
        h.controller.tasks["10"]["deployment_options"] = dict(options, run_state=state, run_serial=serial)

    def test_stopThenStart(self) -> None:
        """
        A stop request stops the running task and reports it deployed (not
        final); a start deploys and runs it again (C{restarted}); at the stop
        time it ends as usual.
        """
        h = AgentHarness(self)
        h.task("10", 300, 1800)
        h.start()
        h.advanceTo(NOW + 400)
        self.ask(h, "stopped", 1)
        h.advanceTo(NOW + 480)
        self.assertEqual(h.controller.statuses("10"), ["deployed", "started", "deployed; stopped on request"])
        self.assertEqual(h.hooks.runs[-1], ("stop", "10", "stopped"))
        h.advanceTo(NOW + 700)
        self.assertNotIn("start", h.hooks.actions("10")[-2:])
        self.ask(h, "running", 2)
        h.advanceTo(NOW + 780)
        self.assertEqual(h.controller.statuses("10")[-2:], ["deployed", "restarted"])
        self.assertEqual([a for a in h.hooks.actions("10") if a != "check"],
                         ["deploy", "start", "stop", "deploy", "start"])
        h.advanceTo(NOW + 1800)
        self.assertEqual(h.controller.statuses("10")[-1], "stopped")

    def test_stoppedUntilItsEnd(self) -> None:
        """
        A task stopped on request and never started again ends C{stopped} at
        its stop time without running any hook again.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900)
        h.start()
        h.advanceTo(NOW + 400)
        self.ask(h, "stopped", 1)
        h.advanceTo(NOW + 900)
        self.assertEqual(h.controller.statuses("10")[-1], "stopped")
        self.assertEqual([a for a in h.hooks.actions("10") if a != "check"], ["deploy", "start", "stop"])

    def test_stoppedBeforeItsStart(self) -> None:
        """
        Stopped before the node first saw it: deployed but never started.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900, run_state="stopped", run_serial=1)
        h.start()
        h.advanceTo(NOW + 600)
        self.assertEqual([a for a in h.hooks.actions("10") if a != "check"], [])

    def test_restart(self) -> None:
        """
        A restart (serial raised, still running) stops and starts the task once.
        """
        h = AgentHarness(self)
        h.task("10", 300, 1800)
        h.start()
        h.advanceTo(NOW + 400)
        self.ask(h, "running", 1)
        h.advanceTo(NOW + 600)
        self.assertEqual([a for a in h.hooks.actions("10") if a != "check"],
                         ["deploy", "start", "stop", "deploy", "start"])
        self.assertEqual(h.controller.statuses("10")[-1], "restarted")

    def test_loginKeysForHooks(self) -> None:
        """
        The GENI users' keys reach the hooks as an authorized_keys file
        (C{MARVIN_SSH_KEYS}), rewritten when the controller changes them.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900, ssh_keys=["ssh-ed25519 AAAA alice", "bad\nkey", 7])
        h.start()
        path = StateStore(h.directory).keysPath("10")
        with open(path) as f:
            self.assertEqual(f.read(), "ssh-ed25519 AAAA alice\n")
        options = h.controller.tasks["10"]["deployment_options"]
        h.controller.tasks["10"]["deployment_options"] = dict(options, ssh_keys=["ssh-rsa BBBB bob"])
        h.advanceTo(NOW + 60)
        with open(path) as f:
            self.assertEqual(f.read(), "ssh-rsa BBBB bob\n")


class CancelTests(SynchronousTestCase):
    """
    Tasks canceled or aborted on the controller are stopped and forgotten.
    """

    def test_abortedWhileRunning(self) -> None:
        """
        A running task shown C{aborted} is stopped (argument C{aborted}),
        forgotten, and nothing more is reported for it.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900)
        h.start()
        h.advanceTo(NOW + 400)
        h.controller.tasks["10"]["status"] = "aborted"
        h.advanceTo(NOW + 460)
        self.assertIn(("stop", "10", "aborted"), h.hooks.runs)
        assert h.agent is not None
        self.assertNotIn("10", h.agent.tasks)
        self.assertFalse(os.path.exists(StateStore(h.directory).configPath("10")))
        h.advanceTo(NOW + 1000)
        self.assertEqual(h.controller.statuses("10"), ["deployed", "started"])
        self.assertEqual(h.hooks.actions("10").count("stop"), 1)

    def test_canceledBeforeStart(self) -> None:
        """
        A deployed task canceled before its start is never started.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900)
        h.start()
        h.controller.tasks["10"]["status"] = "canceled"
        h.advanceTo(NOW + 1000)
        self.assertEqual([a for a in h.hooks.actions("10") if a != "check"], ["deploy", "stop"])
        self.assertEqual(h.controller.statuses("10"), ["deployed"])

    def test_canceledDuringDeploy(self) -> None:
        """
        A task canceled while its deploy hook runs is cleaned up once it ends
        and never started.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900)
        h.hooks.held.add("deploy")
        h.start()
        h.controller.tasks["10"]["status"] = "canceled"
        h.advanceTo(NOW + 60)
        h.hooks.release("deploy")
        h.advanceTo(NOW + 1000)
        self.assertEqual(h.hooks.actions("10"), ["deploy", "stop"])
        self.assertEqual(h.hooks.runs[-1], ("stop", "10", "aborted"))

    def test_finalTasksNotDeployed(self) -> None:
        """
        Tasks the controller lists with a final status are never deployed.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900, status="canceled")
        h.task("11", 300, 900, status="finished")
        h.start()
        self.assertEqual(h.hooks.runs, [])
