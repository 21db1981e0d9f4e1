"""
The GENI face on the wire: XML-RPC over real TLS handshakes (in memory) with a
stdlib XML-RPC client's encoding, and every malformed call answered as a struct.
"""

from __future__ import annotations

import xmlrpc.client

from OpenSSL import crypto
from twisted.internet.protocol import Factory
from twisted.internet.ssl import Certificate, CertificateOptions
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test.iosim import connectedServerAndClient
from twisted.web.resource import Resource
from twisted.web.server import Site

from am.geni.statemap import STATUS_MAP
from am.geni.xmlrpc import AggregateManagerResource
from am.trust.tls import serverTLSOptions
from rspec.times import formatTime, parseTime
from tests.geni_helpers import V3, GeniTestCase, requestRSpec
from tests.rawhttp import HTTPClient


def post(body: bytes, path: bytes = b"/xmlrpc/am/3.0") -> bytes:
    return (b"POST " + path + b" HTTP/1.1\r\nHost: am.example.org\r\nContent-Type: text/xml\r\n"
            b"Connection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)


class WireTests(GeniTestCase):
    """
    Calls through the site, over TLS with client certificates.
    """

    def setUp(self) -> None:
        super().setUp()
        root = Resource()
        xmlrpcRoot = Resource()
        amRoot = AggregateManagerResource(self.am, maxBody=256 * 1024)
        root.putChild(b"xmlrpc", xmlrpcRoot)
        amDir = Resource()
        xmlrpcRoot.putChild(b"am", amDir)
        amDir.putChild(b"3.0", amRoot)
        self.site = Site(root, reactor=self.clock)
        self.serverOptions = serverTLSOptions(self.p.am.chainPEM, self.p.am.keyPEM, self.p.ca.certPEM)

    def exchange(self, raw: bytes, identity=None) -> bytes:
        identity = self.p.alice if identity is None else identity
        ca = Certificate(crypto.X509.from_cryptography(self.p.ca.certificate))
        if identity is False:
            options = CertificateOptions(trustRoot=ca)
        else:
            options = CertificateOptions(
                privateKey=crypto.PKey.from_cryptography_key(identity.key),
                certificate=crypto.X509.from_cryptography(identity.certificate),
                extraCertChain=[crypto.X509.from_cryptography(c) for c in identity.issuers] or None,
                trustRoot=ca,
            )
        server = TLSMemoryBIOFactory(self.serverOptions, False, self.site, clock=self.clock)
        client = HTTPClient(raw)
        clientFactory = TLSMemoryBIOFactory(options, True, Factory.forProtocol(lambda: client), clock=self.clock)
        _, _, pump = connectedServerAndClient(
            lambda: server.buildProtocol(None), lambda: clientFactory.buildProtocol(None), clock=self.clock)
        pump.flush()
        return client.received

    def rpc(self, method: str, *params, identity=None) -> dict:
        body = xmlrpc.client.dumps(params, method, allow_none=False).encode()
        raw = self.exchange(post(body), identity)
        head, _, payload = raw.partition(b"\r\n\r\n")
        self.assertIn(b" 200 ", head.split(b"\r\n")[0])
        (answer,), _ = xmlrpc.client.loads(payload)
        return answer

    def test_getVersion(self) -> None:
        """
        GetVersion over TLS with a client certificate.
        """
        answer = self.rpc("GetVersion", {})
        self.assertEqual((answer["code"]["geni_code"], answer["geni_api"]), (0, 3))

    def test_noClientCertificate(self) -> None:
        """
        Without a client certificate the handshake fails and nothing is answered.
        """
        raw = self.exchange(post(xmlrpc.client.dumps(({},), "GetVersion").encode()), identity=False)
        self.assertEqual(raw, b"")

    def test_foreignCertificate(self) -> None:
        """
        A certificate from another CA is refused at the handshake.
        """
        raw = self.exchange(post(xmlrpc.client.dumps(({},), "GetVersion").encode()), identity=self.p.mallory)
        self.assertEqual(raw, b"")

    def test_lifecycleOverTheWire(self) -> None:
        """
        Allocate, Provision, Status, Delete through the XML-RPC encoding.
        """
        creds = self.sliceCred()
        allocated = self.rpc("Allocate", self.s1, creds, requestRSpec(["1"]), {})
        self.assertEqual(allocated["code"]["geni_code"], 0, allocated["output"])
        self.assertEqual(self.rpc("Provision", [self.s1], creds, V3)["code"]["geni_code"], 0)
        status = self.rpc("Status", [self.s1], creds, {})
        self.assertEqual(status["value"]["geni_slivers"][0]["geni_allocation_status"], "geni_provisioned")
        self.assertEqual(self.rpc("Delete", [self.s1], creds, {})["code"]["geni_code"], 0)

    def test_malformedBodies(self) -> None:
        """
        Unparsable XML, entity bombs, unknown methods and wrong argument counts are structs.
        """
        bomb = (b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY a "aaaaaaaaaa">'
                + b"".join(b'<!ENTITY %s "&%s;&%s;&%s;&%s;&%s;&%s;&%s;&%s;&%s;&%s;">' % ((chr(98 + i).encode(),) + (chr(97 + i).encode(),) * 10) for i in range(8))
                + b"]><methodCall><methodName>GetVersion</methodName><params><param><value><string>&i;</string></value></param></params></methodCall>")
        external = (b'<?xml version="1.0"?><!DOCTYPE m [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
                    b"<methodCall><methodName>GetVersion</methodName><params><param><value>&x;</value></param></params></methodCall>")
        for body, code in ((b"<methodCall", 1), (bomb, 1), (external, 1),
                           (xmlrpc.client.dumps((), "Reboot").encode(), 13),
                           (xmlrpc.client.dumps(("a",), "Status").encode(), 1)):
            raw = self.exchange(post(body))
            (answer,), _ = xmlrpc.client.loads(raw.partition(b"\r\n\r\n")[2])
            self.assertEqual(answer["code"]["geni_code"], code, body[:60])
            self.assertNotIn("root:", answer["output"])

    def test_tooBig(self) -> None:
        """
        A body over the limit is TOOBIG.
        """
        big = xmlrpc.client.dumps(("x" * 300 * 1024,), "GetVersion").encode()
        raw = self.exchange(post(big))
        (answer,), _ = xmlrpc.client.loads(raw.partition(b"\r\n\r\n")[2])
        self.assertEqual(answer["code"]["geni_code"], 6)

    def test_singleAllocationIsAnInt(self) -> None:
        """
        geni_single_allocation goes on the wire as an XML-RPC int, which
        geni-tools' GetVersion checker requires (a boolean fails it).
        """
        raw = self.exchange(post(xmlrpc.client.dumps(({},), "GetVersion").encode()))
        payload = raw.partition(b"\r\n\r\n")[2]
        self.assertRegex(payload, rb"<name>geni_single_allocation</name>\s*<value><int>1</int></value>")

    def test_deeplyNestedArguments(self) -> None:
        """
        A struct nested 1,000 levels deep from an authenticated caller is
        BADARGS, not an internal error; a normal call still works afterwards.
        """
        nested = "<value><string>x</string></value>"
        for _ in range(1000):
            nested = f"<value><struct><member><name>a</name>{nested}</member></struct></value>"
        body = (f"<?xml version='1.0'?><methodCall><methodName>ListResources</methodName><params>"
                f"<param><value><array><data></data></array></value></param><param>{nested}</param>"
                f"</params></methodCall>").encode()
        self.assertGreater(len(body), 50_000)
        (answer,), _ = xmlrpc.client.loads(self.exchange(post(body)).partition(b"\r\n\r\n")[2])
        self.assertEqual(answer["code"]["geni_code"], 1, answer["output"])
        self.assertIn("nested deeper", answer["output"])
        self.assertEqual(self.rpc("ListResources", self.userCred(), V3)["code"]["geni_code"], 0)

    def test_everyCallLogged(self) -> None:
        """
        Each call, successful or not, is logged once with method, caller URN,
        slice URN, number of slivers, geni_code and duration.
        """
        import am.geni.xmlrpc as wire
        from twisted.logger import Logger

        events: list[dict] = []
        self.patch(wire, "log", Logger(observer=events.append))
        creds = self.sliceCred()
        self.rpc("Allocate", self.s1, creds, requestRSpec(["1"]), {})
        self.rpc("Status", [self.s1], creds, {})
        self.rpc("Describe", [self.s1], [], V3)
        self.exchange(post(b"<methodCall"))
        logged = [(e["method"], e["caller"], e["slice"], e["slivers"], e["code"]) for e in events]
        alice = self.p.alice.urn
        self.assertEqual(logged, [
            ("Allocate", alice, self.s1, 1, 0),
            ("Status", alice, self.s1, 1, 0),
            ("Describe", alice, self.s1, 0, 1),
            ("?", "-", "-", 0, 1),
        ])
        self.assertTrue(all(e["duration"] >= 0 for e in events))
        self.assertIn("geni_code", events[0]["log_format"])

    def test_deletedSliversGoneOverTheWire(self) -> None:
        """
        After Delete, Status and a second Delete are SEARCHFAILED; the
        deleted sliver is never listed again.
        """
        creds = self.sliceCred()
        allocated = self.rpc("Allocate", self.s1, creds, requestRSpec(["1"]), {})
        sliver = allocated["value"]["geni_slivers"][0]["geni_sliver_urn"]
        self.assertEqual(self.rpc("Delete", [self.s1], creds, {})["code"]["geni_code"], 0)
        for urns in ([self.s1], [sliver]):
            self.assertEqual(self.rpc("Status", urns, creds, {})["code"]["geni_code"], 12)
            self.assertEqual(self.rpc("Delete", urns, creds, {})["code"]["geni_code"], 12)
        self.assertEqual(self.rpc("Describe", [self.s1], creds, V3)["value"]["geni_slivers"], [])

    def test_stopStartOverTheWire(self) -> None:
        """
        geni_stop keeps the sliver provisioned: geni_stopping while its node
        still runs the task, geni_notready once the node stopped it;
        geni_start runs it again inside its window; Renew is still possible.
        """
        creds = self.sliceCred()
        allocated = self.rpc("Allocate", self.s1, creds, requestRSpec(["1"]), {})
        sid = int(allocated["value"]["geni_slivers"][0]["geni_sliver_urn"].rsplit("+", 1)[-1])
        self.rpc("Provision", [self.s1], creds, V3)

        def node(status: str):
            def report(txn) -> None:
                schedule = txn.getSchedule(sid)
                schedule.status = status
                txn.updateSchedule(schedule)
            self.successResultOf(self.store.transact(report))

        def states() -> tuple:
            sliver = self.rpc("Status", [self.s1], creds, {})["value"]["geni_slivers"][0]
            return sliver["geni_allocation_status"], sliver["geni_operational_status"]

        node("started")
        self.assertEqual(states(), ("geni_provisioned", "geni_ready"))
        stopped = self.rpc("PerformOperationalAction", [self.s1], creds, "geni_stop", {})
        self.assertEqual(stopped["code"]["geni_code"], 0, stopped["output"])
        self.assertEqual(states(), ("geni_provisioned", "geni_stopping"))
        node("deployed")  # the node stopped it on request
        self.assertEqual(states(), ("geni_provisioned", "geni_notready"))
        options = self.successResultOf(self.store.read(lambda txn: txn.getSchedule(sid))).deploymentOptions
        self.assertEqual((options["run_state"], options["run_serial"]), ("stopped", 1))
        self.assertEqual(self.rpc("PerformOperationalAction", [self.s1], creds, "geni_start", {})["code"]["geni_code"], 0)
        options = self.successResultOf(self.store.read(lambda txn: txn.getSchedule(sid))).deploymentOptions
        self.assertEqual((options["run_state"], options["run_serial"]), ("running", 2))
        self.assertEqual(states(), ("geni_provisioned", "geni_configuring"))
        node("restarted")
        self.assertEqual(states(), ("geni_provisioned", "geni_ready"))
        self.assertEqual(self.rpc("PerformOperationalAction", [self.s1], creds, "geni_restart", {})["code"]["geni_code"], 0)
        self.rpc("PerformOperationalAction", [self.s1], creds, "geni_stop", {})
        node("deployed")
        end = parseTime(allocated["value"]["geni_slivers"][0]["geni_end_time"])
        renewed = self.rpc("Renew", [self.s1], creds, formatTime(end + 600), {})
        self.assertEqual(renewed["code"]["geni_code"], 0, renewed["output"])  # a stopped sliver is still reserved
        self.assertEqual(parseTime(renewed["value"][0]["geni_expires"]), end + 600)
        self.assertEqual(self.rpc("PerformOperationalAction", [self.s1], creds, "geni_start", {})["code"]["geni_code"], 0)
        node("finished")  # over before its end time: cannot run again
        refused = self.rpc("PerformOperationalAction", [self.s1], creds, "geni_start", {})
        self.assertEqual(refused["code"]["geni_code"], 7)
        self.assertIn("cannot run again", refused["output"])

    def test_renewOfFinalSliverRefusedOverTheWire(self) -> None:
        """
        Renew of a sliver whose task is over is REFUSED with why (not code 0
        with the expiry unchanged), and its end time stays; after Delete,
        Renew is SEARCHFAILED.
        """
        creds = self.sliceCred()
        allocated = self.rpc("Allocate", self.s1, creds, requestRSpec(["1"]), {})
        sliver = allocated["value"]["geni_slivers"][0]
        sid = int(sliver["geni_sliver_urn"].rsplit("+", 1)[-1])
        self.rpc("Provision", [self.s1], creds, V3)

        def finish(txn) -> None:
            schedule = txn.getSchedule(sid)
            schedule.status = "finished"
            txn.updateSchedule(schedule)

        self.successResultOf(self.store.transact(finish))
        end = parseTime(sliver["geni_end_time"])
        refused = self.rpc("Renew", [self.s1], creds, formatTime(end + 600), {})
        self.assertEqual(refused["code"]["geni_code"], 7)
        self.assertIn("cannot be renewed", refused["output"])
        status = self.rpc("Status", [self.s1], creds, {})["value"]["geni_slivers"][0]
        self.assertEqual(parseTime(status["geni_expires"]), end)
        self.assertEqual(self.rpc("Delete", [self.s1], creds, {})["code"]["geni_code"], 0)
        self.assertEqual(self.rpc("Renew", [self.s1], creds, formatTime(end + 600), {})["code"]["geni_code"], 12)

    def test_loginsAndKeys(self) -> None:
        """
        Provision's geni_users keys go to the node with the task (deployment
        option ssh_keys, which the agent hands its hooks as MARVIN_SSH_KEYS);
        the manifest has a real login from the node's inventory (host, port,
        user) and, when the inventory names a jump host, the gateway's login
        and the jFed proxy extension. geni_update_users replaces the keys.
        """
        def tag(txn) -> None:
            node = txn.getNode("1")
            node.inventoryTags.update(login_host="node1.example.org", login_port="2222", login_user="monroe",
                                      ssh_proxy="jump@gw.example.org:22")
            txn.putNode(node)

        self.successResultOf(self.store.transact(tag))
        creds = self.sliceCred()
        allocated = self.rpc("Allocate", self.s1, creds, requestRSpec(["1"]), {})
        sid = int(allocated["value"]["geni_slivers"][0]["geni_sliver_urn"].rsplit("+", 1)[-1])
        users = [{"urn": self.p.alice.urn, "keys": ["ssh-ed25519 AAAAC3Nza alice@laptop"]}]
        provisioned = self.rpc("Provision", [self.s1], creds, dict(V3, geni_users=users))
        self.assertEqual(provisioned["code"]["geni_code"], 0, provisioned["output"])
        manifest = provisioned["value"]["geni_rspec"]
        self.assertIn('hostname="node1.example.org"', manifest)
        self.assertRegex(manifest, r'<login authentication="ssh-keys" hostname="node1.example.org" port="2222" username="monroe"/>')
        self.assertRegex(manifest, r'hostname="gw.example.org" port="22" username="jump"')
        self.assertIn('proxy="jump@gw.example.org:22" for="monroe@node1.example.org:2222"', manifest)
        keys = lambda: self.successResultOf(self.store.read(lambda txn: txn.getSchedule(sid))).deploymentOptions["ssh_keys"]  # noqa: E731
        self.assertEqual(keys(), ["ssh-ed25519 AAAAC3Nza alice@laptop"])
        users = [{"urn": self.p.alice.urn, "keys": ["ssh-rsa AAAAB3Nza alice@desk"]}]
        updated = self.rpc("PerformOperationalAction", [self.s1], creds, "geni_update_users", {"geni_users": users})
        self.assertEqual(updated["code"]["geni_code"], 0, updated["output"])
        self.assertEqual(keys(), ["ssh-rsa AAAAB3Nza alice@desk"])
        described = self.rpc("Describe", [self.s1], creds, V3)["value"]["geni_rspec"]
        self.assertIn('username="monroe"', described)

    def test_binaryCredential(self) -> None:
        """
        A credential sent as base64 (Python 3 clients passing bytes) is accepted.
        """
        creds = [dict(c, geni_value=xmlrpc.client.Binary(c["geni_value"].encode())) for c in self.userCred()]
        self.assertEqual(self.rpc("ListResources", creds, V3)["code"]["geni_code"], 0)


def test_statusMapTotal() -> None:
    """
    Every schedule status has exactly one pair of GENI states, final ones never 'ready'.
    """
    assert STATUS_MAP["allocated"] == ("geni_allocated", "geni_pending_allocation")
    assert STATUS_MAP["started"] == ("geni_provisioned", "geni_ready")
    assert STATUS_MAP["failed"][1] == "geni_failed"
    for status in ("stopped", "finished", "canceled", "aborted"):
        assert STATUS_MAP[status][1] == "geni_notready"


def test_largeValuesMarshalledAsStdlib() -> None:
    """
    The cached escaping of large values gives exactly what xmlrpc.client would,
    for the same string object again and for a new one.
    """
    from am.geni.xmlrpc import AggregateManagerResource

    resource = AggregateManagerResource(am=None)  # type: ignore[arg-type]
    # an advertisement, and a compressed one (base64, 10 kB)
    for text in ("<rspec a=\"1\">&amp; <x/></rspec>\n" * 5000, "eJzLSM3JyVcozy/KSQEAGgQEXQ==\n" * 360):
        answer = {"code": {"geni_code": 0}, "value": text, "output": ""}
        expected = xmlrpc.client.dumps((answer,), methodresponse=True)
        assert resource._marshal(answer) == expected
        assert resource._marshal(answer) == expected
        other = dict(answer, value=text + "MARVIN")
        assert resource._marshal(other) == xmlrpc.client.dumps((other,), methodresponse=True)
    assert len(resource._escaped) == 4
