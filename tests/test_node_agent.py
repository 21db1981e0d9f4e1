"""
Tests for L{node.agent}: the agent's logic, driven by a L{Clock}, against the
fake controller (through the real HTTP client code, in memory) and the fake
hook runner.
"""

from __future__ import annotations

import json
import os

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from node.agent import MarvindAgent
from node.client import ControllerResponse, HTTPControllerClient
from node.config import MarvindConfig
from node.state import DEPLOYED, RUNNING, StateStore
from node.testing import FakeController, FakeHookRunner
from node.wire import DROPPED, REFUSED_FINAL, SETTLED, classifyReply

NOW = 1_700_000_000
PERIOD = 60.0


class AgentHarness:
    """
    A controller, a hook runner and a state directory that outlive agents,
    so a test can "crash" an agent and start another one.
    """

    def __init__(self, testCase: SynchronousTestCase, **config: object) -> None:
        self.testCase = testCase
        self.clock = Clock()
        self.clock.advance(NOW)
        self.controller = FakeController(self.clock, nodeId="1")
        self.hooks = FakeHookRunner()
        self.directory = testCase.mktemp()
        settings = dict(
            controllerURL="https://ctl.example:8443/v1", caFile="ca.pem", nodeId="1",
            certificateFile="node.pem", keyFile="node.key", stateDirectory=self.directory,
            hooks={"deploy": "/h/deploy", "start": "/h/start", "stop": "/h/stop", "check": "/h/check"},
            heartbeatPeriod=PERIOD, heartbeatJitter=0.0,
        )
        settings.update(config)
        self.config = MarvindConfig(**settings)  # type: ignore[arg-type]
        self.agent: MarvindAgent | None = None

    def start(self, randomFloat: object = lambda: 0.5) -> MarvindAgent:
        """
        Start a fresh agent on the shared state and let its first heartbeat run.
        """
        client = HTTPControllerClient(
            StubTreq(self.controller.root()), self.clock, self.config.controllerURL, 10.0
        )
        self.agent = MarvindAgent(
            self.config, self.clock, client, self.hooks, StateStore(self.directory),
            randomFloat=randomFloat,  # type: ignore[arg-type]
        )
        self.agent.startService()
        self.clock.advance(0)
        return self.agent

    def crash(self) -> None:
        """
        Lose the agent without any goodbye: only what is on disk survives.
        """
        assert self.agent is not None
        self.agent.stopService()
        self.agent = None

    def advanceTo(self, when: float) -> None:
        """
        Move the clock to C{when}, stopping at every timer on the way so
        that each fires at its own time.
        """
        while self.clock.seconds() < when:
            pending = [c.getTime() for c in self.clock.getDelayedCalls()]
            target = min(pending + [when])
            self.clock.advance(max(0.0, target - self.clock.seconds()))

    def task(self, schedid: str, start: float, stop: float, **options: object) -> None:
        self.controller.addTask(schedid, NOW + start, NOW + stop, **options)


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


class ResumeTests(SynchronousTestCase):
    """
    After a crash or reboot the agent resumes from its state on disk.
    """

    def test_restartedAfterCrash(self) -> None:
        """
        A task that ran when the agent went down is started again with
        C{restarted}, and stopped at its stop time.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900)
        h.start()
        h.advanceTo(NOW + 400)
        h.crash()
        h.advanceTo(NOW + 500)
        h.start()
        self.assertEqual(h.hooks.runs[-2:], [("start", "10", "restarted"), ("check", "10", None)])
        self.assertEqual(h.controller.statuses("10"), ["deployed", "started", "restarted"])
        h.advanceTo(NOW + 900)
        self.assertEqual(h.controller.statuses("10")[-1], "stopped")

    def test_noRestartOption(self) -> None:
        """
        With C{restart: false}, a task interrupted by a reboot fails with
        C{node rebooted during task}; the stop hook cleans up.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900, restart=False)
        h.start()
        h.advanceTo(NOW + 400)
        h.crash()
        h.start()
        self.assertEqual(
            h.controller.statuses("10"), ["deployed", "started", "failed; node rebooted during task"]
        )
        self.assertEqual(h.hooks.runs[-1], ("stop", "10", "failed"))
        self.assertNotIn(("start", "10", "restarted"), h.hooks.runs)

    def test_timersRearmed(self) -> None:
        """
        A task deployed before the crash is started at its start time by the
        next agent, without being deployed again.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900)
        h.start()
        h.crash()
        h.start()
        h.advanceTo(NOW + 300)
        self.assertEqual(h.hooks.actions("10")[:2], ["deploy", "start"])
        self.assertNotIn("deploy", h.hooks.actions("10")[1:])
        self.assertEqual(h.controller.statuses("10"), ["deployed", "started"])

    def test_crashDuringStart(self) -> None:
        """
        A crash while the start hook runs counts as an interrupted task.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900)
        h.hooks.held.add("start")
        h.start()
        h.advanceTo(NOW + 300)
        h.crash()
        h.hooks.held.clear()
        h.start()
        self.assertEqual(h.controller.statuses("10"), ["deployed", "restarted"])

    def test_crashDuringStop(self) -> None:
        """
        A crash while the stop hook runs: the stop hook is run again and its
        outcome reported.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900)
        h.hooks.held.add("stop")
        h.start()
        h.advanceTo(NOW + 900)
        h.crash()
        h.hooks.held.clear()
        h.start()
        self.assertEqual(h.hooks.actions("10").count("stop"), 2)
        self.assertEqual(h.controller.statuses("10"), ["deployed", "started", "stopped"])

    def test_downThroughStopTime(self) -> None:
        """
        An agent down from inside the window until after its stop time runs
        the stop hook at start-up and reports what it says.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900)
        h.start()
        h.advanceTo(NOW + 400)
        h.crash()
        h.clock.advance(1000)
        h.controller.tasks["10"]["stop"] = NOW + 5000  # still listed
        h.start()
        self.assertEqual(h.hooks.runs[-1], ("stop", "10", "stopped"))

    def test_lostState(self) -> None:
        """
        A task the controller shows C{started} but the agent has no record of
        (state lost) is deployed again and started as C{restarted}.
        """
        h = AgentHarness(self)
        h.task("10", -100, 900, status="started")
        h.start()
        self.assertEqual(h.hooks.actions("10")[:2], ["deploy", "start"])
        self.assertEqual(h.controller.statuses("10"), ["restarted"])

    def test_queueSurvivesRestart(self) -> None:
        """
        Reports that could not be delivered are kept on disk across a crash
        and delivered in order once the controller answers again.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900)
        h.task("11", 400, 500)
        h.start()
        h.controller.available = False
        h.advanceTo(NOW + 600)
        self.assertEqual(h.controller.reports, [("10", "deployed", NOW), ("11", "deployed", NOW)])
        h.crash()
        h.start()
        assert h.agent is not None
        self.assertEqual(
            [(r.schedid, r.status) for r in h.agent.queue],
            [("10", "started"), ("11", "started"), ("11", "stopped"), ("10", "restarted")],
        )
        h.advanceTo(NOW + 700)
        self.assertEqual(h.controller.reports[2:], [])
        h.controller.available = True
        h.advanceTo(NOW + 1000)
        self.assertEqual(
            h.controller.reports[2:],
            [
                ("10", "started", NOW + 300),
                ("11", "started", NOW + 400),
                ("11", "stopped", NOW + 500),
                ("10", "restarted", NOW + 600),
                ("10", "stopped", NOW + 900),
            ],
        )
        self.assertEqual(h.agent.queue, [])

    def test_corruptStateMovedAside(self) -> None:
        """
        An unreadable state file is moved aside and the agent starts empty.
        """
        h = AgentHarness(self)
        os.makedirs(h.directory)
        with open(os.path.join(h.directory, "state.json"), "w") as f:
            f.write("{not json")
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        h.task("10", 300, 900)
        h.start()
        self.assertEqual(h.controller.statuses("10"), ["deployed"])
        self.assertTrue(any(n.startswith("state.json.corrupt-") for n in os.listdir(h.directory)))
        self.assertTrue(any(e["log_level"] == LogLevel.error for e in events))


class ControllerTests(SynchronousTestCase):
    """
    Talking to the controller: request budget, refusals, clock skew.
    """

    def test_oneRequestPerPeriod(self) -> None:
        """
        In steady state (a task running, nothing changing) the agent makes one
        request per heartbeat period.
        """
        h = AgentHarness(self)
        h.task("10", 100, 9000)
        h.start()
        h.advanceTo(NOW + 200)
        before = len(h.controller.calls)
        h.clock.pump([PERIOD] * 50)
        self.assertEqual(len(h.controller.calls) - before, 50)
        self.assertEqual({c.route for c in h.controller.calls[before:]}, {"heartbeat"})

    def test_jitter(self) -> None:
        """
        The first heartbeat comes within period times jitter of the start;
        the next ones every period times 1 ± jitter.
        """
        h = AgentHarness(self, heartbeatJitter=0.1)
        draws = iter([1.0, 1.0, 0.0] + [0.5] * 10)
        h.start(randomFloat=lambda: next(draws))
        self.assertEqual(h.controller.calls, [])
        h.clock.advance(6.0)
        self.assertEqual(len(h.controller.routeCalls("heartbeat")), 1)
        h.clock.advance(65.9)
        self.assertEqual(len(h.controller.routeCalls("heartbeat")), 1)
        h.clock.advance(0.1)
        self.assertEqual(len(h.controller.routeCalls("heartbeat")), 2)
        h.clock.advance(53.9)
        self.assertEqual(len(h.controller.routeCalls("heartbeat")), 2)
        h.clock.advance(0.1)
        self.assertEqual(len(h.controller.routeCalls("heartbeat")), 3)

    def test_heartbeatFields(self) -> None:
        """
        The heartbeat carries the interfaces file's list and C{limit=10}.
        """
        interfaces = self.mktemp()
        with open(interfaces, "w") as f:
            json.dump([{"iccid": "8901", "opname": "op", "host": 5}], f)
        h = AgentHarness(self, interfacesFile=interfaces)
        h.start()
        beat = h.controller.routeCalls("heartbeat")[0]
        self.assertEqual(beat.path, "resources/1")
        self.assertEqual(json.loads(beat.fields["interfaces"][0]), [{"iccid": "8901", "opname": "op", "host": 5}])
        self.assertEqual(beat.fields["limit"], ["10"])

    def test_certificateRefused(self) -> None:
        """
        A 401 from the certificate check is logged as an error and retried
        each period, without heartbeats, until the controller accepts it.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        h = AgentHarness(self)
        h.controller.authorized = False
        h.start()
        h.clock.pump([PERIOD] * 2)
        self.assertEqual([c.route for c in h.controller.calls], ["auth"] * 3)
        self.assertTrue(
            any(e["log_level"] == LogLevel.error and "certificate" in e["log_format"] for e in events)
        )
        h.controller.authorized = True
        h.clock.advance(PERIOD)
        self.assertEqual([c.route for c in h.controller.calls][-2:], ["auth", "heartbeat"])

    def test_heartbeatRefused(self) -> None:
        """
        A heartbeat refused with 401 is logged; the agent keeps going.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        h = AgentHarness(self, nodeId="2")
        h.start()
        h.clock.pump([PERIOD] * 2)
        self.assertEqual([c.route for c in h.controller.calls], ["auth"] + ["heartbeat"] * 3)
        self.assertTrue(any("refused the heartbeat" in e["log_format"] for e in events))

    def test_finalStatusKept(self) -> None:
        """
        A report the controller refuses because the schedule's status is
        final (409 "cannot be reset") is dropped, and later ones still go.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900)
        h.task("11", 300, 900)
        h.start()
        h.controller.available = False
        h.advanceTo(NOW + 300)
        h.controller.tasks["10"]["status"] = "aborted"
        h.controller.available = True
        h.advanceTo(NOW + 360)
        assert h.agent is not None
        self.assertEqual(h.agent.queue, [])
        self.assertEqual(h.controller.statuses("11"), ["deployed", "started"])
        self.assertEqual(h.controller.statuses("10"), ["deployed"])

    def test_refusedReportsDropped(self) -> None:
        """
        A report refused with 404 is dropped; one answered 503 stays queued.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900)
        h.start()
        h.advanceTo(NOW + 299)
        del h.controller.tasks["10"]
        h.advanceTo(NOW + 300)
        assert h.agent is not None
        self.assertEqual(h.agent.queue, [])
        self.assertEqual(h.controller.routeCalls("report")[-1].path, "schedules/10")

    def test_clockSkewWarning(self) -> None:
        """
        A controller C{Date} more than C{max_clock_skew} away from our clock
        is warned about once; a notice follows when it is back within bound.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        h = AgentHarness(self, maxClockSkew=10.0)
        h.controller.dateOffset = 9.0
        h.start()
        skewWarnings = [e for e in events if "clockSkew" in e]
        self.assertEqual(skewWarnings, [])
        h.controller.dateOffset = -120.0
        h.clock.pump([PERIOD] * 3)
        skewWarnings = [e for e in events if "clockSkew" in e]
        self.assertEqual(len(skewWarnings), 1)
        self.assertEqual(skewWarnings[0]["log_level"], LogLevel.warn)
        self.assertAlmostEqual(skewWarnings[0]["clockSkew"], -120.0, delta=1)
        h.controller.dateOffset = 0.0
        h.clock.advance(PERIOD)
        self.assertTrue(any("back within" in e["log_format"] for e in events))

    def test_malformedTaskIgnored(self) -> None:
        """
        A malformed task in the reply is logged and skipped; the others run.
        """
        events = EventLoggingObserver.createWithCleanup(self, globalLogPublisher)
        h = AgentHarness(self)
        h.task("10", 300, 900)
        h.controller.tasks["../x"] = {"id": "../x", "start": NOW, "stop": NOW + 10, "expid": 1}
        h.controller.tasks["12"] = {"id": "12", "start": "soon", "stop": NOW + 10, "expid": 1}
        h.start()
        self.assertEqual(h.controller.statuses("10"), ["deployed"])
        warnings = [e for e in events if "Ignoring a task" in e["log_format"]]
        self.assertEqual(len(warnings), 2)


class StateLayoutTests(SynchronousTestCase):
    """
    What the agent leaves on disk.
    """

    def test_statePhases(self) -> None:
        """
        The state file records each task's phase as it goes, with mode 0600.
        """
        h = AgentHarness(self)
        h.task("10", 300, 900)
        h.start()
        tasks, _ = StateStore(h.directory).load()
        self.assertEqual(tasks["10"].phase, DEPLOYED)
        h.advanceTo(NOW + 300)
        tasks, _ = StateStore(h.directory).load()
        self.assertEqual(tasks["10"].phase, RUNNING)
        mode = os.stat(os.path.join(h.directory, "state.json")).st_mode & 0o777
        self.assertEqual(mode, 0o600)


class ReplyTests(SynchronousTestCase):
    """
    L{classifyReply}: what the agent makes of an answer to a status report.
    """

    def reply(self, code: int, body: object) -> ControllerResponse:
        return ControllerResponse(code, body, json.dumps(body), None)

    def test_finalByCode(self) -> None:
        """
        A 409 whose C{code} is C{final} means the task is settled there,
        whatever its message says.
        """
        self.assertEqual(classifyReply(self.reply(409, {"message": "Nope.", "code": REFUSED_FINAL})), SETTLED)

    def test_otherCodeIsNotFinal(self) -> None:
        """
        A 409 with another code is dropped, not taken for a final status,
        even if its text mentions one.
        """
        body = {"message": "Status cannot be reset, or can it?", "code": "order"}
        self.assertEqual(classifyReply(self.reply(409, body)), DROPPED)

    def test_legacyMessage(self) -> None:
        """
        A controller that sends no code (the legacy server) is understood by
        its message.
        """
        self.assertEqual(classifyReply(self.reply(409, {"message": "Status finished cannot be reset."})), SETTLED)

    def test_coreAgrees(self) -> None:
        """
        The core's refusal code for a final status is the one the agent reads
        (the agent imports nothing of am/, so the two are checked here).
        """
        from am.core.errors import TransitionRefused
        from am.core.states import Actor, checkTransition

        with self.assertRaises(TransitionRefused) as info:
            checkTransition("finished", "started", Actor.NODE)
        self.assertEqual(info.exception.extra["code"], REFUSED_FINAL)
