"""
Tests for L{rest_compat.auth}: direct TLS client certificates (a fake
transport and a real in-memory TLS handshake) and TLS-proxy headers from
trusted and untrusted peers; everything doubtful is anonymous.
"""

from __future__ import annotations

import datetime
import hashlib
import json

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from OpenSSL import crypto
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    PrivateCertificate,
    optionsForClientTLS,
    trustRootFromCertificates,
)
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.server import Site

from rest_compat.auth import Authenticator, fingerprintOf, normalise
from rest_compat.testing import FakeTLSTransport, RESTHarness, address, fingerprintFor
from tests.rawhttp import HTTPClient


def _certificate(subject: str, key, issuer=None, issuerKey=None, ca=False, dns=None):
    now = datetime.datetime(2000, 1, 1, tzinfo=datetime.timezone.utc)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer.subject if issuer is not None else name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=365 * 200))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if dns:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.DNSName(dns)]), critical=False)
    return builder.sign(issuerKey if issuerKey is not None else key, hashes.SHA256())


# One CA, one server certificate and two client certificates for the module.
_CA_KEY = ec.generate_private_key(ec.SECP256R1())
_CA = _certificate("test CA", _CA_KEY, ca=True)
_SERVER_KEY = ec.generate_private_key(ec.SECP256R1())
_SERVER = _certificate("controller", _SERVER_KEY, _CA, _CA_KEY, dns="controller.test")
_ALICE_KEY = ec.generate_private_key(ec.SECP256R1())
_ALICE = _certificate("alice", _ALICE_KEY, _CA, _CA_KEY)
_MALLORY_KEY = ec.generate_private_key(ec.SECP256R1())
_MALLORY = _certificate("mallory", _MALLORY_KEY, _CA, _CA_KEY)


ANONYMOUS = {
    "verified": None, "fingerprint": "", "user": None,
    "message": "Please present a valid SSL client certificate to access this information.",
}


def _sha1(certificate) -> str:
    return hashlib.sha1(certificate.public_bytes(Encoding.DER)).hexdigest()


def _pem(thing) -> bytes:
    from cryptography.hazmat.primitives.serialization import NoEncryption, PrivateFormat

    if hasattr(thing, "private_bytes"):
        return thing.private_bytes(Encoding.PEM, PrivateFormat.TraditionalOpenSSL, NoEncryption())
    return thing.public_bytes(Encoding.PEM)


class FingerprintTests(SynchronousTestCase):
    """
    The nginx C{$ssl_client_fingerprint} form.
    """

    def test_pyOpenSSLCertificate(self) -> None:
        """
        A pyOpenSSL X509 gives the SHA-1 of its DER as 40 lowercase hex.
        """
        self.assertEqual(fingerprintOf(crypto.X509.from_cryptography(_ALICE)), _sha1(_ALICE))

    def test_otherForms(self) -> None:
        """
        cryptography and Twisted certificate objects work as well.
        """
        self.assertEqual(fingerprintOf(_ALICE), _sha1(_ALICE))
        self.assertEqual(fingerprintOf(Certificate.loadPEM(_pem(_ALICE))), _sha1(_ALICE))

    def test_unreadable(self) -> None:
        """
        Anything else gives no fingerprint.
        """
        self.assertIsNone(fingerprintOf(None))
        self.assertIsNone(fingerprintOf("a certificate"))
        self.assertIsNone(fingerprintOf(object()))

    def test_normalise(self) -> None:
        """
        Header values are lower-cased and lose colons; malformed ones are refused.
        """
        value = _sha1(_ALICE)
        colons = ":".join(value[i : i + 2] for i in range(0, 40, 2)).upper()
        self.assertEqual(normalise(colons), value)
        self.assertEqual(normalise(f"  {value}  "), value)
        for bad in (None, "", "abc", value + "0", "g" * 40, "*"):
            self.assertIsNone(normalise(bad), bad)


class AuthenticationTests(SynchronousTestCase):
    """
    Both ways in, seen through C{GET /backend/auth} and a protected route.
    """

    def setUp(self) -> None:
        self.h = RESTHarness(trustedProxies=["127.0.0.0/8", "10.1.0.0/16", "fd00::/8", "unix"])
        self.alice = self.h.addUser("alice", fingerprint=_sha1(_ALICE))
        self.fakeCert = crypto.X509.from_cryptography(_ALICE)

    def auth(self, **kwargs):
        return self.h.request("GET", "/v1/backend/auth", **kwargs)

    def test_directTLSCertificate(self) -> None:
        """
        A certificate on our own TLS connection names the user, from any address.
        """
        response = self.auth(transport=FakeTLSTransport(self.fakeCert), client=address("192.0.2.7"))
        self.assertEqual(response.code, 200)
        self.assertEqual(response.json["verified"], "SUCCESS")
        self.assertEqual(response.json["fingerprint"], _sha1(_ALICE))
        self.assertEqual(response.json["user"]["name"], "alice")
        protected = self.h.request(
            "GET", "/v1/resources", transport=FakeTLSTransport(self.fakeCert), client=address("192.0.2.7")
        )
        self.assertEqual(protected.code, 200)

    def test_certificateWinsOverHeaders(self) -> None:
        """
        Headers on a connection with a certificate are ignored, even from a
        trusted address.
        """
        mallory = self.h.addUser("mallory", fingerprint=_sha1(_MALLORY))
        response = self.auth(
            transport=FakeTLSTransport(self.fakeCert),
            headers={"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": mallory.fingerprint},
        )
        self.assertEqual(response.json["user"]["name"], "alice")

    def test_unknownCertificate(self) -> None:
        """
        A certificate that names no user is 401 (the body still says what was seen).
        """
        response = self.auth(transport=FakeTLSTransport(crypto.X509.from_cryptography(_MALLORY)))
        self.assertEqual(response.code, 401)
        self.assertEqual(response.json, dict(ANONYMOUS, verified="SUCCESS", fingerprint=_sha1(_MALLORY)))

    def test_certificateBehindWrappers(self) -> None:
        """
        Behind protocol wrappers (the per-peer connection limit) the
        certificate of the connection is still found; a wrapper over a plain
        connection has none, and the proxy headers decide.
        """
        tls = _wrapped(FakeTLSTransport(self.fakeCert), 2)
        response = self.auth(transport=tls, headers={"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": "f" * 40})
        self.assertEqual(response.json["user"]["name"], "alice")
        plain = _wrapped(StringTransport(), 1)
        headers = {"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": self.alice.fingerprint}
        response = self.auth(transport=plain, headers=headers, client=address("127.0.0.1"))
        self.assertEqual(response.json["user"]["id"], self.alice.id)

    def test_brokenTransportFailsClosed(self) -> None:
        """
        A transport whose C{getPeerCertificate} fails or returns junk means
        no certificate.
        """

        class Broken:
            def getPeerCertificate(self):
                raise ValueError("no TLS")

        for transport in (Broken(), FakeTLSTransport(None), FakeTLSTransport(b"junk")):
            response = self.auth(transport=transport, client=address("192.0.2.7"))
            self.assertEqual(response.code, 401)
            self.assertEqual(response.json["fingerprint"], "")

    def test_trustedProxy(self) -> None:
        """
        C{VERIFIED: SUCCESS} and C{SSL_FINGERPRINT} from a trusted proxy name
        the user, from IPv4, IPv6, v4-mapped IPv6 and UNIX-socket peers.
        """
        headers = {"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": self.alice.fingerprint}
        for peer in ("127.0.0.1", "10.1.200.3", "fd00::5", "::ffff:10.1.0.9", "unix"):
            response = self.auth(headers=headers, client=address(peer))
            self.assertEqual(response.code, 200, peer)
            self.assertEqual(response.json["user"]["id"], self.alice.id, peer)

    def test_untrustedPeerHeadersIgnored(self) -> None:
        """
        The same headers from anywhere else are ignored (legacy: believed).
        """
        headers = {"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": self.alice.fingerprint}
        for peer in ("10.2.0.1", "192.0.2.1", "2001:db8::1", "::ffff:192.0.2.1"):
            response = self.auth(headers=headers, client=address(peer))
            self.assertEqual(response.code, 401, peer)
            self.assertEqual(response.json, dict(ANONYMOUS))
            self.assertEqual(self.h.request("GET", "/v1/resources", headers=headers, client=address(peer)).code, 401)

    def test_unixPeerNeedsTrust(self) -> None:
        """
        UNIX-socket peers are trusted only when configured.
        """
        h = RESTHarness(trustedProxies=["127.0.0.1/32"])
        alice = h.addUser("alice")
        response = h.request("GET", "/v1/resources", alice, client=address("unix"))
        self.assertEqual(response.code, 401)

    def test_verifiedOtherThanSuccess(self) -> None:
        """
        C{VERIFIED} values other than C{SUCCESS} mean anonymous (legacy never looked).
        """
        for verified in ("NONE", "FAILED:certificate has expired", "success", ""):
            response = self.auth(headers={"VERIFIED": verified, "SSL_FINGERPRINT": self.alice.fingerprint})
            self.assertEqual(response.code, 401, verified)
            self.assertIsNone(response.json["user"])
            self.assertEqual(response.json["verified"], verified)

    def test_missingOrBadFingerprint(self) -> None:
        """
        No, empty or malformed fingerprints are anonymous (legacy: the first
        user, normally the admin).
        """
        self.h.addUser("root", "admin")
        for headers in (
            {"VERIFIED": "SUCCESS"},
            {"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": ""},
            {"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": "%"},
            {"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": "' OR 1=1 --"},
            {"SSL_FINGERPRINT": self.alice.fingerprint},
            {},
        ):
            response = self.auth(headers=headers)
            self.assertEqual(response.code, 401, headers)
            self.assertIsNone(response.json["user"])
            self.assertEqual(self.h.request("DELETE", "/v1/users/1", headers=headers).code, 401)

    def test_duplicateHeadersRefused(self) -> None:
        """
        A second C{SSL_FINGERPRINT} (the client's own next to the proxy's)
        makes the request anonymous.
        """
        from rest_compat.testing import FakeRequest
        from twisted.web.resource import getChildForRequest

        request = FakeRequest(b"GET", b"/v1/backend/auth", b"", IPv4Address("TCP", "127.0.0.1", 1), None)
        request.requestHeaders.setRawHeaders(b"VERIFIED", [b"SUCCESS"])
        request.requestHeaders.setRawHeaders(
            b"SSL_FINGERPRINT", [self.alice.fingerprint.encode(), fingerprintFor("x").encode()]
        )
        request.render(getChildForRequest(self.h.root, request))
        self.assertEqual(request.responseCode, 401)

    def test_headerNamesConfigurable(self) -> None:
        """
        The proxy header names come from the configuration.
        """
        h = RESTHarness()
        h.authenticator.__init__(["127.0.0.1/32"], "X-Client-Verify", "X-Client-Fingerprint")
        alice = h.addUser("alice")
        ok = h.request(
            "GET", "/v1/backend/auth",
            headers={"X-Client-Verify": "SUCCESS", "X-Client-Fingerprint": alice.fingerprint},
        )
        self.assertEqual(ok.code, 200)
        legacy = h.request("GET", "/v1/backend/auth", alice)
        self.assertEqual(legacy.code, 401)

    def test_invalidatedUserIsAnonymous(self) -> None:
        """
        An invalidated user's certificate is refused everywhere, reads included.
        """
        admin = self.h.addUser("root", "admin")
        self.assertEqual(self.h.request("DELETE", f"/v1/users/{self.alice.id}", admin).code, 200)
        response = self.auth(transport=FakeTLSTransport(self.fakeCert))
        self.assertEqual(response.code, 401)
        self.assertIsNone(response.json["user"])
        for path in ("/v1/resources", "/v1/experiments", "/v1/schedules", f"/v1/users/{self.alice.id}"):
            self.assertEqual(self.h.request("GET", path, self.alice).code, 401, path)

    def test_badNetworkConfiguration(self) -> None:
        """
        A trusted proxy entry that is not a network is a configuration error.
        """
        self.assertRaises(ValueError, Authenticator, ["localhost"])

    def test_untrustedPeerIsLogged(self) -> None:
        """
        Proxy headers from an untrusted peer are logged as a warning.
        """
        from twisted.logger import Logger

        events: list[dict] = []
        self.h.authenticator.log = Logger(observer=events.append)
        self.auth(headers={"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": self.alice.fingerprint}, client=address("192.0.2.1"))
        self.assertEqual(len(events), 1)
        self.assertIn("192.0.2.1", events[0]["peer"])


class RealTLSTests(SynchronousTestCase):
    """
    A real TLS handshake with a client certificate, in memory.
    """

    def exchange(self, clientCertificate, request: bytes) -> bytes:
        h = RESTHarness(trustedProxies=[])
        self.alice = h.addUser("alice", fingerprint=_sha1(_ALICE))
        ca = Certificate.loadPEM(_pem(_CA))
        serverOptions = CertificateOptions(
            privateKey=crypto.PKey.from_cryptography_key(_SERVER_KEY),
            certificate=crypto.X509.from_cryptography(_SERVER),
            trustRoot=trustRootFromCertificates([ca]),
        )
        clock = Clock()
        site = Site(h.root, reactor=clock)
        serverFactory = TLSMemoryBIOFactory(serverOptions, False, site, clock=clock)
        clientOptions = optionsForClientTLS("controller.test", trustRoot=ca, clientCertificate=clientCertificate)
        client = HTTPClient(request)
        clientFactory = TLSMemoryBIOFactory(clientOptions, True, Factory.forProtocol(lambda: client), clock=clock)
        serverProtocol, clientProtocol, pump = connectedServerAndClient(
            lambda: serverFactory.buildProtocol(IPv4Address("TCP", "192.0.2.9", 5555)),
            lambda: clientFactory.buildProtocol(IPv4Address("TCP", "10.0.0.1", 443)),
            clock=clock,
        )
        pump.flush()
        return client.received

    def test_clientCertificateNamesTheUser(self) -> None:
        """
        The certificate presented in the handshake is the caller's identity;
        headers sent over that connection change nothing.
        """
        alice = PrivateCertificate.loadPEM(_pem(_ALICE) + _pem(_ALICE_KEY))
        received = self.exchange(
            alice,
            b"GET /v1/backend/auth HTTP/1.1\r\nHost: controller.test\r\nConnection: close\r\n"
            b"VERIFIED: SUCCESS\r\nSSL_FINGERPRINT: " + fingerprintFor("x").encode() + b"\r\n\r\n",
        )
        head, _, body = received.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 "), head)
        payload = json.loads(body)
        self.assertEqual(payload["fingerprint"], _sha1(_ALICE))
        self.assertEqual(payload["user"]["id"], self.alice.id)
        self.assertEqual(payload["verified"], "SUCCESS")

    def test_unknownCertificate(self) -> None:
        """
        A valid certificate of nobody we know is 401 on protected routes.
        """
        mallory = PrivateCertificate.loadPEM(_pem(_MALLORY) + _pem(_MALLORY_KEY))
        received = self.exchange(
            mallory, b"GET /v1/resources HTTP/1.1\r\nHost: controller.test\r\nConnection: close\r\n\r\n"
        )
        self.assertTrue(received.startswith(b"HTTP/1.1 401 "), received[:40])


def _wrapped(transport: object, levels: int) -> object:
    """
    C{transport} under C{levels} protocol wrappers, as the listener's
    connection limit puts it.
    """
    for _ in range(levels):
        wrapper = ProtocolWrapper(WrappingFactory(Factory.forProtocol(Protocol)), Protocol())
        wrapper.makeConnection(transport)
        transport = wrapper
    return transport
