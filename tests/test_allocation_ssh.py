"""
The legacy C{ssh} option: one SSH key pair per task, the private half to the
node only, the public half on C{/backend/pubkeys} while the task lives.
"""

from __future__ import annotations

from cryptography.hazmat.primitives import serialization
from twisted.trial.unittest import SynchronousTestCase

from rest_compat.testing import RESTHarness, book, populate
from tests.core_helpers import NOW, CoreTestCase


class CoreTests(CoreTestCase):
    """
    Key pairs made at booking.
    """

    def test_keyPerTask(self) -> None:
        """
        Every schedule gets its own pair; the public keys are served until the
        task ends or becomes final.
        """
        a = self.book(nodecount=2, start=NOW + 100, duration=600, options={"ssh": {"server": "t.example"}})
        publics = [s.deploymentOptions["ssh.public"] for s in a.schedules]
        self.assertEqual(len(set(publics)), 2)
        for schedule in a.schedules:
            key = serialization.load_ssh_private_key(schedule.deploymentOptions["_ssh.private"].encode(), None)
            shown = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
            self.assertEqual(shown.decode(), schedule.deploymentOptions["ssh.public"])
            self.assertEqual(schedule.deploymentOptions["ssh"], {"server": "t.example"})
        self.assertEqual(self.inTxn(lambda txn: txn.publicKeys(NOW)), publics)
        self.assertEqual(self.inTxn(lambda txn: txn.publicKeys(NOW + 700)), [])
        self.successResultOf(self.scheduler.deleteExperiment(a.experiment.id, self.alice.id))
        self.assertEqual(self.inTxn(lambda txn: txn.publicKeys(NOW)), [])

    def test_noKeysWithoutOption(self) -> None:
        """
        No option, or a false one ("0" included), makes no keys.
        """
        for options in ({}, {"ssh": "0"}, {"ssh": False}):
            a = self.book(start=NOW + 100 + 1000 * len(options), options=options)
            self.assertNotIn("_ssh.private", a.schedules[0].deploymentOptions)
        self.assertEqual(self.inTxn(lambda txn: txn.publicKeys(NOW)), [])


class RESTTests(SynchronousTestCase):
    """
    What the REST face shows of the keys.
    """

    def test_privateOnlyToTheNode(self) -> None:
        h = RESTHarness()
        people = populate(h)
        expid = book(h, people.alice, options={"nodes": "1", "ssh": 1})
        keys = h.request("GET", "/v1/backend/pubkeys", None).json
        self.assertEqual(len(keys), 1)
        self.assertTrue(keys[0].startswith("ssh-ed25519 "))
        shown = h.request("GET", f"/v1/experiments/{expid}/schedules", people.alice).json
        self.assertNotIn("_ssh.private", str(shown))
        beat = h.request("PUT", "/v1/resources/1", people.node1, form={"maintenance": "0"}).json
        options = beat["tasks"][0]["deployment_options"]
        self.assertIn("BEGIN OPENSSH PRIVATE KEY", options["_ssh.private"])
        self.assertEqual(options["ssh.public"], keys[0])
