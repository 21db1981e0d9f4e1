"""
Tests for L{node.agent} after a crash or reboot, and what it leaves on disk.
"""

from __future__ import annotations

import os

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from node.state import DEPLOYED, RUNNING, StateStore

from tests.agentharness import NOW, AgentHarness


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
