"""
The agent harness of the node agent's tests: a L{Clock}, the fake controller
(through the real HTTP client code, in memory), the fake hook runner and a
state directory that outlive agents.
"""

from __future__ import annotations

from treq.testing import StubTreq
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from node.agent import MarvindAgent
from node.client import HTTPControllerClient
from node.config import MarvindConfig
from node.state import StateStore
from node.testing import FakeController, FakeHookRunner

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
