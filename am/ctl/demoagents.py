# -*- test-case-name: tests.test_e2e_demo -*-
"""
The demo's node agents: one C{marvind} child process per demo node, each
with its own certificate (from the demo PKI), state directory, log and
heartbeat, started once the controller listens and stopped with it.

Without a reachable Docker daemon the agents run tasks with the I{local}
hooks (C{files/hooks/local}: plain processes, for demos and tests, not
isolation); with one they use the Docker hooks.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from typing import Any, Optional

import yaml
from twisted.application.service import Service
from twisted.internet.defer import Deferred, DeferredList, succeed
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python.failure import Failure

#: Seconds between an agent's heartbeats in the demo (a newcomer should see
#: a task move within seconds, not minutes).
DEMO_HEARTBEAT = 5.0

#: Seconds an agent gets to end after SIGTERM before SIGKILL.
STOP_GRACE = 10.0


def hooksDirectory() -> Optional[str]:
    """
    Where the hook sets are: C{files/hooks} of a source checkout, else
    C{<prefix>/share/marvin/hooks} of an installation.
    """
    here = os.path.dirname(os.path.abspath(__file__))
    for candidate in (
        os.path.join(os.path.dirname(os.path.dirname(here)), "files", "hooks"),
        os.path.join(sys.prefix, "share", "marvin", "hooks"),
    ):
        if os.path.isfile(os.path.join(candidate, "local", "deploy")):
            return candidate
    return None


def dockerReachable() -> bool:
    """
    Whether a Docker daemon answers C{docker info} within a few seconds.
    """
    if shutil.which("docker") is None:
        return False
    try:
        return subprocess.run(
            ["docker", "info"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=5
        ).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def agentConfig(
    directory: str, nodeid: str, port: int, caFile: str, certificate: str, key: str, hooks: str,
    heartbeat: float = DEMO_HEARTBEAT,
) -> dict[str, Any]:
    """
    The C{marvind.conf} document of one demo agent.
    """
    actions = ("deploy", "start", "stop", "check")
    return {
        "controller": {"url": f"https://localhost:{port}/v1", "ca": caFile},
        "node": {"id": nodeid},
        "tls": {"certificate": certificate, "key": key},
        "state_directory": os.path.join(directory, "state"),
        "heartbeat": {"period": heartbeat, "jitter": 0.1, "limit": 10},
        "hooks": {a: os.path.join(hooks, a) for a in actions},
        "timeouts": {"request": 10, "deploy": 600, "start": 60, "stop": 60, "check": 20, "kill_grace": 5},
    }


class _AgentProcess(ProcessProtocol):
    """
    One running agent: its output goes to its log file.
    """

    def __init__(self, nodeid: str, log: Any) -> None:
        self.nodeid = nodeid
        self.logFile = log
        self.ended: Deferred = Deferred()
        self.exitCode: Optional[int] = None

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        self.logFile.write(data)
        self.logFile.flush()

    def processEnded(self, reason: Failure) -> None:
        self.exitCode = getattr(reason.value, "exitCode", None)
        self.logFile.close()
        self.ended.callback(self.exitCode)


class DemoAgents(Service):
    """
    Runs a C{marvind} per demo node while started (children of the
    controller, so they start after its listeners and stop before its store
    closes).

    @ivar runtime: C{"local"} or C{"docker"}, the hook set in use.
    @ivar directories: node id -> the agent's directory (configuration,
        state, C{marvind.log}).
    """

    name = "demo-agents"
    log = Logger(namespace="marvinctld")

    def __init__(
        self, controller: Any, nodeids: tuple[str, ...], identities: dict[str, tuple[str, str]],
        caFile: str, directory: str, runtime: Optional[str] = None, heartbeat: float = DEMO_HEARTBEAT,
    ) -> None:
        self.controller = controller
        self.nodeids = nodeids
        self.identities = identities
        self.caFile = caFile
        self.directory = directory
        self.runtime = runtime
        self.heartbeat = heartbeat
        self.directories: dict[str, str] = {}
        self._running: dict[str, tuple[Any, _AgentProcess]] = {}

    def startService(self) -> None:
        super().startService()
        port = self.controller.portFor("https")
        hooks = hooksDirectory()
        if port is None or hooks is None:
            self.log.warn("demo agents not started: {why}",
                          why="no TLS listener" if port is None else "the hooks (files/hooks) are not installed")
            return
        if self.runtime is None:
            self.runtime = "docker" if dockerReachable() else "local"
        hookSet = hooks if self.runtime == "docker" else os.path.join(hooks, "local")
        reactor = self.controller.reactor
        for nodeid in self.nodeids:
            certificate, key = self.identities[nodeid]
            directory = os.path.join(self.directory, f"node{nodeid}")
            os.makedirs(directory, mode=0o700, exist_ok=True)
            config = os.path.join(directory, "marvind.conf")
            with open(config, "w", encoding="utf-8") as f:
                f.write("# Written by marvinctld --demo on every start.\n")
                yaml.safe_dump(agentConfig(directory, nodeid, port, self.caFile, certificate, key, hookSet,
                                           self.heartbeat), f, sort_keys=False)
            protocol = _AgentProcess(nodeid, open(os.path.join(directory, "marvind.log"), "ab"))
            transport = reactor.spawnProcess(
                protocol, sys.executable, [sys.executable, "-m", "node.tap", "--config", config],
                env=dict(os.environ), path=directory,
            )
            self.directories[nodeid] = directory
            self._running[nodeid] = (transport, protocol)
        self.log.info("{count} demo node agent(s) started ({runtime} runtime), logs in {directory}/node*/marvind.log",
                      count=len(self._running), runtime=self.runtime, directory=self.directory)

    def stopService(self) -> Deferred:
        """
        SIGTERM every agent, SIGKILL those still running after L{STOP_GRACE}
        seconds; fires when all have ended.
        """
        super().stopService()
        running, self._running = self._running, {}
        reactor = self.controller.reactor
        waits = []
        for transport, protocol in running.values():
            if protocol.ended.called:
                continue
            try:
                transport.signalProcess("TERM")
            except Exception:
                continue
            late = reactor.callLater(STOP_GRACE, _kill, transport)

            def ended(result: Any, late: Any = late) -> Any:
                if late.active():
                    late.cancel()
                return result

            protocol.ended.addBoth(ended)
            waits.append(protocol.ended)
        return DeferredList(waits, consumeErrors=True) if waits else succeed(None)


def _kill(transport: Any) -> None:
    try:
        transport.signalProcess(signal.SIGKILL)
    except Exception:
        pass
