"""
Tests for L{node.agent} talking to the controller (request budget, refusals,
clock skew) and for L{node.wire.classifyReply}.
"""

from __future__ import annotations

import json

from twisted.internet.testing import EventLoggingObserver
from twisted.logger import LogLevel, globalLogPublisher
from twisted.trial.unittest import SynchronousTestCase

from node.client import ControllerResponse
from node.wire import DROPPED, REFUSED_FINAL, SETTLED, classifyReply

from tests.agentharness import NOW, PERIOD, AgentHarness


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
