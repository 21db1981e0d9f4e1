# -*- test-case-name: tests.test_rest_auth -*-
"""
Who is calling: a client certificate seen directly on our TLS connection, or
the C{VERIFIED}/C{SSL_FINGERPRINT} headers of a TLS proxy we trust.

Everything fails closed: an unreadable certificate, a proxy header from an
untrusted address, a C{VERIFIED} other than C{SUCCESS}, a malformed or unknown
fingerprint and an invalidated user all mean "anonymous" (the legacy server
took a request without a fingerprint for the first user, normally the admin).
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Iterable, Optional

import attrs
from cryptography.hazmat.primitives.serialization import Encoding
from twisted.internet.defer import Deferred, succeed
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper

from am.core.model import User
from am.core.interfaces import IScheduler
from am.trust.proxies import TrustedProxies
from rest_compat import access
from rest_compat.identities import Identities

_FINGERPRINT = re.compile(r"^[0-9a-f]{40}$")

VIA_TLS = "tls"
VIA_PROXY = "proxy"


@attrs.frozen
class Caller:
    """
    The outcome of authentication for one request.

    @ivar user: the active user the fingerprint belongs to, or C{None}.
    @ivar fingerprint: the presented fingerprint (40 lowercase hex) or C{""}.
    @ivar verified: C{"SUCCESS"} for a direct TLS certificate, the proxy's
        C{VERIFIED} header as sent, or C{None}.
    @ivar via: L{VIA_TLS}, L{VIA_PROXY} or C{None} when nothing was presented.
    """

    user: Optional[User] = None
    fingerprint: str = ""
    verified: Optional[str] = None
    via: Optional[str] = None

    @property
    def role(self) -> str:
        """
        The role for the access matrix.
        """
        return access.roleOf(self.user)

    @property
    def name(self) -> str:
        """
        How the request log names the caller.
        """
        if self.user is None:
            return "-"
        return f"{self.user.name}#{self.user.id}"


def fingerprintOf(certificate: Any) -> Optional[str]:
    """
    The nginx C{$ssl_client_fingerprint} form (SHA-1 of the DER, 40 lowercase
    hex, no colons) of a pyOpenSSL X509, a cryptography certificate or a
    L{twisted.internet.ssl.Certificate}; C{None} when it cannot be read.
    """
    if certificate is None:
        return None
    try:
        if hasattr(certificate, "original"):
            certificate = certificate.original
        if hasattr(certificate, "to_cryptography"):
            certificate = certificate.to_cryptography()
        der = certificate.public_bytes(Encoding.DER)
    except Exception:
        return None
    if not isinstance(der, bytes) or not der:
        return None
    return hashlib.sha1(der).hexdigest()


def normalise(text: Optional[str]) -> Optional[str]:
    """
    A fingerprint header value as our store keeps it, or C{None} if malformed.
    """
    if not text:
        return None
    value = text.strip().replace(":", "").lower()
    return value if _FINGERPRINT.match(value) else None


class Authenticator:
    """
    Identify REST callers.

    @ivar trustedProxies: networks whose C{VERIFIED}/C{SSL_FINGERPRINT} headers
        are believed; the string C{"unix"} trusts peers on a UNIX socket.
    """

    log = Logger()

    def __init__(
        self,
        trustedProxies: Iterable[str] = (),
        verifiedHeader: str = "VERIFIED",
        fingerprintHeader: str = "SSL_FINGERPRINT",
    ) -> None:
        self.proxies = TrustedProxies(trustedProxies)
        self.trustUnix = self.proxies.trustUnix
        self.trustedProxies = self.proxies.networks
        self.verifiedHeader = verifiedHeader.encode("ascii")
        self.fingerprintHeader = fingerprintHeader.encode("ascii")

    def isTrustedPeer(self, address: Any) -> bool:
        """
        Whether the connection comes straight from a trusted proxy.
        """
        return self.proxies.isTrusted(address)

    def credentials(self, request: Any) -> tuple[str, Optional[str], Optional[str]]:
        """
        What the request presents: C{(fingerprint or "", verified, via)}.
        A certificate on our own TLS connection wins over any header.
        """
        getPeerCertificate = _certificateGetter(getattr(request, "transport", None))
        if callable(getPeerCertificate):
            try:
                certificate = getPeerCertificate()
            except Exception:
                certificate = None
            fingerprint = fingerprintOf(certificate)
            if fingerprint:
                return fingerprint, "SUCCESS", VIA_TLS
        verified = _header(request, self.verifiedHeader)
        presented = _header(request, self.fingerprintHeader)
        if verified is None and presented is None:
            return "", None, None
        if not self.isTrustedPeer(request.getClientAddress()):
            self.log.warn(
                "Ignoring TLS proxy headers from untrusted peer {peer}",
                peer=str(request.getClientAddress()),
            )
            return "", None, None
        fingerprint = normalise(presented) if verified == "SUCCESS" else None
        return fingerprint or "", verified, VIA_PROXY

    def authenticate(self, request: Any, scheduler: IScheduler, identities: Optional[Identities] = None) -> Deferred:
        """
        Identify the caller of C{request}.

        @param identities: the face's remembered fingerprints; without, every
            request reads the store.
        @return: a Deferred firing with a L{Caller}; its C{user} is set only for
            an active user whose fingerprint was presented in a trusted way.
        """
        fingerprint, verified, via = self.credentials(request)
        if not fingerprint:
            return succeed(Caller(None, "", verified, via))

        def found(user: Optional[User]) -> Caller:
            if user is not None and not user.active:
                user = None
            return Caller(user, fingerprint, verified, via)

        if identities is None:
            identities = Identities(scheduler, remember=False)
        return identities.userFor(fingerprint).addCallback(found)


def _certificateGetter(transport: Any) -> Any:
    """
    C{transport.getPeerCertificate}, or C{None}. A L{ProtocolWrapper} (the
    per-peer connection limit wraps every connection) forwards a missing
    attribute to what it wraps through C{__getattr__}, which on a plain
    connection costs two exceptions per request: look through the wrappers
    first (a TLS connection's own wrapper has the method).
    """
    while (
        isinstance(transport, ProtocolWrapper)
        and not hasattr(type(transport), "getPeerCertificate")
        and "getPeerCertificate" not in vars(transport)
    ):
        transport = transport.transport
    return getattr(transport, "getPeerCertificate", None)


def _header(request: Any, name: bytes) -> Optional[str]:
    raw = request.requestHeaders.getRawHeaders(name)
    if not raw:
        return None
    if len(raw) != 1:
        # A client header next to the proxy's own: believe neither.
        return ""
    try:
        return raw[0].decode("ascii").strip()
    except (UnicodeDecodeError, AttributeError):
        return ""
