"""
The inventory API with OAuth2 client credentials, over real sockets on
loopback: a fake token endpoint and a fake inventory that accepts only the
tokens the endpoint issued. Token expiry is decided on a L{Clock} (the
network runs on the real reactor), so nothing waits for time to pass.
"""

from __future__ import annotations

import base64
import json
import os
from urllib.parse import unquote

from twisted.internet import reactor
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.trial.unittest import TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from am.ctl.config import ConfigError, parseConfig
from am.ctl.inventory import FieldMapping, HTTPInventoryFetcher, InventoryAPI, InventoryError, InventorySync
from am.ctl.oauth import OAuth2Settings, TokenSource
from am.testing import makeScheduler


class FakeTokenEndpoint(Resource):
    """
    Issues C{tok-1}, C{tok-2}, ... valid C{lifetime} seconds to the one known
    client, or answers C{failWith = (code, body)}, or never (C{hang}).
    """

    isLeaf = True

    def __init__(self, inventory):
        super().__init__()
        self.inventory = inventory
        self.secret = "s3cret/+"
        self.lifetime = 300
        self.failWith = None
        self.hang = False
        self.hanging = []
        self.arrived = Deferred()
        self.seen = []

    def render_POST(self, request):
        form = {k.decode(): [v.decode() for v in vs] for k, vs in request.args.items()}
        auth = request.getHeader(b"authorization")
        self.seen.append({"form": form, "auth": auth, "type": request.getHeader(b"content-type")})
        request.setHeader(b"content-type", b"application/json")
        if self.hang:
            self.hanging.append(request)
            if not self.arrived.called:
                self.arrived.callback(request)
            return NOT_DONE_YET
        if self.failWith is not None:
            code, body = self.failWith
            request.setResponseCode(code)
            return body
        client, secret = None, None
        if auth is not None and auth.startswith(b"Basic "):
            client, _, secret = base64.b64decode(auth[6:]).decode().partition(":")
            client, secret = unquote(client), unquote(secret)
        elif "client_id" in form:
            client, secret = form["client_id"][0], form.get("client_secret", [""])[0]
        if form.get("grant_type") != ["client_credentials"] or (client, secret) != ("marvin", self.secret):
            request.setResponseCode(401)
            return json.dumps({"error": "invalid_client", "error_description": "who are you?"}).encode()
        token = f"tok-{len([s for s in self.seen if s.get('issued')]) + 1}"
        self.seen[-1]["issued"] = token
        self.inventory.valid.add(token)
        answer = {"access_token": token, "token_type": "bearer"}
        if self.lifetime is not None:
            answer["expires_in"] = self.lifetime
        return json.dumps(answer).encode()


class FakeInventory(Resource):
    """
    Answers the node list to a valid bearer token, 401 otherwise.
    """

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.valid = set()
        self.refuseAll = False
        self.used = []
        self.body = json.dumps([{"id": "1", "hostname": "n1"}, {"id": "2", "hostname": "n2"}]).encode()

    def render_GET(self, request):
        header = (request.getHeader(b"authorization") or b"").decode()
        self.used.append(header)
        request.setHeader(b"content-type", b"application/json")
        if self.refuseAll or not header.startswith("Bearer ") or header[7:] not in self.valid:
            request.setResponseCode(401)
            return b'{"message": "token expired"}'
        return self.body


class OAuth2Tests(TestCase):
    def setUp(self):
        root = Resource()
        self.inventory = FakeInventory()
        self.endpoint = FakeTokenEndpoint(self.inventory)
        root.putChild(b"token", self.endpoint)
        root.putChild(b"nodes", self.inventory)
        self.port = reactor.listenTCP(0, Site(root), interface="127.0.0.1")
        self.addCleanup(lambda: self.port.stopListening())
        base = f"http://127.0.0.1:{self.port.getHost().port}"
        self.secretFile = self.mktemp()
        with open(self.secretFile, "w") as f:
            f.write(self.endpoint.secret + "\n")
        self.clock = Clock()
        self.clock.advance(1_000_000)
        self.settings = dict(tokenURL=base + "/token", clientId="marvin", secretFile=self.secretFile,
                             scope="inventory.read", timeout=5.0)
        self.url = base + "/nodes"

    def fetcher(self, **kwargs):
        settings = OAuth2Settings(**{**self.settings, **kwargs})
        api = InventoryAPI(url=self.url, mapping=FieldMapping.fromConfig(None), oauth2=settings, timeout=5.0)
        self.tokens = TokenSource(reactor, settings, clock=self.clock)
        return HTTPInventoryFetcher(reactor, api, tokens=self.tokens)

    async def test_clientCredentials(self):
        """
        One token request (grant, scope, HTTP Basic with the secret from its
        file), then the inventory sees C{Bearer <token>}.
        """
        document = await self.fetcher()()
        self.assertEqual([n["id"] for n in document], ["1", "2"])
        [request] = self.endpoint.seen
        self.assertEqual(request["form"], {"grant_type": ["client_credentials"], "scope": ["inventory.read"]})
        self.assertEqual(request["type"], b"application/x-www-form-urlencoded")
        self.assertTrue(request["auth"].startswith(b"Basic "))
        self.assertEqual(self.inventory.used, ["Bearer tok-1"])

    async def test_secretInTheBody(self):
        await self.fetcher(auth="body")()
        [request] = self.endpoint.seen
        self.assertIsNone(request["auth"])
        self.assertEqual(request["form"]["client_secret"], [self.endpoint.secret])

    async def test_reusedThenRefreshedBeforeExpiry(self):
        """
        The token is reused while fresh and replaced C{margin} seconds before
        it expires (the inventory never sees an expired one).
        """
        fetch = self.fetcher(margin=60)
        await fetch()
        self.clock.advance(239)
        await fetch()
        self.assertEqual(self.tokens.requests, 1)
        self.clock.advance(1)  # 300 - 60
        await fetch()
        self.assertEqual(self.tokens.requests, 2)
        self.assertEqual(self.inventory.used, ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"])

    async def test_shortLivedTokens(self):
        """
        A token living less than twice the margin is refreshed at half its life.
        """
        self.endpoint.lifetime = 30
        fetch = self.fetcher(margin=60)
        await fetch()
        self.clock.advance(14)
        await fetch()
        self.clock.advance(1)
        await fetch()
        self.assertEqual(self.tokens.requests, 2)

    async def test_refreshedOn401(self):
        """
        The inventory drops the token early (revoked, or clocks apart): one
        new token and one more try, and the sync never notices.
        """
        fetch = self.fetcher()
        await fetch()
        self.inventory.valid.clear()
        document = await fetch()
        self.assertEqual(len(document), 2)
        self.assertEqual(self.inventory.used, ["Bearer tok-1", "Bearer tok-1", "Bearer tok-2"])

    async def test_refused401OnlyRetriedOnce(self):
        fetch = self.fetcher()
        self.inventory.refuseAll = True  # no token is ever accepted
        with self.assertRaises(InventoryError) as caught:
            await fetch()
        self.assertEqual(str(caught.exception), "HTTP 401 Unauthorized")
        self.assertEqual(self.tokens.requests, 2)
        self.assertEqual(len(self.inventory.used), 2)

    async def test_noExpiryKeptUntilRefused(self):
        self.endpoint.lifetime = None
        fetch = self.fetcher()
        await fetch()
        self.clock.advance(10 * 86400)
        await fetch()
        self.assertEqual(self.tokens.requests, 1)
        self.inventory.valid.clear()
        await fetch()
        self.assertEqual(self.tokens.requests, 2)

    async def test_failuresBackOff(self):
        """
        A failing token endpoint is asked again only after a pause that
        doubles (5, 10, 20 s, ...) up to the cap; meanwhile fetches fail at
        once with the reason; a success resets the pause.
        """
        self.endpoint.failWith = (503, b'{"error": "temporarily_unavailable"}')
        fetch = self.fetcher(minBackoff=5, maxBackoff=15)
        messages = []
        for advance in (0, 4, 1, 9, 1, 14, 1, 14, 1):
            self.clock.advance(advance)
            with self.assertRaises(InventoryError) as caught:
                await fetch()
            messages.append(str(caught.exception))
        self.assertEqual(self.tokens.requests, 5)
        self.assertEqual(messages[0], "token endpoint: HTTP 503 Service Unavailable: temporarily_unavailable")
        self.assertEqual(messages[1], "token endpoint: HTTP 503 Service Unavailable: temporarily_unavailable; next try in 1 s")
        self.assertEqual(self.inventory.used, [])
        self.endpoint.failWith = None
        self.clock.advance(15)
        await fetch()
        self.endpoint.failWith = (500, b"")
        self.clock.advance(300)
        with self.assertRaises(InventoryError):
            await fetch()
        self.clock.advance(5)  # back to the first pause
        self.endpoint.failWith = None
        await fetch()

    async def test_oldTokenUsedWhileRefreshFails(self):
        fetch = self.fetcher(margin=60)
        await fetch()
        self.endpoint.failWith = (502, b"bad gateway")
        self.clock.advance(250)  # due for refresh, still valid for 50 s
        await fetch()
        self.clock.advance(1)  # in the pause: no request, the old token
        await fetch()
        self.assertEqual(self.inventory.used, ["Bearer tok-1"] * 3)
        self.assertEqual(self.tokens.requests, 2)
        self.clock.advance(60)  # expired and the endpoint still down
        with self.assertRaises(InventoryError):
            await fetch()

    async def test_badAnswers(self):
        for body, message in [
            (b"<html/>", "answer is not a JSON object"),
            (b'{"token_type": "bearer"}', "answer has no usable access_token"),
            (b'{"access_token": "x", "token_type": "mac"}', "token_type 'mac' is not Bearer"),
            (b'{"access_token": "x", "expires_in": "soon"}', "expires_in 'soon' is not a number"),
            (b'{"access_token": "x", "expires_in": 0}', "expires_in 0 is not positive"),
            (b'{"access_token": "' + b"x" * 70000 + b'"}', "answer larger than 65536 bytes"),
        ]:
            self.endpoint.failWith = (200, body)
            with self.assertRaises(InventoryError) as caught:
                await self.fetcher()()
            self.assertIn(message, str(caught.exception))

    async def test_wrongSecretAndRotation(self):
        with open(self.secretFile, "w") as f:
            f.write("old")
        fetch = self.fetcher()
        with self.assertRaises(InventoryError) as caught:
            await fetch()
        self.assertEqual(str(caught.exception), "token endpoint: HTTP 401 Unauthorized: invalid_client (who are you?)")
        with open(self.secretFile, "w") as f:
            f.write(self.endpoint.secret)  # rotated on disk: read at the next request
        self.clock.advance(5)
        await fetch()
        os.remove(self.secretFile)
        self.inventory.valid.clear()
        with self.assertRaises(InventoryError) as caught:
            await fetch()
        self.assertIn("cannot read the client secret file", str(caught.exception))

    async def test_concurrentFetchesShareOneRequest(self):
        self.endpoint.hang = True
        fetch = self.fetcher()
        first, second = fetch(), fetch()
        self.assertEqual(self.tokens.requests, 1)
        request = await self.endpoint.arrived
        self.endpoint.hang = False
        self.assertEqual(len(self.endpoint.hanging), 1)
        request.setResponseCode(200)
        self.inventory.valid.add("shared")
        request.write(b'{"access_token": "shared", "expires_in": 60}')
        request.finish()
        self.assertEqual([len(await first), len(await second)], [2, 2])
        self.assertEqual(self.inventory.used, ["Bearer shared", "Bearer shared"])

    async def test_tokenEndpointSilent(self):
        self.endpoint.hang = True
        self.addCleanup(lambda: [r.finish() for r in self.endpoint.hanging])
        with self.assertRaises(InventoryError) as caught:
            await self.fetcher(timeout=0.2)()
        self.assertEqual(str(caught.exception), "token endpoint: no answer in 0.2 s")

    async def test_syncSurvivesAndRecovers(self):
        """
        Through the real sync: a dead token endpoint is a logged problem that
        changes no node; the next sync after it recovers applies the nodes.
        """
        scheduler, store, _ = makeScheduler(nodes=0)
        fetcher = self.fetcher()
        sync = InventorySync(scheduler, reactor, fetch=fetcher, api=fetcher.api)
        number = self.port.getHost().port
        await self.port.stopListening()
        self.assertIsNone(await sync.syncNow())
        self.assertIn("token endpoint:", sync.lastProblems[0])
        self.assertIn("refused", sync.lastProblems[0])
        root = Resource()
        root.putChild(b"token", self.endpoint)
        root.putChild(b"nodes", self.inventory)
        self.port = reactor.listenTCP(number, Site(root), interface="127.0.0.1")
        self.clock.advance(5)
        self.assertEqual(await sync.syncNow(), {"added": 2, "updated": 0, "missing": 0})
        self.assertEqual(sync.lastProblems, [])


class StaticTokenFileTests(TestCase):
    """
    The static token file keeps working, and is read again for each request.
    """

    async def test_tokenFileReread(self):
        inventory = FakeInventory()
        inventory.valid = {"one", "two"}
        port = reactor.listenTCP(0, Site(inventory), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        path = self.mktemp()
        with open(path, "w") as f:
            f.write("Bearer one\n")
        api = InventoryAPI(url=f"http://127.0.0.1:{port.getHost().port}/", mapping=FieldMapping.fromConfig(None),
                           token="Bearer one", tokenFile=path, timeout=5.0)
        fetch = HTTPInventoryFetcher(reactor, api)
        await fetch()
        with open(path, "w") as f:
            f.write("Bearer two\n")
        await fetch()
        self.assertEqual(inventory.used, ["Bearer one", "Bearer two"])
        os.remove(path)
        with self.assertRaises(InventoryError) as caught:
            await fetch()
        self.assertIn("cannot read the token file", str(caught.exception))


def _config(tmp, oauth2, **api):
    return {
        "database": os.path.join(tmp, "db"),
        "listen": {"http": {"address": "127.0.0.1", "port": 0}},
        "inventory": {"api": {"url": "https://inventory.example/api", "oauth2": oauth2, **api}},
    }


class ConfigTests(TestCase):
    def setUp(self):
        self.tmp = os.path.abspath(self.mktemp())
        os.makedirs(self.tmp)
        with open(os.path.join(self.tmp, "secret"), "w") as f:
            f.write("s3cret\n")

    def test_parsed(self):
        config = parseConfig(_config(self.tmp, {
            "token_url": "https://auth.example/token", "client_id": "marvin", "client_secret_file": "secret",
            "scope": "read", "auth": "body", "refresh_margin": 30, "timeout": 10, "min_backoff": 2, "max_backoff": 60,
        }), self.tmp)
        self.assertEqual(config.inventory.api.oauth2, OAuth2Settings(
            tokenURL="https://auth.example/token", clientId="marvin", secretFile=os.path.join(self.tmp, "secret"),
            scope="read", auth="body", margin=30.0, timeout=10.0, minBackoff=2.0, maxBackoff=60.0,
        ))
        self.assertIsNone(config.inventory.api.token)

    def test_errors(self):
        base = {"token_url": "https://auth.example/token", "client_id": "marvin", "client_secret_file": "secret"}
        for oauth2, api, message in [
            ({**base, "token_url": "ftp://x"}, {}, "inventory.api.oauth2.token_url: must be an http:// or https:// URL"),
            ({k: v for k, v in base.items() if k != "client_id"}, {}, "inventory.api.oauth2.client_id"),
            ({**base, "client_secret_file": "absent"}, {}, "inventory.api.oauth2.client_secret_file: cannot read"),
            ({**base, "auth": "digest"}, {}, "inventory.api.oauth2.auth: must be basic or body"),
            ({**base, "secret": "x"}, {}, "secret"),
            (base, {"token": "Bearer x"}, "give oauth2 or a static token"),
            ({**base, "min_backoff": 10, "max_backoff": 5}, {}, "inventory.api.oauth2.max_backoff"),
        ]:
            with self.assertRaises(ConfigError) as caught:
                parseConfig(_config(self.tmp, oauth2, **api), self.tmp)
            self.assertIn(message, str(caught.exception))
