# -*- test-case-name: tests.test_ctl_ops -*-
"""
Which peers may speak for a client: the TLS-terminating proxies the
operator configured (C{trusted_proxies}). Both faces ask this before
believing any identity header; a header from any other peer is ignored.

Behind a proxy the GENI face gets the caller's certificate in a header
(nginx's C{$ssl_client_escaped_cert}, URL-escaped PEM) and verifies it
against the GENI roots exactly as a direct TLS handshake would, so the
proxy vouches for nothing but the bytes it forwards.
"""

from __future__ import annotations

import ipaddress
from typing import Any, Callable, Iterable, Union
from urllib.parse import unquote

from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress

from am.trust.certs import Caller
from am.trust.errors import FORBIDDEN, TrustError

_Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

# Peer addresses whose answer is remembered; past that the memory starts again.
_REMEMBERED = 4096

# A PEM chain of a few certificates, escaped; more is not a client certificate.
MAX_CERTIFICATE_HEADER = 64 * 1024


class TrustedProxies:
    """
    Networks (CIDR) whose connections may carry identity headers; the
    string C{"unix"} trusts peers on a UNIX socket.
    """

    def __init__(self, entries: Iterable[str] = ()) -> None:
        networks: list[_Network] = []
        self.trustUnix = False
        for entry in entries:
            if str(entry).strip().lower() == "unix":
                self.trustUnix = True
                continue
            try:
                networks.append(ipaddress.ip_network(str(entry).strip(), strict=False))
            except ValueError:
                raise ValueError(f"trusted proxy {entry!r} is not a network (CIDR)") from None
        self.networks = tuple(networks)
        # Peer addresses decided (parsing one costs more than the request's routing).
        self._decided: dict[str, bool] = {}

    def isTrusted(self, address: Any) -> bool:
        """
        Whether a connection from C{address} comes straight from a trusted proxy.
        """
        if isinstance(address, UNIXAddress):
            return self.trustUnix
        if not isinstance(address, (IPv4Address, IPv6Address)):
            return False
        host = address.host
        trusted = self._decided.get(host)
        if trusted is None:
            trusted = self._decide(host)
            if len(self._decided) >= _REMEMBERED:
                self._decided.clear()
            self._decided[host] = trusted
        return trusted

    def _decide(self, host: str) -> bool:
        try:
            ip = ipaddress.ip_address(host.split("%", 1)[0])
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip.version == net.version and ip in net for net in self.networks)


def proxiedCallerFromRequest(
    request: Any,
    proxies: TrustedProxies,
    header: str,
    verifyPEM: Callable[[str], Caller],
    direct: Callable[[Any], Caller],
) -> Caller:
    """
    The GENI caller of C{request}: a certificate on our own TLS connection
    (C{direct}, e.g. L{am.trust.tls.callerFromRequest}) wins; otherwise the
    certificate in C{header}, if the peer is a trusted proxy, checked by
    C{verifyPEM} (L{am.trust.gate.Trust.callerFromPEM}: chain to the GENI
    roots, validity, URN).

    @raise TrustError: (FORBIDDEN) when neither gives a verified caller.
    """
    transport = getattr(request, "transport", None)
    if callable(getattr(transport, "getPeerCertificate", None)):
        return direct(request)
    raw = request.requestHeaders.getRawHeaders(header.encode("ascii")) or []
    if not raw or not proxies.isTrusted(request.getClientAddress()):
        raise TrustError(FORBIDDEN, "no TLS client certificate: call over HTTPS with your GENI certificate")
    if len(raw) != 1 or len(raw[0]) > MAX_CERTIFICATE_HEADER:
        raise TrustError(FORBIDDEN, "the proxy passed an unusable client certificate")
    try:
        pem = unquote(raw[0].decode("ascii"), errors="strict")
    except (UnicodeDecodeError, ValueError):
        raise TrustError(FORBIDDEN, "the proxy passed an unusable client certificate") from None
    if "-----BEGIN CERTIFICATE-----" not in pem:
        raise TrustError(FORBIDDEN, "no TLS client certificate: call over HTTPS with your GENI certificate")
    return verifyPEM(pem)
