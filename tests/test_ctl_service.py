"""
The controller service: the twistd plugin, start-up and shut-down on a
MemoryReactorClock, bootstrap users, the background loops, and the TLS
listener's client-certificate rule in real in-memory handshakes.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import tempfile

import yaml
from OpenSSL import SSL
from twisted.application.internet import StreamServerEndpointService, TimerService
from twisted.application.service import IServiceMaker
from twisted.internet import reactor
from twisted.internet.address import IPv4Address
from twisted.internet.defer import succeed
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.internet.ssl import Certificate, CertificateOptions, PrivateCertificate
from twisted.internet.testing import MemoryReactorClock
from twisted.plugin import IPlugin, getPlugins
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import FakeTransport, connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase, TestCase
from zope.interface.verify import verifyObject

from am.ctl import service as ctl
from am.ctl.config import BootstrapUser, parseConfig
from am.devtools.demopki import DEMO_NODES, ensureDemoPKI
from am.testing import MemoryStore

_PKI = {}


def pki():
    """
    The demo PKI and a second, unrelated CA with a user: made once per module.
    """
    if not _PKI:
        from am.devtools.authority import makeCA, makeUser

        directory = tempfile.mkdtemp(prefix="marvin-ctl-pki-")
        _PKI["pki"] = ensureDemoPKI(directory)
        other = makeCA(None, "elsewhere")
        _PKI["stranger"] = makeUser(None, other, "mallory")
        _PKI["dir"] = directory
    return _PKI["pki"]


def teardown_module(module):
    if "dir" in _PKI:
        shutil.rmtree(_PKI["dir"], ignore_errors=True)
    _PKI.clear()  # other modules reuse pki(): it makes a fresh one


def makeConfig(tmp, **overrides):
    p = pki()
    inventory = os.path.join(tmp, "inventory.yaml")
    with open(inventory, "w") as f:
        yaml.safe_dump({"nodes": DEMO_NODES}, f)
    document = {
        "database": ":memory:",
        "listen": {
            "tls": {
                "address": "127.0.0.1", "port": 8443, "certificate": p.certificate("server"),
                "key": p.key("server"), "client_ca": [p.certificate("ca")],
            },
            "http": {"port": 9098},
        },
        "admins": [{"name": "Operator", "fingerprint": p.fingerprints["admin"]}],
        "inventory": {"file": inventory, "period": 600},
        "housekeeping": {"expiry_period": 30},
        "scheduling": {"require_heartbeat": False, "maintenance_windows": []},
    }
    document.update(overrides)
    return parseConfig(document, tmp)


def memoryController(config, **kwargs):
    clock = MemoryReactorClock()
    clock.advance(1_000_000_000)
    controller = ctl.Controller(config, clock, storeFactory=lambda path, r: MemoryStore(), **kwargs)
    return controller, clock


def users(controller):
    return controller.store.run(lambda txn: txn.listUsers())


class PluginTests(SynchronousTestCase):
    def test_found(self):
        makers = [m for m in getPlugins(IServiceMaker) if m.tapname == "marvinctld"]
        self.assertEqual(len(makers), 1)
        maker = makers[0]
        self.assertTrue(verifyObject(IServiceMaker, maker))
        self.assertTrue(IPlugin.providedBy(maker))
        self.assertIs(maker.options, ctl.Options)
        self.assertIs(maker.makeService, ctl.makeService)

    def test_makeService(self):
        tmp = self.mktemp()
        os.makedirs(tmp)
        path = os.path.join(tmp, "marvinctld.conf")
        with open(path, "w") as f:
            yaml.safe_dump({"database": "m.db", "listen": {"http": {"port": 0}}}, f)
        options = ctl.Options()
        options.parseOptions(["--config", path])
        clock = MemoryReactorClock()
        service = ctl.makeService(options, clock)
        self.assertIsInstance(service, ctl.Controller)
        self.assertEqual(service.config.database, os.path.join(os.path.abspath(tmp), "m.db"))
        self.assertIs(service.reactor, clock)

    def test_makeServiceBadConfig(self):
        tmp = self.mktemp()
        os.makedirs(tmp)
        path = os.path.join(tmp, "bad.conf")
        with open(path, "w") as f:
            f.write("database: m.db\n")
        options = ctl.Options()
        options.parseOptions(["--config", path])
        with self.assertRaises(SystemExit) as info:
            ctl.makeService(options, MemoryReactorClock())
        self.assertEqual(str(info.exception.code), f"marvinctld: {path}: listen: configure listen.tls, listen.http or both")


class ControllerTests(SynchronousTestCase):
    def setUp(self):
        self.tmp = os.path.abspath(self.mktemp())
        os.makedirs(self.tmp)

    def test_startsListensAndStops(self):
        controller, clock = memoryController(makeConfig(self.tmp))
        controller.startService()
        ports = self.successResultOf(controller.ready)
        self.assertEqual(len(ports), 2)
        [(port, factory, options, _, interface)] = clock.sslServers
        self.assertEqual((port, interface), (8443, "127.0.0.1"))
        # both listeners serve the site through the per-peer connection cap
        self.assertIs(factory.wrappedFactory, controller.site)
        self.assertTrue(options.requireCertificate and options.verify)
        [(port, plain, _, interface)] = clock.tcpServers
        self.assertEqual((port, interface), (9098, "127.0.0.1"))
        self.assertIs(plain.wrappedFactory, controller.site)
        self.assertEqual(controller.portFor("https"), 8443)
        self.assertEqual(controller.portFor("http"), 9098)
        self.assertFalse(controller.site.displayTracebacks)
        # bootstrap admin and the static inventory are in
        self.assertEqual([(u.name, u.role) for u in users(controller)], [("Operator", "admin")])
        nodes = controller.store.run(lambda txn: txn.listNodes())
        self.assertEqual([n.id for n in nodes], [n["id"] for n in DEMO_NODES])
        store = controller.store
        self.successResultOf(controller.stopService())
        self.assertIsNone(controller.store)
        self.assertEqual(clock.getDelayedCalls(), [])
        with self.assertRaises(Exception):
            store.run(lambda txn: txn.listNodes())

    def test_facesMountBeforeListening(self):
        from twisted.web.resource import Resource

        class Face(Resource):
            isLeaf = True

            def render_GET(self, request):
                return b"geni"

        seen = []

        def geni(controller):
            seen.append((controller.scheduler is not None, controller.ports))
            controller.root.putChild(b"xmlrpc", Face())

        controller, clock = memoryController(makeConfig(self.tmp), faces=[geni])
        controller.startService()
        self.successResultOf(controller.ready)
        self.assertEqual(seen, [(True, [])])
        client = ClientProtocol(_request("/xmlrpc"))
        _, _, pump = connectedServerAndClient(lambda: controller.site.buildProtocol(None), lambda: client)
        pump.flush()
        self.assertTrue(client.data.startswith(b"HTTP/1.1 200 "))
        self.assertTrue(client.data.endswith(b"geni"))
        self.successResultOf(controller.stopService())

    def test_bootstrapOnceAndNeverOverwrite(self):
        config = makeConfig(self.tmp)
        p = pki()
        controller, _ = memoryController(config)
        controller.startService()
        self.successResultOf(controller.ready)
        scheduler = controller.scheduler
        # a second start on the same store creates nothing new
        self.assertEqual(self.successResultOf(ctl.bootstrapUsers(scheduler, config.bootstrap)), [])
        # an existing fingerprint with another role is left alone, and a name
        # clash is skipped, both with a warning
        from twisted.logger import capturedLogs

        with capturedLogs() as events:
            created = self.successResultOf(
                ctl.bootstrapUsers(
                    scheduler,
                    (
                        BootstrapUser(name="Someone", fingerprint=p.fingerprints["admin"], role="user"),
                        BootstrapUser(name="Operator", fingerprint="f" * 40),
                        BootstrapUser(name="Second", fingerprint="e" * 40),
                    ),
                )
            )
        self.assertEqual(created, ["Second"])
        warnings = [e for e in events if e["log_level"].name == "warn"]
        self.assertEqual(len(warnings), 2)
        self.assertEqual([(u.name, u.role) for u in users(controller)], [("Operator", "admin"), ("Second", "admin")])
        self.successResultOf(controller.stopService())

    def test_noPruneWhenKeptForever(self):
        """
        C{notifications.keep: 0} keeps every outbox row: no prune pass at all;
        a short retention prunes more often (a 24th of it, at least a minute).
        """
        controller, _ = memoryController(makeConfig(self.tmp, notifications={"keep": 0}))
        self.assertNotIn("notifications-prune", [s.name for s in controller])
        controller, _ = memoryController(makeConfig(self.tmp, notifications={"keep": 2400}))
        self.assertEqual(controller.getServiceNamed("notifications-prune").step, 100)

    def test_servicesInOrder(self):
        """
        The controller is a L{MultiService} of endpoint services for its
        listeners, a L{TimerService} for expiry and the sweep, the inventory
        service and the notification deliverer;
        nothing binds in C{privilegedStartService}, everything runs once
        started, and stopping stops every child and closes the store.
        """
        controller, clock = memoryController(makeConfig(self.tmp))
        self.assertEqual(
            [s.name for s in controller],
            ["https", "http", "expiry", "sweep", "heal", "inventory", "notifier", "notifications-prune"],
        )
        self.assertEqual(controller.getServiceNamed("notifications-prune").step, 3600)
        self.assertIsInstance(controller.getServiceNamed("https"), StreamServerEndpointService)
        self.assertIsInstance(controller.getServiceNamed("http"), StreamServerEndpointService)
        self.assertIsInstance(controller.getServiceNamed("expiry"), TimerService)
        controller.privilegedStartService()
        self.assertEqual((clock.tcpServers, clock.sslServers), ([], []))
        self.assertFalse(any(s.running for s in controller))
        controller.startService()
        self.successResultOf(controller.ready)
        self.assertTrue(all(s.running for s in controller))
        self.assertEqual(len(clock.sslServers) + len(clock.tcpServers), 2)
        self.successResultOf(controller.stopService())
        self.assertFalse(any(s.running for s in controller))
        self.assertEqual(controller.ports, [])
        self.assertIsNone(controller.store)

    def test_backgroundLoops(self):
        config = makeConfig(self.tmp)
        controller, clock = memoryController(config)
        controller.startService()
        self.successResultOf(controller.ready)
        expired = []
        controller.scheduler.expireAllocations = lambda: (expired.append(clock.seconds()), succeed(0))[1]
        syncs = []
        original = controller.sync.syncNow
        controller.sync.syncNow = lambda: (syncs.append(clock.seconds()), original())[1]
        start = clock.seconds()
        clock.pump([30] * 40)
        self.assertEqual([t - start for t in expired], [30.0 * i for i in range(1, 41)])
        self.assertEqual([t - start for t in syncs], [600.0, 1200.0])
        self.successResultOf(controller.stopService())
        clock.pump([600])
        self.assertEqual(len(syncs), 2)

    def test_expiryFailureKeepsTheLoop(self):
        controller, clock = memoryController(makeConfig(self.tmp))
        controller.startService()
        self.successResultOf(controller.ready)
        calls = []

        def expire():
            calls.append(1)
            from twisted.internet.defer import fail

            return fail(RuntimeError("disk full"))

        controller.scheduler.expireAllocations = expire
        clock.pump([30, 30])
        self.assertEqual(len(calls), 2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.successResultOf(controller.stopService())

    def test_realExpiry(self):
        """
        The loop drives the core's real expiry.
        """
        controller, clock = memoryController(makeConfig(self.tmp))
        controller.startService()
        self.successResultOf(controller.ready)
        from am.core.allocation import AllocationRequest

        user = self.successResultOf(controller.scheduler.addUser(name="geni", role="user", fingerprint="d" * 40))
        allocation = self.successResultOf(
            controller.scheduler.allocate(
                AllocationRequest(ownerid=user.id, name="s", script="x", nodecount=1, duration=600, start=0,
                                  nodetypes="", allocateOnly=True)
            )
        )
        schedid = allocation.schedules[0].id
        status = lambda: controller.store.run(lambda txn: txn.getSchedule(schedid)).status
        self.assertEqual(status(), "allocated")
        clock.pump([30] * 21)
        self.assertEqual(status(), "canceled")
        self.successResultOf(controller.stopService())

    def test_realSweep(self):
        """
        The sweep loop, on its own period, fails a task no node ever took
        once its window has ended, and logs a failed run without stopping.
        """
        config = makeConfig(self.tmp, housekeeping={"expiry_period": 30, "sweep_period": 20})
        self.assertEqual(config.sweepPeriod, 20)
        controller, clock = memoryController(config)
        controller.startService()
        self.successResultOf(controller.ready)
        from am.core.allocation import AllocationRequest

        user = self.successResultOf(controller.scheduler.addUser(name="rest", role="user", fingerprint="d" * 40))
        booked = self.successResultOf(
            controller.scheduler.allocate(
                AllocationRequest(ownerid=user.id, name="s", script="x", nodecount=1, duration=600, start=0,
                                  nodetypes="", nodes=["1"])
            )
        )
        schedid = booked.schedules[0].id
        schedule = lambda: controller.store.run(lambda txn: txn.getSchedule(schedid))
        end = booked.schedules[0].stop
        clock.pump([20] * int((end - clock.seconds() - 1) // 20))
        self.assertEqual(schedule().status, "defined")
        clock.pump([20])
        self.assertEqual((schedule().status, schedule().reason), ("failed", "node 1 never deployed the task"))

        from twisted.internet.defer import fail

        calls = []
        controller.scheduler.sweep = lambda: (calls.append(1), fail(RuntimeError("disk full")))[1]
        clock.pump([20, 20])
        self.assertEqual(len(calls), 2)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 2)
        self.successResultOf(controller.stopService())

    def test_badDatabase(self):
        path = os.path.join(self.tmp, "junk.db")
        with open(path, "wb") as f:
            f.write(b"this is not a database" * 100)
        config = makeConfig(self.tmp, database=path)
        controller = ctl.Controller(config, MemoryReactorClock())
        with self.assertRaises(ctl.StartupError) as info:
            controller.startService()
        self.assertIn(f"database: cannot open {path}: file is not a database", str(info.exception))


class ClientProtocol(Protocol):
    """
    Sends one raw HTTP request and keeps what comes back.
    """

    def __init__(self, request):
        self.request = request
        self.data = b""
        self.lost = None

    def connectionMade(self):
        self.transport.write(self.request)

    def dataReceived(self, data):
        self.data += data

    def connectionLost(self, reason):
        self.lost = reason

    def response(self):
        head, _, body = self.data.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        return status, json.loads(body) if body else None


def _request(path, headers=()):
    lines = [f"GET {path} HTTP/1.1", "Host: localhost", "Connection: close", *headers]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


class ListenerTests(SynchronousTestCase):
    """
    Real TLS handshakes in memory against the controller's own site and TLS options.
    """

    def setUp(self):
        tmp = os.path.abspath(self.mktemp())
        os.makedirs(tmp)
        config = makeConfig(tmp, headers={"verified": "X-Verified", "fingerprint": "X-Client-Fingerprint"},
                            trusted_proxies=["127.0.0.0/8"])
        self.controller, self.clock = memoryController(config)
        self.controller.startService()
        self.successResultOf(self.controller.ready)
        self.addCleanup(self.controller.stopService)
        self.serverOptions = ctl.tlsOptions(config.tls)

    def tls(self, clientCertificate, path="/v1/backend/auth"):
        p = pki()
        with open(p.certificate("ca"), "rb") as f:
            ca = Certificate.loadPEM(f.read())
        kwargs = {}
        if clientCertificate is not None:
            kwargs = dict(privateKey=clientCertificate.privateKey.original, certificate=clientCertificate.original)
        # The server's chain is verified against the demo CA; its name is not
        # (service_identity cannot parse the GENI URN in its subjectAltName).
        clientOptions = CertificateOptions(trustRoot=ca, **kwargs)
        client = ClientProtocol(_request(path))
        clock = Clock()
        serverFactory = TLSMemoryBIOFactory(self.serverOptions, False, self.controller.site, clock=clock)
        clientFactory = TLSMemoryBIOFactory(clientOptions, True, Factory.forProtocol(lambda: client), clock=clock)
        _, _, pump = connectedServerAndClient(
            lambda: serverFactory.buildProtocol(IPv4Address("TCP", "127.0.0.1", 50000)),
            lambda: clientFactory.buildProtocol(None),
            clock=clock,
        )
        pump.flush()
        for _ in range(20):
            if client.lost is not None:
                break
            pump.pump()
        return client

    def clientCertificate(self, who):
        p = pki()
        with open(p.certificate(who), "rb") as f:
            cert = f.read()
        with open(p.key(who), "rb") as f:
            key = f.read()
        return PrivateCertificate.loadPEM(cert + key)

    def test_validCertificate(self):
        p = pki()
        client = self.tls(self.clientCertificate("user"))
        status, body = client.response()
        # a certificate of our CA, but nobody's: seen, and not a user
        self.assertEqual((status, body["fingerprint"], body["user"]), (401, p.fingerprints["user"], None))
        admin = self.tls(self.clientCertificate("admin"))
        status, body = admin.response()
        self.assertEqual(status, 200)
        self.assertEqual((body["fingerprint"], body["user"]["name"], body["user"]["role"]),
                         (p.fingerprints["admin"], "Operator", "admin"))

    def test_noCertificateRefused(self):
        client = self.tls(None)
        self.assertEqual(client.data, b"")
        self.assertTrue(client.lost.check(SSL.Error), client.lost)
        self.assertIn("certificate required", client.lost.getErrorMessage())

    def test_otherCARefused(self):
        stranger = _PKI["stranger"]
        certificate = PrivateCertificate.loadPEM(stranger.certPEM + stranger.keyPEM)
        client = self.tls(certificate)
        self.assertEqual(client.data, b"")
        self.assertTrue(client.lost.check(SSL.Error), client.lost)

    def plain(self, peer, headers):
        client = ClientProtocol(_request("/v1/backend/auth", headers))
        _, _, pump = connectedServerAndClient(
            lambda: self.controller.site.buildProtocol(peer),
            lambda: client,
            serverTransportFactory=lambda p: FakeTransport(p, True, peerAddress=peer),
        )
        pump.flush()
        return client.response()

    def test_plainListenerTrustsConfiguredProxyHeaders(self):
        p = pki()
        headers = ["X-Verified: SUCCESS", f"X-Client-Fingerprint: {p.fingerprints['admin']}"]
        status, body = self.plain(IPv4Address("TCP", "127.0.0.1", 40000), headers)
        self.assertEqual((status, body["user"]["name"]), (200, "Operator"))
        # from an untrusted address the same headers mean nothing
        status, body = self.plain(IPv4Address("TCP", "10.1.2.3", 40000), headers)
        self.assertEqual((status, body["user"], body["fingerprint"]), (401, None, ""))
        # the default header names are not ours any more
        status, body = self.plain(
            IPv4Address("TCP", "127.0.0.1", 40000),
            ["VERIFIED: SUCCESS", f"SSL_FINGERPRINT: {p.fingerprints['admin']}"],
        )
        self.assertEqual((status, body["user"]), (401, None))


def _busyPort():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(1)
    return s


class RealReactorTests(TestCase):
    """
    Start-up failures with the real reactor and SQLite store.
    """

    async def test_portInUse(self):
        tmp = os.path.abspath(self.mktemp())
        os.makedirs(tmp)
        busy = _busyPort()
        self.addCleanup(busy.close)
        p = pki()
        config = makeConfig(
            tmp, database=os.path.join(tmp, "m.db"),
            listen={
                "tls": {"address": "127.0.0.1", "port": 0, "certificate": p.certificate("server"),
                        "key": p.key("server"), "client_ca": [p.certificate("ca")]},
                "http": {"address": "127.0.0.1", "port": busy.getsockname()[1]},
            },
        )
        controller = ctl.Controller(config, reactor)
        controller.startService()
        try:
            await controller.ready
        except ctl.StartupError as e:
            self.assertIn(f"cannot listen for http: Couldn't listen on 127.0.0.1:{busy.getsockname()[1]}", str(e))
            self.assertIn("Address already in use", str(e))
        else:
            self.fail("started on a busy port")
        # the TLS port that did open is closed again on stop
        [tlsPort] = controller.ports
        number = tlsPort.getHost().port
        await controller.stopService()
        probe = socket.socket()
        self.addCleanup(probe.close)
        self.assertNotEqual(probe.connect_ex(("127.0.0.1", number)), 0)
