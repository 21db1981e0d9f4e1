"""
The REST face against hostile input: random methods, paths, callers and
bodies never get a 500; bodies too large are refused before they are read
(announced, chunked, multipart); huge numbers are a 400, not an overflow.
"""

from __future__ import annotations

import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase
from twisted.test.iosim import FakeTransport, connectedServerAndClient
from twisted.web.server import Site

from am.ctl.site import limitedRequestFactory
from rest_compat.testing import RESTHarness, book, populate
from tests.rawhttp import HTTPClient


class HostileInputTests(SynchronousTestCase):
    """
    Whatever arrives, the answer is a JSON reply, never a 500.
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.people = populate(self.h)
        book(self.h, self.people.alice, options={"nodes": "1"})

    @settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(
        method=st.sampled_from(["GET", "PUT", "POST", "DELETE", "HEAD", "OPTIONS", "PATCH"]),
        prefix=st.sampled_from(["", "/v1"]),
        first=st.sampled_from(["resources", "users", "experiments", "schedules", "backend", "version", "x"]),
        rest=st.lists(
            st.one_of(st.sampled_from(["1", "2", "find", "schedules", "schedule", "all", "journals", "auth",
                                       "sync", "activity", "0", "-1", "99999999999999999999", "%00", "%ff"]),
                      st.text(alphabet="abc123%;:,.'\"", max_size=6)),
            max_size=3,
        ),
        who=st.sampled_from(["alice", "admin", "node1", None]),
        body=st.one_of(
            st.none(),
            st.dictionaries(
                st.sampled_from(["name", "nodecount", "script", "start", "stop", "duration", "options", "status",
                                 "traffic", "interfaces", "maintenance", "limit", "type", "ssl", "role", "time",
                                 "dryrun", "nodetypes", "results", "showHidden"]),
                st.recursive(
                    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                              st.text(max_size=8)),
                    lambda children: (
                        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=3), children, max_size=3)
                    ),
                    max_leaves=5,
                ),
                max_size=6,
            ),
        ),
        asForm=st.booleans(),
    )
    def test_neverA500(self, method, prefix, first, rest, who, body, asForm) -> None:
        """
        Random methods, paths, callers and bodies (JSON or form) give JSON
        answers below 500 that conform to the document.
        """
        path = "/".join([prefix, first] + rest) or "/"
        user = getattr(self.people, who) if who else None
        kwargs = {}
        if body is not None:
            if asForm:
                kwargs["form"] = {k: json.dumps(v) if not isinstance(v, str) else v for k, v in body.items()}
            else:
                kwargs["json_"] = body
        response = self.h.request(method, path, user, **kwargs)
        self.assertLess(response.code, 500, (method, path, body, response.body[:300]))


class LimitedRequestTests(SynchronousTestCase):
    """
    L{limitedRequestFactory} keeps oversized bodies out of memory and disk.
    """

    def exchange(self, data: bytes, parse: bool = True) -> tuple[bytes, list]:
        h = RESTHarness(maxBody=100)
        alice = h.addUser("alice")
        stored: list = []
        factory = limitedRequestFactory(100)

        class Spy(factory):
            def requestReceived(self, command, path, version):
                self.content.seek(0)
                stored.append(self.content.read())
                super().requestReceived(command, path, version)

        clock = Clock()
        site = Site(h.root, requestFactory=Spy, reactor=clock, parsePOSTFormSubmission=parse)
        client = HTTPClient(data.replace(b"FP", alice.fingerprint.encode()))
        peer = IPv4Address("TCP", "127.0.0.1", 40000)
        _, _, pump = connectedServerAndClient(
            lambda: site.buildProtocol(peer),
            lambda: client,
            serverTransportFactory=lambda p: FakeTransport(p, isServer=True, peerAddress=peer),
            clock=clock,
        )
        pump.flush()
        return client.received, stored

    def test_announcedTooLarge(self) -> None:
        """
        A Content-Length over the limit stores nothing and answers 413.
        """
        body = b"x" * 500
        received, stored = self.exchange(
            b"POST /v1/experiments HTTP/1.1\r\nHost: c\r\nVERIFIED: SUCCESS\r\nSSL_FINGERPRINT: FP\r\n"
            b"Content-Length: 500\r\nConnection: close\r\n\r\n" + body
        )
        self.assertTrue(received.startswith(b"HTTP/1.1 413 "), received[:50])
        self.assertEqual(stored, [b""])

    def test_chunkedTooLarge(self) -> None:
        """
        A chunked body that grows over the limit is cut off one byte past
        the limit and answered 413.
        """
        chunk = b"x" * 60
        received, stored = self.exchange(
            b"POST /v1/experiments HTTP/1.1\r\nHost: c\r\nVERIFIED: SUCCESS\r\nSSL_FINGERPRINT: FP\r\n"
            b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
            + (b"3c\r\n" + chunk + b"\r\n") * 3 + b"0\r\n\r\n"
        )
        self.assertTrue(received.startswith(b"HTTP/1.1 413 "), received[:50])
        self.assertEqual(stored, [(chunk * 3)[:101]])

    def test_brokenMultipartWithoutTwistedParsing(self) -> None:
        """
        With the site's own form parsing off (the REST face parses bodies
        itself), a broken multipart POST gets our JSON 400, not Twisted's
        plain-text one.
        """
        body = b"--zz\r\nno headers"
        received, _ = self.exchange(
            b"POST /v1/experiments HTTP/1.1\r\nHost: c\r\nVERIFIED: SUCCESS\r\nSSL_FINGERPRINT: FP\r\n"
            b"Content-Type: multipart/form-data; boundary=zz\r\nContent-Length: 16\r\n"
            b"Connection: close\r\n\r\n" + body,
            parse=False,
        )
        head, _, payload = received.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 400 "), head)
        self.assertIn(b"application/json", head)
        self.assertIn("message", json.loads(payload))

    def test_smallBodyPasses(self) -> None:
        """
        Bodies within the limit are served as usual.
        """
        body = b"name=x&nodes=1"
        received, _ = self.exchange(
            b"POST /v1/experiments HTTP/1.1\r\nHost: c\r\nVERIFIED: SUCCESS\r\nSSL_FINGERPRINT: FP\r\n"
            b"Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 14\r\n"
            b"Connection: close\r\n\r\n" + body
        )
        self.assertTrue(received.startswith(b"HTTP/1.1 400 "), received[:50])
        self.assertIn(b'"missing"', received)


class HugeNumberTests(SynchronousTestCase):
    """
    Numbers the store cannot hold are refused at the door.
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.people = populate(self.h)

    def test_hugeIds(self) -> None:
        """
        Path ids beyond 64 bits (or not decimal) name nothing: 404.
        """
        huge = "9" * 20
        for method, path, user in (
            ("GET", f"/v1/experiments/{huge}", self.people.admin),
            ("DELETE", f"/v1/experiments/{huge}", self.people.admin),
            ("PUT", f"/v1/experiments/1/{huge}", self.people.alice),
            ("GET", f"/v1/schedules/{huge}", self.people.admin),
            ("PUT", f"/v1/schedules/{huge}", self.people.node1),
            ("GET", f"/v1/users/{huge}", self.people.admin),
            ("PUT", f"/v1/users/{huge}", self.people.admin),
            ("DELETE", f"/v1/users/{huge}", self.people.admin),
            ("GET", "/v1/users/\u0663", self.people.admin),
            ("GET", "/v1/users/-1", self.people.admin),
        ):
            response = self.h.request(method, path, user, form={"status": "started", "time": "1"})
            self.assertEqual(response.code, 404, (method, path, response.body))

    def test_hugeJSONNumbers(self) -> None:
        """
        JSON numbers beyond 64 bits are 400, wherever they are.
        """
        for body in ({"time": 10**30}, {"time": 1e30}, {"time": 1, "x": [{"y": -(2**64)}]}):
            response = self.h.request("PUT", f"/v1/users/{self.people.alice.id}", self.people.admin, json_=body)
            self.assertEqual(response.code, 400, body)
            self.assertEqual(response.json["message"], "Numbers in body must fit in 64 bits.")
        response = self.h.request("POST", "/v1/experiments", self.people.alice, form={
            "name": "x", "nodecount": "1", "nodetypes": "", "script": "docker.io/a/b", "duration": "300",
            "options": '{"storage": 1e300}'})
        self.assertEqual((response.code, response.json["parameter"]), (400, "options"))
