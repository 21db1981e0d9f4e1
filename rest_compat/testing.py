# -*- test-case-name: tests.test_rest_resource -*-
"""
An in-memory harness for the REST face: a scheduler over the synchronous
memory store, the real resource tree served by the controller's real site
(L{am.ctl.site}: its request class and body limit), and an HTTP client
talking to it over in-memory connections, as treq's own
C{treq.testing.RequestTraversalAgent} does, but with the caller's address
and TLS certificate chosen per request. So routing, limits and headers are
tested as served. Every response is checked against the OpenAPI document as
it is produced.
"""

from __future__ import annotations

import hashlib
import json
from io import BytesIO
from typing import Any, Iterable, Optional, Union
from urllib.parse import urlencode

import attrs
import treq
from twisted.internet.address import IPv4Address, IPv6Address, UNIXAddress
from twisted.internet.defer import Deferred, succeed
from twisted.internet.endpoints import TCP4ClientEndpoint
from twisted.internet.interfaces import ISSLTransport
from twisted.internet.testing import MemoryReactorClock
from twisted.test import iosim
from twisted.web.client import URI, Agent
from twisted.web.http_headers import Headers
from twisted.web.iweb import IAgent, IBodyProducer
from twisted.web.test.requesthelper import DummyRequest
from zope.interface import directlyProvides, implementer

from am.ctl.site import MarvinSite, makeSite

from am.core.model import User
from am.core.policy import Policy
from am.testing import makeScheduler
from rest_compat import schemacheck
from rest_compat.auth import Authenticator
from rest_compat.params import MAX_BODY
from rest_compat.resource import buildRESTResource, loadDocument, pathSegments


class FakeTLSTransport:
    """
    A transport that presents a peer certificate, like Twisted's TLS transport.
    """

    def __init__(self, certificate: Any) -> None:
        self.certificate = certificate

    def getPeerCertificate(self) -> Any:
        return self.certificate


class FakeRequest(DummyRequest):
    """
    A L{DummyRequest} with what the REST face reads from a real request.
    """

    def __init__(self, method: bytes, uri: bytes, body: bytes, client: Any, transport: Any) -> None:
        path = uri.split(b"?", 1)[0]
        super().__init__(path.split(b"/")[1:], client=client)
        self.method = method
        self.uri = uri
        self.path = path
        self.content = BytesIO(body)
        self.client = client
        self.transport = transport


class _PeerTransport(iosim.FakeTransport):
    """
    The server side of an in-memory connection, presenting a client TLS
    certificate as Twisted's TLS transport does.
    """

    def __init__(self, protocol: Any, presented: Any, **kwargs: Any) -> None:
        super().__init__(protocol, isServer=True, **kwargs)
        self.presented = presented
        directlyProvides(self, ISSLTransport)

    def getPeerCertificate(self) -> Any:
        return self.presented.getPeerCertificate()


@attrs.define
class _Endpoints:
    reactor: MemoryReactorClock

    def endpointForURI(self, uri: Any) -> TCP4ClientEndpoint:
        return TCP4ClientEndpoint(self.reactor, "127.0.0.1", uri.port)


@implementer(IBodyProducer)
class _Body:
    """
    A body produced at once (the in-memory connection needs no flow control).
    """

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> Deferred:
        consumer.write(self.data)
        return succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass


@implementer(IAgent)
class SiteAgent:
    """
    An L{IAgent} whose requests reach C{site} over in-memory connections:
    L{treq.testing.RequestTraversalAgent}'s way, over a site of our own and
    with the peer address and TLS certificate of the next request in
    C{peer} and C{certificate} (a plain connection when C{certificate} is
    C{None}).
    """

    def __init__(self, site: MarvinSite, reactor: MemoryReactorClock) -> None:
        self.site = site
        self.reactor = reactor
        self.peer: Any = IPv4Address("TCP", "127.0.0.1", 40000)
        self.transport: Any = None
        self._agent = Agent.usingEndpointFactory(reactor, _Endpoints(reactor))
        self._pumps: list[iosim.IOPump] = []

    def request(self, method: bytes, uri: bytes, headers: Any = None, bodyProducer: Any = None) -> Deferred:
        response = self._agent.request(method, uri, headers, bodyProducer)
        if not self.reactor.tcpClients:
            return response
        host, port, factory, _, _ = self.reactor.tcpClients.pop()
        server = IPv4Address("TCP", "127.0.0.1", port)
        serverProtocol = self.site.buildProtocol(self.peer)
        if self.transport is not None:
            serverTransport: Any = _PeerTransport(serverProtocol, self.transport, hostAddress=server, peerAddress=self.peer)
        else:
            serverTransport = iosim.FakeTransport(serverProtocol, isServer=True, hostAddress=server, peerAddress=self.peer)
        clientProtocol = factory.buildProtocol(None)
        clientTransport = iosim.FakeTransport(clientProtocol, isServer=False, hostAddress=self.peer, peerAddress=server)
        self._pumps.append(iosim.connect(serverProtocol, serverTransport, clientProtocol, clientTransport))
        return response

    def flush(self) -> None:
        """
        Move every byte both ways until nothing is left to move.
        """
        pumps, self._pumps = self._pumps, []
        for pump in pumps:
            pump.flush()
            if not (pump.clientIO.disconnected and pump.serverIO.disconnected):
                self._pumps.append(pump)


@attrs.frozen
class Response:
    """
    What the client would have received.
    """

    code: int
    headers: Headers
    body: bytes

    @property
    def json(self) -> Any:
        """
        The decoded JSON body.
        """
        return json.loads(self.body)

    def header(self, name: str) -> Optional[str]:
        """
        One response header, or C{None}.
        """
        values = self.headers.getRawHeaders(name.encode("ascii"))
        return values[0].decode("ascii") if values else None


def fingerprintFor(name: str) -> str:
    """
    A stable fake fingerprint for a test user.
    """
    return hashlib.sha1(name.encode("utf-8")).hexdigest()


class RESTHarness:
    """
    The REST face over an in-memory scheduler.

    @ivar checked: how many responses were checked against the OpenAPI document.
    """

    def __init__(
        self,
        nodes: int = 3,
        now: float = 1_000_000_000,
        policy: Optional[Policy] = None,
        trustedProxies: Iterable[str] = ("127.0.0.0/8", "::1/128"),
        cors: Any = None,
        sync: Any = None,
        maxBody: Optional[int] = None,
        validate: bool = True,
        results: Any = None,
    ) -> None:
        self.scheduler, self.store, self.clock = makeScheduler(nodes, now, policy)
        self.authenticator = Authenticator(trustedProxies)
        extra: dict[str, Any] = {"maxBody": maxBody} if maxBody is not None else {}
        self.root = buildRESTResource(
            self.scheduler, self.authenticator, cors=cors, sync=sync, results=results, **extra
        )
        self.reactor = MemoryReactorClock()
        self.site = makeSite(self.root, [maxBody or MAX_BODY], self.reactor)
        self.agent = SiteAgent(self.site, self.reactor)
        self.http = treq.client.HTTPClient(self.agent, data_to_body_producer=_Body)
        self.document = json.loads(loadDocument())
        self.validate = validate
        self.checked = 0

    def run(self, function: Any, *args: Any) -> Any:
        """
        Run a store transaction directly.
        """
        return self.store.run(function, *args)

    def addUser(self, name: str, role: str = "user", project: str = "", **kwargs: Any) -> User:
        """
        Create a user whose fingerprint is L{fingerprintFor}C{(name)}.
        """
        kwargs.setdefault("fingerprint", fingerprintFor(name))
        result: list[Any] = []
        self.scheduler.addUser(name=name, role=role, project=project, **kwargs).addBoth(result.append)
        if not isinstance(result[0], User):
            result[0].raiseException()
        return result[0]

    def request(self, method: str, path: str, user: Optional[User] = None, **kwargs: Any) -> Response:
        """
        Serve one request through the site, as a client would send it.
        C{user} authenticates through the trusted-proxy headers (from
        127.0.0.1 unless C{client} says otherwise); a C{transport} with a
        C{getPeerCertificate} makes it a TLS connection presenting that.
        """
        return self.finish(method, path, self.begin(method, path, user, **kwargs))

    def begin(
        self,
        method: str,
        path: str,
        user: Optional[User] = None,
        json_: Any = None,
        form: Union[None, dict, list] = None,
        body: Optional[bytes] = None,
        headers: Optional[dict[str, str]] = None,
        client: Any = None,
        transport: Any = None,
    ) -> list[Any]:
        """
        Send a request and move what can move now; the list receives the
        outcome when it comes (L{finish} reads it): for requests held open.
        """
        allHeaders = dict(headers or {})
        if user is not None:
            allHeaders.setdefault("VERIFIED", "SUCCESS")
            allHeaders.setdefault("SSL_FINGERPRINT", user.fingerprint)
        if json_ is not None:
            body = json.dumps(json_).encode("utf-8")
            allHeaders.setdefault("Content-Type", "application/json")
        elif form is not None:
            body = urlencode(form, doseq=True).encode("ascii")
            allHeaders.setdefault("Content-Type", "application/x-www-form-urlencoded")
        self.agent.peer = client if client is not None else IPv4Address("TCP", "127.0.0.1", 40000)
        self.agent.transport = transport
        url = "https://marvin.test" + path if transport is not None else "http://marvin.test" + path
        outcome: list[Any] = []
        d = self.http.request(
            method, url, headers={k: [v] for k, v in allHeaders.items()}, data=body or None  # type: ignore[arg-type]
        )
        d.addCallback(lambda answer: treq.content(answer).addCallback(lambda data: (answer, data)))
        d.addBoth(outcome.append)
        self.agent.flush()
        return outcome

    def finish(self, method: str, path: str, outcome: list[Any]) -> Response:
        """
        The response of a request L{begin} sent, once it has come.
        """
        self.agent.flush()
        assert outcome, f"{method} {path} did not finish"
        if not isinstance(outcome[0], tuple):
            outcome[0].raiseException()
        answer, data = outcome[0]
        received = answer.headers.copy()
        if isinstance(answer.length, int):
            # Twisted's client keeps the length apart from the other headers.
            received.setRawHeaders(b"content-length", [str(answer.length).encode("ascii")])
        response = Response(answer.code, received, data)
        if self.validate:
            # Checked against the path as sent: Twisted's client drops an
            # empty ";" parameter part (C{/experiments/;} goes out as C{/experiments/}).
            if path.endswith(";"):
                path = URI.fromBytes(b"http://marvin.test" + path.encode("utf-8")).originForm.decode("utf-8")
            self.check(method, path, response)
        return response

    def disconnect(self) -> None:
        """
        Every client connection still open goes away (a client that gave up).
        """
        for pump in self.agent._pumps:
            pump.clientIO.loseConnection()
        self.agent.flush()

    def check(self, method: str, path: str, response: Response) -> None:
        """
        Hold a response against the OpenAPI document (or the Error schema for
        paths and methods it does not describe).

        @raise AssertionError: naming every mismatch.
        """
        if not response.body:
            assert response.code in (204, 301) or method == "HEAD", f"{method} {path}: empty body with {response.code}"
            return
        assert response.header("api-version") == "1.0", f"{method} {path}: no api-version"
        segments = pathSegments(path.split("?", 1)[0].encode("utf-8").split(b"/")[1:]) or []
        # A segment may hold an escaped slash (a result file's path): it stays one segment.
        template = schemacheck.matchTemplate(self.document, "/" + "/".join(s.replace("/", "%2F") for s in segments))
        kind = (response.header("content-type") or "").split(";")[0]
        if kind != "application/json" and response.code in (200, 206):
            # Calendars, the timeline page's files, results: the type must be described.
            operation = self.document["paths"][template]["get" if method == "HEAD" else method.lower()]
            described = operation["responses"][str(response.code)]["content"]
            assert kind in described, f"{method} {path}: {kind} is not described"
            if kind == "text/calendar":
                assert response.body.startswith(b"BEGIN:VCALENDAR"), f"{method} {path}: not iCalendar"
            self.checked += 1
            return
        assert response.header("content-type") == "application/json", f"{method} {path}: not JSON"
        try:
            schema = schemacheck.responseSchema(
                self.document, template, "GET" if method == "HEAD" else method, response.code
            )
        except (KeyError, TypeError):
            assert response.code >= 400, f"{method} {path} -> {response.code} is not described"
            schema = {"$ref": "#/components/schemas/Error"}
        problems = schemacheck.errors(response.json, schema, self.document)
        assert not problems, f"{method} {path} -> {response.code}: " + "; ".join(problems[:5])
        self.checked += 1


def address(host: str) -> Any:
    """
    A peer address for C{client=}: IPv4, IPv6 or C{"unix"}.
    """
    if host == "unix":
        return UNIXAddress(b"/run/marvin.sock")
    if ":" in host:
        return IPv6Address("TCP", host, 40000)
    return IPv4Address("TCP", host, 40000)


@attrs.define
class Population:
    """
    The usual cast: an admin, two users and the node users of nodes 1 and 2.
    """

    admin: User
    alice: User
    bob: User
    node1: User
    node2: User


def populate(harness: RESTHarness) -> Population:
    """
    Create the usual cast in C{harness}.
    """
    return Population(
        admin=harness.addUser("root", "admin"),
        alice=harness.addUser("alice", "user", "monroe"),
        bob=harness.addUser("bob", "user", "monroe"),
        node1=harness.addUser("Node 1", "node"),
        node2=harness.addUser("Node 2", "node"),
    )


def book(harness: RESTHarness, user: User, **params: Any) -> int:
    """
    Book an experiment as C{user} (JSON body) and return its id.
    """
    body = {"name": "exp", "nodecount": 1, "nodetypes": "", "script": "docker.io/monroe/ping", "duration": 600}
    body.update(params)
    response = harness.request("POST", "/v1/experiments", user, json_=body)
    assert response.code == 201, response.body
    return response.json["experiment"]
