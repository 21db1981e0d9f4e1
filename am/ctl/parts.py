# -*- test-case-name: tests.test_ctl_service -*-
"""
The controller's child services: a listener per configured port, and the
inventory sync. (The periodic expiry is a plain
L{twisted.application.internet.TimerService}.)

L{am.ctl.service.Controller} starts its children itself, in order, once the
store is open: listeners first, then everything else. A child that has more
to do after C{startService} returns (a first inventory sync, a port to bind)
provides L{IStartingService}, and the controller's C{ready} waits for it.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.application.internet import StreamServerEndpointService
from twisted.application.service import IService, Service
from twisted.internet.defer import CancelledError, Deferred, fail, maybeDeferred, succeed
from twisted.internet.interfaces import IListeningPort, IStreamServerEndpoint
from twisted.internet.protocol import Factory
from twisted.python.failure import Failure
from zope.interface import implementer

from am.ctl.inventory import InventorySync


class StartupError(Exception):
    """
    The controller cannot start (database, port); the message says why.
    """


class IStartingService(IService):
    """
    A service whose start completes later than C{startService} returns.
    """

    def whenStarted() -> Deferred:
        """
        A Deferred firing once the service is fully started, or failing with
        L{StartupError} saying why it cannot start. Called once, right after
        C{startService}.
        """


@implementer(IStartingService)
class Listener(StreamServerEndpointService):
    """
    One listening port of the controller's site, named by its scheme
    (C{https}, C{http}).

    The endpoint is made when the service starts (TLS options read the
    certificate files then), so a problem with it, or with binding the port,
    becomes a L{StartupError} naming the scheme instead of a logged error.

    @ivar port: the listening port, or C{None} when not listening.
    """

    def __init__(self, scheme: str, makeEndpoint: Callable[[], IStreamServerEndpoint], factory: Factory) -> None:
        super().__init__(None, factory)
        self.setName(scheme)
        self.makeEndpoint = makeEndpoint
        self.port: Optional[IListeningPort] = None
        self._listening: Deferred = succeed(None)

    def privilegedStartService(self) -> None:
        Service.privilegedStartService(self)
        try:
            if self.endpoint is None:
                self.endpoint = self.makeEndpoint()
            listening = self.endpoint.listen(self.factory)
        except StartupError:
            listening = fail()
        self._waitingForPort = listening

        def listened(port: IListeningPort) -> IListeningPort:
            self.port = port
            return port

        def cannot(failure: Failure) -> Failure:
            if failure.check(StartupError):
                return failure
            if failure.check(CancelledError):
                return Failure(StartupError(f"stopped before listening for {self.name}"))
            return Failure(StartupError(f"cannot listen for {self.name}: {failure.getErrorMessage()}"))

        self._listening = listening.addCallbacks(listened, cannot)

    def whenStarted(self) -> Deferred:
        """
        Fires with the listening port, or fails with L{StartupError}.
        """
        return self._listening

    def stopService(self) -> Deferred:
        """
        Stop listening (or stop trying to).
        """
        Service.stopService(self)
        if self._waitingForPort is not None and not self._waitingForPort.called:
            self._waitingForPort.cancel()
        port, self.port = self.port, None
        return maybeDeferred(port.stopListening) if port is not None else succeed(None)


@implementer(IStartingService)
class InventoryService(Service):
    """
    Runs an L{InventorySync} while started: a sync at once, then on its
    period (or its retry period after a failed run).
    """

    name = "inventory"

    def __init__(self, sync: InventorySync) -> None:
        self.sync = sync
        self._first: Deferred = succeed(None)

    def startService(self) -> None:
        super().startService()
        self._first = self.sync.start()

    def whenStarted(self) -> Deferred:
        """
        Fires when the first sync is over, whatever its outcome, so that what
        the demo prints finds the nodes there.
        """
        return self._first

    def stopService(self) -> Any:
        self.sync.stop()
        return super().stopService()
