"""
Users and nodes: uniqueness, invalidation, admin tags and inventory snapshots.
"""

from __future__ import annotations

from am.core.errors import BadRequest, Conflict, NotFound
from am.core.model import Node
from tests.core_helpers import NOW, CoreTestCase


class UserTests(CoreTestCase):
    """
    Creating and changing users.
    """

    def test_noSilentReplacement(self) -> None:
        """
        A second user with the same fingerprint or name and project is a conflict;
        the first user is untouched.
        """
        self.failureResultOf(self.scheduler.addUser(name="eve", role="user", fingerprint="A" * 40), Conflict)
        self.failureResultOf(self.scheduler.addUser(name="alice", role="user", fingerprint="f" * 40), Conflict)
        users = self.inTxn(lambda txn: txn.listUsers())
        self.assertEqual([u.name for u in users], ["alice", "bob", "root"])

    def test_validation(self) -> None:
        """
        Bad roles, fingerprints and node names are bad requests naming the parameter.
        """
        for kwargs, parameter in (
            (dict(name="x", role="whatever", fingerprint="e" * 40), "role"),
            (dict(name="x", role="user", fingerprint="xyz"), "ssl"),
            (dict(name="x", role="user"), "ssl"),
            (dict(name="robot", role="node", fingerprint="e" * 40), "name"),
            (dict(name=" ", role="user", fingerprint="e" * 40), "name"),
        ):
            failure = self.failureResultOf(self.scheduler.addUser(**kwargs), BadRequest)
            self.assertEqual(failure.value.extra["parameter"], parameter)

    def test_fingerprintNormalised(self) -> None:
        """
        Colons and upper case are accepted and stored in nginx's form.
        """
        user = self.successResultOf(self.scheduler.addUser(
            name="x", role="user", fingerprint=":".join(["AB"] * 20)))
        self.assertEqual(user.fingerprint, "ab" * 20)

    def test_nodeUserLinked(self) -> None:
        """
        A node user named 'Node <id>' speaks for that node.
        """
        user = self.successResultOf(self.scheduler.addUser(name="Node 42", role="node", fingerprint="e" * 40))
        self.assertEqual(user.nodeid, "42")

    def test_invalidate(self) -> None:
        """
        Invalidated users are no longer active.
        """
        self.successResultOf(self.scheduler.invalidateUser(self.bob.id))
        bob = self.inTxn(lambda txn: txn.getUser(self.bob.id))
        self.assertFalse(bob.active)
        self.failureResultOf(self.scheduler.invalidateUser(999), NotFound)

    def test_updateFingerprintAndQuota(self) -> None:
        """
        Fingerprint and quota change together or not at all.
        """
        self.failureResultOf(
            self.scheduler.updateUser(self.alice.id, fingerprint="d" * 40, quota={"time": "x"}), BadRequest)
        self.assertEqual(self.inTxn(lambda txn: txn.getUser(self.alice.id)).fingerprint, "a" * 40)
        self.failureResultOf(self.scheduler.updateUser(self.alice.id, fingerprint="b" * 40), Conflict)
        self.successResultOf(self.scheduler.updateUser(self.alice.id, fingerprint="d" * 40, quota={"data": 7}))
        self.assertEqual(self.inTxn(lambda txn: txn.getQuotas(self.alice.id))["data"].current, 7)


class NodeTests(CoreTestCase):
    """
    Admin tags and inventory snapshots.
    """

    def test_adminTagsWin(self) -> None:
        """
        Admin tags override inventory tags and survive a sync.
        """
        self.successResultOf(self.scheduler.setNodeTags("1", "type:deployed, site:lab"))
        self.successResultOf(self.scheduler.applyInventory(
            [{"id": "1", "tags": {"type": "testing", "country": "no"}}], complete=False))
        node = self.inTxn(lambda txn: txn.getNode("1"))
        self.assertEqual(node.tags, {"type": "deployed", "site": "lab", "country": "no"})
        self.failureResultOf(self.scheduler.setNodeTags("1", "nocolon"), BadRequest)
        self.failureResultOf(self.scheduler.setNodeTags("99", "a:b"), NotFound)

    def test_inventorySnapshot(self) -> None:
        """
        New nodes are added, absent ones marked missing, nothing deleted; an empty
        snapshot changes nothing.
        """
        self.book(nodes=["5"], start=NOW + 100)
        counts = self.successResultOf(self.scheduler.applyInventory(
            [{"id": n, "hostname": f"h{n}", "status": "active"} for n in ("1", "2", "9")]))
        self.assertEqual(counts, {"added": 1, "updated": 2, "missing": 3})
        nodes = {n.id: n.status for n in self.inTxn(lambda txn: txn.listNodes())}
        self.assertEqual(nodes, {"1": "active", "2": "active", "3": "missing", "4": "missing",
                                 "5": "missing", "9": "active"})
        self.assertEqual(self.successResultOf(self.scheduler.applyInventory([])),
                         {"added": 0, "updated": 0, "missing": 0})

    def test_inventoryKeepsMaintenance(self) -> None:
        """
        The heartbeat owns maintenance; a sync saying active does not undo it.
        """
        self.putNode(Node(id="1", status="maintenance", heartbeat=NOW))
        self.successResultOf(self.scheduler.applyInventory([{"id": "1", "status": "active"}], complete=False))
        self.assertEqual(self.inTxn(lambda txn: txn.getNode("1")).status, "maintenance")


class BoundsTests(CoreTestCase):
    """
    Numbers and ids beyond what the store holds are refused, never an overflow.
    """

    def test_hugeQuota(self) -> None:
        self.failureResultOf(self.scheduler.updateUser(self.alice.id, quota={"time": 10**30}), BadRequest)
        self.failureResultOf(self.scheduler.updateUser(self.alice.id, quota={"time": 1e30}), BadRequest)

    def test_hugeIds(self) -> None:
        for bad in (2**63, "99999999999999999999", -1, "1e3"):
            self.failureResultOf(self.scheduler.invalidateUser(bad), NotFound)
            self.failureResultOf(self.scheduler.changeStatus(bad, "started", self.admin.id), NotFound)
            self.failureResultOf(self.scheduler.deleteExperiment(bad, self.admin.id), NotFound)

    def test_effectiveQuota(self) -> None:
        """
        A read shows a due monthly reset without writing it.
        """
        from am.core import quotas

        stored = self.inTxn(lambda txn: txn.getQuotas(self.alice.id))
        stored["time"].current = 5
        shown = quotas.effective(stored, stored["time"].resetDate)
        self.assertEqual(shown["time"].current, stored["time"].resetValue)
        self.assertEqual(quotas.effective(stored, NOW)["time"].current, 5)
