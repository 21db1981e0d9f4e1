# -*- test-case-name: tests.test_node_client -*-
"""
The HTTP client marvind uses to talk to the controller's node routes.

L{IControllerClient} is what the agent needs; L{HTTPControllerClient}
implements it with treq over HTTPS, presenting the node's client certificate
and verifying the controller's certificate (and host name) against the
configured CA, which the legacy agent did not do.
"""

from __future__ import annotations

import json
from email.utils import parsedate_to_datetime
from typing import Any, Sequence
from urllib.parse import quote

import attrs
import treq
from OpenSSL.crypto import FILETYPE_PEM
from treq.client import HTTPClient
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.ssl import (
    Certificate,
    KeyPair,
    PrivateCertificate,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.web.client import Agent, HTTPConnectionPool
from twisted.web.iweb import IPolicyForHTTPS
from zope.interface import Interface, implementer

from node.config import MarvindConfig


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


def _pemBlocks(data: bytes) -> list[bytes]:
    marker = b"-----BEGIN CERTIFICATE-----"
    return [marker + part for part in data.split(marker)[1:]]


@implementer(IPolicyForHTTPS)
@attrs.frozen
class ControllerTLSPolicy:
    """
    Trust only the configured CA for the controller, and present the node's
    certificate (with any intermediate certificates that follow it in its
    file).
    """

    _trustRoot: Any
    _clientCertificate: PrivateCertificate
    _chain: list[Any]

    @classmethod
    def fromFiles(cls, caFile: str, certificateFile: str, keyFile: str) -> ControllerTLSPolicy:
        with open(caFile, "rb") as f:
            authorities = [Certificate.loadPEM(block) for block in _pemBlocks(f.read())]
        with open(certificateFile, "rb") as f:
            certificates = _pemBlocks(f.read())
        with open(keyFile, "rb") as f:
            keyPair = KeyPair.load(f.read(), FILETYPE_PEM)
        client = PrivateCertificate.fromCertificateAndKeyPair(
            Certificate.loadPEM(certificates[0]), keyPair
        )
        chain = [Certificate.loadPEM(block).original for block in certificates[1:]]
        return cls(trustRootFromCertificates(authorities), client, chain)

    def creatorForNetloc(self, hostname: bytes, port: int) -> Any:
        extra = {"extraCertChain": self._chain} if self._chain else {}
        return optionsForClientTLS(
            hostname.decode("ascii"),
            trustRoot=self._trustRoot,
            clientCertificate=self._clientCertificate,
            extraCertificateOptions=extra,
        )


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

    async def _call(self, method: str, url: str, data: Any = None) -> ControllerResponse:
        """
        One exchange, body included, under one time limit.
        """
        headers = {b"Accept": [b"application/json"]}
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
