"""
Inventory: the field mapping (including the legacy Nimbus2 routers shape),
the static file, the background sync on a Clock, and the HTTP fetcher
against a fake inventory server on loopback.
"""

from __future__ import annotations

import json
import os

import yaml
from twisted.internet import reactor
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.trial.unittest import SynchronousTestCase, TestCase
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Site

from am.ctl.config import parseConfig
from am.ctl.inventory import (
    FieldMapping,
    HTTPInventoryFetcher,
    InventoryAPI,
    InventoryError,
    InventorySync,
    entriesFromDocument,
)
from am.core.model import NODE_MISSING
from am.testing import makeScheduler

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def nimbusMapping() -> FieldMapping:
    """
    The mapping of the shipped example configuration (legacy Nimbus2 routers).
    """
    with open(os.path.join(ROOT, "files", "etc", "marvinctld.conf")) as f:
        document = yaml.safe_load(f)
    return parseConfig(document, checkFiles=False).inventory.api.mapping


def router(rid, tags=("deployed",), **fields):
    record = {
        "routerId": rid,
        "hostname": f"nimbus-{rid}",
        "allTags": list(tags),
        "countryName": " Norway ",
        "model": "APU2D",
        "groupName": "Oslo",
        "LastGpsLatitude": None,
        "addressGpsLatitude": 59.91,
        "LastGpsLongitude": 10.75,
        "addressGpsLongitude": 10.7,
        "streetName": "Storgata 1",
        "zipCode": "0155",
    }
    record.update(fields)
    return record


class MappingTests(SynchronousTestCase):
    def test_nimbusRouter(self):
        entry = nimbusMapping().entry(router(4711, tags=["lte", "deployed", "testing"]))
        self.assertEqual(
            entry,
            {
                "id": "4711",
                "hostname": "nimbus-4711",
                "status": "active",
                "tags": {
                    # the last of testing, deployed, retired, storage, development present
                    "type": "deployed",
                    "country": "norway",
                    "model": "apu2d",
                    "project": "oslo",
                    "site": "oslo",
                    # LastGpsLatitude is null: the address one is used
                    "latitude": "59.91",
                    "longitude": "10.75",
                    "address": "storgata 1 - norway 0155",
                },
            },
        )

    def test_nimbusStatusAndTypeDefaults(self):
        mapping = nimbusMapping()
        retired = mapping.entry(router(1, tags=["retired"]))
        self.assertEqual((retired["status"], retired["tags"]["type"]), ("disabled", "retired"))
        bare = mapping.entry(router(2, tags=[], countryName=None))
        self.assertEqual((bare["status"], bare["tags"]["type"]), ("disabled", "disabled"))
        self.assertNotIn("country", bare["tags"])
        self.assertNotIn("address", bare["tags"])  # a template needs every field

    def test_simpleMappingAndDottedPaths(self):
        mapping = FieldMapping.fromConfig(
            {
                "id": "node.serial",
                "hostname": ["fqdn", "name"],
                "status": {"field": "state", "map": {"up": "active", "service": "maintenance"}, "default": "disabled"},
                "tags": {"country": "location.country", "type": {"value": "testing"}},
            }
        )
        record = {"node": {"serial": "A1"}, "name": "a1", "state": "service", "location": {"country": "SE"}}
        self.assertEqual(
            mapping.entry(record),
            {"id": "A1", "hostname": "a1", "status": "maintenance", "tags": {"country": "SE", "type": "testing"}},
        )
        self.assertEqual(mapping.entry({"node": {"serial": 7}, "state": "gone"})["status"], "disabled")

    def test_defaultsAreTheNativeShape(self):
        mapping = FieldMapping.fromConfig(None)
        self.assertEqual(mapping.entry({"id": 3, "hostname": "h"}), {"id": "3", "hostname": "h", "status": "active", "tags": {}})

    def test_badRecords(self):
        mapping = FieldMapping.fromConfig({"status": "status"})
        for record, message in [
            ({"hostname": "x"}, "record without a usable id"),
            ({"id": ""}, "record without a usable id"),
            ({"id": True}, "record without a usable id"),
            ({"id": {"a": 1}}, "record without a usable id"),
            ("text", "record without a usable id"),
            ({"id": 1, "status": "on fire"}, "node 1: status 'on fire' is not one of"),
        ]:
            with self.assertRaises(InventoryError) as info:
                mapping.entry(record)
            self.assertIn(message, str(info.exception))

    def test_documents(self):
        mapping = FieldMapping.fromConfig(None)
        entries, problems = entriesFromDocument(
            {"data": {"items": [{"id": 1}, {"hostname": "no id"}, {"id": 1}, {"id": 2}]}}, mapping, "data.items"
        )
        self.assertEqual([e["id"] for e in entries], ["1", "2"])
        self.assertEqual(len(problems), 2)
        self.assertIn("listed twice", problems[1])
        self.assertEqual(entriesFromDocument([{"id": "x"}], mapping)[0][0]["id"], "x")
        for document, key in [({"statusCode": 429, "message": "slow down"}, "routers"), ({"routers": []}, None), ("x", None)]:
            with self.assertRaises(InventoryError) as info:
                entriesFromDocument(document, mapping, key)
            self.assertIn("expected a list of nodes", str(info.exception))


class FakeSource:
    """
    An inventory API answer under the test's control: a document or a failure.
    """

    def __init__(self, answer):
        self.answer = answer
        self.calls = 0
        self.pending = None

    def __call__(self):
        self.calls += 1
        if self.answer == "pending":
            self.pending = Deferred()
            return self.pending
        if isinstance(self.answer, Exception):
            return fail(self.answer)
        return succeed(self.answer)


def api(listKey=None):
    return InventoryAPI(url="http://inventory.test/nodes", mapping=FieldMapping.fromConfig(None), listKey=listKey)


def nodes(store):
    return {n.id: n for n in store.run(lambda txn: txn.listNodes())}


class SyncTests(SynchronousTestCase):
    def setUp(self):
        self.scheduler, self.store, _ = makeScheduler(nodes=0)
        self.clock = Clock()

    def makeSync(self, answer, staticFile=None, listKey=None):
        self.source = FakeSource(answer)
        return InventorySync(
            self.scheduler, self.clock, staticFile=staticFile, fetch=self.source, api=api(listKey),
            period=3600, retry=60,
        )

    def test_appliesAndMarksMissing(self):
        sync = self.makeSync([{"id": 1, "hostname": "a"}, {"id": 2, "hostname": "b", "tags": {"type": "x"}}])
        sync.start()
        self.addCleanup(sync.stop)
        self.assertEqual(self.source.calls, 1)
        self.assertEqual(sync.lastResult, {"added": 2, "updated": 0, "missing": 0})
        self.assertEqual(set(nodes(self.store)), {"1", "2"})
        self.source.answer = [{"id": 2, "hostname": "b2"}]
        self.clock.advance(3599)
        self.assertEqual(self.source.calls, 1)
        self.clock.advance(1)
        self.assertEqual(self.source.calls, 2)
        current = nodes(self.store)
        self.assertEqual(set(current), {"1", "2"})  # never deleted
        self.assertEqual(current["1"].status, NODE_MISSING)
        self.assertEqual(current["2"].hostname, "b2")

    def _brokenKeepsNodes(self, broken, expected):
        sync = self.makeSync([{"id": 1}, {"id": 2}])
        sync.start()
        self.addCleanup(sync.stop)
        before = nodes(self.store)
        self.source.answer = broken
        with capturedLogs() as events:
            self.clock.advance(3600)
        self.assertEqual(nodes(self.store), before)
        self.assertEqual(len(sync.lastProblems), 1)
        self.assertIn(expected, sync.lastProblems[0])
        errors = [e for e in events if e["log_level"].name == "error"]
        self.assertEqual(len(errors), 1)
        self.assertIn(expected, errors[0]["problem"])
        # retried after `retry`, not after a whole period
        self.source.answer = [{"id": 1}, {"id": 2, "hostname": "back"}]
        self.clock.advance(60)
        self.assertEqual(nodes(self.store)["2"].hostname, "back")
        self.assertEqual(sync.lastProblems, [])
        calls = self.source.calls
        self.clock.advance(60)
        self.assertEqual(self.source.calls, calls)  # back to the period

    def test_unreachable(self):
        self._brokenKeepsNodes(ConnectionRefusedError("Connection refused"), "Connection refused")

    def test_failing(self):
        self._brokenKeepsNodes(InventoryError("HTTP 500 Internal Server Error"), "HTTP 500")

    def test_malformed(self):
        self._brokenKeepsNodes({"statusCode": 401}, "expected a list of nodes")

    def test_empty(self):
        self._brokenKeepsNodes([], "no nodes in the answer; nothing changed from it")

    def test_brokenRecordsAreSkippedButNothingGoesMissing(self):
        sync = self.makeSync([{"id": 1}, {"id": 2}])
        sync.start()
        self.addCleanup(sync.stop)
        self.source.answer = [{"id": 2, "hostname": "new"}, {"hostname": "who am I"}]
        with capturedLogs() as events:
            self.clock.advance(3600)
        current = nodes(self.store)
        self.assertEqual(current["2"].hostname, "new")
        self.assertNotEqual(current["1"].status, NODE_MISSING)
        self.assertTrue(any("record without a usable id" in str(e.get("problem")) for e in events))

    def test_staticAndAPI(self):
        path = self.mktemp()
        with open(path, "w") as f:
            yaml.safe_dump({"nodes": [{"id": "s1", "hostname": "static", "tags": {"type": "testing"}}]}, f)
        sync = self.makeSync([{"id": "a1"}], staticFile=path)
        self.assertEqual(self.successResultOf(sync.syncNow()), {"added": 2, "updated": 0, "missing": 0})
        # the API fails: the static nodes are still applied, the API's are not made missing
        self.source.answer = ConnectionRefusedError()
        with open(path, "w") as f:
            yaml.safe_dump([{"id": "s1", "hostname": "static2"}], f)
        self.assertEqual(self.successResultOf(sync.syncNow()), {"added": 0, "updated": 1, "missing": 0})
        current = nodes(self.store)
        self.assertEqual(current["s1"].hostname, "static2")
        self.assertEqual(current["a1"].status, "active")
        # a static file broken while running is logged and changes nothing of its own
        with open(path, "w") as f:
            f.write("nodes: [")
        self.source.answer = [{"id": "a1", "hostname": "api"}]
        self.successResultOf(sync.syncNow())
        self.assertIn("not valid YAML", sync.lastProblems[0])
        self.assertEqual(nodes(self.store)["s1"].status, "active")

    def test_concurrentSyncsJoin(self):
        sync = self.makeSync("pending")
        first, second = sync.syncNow(), sync.syncNow()
        self.assertEqual(self.source.calls, 1)
        self.assertNoResult(first)
        self.source.pending.callback([{"id": 9}])
        self.assertEqual(self.successResultOf(first), self.successResultOf(second))
        self.assertEqual(set(nodes(self.store)), {"9"})
        sync.syncNow()
        self.assertEqual(self.source.calls, 2)

    def test_applyFailureIsLoggedAndTheLoopGoesOn(self):
        sync = self.makeSync([{"id": 1}])

        def broken(entries, complete=True):
            return fail(RuntimeError("database is locked"))

        self.scheduler.applyInventory = broken
        sync.start()
        self.addCleanup(sync.stop)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)
        self.assertIn("database is locked", sync.lastProblems[-1])
        del self.scheduler.applyInventory
        self.clock.advance(60)
        self.assertEqual(set(nodes(self.store)), {"1"})

    def test_syncOrFailSaysWhatWentWrong(self):
        sync = self.makeSync([{"id": 1}])
        self.assertEqual(self.successResultOf(sync.syncOrFail()), {"added": 1, "updated": 0, "missing": 0})
        self.source.answer = InventoryError("HTTP 401 Unauthorized")
        failure = self.failureResultOf(sync.syncOrFail(), InventoryError)
        self.assertEqual(str(failure.value), "api http://inventory.test/nodes: HTTP 401 Unauthorized")

    def test_nothingConfigured(self):
        sync = InventorySync(self.scheduler, self.clock)
        self.assertFalse(sync.configured)
        sync.start()
        self.assertEqual(self.clock.getDelayedCalls(), [])


class FakeInventory(Resource):
    """
    An inventory API on loopback: answers with C{self.body} and C{self.code},
    or never (C{hang}), and records the requests' token header.
    """

    isLeaf = True

    def __init__(self):
        super().__init__()
        self.code = 200
        self.body = b"[]"
        self.hang = False
        self.tokens = []
        self.hanging = []

    def render_GET(self, request):
        self.tokens.append(request.getHeader(b"x-api-token"))
        if self.hang:
            self.hanging.append(request)
            return NOT_DONE_YET
        request.setResponseCode(self.code)
        request.setHeader(b"content-type", b"application/json")
        return self.body


class HTTPFetcherTests(TestCase):
    """
    The real fetcher and sync against a real HTTP server on loopback.
    """

    def setUp(self):
        self.inventory = FakeInventory()
        self.port = reactor.listenTCP(0, Site(self.inventory), interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.url = f"http://127.0.0.1:{self.port.getHost().port}/api/v1/routers?limit=99999"

    def fetcher(self, **kwargs):
        settings = dict(
            url=self.url, mapping=nimbusMapping(), listKey="routers", tokenHeader="X-Api-Token",
            token="s3cret", timeout=5.0,
        )
        settings.update(kwargs)
        return HTTPInventoryFetcher(reactor, InventoryAPI(**settings))

    async def test_syncOverHTTP(self):
        self.inventory.body = json.dumps({"routers": [router(1, ["testing"]), router(2, ["retired"])]}).encode()
        scheduler, store, _ = makeScheduler(nodes=0)
        fetcher = self.fetcher()
        sync = InventorySync(scheduler, reactor, fetch=fetcher, api=fetcher.api)
        counts = await sync.syncNow()
        self.assertEqual(counts, {"added": 2, "updated": 0, "missing": 0})
        self.assertEqual(self.inventory.tokens, [b"s3cret"])
        current = nodes(store)
        self.assertEqual((current["1"].status, current["1"].tags["type"]), ("active", "testing"))
        self.assertEqual((current["2"].status, current["2"].tags["type"]), ("disabled", "retired"))

    async def _failsWith(self, message, **kwargs):
        try:
            await self.fetcher(**kwargs)()
        except Exception as e:
            from am.ctl.inventory import _describe
            from twisted.python.failure import Failure

            text = str(e) if isinstance(e, InventoryError) else _describe(Failure(e))
            self.assertIn(message, text)
        else:
            self.fail("no error")

    async def test_httpError(self):
        self.inventory.code = 503
        self.inventory.body = b"<html>down</html>"
        await self._failsWith("HTTP 503 Service Unavailable")

    async def test_notJSON(self):
        self.inventory.body = b"<html>login</html>"
        await self._failsWith("answer is not JSON")

    async def test_tooBig(self):
        self.inventory.body = b"[" + b" " * 4096 + b"]"
        await self._failsWith("answer larger than 1024 bytes", maxBytes=1024)

    async def test_noAnswerInTime(self):
        self.inventory.hang = True
        self.addCleanup(lambda: [r.finish() for r in self.inventory.hanging])
        await self._failsWith("no answer in 0.2 s", timeout=0.2)

    async def test_unreachable(self):
        await self.port.stopListening()
        await self._failsWith("refused")

    async def test_failingSourceLeavesNodesAndRecovers(self):
        scheduler, store, _ = makeScheduler(nodes=0)
        fetcher = self.fetcher()
        sync = InventorySync(scheduler, reactor, fetch=fetcher, api=fetcher.api, period=3600, retry=1)
        self.inventory.body = json.dumps({"routers": [router(1), router(2)]}).encode()
        await sync.syncNow()
        before = nodes(store)
        for code, body in [(500, b'{"statusCode": 500}'), (200, b'{"statusCode": 429}'), (200, b'{"routers": []}'), (200, b"{")]:
            self.inventory.code, self.inventory.body = code, body
            self.assertIsNone(await sync.syncNow())
            self.assertEqual(nodes(store), before)
            self.assertEqual(len(sync.lastProblems), 1)
        self.inventory.code, self.inventory.body = 200, json.dumps({"routers": [router(2)]}).encode()
        self.assertEqual(await sync.syncNow(), {"added": 0, "updated": 0, "missing": 1})  # node 1 unchanged
