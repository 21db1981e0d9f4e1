"""
Tests for L{am.ctl.sharedport}: the listening sockets the controller's
processes share take turns, one connection per wake-up. The sockets are real
(loopback, in this process); the reactor is a L{MemoryReactorClock}, so each
wake-up is one explicit C{doRead}.
"""

from __future__ import annotations

import os
import socket

from twisted.internet import tcp
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.testing import MemoryReactorClock
from twisted.trial.unittest import SynchronousTestCase

from am.ctl.sharedport import AdoptedEndpoint, SharedEndpoint, SharedPort


class Counting(Factory):
    def __init__(self) -> None:
        self.built = 0

    def buildProtocol(self, addr: object) -> Protocol:
        self.built += 1
        return Protocol()


class SharedPortTests(SynchronousTestCase):
    def connect(self, port: tcp.Port, count: int) -> None:
        """
        Open C{count} connections to C{port}; they wait in its backlog.
        """
        for _ in range(count):
            client = socket.create_connection(("127.0.0.1", port.getHost().port))
            self.addCleanup(client.close)

    def listen(self, kind: type, factory: Factory) -> tcp.Port:
        port = kind(0, factory, 50, "127.0.0.1", MemoryReactorClock())
        port.startListening()
        self.addCleanup(port.stopListening)
        return port

    def test_oneAcceptPerWakeUp(self) -> None:
        """
        A burst of connections is taken one per wake-up, so another process
        woken by the same socket gets its share.
        """
        factory = Counting()
        port = self.listen(SharedPort, factory)
        self.connect(port, 3)
        for expected in (1, 2, 3):
            port.doRead()
            self.assertEqual(factory.built, expected)

    def test_twistedTakesTheBurst(self) -> None:
        """
        What L{SharedPort} changes: Twisted's own port takes every waiting
        connection at one wake-up.
        """
        factory = Counting()
        port = self.listen(tcp.Port, factory)
        self.connect(port, 3)
        port.doRead()
        self.assertEqual(factory.built, 3)

    def test_mainAndWorkerShareTheSocket(self) -> None:
        """
        The main process's endpoint binds a L{SharedPort}; a worker adopts
        its descriptor as another, and both accept from the one socket.
        """
        mainFactory, workerFactory = Counting(), Counting()
        main = self.successResultOf(SharedEndpoint(MemoryReactorClock(), 0, "127.0.0.1").listen(mainFactory))
        self.addCleanup(main.stopListening)
        inherited = os.dup(main.fileno())
        self.addCleanup(os.close, inherited)
        worker = self.successResultOf(AdoptedEndpoint(MemoryReactorClock(), inherited).listen(workerFactory))
        self.addCleanup(worker.stopListening)
        self.assertIsInstance(main, SharedPort)
        self.assertIsInstance(worker, SharedPort)
        self.assertEqual(worker.getHost().port, main.getHost().port)
        self.connect(main, 2)
        main.doRead()
        worker.doRead()
        self.assertEqual((mainFactory.built, workerFactory.built), (1, 1))

    def test_bindFailure(self) -> None:
        """
        A port that cannot be bound fails the listen, as Twisted's endpoints do.
        """
        taken = socket.socket()
        self.addCleanup(taken.close)
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        failure = self.failureResultOf(
            SharedEndpoint(MemoryReactorClock(), taken.getsockname()[1], "127.0.0.1").listen(Counting())
        )
        self.assertIn("Address already in use", str(failure.value))
