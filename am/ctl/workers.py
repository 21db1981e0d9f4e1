# -*- test-case-name: tests.test_ctl_workers -*-
"""
marvinctld on more than one core (C{workers: N}, SQLite; docs/sqlite.md,
"More than one core"): the main process opens the listening sockets and
starts N-1 workers, each a full controller on the same database file that
accepts from the same sockets (their descriptors are passed down).

The main process is worker 0: it alone runs the background jobs (it leads)
and delivers notifications; a worker answers requests only. A worker that
ends while the main process runs is started again; a worker stops when the
main process stops or disappears (its standard input, a pipe from the main
process, reaches its end).

Run by the main process as C{python -m am.ctl.workers --worker K --listen
https=4 ... (--config PATH | --demo [--dir DIR])}.
"""

from __future__ import annotations

import os
import sys
from typing import Any, Callable, Optional

from prometheus_client import Gauge
from twisted.application.service import Service
from twisted.internet import abstract, fdesc
from twisted.internet.defer import Deferred, DeferredList, FirstError, succeed
from twisted.internet.error import ProcessDone
from twisted.internet.protocol import ProcessProtocol
from twisted.logger import Logger
from twisted.python import usage
from twisted.python.failure import Failure
from zope.interface import implementer

from am.ctl.config import ConfigError
from am.ctl.logs import startLogging
from am.ctl.parts import IStartingService, StartupError
from am.ctl.service import Controller, Options

# A worker's descriptors: 0 its lifeline (a pipe the main process holds open),
# 3 where it says it serves, 4... the listening sockets.
LIFELINE_FD, READY_FD, FIRST_LISTEN_FD = 0, 3, 4
# Seconds before a worker that ended is started again (no busy crash loop),
# and that a stopping worker gets before it is killed.
RESTART_DELAY = 1.0
STOP_TIMEOUT = 15.0


def markWorker(metrics: Any, number: int) -> None:
    """
    Say in C{/metrics} which process answered: each process keeps and serves
    its own registry, so a scrape describes the worker that accepted it.
    """
    gauge = Gauge(
        "marvin_worker", "The process that answered this scrape (0: the main one), with its pid; "
        "counters are per process.", ["worker", "pid"], registry=metrics.registry,
    )
    gauge.labels(worker=str(number), pid=str(os.getpid())).set(1)


class WorkerProtocol(ProcessProtocol):
    """
    The main process's end of one worker.
    """

    def __init__(self, workers: "Workers", number: int) -> None:
        self.workers = workers
        self.number = number
        self.pid: Optional[int] = None

    def connectionMade(self) -> None:
        self.pid = self.transport.pid  # type: ignore[union-attr]

    def childDataReceived(self, childFD: int, data: bytes) -> None:
        if childFD == READY_FD and b"ready" in data:
            self.workers.serving(self)

    def processEnded(self, reason: Failure) -> None:
        self.workers.ended(self, reason)


@implementer(IStartingService)
class Workers(Service):
    """
    The main process's workers: started once the listeners listen and the
    first inventory sync is over (C{ready} waits until every worker serves,
    and fails if one ends before it served), started again when one ends, stopped (its lifeline closed, then SIGKILL
    after L{STOP_TIMEOUT}) before the controller closes its store.

    @ivar arguments: the command line that gives a worker the same
        configuration (C{--config PATH}, or C{--demo --dir DIR}).
    """

    name = "workers"
    log = Logger(namespace="marvinctld.workers")

    def __init__(self, controller: Controller, count: int, arguments: list[str]) -> None:
        self.controller = controller
        self.reactor = controller.reactor
        self.count = count
        self.arguments = arguments
        self.live: dict[int, WorkerProtocol] = {}
        self._first: dict[int, Deferred] = {}
        self._ended: dict[int, Deferred] = {}
        self._started: Deferred = succeed(None)

    def startService(self) -> None:
        super().startService()
        self._first = {number: Deferred() for number in range(1, self.count)}
        self._started = DeferredList(list(self._first.values()), fireOnOneErrback=True, consumeErrors=True)
        # A worker that never served fails the start-up, with its reason.
        self._started.addErrback(_firstFailure)
        inventory = self.controller.getServiceNamed("inventory")
        # Workers find the nodes the first sync brought.
        inventory.whenStarted().addCallback(lambda _: self._spawnAll())

    def whenStarted(self) -> Deferred:
        return self._started

    def _spawnAll(self) -> None:
        for number in range(1, self.count):
            self.spawn(number)

    def spawn(self, number: int) -> None:
        """
        Start worker C{number} on the controller's listening sockets.
        """
        if not self.running:
            return
        childFDs: dict[int, Any] = {LIFELINE_FD: "w", 1: 1, 2: 2, READY_FD: "r"}
        argv = [sys.executable, "-m", "am.ctl.workers", "--worker", str(number)]
        for offset, listener in enumerate(self.controller.listeners()):
            if listener.port is not None:
                childFDs[FIRST_LISTEN_FD + offset] = listener.port.fileno()  # type: ignore[attr-defined]
                argv += ["--listen", f"{listener.name}={FIRST_LISTEN_FD + offset}"]
        protocol = WorkerProtocol(self, number)
        self.live[number] = protocol
        self._ended[number] = Deferred()
        self.reactor.spawnProcess(protocol, sys.executable, argv + self.arguments, env=None, childFDs=childFDs)

    def serving(self, protocol: WorkerProtocol) -> None:
        self.log.info("worker {number} serving (pid {pid})", number=protocol.number, pid=protocol.pid)
        first = self._first.get(protocol.number)
        if first is not None and not first.called:
            first.callback(protocol.pid)

    def ended(self, protocol: WorkerProtocol, reason: Failure) -> None:
        number = protocol.number
        if self.live.get(number) is protocol:
            del self.live[number]
        ended = self._ended.pop(number, None)
        if ended is not None:
            ended.callback(None)
        if not self.running:
            return
        why = "exited" if reason.check(ProcessDone) else reason.getErrorMessage()
        first = self._first.get(number)
        if first is not None and not first.called:
            # It never served: starting it again would fail the same way.
            first.errback(StartupError(f"worker {number} ended before it served ({why}); see its log above"))
            return
        self.log.warn(
            "worker {number} (pid {pid}) ended: {why}; starting it again in {delay:g} s",
            number=number, pid=protocol.pid, why=why, delay=RESTART_DELAY,
        )
        self.reactor.callLater(RESTART_DELAY, self.spawn, number)

    def stopService(self) -> Deferred:
        super().stopService()
        waiting = []
        for number, protocol in list(self.live.items()):
            ended = self._ended.get(number)
            if ended is None:
                continue
            # Its lifeline ends: the worker stops as it would on SIGTERM.
            protocol.transport.closeStdin()  # type: ignore[union-attr]
            kill = self.reactor.callLater(STOP_TIMEOUT, self._kill, protocol)
            ended.addBoth(self._stopped, kill)
            waiting.append(ended)
        return DeferredList(waiting)

    @staticmethod
    def _stopped(result: Any, kill: Any) -> None:
        if kill.active():
            kill.cancel()

    def _kill(self, protocol: WorkerProtocol) -> None:
        self.log.warn("worker {number} (pid {pid}) did not stop: killed", number=protocol.number, pid=protocol.pid)
        try:
            protocol.transport.signalProcess("KILL")  # type: ignore[union-attr]
        except Exception:
            pass


def _firstFailure(failure: Failure) -> Failure:
    """
    The failure of the worker that failed the start-up (a L{FirstError}'s).
    """
    first = failure.value
    return first.subFailure if isinstance(first, FirstError) else failure


def workerArguments(options: Options) -> list[str]:
    """
    The command line that gives a worker the configuration C{options} loaded.
    """
    if options["demo"]:
        return ["--demo"] + (["--dir", os.path.abspath(options["dir"])] if options["dir"] else [])
    return ["--config", os.path.abspath(options["config"])]


# -- the worker's side -----------------------------------------------------------


class WorkerOptions(Options):
    """
    A worker's command line: the main process's configuration options, its
    number and its inherited sockets.
    """

    optParameters = Options.optParameters + [["worker", None, None, "This worker's number (1...)."]]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = {}

    def opt_listen(self, value: str) -> None:
        """
        A listening socket: SCHEME=FD (https or http).
        """
        scheme, _, fd = value.partition("=")
        if scheme not in ("https", "http") or not fd.isdigit():
            raise usage.UsageError(f"--listen: SCHEME=FD, not {value!r}")
        self["listen"][scheme] = int(fd)

    def postOptions(self) -> None:
        super().postOptions()
        if self["worker"] is None or not self["worker"].isdigit() or int(self["worker"]) < 1:
            raise usage.UsageError("--worker: a number from 1")
        self["worker"] = int(self["worker"])


class Lifeline(abstract.FileDescriptor):
    """
    The read end of a pipe the main process holds: its end means the main
    process is gone (even by SIGKILL), and C{lost} is called.
    """

    def __init__(self, reactor: Any, fd: int, lost: Callable[[], None]) -> None:
        super().__init__(reactor)
        self.fd = fd
        self.lost = lost
        fdesc.setNonBlocking(fd)

    def fileno(self) -> int:
        return self.fd

    def doRead(self) -> Any:
        return fdesc.readFromFD(self.fd, lambda data: None)

    def connectionLost(self, reason: Failure) -> None:
        abstract.FileDescriptor.connectionLost(self, reason)
        self.lost()


def workerMain(argv: Optional[list[str]] = None) -> None:
    """
    A worker: a controller on the inherited sockets that neither leads nor
    delivers notifications. Exits 1 when it cannot start.
    """
    options = WorkerOptions()
    try:
        options.parseOptions(sys.argv[1:] if argv is None else argv)
        config = options.loadConfig()
    except (usage.UsageError, ConfigError) as e:
        sys.stderr.write(f"marvinctld worker: {e}\n")
        raise SystemExit(2)
    from twisted.internet import reactor

    number = options["worker"]
    startLogging(config.log, worker=number)
    log = Logger(namespace="marvinctld.workers")
    controller = Controller(config, reactor, worker=number, inherited=options["listen"])
    markWorker(controller.metrics, number)
    outcome = {"code": 0}
    # A signal to the process group and the lifeline's end may both come.
    stopping: list[bool] = []

    def stop() -> None:
        if not stopping:
            reactor.stop()

    def gone() -> None:
        if not stopping:
            log.info("the main process stops or is gone: worker {number} stops", number=number)
        stop()

    def serving(ports: Any) -> None:
        os.write(READY_FD, b"ready\n")

    def failed(failure: Failure) -> None:
        log.critical("worker {number} cannot start: {why}", number=number, why=failure.getErrorMessage())
        outcome["code"] = 1
        stop()

    lifeline = Lifeline(reactor, LIFELINE_FD, gone)
    lifeline.startReading()
    try:
        controller.startService()
    except Exception as e:
        sys.stderr.write(f"marvinctld worker {number}: {e}\n")
        raise SystemExit(1)
    controller.ready.addCallbacks(serving, failed)
    reactor.addSystemEventTrigger("before", "shutdown", lambda: stopping.append(True))
    reactor.addSystemEventTrigger("before", "shutdown", controller.stopService)
    reactor.run()
    raise SystemExit(outcome["code"])


if __name__ == "__main__":
    workerMain()
