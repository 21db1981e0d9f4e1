# -*- test-case-name: tests.test_node_client -*-
"""
The HTTP client marvind uses to talk to the controller's node routes.

L{IControllerClient} is what the agent needs; L{HTTPControllerClient}
implements it with treq over HTTPS, presenting the node's client certificate
and verifying the controller's certificate (and host name) against the
configured CA, which the legacy agent did not do. L{ControllerTLSPolicy} does
that with pyOpenSSL directly: Twisted's C{optionsForClientTLS} relies on
service_identity, which fails on the GENI URNs our controller certificates
carry.
"""

from __future__ import annotations

import hashlib
import json
from email.utils import parsedate_to_datetime
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import Any, Sequence
from urllib.parse import quote, urlencode

import attrs
import treq
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from OpenSSL import SSL, crypto
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import Interface, implementer

from node.config import MarvindConfig

_log = Logger()

IPAddress = IPv4Address | IPv6Address


class ControllerUnreachable(Exception):
    """
    No HTTP answer: connection refused or reset, TLS failure, or timeout.
    """


@attrs.frozen
class ControllerResponse:
    """
    One answer from the controller.

    @ivar code: the HTTP status code.
    @ivar body: the decoded JSON body, or C{None} if it was not JSON.
    @ivar text: the raw body as text (for log messages).
    @ivar date: the HTTP C{Date} header as unix seconds, if present.
    """

    code: int
    body: Any
    text: str
    date: float | None

    @property
    def message(self) -> str:
        """
        The controller's C{message} field, or the start of the body.
        """
        if isinstance(self.body, dict) and isinstance(self.body.get("message"), str):
            return self.body["message"]
        return self.text[:200]


class IControllerClient(Interface):
    """
    The controller's node routes. Every method returns a Deferred that fires
    with a L{ControllerResponse} whatever the HTTP status, or fails with
    L{ControllerUnreachable}.
    """

    def checkAuth() -> Deferred[ControllerResponse]:
        """
        C{GET /backend/auth}: does the controller know our certificate?
        """

    def heartbeat(
        nodeId: str, maintenance: bool, interfaces: list[Any], limit: int, knownTasks: Sequence[str]
    ) -> Deferred[ControllerResponse]:
        """
        C{PUT /resources/<nodeId>}; the reply lists the node's tasks.
        """

    def report(schedid: str, status: str, when: int) -> Deferred[ControllerResponse]:
        """
        C{PUT /schedules/<schedid>} with C{status} and C{when}.
        """

    def uploadStatus(schedid: str, path: str, size: int, sha256: str) -> Deferred[ControllerResponse]:
        """
        C{GET /schedules/<schedid>/uploads/<path>}: how much of this version of
        a result file the controller has (docs/results.md).
        """

    def uploadChunk(
        schedid: str, path: str, size: int, sha256: str, offset: int, chunk: bytes
    ) -> Deferred[ControllerResponse]:
        """
        C{PUT /schedules/<schedid>/uploads/<path>} with one chunk at C{offset}.
        """

    def reportTraffic(schedid: str, meters: dict[str, int]) -> Deferred[ControllerResponse]:
        """
        C{PUT /schedules/<schedid>} with C{traffic} (e.g. the C{results} meter).
        """

    def close() -> Deferred[None]:
        """
        Close idle connections (at shutdown).
        """


def parseHTTPDate(value: bytes | str | None) -> float | None:
    """
    Parse an HTTP C{Date} header into unix seconds, or C{None}.
    """
    if value is None:
        return None
    if isinstance(value, bytes):
        value = value.decode("latin-1")
    try:
        return parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError, IndexError):
        return None


class ControllerNameMismatch(Exception):
    """
    The controller's certificate, though issued by the configured CA, does
    not name the host we connected to.
    """


def certificateNames(certificate: x509.Certificate) -> tuple[list[str], list[IPAddress]]:
    """
    The DNS names and IP addresses in C{certificate}'s subjectAltName.

    Only these identify a server: the common name is never used, and URI
    names (GENI URNs, which every certificate of L{am.devtools.authority}
    carries) say nothing about the host.
    """
    try:
        names = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        return [], []
    return names.get_values_for_type(x509.DNSName), names.get_values_for_type(x509.IPAddress)  # type: ignore[return-value]


def _dnsMatches(pattern: str, hostname: str) -> bool:
    """
    RFC 6125 matching of one DNS name: case-insensitive, and a C{*} allowed
    only as the whole left-most label of a name with at least three labels.
    """
    pattern = pattern.lower().rstrip(".")
    if pattern == hostname:
        return True
    if not pattern.startswith("*.") or pattern.count(".") < 2:
        return False
    head, _, rest = hostname.partition(".")
    return bool(head) and rest == pattern[2:]


def hostnameMatches(certificate: x509.Certificate, hostname: str) -> bool:
    """
    Whether C{certificate} names C{hostname}: an IP literal must be one of
    its IP addresses, any other name one of its DNS names.
    """
    host = hostname.strip("[]").lower().rstrip(".")
    dnsNames, addresses = certificateNames(certificate)
    try:
        address = ip_address(host)
    except ValueError:
        return bool(host) and any(_dnsMatches(n, host) for n in dnsNames)
    return address in addresses


def _isIPLiteral(hostname: str) -> bool:
    try:
        ip_address(hostname.strip("[]"))
    except ValueError:
        return False
    return True


def _refuseUnchecked(
    connection: SSL.Connection, certificate: Any, error: int, depth: int, ok: int
) -> bool:
    """
    The context's own verify callback: a connection made from our context
    without L{_ControllerConnectionCreator} (so without a host name check)
    never completes a handshake.
    """
    return False


@implementer(IOpenSSLClientConnectionCreator)
@attrs.frozen
class _ControllerConnectionCreator:
    """
    TLS connections to the controller at C{hostname}: the chain is verified
    by OpenSSL against the configured CA alone, the host name by us against
    the leaf certificate's subjectAltName.
    """

    _context: SSL.Context
    _hostname: str

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        if not _isIPLiteral(self._hostname):
            connection.set_tlsext_host_name(self._hostname.encode("ascii"))
        connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._verify)
        return connection

    def _verify(
        self, connection: SSL.Connection, certificate: Any, error: int, depth: int, ok: int
    ) -> bool:
        """
        OpenSSL's verdict on each certificate of the chain, plus our host
        name check on the leaf. Never raises: an exception in an OpenSSL
        callback would be lost, so anything unexpected refuses.
        """
        if not ok:
            return False
        if depth != 0:
            return True
        try:
            leaf = certificate.to_cryptography()
            if hostnameMatches(leaf, self._hostname):
                return True
            dnsNames, addresses = certificateNames(leaf)
            named = ", ".join([*dnsNames, *map(str, addresses)]) or "no host at all"
            reason = ControllerNameMismatch(
                f"the controller's certificate names {named}, not {self._hostname}"
            )
        except Exception as e:
            reason = ControllerNameMismatch(f"cannot read the controller's certificate: {e}")
        _log.error("Refusing the controller: {reason}", reason=str(reason))
        tlsProtocol = connection.get_app_data()
        if tlsProtocol is not None:
            tlsProtocol.failVerification(Failure(reason))
        return False


@implementer(IPolicyForHTTPS)
class ControllerTLSPolicy:
    """
    TLS for talking to the controller: trust only the configured CA (never
    the system store), present the node's certificate (with any intermediate
    certificates that follow it in its file), and check the host name
    against the controller certificate's DNS and IP names.

    Built on one pyOpenSSL context rather than C{optionsForClientTLS}:
    service_identity, which that uses, raises on the GENI URNs in the
    subjectAltName of the certificates L{am.devtools.authority} makes, and
    Twisted's verify callback then logs the traceback and I{accepts} the
    certificate for any host name. Here anything unexpected refuses.
    """

    def __init__(
        self, authorities: list[x509.Certificate], certificate: x509.Certificate, key: Any,
        chain: list[x509.Certificate],
    ) -> None:
        """
        @param authorities: the only CAs the controller's certificate may
            chain to.
        @param certificate: the node's certificate, with C{key} its key and
            C{chain} any intermediate certificates to send with it.
        @raise ValueError: if C{authorities} is empty.
        @raise OpenSSL.SSL.Error: if C{key} is not C{certificate}'s.
        """
        if not authorities:
            raise ValueError("no CA certificate to verify the controller with")
        context = SSL.Context(SSL.TLS_CLIENT_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_options(SSL.OP_NO_COMPRESSION)
        store = context.get_cert_store()
        assert store is not None
        for authority in authorities:
            store.add_cert(crypto.X509.from_cryptography(authority))
        context.use_certificate(certificate)
        context.use_privatekey(key)
        context.check_privatekey()
        for extra in chain:
            context.add_extra_chain_cert(extra)
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _refuseUnchecked)
        self._context = context

    @classmethod
    def fromPEM(cls, caPEM: bytes, certificatePEM: bytes, keyPEM: bytes) -> ControllerTLSPolicy:
        """
        @raise ValueError: if a file holds no certificate or key, or the key
            is not the certificate's.
        """
        authorities = x509.load_pem_x509_certificates(caPEM)
        certificates = x509.load_pem_x509_certificates(certificatePEM)
        key = serialization.load_pem_private_key(keyPEM, password=None)
        return cls(authorities, certificates[0], key, certificates[1:])

    @classmethod
    def fromFiles(cls, caFile: str, certificateFile: str, keyFile: str) -> ControllerTLSPolicy:
        def read(path: str) -> bytes:
            with open(path, "rb") as f:
                return f.read()

        return cls.fromPEM(read(caFile), read(certificateFile), read(keyFile))

    def creatorForNetloc(self, hostname: bytes, port: int) -> IOpenSSLClientConnectionCreator:
        return _ControllerConnectionCreator(self._context, hostname.decode("ascii"))


@implementer(IControllerClient)
@attrs.define
class HTTPControllerClient:
    """
    L{IControllerClient} over treq.

    @ivar _http: a treq L{HTTPClient} (tests pass C{treq.testing.StubTreq}).
    @ivar _clock: for request time limits.
    """

    _http: Any
    _clock: IReactorTime
    _baseURL: str
    _timeout: float = 10.0
    _pool: HTTPConnectionPool | None = None

    @classmethod
    def fromConfig(cls, reactor: Any, config: MarvindConfig) -> HTTPControllerClient:
        """
        A client for the real controller: HTTPS with the node's certificate and
        one persistent connection, reused by every heartbeat.
        """
        policy = ControllerTLSPolicy.fromFiles(
            config.caFile, config.certificateFile, config.keyFile
        )
        pool = HTTPConnectionPool(reactor, persistent=True)
        pool.maxPersistentPerHost = 1
        agent = Agent(reactor, contextFactory=policy, pool=pool)
        return cls(HTTPClient(agent), reactor, config.controllerURL, config.timeouts.request, pool)

    def close(self) -> Deferred[None]:
        if self._pool is None:
            return succeed(None)
        return self._pool.closeCachedConnections()

    def _url(self, *segments: str) -> str:
        return self._baseURL + "".join("/" + quote(s, safe="") for s in segments)

    async def _call(self, method: str, url: str, data: Any = None, binary: bool = False) -> ControllerResponse:
        """
        One exchange, body included, under one time limit; C{binary}: C{data}
        is bytes sent as they are.
        """
        headers = {b"Accept": [b"application/json"]}
        if binary:
            headers[b"Content-Type"] = [b"application/octet-stream"]
        current: list[Deferred[Any]] = []
        expired: list[bool] = []

        def expire() -> None:
            expired.append(True)
            current[-1].cancel()

        timer = self._clock.callLater(self._timeout, expire)
        try:
            current.append(self._http.request(method, url, data=data, headers=headers))
            response = await current[-1]
            current.append(treq.content(response))
            raw: bytes = await current[-1]
        except Exception as e:
            if expired:
                raise ControllerUnreachable(f"no answer within {self._timeout:g} s") from None
            raise ControllerUnreachable(_describe(e)) from None
        finally:
            if timer.active():
                timer.cancel()
        text = raw.decode("utf-8", "replace")
        try:
            body = json.loads(text) if text else None
        except ValueError:
            body = None
        return ControllerResponse(
            code=response.code,
            body=body,
            text=text,
            date=parseHTTPDate(response.headers.getRawHeaders(b"date", [None])[0]),
        )

    def checkAuth(self) -> Deferred[ControllerResponse]:
        return Deferred.fromCoroutine(self._call("GET", self._url("backend", "auth")))

    def heartbeat(
        self, nodeId: str, maintenance: bool, interfaces: list[Any], limit: int,
        knownTasks: Sequence[str],
    ) -> Deferred[ControllerResponse]:
        fields = [
            ("maintenance", "1" if maintenance else "0"),
            ("interfaces", json.dumps(interfaces)),
            ("limit", str(limit)),
        ] + [("known_tasks", schedid) for schedid in knownTasks]
        return Deferred.fromCoroutine(self._call("PUT", self._url("resources", nodeId), fields))

    def report(self, schedid: str, status: str, when: int) -> Deferred[ControllerResponse]:
        fields = [("status", status), ("when", str(int(when)))]
        return Deferred.fromCoroutine(self._call("PUT", self._url("schedules", schedid), fields))

    def _uploadURL(self, schedid: str, path: str, **query: Any) -> str:
        return self._url("schedules", schedid, "uploads", path) + "?" + urlencode(query)

    def uploadStatus(self, schedid: str, path: str, size: int, sha256: str) -> Deferred[ControllerResponse]:
        url = self._uploadURL(schedid, path, size=size, sha256=sha256)
        return Deferred.fromCoroutine(self._call("GET", url))

    def uploadChunk(
        self, schedid: str, path: str, size: int, sha256: str, offset: int, chunk: bytes
    ) -> Deferred[ControllerResponse]:
        url = self._uploadURL(
            schedid, path, size=size, sha256=sha256, offset=offset, chunk_sha256=hashlib.sha256(chunk).hexdigest()
        )
        return Deferred.fromCoroutine(self._call("PUT", url, chunk, binary=True))

    def reportTraffic(self, schedid: str, meters: dict[str, int]) -> Deferred[ControllerResponse]:
        fields = [("traffic", json.dumps(meters, sort_keys=True))]
        return Deferred.fromCoroutine(self._call("PUT", self._url("schedules", schedid), fields))


def _describe(error: Exception) -> str:
    """
    A one-line description of a connection-level error; Twisted's
    C{ResponseNeverReceived} and friends wrap the interesting failures.
    """
    reasons = getattr(error, "reasons", None)
    if reasons:
        inner = reasons[0].value
        return f"{type(error).__name__}: {type(inner).__name__}: {inner}"
    return f"{type(error).__name__}: {error}"
