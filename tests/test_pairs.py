"""
Node pairs (legacy head/tail nodes, legacy reference §5.3, §5.8, §9.1): the
store's pair table on SQLite and PostgreSQL, setting and deleting pairs, which
nodes each C{interfaceCount} may use, booking pairs (two scripts, even counts,
two schedules per instance, a pair free only when both nodes are), the slot
search for pairs and the data quota counted per interface.
"""

from __future__ import annotations

from typing import Any

import pytest

from am.core.errors import BadRequest, Conflict, NotFound
from am.core.model import Node
from am.core.policy import Policy
from tests.core_helpers import NOW, CoreTestCase, assertNoOverlap
from tests.storefixtures import Backend, postgres, store  # noqa: F401 (fixtures)

HEAD_IMAGE = "docker.io/monroe/head"
TAIL_IMAGE = "docker.io/monroe/tail"


# -- the store, on both databases --------------------------------------------------


def _nodes(txn: Any, count: int = 5) -> None:
    for i in range(1, count + 1):
        txn.putNode(Node(id=str(i)))


def test_storePairs(store: Backend) -> None:  # noqa: F811
    """
    A pair is (head, tail); setting one replaces every pair either node was
    in, as head or tail, so a node is in at most one pair.
    """
    store.run(_nodes)
    store.run(lambda txn: txn.setPair("1", "2"))
    store.run(lambda txn: txn.setPair("3", "4"))
    assert store.run(lambda txn: txn.listPairs()) == [("1", "2"), ("3", "4")]
    # 2 was a tail, 3 a head: both old pairs go.
    store.run(lambda txn: txn.setPair("2", "3"))
    assert store.run(lambda txn: txn.listPairs()) == [("2", "3")]
    store.run(lambda txn: txn.setPair("5", "1"))
    assert store.run(lambda txn: txn.listPairs()) == [("2", "3"), ("5", "1")]
    assert store.reopen().run(lambda txn: txn.listPairs()) == [("2", "3"), ("5", "1")]


def test_storeDeletePairs(store: Backend) -> None:  # noqa: F811
    """
    Deleting removes the node's pair whichever end it is, and says how many
    went; a deleted node takes its pair with it.
    """
    store.run(_nodes)
    store.run(lambda txn: txn.setPair("1", "2"))
    store.run(lambda txn: txn.setPair("3", "4"))
    assert store.run(lambda txn: txn.deletePairs("2")) == 1
    assert store.run(lambda txn: txn.deletePairs("2")) == 0
    assert store.run(lambda txn: txn.deletePairs("99")) == 0
    assert store.run(lambda txn: txn.listPairs()) == [("3", "4")]
    store.run(lambda txn: txn.deleteNode("4"))
    assert store.run(lambda txn: txn.listPairs()) == []


def test_storeRefusesSelfPair(store: Backend) -> None:  # noqa: F811
    """
    The table itself refuses a node paired with itself or an unknown node,
    and the refusal rolls back cleanly.
    """
    store.run(_nodes)
    store.run(lambda txn: txn.setPair("1", "2"))
    for head, tail in (("3", "3"), ("3", "99")):
        with pytest.raises(Exception):
            store.run(lambda txn: txn.setPair(head, tail))
    assert store.run(lambda txn: txn.listPairs()) == [("1", "2")]


# -- setting pairs through the core --------------------------------------------------


class PairSettingTests(CoreTestCase):
    """
    L{am.core.scheduler.Scheduler.setNodePair} and C{deleteNodePair}.
    """

    def pairs(self) -> list[tuple[str, str]]:
        return self.inTxn(lambda txn: txn.listPairs())

    def test_setAndReplace(self) -> None:
        """
        The change is visible at once (legacy: after the next hourly refresh).
        """
        self.assertEqual(self.successResultOf(self.scheduler.setNodePair("1", "2")), ("1", "2"))
        self.successResultOf(self.scheduler.setNodePair("2", "1"))
        self.assertEqual(self.pairs(), [("2", "1")])

    def test_errors(self) -> None:
        """
        Unknown nodes are 404, self-pairs and empty tails 400, deleting what
        is not there 404 with a message that says so.
        """
        for head, tail, kind, message in (
            ("1", "99", NotFound, "Node id does not exist."),
            ("99", "1", NotFound, "Node id does not exist."),
            ("1", "1", BadRequest, "A node cannot be paired with itself."),
            ("1", " ", BadRequest, "pair must be the id of the tail node, or delete"),
        ):
            error = self.failureResultOf(self.scheduler.setNodePair(head, tail), kind).value
            self.assertEqual(error.message, message)
        error = self.failureResultOf(self.scheduler.deleteNodePair("1"), NotFound).value
        self.assertEqual(error.message, "Node 1 is not in a pair.")
        self.failureResultOf(self.scheduler.deleteNodePair("99"), NotFound)
        self.successResultOf(self.scheduler.setNodePair("1", "2"))
        self.assertEqual(self.successResultOf(self.scheduler.deleteNodePair("2")), 1)
        self.assertEqual(self.pairs(), [])


# -- booking ----------------------------------------------------------------------


class PairBookingTests(CoreTestCase):
    """
    Five nodes: 1 is the head of 2, 3 the head of 4, 5 is single.
    """

    def setUp(self) -> None:
        super().setUp()
        self.successResultOf(self.scheduler.setNodePair("1", "2"))
        self.successResultOf(self.scheduler.setNodePair("3", "4"))

    def nodesOf(self, allocation: Any) -> list[str]:
        return sorted(s.nodeid for s in allocation.schedules)

    def test_defaultTakesNoHeads(self) -> None:
        """
        C{interfaceCount} 1 (and 0 or less, as legacy) takes single nodes and
        tails, never heads.
        """
        for count in (1, 0, -3, "1"):
            allocation = self.book(nodecount=3, start=0, interfaceCount=count)
            self.assertEqual(self.nodesOf(allocation), ["2", "4", "5"], count)
        self.refused(Conflict, nodecount=4, start=NOW + 9000)

    def test_headsTakeNoTails(self) -> None:
        """
        C{interfaceCount=2} takes single nodes and heads, never tails.
        """
        self.assertEqual(self.nodesOf(self.book(nodecount=3, start=0, interfaceCount=2)), ["1", "3", "5"])
        error = self.refused(Conflict, nodecount=4, start=NOW + 9000, interfaceCount=2)
        self.assertEqual((error.extra["available"], error.extra["requested"]), (3, 4))

    def test_pairsByInterfaceCount(self) -> None:
        """
        C{interfaceCount} 3 or more books pairs; C{nodecount} counts nodes, the
        result counts pairs, and each pair's head and tail run the one script.
        """
        allocation = self.book(nodecount=4, start=NOW + 1000, interfaceCount=3)
        self.assertTrue(allocation.paired)
        self.assertEqual(allocation.nodecount, 2)
        self.assertEqual([s.nodeid for s in allocation.schedules], ["1", "2", "3", "4"])
        self.assertEqual({s.deploymentOptions["script"] for s in allocation.schedules},
                         {"docker.io/monroe/ping"})
        self.assertEqual({(s.start, s.stop) for s in allocation.schedules}, {(NOW + 1000, NOW + 1600)})
        self.assertEqual(allocation.experiment.options["paired"], True)
        self.assertEqual(allocation.experiment.options["interfaceCount"], 3)

    def test_twoScriptsMeanPairs(self) -> None:
        """
        Two scripts force pair mode: the head runs the first, the tail the second.
        """
        allocation = self.book(nodecount=2, start=NOW + 1000, script=f"{HEAD_IMAGE}|{TAIL_IMAGE}")
        self.assertEqual(
            [(s.nodeid, s.deploymentOptions["script"]) for s in allocation.schedules],
            [("1", HEAD_IMAGE), ("2", TAIL_IMAGE)],
        )
        self.assertEqual(allocation.experiment.script, f"{HEAD_IMAGE}|{TAIL_IMAGE}")
        stored = self.inTxn(lambda txn: txn.getExperiment(allocation.experiment.id))
        self.assertEqual(stored.script, f"{HEAD_IMAGE}|{TAIL_IMAGE}")

    def test_oddCountRefused(self) -> None:
        """
        In pair mode the node count must be even (legacy message).
        """
        for kwargs in ({"interfaceCount": 3}, {"script": f"{HEAD_IMAGE}|{TAIL_IMAGE}"}):
            error = self.refused(Conflict, nodecount=3, **kwargs)
            self.assertEqual(error.message, "Node count must be even for paired nodes.")

    def test_scriptsChecked(self) -> None:
        """
        More than two scripts, or a bad second one, are refused.
        """
        error = self.refused(Conflict, nodecount=2, script="a|b|c")
        self.assertEqual((error.message, error.extra["code"]), ("Only two scripts allowed in script parameter", "sc2"))
        error = self.refused(Conflict, nodecount=2, script=f"{HEAD_IMAGE}|bad url")
        self.assertEqual(error.message, "Container URL contains invalid characters")

    def test_pairFreeOnlyWhenBothAre(self) -> None:
        """
        A busy tail makes its pair unavailable: the message counts pairs, the
        suggestions count nodes, and as soon as possible waits for the tail.
        """
        self.book(nodes=["2"], start=NOW + 1000, duration=600)
        self.book(nodes=["3"], start=NOW + 1000, duration=1200)
        error = self.refused(Conflict, nodecount=2, start=NOW + 1000, interfaceCount=3)
        self.assertEqual(
            error.message,
            "Only 0/1 node pairs are available during interval 1 (2001-09-10T00:16:40 to 2001-09-10T00:26:40).",
        )
        self.assertEqual((error.extra["available"], error.extra["requested"], error.extra["code"]), (0, 1, "sc1"))
        first = error.extra["suggestions"][0]
        self.assertEqual((first["start"], first["nodecount"], first["max_nodecount"]), (NOW + 1720, 2, 2))
        allocation = self.book(nodecount=4, start=0, duration=2000, interfaceCount=3)
        self.assertEqual(allocation.schedules[0].start, NOW + 2320)  # 3's window + padding
        self.assertEqual(self.nodesOf(allocation), ["1", "2", "3", "4"])
        assertNoOverlap(self.blocking(), 120)

    def test_pairNeedsBothEligible(self) -> None:
        """
        A head whose tail is out of service, or does not match the filter,
        is not a pair anyone can book.
        """
        self.successResultOf(self.scheduler.setNodeStatus("4", "maintenance"))
        error = self.refused(Conflict, nodecount=4, start=NOW + 1000, interfaceCount=3)
        self.assertEqual((error.extra["available"], error.extra["requested"]), (1, 2))
        self.successResultOf(self.scheduler.setNodeTags("1", "site:a"))
        error = self.refused(Conflict, nodecount=2, start=NOW + 1000, interfaceCount=3, nodetypes="site:a")
        self.assertEqual(error.extra["available"], 0)
        self.successResultOf(self.scheduler.setNodeTags("2", "site:a"))
        self.book(nodecount=2, start=NOW + 1000, interfaceCount=3, nodetypes="site:a")

    def test_recurringPairs(self) -> None:
        """
        Every instance books both nodes of each pair.
        """
        allocation = self.book(nodecount=2, start=NOW + 1200, interfaceCount=3, recurrence="simple",
                               period=3600, until=NOW + 1200 + 3 * 3600)
        self.assertEqual(allocation.intervals, 3)
        self.assertEqual(len(allocation.schedules), 6)
        self.assertEqual(allocation.charged["time"], 600 * 2 * 3)

    def test_explicitNodesTakeAnyNode(self) -> None:
        """
        Named nodes qualify whatever C{interfaceCount} says, as singles...
        """
        allocation = self.book(nodecount=2, start=NOW + 1000, nodes=["1", "3"], interfaceCount=1)
        self.assertEqual(self.nodesOf(allocation), ["1", "3"])
        self.assertFalse(allocation.paired)
        allocation = self.book(nodecount=2, start=NOW + 3000, nodes=["2", "4"], interfaceCount=3)
        self.assertEqual(self.nodesOf(allocation), ["2", "4"])

    def test_explicitNodesWithTwoScripts(self) -> None:
        """
        ...unless two scripts ask for pairs, whose heads and tails must both be named.
        """
        script = f"{HEAD_IMAGE}|{TAIL_IMAGE}"
        error = self.refused(Conflict, nodecount=2, start=NOW + 1000, nodes=["1", "4"], script=script)
        self.assertEqual(error.extra["available"], 0)
        self.assertEqual(error.extra["selection"], ["1", "4"])
        allocation = self.book(nodecount=2, start=NOW + 1000, nodes=["3", "4"], script=script)
        self.assertEqual([s.nodeid for s in allocation.schedules], ["3", "4"])

    def test_unpairedNodesGivePairModeNothing(self) -> None:
        """
        Without pairs, pair mode finds nothing, and says so.
        """
        self.successResultOf(self.scheduler.deleteNodePair("1"))
        self.successResultOf(self.scheduler.deleteNodePair("3"))
        error = self.refused(Conflict, nodecount=2, start=0, interfaceCount=3)
        self.assertEqual((error.extra["available"], error.extra["requested"]), (0, 1))

    def test_deployedNodesNeedBothScriptsTrusted(self) -> None:
        """
        The deployment-repository rule looks at both scripts.
        """
        self.scheduler.policy = Policy(maintenance=(), deploymentRepository="repo.example/")
        for nodeid in ("1", "2"):
            self.successResultOf(self.scheduler.setNodeTags(nodeid, "type:deployed"))
        error = self.refused(Conflict, nodecount=2, start=NOW + 1000, nodetypes="type:deployed",
                             script=f"repo.example/a|{TAIL_IMAGE}")
        self.assertEqual(error.message, "Deployed nodes can only schedule experiments hosted by repo.example/")
        allocation = self.book(nodecount=2, start=NOW + 1000, script=f"{HEAD_IMAGE}|{TAIL_IMAGE}")
        self.assertEqual(self.nodesOf(allocation), ["3", "4"])
        allocation = self.book(nodecount=2, start=NOW + 1000, script="repo.example/a|repo.example/b",
                               nodetypes="type:deployed")
        self.assertEqual(self.nodesOf(allocation), ["1", "2"])


class PairDataQuotaTests(CoreTestCase):
    """
    Data is charged per interface: 1.5 per node in pairs, 2 for head nodes,
    per node (heads 2) for named nodes (legacy reference §9.1, example F).
    """

    def setUp(self) -> None:
        super().setUp()
        self.successResultOf(self.scheduler.setNodePair("1", "2"))
        self.successResultOf(self.scheduler.setNodePair("3", "4"))

    def charged(self, **kwargs: Any) -> tuple[int, list[int]]:
        allocation = self.book(start=0, traffic=100, **kwargs)
        return allocation.charged["data"], [s.chargedData for s in allocation.schedules]

    def test_pairs(self) -> None:
        self.assertEqual(self.charged(nodecount=2, interfaceCount=3), (300, [200, 100]))
        self.assertEqual(self.charged(nodecount=2, script=f"{HEAD_IMAGE}|{TAIL_IMAGE}"), (300, [200, 100]))

    def test_headsAndSingles(self) -> None:
        self.assertEqual(self.charged(nodecount=2, interfaceCount=2), (400, [200, 200]))
        self.assertEqual(self.charged(nodecount=2, interfaceCount=1), (200, [100, 100]))

    def test_workedExampleF(self) -> None:
        """
        Example F's rule: head nodes, 3 intervals, traffic 10^8 give
        10^8 x nodecount x 2 x 3 bytes.
        """
        allocation = self.book(nodecount=3, start=NOW + 1200, interfaceCount=2, traffic=10**8, duration=3600,
                               recurrence="simple", period=7200, until=NOW + 1200 + 3 * 7200)
        self.assertEqual(allocation.charged["data"], 10**8 * 3 * 2 * 3)

    def test_namedNodesPerNode(self) -> None:
        """
        Named nodes count two interfaces for a head and one otherwise.
        """
        self.assertEqual(self.charged(nodecount=3, nodes=["1", "2", "5"]), (400, [200, 100, 100]))

    def test_quotaChecked(self) -> None:
        """
        The check uses the same counts, before choosing nodes or after for
        named ones.
        """
        self.successResultOf(self.scheduler.updateUser(self.alice.id, quota={"data": 250}))
        error = self.refused(Conflict, nodecount=2, start=0, traffic=100, interfaceCount=3)
        self.assertEqual((error.message, error.extra["required"]), ("Insufficient data quota.", 300))
        error = self.refused(Conflict, nodecount=2, start=0, traffic=100, nodes=["1", "3"])
        self.assertEqual((error.message, error.extra["required"]), ("Insufficient data quota.", 400))
        self.assertEqual(self.charged(nodecount=2, nodes=["2", "4"]), (200, [100, 100]))


class PairFindTests(CoreTestCase):
    """
    C{find} with C{interfaceCount}: pairs free at once, counted in nodes.
    """

    def setUp(self) -> None:
        super().setUp()
        self.successResultOf(self.scheduler.setNodePair("1", "2"))
        self.successResultOf(self.scheduler.setNodePair("3", "4"))

    def find(self, **kwargs: Any) -> list[dict[str, Any]]:
        return self.successResultOf(self.scheduler.find(duration=600, **kwargs))

    def test_pairs(self) -> None:
        self.book(nodes=["4"], start=NOW + 60, duration=600)
        [slot] = self.find(nodecount=2, interfaceCount=3)
        self.assertEqual((slot["start"], slot["nodecount"], slot["max_nodecount"]), (NOW + 60, 2, 2))
        [slot] = self.find(nodecount=4, interfaceCount=3)
        self.assertEqual((slot["start"], slot["max_nodecount"]), (NOW + 780, 4))

    def test_modes(self) -> None:
        self.assertEqual(self.find(nodecount=1)[0]["max_nodecount"], 3)  # 2, 4, 5
        self.assertEqual(self.find(nodecount=1, interfaceCount=2)[0]["max_nodecount"], 3)  # 1, 3, 5
        self.assertEqual(self.find(nodecount=1, nodes=["1", "2"], interfaceCount=3)[0]["max_nodecount"], 2)
        self.failureResultOf(self.scheduler.find(nodecount=6, duration=600, interfaceCount=3), Conflict)

    def test_oddCount(self) -> None:
        error = self.failureResultOf(self.scheduler.find(nodecount=1, interfaceCount=3), Conflict).value
        self.assertEqual(error.message, "Node count must be even for paired nodes.")
        self.failureResultOf(self.scheduler.find(interfaceCount="x"), BadRequest)
