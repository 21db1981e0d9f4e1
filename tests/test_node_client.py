"""
Tests for L{node.client}: the HTTPS client against the fake controller served
over real TLS on 127.0.0.1 (the only way to see certificates, host names and
timeouts as the agent will).
"""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from twisted.internet import reactor
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from node.client import ControllerUnreachable, HTTPControllerClient, parseHTTPDate
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
