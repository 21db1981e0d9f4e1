"""
Core rules from the hostile review (issue 13): text no store can hold is a
BadRequest naming the field, whatever the command; the last valid admin stays;
re-keying an invalidated user says so; the configuration's bootstrap users are
restored at start-up.
"""

from __future__ import annotations

from typing import Any

import attrs

from am.core.errors import BadRequest, Conflict
from am.core.model import Node
from am.core.values import _storable, unstorable
from am.ctl.config import BootstrapUser
from am.ctl.service import bootstrapUsers
from tests.core_helpers import CoreTestCase


class UnstorableTextTests(CoreTestCase):
    def test_unstorableFindsTheField(self) -> None:
        self.assertIsNone(unstorable({"a": ["ok", "ünï"]}, "options"))
        self.assertEqual(unstorable({"a": ["ok", "x\ud800"]}, "options"), "options.a[1]")
        self.assertEqual(unstorable({"\udfff": 1}, "options"), "options (a key in it)")
        self.assertEqual(unstorable("a\x00b", "name"), "name")
        # an empty parameter name is still a name: what it holds is checked
        self.assertEqual(unstorable({"\x00": 1}, ""), " (a key in it)")
        self.assertEqual(unstorable({"k": {"\x00": 1}}, ""), ".k (a key in it)")
        self.assertEqual(unstorable("\x00", ""), "")

    def test_policyCheckedOnce(self) -> None:
        """
        The scheduler's policy is checked like any argument, once per policy
        object: text no store can hold in it refuses commands, naming the field.
        """
        self.scheduler.policy = attrs.evolve(self.scheduler.policy, deploymentRepository="repo\x00")
        failure = self.failureResultOf(self.scheduler.allocate(self.request()), BadRequest)
        self.assertEqual(failure.value.extra["parameter"], "deploymentRepository")
        self.scheduler.policy = attrs.evolve(self.scheduler.policy, deploymentRepository="repo")
        self.book()

    def test_fastCheckAgrees(self) -> None:
        """
        The quick check that skips naming agrees with L{unstorable} on every shape.
        """
        bad = ("x\ud800", "a\x00", "\udfff")
        good = ("", "plain", "ünï", 1, 2.5, True, None)
        samples: list = list(bad + good)
        for leaf in bad + good:
            samples += [[leaf], (1, leaf), {"k": leaf}, {leaf: 1} if isinstance(leaf, str) else {}, {"a": [{"b": leaf}]},
                        {leaf} if leaf is not None else set(), Node(id="1", hostname=leaf if isinstance(leaf, str) else "h")]
        deep: Any = "x\ud800"
        for _ in range(70):
            deep = [deep]
        samples.append(deep)
        for value in samples:
            self.assertEqual(_storable(value), unstorable(value, "p") is None, repr(value))

    def test_allocationNamesTheField(self) -> None:
        for field, value in (("name", "exp\ud800"), ("script", "img\x00"), ("nodetypes", "type:\udc80")):
            error = self.refused(BadRequest, **{field: value})
            self.assertEqual(error.extra["parameter"], field)
        error = self.refused(BadRequest, options={"note": ["\ud83d"]})
        self.assertEqual(error.extra["parameter"], "options.note[0]")
        self.assertEqual(self.blocking(), [])

    def test_usersNameTheField(self) -> None:
        failure = self.failureResultOf(
            self.scheduler.addUser(name="eve\ud800", role="user", fingerprint="e" * 40), BadRequest
        )
        self.assertEqual(failure.value.extra["parameter"], "name")
        failure = self.failureResultOf(
            self.scheduler.addUser(name="eve", role="user", fingerprint="e" * 40, project="p\x00"), BadRequest
        )
        self.assertEqual(failure.value.extra["parameter"], "project")
        failure = self.failureResultOf(self.scheduler.setNodeTags("1", "site:\ud800"), BadRequest)
        self.assertEqual(failure.value.extra["parameter"], "tags")

    def test_positionalArgumentsNamedBySignature(self) -> None:
        failure = self.failureResultOf(self.scheduler.setNodePair("1", "\x00"), BadRequest)
        self.assertEqual(failure.value.extra["parameter"], "tailid")
        failure = self.failureResultOf(self.scheduler.read(lambda txn, word: None, "\ud800"), BadRequest)
        self.assertEqual(failure.value.extra["parameter"], "word")


class LastAdminTests(CoreTestCase):
    def test_lastAdminCannotBeInvalidated(self) -> None:
        failure = self.failureResultOf(self.scheduler.invalidateUser(self.admin.id), Conflict)
        self.assertIn("last valid admin", failure.value.message)
        self.assertFalse(self.inTxn(lambda txn: txn.getUser(self.admin.id)).invalid)

    def test_anotherAdminMayGo(self) -> None:
        other = self.successResultOf(self.scheduler.addUser(name="op", role="admin", fingerprint="d" * 40))
        self.successResultOf(self.scheduler.invalidateUser(self.admin.id))
        self.failureResultOf(self.scheduler.invalidateUser(other.id), Conflict)
        self.successResultOf(self.scheduler.invalidateUser(self.alice.id))

    def test_rekeyingAnInvalidatedUserIsAConflict(self) -> None:
        self.successResultOf(self.scheduler.invalidateUser(self.alice.id))
        failure = self.failureResultOf(self.scheduler.updateUser(self.alice.id, fingerprint="f" * 40), Conflict)
        self.assertIn("invalidated", failure.value.message)
        self.assertEqual(self.inTxn(lambda txn: txn.getUser(self.alice.id)).fingerprint, "a" * 40)


class BootstrapTests(CoreTestCase):
    def test_configuredAdminRestored(self) -> None:
        other = self.successResultOf(self.scheduler.addUser(name="op", role="admin", fingerprint="d" * 40))
        self.successResultOf(self.scheduler.invalidateUser(self.admin.id))
        users = (BootstrapUser(name="root", fingerprint="c" * 40), BootstrapUser(name="new", fingerprint="9" * 40))
        self.assertEqual(self.successResultOf(bootstrapUsers(self.scheduler, users)), ["root", "new"])
        restored = self.inTxn(lambda txn: txn.getUser(self.admin.id))
        self.assertEqual((restored.invalid, restored.role), (False, "admin"))
        self.assertEqual(self.inTxn(lambda txn: txn.findUser(fingerprint="9" * 40)).role, "admin")
        self.assertEqual(self.successResultOf(bootstrapUsers(self.scheduler, users)), [])
        self.assertFalse(self.inTxn(lambda txn: txn.getUser(other.id)).invalid)

    def test_configuredRoleWins(self) -> None:
        users = (BootstrapUser(name="alice", fingerprint="a" * 40),)
        self.assertEqual(self.successResultOf(bootstrapUsers(self.scheduler, users)), ["alice"])
        self.assertEqual(self.inTxn(lambda txn: txn.getUser(self.alice.id)).role, "admin")
