"""
Tests for L{rest_compat.resource}: routing with and without C{/v1}, the reply
envelope (JSON encoding, headers), 404/405/413/400/500 handling, OPTIONS,
HEAD, CORS, the request log and a full HTTP round trip through treq.
Hostile and oversized input: L{tests.test_rest_hostile}.
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from treq.testing import StubTreq
from twisted.internet.address import IPv4Address
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource, getChildForRequest
from twisted.web.server import Site

from rest_compat import resource
from rest_compat.cors import CORSPolicy
from rest_compat.testing import RESTHarness, FakeRequest, book, populate


class RoutingTests(SynchronousTestCase):
    """
    Paths, prefixes and methods.
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.people = populate(self.h)

    def test_versionBareAndPrefixed(self) -> None:
        """
        C{/version} answers the JSON string C{"1.0"}, with or without C{/v1}.
        """
        for path in ("/version", "/v1/version", "/version/"):
            response = self.h.request("GET", path)
            self.assertEqual((response.code, response.json), (200, "1.0"), path)

    def test_barePathsServeTheSameAsV1(self) -> None:
        """
        Every route is also served without the C{/v1} prefix.
        """
        for path in ("/resources", "/users", "/experiments", "/schedules", "/backend/auth"):
            bare = self.h.request("GET", path, self.people.admin)
            prefixed = self.h.request("GET", "/v1" + path, self.people.admin)
            self.assertEqual((bare.code, bare.body), (prefixed.code, prefixed.body), path)
            self.assertEqual(bare.code, 200, path)

    def test_trailingSlash(self) -> None:
        """
        C{/v1/resources/} is the collection, as in the legacy routes.
        """
        response = self.h.request("GET", "/v1/resources/", self.people.admin)
        self.assertEqual(response.code, 200)
        self.assertEqual(len(response.json), 3)

    def test_unknownPaths(self) -> None:
        """
        Unknown paths are 404 with a JSON message, before any authentication.
        """
        for path in (
            "/", "/v1", "/v1/", "/nothing", "/v1/backend", "/v1/backend/other", "/v2/resources",
            "/v1/resources/1/foo", "/v1/users/1/foo", "/v1//resources", "/v1/schedules/1/2",
            "/v1/experiments/1/schedules/2/3", "/v1/resources/%ff",
        ):
            response = self.h.request("GET", path)
            self.assertEqual(response.code, 404, path)
            self.assertEqual(response.json, {"message": "Unknown path."}, path)

    def test_methodNotAllowed(self) -> None:
        """
        A known route with a method it does not have is 405 with C{Allow}.
        """
        cases = {
            ("DELETE", "/version"): "GET, HEAD, OPTIONS",
            ("PUT", "/v1/resources"): "GET, HEAD, OPTIONS",
            ("PUT", "/v1/users"): "GET, HEAD, OPTIONS, POST",
            ("POST", "/v1/schedules/1"): "GET, HEAD, OPTIONS, PUT",
            ("GET", "/v1/backend/sync"): "OPTIONS, PUT",
            ("PATCH", "/v1/experiments/1"): "DELETE, GET, HEAD, OPTIONS, PUT",
            ("GET", "/v1/experiments/1/2"): "OPTIONS, PUT",
        }
        for (method, path), allow in cases.items():
            response = self.h.request(method, path, self.people.admin)
            self.assertEqual(response.code, 405, (method, path))
            self.assertEqual(response.header("allow"), allow, (method, path))
            self.assertEqual(response.json, {"message": "Method not allowed."})

    def test_options(self) -> None:
        """
        OPTIONS is open to everyone and answers 204 with C{Allow}.
        """
        response = self.h.request("OPTIONS", "/v1/experiments")
        self.assertEqual(response.code, 204)
        self.assertEqual(response.header("allow"), "GET, HEAD, OPTIONS, POST")
        self.assertEqual(response.body, b"")
        self.assertEqual(self.h.request("OPTIONS", "/v1/nothing").code, 404)

    def test_head(self) -> None:
        """
        HEAD follows the access rules of GET.
        """
        self.assertEqual(self.h.request("HEAD", "/v1/resources", self.people.alice).code, 200)
        self.assertEqual(self.h.request("HEAD", "/v1/resources").code, 401)

    def test_putChildForTheGENIFace(self) -> None:
        """
        The controller can add its own children (C{xmlrpc}); they win over routing.
        """

        class Leaf(Resource):
            isLeaf = True

            def render_GET(self, request):
                return b"xmlrpc here"

        self.h.root.putChild(b"xmlrpc", Leaf())
        self.h.validate = False
        response = self.h.request("GET", "/xmlrpc")
        self.assertEqual(response.body, b"xmlrpc here")
        self.assertEqual(self.h.request("GET", "/version").json, "1.0")


def _firstMatch(segments: list[str]):
    """
    The routing rule stated plainly: the first pattern of L{resource.ROUTES}
    of the path's length whose literals match and whose wildcards are not empty.
    """
    for pattern, route in resource.ROUTES:
        if len(pattern) == len(segments) and all(
            (got != "") if want == "*" else (want == got) for want, got in zip(pattern, segments)
        ):
            return route, tuple(got for want, got in zip(pattern, segments) if want == "*")
    return None


_WORDS = sorted({word for pattern, _ in resource.ROUTES for word in pattern if word != "*"} | {"", "7", "x", "*"})


class ResolveTests(SynchronousTestCase):
    @settings(max_examples=1000, deadline=None)
    @given(st.lists(st.sampled_from(_WORDS), max_size=5))
    def test_firstMatchingPattern(self, segments: list[str]) -> None:
        """
        L{resource.resolve} (which looks only at the patterns of the path's
        length and first segment) finds what the first matching pattern says.
        """
        self.assertEqual(resource.resolve(segments), _firstMatch(segments))

    def test_everyRoute(self) -> None:
        """
        Every pattern, its wildcards filled, resolves to its own route
        (or to an earlier pattern that also matches, as the first match wins).
        """
        for pattern, route in resource.ROUTES:
            segments = ["42" if word == "*" else word for word in pattern]
            self.assertEqual(resource.resolve(segments), _firstMatch(segments))
            self.assertIsNotNone(resource.resolve(segments))


class EnvelopeTests(SynchronousTestCase):
    """
    Encoding, headers and error bodies.
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.people = populate(self.h)

    def test_legacyEncoding(self) -> None:
        """
        Bodies are JSON with sorted keys and two-space indentation, and carry
        C{content-type: application/json} and C{api-version: 1.0}.
        """
        response = self.h.request("GET", "/v1/users/2", self.people.alice)
        self.assertEqual(response.body, (json.dumps(response.json, sort_keys=True, indent=2) + "\n").encode())
        self.assertEqual(response.header("content-type"), "application/json")
        self.assertEqual(response.header("api-version"), "1.0")
        self.assertEqual(response.header("content-length"), str(len(response.body)))

    def test_errorsAreJSONToo(self) -> None:
        """
        Error replies have the same envelope (the legacy server sent none).
        """
        for response in (
            self.h.request("GET", "/v1/resources"),
            self.h.request("GET", "/nothing"),
            self.h.request("POST", "/v1/experiments", self.people.alice, json_={}),
        ):
            self.assertEqual(response.header("content-type"), "application/json")
            self.assertEqual(response.header("api-version"), "1.0")
            self.assertIn("message", response.json)

    def test_bodyTooLarge(self) -> None:
        """
        A body over the limit is 413 with a JSON message, whatever the route.
        """
        h = RESTHarness(maxBody=1000)
        alice = h.addUser("alice")
        response = h.request("POST", "/v1/experiments", alice, body=b"x" * 1001)
        self.assertEqual(response.code, 413)
        self.assertEqual(response.json, {"message": "Request body too large (at most 1000 bytes)."})

    def test_defaultBodyLimitIsOneMebibyte(self) -> None:
        """
        The default limit is 1 MiB.
        """
        body = json.dumps({"name": "x" * (1 << 20)}).encode()
        response = self.h.request("POST", "/v1/experiments", self.people.alice, body=body)
        self.assertEqual(response.code, 413)

    def test_announcedLengthTooLarge(self) -> None:
        """
        A body announced (C{Content-Length}) well over the limit is refused
        as served: the site stores none of it and the face answers 413.
        """
        response = self.h.request("PUT", "/v1/resources/1", self.people.node1, body=b"x" * (10 << 20))
        self.assertEqual(response.code, 413)
        self.assertEqual(response.json["message"], f"Request body too large (at most {1 << 20} bytes).")

    def test_malformedJSON(self) -> None:
        """
        Malformed JSON is 400 naming the problem, never a 500.
        """
        for body in (b"{", b'{"name": }', b"[" * 100000, b'{"a": 1' + b"0" * 5000 + b"}"):
            response = self.h.request(
                "POST", "/v1/experiments", self.people.alice, body=body,
                headers={"Content-Type": "application/json"},
            )
            self.assertEqual(response.code, 400, body[:20])
            self.assertTrue(response.json["message"].startswith("Malformed JSON in body"), response.json)

    def test_jsonBodyMustBeAnObject(self) -> None:
        """
        A JSON body that is not an object is 400 (legacy: 500).
        """
        for body in ([1, 2], "text", 3, None):
            response = self.h.request("POST", "/v1/experiments", self.people.alice, json_=body)
            if body is None:
                # No body at all: the parameters are missing.
                self.assertEqual(response.code, 400)
                continue
            self.assertEqual(response.code, 400)

    def test_jsonArrayBody(self) -> None:
        """
        An array body is refused with the object message.
        """
        response = self.h.request("POST", "/v1/experiments", self.people.alice, json_=[1])
        self.assertEqual(response.json["message"], "The JSON body must be an object.")

    def test_invalidUTF8(self) -> None:
        """
        Non-UTF-8 form values are 400.
        """
        response = self.h.request(
            "POST", "/v1/experiments", self.people.alice, body=b"name=%ff%fe",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        self.assertEqual(response.code, 400)
        self.assertIn("UTF-8", response.json["message"])

    def test_internalErrorHasAnIdAndNoTraceback(self) -> None:
        """
        A real bug answers 500 C{Internal error <id>} and logs the failure
        with the same id; nothing of the exception reaches the client.
        """
        events: list[dict] = []
        self.h.root.application.log = Logger(observer=events.append)

        def broken(*args, **kwargs):
            raise RuntimeError("secret detail")

        self.patch(self.h.scheduler, "read", broken)
        response = self.h.request("GET", "/v1/resources", self.people.alice)
        self.assertEqual(response.code, 500)
        message = response.json["message"]
        self.assertRegex(message, r"^Internal error [0-9a-f]{12}$")
        self.assertNotIn(b"secret", response.body)
        failures = [e for e in events if "log_failure" in e]
        self.assertEqual(len(failures), 1)
        self.assertEqual(failures[0]["requestId"], message.split()[-1])
        self.assertIsInstance(failures[0]["log_failure"].value, RuntimeError)

    def test_oneLogLinePerRequest(self) -> None:
        """
        Each request logs one line: method, path, user, status, duration.
        """
        events: list[dict] = []
        self.h.root.application.log = Logger(observer=events.append)
        self.h.request("GET", "/v1/resources", self.people.alice)
        self.h.request("GET", "/v1/resources")
        self.h.request("GET", "/nothing")
        self.assertEqual(len(events), 3)
        first = events[0]
        self.assertEqual(
            (first["method"], first["path"], first["user"], first["status"]),
            ("GET", "/v1/resources", f"alice#{self.people.alice.id}", 200),
        )
        self.assertGreaterEqual(first["duration"], 0)
        self.assertEqual((events[1]["user"], events[1]["status"]), ("-", 401))
        self.assertEqual(events[2]["status"], 404)

    def test_clientGoneAway(self) -> None:
        """
        When the connection is lost before the answer, nothing is written.
        """
        pending: list[Deferred] = []
        original = self.h.scheduler.read

        def slow(*args, **kwargs):
            d: Deferred = Deferred()
            d.addCallback(lambda _: original(*args, **kwargs))
            pending.append(d)
            return d

        self.patch(self.h.scheduler, "read", slow)
        request = FakeRequest(b"GET", b"/v1/resources", b"", IPv4Address("TCP", "127.0.0.1", 1), None)
        request.requestHeaders.addRawHeader(b"VERIFIED", b"SUCCESS")
        request.requestHeaders.addRawHeader(b"SSL_FINGERPRINT", self.people.alice.fingerprint.encode())
        request.render(getChildForRequest(self.h.root, request))
        request.processingFailed(Failure(ConnectionError("gone")))
        while pending:
            pending.pop(0).callback(None)
        self.assertEqual((request.finished, request.written, request.responseCode), (0, [], None))


class CORSTests(SynchronousTestCase):
    """
    Optional CORS headers and preflights.
    """

    def test_noCORSByDefault(self) -> None:
        """
        Without a CORS configuration no CORS header is sent.
        """
        h = RESTHarness()
        response = h.request("GET", "/version", headers={"Origin": "https://ui.example.org"})
        self.assertIsNone(response.header("access-control-allow-origin"))

    def test_allowedOrigin(self) -> None:
        """
        An allowed origin is echoed with credentials allowed, on every reply.
        """
        h = RESTHarness(cors=["https://ui.example.org"])
        for path in ("/version", "/v1/resources"):
            response = h.request("GET", path, headers={"Origin": "https://ui.example.org"})
            self.assertEqual(response.header("access-control-allow-origin"), "https://ui.example.org")
            self.assertEqual(response.header("access-control-allow-credentials"), "true")
            self.assertEqual(response.header("vary"), "Origin")

    def test_pagingHeadersExposed(self) -> None:
        """
        A page script in the browser can read the next page's cursor and link,
        and whether a held request (C{?wait=}) met its condition.
        """
        h = RESTHarness(cors=["https://ui.example.org"])
        response = h.request("GET", "/version", headers={"Origin": "https://ui.example.org"})
        exposed = [name.strip() for name in response.header("access-control-expose-headers").split(",")]
        self.assertEqual(exposed, ["Location", "api-version", "Link", "X-Marvin-Next",
                                   "X-Marvin-Wait", "X-Marvin-State"])

    def test_otherOrigin(self) -> None:
        """
        Other origins get no CORS headers.
        """
        h = RESTHarness(cors=["https://ui.example.org"])
        response = h.request("GET", "/version", headers={"Origin": "https://evil.example.org"})
        self.assertIsNone(response.header("access-control-allow-origin"))

    def test_preflight(self) -> None:
        """
        A preflight lists the route's methods and the allowed headers.
        """
        h = RESTHarness(cors=CORSPolicy(origins=("*",), maxAge=60))
        response = h.request(
            "OPTIONS", "/v1/experiments/3",
            headers={"Origin": "https://x.example", "Access-Control-Request-Method": "DELETE"},
        )
        self.assertEqual(response.code, 204)
        self.assertEqual(response.header("access-control-allow-origin"), "https://x.example")
        self.assertEqual(response.header("access-control-allow-methods"), "DELETE, GET, HEAD, OPTIONS, PUT")
        self.assertEqual(response.header("access-control-allow-headers"), "Accept, Content-Type")
        self.assertEqual(response.header("access-control-max-age"), "60")

    def test_coerce(self) -> None:
        """
        C{cors} may be C{None}, a list of origins, one origin or a policy.
        """
        self.assertIsNone(CORSPolicy.coerce(None))
        self.assertIsNone(CORSPolicy.coerce([]))
        self.assertEqual(CORSPolicy.coerce("https://a/").origins, ("https://a",))
        policy = CORSPolicy(origins=("https://b",))
        self.assertIs(CORSPolicy.coerce(policy), policy)


class HTTPRoundTripTests(SynchronousTestCase):
    """
    The resource behind a real L{twisted.web.server.Site}, through treq.
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.people = populate(self.h)
        self.treq = StubTreq(self.h.root)

    def call(self, method: str, path: str, user=None, **kwargs):
        headers = kwargs.pop("headers", {})
        if user is not None:
            headers.update({"VERIFIED": "SUCCESS", "SSL_FINGERPRINT": user.fingerprint})
        response = self.successResultOf(
            self.treq.request(method, "http://controller" + path, headers=headers, **kwargs)
        )
        body = self.successResultOf(self.treq.content(response))
        return response, body

    def test_formPostWithStartAndStop(self) -> None:
        """
        A form POST with C{start} and C{stop} books (legacy: 500), and the
        reply carries the fixed C{Location}.
        """
        start = self.h.scheduler.now() + 3600
        response, body = self.call(
            "POST", "/v1/experiments", self.people.alice,
            data={"name": "f", "nodecount": "1", "script": "docker.io/x/y", "nodetypes": "",
                  "start": str(start), "stop": str(start + 600)},
        )
        self.assertEqual(response.code, 201, body)
        expid = json.loads(body)["experiment"]
        self.assertEqual(response.headers.getRawHeaders("location"), [f"/v1/experiments/{expid}"])
        self.assertEqual(response.headers.getRawHeaders("content-type"), ["application/json"])

    def test_heartbeatAsPUTForm(self) -> None:
        """
        The agent's heartbeat is a PUT form, which Twisted does not parse itself.
        """
        book(self.h, self.people.alice, nodes=None, options={"nodes": "1"})
        response, body = self.call(
            "PUT", "/v1/resources/1", self.people.node1,
            data=[("maintenance", "0"), ("interfaces", "[]"), ("limit", "3"), ("known_tasks", "7")],
        )
        self.assertEqual(response.code, 200, body)
        self.assertEqual(len(json.loads(body)["tasks"]), 1)

    def test_headRequest(self) -> None:
        """
        HEAD through a real request sends headers and no body.
        """
        response, body = self.call("HEAD", "/version")
        self.assertEqual((response.code, body), (200, b""))

    def test_routeTableAndHandlersAgree(self) -> None:
        """
        Every route has handlers for exactly its matrix methods.
        """
        from rest_compat import access

        routes = {route for _, route in resource.ROUTES}
        self.assertEqual(routes, set(access.MATRIX))
        cells = {(route, method) for route, methods in access.MATRIX.items() for method in methods}
        self.assertEqual(cells, set(resource.HANDLERS))
