"""
Tests for L{node.client}: the HTTPS client against the fake controller served
over real TLS on 127.0.0.1 (the only way to see certificates, host names and
timeouts as the agent will), and L{ControllerTLSPolicy} in memory with the
certificates L{am.devtools.authority} makes (GENI URNs in subjectAltName).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

import datetime
import ipaddress

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.x509.oid import NameOID
from OpenSSL import SSL
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import CertificateOptions, trustRootFromCertificates
from twisted.internet.ssl import Certificate as TwistedCertificate
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from am.devtools.authority import Identity, makeAM, makeCA, makeUser
from am.devtools.pki import newKey
from node.client import (
    ControllerNameMismatch,
    ControllerTLSPolicy,
    ControllerUnreachable,
    HTTPControllerClient,
    hostnameMatches,
    parseHTTPDate,
)
from node.config import MarvindConfig, Timeouts
from node.testing import ControllerPKI, FakeController, serverTLSOptions, writeControllerPKI

_cache: dict[str, ControllerPKI] = {}
_SERVER_NAMES = {"othername": ("ctl.example",)}


def _pki(name: str) -> ControllerPKI:
    """
    A throw-away PKI, made once per module run (key generation is the slow
    part); C{othername}'s controller certificate is for another host.
    """
    if name not in _cache:
        base = tempfile.mkdtemp(prefix="marvind-client-")
        atexit.register(shutil.rmtree, base, True)
        _cache[name] = writeControllerPKI(
            os.path.join(base, name), _SERVER_NAMES.get(name, ("localhost", "127.0.0.1"))
        )
    return _cache[name]


_geni: dict[str, Identity] = {}


def _identity(name: str) -> Identity:
    """
    Identities made by the development authority, once per module run (EC
    keys: fast): C{ca} and C{rogue-ca}, the controller certificates C{am}
    (for C{localhost}), C{am-ip} (C{127.0.0.1} as a DNS name only) and
    C{rogue-am} (C{localhost}, from the other CA), and the node's C{node}.
    """
    if name not in _geni:
        if name in ("ca", "rogue-ca"):
            _geni[name] = makeCA(None, "geni:" + name.replace("-", ""), key=newKey("ec"))
        elif name == "node":
            _geni[name] = makeUser(None, _identity("ca"), "node1", key=newKey("ec"))
        else:
            ca = _identity("rogue-ca" if name == "rogue-am" else "ca")
            host = "127.0.0.1" if name == "am-ip" else "localhost"
            _geni[name] = makeAM(None, ca, host, key=newKey("ec"))
    return _geni[name]


def _writeGENIPKI(server: str) -> ControllerPKI:
    """
    The development authority's CA, controller certificate C{server} and
    node certificate as files, for serving the fake controller.
    """
    base = tempfile.mkdtemp(prefix="marvind-client-geni-")
    atexit.register(shutil.rmtree, base, True)

    def write(name: str, data: bytes) -> str:
        path = os.path.join(base, name)
        with open(path, "wb") as f:
            f.write(data)
        return path

    return ControllerPKI(
        caCertificate=write("ca.pem", _identity("ca").certPEM),
        serverCertificate=write("server.pem", _identity(server).chainPEM),
        serverKey=write("server.key", _identity(server).keyPEM),
        clientCertificate=write("client.pem", _identity("node").chainPEM),
        clientKey=write("client.key", _identity("node").keyPEM),
    )


class _Silent(Resource):
    """
    Never answers.
    """

    isLeaf = True

    def render(self, request: object) -> object:
        return NOT_DONE_YET


class HTTPSClientTests(TestCase):
    """
    L{HTTPControllerClient} over real TLS with client certificates.
    """

    def serve(self, pki: ControllerPKI, root: Resource | None = None) -> int:
        self.controller = FakeController(reactor, nodeId="1")
        site = Site(root if root is not None else self.controller.root())
        self.listening = reactor.listenSSL(0, site, serverTLSOptions(pki), interface="127.0.0.1")
        self.addCleanup(self.listening.stopListening)
        return self.listening.getHost().port

    def client(
        self, port: int, trust: ControllerPKI, identity: ControllerPKI | None = None,
        host: str = "127.0.0.1", timeout: float = 5.0,
    ) -> HTTPControllerClient:
        identity = identity or trust
        config = MarvindConfig(
            controllerURL=f"https://{host}:{port}/v1", caFile=trust.caCertificate, nodeId="1",
            certificateFile=identity.clientCertificate, keyFile=identity.clientKey,
            stateDirectory="", hooks={}, timeouts=Timeouts(request=timeout),
        )
        client = HTTPControllerClient.fromConfig(reactor, config)
        self.addCleanup(client.close)
        return client

    async def test_exchange(self) -> None:
        """
        The client checks its certificate, heartbeats and reports; the
        controller sees the node's certificate and the form fields; answers
        carry the parsed JSON body and the C{Date}.
        """
        port = self.serve(_pki("good"))
        self.controller.addTask("9", 0, 4102444800)
        client = self.client(port, _pki("good"))
        auth = await client.checkAuth()
        self.assertEqual(auth.code, 200)
        self.assertEqual(auth.body["user"]["role"], "node")
        beat = await client.heartbeat("1", True, [{"mac": "aa"}], 10, ["7", "9"])
        self.assertEqual(beat.code, 200)
        self.assertEqual([t["id"] for t in beat.body["tasks"]], ["9"])
        self.assertIsNotNone(beat.date)
        report = await client.report("9", "failed; it broke", 1234)
        self.assertEqual((report.code, report.message), (200, "Ok."))
        calls = self.controller.calls
        self.assertEqual([c.peer for c in calls], ["Node 1"] * 3)
        self.assertEqual(calls[1].fields["known_tasks"], ["7", "9"])
        self.assertEqual(calls[1].fields["maintenance"], ["1"])
        self.assertEqual(calls[2].fields, {"status": ["failed; it broke"], "when": ["1234"]})
        self.assertEqual(self.controller.reports, [("9", "failed; it broke", 1234)])

    async def test_hostname(self) -> None:
        """
        The controller's host name is checked too: C{localhost} is in the
        certificate and works.
        """
        port = self.serve(_pki("good"))
        client = self.client(port, _pki("good"), host="localhost")
        self.assertEqual((await client.checkAuth()).code, 200)

    async def test_geniControllerCertificate(self) -> None:
        """
        A controller certificate made by L{am.devtools.authority.makeAM}, whose
        subjectAltName carries GENI URNs besides the host name, is accepted
        for that host name.
        """
        pki = _writeGENIPKI("am")
        port = self.serve(pki)
        client = self.client(port, pki, host="localhost")
        auth = await client.checkAuth()
        self.assertEqual(auth.code, 200)
        self.assertEqual([c.peer for c in self.controller.calls], ["geni:ca.user.node1"])

    async def test_untrustedController(self) -> None:
        """
        A controller whose certificate is not from the configured CA is not
        talked to.
        """
        port = self.serve(_pki("rogue"))
        client = self.client(port, _pki("good"))
        with self.assertRaises(ControllerUnreachable):
            await client.checkAuth()
        self.assertEqual(self.controller.calls, [])

    async def test_wrongHostName(self) -> None:
        """
        A certificate from the right CA but for another name is refused.
        """
        port = self.serve(_pki("othername"))
        client = self.client(port, _pki("othername"))
        with self.assertRaises(ControllerUnreachable):
            await client.checkAuth()
        self.assertEqual(self.controller.calls, [])

    async def test_clientCertificateRequired(self) -> None:
        """
        A node certificate the controller does not trust gets no answer.
        """
        port = self.serve(_pki("good"))
        client = self.client(port, _pki("good"), identity=_pki("rogue"))
        with self.assertRaises(ControllerUnreachable):
            await client.checkAuth()
        self.assertEqual(self.controller.calls, [])

    async def test_timeout(self) -> None:
        """
        A controller that accepts the request and never answers is given up
        on after the request timeout.
        """
        root = Resource()
        root.putChild(b"v1", _Silent())
        port = self.serve(_pki("good"), root)
        client = self.client(port, _pki("good"), timeout=0.3)
        with self.assertRaises(ControllerUnreachable) as caught:
            await client.report("1", "started", 1)
        self.assertIn("no answer within 0.3 s", str(caught.exception))

    async def test_refused(self) -> None:
        """
        Nothing listening: unreachable.
        """
        port = self.serve(_pki("good"))
        await self.listening.stopListening()
        client = self.client(port, _pki("good"))
        with self.assertRaises(ControllerUnreachable):
            await client.checkAuth()


class _Recorder(Protocol):
    """
    Keeps what it received and why its connection ended; sends C{greeting}
    when connected.
    """

    def __init__(self, greeting: bytes = b"") -> None:
        self.greeting = greeting
        self.received = b""
        self.reason: object = None

    def connectionMade(self) -> None:
        if self.greeting:
            self.transport.write(self.greeting)

    def dataReceived(self, data: bytes) -> None:
        self.received += data

    def connectionLost(self, reason: object) -> None:
        self.reason = reason


class InMemoryTLSTests(SynchronousTestCase):
    """
    L{ControllerTLSPolicy} against a server with the development authority's
    certificates, in memory: chain, host name, SNI and client certificate.
    """

    def handshake(self, server: str, hostname: bytes) -> tuple[_Recorder, _Recorder]:
        """
        Connect a client built from the policy for C{hostname} to a server
        presenting C{server}'s certificate and requiring a client
        certificate from the CA; the client sends C{hello}.
        """
        identity = _identity(server)
        ca = _identity("ca")
        serverOptions = CertificateOptions(
            privateKey=identity.key, certificate=identity.certificate,
            trustRoot=trustRootFromCertificates([TwistedCertificate.loadPEM(ca.certPEM)]),
        )
        node = _identity("node")
        policy = ControllerTLSPolicy.fromPEM(ca.certPEM, node.chainPEM, node.keyPEM)
        clock = Clock()
        serverProtocol, clientProtocol = _Recorder(), _Recorder(b"hello")
        serverFactory = TLSMemoryBIOFactory(
            serverOptions, False, Factory.forProtocol(lambda: serverProtocol), clock=clock
        )
        clientFactory = TLSMemoryBIOFactory(
            policy.creatorForNetloc(hostname, 8443), True,
            Factory.forProtocol(lambda: clientProtocol), clock=clock,
        )
        _, _, pump = connectedServerAndClient(
            lambda: serverFactory.buildProtocol(IPv4Address("TCP", "192.0.2.9", 5555)),
            lambda: clientFactory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 8443)),
            clock=clock,
        )
        pump.flush()
        return serverProtocol, clientProtocol

    def test_urnCertificateAccepted(self) -> None:
        """
        The server certificate from C{makeAM(None, ca, "localhost")} (URNs
        in its subjectAltName) is accepted for C{localhost}; the server saw
        the node's certificate and the name by SNI.
        """
        server, client = self.handshake("am", b"localhost")
        self.assertEqual(server.received, b"hello")
        self.assertIsNone(client.reason)
        handle = server.transport.getHandle()
        peer = handle.get_peer_certificate(as_cryptography=True)
        self.assertEqual(peer, _identity("node").certificate)
        self.assertEqual(handle.get_servername(), b"localhost")

    def test_otherHostRefused(self) -> None:
        """
        The same certificate is refused for another host name, before any
        data is sent, saying what the certificate names.
        """
        server, client = self.handshake("am", b"other.example")
        self.assertEqual(server.received, b"")
        self.assertIsInstance(client.reason.value, ControllerNameMismatch)
        self.assertEqual(
            str(client.reason.value),
            "the controller's certificate names localhost, not other.example",
        )

    def test_otherCARefused(self) -> None:
        """
        A certificate for the right name from another CA is refused by the
        chain check.
        """
        server, client = self.handshake("rogue-am", b"localhost")
        self.assertEqual(server.received, b"")
        self.assertIsInstance(client.reason.value, SSL.Error)

    def test_ipLiteralNeedsIPName(self) -> None:
        """
        An IP literal must be among the certificate's IP addresses: the same
        text as a DNS name does not count. No SNI is sent for it.
        """
        server, client = self.handshake("am-ip", b"127.0.0.1")
        self.assertEqual(server.received, b"")
        self.assertIsInstance(client.reason.value, ControllerNameMismatch)

    def test_onlyConfiguredCA(self) -> None:
        """
        The policy needs a CA, and its key must be its certificate's.
        """
        node = _identity("node")
        with self.assertRaises(ValueError):
            ControllerTLSPolicy.fromPEM(b"", node.certPEM, node.keyPEM)
        with self.assertRaises(SSL.Error):
            ControllerTLSPolicy.fromPEM(_identity("ca").certPEM, node.certPEM, _identity("am").keyPEM)


def _certificate(names: list[x509.GeneralName], commonName: str = "ctl.example") -> x509.Certificate:
    key = newKey("ec")
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName)])
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (
        x509.CertificateBuilder().subject_name(subject).issuer_name(subject)
        .public_key(key.public_key()).serial_number(1)
        .not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return builder.sign(key, hashes.SHA256())


class HostnameTests(SynchronousTestCase):
    """
    L{hostnameMatches}: DNS and IP names of subjectAltName only.
    """

    def test_dnsNames(self) -> None:
        """
        DNS names match without regard to case or a final dot; URI names
        are ignored.
        """
        cert = _certificate([
            x509.UniformResourceIdentifier("urn:publicid:IDN+geni:x+authority+am"),
            x509.DNSName("Ctl.Example"),
        ])
        self.assertTrue(hostnameMatches(cert, "ctl.example"))
        self.assertTrue(hostnameMatches(cert, "CTL.example."))
        self.assertFalse(hostnameMatches(cert, "www.ctl.example"))
        self.assertFalse(hostnameMatches(cert, "urn:publicid:IDN+geni:x+authority+am"))
        self.assertFalse(hostnameMatches(cert, ""))

    def test_wildcard(self) -> None:
        """
        C{*} stands for exactly one whole left-most label, and never for
        most of a name.
        """
        cert = _certificate([x509.DNSName("*.marvin.example"), x509.DNSName("*.com")])
        self.assertTrue(hostnameMatches(cert, "ctl.marvin.example"))
        self.assertFalse(hostnameMatches(cert, "a.ctl.marvin.example"))
        self.assertFalse(hostnameMatches(cert, "marvin.example"))
        self.assertFalse(hostnameMatches(cert, "example.com"))

    def test_noCommonNameFallback(self) -> None:
        """
        A certificate without subjectAltName names no host, whatever its
        common name; so does one whose only name is a URI.
        """
        self.assertFalse(hostnameMatches(_certificate([], "ctl.example"), "ctl.example"))
        uriOnly = _certificate([x509.UniformResourceIdentifier("https://ctl.example/")])
        self.assertFalse(hostnameMatches(uriOnly, "ctl.example"))

    def test_addresses(self) -> None:
        """
        IP literals (IPv6 with or without brackets) match IP names only.
        """
        cert = _certificate([
            x509.IPAddress(ipaddress.ip_address("192.0.2.7")),
            x509.IPAddress(ipaddress.ip_address("2001:db8::7")),
            x509.DNSName("192.0.2.8"),
        ])
        self.assertTrue(hostnameMatches(cert, "192.0.2.7"))
        self.assertTrue(hostnameMatches(cert, "[2001:db8::7]"))
        self.assertTrue(hostnameMatches(cert, "2001:DB8:0::7"))
        self.assertFalse(hostnameMatches(cert, "192.0.2.8"))
        self.assertFalse(hostnameMatches(cert, "192.0.2.9"))


class DateTests(SynchronousTestCase):
    """
    L{parseHTTPDate}.
    """

    def test_parse(self) -> None:
        """
        An RFC 7231 date parses to unix seconds; junk to C{None}.
        """
        self.assertEqual(parseHTTPDate(b"Tue, 14 Nov 2023 22:13:20 GMT"), 1700000000)
        self.assertIsNone(parseHTTPDate(b"yesterday"))
        self.assertIsNone(parseHTTPDate(None))
