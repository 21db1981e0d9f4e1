"""
The GENI face mounted on the controller: configuration, the shared TLS
listener accepting GENI clearinghouse certificates, and both XML-RPC paths.
"""

from __future__ import annotations

import os
import xmlrpc.client

import pytest
from OpenSSL import crypto
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory
from twisted.internet.ssl import Certificate, CertificateOptions
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from am.ctl import service as ctl
from am.ctl.config import ConfigError
from tests import trust_helpers
from tests.test_ctl_service import ClientProtocol, makeConfig, memoryController, pki


def geniSection(tmp: str) -> dict:
    root = os.path.join(tmp, "geni-root.pem")
    with open(root, "wb") as f:
        f.write(trust_helpers.pki().ca.certPEM)
    return {"authority": "marvin.test", "trust_roots": [root]}


class FaceTests(SynchronousTestCase):
    """
    A controller whose GENI roots are another CA than its REST clients'.
    """

    def setUp(self) -> None:
        tmp = os.path.abspath(self.mktemp())
        os.makedirs(tmp)
        self.config = makeConfig(tmp, geni=geniSection(tmp), public_url="https://am.example.org:8443/")
        self.controller, self.clock = memoryController(self.config)
        self.clock.advance(trust_helpers.NOW - self.clock.seconds())  # credentials are issued now
        self.controller.startService()
        self.successResultOf(self.controller.ready)
        self.addCleanup(self.controller.stopService)
        self.serverOptions = ctl.tlsOptions(self.config.tls, self.config.geni.trustRoots)

    def call(self, identity, path: bytes, method: str, *params, chunked: bool = False) -> bytes:
        with open(pki().certificate("ca"), "rb") as f:
            ca = Certificate.loadPEM(f.read())
        options = CertificateOptions(
            trustRoot=ca,
            privateKey=crypto.PKey.from_cryptography_key(identity.key),
            certificate=crypto.X509.from_cryptography(identity.certificate),
        )
        body = xmlrpc.client.dumps(params, method).encode()
        if chunked:
            pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)]
            framed = b"".join(b"%x\r\n" % len(p) + p + b"\r\n" for p in pieces) + b"0\r\n\r\n"
            raw = (b"POST " + path + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                   b"Transfer-Encoding: chunked\r\n\r\n" + framed)
        else:
            raw = (b"POST " + path + b" HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n"
                   b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
        client = ClientProtocol(raw)
        clock = Clock()
        server = TLSMemoryBIOFactory(self.serverOptions, False, self.controller.site, clock=clock)
        clientFactory = TLSMemoryBIOFactory(options, True, Factory.forProtocol(lambda: client), clock=clock)
        _, _, pump = connectedServerAndClient(
            lambda: server.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000)),
            lambda: clientFactory.buildProtocol(None), clock=clock)
        pump.flush()
        for _ in range(20):
            pump.pump()
        return client.data

    def test_getVersionBothPaths(self) -> None:
        """
        A GENI user certificate gets through the shared listener; both paths answer.
        """
        alice = trust_helpers.pki().alice
        for path in (b"/xmlrpc/am/3.0", b"/xmlrpc/am"):
            raw = self.call(alice, path, "GetVersion", {})
            (answer,), _ = xmlrpc.client.loads(raw.partition(b"\r\n\r\n")[2])
            self.assertEqual(answer["code"]["geni_code"], 0)
            self.assertEqual(answer["value"]["geni_api_versions"]["3"], "https://am.example.org:8443/xmlrpc/am/3.0")
            self.assertEqual(answer["value"]["urn"], "urn:publicid:IDN+marvin.test+authority+am")

    def test_listResourcesWithGeniCredential(self) -> None:
        """
        Credentials chained to the GENI root are honoured by the mounted face.
        """
        p = trust_helpers.pki()
        credential = trust_helpers.sfa(trust_helpers.userCredential())
        raw = self.call(p.alice, b"/xmlrpc/am/3.0", "ListResources", [credential],
                        {"geni_rspec_version": {"type": "GENI", "version": "3"}})
        (answer,), _ = xmlrpc.client.loads(raw.partition(b"\r\n\r\n")[2])
        self.assertEqual(answer["code"]["geni_code"], 0, answer["output"])
        self.assertIn("urn:publicid:IDN+marvin.test+node+1", answer["value"])

    def test_hugeBodyIsTooBig(self) -> None:
        """
        A call past the site's body limit, announced or chunked, is never
        stored whole and answers TOOBIG.
        """
        self.controller.stopService()
        tmp = os.path.abspath(self.mktemp())
        os.makedirs(tmp)
        config = makeConfig(tmp, geni=dict(geniSection(tmp), max_request=2048 * 1024))
        self.controller, self.clock = memoryController(config)
        self.controller.startService()
        self.serverOptions = ctl.tlsOptions(config.tls, config.geni.trustRoots)
        for chunked in (False, True):
            raw = self.call(trust_helpers.pki().alice, b"/xmlrpc/am/3.0", "GetVersion", {"x": "y" * (3 * 1024 * 1024)},
                            chunked=chunked)
            (answer,), _ = xmlrpc.client.loads(raw.partition(b"\r\n\r\n")[2])
            self.assertEqual(answer["code"]["geni_code"], 6, chunked)
            self.assertIn(str(2048 * 1024), answer["output"])
        self.controller.stopService()

    def test_wildcardGetVersionOverTheWire(self) -> None:
        """
        With a wildcard listener and no public_url, GetVersion over TLS names
        this machine, never localhost.
        """
        from am.ctl import config as configModule

        self.controller.stopService()
        tmp = os.path.abspath(self.mktemp())
        os.makedirs(tmp)
        self.patch(configModule, "_fqdn", lambda: "am.example.org")
        listen = {"tls": {"address": "0.0.0.0", "port": 8443, "certificate": pki().certificate("server"),
                          "key": pki().key("server"), "client_ca": [pki().certificate("ca")]}}
        config = makeConfig(tmp, geni=geniSection(tmp), listen=listen)
        self.controller, self.clock = memoryController(config)
        self.controller.startService()
        self.serverOptions = ctl.tlsOptions(config.tls, config.geni.trustRoots)
        raw = self.call(trust_helpers.pki().alice, b"/xmlrpc/am", "GetVersion", {})
        (answer,), _ = xmlrpc.client.loads(raw.partition(b"\r\n\r\n")[2])
        self.assertEqual(answer["value"]["geni_api_versions"], {"3": "https://am.example.org:8443/xmlrpc/am/3.0"})
        self.assertNotIn(b"localhost", raw)
        self.controller.stopService()

    def test_restClientsUnaffected(self) -> None:
        """
        The REST face still answers its own clients on the same listener.
        """
        raw = self.call(_identity("user"), b"/v1/backend/auth", "x")
        self.assertIn(b"405", raw.split(b"\r\n")[0])  # POST is not a method of /backend/auth


def _identity(who: str):
    from am.devtools.pki import loadIdentity

    return loadIdentity(os.path.dirname(pki().certificate("ca")), {"user": "user-demo"}[who])


@pytest.mark.parametrize(
    "section,message",
    [
        ({"authority": "marvin.test"}, "geni.trust_roots"),
        ({"trust_roots": ["x.pem"]}, "geni.authority"),
        ({"authority": "bad authority", "trust_roots": ["x.pem"]}, "not a URN authority"),
        ({"authority": "a", "trust_roots": ["/nonexistent/x.pem"]}, "does not exist"),
        ({"authority": "a", "trust_roots": ["x.pem"], "bogus": 1}, "bogus"),
    ],
)
def test_badGeniConfig(tmp_path, section: dict, message: str) -> None:
    """
    Each GENI configuration error names its key.
    """
    (tmp_path / "x.pem").write_bytes(trust_helpers.pki().ca.certPEM)
    with pytest.raises(ConfigError, match=message):
        makeConfig(str(tmp_path), geni=section)


def test_geniBehindProxy(tmp_path) -> None:
    """
    With only the plain listener, the GENI face is there for a TLS proxy
    that passes the client certificate in the configured header.
    """
    config = makeConfig(
        str(tmp_path), geni=geniSection(str(tmp_path)), listen={"http": {"port": 9098}},
        headers={"client_certificate": "X-Client-Cert"},
    )
    assert config.geni is not None and config.certificateHeader == "X-Client-Cert"


def _wildcard(tmp: str, monkeypatch, name: str):
    from am.ctl import config as configModule

    monkeypatch.setattr(configModule, "_fqdn", lambda: name)
    listen = {"tls": {"address": "0.0.0.0", "port": 8443, "certificate": pki().certificate("server"),
                      "key": pki().key("server"), "client_ca": [pki().certificate("ca")]}}
    return makeConfig(tmp, geni=geniSection(tmp), listen=listen)


def test_wildcardWithoutNameRefusesToStart(tmp_path, monkeypatch) -> None:
    """
    A wildcard listener, no public_url and a machine called localhost: GetVersion
    would send jFed to localhost, so the configuration is refused in one line.
    """
    for name in ("localhost", "localhost.localdomain", ""):
        with pytest.raises(ConfigError, match="set public_url") as info:
            _wildcard(str(tmp_path), monkeypatch, name)
        assert "\n" not in str(info.value)


def test_wildcardAdvertisesMachineName(tmp_path, monkeypatch) -> None:
    """
    Otherwise the machine's fully qualified name is advertised, over the wire,
    and the log says where it came from.
    """
    from twisted.logger import globalLogPublisher

    config = _wildcard(str(tmp_path), monkeypatch, "am.example.org")
    assert config.publicURL == "https://am.example.org:8443/" and config.publicURLDerived
    events: list = []
    globalLogPublisher.addObserver(events.append)
    try:
        controller, clock = memoryController(config)
        controller.startService()
    finally:
        globalLogPublisher.removeObserver(events.append)
    try:
        value = controller.aggregateManager.settings.publicURL
        assert value == "https://am.example.org:8443/xmlrpc/am/3.0"
        said = [e for e in events if e.get("url") == value]
        assert said and "public_url" in said[0]["log_format"]
    finally:
        controller.stopService()


def test_demoOmniConfigCarriesAKey(tmp_path) -> None:
    """
    The demo's omni_config names a real SSH public key (so omni's provision
    sends geni_users and prints no ERROR line), made once and reused.
    """
    import configparser

    from cryptography.hazmat.primitives.serialization import load_ssh_public_key

    from am.devtools.demopki import ensureDemoPKI, prepareGeniDemo

    pkiDirectory = str(tmp_path / "pki")
    ensureDemoPKI(pkiDirectory)
    paths = prepareGeniDemo(pkiDirectory, str(tmp_path / "geni"))
    parser = configparser.ConfigParser()
    parser.read(paths["omni_config"])
    keyPath = parser["demo"]["keys"]
    with open(keyPath, "rb") as f:
        text = f.read()
    load_ssh_public_key(text.split(b" marvin-demo")[0])
    assert os.stat(keyPath.removesuffix(".pub")).st_mode & 0o777 == 0o600
    again = prepareGeniDemo(pkiDirectory, str(tmp_path / "geni"))
    with open(again["omni_config"]) as f:
        assert keyPath in f.read()
    with open(keyPath, "rb") as f:
        assert f.read() == text
