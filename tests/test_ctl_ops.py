"""
The operator's endpoints on a controller in memory: /health, /ready,
/metrics (parsed with prometheus_client's own parser) and its access rule,
and the GENI face behind a TLS proxy (the certificate header believed from
a trusted proxy only, and verified against the GENI roots).
"""

from __future__ import annotations

import json
import os
import xmlrpc.client
from urllib.parse import quote

from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred, fail
from twisted.test.iosim import FakeTransport, connectedServerAndClient
from twisted.trial.unittest import SynchronousTestCase

from tests import trust_helpers
from am.ctl.metrics import MeasuredStore, Metrics, faceAndRoute
from am.trust.certs import certificatePEM
from tests.test_ctl_service import ClientProtocol, makeConfig, memoryController, pki
from tests.test_geni_face import geniSection

PROXY = IPv4Address("TCP", "127.0.0.1", 40000)
STRANGER = IPv4Address("TCP", "10.1.2.3", 40000)


def exchange(site, peer, method="GET", path="/health", headers=(), body=b""):
    """
    One plain HTTP request to C{site} from C{peer}: (status, headers, body).
    """
    lines = [f"{method} {path} HTTP/1.1", "Host: localhost", "Connection: close", *headers]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    client = ClientProtocol(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
    _, _, pump = connectedServerAndClient(
        lambda: site.buildProtocol(peer), lambda: client,
        serverTransportFactory=lambda p: FakeTransport(p, True, peerAddress=peer),
    )
    pump.flush()
    head, _, payload = client.data.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, head.decode("latin-1").lower(), payload


def scrape(site, peer=PROXY):
    status, headers, payload = exchange(site, peer, path="/metrics")
    assert status == 200, payload
    assert "content-type: text/plain; version=" in headers
    samples = {}
    for family in text_string_to_metric_families(payload.decode("utf-8")):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


class Controlled(SynchronousTestCase):
    def start(self, **overrides):
        tmp = os.path.abspath(self.mktemp())
        os.makedirs(tmp)
        self.config = makeConfig(tmp, **overrides)
        self.controller, self.clock = memoryController(self.config)
        self.controller.startService()
        self.successResultOf(self.controller.ready)
        self.addCleanup(self.controller.stopService)
        return self.controller.site


class HealthTests(Controlled):
    def test_healthAndReady(self):
        """
        Both answer anyone, unauthenticated, once the controller serves.
        """
        site = self.start()
        status, headers, body = exchange(site, STRANGER, path="/health")
        self.assertEqual((status, json.loads(body)), (200, {"status": "alive"}))
        self.assertIn("x-request-id: ", headers)
        status, _, body = exchange(site, STRANGER, path="/ready")
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(body), {"ready": True, "checks": {"database": "ok", "inventory": "ok", "writer": "ok"}})

    def test_notReady(self):
        """
        An unloaded inventory, a stuck write and an unreachable database each make /ready 503.
        """
        site = self.start()
        self.controller.sync.lastSync = None
        status, _, body = exchange(site, PROXY, path="/ready")
        self.assertEqual((status, json.loads(body)["checks"]["inventory"]), (503, "not loaded yet"))
        self.controller.sync.lastSync = 1.0
        store = self.controller.store
        now = [100.0]
        store._timer = lambda: now[0]
        real = store._store

        class Stuck:
            read = real.read

            def transact(self, f, *a, **k):
                return Deferred()  # never finishes

        store._store = Stuck()
        store.transact(lambda txn: None)
        now[0] += 31
        status, _, body = exchange(site, PROXY, path="/ready")
        self.assertEqual((status, json.loads(body)["checks"]["writer"]), (503, "a write has waited 31 s"))
        store._writes.clear()
        store._store = real
        store._store.read = lambda f, *a, **k: fail(OSError("disk on fire"))
        status, _, body = exchange(site, PROXY, path="/ready")
        self.assertEqual((status, json.loads(body)["checks"]["database"]), (503, "unreachable: disk on fire"))

    def test_databaseTimeout(self):
        """
        A database that does not answer within the timeout is unreachable.
        """
        site = self.start()
        self.controller.store._store.read = lambda f, *a, **k: Deferred()
        client = ClientProtocol(b"GET /ready HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        _, _, pump = connectedServerAndClient(
            lambda: site.buildProtocol(PROXY), lambda: client,
            serverTransportFactory=lambda p: FakeTransport(p, True, peerAddress=PROXY),
        )
        pump.flush()
        self.assertEqual(client.data, b"")
        self.clock.advance(5)
        pump.flush()
        self.assertIn(b"503", client.data.split(b"\r\n")[0])
        self.assertIn(b"no answer within 5 s", client.data)


class MetricsTests(Controlled):
    def test_scrapeCountsRequests(self):
        """
        Requests by face, route, method and status with latencies; nodes and
        schedules by status; the store's transactions; bookings; heartbeats.
        """
        site = self.start()
        p = pki()
        admin = ["VERIFIED: SUCCESS", f"SSL_FINGERPRINT: {p.fingerprints['admin']}"]
        self.assertEqual(exchange(site, PROXY, path="/v1/backend/auth", headers=admin)[0], 200)
        self.assertEqual(exchange(site, PROXY, path="/v1/experiments/77", headers=admin)[0], 404)
        body = json.dumps({"name": "x", "script": "a/b", "nodecount": 99, "start": 0, "duration": 300}).encode()
        status = exchange(site, PROXY, "POST", "/v1/experiments", admin + ["Content-Type: application/json"], body)[0]
        self.assertEqual(status, 403)  # admins do not book: a refused booking all the same
        samples = scrape(site)
        rest = lambda route, method, status: (  # noqa: E731
            "marvin_http_requests_total",
            (("face", "rest"), ("method", method), ("route", route), ("status", status)),
        )
        self.assertEqual(samples[rest("backend/auth", "GET", "200")], 1)
        self.assertEqual(samples[rest("experiment", "GET", "404")], 1)
        self.assertEqual(
            samples[("marvin_http_request_duration_seconds_count",
                     (("face", "rest"), ("method", "GET"), ("route", "backend/auth")))], 1)
        self.assertEqual(samples[("marvin_bookings_total", (("face", "rest"), ("outcome", "refused")))], 1)
        self.assertEqual(samples[("marvin_bookings_total", (("face", "rest"), ("outcome", "made")))], 0)
        self.assertEqual(sum(v for (name, _), v in samples.items() if name == "marvin_nodes"), 6)
        self.assertEqual(samples[("marvin_store_queue_depth", (("kind", "write"),))], 0)
        self.assertGreater(samples[("marvin_store_transaction_seconds_count", (("kind", "read"),))], 0)
        self.assertEqual(samples[("marvin_heartbeats_total", ())], 0)
        node = ["VERIFIED: SUCCESS", f"SSL_FINGERPRINT: {p.fingerprints['node']}"]
        from am.core import accounts

        self.controller.store.run(
            lambda txn: accounts.addUser(txn, "Node 1", "node", int(self.clock.seconds()), self.controller.scheduler.policy,
                                         fingerprint=p.fingerprints["node"]))
        status = exchange(site, PROXY, "PUT", "/v1/resources/1", node + ["Content-Type: application/x-www-form-urlencoded"],
                          b"maintenance=0")[0]
        self.assertEqual(status, 200)
        self.assertEqual(scrape(site)[("marvin_heartbeats_total", ())], 1)

    def test_access(self):
        """
        C{proxy} (the default) serves trusted proxies only, C{open} anyone, C{off} nobody.
        """
        site = self.start()
        self.assertEqual(exchange(site, STRANGER, path="/metrics")[0], 404)
        scrape(site, PROXY)
        self.controller.stopService()
        site = self.start(metrics={"access": "open"})
        scrape(site, STRANGER)
        self.controller.stopService()
        site = self.start(metrics={"access": "off"})
        self.assertEqual(exchange(site, PROXY, path="/metrics")[0], 404)

    def test_routesFolded(self):
        self.assertEqual(faceAndRoute(b"/v1/experiments/12/schedules?x=1"), ("rest", "experiment/schedules"))
        self.assertEqual(faceAndRoute(b"/xmlrpc/am/3.0"), ("geni", "xmlrpc/am"))
        self.assertEqual(faceAndRoute(b"/metrics"), ("ops", "metrics"))
        self.assertEqual(faceAndRoute(b"/no/such/thing"), ("rest", "-"))

    def test_measuredStoreCountsFailures(self):
        """
        A failed transaction still leaves the queue and is timed.
        """
        metrics = Metrics()

        class Broken:
            def transact(self, f):
                return fail(ValueError("no"))

        store = MeasuredStore(Broken(), metrics)
        self.failureResultOf(store.transact(lambda txn: None), ValueError)
        self.assertIsNone(store.oldestWrite())
        self.assertEqual(metrics.storeDepth.labels(kind="write")._value.get(), 0)


class GeniBehindProxyTests(Controlled):
    """
    The GENI face on the plain listener: the certificate comes in a header.
    """

    def setUp(self):
        tmp = os.path.abspath(self.mktemp())
        os.makedirs(tmp)
        self.site = self.start(geni=geniSection(tmp), headers={"client_certificate": "X-Client-Cert"})
        self.clock.advance(trust_helpers.NOW - self.clock.seconds())

    def call(self, peer, certificate, method="GetVersion", *params):
        body = xmlrpc.client.dumps(params or ({},), method).encode()
        headers = ["Content-Type: text/xml"]
        if certificate is not None:
            headers.append("X-Client-Cert: " + quote(certificate.decode("ascii"), safe=""))
        status, _, payload = exchange(self.site, peer, "POST", "/xmlrpc/am/3.0", headers, body)
        self.assertEqual(status, 200)
        (answer,), _ = xmlrpc.client.loads(payload)
        return answer

    def test_trustedProxyCertificate(self):
        """
        A GENI certificate from the proxy is verified and names the caller.
        """
        alice = trust_helpers.pki().alice
        answer = self.call(PROXY, certificatePEM(alice.certificate))
        self.assertEqual(answer["code"]["geni_code"], 0)
        credential = trust_helpers.sfa(trust_helpers.userCredential())
        answer = self.call(PROXY, certificatePEM(alice.certificate), "ListResources", [credential],
                           {"geni_rspec_version": {"type": "GENI", "version": "3"}})
        self.assertEqual(answer["code"]["geni_code"], 0, answer["output"])
        samples = scrape(self.site)
        self.assertEqual(samples[("marvin_geni_calls_total", (("geni_code", "0"), ("method", "ListResources")))], 1)

    def test_untrustedPeerIgnored(self):
        """
        The same header from any other peer is ignored: no certificate, FORBIDDEN.
        """
        answer = self.call(STRANGER, certificatePEM(trust_helpers.pki().alice.certificate))
        self.assertEqual(answer["code"]["geni_code"], 3)
        self.assertIn("no TLS client certificate", answer["output"])

    def test_notAGeniCertificate(self):
        """
        A certificate the proxy accepted but that does not chain to the GENI
        roots (here: the REST demo CA's user) is refused, as in a handshake.
        """
        with open(pki().certificate("user"), "rb") as f:
            answer = self.call(PROXY, f.read())
        self.assertEqual(answer["code"]["geni_code"], 3)
        self.assertIn("does not chain to a trusted root", answer["output"])
        answer = self.call(PROXY, b"garbage")
        self.assertEqual(answer["code"]["geni_code"], 3)
