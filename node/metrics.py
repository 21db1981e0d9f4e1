# -*- test-case-name: tests.test_node_metrics -*-
"""
marvind's own Prometheus metrics, on an optional local port
(C{metrics.port} in marvind.conf; off by default): tasks by phase, hook
durations and failures by action, and whether the controller answers.

The agent is not changed for this: hooks are timed by wrapping the hook
runner (L{MeasuredHooks}), and the rest is read from the agent when scraped.
"""

from __future__ import annotations

from collections import Counter as Tally
from typing import Any, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from twisted.internet.defer import Deferred
from twisted.web.resource import Resource

from node.hooks import HookResult
from node.state import PHASES

# Hooks run from a second (check) to many minutes (deploy pulls an image).
_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 900, 1800)


class AgentMetrics:
    """
    The agent's instruments, in a registry of their own.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.hookSeconds = Histogram(
            "marvind_hook_duration_seconds", "How long hooks ran, by action.", ["action"],
            buckets=_BUCKETS, registry=self.registry,
        )
        self.hookFailures = Counter(
            "marvind_hook_failures", "Hook runs that did not exit 0, by action and reason "
            "(exit, signal, timeout, error: could not be run).", ["action", "reason"], registry=self.registry,
        )
        self.agent: Any = None
        self.registry.register(_AgentCollector(self))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


def failureReason(result: HookResult) -> str | None:
    """
    Why a hook run failed, as a label, or C{None} if it did not.
    """
    if result.ok:
        return None
    if result.error is not None:
        return "error"
    if result.timedOut:
        return "timeout"
    if result.signal is not None:
        return "signal"
    return "exit"


class MeasuredHooks:
    """
    An L{node.hooks.IHookRunner} that times the runner it wraps.
    """

    def __init__(self, runner: Any, metrics: AgentMetrics, clock: Any) -> None:
        self.runner = runner
        self.metrics = metrics
        self.clock = clock

    def __getattr__(self, name: str) -> Any:
        return getattr(self.runner, name)

    def runHook(self, action: str, task: Any, argument: str | None = None) -> Deferred[HookResult]:
        started = self.clock.seconds()

        def measured(result: HookResult) -> HookResult:
            self.metrics.hookSeconds.labels(action=action).observe(self.clock.seconds() - started)
            reason = failureReason(result)
            if reason is not None:
                self.metrics.hookFailures.labels(action=action, reason=reason).inc()
            return result

        return self.runner.runHook(action, task, argument).addCallback(measured)


class _AgentCollector:
    def __init__(self, metrics: AgentMetrics) -> None:
        self.metrics = metrics

    def describe(self) -> Iterable[Any]:
        return []

    def collect(self) -> Iterable[Any]:
        agent = self.metrics.agent
        if agent is None:
            return
        tasks = GaugeMetricFamily("marvind_tasks", "Tasks the agent holds, by phase.", labels=["phase"])
        tally = Tally(task.phase for task in agent.tasks.values())
        for phase in PHASES:
            tasks.add_metric([phase], tally.get(phase, 0))
        yield tasks
        yield GaugeMetricFamily(
            "marvind_controller_reachable", "1 when the last exchange with the controller got a usable answer.",
            value=1 if agent.controllerReachable else 0,
        )
        yield GaugeMetricFamily(
            "marvind_unanswered_heartbeats", "Heartbeats in a row that got no answer.",
            value=agent.unansweredHeartbeats,
        )
        yield GaugeMetricFamily(
            "marvind_reports_waiting", "Status reports not delivered to the controller yet.", value=len(agent.queue),
        )


class AgentMetricsResource(Resource):
    """
    C{GET /metrics} on the agent's metrics port.
    """

    isLeaf = True

    def __init__(self, metrics: AgentMetrics) -> None:
        super().__init__()
        self.metrics = metrics

    def render_GET(self, request: Any) -> bytes:
        if request.path.rstrip(b"/") != b"/metrics":
            request.setResponseCode(404)
            return b"not found: try /metrics\n"
        request.setHeader(b"content-type", CONTENT_TYPE_LATEST.encode("ascii"))
        return self.metrics.exposition()
