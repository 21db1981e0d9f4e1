"""
Tests for L{am.trust.tls}: real TLS handshakes, in memory, between clients
holding various certificates and a web server built with
L{serverTLSOptions}, whose resource names the caller with
L{callerFromRequest}.
"""

from __future__ import annotations

import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from OpenSSL import crypto
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import Certificate, CertificateOptions
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource
from twisted.web.server import Site
from twisted.web.test.requesthelper import DummyRequest

from am.devtools.pki import Identity, certify
from am.trust.errors import FORBIDDEN, TrustError
from am.trust.tls import callerFromRequest, serverTLSOptions
from tests.trust_helpers import clocked, pki


class WhoAmI(Resource):
    """
    Answers with the caller's URN, or the refusal.
    """

    isLeaf = True

    def __init__(self) -> None:
        super().__init__()
        self.calls = 0

    def render_GET(self, request: object) -> bytes:
        self.calls += 1
        try:
            return callerFromRequest(request).urn.encode()
        except TrustError as e:
            return f"refused {e.geniCode}: {e.message}".encode()


class Client(Protocol):
    """
    Sends one GET once connected and collects the answer.
    """

    def __init__(self) -> None:
        self.received = b""
        self.lost: Failure | None = None
        self.cipher: str | None = None

    def connectionMade(self) -> None:
        self.transport.write(b"GET / HTTP/1.1\r\nHost: am.example.org\r\nConnection: close\r\n\r\n")  # type: ignore[union-attr]

    def dataReceived(self, data: bytes) -> None:
        self.received += data
        self.cipher = self.transport.getHandle().get_cipher_name()  # type: ignore[union-attr]

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        self.lost = reason


def clientOptions(identity: Identity | None) -> CertificateOptions:
    """
    Client TLS options trusting our CA for the server, presenting
    C{identity}'s certificate and chain (or none).
    """
    ca = crypto.X509.from_cryptography(pki().ca.certificate)
    if identity is None:
        return CertificateOptions(trustRoot=Certificate(ca))
    return CertificateOptions(
        privateKey=identity.key,  # type: ignore[arg-type]
        certificate=identity.certificate,  # type: ignore[arg-type]
        extraCertChain=list(identity.issuers) or None,  # type: ignore[arg-type]
        trustRoot=Certificate(ca),
    )


class HandshakeTests(SynchronousTestCase):
    """
    The GENI listener requires a client certificate chained to our roots.
    """

    def setUp(self) -> None:
        self.p = pki()
        self.clock = clocked()
        self.resource = WhoAmI()
        self.serverOptions = serverTLSOptions(self.p.am.chainPEM, self.p.am.keyPEM, self.p.ca.certPEM)

    def connect(self, identity: Identity | None, options: CertificateOptions | None = None) -> Client:
        site = Site(self.resource, reactor=self.clock)
        server = TLSMemoryBIOFactory(self.serverOptions, False, site, clock=self.clock)
        client = Client()
        clientFactory = TLSMemoryBIOFactory(
            options or clientOptions(identity), True, Factory.forProtocol(lambda: client), clock=self.clock
        )
        _, _, pump = connectedServerAndClient(
            lambda: server.buildProtocol(None),
            lambda: clientFactory.buildProtocol(None),
            clock=self.clock,
        )
        pump.flush()
        return client

    def assertRejected(self, client: Client, alert: str) -> None:
        self.assertEqual(client.received, b"")
        self.assertEqual(self.resource.calls, 0)
        assert client.lost is not None
        self.assertIn(alert, str(client.lost.value))

    def test_valid(self) -> None:
        """
        A user certificate issued by the trusted CA gets through, and the
        handler reads the caller's URN from it.
        """
        client = self.connect(self.p.alice)
        self.assertIn(b"200 OK", client.received)
        self.assertTrue(client.received.endswith(self.p.alice.urn.encode()))

    def test_cheaperSuiteFirst(self) -> None:
        """
        TLS 1.3: the server's order picks AES-128-GCM/SHA-256 (the cheaper key
        schedule per full handshake) over the AES-256 suite a client lists
        first; a client offering only AES-256 still gets through.
        """
        client = self.connect(self.p.alice)
        self.assertIn(b"200 OK", client.received)
        self.assertEqual(client.cipher, "TLS_AES_128_GCM_SHA256")
        options = clientOptions(self.p.alice)
        options.getContext().set_tls13_ciphersuites(b"TLS_AES_256_GCM_SHA384")
        client = self.connect(self.p.alice, options)
        self.assertIn(b"200 OK", client.received)
        self.assertEqual(client.cipher, "TLS_AES_256_GCM_SHA384")

    def test_validWithIntermediate(self) -> None:
        """
        A user of an intermediate authority gets through when the client
        sends the intermediate.
        """
        client = self.connect(self.p.carol)
        self.assertTrue(client.received.endswith(self.p.carol.urn.encode()))

    def test_noCertificate(self) -> None:
        """
        A client without a certificate gets no HTTP response at all.
        """
        self.assertRejected(self.connect(None), "certificate required")

    def test_otherCA(self) -> None:
        """
        A certificate from another CA is refused in the handshake, even if
        the system CA store (via C{SSL_CERT_FILE}) trusts that CA.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(self.p.evil.certPEM)
        self.patch(os, "environ", {**os.environ, "SSL_CERT_FILE": path})
        self.serverOptions = serverTLSOptions(self.p.am.chainPEM, self.p.am.keyPEM, self.p.ca.certPEM)
        self.assertRejected(self.connect(self.p.mallory), "unknown ca")

    def test_impostor(self) -> None:
        """
        A self-signed certificate claiming our CA's name is refused.
        """
        self.assertRejected(self.connect(self.p.impostor), "unknown ca")

    def test_noURN(self) -> None:
        """
        A certificate that chains but carries no GENI URN passes TLS and is
        then refused by L{callerFromRequest} with a clear message.
        """
        p = self.p
        good = certify(p.ca, p.bob.key, "urn:publicid:IDN+geni:marvin+user+nourn", "nourn")
        builder = (
            x509.CertificateBuilder()
            .subject_name(good.certificate.subject)
            .issuer_name(p.ca.certificate.subject)
            .public_key(p.bob.key.public_key())
            .serial_number(7)
            .not_valid_before(good.certificate.not_valid_before_utc)
            .not_valid_after(good.certificate.not_valid_after_utc)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        )
        bare = builder.sign(p.ca.key, hashes.SHA256())  # type: ignore[arg-type]
        client = self.connect(Identity(good.urn, bare, p.bob.key))
        self.assertIn(b"refused 3: certificate has no GENI URN", client.received)


class ServerOptionsTests(SynchronousTestCase):
    """
    L{serverTLSOptions} accepts roots in several forms and refuses
    inconsistent input.
    """

    def test_rootForms(self) -> None:
        """
        Roots may be one PEM blob with several certificates, a list of
        blobs, or cryptography certificates.
        """
        p = pki()
        for roots in (p.ca.certPEM + p.sub.certPEM, [p.ca.certPEM, p.sub.certPEM.decode()], [p.ca.certificate]):
            options = serverTLSOptions(p.am.certPEM, p.am.keyPEM.decode(), roots)
            self.assertTrue(options.getContext())

    def test_mismatchedKey(self) -> None:
        """
        A key that does not belong to the certificate is refused up front.
        """
        p = pki()
        self.assertRaises(ValueError, serverTLSOptions, p.am.certPEM, p.bob.keyPEM, p.ca.certPEM)

    def test_noRoots(self) -> None:
        """
        A listener that trusts nobody is a configuration error.
        """
        p = pki()
        self.assertRaises(ValueError, serverTLSOptions, p.am.certPEM, p.am.keyPEM, [])
        self.assertRaises(ValueError, serverTLSOptions, p.am.certPEM, p.am.keyPEM, b"")


class CallerFromRequestTests(SynchronousTestCase):
    """
    L{callerFromRequest} fails closed.
    """

    def assertRefused(self, request: object, fragment: str) -> None:
        e = self.assertRaises(TrustError, callerFromRequest, request)
        self.assertEqual((e.geniCode, fragment in e.message), (FORBIDDEN, True), e.message)

    def test_plainTransport(self) -> None:
        """
        A request over a transport without TLS (no C{getPeerCertificate},
        as with a plain listener or HTTP/2) is refused.
        """
        self.assertRefused(DummyRequest([b""]), "no TLS client certificate")

    def test_noPeer(self) -> None:
        """
        A TLS transport with no peer certificate, or one that fails to say,
        is refused.
        """

        class Transport:
            def __init__(self, result: object) -> None:
                self.result = result

            def getPeerCertificate(self) -> object:
                if isinstance(self.result, Exception):
                    raise self.result
                return self.result

        for result in (None, RuntimeError("gone")):
            request = DummyRequest([b""])
            request.transport = Transport(result)  # type: ignore[assignment]
            self.assertRefused(request, "no TLS client certificate")
        request = DummyRequest([b""])
        request.transport = Transport(crypto.X509.from_cryptography(pki().alice.certificate))  # type: ignore[assignment]
        caller = callerFromRequest(request)
        self.assertEqual((caller.urn, caller.certificate), (pki().alice.urn, pki().alice.certificate))


class ResumptionTests(SynchronousTestCase):
    """
    A client coming back with its session ticket resumes without a full
    handshake, and the server still knows its verified certificate.
    """

    def setUp(self) -> None:
        import ssl
        import tempfile

        p = pki()
        directory = tempfile.mkdtemp()
        self.addCleanup(__import__("shutil").rmtree, directory)
        p.alice.save(directory, "alice")
        self.clientContext = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        self.clientContext.check_hostname = False
        self.clientContext.verify_mode = ssl.CERT_NONE
        self.clientContext.load_cert_chain(os.path.join(directory, "alice-cert.pem"),
                                           os.path.join(directory, "alice-key.pem"))

    def handshake(self, context: object, session: object = None):
        import ssl

        from OpenSSL import SSL

        server = SSL.Connection(context, None)  # type: ignore[arg-type]
        server.set_accept_state()
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = self.clientContext.wrap_bio(incoming, outgoing, session=session)  # type: ignore[arg-type]
        for _ in range(10):
            try:
                client.do_handshake()
                client.read(1)
            except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                pass
            server.bio_write(outgoing.read()) if outgoing.pending else None
            try:
                server.do_handshake()
                server.recv(1)
            except (SSL.WantReadError, SSL.ZeroReturnError):
                pass
            try:
                incoming.write(server.bio_read(1 << 20))
            except SSL.WantReadError:
                pass
        return client, server

    def test_resumedSessionKeepsTheCaller(self) -> None:
        p = pki()
        context = serverTLSOptions(p.am.chainPEM, p.am.keyPEM, p.ca.certPEM).getContext()
        client, server = self.handshake(context)
        self.assertFalse(client.session_reused)
        again, server2 = self.handshake(context, client.session)
        self.assertTrue(again.session_reused)
        peer = server2.get_peer_certificate()
        assert peer is not None
        self.assertEqual(peer.to_cryptography(), p.alice.certificate)

    def test_otherServerDoesNotResume(self) -> None:
        """
        A ticket is only good at the server (process) that issued it.
        """
        p = pki()
        first = serverTLSOptions(p.am.chainPEM, p.am.keyPEM, p.ca.certPEM).getContext()
        other = serverTLSOptions(p.am.chainPEM, p.am.keyPEM, p.ca.certPEM).getContext()
        client, _ = self.handshake(first)
        again, server = self.handshake(other, client.session)
        self.assertFalse(again.session_reused)
        self.assertIsNotNone(server.get_peer_certificate())
