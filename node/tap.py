# -*- test-case-name: tests.test_node_tap -*-
"""
marvind's entry points: the C{marvind} twistd plugin (C{twistd -n marvind
--config PATH}) and the C{marvind --config PATH} console script, which runs
the same service in the foreground and logs to standard output (for
systemd).
"""

from __future__ import annotations

import sys
from typing import Any, Sequence

from twisted.application.service import IService
from twisted.python import usage

from node.config import ConfigError, MarvindConfig, loadConfig

DEFAULT_CONFIG = "/etc/marvind.conf"


class Options(usage.Options):
    """
    Command-line options of marvind.
    """

    synopsis = "[--config PATH]"
    longdesc = (
        "marvind, the Marvin node agent: heartbeats to the controller, deploys, starts "
        "and stops the node's scheduled tasks with hooks, and reports their status."
    )
    optParameters = [
        ["config", "c", DEFAULT_CONFIG, "Path of the YAML configuration file."],
    ]

    def opt_version(self) -> None:
        """
        Print Marvin's version and exit.
        """
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("marvin")
        except PackageNotFoundError:
            number = "unknown"
        sys.stdout.write(f"marvind (Marvin) {number}\n")
        raise SystemExit(0)

    def postOptions(self) -> None:
        """
        Load the configuration now, so that a bad file is a usage error with
        one clear message rather than a traceback from C{makeService}.
        """
        try:
            self["configuration"] = loadConfig(self["config"])
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None


def makeService(options: Options, reactor: Any = None) -> IService:
    """
    Build the agent service from parsed L{Options}.

    @param reactor: the reactor to use (time, processes, network); the
        global reactor if C{None}.
    """
    if reactor is None:
        from twisted.internet import reactor as globalReactor

        reactor = globalReactor
    from node.agent import MarvindAgent
    from node.client import HTTPControllerClient
    from node.hooks import ProcessHookRunner
    from node.shipper import ResultShipper
    from node.state import StateStore

    config: MarvindConfig = options["configuration"]
    store = StateStore(config.stateDirectory)
    hooks: Any = ProcessHookRunner(reactor, config, store)
    metrics = None
    if config.metricsPort is not None:
        from node.metrics import AgentMetrics, MeasuredHooks

        metrics = AgentMetrics()
        hooks = MeasuredHooks(hooks, metrics, reactor)
    client = HTTPControllerClient.fromConfig(reactor, config)
    shipper = ResultShipper(
        reactor, client, config.stateDirectory, config.resultsPeriod, config.resultsChunk, config.resultsBandwidth,
    )
    agent = MarvindAgent(
        config=config,
        clock=reactor,
        client=client,
        hooks=hooks,
        store=store,
        shipper=shipper,
    )
    if metrics is None:
        return agent
    return withMetrics(agent, metrics, config, reactor)


def withMetrics(agent: Any, metrics: Any, config: MarvindConfig, reactor: Any) -> IService:
    """
    The agent and, beside it, the metrics listener on C{metrics.address}:C{metrics.port}.
    """
    import ipaddress

    from twisted.application.internet import StreamServerEndpointService
    from twisted.application.service import MultiService
    from twisted.internet.endpoints import TCP4ServerEndpoint, TCP6ServerEndpoint
    from twisted.web.server import Site

    from node.metrics import AgentMetricsResource

    metrics.agent = agent
    site = Site(AgentMetricsResource(metrics), reactor=reactor)
    site.noisy = False
    site.log = lambda request: None  # type: ignore[method-assign]  # a scrape is not news
    kind = TCP6ServerEndpoint if ipaddress.ip_address(config.metricsAddress).version == 6 else TCP4ServerEndpoint
    listener = StreamServerEndpointService(kind(reactor, config.metricsPort, interface=config.metricsAddress), site)
    listener.setName("metrics")
    service = MultiService()
    agent.setServiceParent(service)
    listener.setServiceParent(service)
    return service


def main(argv: Sequence[str] | None = None) -> None:
    """
    The C{marvind} console script: run the agent in the foreground, logging
    to standard output, until SIGTERM or SIGINT.
    """
    options = Options()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else list(argv))
    except usage.UsageError as e:
        sys.stderr.write(f"marvind: {e}\n")
        raise SystemExit(2)

    from twisted.internet import reactor
    from twisted.logger import (
        FilteringLogObserver,
        LogLevel,
        PredicateResult,
        globalLogBeginner,
        textFileLogObserver,
    )

    def quiet(event: dict[str, Any]) -> PredicateResult:
        # HTTP client factories log every new connection at info level.
        if event.get("log_namespace", "").startswith("twisted.web.client") and (
            event.get("log_level") == LogLevel.info
        ):
            return PredicateResult.no
        return PredicateResult.maybe

    globalLogBeginner.beginLoggingTo(
        [FilteringLogObserver(textFileLogObserver(sys.stdout), [quiet])]  # type: ignore[list-item]
    )
    service = makeService(options, reactor)
    reactor.callWhenRunning(service.startService)  # type: ignore[attr-defined]
    reactor.addSystemEventTrigger("before", "shutdown", service.stopService)  # type: ignore[attr-defined]
    reactor.run()  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
