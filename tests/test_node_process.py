"""
End-to-end test of the real marvind process (C{python -m node.tap}) against
the fake controller served over TLS with client certificates on 127.0.0.1:
a task's life, SIGKILL and resume, and a controller outage with reports
queued and delivered in order afterwards.
"""

from __future__ import annotations

import os
import signal
import stat
import subprocess
import sys
import time
from typing import Any, Callable

import yaml
from twisted.internet import reactor
from twisted.internet.task import deferLater
from twisted.trial.unittest import TestCase
from twisted.protocols.policies import WrappingFactory
from twisted.web.server import Site

from node.testing import FakeController, serverTLSOptions, writeControllerPKI

CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

_HOOK = """#!/bin/sh
echo "$MARVIN_ACTION $1 ${2:-}" >> "%s"
"""


class AgentProcessTests(TestCase):
    """
    marvind as a real process.
    """

    timeout = 60

    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)
        self.pki = writeControllerPKI(os.path.join(self.base, "pki"))
        self.controller = FakeController(reactor, nodeId="1")
        # The wrapper keeps the open connections, so that an outage can cut them.
        self.site = WrappingFactory(Site(self.controller.root()))
        self.port = self.listen(0)
        self.portNumber = self.port.getHost().port
        self.hookCalls = os.path.join(self.base, "hook-calls")
        hooks = {}
        for action in ("deploy", "start", "stop"):
            path = os.path.join(self.base, action)
            with open(path, "w") as f:
                f.write(_HOOK % self.hookCalls)
            os.chmod(path, stat.S_IRWXU)
            hooks[action] = path
        self.config = os.path.join(self.base, "marvind.conf")
        with open(self.config, "w") as f:
            yaml.safe_dump({
                "controller": {"url": f"https://localhost:{self.portNumber}/v1", "ca": self.pki.caCertificate},
                "node": {"id": 1},
                "tls": {"certificate": self.pki.clientCertificate, "key": self.pki.clientKey},
                "state_directory": os.path.join(self.base, "state"),
                "heartbeat": {"period": 0.5, "jitter": 0.1},
                "hooks": hooks,
                "timeouts": {"request": 2},
            }, f)
        self.logPath = os.path.join(self.base, "marvind.log")
        self.agent: subprocess.Popen[bytes] | None = None

    def listen(self, port: int) -> Any:
        listening = reactor.listenSSL(port, self.site, serverTLSOptions(self.pki), interface="127.0.0.1")
        self.addCleanup(listening.stopListening)
        return listening

    async def stopController(self) -> None:
        await self.port.stopListening()
        for protocol in list(self.site.protocols):
            protocol.transport.abortConnection()

    def startAgent(self) -> subprocess.Popen[bytes]:
        log = open(self.logPath, "ab")
        self.addCleanup(log.close)
        env = dict(os.environ, PYTHONPATH=CHECKOUT)
        agent = subprocess.Popen(
            [sys.executable, "-m", "node.tap", "--config", self.config],
            cwd=CHECKOUT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )

        def kill() -> None:
            if agent.poll() is None:
                agent.kill()
                agent.wait()

        self.addCleanup(kill)
        return agent

    def hooksRun(self) -> list[str]:
        try:
            with open(self.hookCalls) as f:
                return [line.strip() for line in f]
        except FileNotFoundError:
            return []

    async def waitFor(self, what: str, condition: Callable[[], bool], seconds: float = 10) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            if time.monotonic() > deadline:
                with open(self.logPath) as f:
                    log = f.read()[-3000:]
                self.fail(
                    f"timed out waiting for {what}; reports {self.controller.reports}; "
                    f"hooks {self.hooksRun()}; agent log:\n{log}"
                )
            await deferLater(reactor, 0.05, lambda: None)

    async def test_lifeRestartOutage(self) -> None:
        """
        Two tasks reach the controller as deployed, started and stopped; a
        SIGKILLed agent is restarted and reports C{restarted}; reports made
        while the controller is down arrive, all and in order, once it is
        back.
        """
        t0 = time.time()
        self.controller.addTask("1", t0 + 4, t0 + 12, image="registry.example/one:1", _token="SECRET")
        self.controller.addTask("2", t0 + 9, t0 + 10, image="registry.example/two:1")
        statuses = self.controller.statuses

        agent = self.startAgent()
        await self.waitFor("deployed", lambda: statuses("1") == statuses("2") == ["deployed"])
        await self.waitFor("started", lambda: statuses("1") == ["deployed", "started"])

        agent.send_signal(signal.SIGKILL)
        agent.wait()
        self.startAgent()
        await self.waitFor("restarted", lambda: statuses("1")[-1:] == ["restarted"])
        beats = self.controller.routeCalls("heartbeat")
        self.assertEqual(beats[-1].fields["known_tasks"], ["1", "2"])

        await self.stopController()
        outage = time.time()
        self.assertLess(outage, t0 + 9, "the outage must cover task 2's start")
        reportsBefore = list(self.controller.reports)
        await self.waitFor("stop hooks", lambda: "stop 1 stopped" in self.hooksRun(), 15)
        self.assertEqual(self.controller.reports, reportsBefore)

        self.port = self.listen(self.portNumber)
        await self.waitFor("queued reports", lambda: len(self.controller.reports) == len(reportsBefore) + 3)

        def distinct(reports: list[str]) -> list[str]:
            # Delivery is at least once: a report the controller took just before
            # the SIGKILL, but the agent had not yet marked delivered, comes again.
            return [r for i, r in enumerate(reports) if i == 0 or reports[i - 1] != r]

        self.assertEqual(distinct(statuses("1")), ["deployed", "started", "restarted", "stopped"])
        self.assertEqual(distinct(statuses("2")), ["deployed", "started", "stopped"])
        self.assertEqual(
            [(sid, status) for (sid, status, _) in self.controller.reports[len(reportsBefore):]],
            [("2", "started"), ("2", "stopped"), ("1", "stopped")],
        )
        whens = [when for (_, _, when) in self.controller.reports]
        self.assertEqual(whens, sorted(whens))
        self.assertEqual({c.peer for c in self.controller.calls}, {"Node 1"})
        hooks = self.hooksRun()
        # The two deployments run side by side: their order is not defined.
        self.assertEqual(sorted(hooks[:2]), ["deploy 1 registry.example/one:1", "deploy 2 registry.example/two:1"])
        self.assertEqual(
            hooks[2:],
            ["start 1 started", "start 1 restarted", "start 2 started", "stop 2 stopped", "stop 1 stopped"],
        )
        with open(self.logPath) as f:
            self.assertNotIn("SECRET", f.read())
