# -*- test-case-name: tests.test_ctl_slowclients -*-
"""
Limits on slow and greedy clients, for every listener (plain and TLS).

Twisted's idle timeout restarts with every byte, so a client sending one
header line every 59 seconds holds a connection (and its buffers) for ever.
Here:

  - L{GuardedChannel}: a request's headers and body must arrive within
    C{readTimeout} seconds of its first byte (408 otherwise); a header line
    longer than Twisted's line limit, or headers over its total size, are
    answered 431 instead of a bare close or an empty 400.
  - L{PeerLimit}: at most C{perPeer} concurrent connections from one address;
    more are closed at once (before any TLS handshake). Trusted proxies are
    exempt: every client behind them shares their address.

L{guard} wires both around a site, once per listener:
C{listen(guard(site, limits, exempt))}.
"""

from __future__ import annotations

import ipaddress
import json
from typing import Any, Iterable, Optional

import attrs
from twisted.internet.interfaces import IAddress, IProtocolNegotiationFactory, ISSLTransport
from twisted.internet.protocol import Protocol
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.web.http import HTTPChannel
from twisted.web.server import Site
from zope.interface import implementer

log = Logger(namespace="marvinctld")


DEFAULT_READ_TIMEOUT = 30.0
DEFAULT_PER_PEER = 64


@attrs.frozen
class ClientLimits:
    """
    The configured limits (C{listen.request_timeout},
    C{listen.max_connections_per_peer}).
    """

    readTimeout: float = DEFAULT_READ_TIMEOUT
    perPeer: int = DEFAULT_PER_PEER


def _answer(code: int, reason: str, message: str) -> bytes:
    body = (json.dumps({"message": message}, sort_keys=True, indent=2) + "\n").encode("ascii")
    head = (
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        "api-version: 1.0\r\nConnection: close\r\n\r\n"
    ).encode("ascii")
    return head + body


class GuardedChannel(HTTPChannel):
    """
    An L{HTTPChannel} with a total deadline on reading each request and JSON
    answers to oversized header lines.

    @cvar readTimeout: seconds from a request's first byte to its last.
    @cvar lingerTimeout: seconds to keep reading (and discarding) after a
        refusal, so the client reads the answer instead of a reset.
    """

    readTimeout: float = 30.0
    lingerTimeout: float = 2.0
    _readDeadline: Any = None
    _refused = False
    # A request's first line came and its last byte has not.
    _reading = False

    def dataReceived(self, data: bytes) -> None:
        if self._refused:
            return
        super().dataReceived(data)
        # The deadline starts only for a request still incomplete once this
        # data is parsed (at the same clock time as its first byte): most
        # requests come whole in one read, and a timer set and cancelled
        # for each cost more than the check.
        if self._reading and self._readDeadline is None and not self._refused and not self._handlingRequest:
            self._readDeadline = self.callLater(self.readTimeout, self._readTooSlow)

    def lineReceived(self, line: bytes) -> None:
        if self._refused:
            return
        if self._receivedHeaderSize + len(line) > self.totalHeadersSize:
            self._refuse(431, "Request Header Fields Too Large", f"Request headers over {self.totalHeadersSize} bytes.")
            return
        self._reading = True
        super().lineReceived(line)

    def lineLengthExceeded(self, line: bytes) -> None:
        self._refuse(431, "Request Header Fields Too Large", f"A request or header line over {self.MAX_LENGTH} bytes.")

    def allContentReceived(self) -> None:
        self._reading = False
        self._cancelDeadline()
        super().allContentReceived()

    def _readTooSlow(self) -> None:
        self._readDeadline = None
        if self._handlingRequest:
            return
        self._refuse(408, "Request Timeout", f"The request was not received within {self.readTimeout:g} s.")

    def _refuse(self, code: int, reason: str, message: str) -> None:
        if self._refused:
            return
        self._refused = True
        self._cancelDeadline()
        peer = self.transport.getPeer()
        log.info("refused {peer}: {code} {message}", peer=getattr(peer, "host", str(peer)), code=code, message=message)
        self.transport.write(_answer(code, reason, message))
        self.setTimeout(None)
        # Keep reading (and dropping) for a moment: closing with unread input
        # would reset the connection before the client reads the answer. A
        # plain connection half-closes at once; over TLS a close_notify sent
        # while the client still sends can cut the answer off, so TLS clients
        # see the connection end when the linger does.
        if not ISSLTransport.providedBy(self.transport):
            loseWrite = getattr(self.transport, "loseWriteConnection", None)
            if callable(loseWrite):
                loseWrite()
        self._abortingCall = self.callLater(self.lingerTimeout, self.forceAbortClient)

    def _cancelDeadline(self) -> None:
        if self._readDeadline is not None and self._readDeadline.active():
            self._readDeadline.cancel()
        self._readDeadline = None

    def forceAbortClient(self) -> None:
        self._abortingCall = None
        self.transport.abortConnection()  # type: ignore[attr-defined]  # TCP and TLS transports have it

    def connectionLost(self, reason: Any = None) -> None:
        self._cancelDeadline()
        super().connectionLost(reason)


def guardedChannelFactory(readTimeout: float) -> type[GuardedChannel]:
    """
    The channel class for a site whose requests must arrive within C{readTimeout} s.
    """
    return type("GuardedChannel", (GuardedChannel,), {"readTimeout": readTimeout})


class _Refused(Protocol):
    """
    What an over-limit connection gets: closed at once (before a TLS
    handshake when TLS wraps it).
    """

    def connectionMade(self) -> None:
        self.transport.abortConnection()  # type: ignore[attr-defined]  # TCP and TLS transports have it


@implementer(IProtocolNegotiationFactory)
class PeerLimit(WrappingFactory):
    """
    At most C{perPeer} concurrent connections per peer address, except from
    C{exempt} networks (trusted proxies).
    """

    def acceptableProtocols(self) -> list[bytes]:
        """
        ALPN: HTTP/1.1 only (the guarded channel speaks nothing else); a TLS
        listener must learn it here, the wrapped site is out of its sight.
        """
        return [b"http/1.1"]

    def __init__(self, wrappedFactory: Any, perPeer: int, exempt: Iterable[str] = ()) -> None:
        super().__init__(wrappedFactory)
        self.perPeer = perPeer
        self.exempt = [ipaddress.ip_network(n, strict=False) for n in exempt]
        self.counts: dict[str, int] = {}
        self._hosts: dict[ProtocolWrapper, str] = {}
        self._saturated: set[str] = set()

    def _isExempt(self, host: str) -> bool:
        if not self.exempt:  # the TLS listener: no address to parse per connection
            return False
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.exempt)

    def buildProtocol(self, addr: IAddress) -> Any:  # a wrapper, or the refusal
        host = getattr(addr, "host", None)
        if host is None or self._isExempt(host):
            return super().buildProtocol(addr)
        if self.counts.get(host, 0) >= self.perPeer:
            if host not in self._saturated:
                self._saturated.add(host)
                log.warn("{host} holds {count} connections: refusing more", host=host, count=self.perPeer)
            return _Refused()
        protocol = super().buildProtocol(addr)
        if protocol is not None:
            self.counts[host] = self.counts.get(host, 0) + 1
            self._hosts[protocol] = host
        return protocol

    def unregisterProtocol(self, p: ProtocolWrapper) -> None:
        super().unregisterProtocol(p)
        host = self._hosts.pop(p, None)
        if host is not None:
            left = self.counts[host] - 1
            if left:
                self.counts[host] = left
            else:
                del self.counts[host]
            self._saturated.discard(host)


def guard(site: Site, limits: ClientLimits, exempt: Iterable[str] = ()) -> PeerLimit:
    """
    Apply C{limits} to C{site} for one listener: its channels get the read
    deadline, and the returned factory (to listen with) caps connections per
    peer, except from C{exempt} networks (give the trusted proxies for the
    plain listener they connect to; nothing for the TLS listener).
    """
    site.protocol = guardedChannelFactory(limits.readTimeout)  # type: ignore[method-assign,assignment]
    return PeerLimit(site, limits.perPeer, exempt)
