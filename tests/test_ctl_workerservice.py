"""
The main process's L{am.ctl.workers.Workers} without processes: what it
spawns (the listening descriptors passed down), that a worker that ended is
started again after a delay (one that never served fails the start-up), that stopping ends the workers' lifelines and
kills one that does not stop; and the worker mark on log events.
"""

from __future__ import annotations

import sys
from typing import Any

from twisted.internet.defer import succeed
from twisted.internet.error import ProcessDone, ProcessTerminated
from twisted.internet.task import Clock
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase

from am.ctl import workers
from am.ctl.logs import workerObserver
from am.ctl.parts import StartupError


class FakeTransport:
    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.signals: list[str] = []
        self.stdinClosed = False

    def signalProcess(self, name: str) -> None:
        self.signals.append(name)

    def closeStdin(self) -> None:
        self.stdinClosed = True


class FakeReactor(Clock):
    def __init__(self) -> None:
        super().__init__()
        self.spawned: list[tuple[Any, list[str], dict]] = []

    def spawnProcess(self, protocol: Any, executable: str, argv: list[str], env: Any, childFDs: dict) -> FakeTransport:
        transport = FakeTransport(100 + len(self.spawned))
        protocol.makeConnection(transport)
        self.spawned.append((protocol, argv, childFDs))
        return transport


class FakePort:
    def __init__(self, fd: int) -> None:
        self.fd = fd

    def fileno(self) -> int:
        return self.fd


class FakeListener:
    def __init__(self, name: str, fd: int) -> None:
        self.name = name
        self.port = FakePort(fd)


class FakeInventory:
    def whenStarted(self) -> Any:
        return succeed(None)


class FakeController:
    def __init__(self, reactor: FakeReactor) -> None:
        self.reactor = reactor

    def listeners(self) -> list[FakeListener]:
        return [FakeListener("https", 7), FakeListener("http", 9)]

    def getServiceNamed(self, name: str) -> FakeInventory:
        assert name == "inventory"
        return FakeInventory()


class WorkersTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.reactor = FakeReactor()
        self.workers = workers.Workers(FakeController(self.reactor), 3, ["--config", "/etc/m.conf"])  # type: ignore[arg-type]
        self.workers.startService()

    def test_spawn(self) -> None:
        """
        N-1 workers, each with the listening sockets at descriptors 4 and
        up, its lifeline on 0 and its ready pipe on 3; C{whenStarted}
        fires once each said it serves.
        """
        self.assertEqual(len(self.reactor.spawned), 2)
        protocol, argv, childFDs = self.reactor.spawned[0]
        self.assertEqual(
            argv,
            [sys.executable, "-m", "am.ctl.workers", "--worker", "1", "--listen", "https=4", "--listen", "http=5",
             "--config", "/etc/m.conf"],
        )
        self.assertEqual(childFDs, {0: "w", 1: 1, 2: 2, 3: "r", 4: 7, 5: 9})
        started = self.workers.whenStarted()
        self.assertNoResult(started)
        for protocol, _, _ in self.reactor.spawned:
            protocol.childDataReceived(3, b"ready\n")
        self.successResultOf(started)

    def test_restart(self) -> None:
        """
        A worker that ended while the service runs is started again, with
        the same number, after L{workers.RESTART_DELAY}.
        """
        protocol = self.reactor.spawned[0][0]
        protocol.childDataReceived(3, b"ready\n")
        protocol.processEnded(Failure(ProcessTerminated(signal=9)))
        self.assertEqual(len(self.reactor.spawned), 2)
        self.reactor.advance(workers.RESTART_DELAY)
        self.assertEqual(len(self.reactor.spawned), 3)
        self.assertEqual(self.reactor.spawned[2][1][3:5], ["--worker", "1"])
        self.assertIs(self.workers.live[1], self.reactor.spawned[2][0])

    def test_neverServed(self) -> None:
        """
        A worker that ends before it ever served (a configuration it cannot
        load, a database it cannot open) fails the start-up, saying which
        and why, and is not started again.
        """
        started = self.workers.whenStarted()
        self.reactor.spawned[1][0].childDataReceived(3, b"ready\n")
        self.reactor.spawned[0][0].processEnded(Failure(ProcessTerminated(exitCode=1)))
        failure = self.failureResultOf(started, StartupError)
        self.assertIn("worker 1 ended before it served", str(failure.value))
        self.assertIn("exit code 1", str(failure.value))
        self.reactor.advance(workers.RESTART_DELAY * 10)
        self.assertEqual(len(self.reactor.spawned), 2)

    def test_stop(self) -> None:
        """
        Stopping closes each worker's lifeline and fires when all ended; a
        worker still running after L{workers.STOP_TIMEOUT} is killed, and
        none is started again.
        """
        stopped = self.workers.stopService()
        protocols = [p for p, _, _ in self.reactor.spawned]
        self.assertEqual([p.transport.stdinClosed for p in protocols], [True, True])
        protocols[0].processEnded(Failure(ProcessDone(0)))
        self.assertNoResult(stopped)
        self.reactor.advance(workers.STOP_TIMEOUT)
        self.assertEqual([p.transport.signals for p in protocols], [[], ["KILL"]])
        protocols[1].processEnded(Failure(ProcessTerminated(signal=9)))
        self.successResultOf(stopped)
        self.reactor.advance(workers.RESTART_DELAY * 10)
        self.assertEqual(len(self.reactor.spawned), 2)


class WorkerObserverTests(SynchronousTestCase):
    def test_marked(self) -> None:
        """
        Each event gets a C{worker} field and its text system names the
        worker; the event given is not changed.
        """
        seen: list[dict] = []
        observe = workerObserver(seen.append, 2)  # type: ignore[arg-type]
        from twisted.logger import LogLevel

        event = {"log_namespace": "marvinctld", "log_level": LogLevel.info, "log_format": "x"}
        observe(event)
        observe({"log_system": "-", "log_format": "y"})
        self.assertEqual(
            [(e["worker"], e["log_system"]) for e in seen], [(2, "marvinctld#info w2"), (2, "- w2")]
        )
        self.assertNotIn("worker", event)
