"""
Cost preview (issue 16, item 4): a dry run says what a booking would charge
per quota and what would remain, on the core, the REST face and the GENI
face; a refusal for quota says which quota, how much is missing and when it
resets.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from am.core import quotas
from am.core.errors import Conflict
from rest_compat.testing import RESTHarness, populate
from rspec.times import formatTime
from tests.core_helpers import NOW, CoreTestCase
from tests.geni_helpers import GeniTestCase, requestRSpec
from tests.trust_helpers import NOW as GENI_NOW

IMAGE = "docker.io/monroe/ping"


class CorePreviewTests(CoreTestCase):
    """
    L{am.core.allocation.allocate} with C{dryrun}.
    """

    def test_chargedAndRemaining(self) -> None:
        """
        A recurring dry run charges every instance and node, says what would
        remain and when each quota resets, and writes nothing (no journal
        row, no quota change).
        """
        before = self.inTxn(lambda txn: txn.listJournal(self.alice.id))
        result = self.book(nodecount=2, duration=600, start=NOW + 3600, traffic=1000, storage=50,
                           recurrence="simple", period=3600, until=NOW + 3 * 3600 + 10, dryrun=True)
        self.assertEqual(result.charged, {"time": 2 * 3 * 600, "data": 2 * 3 * 1000, "storage": 2 * 3 * 50})
        self.assertEqual(result.remaining, {
            "time": self.policy.defaultQuotaTime - 3600,
            "data": self.policy.defaultQuotaData - 6000,
            "storage": self.policy.defaultQuotaStorage - 300,
        })
        self.assertEqual(result.resets, dict.fromkeys(("time", "data", "storage"), quotas.firstOfNextMonth(NOW)))
        self.assertEqual(self.inTxn(lambda txn: txn.listJournal(self.alice.id)), before)
        self.assertEqual(self.blocking(), [])

    def test_previewAfterDueReset(self) -> None:
        """
        A dry run after the monthly reset date sees the reset value without
        writing it (a dry run may run in a read-only transaction).
        """
        self.successResultOf(self.scheduler.updateUser(self.alice.id, quota={"time": 5000}))
        self.book(duration=600, start=NOW + 3600)
        self.clock.advance(quotas.firstOfNextMonth(NOW) - NOW + 10)
        later = int(self.clock.seconds())
        result = self.book(duration=600, start=later + 3600, nodes=["1"], dryrun=True)
        self.assertEqual(result.remaining["time"], 5000 - 600)
        self.assertEqual(result.resets["time"], quotas.firstOfNextMonth(later))
        stored = self.inTxn(lambda txn: txn.getQuotas(self.alice.id))["time"]
        self.assertEqual(stored.current, 4400)  # the reset is written by the next change, not the preview

    def test_refusalSaysWhatIsMissing(self) -> None:
        """
        A booking (or a dry run) above a quota is refused naming the quota,
        how much is missing and when the quota resets.
        """
        self.successResultOf(self.scheduler.updateUser(self.alice.id, quota={"storage": 100}))
        for dryrun in (False, True):
            error = self.refused(Conflict, nodecount=3, start=NOW + 3600, storage=50, dryrun=dryrun)
            self.assertEqual(error.message, "Insufficient storage quota.")
            self.assertEqual(
                (error.extra["quota"], error.extra["missing"], error.extra["resets"]),
                ("storage", 50, quotas.firstOfNextMonth(NOW)),
            )


class RESTPreviewTests(SynchronousTestCase):
    """
    C{POST /v1/experiments} with C{dryrun}.
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.people = populate(self.h)
        self.now = int(self.h.clock.seconds())

    def post(self, **body):
        values = {"name": "d", "nodecount": 1, "nodetypes": "", "script": IMAGE, "duration": 600,
                  "start": self.now + 3600}
        values.update(body)
        return self.h.request("POST", "/v1/experiments", self.people.alice, json_=values)

    def test_dryrunCost(self) -> None:
        """
        The dry run answers the charge, what would remain and the resets
        (checked against the OpenAPI document by the harness).
        """
        response = self.post(dryrun=1, nodecount=2, options={"traffic": 10, "storage": 20})
        self.assertEqual(response.code, 200, response.body)
        body = response.json
        self.assertEqual(body["charged"], {"time": 1200, "data": 20, "storage": 40})
        policy = self.h.scheduler.policy
        self.assertEqual(body["remaining"], {"time": policy.defaultQuotaTime - 1200,
                                             "data": policy.defaultQuotaData - 20,
                                             "storage": policy.defaultQuotaStorage - 40})
        self.assertEqual(set(body["resets"].values()), {quotas.firstOfNextMonth(self.now)})

    def test_quotaRefusal(self) -> None:
        """
        A refusal for quota names the quota, the missing amount and the reset.
        """
        self.assertEqual(self.h.request("PUT", f"/v1/users/{self.people.alice.id}", self.people.admin,
                                        form={"time": "100"}).code, 200)
        response = self.post(dryrun=1, duration=300)
        self.assertEqual(response.code, 409, response.body)
        self.assertEqual(response.json["message"], "Could not allocate. Insufficient time quota.")
        self.assertEqual((response.json["quota"], response.json["missing"], response.json["resets"]),
                         ("time", 200, quotas.firstOfNextMonth(self.now)))


class GeniPreviewTests(GeniTestCase):
    """
    GENI Allocate with C{marvin_dryrun}.
    """

    def test_allocateDryRun(self) -> None:
        """
        The dry run answers the cost and books nothing: a real Allocate of
        the same slice still succeeds afterwards.
        """
        start = int(GENI_NOW) + 600
        value = self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(["1", "2"], start, start + 600),
                        {"marvin_dryrun": True})
        self.assertIs(value["marvin_dryrun"], True)
        self.assertEqual(value["marvin_charged"], {"time": 1200, "data": 0, "storage": 0})
        policy = self.scheduler.policy
        self.assertEqual(value["marvin_remaining"]["time"], policy.defaultQuotaTime - 1200)
        self.assertEqual(value["marvin_resets"]["time"], formatTime(quotas.firstOfNextMonth(int(GENI_NOW))))
        self.assertEqual([s["geni_start_time"] for s in value["marvin_slivers"]], [formatTime(start)] * 2)
        self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(["1", "2"], start, start + 600), {})

    def test_quotaRefusal(self) -> None:
        """
        A refusal for quota is REFUSED, its output and value saying which
        quota, how much is missing and when it resets.
        """
        self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(["1"], int(GENI_NOW) + 600, int(GENI_NOW) + 1200),
                {"marvin_dryrun": 1})
        user = self.successResultOf(self.scheduler.read(lambda txn: txn.findUser(urn=self.p.alice.urn)))
        self.successResultOf(self.scheduler.updateUser(user.id, quota={"time": 100}))
        answer = self.call("Allocate", self.s1, self.sliceCred(),
                           requestRSpec(["1"], int(GENI_NOW) + 600, int(GENI_NOW) + 1200), {"marvin_dryrun": True})
        self.assertEqual(answer["code"]["geni_code"], 7, answer)
        resets = formatTime(quotas.firstOfNextMonth(int(GENI_NOW)))
        self.assertEqual(answer["value"], {"marvin_quota": "time", "marvin_missing": 500, "marvin_resets": resets})
        self.assertIn(f"500 more time needed; the quota resets at {resets}", answer["output"])
