"""
marvind's metrics port: off by default; when configured, a listener beside
the agent answers /metrics (parsed with prometheus_client's parser) with
tasks by phase, hook durations and failures, and controller reachability.
"""

from __future__ import annotations

import os

import yaml
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock
from twisted.test.iosim import FakeTransport, connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from node import tap
from node.agent import MarvindAgent
from node.config import ConfigError, parseConfig
from node.hooks import HookResult
from node.metrics import AgentMetrics, MeasuredHooks
from node.state import RUNNING
from tests.test_ctl_service import ClientProtocol
from tests.test_node_tap import writeConfig


def samplesOf(payload: bytes) -> dict:
    samples = {}
    for family in text_string_to_metric_families(payload.decode("utf-8")):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


class MetricsPortTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.base = os.path.abspath(self.mktemp())
        os.makedirs(self.base)
        self.path = writeConfig(self.base)

    def options(self, metrics=None):
        if metrics is not None:
            with open(self.path) as f:
                document = yaml.safe_load(f)
            document["metrics"] = metrics
            with open(self.path, "w") as f:
                yaml.safe_dump(document, f)
        options = tap.Options()
        options.parseOptions(["--config", self.path])
        return options

    def test_offByDefault(self) -> None:
        self.assertIsInstance(tap.makeService(self.options(), MemoryReactorClock()), MarvindAgent)

    def test_scrape(self) -> None:
        """
        The listener binds the configured local port; a scrape reports the
        agent's tasks by phase and whether the controller answers.
        """
        reactor = MemoryReactorClock()
        service = tap.makeService(self.options({"port": 9109}), reactor)
        agent = service.getServiceNamed("marvind")
        service.startService()
        self.addCleanup(service.stopService)
        [(port, factory, _, interface)] = reactor.tcpServers
        self.assertEqual((port, interface), (9109, "127.0.0.1"))
        peer = IPv4Address("TCP", "127.0.0.1", 40000)
        client = ClientProtocol(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        _, _, pump = connectedServerAndClient(
            lambda: factory.buildProtocol(peer), lambda: client,
            serverTransportFactory=lambda p: FakeTransport(p, True, peerAddress=peer),
        )
        pump.flush()
        head, _, body = client.data.partition(b"\r\n\r\n")
        self.assertIn(b"200", head.split(b"\r\n")[0])
        samples = samplesOf(body)
        self.assertEqual(samples[("marvind_tasks", (("phase", RUNNING),))], 0)
        self.assertEqual(samples[("marvind_controller_reachable", ())], 0)
        self.assertEqual(samples[("marvind_unanswered_heartbeats", ())], agent.unansweredHeartbeats)

    def test_badConfig(self) -> None:
        base = {"controller": {"url": "https://c/v1", "ca": "x"}, "node": {"id": "1"}, "tls": {"certificate": "c", "key": "k"},
                "state_directory": "/tmp/x", "hooks": {"deploy": "/bin/true", "start": "/bin/true", "stop": "/bin/true"}}
        for metrics, message in (({"port": "x"}, "metrics.port"), ({"port": 1, "address": "localhost"}, "metrics.address"),
                                 ({"prot": 1}, "metrics: unknown")):
            with self.assertRaises(ConfigError) as e:
                parseConfig(dict(base, metrics=metrics), checkFiles=False)
            self.assertIn(message, str(e.exception))
        config = parseConfig(dict(base, metrics={"port": 9109}), checkFiles=False)
        self.assertEqual((config.metricsPort, config.metricsAddress), (9109, "127.0.0.1"))


class MeasuredHooksTests(SynchronousTestCase):
    def test_durationsAndFailures(self) -> None:
        """
        Each run is timed on the clock; a run that did not exit 0 counts as a
        failure with its reason.
        """
        clock = Clock()
        outcomes = {
            "deploy": HookResult("deploy", exitCode=0),
            "start": HookResult("start", timedOut=True, signal=9),
            "stop": HookResult("stop", exitCode=3),
            "check": HookResult("check", error="missing"),
        }

        class Runner:
            def runHook(self, action, task, argument=None):
                clock.advance(7)
                return succeed(outcomes[action])

        metrics = AgentMetrics()
        hooks = MeasuredHooks(Runner(), metrics, clock)
        for action in outcomes:
            self.assertIs(self.successResultOf(hooks.runHook(action, None)), outcomes[action])
        samples = samplesOf(metrics.exposition())
        self.assertEqual(samples[("marvind_hook_duration_seconds_sum", (("action", "deploy"),))], 7)
        failures = {labels: v for (name, labels), v in samples.items() if name == "marvind_hook_failures_total"}
        self.assertEqual(failures, {
            (("action", "start"), ("reason", "timeout")): 1,
            (("action", "stop"), ("reason", "exit")): 1,
            (("action", "check"), ("reason", "error")): 1,
        })
