"""
The agent's results shipper (node/shipper.py) on a L{Clock} against the
in-memory controller of node.testing: periodic scans, chunked resumable
uploads, the queue surviving a restart, outages, the allowance, the
bandwidth cap, the results meter, and clean-up after the end.
"""

from __future__ import annotations

import hashlib
import os

from twisted.internet.defer import succeed
from twisted.internet.task import Clock
from twisted.trial.unittest import SynchronousTestCase

from node.ratelimit import TokenBucket
from node.shipper import ResultShipper, sha256File
from node.testing import FakeResultsController


def syncHash(path: str):
    return succeed(sha256File(path))


class ShipperTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.base = self.mktemp()
        self.state = os.path.join(self.base, "state")
        self.results = os.path.join(self.base, "results")
        os.makedirs(self.state)
        os.makedirs(os.path.join(self.results, "sub"))
        self.clock = Clock()
        self.controller = FakeResultsController()
        self.over: list[str] = []

    def shipper(self, **kwargs) -> ResultShipper:
        kwargs.setdefault("chunk", 1000)
        shipper = ResultShipper(
            self.clock, self.controller, self.state, period=10, hasher=syncHash, overQuota=self.over.append, **kwargs
        )
        shipper.startService()
        self.addCleanup(shipper.stopService)
        return shipper

    def write(self, path: str, data: bytes) -> None:
        with open(os.path.join(self.results, path), "wb") as f:
            f.write(data)

    def test_shipsNewAndChangedFiles(self) -> None:
        """
        Each period new and changed files go up in chunks; unchanged ones
        are not sent again; the bytes sent are the results meter.
        """
        shipper = self.shipper()
        shipper.track("7", self.results, 100_000)
        self.write("a.txt", b"a" * 2500)
        self.write("sub/b.bin", b"b" * 10)
        self.clock.advance(10)
        self.assertEqual(self.controller.stored, {("7", "a.txt"): b"a" * 2500, ("7", "sub/b.bin"): b"b" * 10})
        self.assertEqual(self.controller.chunks, 4)
        self.assertEqual(self.controller.traffic["7"], {"results": 2510})
        self.write("a.txt", b"A" * 5)
        self.clock.advance(10)
        self.assertEqual(self.controller.stored[("7", "a.txt")], b"A" * 5)
        self.assertEqual(self.controller.chunks, 5)
        self.clock.advance(10)
        self.assertEqual(self.controller.chunks, 5)

    def test_afterTheEndThenCleanUp(self) -> None:
        """
        When the task ends its files go at once; then the directory is removed
        and the task forgotten.
        """
        shipper = self.shipper()
        shipper.track("7", self.results, 100_000)
        self.write("last.txt", b"bye")
        shipper.finish("7")
        self.assertEqual(self.controller.stored, {("7", "last.txt"): b"bye"})
        self.assertFalse(os.path.exists(self.results))
        self.assertEqual(shipper.tasks, {})

    def test_resumesAfterRestartAndOutage(self) -> None:
        """
        The controller keeps what arrived; a new shipper on the same state
        (a restart) asks where it stands and sends only the rest; while the
        controller is down nothing is lost.
        """
        data = os.urandom(5000)
        digest = hashlib.sha256(data).hexdigest()
        self.write("big", data)
        first = self.shipper()
        first.track("7", self.results, 100_000)
        first.stopService()
        self.controller.partial[("7", "big", 5000, digest)] = data[:3000]  # what arrived before the crash
        self.controller.down = True
        second = self.shipper()
        self.clock.advance(10)
        self.assertEqual(self.controller.stored, {})
        self.controller.down = False
        self.clock.advance(10)
        self.assertEqual(self.controller.stored, {("7", "big"): data})
        self.assertEqual(self.controller.chunks, 2)
        self.assertEqual(self.controller.traffic["7"], {"results": 2000})
        self.assertEqual(list(second.tasks), ["7"])

    def test_allowance(self) -> None:
        """
        Files past the allowance are not sent; a running task over it is reported.
        """
        shipper = self.shipper()
        shipper.track("7", self.results, 100)
        self.write("a", b"a" * 60)
        self.write("b", b"b" * 60)
        self.clock.advance(10)
        self.assertEqual(list(self.controller.stored), [("7", "a")])
        self.assertEqual(self.over, ["7"])
        self.assertEqual(shipper.tasks["7"].files["b"].refused, "over the task's storage allowance")

    def test_windowClosed(self) -> None:
        """
        A controller that takes no more results for the task: it is dropped.
        """
        shipper = self.shipper()
        shipper.track("7", self.results, 100)
        self.write("a", b"a")
        self.controller.closed.add("7")
        self.clock.advance(10)
        self.assertEqual(shipper.tasks, {})
        self.assertFalse(os.path.exists(self.results))

    def test_bandwidthCap(self) -> None:
        """
        With a cap of 1000 bytes/s, 5000 bytes take four seconds after the
        first second's burst.
        """
        shipper = self.shipper(bandwidth=1000)
        shipper.track("7", self.results, 100_000)
        self.write("big", b"x" * 5000)
        self.clock.advance(10)
        sent = []
        for _ in range(5):
            sent.append(sum(len(v) for v in self.controller.partial.values()))
            self.clock.advance(1)
        self.assertEqual(sent, [1000, 2000, 3000, 4000, 0])
        self.assertEqual(self.controller.stored[("7", "big")], b"x" * 5000)


class TokenBucketTests(SynchronousTestCase):
    def test_rate(self) -> None:
        clock = Clock()
        bucket = TokenBucket(clock, 100)
        self.assertTrue(bucket.take(100).called)
        waiting = bucket.take(300)
        clock.advance(2.9)
        self.assertFalse(waiting.called)
        clock.advance(0.1)
        self.assertTrue(waiting.called)
        self.assertTrue(TokenBucket(clock, 0).take(10**9).called)


class AgentTests(SynchronousTestCase):
    """
    The agent and its shipper: a deployed task's results directory is
    tracked with its storage option, and a running task whose results
    outgrow it is stopped as failed.
    """

    def test_overTheAllowanceFails(self) -> None:
        from node.agent import MarvindAgent
        from node.client import HTTPControllerClient
        from node.state import StateStore
        from tests.agentharness import NOW, AgentHarness
        from treq.testing import StubTreq

        h = AgentHarness(self)
        h.task("10", 300, 900, image="registry.example/ping:2", storage=100)
        client = HTTPControllerClient(StubTreq(h.controller.root()), h.clock, h.config.controllerURL, 10.0)
        store = StateStore(h.directory)
        shipper = ResultShipper(h.clock, FakeResultsController(), h.directory, period=30, hasher=syncHash)
        agent = MarvindAgent(h.config, h.clock, client, h.hooks, store, randomFloat=lambda: 0.5, shipper=shipper)
        agent.startService()
        self.addCleanup(agent.stopService)
        h.clock.advance(0)
        results = store.resultsDirectory("10")
        self.assertEqual((shipper.tasks["10"].directory, shipper.tasks["10"].allowance), (results, 100))
        h.advanceTo(NOW + 300)
        with open(os.path.join(results, "big"), "wb") as f:
            f.write(b"x" * 101)
        h.advanceTo(NOW + 330)
        self.assertEqual(h.controller.statuses("10")[-1], "failed; storage quota exceeded")
