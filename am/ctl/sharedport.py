# -*- test-case-name: tests.test_ctl_sharedport -*-
"""
Listening sockets shared by the controller's processes (C{workers: N},
L{am.ctl.workers}): the main process binds them, every worker accepts from
the same socket (inherited by descriptor), so a worker that stops or restarts
loses no queued connection.

Each process accepts one connection per wake-up (L{SharedPort}). Twisted's
port accepts up to a hundred at once, which suits one process; with several,
whichever woke first took every connection of a burst (16 keep-alive clients
connecting together ended 12 to 4), and a keep-alive connection stays with
the process that accepted it. Taking turns spreads a burst evenly, and a
process busy elsewhere wakes later and so takes fewer.
"""

from __future__ import annotations

import socket
from typing import Any, Optional

from twisted.internet import tcp
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IProtocolFactory, IStreamServerEndpoint
from twisted.protocols.tls import TLSMemoryBIOFactory
from zope.interface import implementer


class SharedPort(tcp.Port):
    """
    A TCP port that accepts one connection each time its socket is readable.
    """

    @property  # type: ignore[override]
    def numberAccepts(self) -> int:
        return 1

    @numberAccepts.setter
    def numberAccepts(self, value: int) -> None:
        # tcp.Port adapts its batch after each read; ours stays at one.
        pass


def _secured(factory: IProtocolFactory, tlsOptions: Any) -> IProtocolFactory:
    if tlsOptions is None:
        return factory
    return TLSMemoryBIOFactory(tlsOptions, False, factory)  # type: ignore[arg-type,return-value]


@implementer(IStreamServerEndpoint)
class SharedEndpoint:
    """
    The main process's listening socket when it has workers: a L{SharedPort}
    on C{port} of C{interface} (IPv4 or IPv6), TLS when C{tlsOptions} are given.
    """

    def __init__(self, reactor: Any, port: int, interface: str, tlsOptions: Any = None,
                 backlog: int = 128) -> None:
        self.reactor = reactor
        self.port = port
        self.interface = interface
        self.tlsOptions = tlsOptions
        self.backlog = backlog

    def listen(self, factory: IProtocolFactory) -> Deferred:
        try:
            listening = SharedPort(
                self.port, _secured(factory, self.tlsOptions), self.backlog, self.interface, self.reactor
            )
            listening.startListening()
        except Exception:
            return fail()
        return succeed(listening)


@implementer(IStreamServerEndpoint)
class AdoptedEndpoint:
    """
    A listening socket a worker inherited from the main process, by its file
    descriptor: listening adopts it as a L{SharedPort}, wrapped in TLS when
    C{tlsOptions} are given.
    """

    def __init__(self, reactor: Any, fileno: int, tlsOptions: Optional[Any] = None) -> None:
        self.reactor = reactor
        self.fileno = fileno
        self.tlsOptions = tlsOptions

    def listen(self, factory: IProtocolFactory) -> Deferred:
        try:
            probe = socket.socket(fileno=self.fileno)
            family = probe.family
            probe.detach()
            # What reactor.adoptStreamPort does, with our port class: the port
            # listens on a duplicate, this descriptor stays open for a restart.
            listening = SharedPort._fromListeningDescriptor(  # type: ignore[attr-defined]
                self.reactor, self.fileno, family, _secured(factory, self.tlsOptions)
            )
            listening.startListening()
        except Exception:
            return fail()
        return succeed(listening)
