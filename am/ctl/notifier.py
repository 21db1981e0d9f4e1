# -*- test-case-name: tests.test_notifier -*-
"""
The deliverer of notifications: a service of the controller that claims due
rows of the core's outbox (L{am.core.outbox}) with a lease, POSTs each as
signed JSON with Twisted's HTTP client from the reactor, and settles it
(delivered, retried later with backoff, or given up).

It looks at the outbox when a command committed a notification
(L{am.core.events.NotificationQueued}, at once), when the earliest pending row falls due, and every
C{poll} seconds otherwise (rows other controllers wrote, leases that ran
out). A row is deleted nowhere: its state is what its owner reads at
C{GET /experiments/<id>/events}.

No server-side request forgery: the target's name is resolved here and
every address it resolves to is checked (L{am.core.notifyurl.addressRefused})
unless the operator allows private targets; the connection then goes to
the address that was checked (the TLS name stays the URL's host), so a
name that changes between the check and the connection cannot redirect it.
Redirects are not followed.
"""

from __future__ import annotations

import ipaddress
import json
import os
import secrets
import socket
from typing import Any, Callable, Optional

import treq
from hyperlink import URL
from twisted.application.service import Service
from twisted.internet import defer
from twisted.internet.endpoints import TCP4ClientEndpoint, TCP6ClientEndpoint, wrapClientTLS
from twisted.internet.interfaces import IDelayedCall
from twisted.internet.protocol import Protocol
from twisted.internet.threads import deferToThreadPool
from twisted.logger import Logger
from twisted.web.client import Agent, BrowserLikePolicyForHTTPS
from twisted.web.iweb import IAgentEndpointFactory
from zope.interface import implementer

from am.core.events import Event, NotificationQueued
from am.core.interfaces import IScheduler
from am.core.notifyurl import addressRefused, sign
from am.core.outbox import Delivery, envelope
from am.ctl.notifyconfig import NotifierSettings

Resolver = Callable[[str, int], "defer.Deferred[list[str]]"]


class Refused(Exception):
    """
    The target may not be called (a private address without the operator's leave).
    """


def threadedResolver(reactor: Any) -> Resolver:
    """
    Every address of a name (IPv4 and IPv6), through the reactor's thread pool.
    """

    def resolve(host: str, port: int) -> "defer.Deferred[list[str]]":
        def lookup() -> list[str]:
            infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            return list(dict.fromkeys(str(info[4][0]) for info in infos))

        return deferToThreadPool(reactor, reactor.getThreadPool(), lookup)

    return resolve


@implementer(IAgentEndpointFactory)
class _Pinned:
    """
    Connects to one address already checked, whatever the URL's host says.
    """

    def __init__(self, reactor: Any, address: str, timeout: float) -> None:
        self.reactor, self.address, self.timeout = reactor, address, timeout

    def endpointForURI(self, uri: Any) -> Any:
        kind = TCP6ClientEndpoint if ":" in self.address else TCP4ClientEndpoint
        endpoint = kind(self.reactor, self.address, uri.port, timeout=self.timeout)
        if uri.scheme == b"https":
            creator = BrowserLikePolicyForHTTPS().creatorForNetloc(uri.host, uri.port)
            return wrapClientTLS(creator, endpoint)
        return endpoint


class _Discard(Protocol):
    """
    Reads and drops a response body (the receiver's answer is not kept).
    """

    def __init__(self) -> None:
        self.done: defer.Deferred[None] = defer.Deferred(
            lambda _: self.transport.stopProducing()  # type: ignore[attr-defined]
        )

    def dataReceived(self, data: bytes) -> None:
        pass

    def connectionLost(self, reason: Any = None) -> None:
        if not self.done.called:
            self.done.callback(None)


def request(entry: Any, secret: str, now: int) -> tuple[bytes, dict[str, str]]:
    """
    The body and headers of one POST: the envelope, signed.
    """
    body = json.dumps(envelope(entry), sort_keys=True, separators=(",", ":")).encode("utf-8")
    return body, {
        "Content-Type": "application/json",
        "User-Agent": "Marvin-notify/1",
        "X-Marvin-Event": entry.kind,
        "X-Marvin-Delivery": entry.eventid,
        "X-Marvin-Sequence": str(entry.seq),
        "X-Marvin-Timestamp": str(now),
        "X-Marvin-Signature": sign(secret, now, body),
    }


class Notifier(Service):
    """
    Delivers the outbox from this controller.

    @ivar worker: this deliverer's name in the outbox's leases (unique per process).
    """

    log = Logger(namespace="marvinctld")

    def __init__(
        self,
        scheduler: Callable[[], Optional[IScheduler]],
        reactor: Any,
        settings: NotifierSettings,
        resolve: Optional[Resolver] = None,
    ) -> None:
        self._scheduler = scheduler
        self.reactor = reactor
        self.settings = settings
        self.resolve = resolve or threadedResolver(reactor)
        self.worker = f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"
        self._timer: Optional[IDelayedCall] = None
        self._running: Optional[defer.Deferred[Any]] = None
        self._again = False
        self._unsubscribe: Optional[Callable[[], None]] = None
        self.setName("notifier")

    @property
    def scheduler(self) -> IScheduler:
        scheduler = self._scheduler()
        assert scheduler is not None, "the notifier starts after the scheduler"
        return scheduler

    def startService(self) -> None:
        Service.startService(self)
        self._unsubscribe = self.scheduler.events.subscribe(self._observe)
        self.kick(0)

    def stopService(self) -> Any:
        Service.stopService(self)
        if self._unsubscribe is not None:
            self._unsubscribe()
            self._unsubscribe = None
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None
        running = self._running
        if running is not None:
            running.cancel()
        # What was claimed and not settled is due again at once, for anyone
        # (a controller killed instead keeps its claims until the lease ends).
        d = self.scheduler.releaseNotifications(self.worker)
        d.addErrback(lambda f: self.log.failure("notifications: could not release claims", f))
        return d

    def _observe(self, event: Event) -> None:
        if isinstance(event, NotificationQueued):
            self.kick(0)

    def kick(self, delay: float) -> None:
        """
        Look at the outbox in C{delay} seconds (or sooner if already planned).
        """
        if not self.running:
            return
        if self._running is not None:
            self._again = True
            return
        if self._timer is not None and self._timer.active():
            if self._timer.getTime() <= self.reactor.seconds() + delay:
                return
            self._timer.cancel()
        self._timer = self.reactor.callLater(max(0.0, delay), self._look)

    def _look(self) -> None:
        self._timer = None
        self._again = False
        self._running = defer.Deferred.fromCoroutine(self.deliverDue())
        self._running.addErrback(
            lambda f: None if f.check(defer.CancelledError) else self.log.failure(
                "notifications: delivery round failed", f
            )
        )
        self._running.addBoth(self._after)

    def _after(self, count: Any) -> None:
        self._running = None
        if not self.running:
            return
        if self._again or (isinstance(count, int) and count >= self.settings.batch):
            self.kick(0)
            return
        d = self.scheduler.nextNotificationDue()

        def plan(due: Optional[int]) -> None:
            wait = self.settings.poll
            if due is not None:
                wait = min(wait, max(0.0, due - self.reactor.seconds()))
            self.kick(wait)

        d.addCallbacks(plan, lambda f: self.kick(self.settings.poll))

    async def deliverDue(self) -> int:
        """
        One round: claim a batch and deliver it, all at once; returns how many.
        """
        claimed = await self.scheduler.claimNotifications(self.worker, self.settings.batch, self.settings.lease)
        if claimed:
            await defer.DeferredList(
                [defer.Deferred.fromCoroutine(self.deliverOne(d)) for d in claimed], consumeErrors=True
            )
        return len(claimed)

    async def deliverOne(self, delivery: Delivery) -> bool:
        """
        POST one notification and settle it; whether it was delivered.
        """
        entry = delivery.notification
        ok, error, permanent = False, "", False
        try:
            code = await self.post(entry.url, *request(entry, delivery.secret, int(self.reactor.seconds())))
            ok = 200 <= code < 300
            error = "" if ok else f"HTTP {code}"
        except Refused as e:
            error, permanent = str(e), True
        except defer.CancelledError:
            raise
        except Exception as e:
            error = f"{type(e).__name__}: {e}"[:300]
        if not self.running:
            return False  # cut short by stopping: released, not counted as an attempt
        if not ok:
            self.log.info(
                "notification {id} of experiment {expid} to {url}: {error}",
                id=entry.eventid, expid=entry.expid, url=entry.url, error=error,
            )
        await self.scheduler.settleNotification(entry.id, self.worker, ok, error, permanent)
        return ok

    async def target(self, host: str, port: int) -> str:
        """
        The address to connect to for C{host}, checked.

        @raise Refused: an address of C{host} is not public and private
            targets are not allowed.
        """
        try:
            addresses = [str(ipaddress.ip_address(host))]
        except ValueError:
            addresses = await self.resolve(host, port)
        if not addresses:
            raise OSError(f"{host}: no address")
        if not self.settings.allowPrivate:
            for address in addresses:
                why = addressRefused(address)
                if why is not None:
                    raise Refused(f"{host} resolves to a {why}: not allowed as a notification target")
        return addresses[0]

    async def post(self, url: str, body: bytes, headers: dict[str, str]) -> int:
        """
        POST C{body} to C{url} through a checked address; the status code.
        """
        parsed = URL.from_text(url)
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        address = await self.target(parsed.host.strip("[]"), port)
        agent = Agent.usingEndpointFactory(self.reactor, _Pinned(self.reactor, address, self.settings.timeout))
        client = treq.client.HTTPClient(agent)
        response = await client.post(
            url, data=body, headers={k: [v] for k, v in headers.items()},  # type: ignore[arg-type]
            timeout=self.settings.timeout,
        )
        reader = _Discard()
        response.deliverBody(reader)
        reader.done.addTimeout(self.settings.timeout, self.reactor)
        await reader.done
        return int(response.code)
