"""
C{?wait=...&timeout=...} on the REST face (L{rest_compat.waiting}): held
open until the condition holds, answered at the timeout, cleaned up when
the client goes away; bad values are 400s.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from am.core.policy import Policy
from rest_compat.testing import RESTHarness, book, populate


class WaitTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.h = RESTHarness(policy=Policy(maintenance=(), waitMax=120))
        self.people = populate(self.h)
        self.expid = book(self.h, self.people.alice, options={"nodes": "1"})
        self.schedid = self.h.run(lambda txn: txn.schedulesOfExperiment(self.expid)[0].id)

    def pendingCount(self) -> int:
        return len(self.h.scheduler.waiters)

    def test_heldUntilFinal(self) -> None:
        """
        C{wait=final} answers once every schedule is final: here when the
        owner deletes the experiment, with the state after the change.
        """
        path = f"/v1/experiments/{self.expid}?wait=final&timeout=60"
        outcome = self.h.begin("GET", path, self.people.alice)
        self.assertEqual(outcome, [])
        self.assertEqual(self.pendingCount(), 1)
        self.assertEqual(self.h.request("DELETE", f"/v1/experiments/{self.expid}", self.people.alice).code, 200)
        response = self.h.finish("GET", path, outcome)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.header("X-Marvin-Wait"), "met")
        self.assertEqual(response.json["status"], "archived")
        self.assertEqual(self.pendingCount(), 0)

    def test_alreadyTrueAnswersAtOnce(self) -> None:
        response = self.h.request("GET", f"/v1/experiments/{self.expid}/schedules?wait=defined", self.people.alice)
        self.assertEqual(response.header("X-Marvin-Wait"), "met")
        self.assertEqual(self.pendingCount(), 0)

    def test_otherChangesDoNotAnswer(self) -> None:
        """
        A change that does not make the condition true re-arms the wait.
        """
        path = f"/v1/schedules/{self.schedid}?wait=started&timeout=60"
        outcome = self.h.begin("GET", path, self.people.alice)
        report = self.h.request("PUT", f"/v1/schedules/{self.schedid}", self.people.node1, json_={"status": "deployed"})
        self.assertEqual(report.code, 200, report.body)
        self.h.agent.flush()
        self.assertEqual(outcome, [])
        self.h.request("PUT", f"/v1/schedules/{self.schedid}", self.people.node1, json_={"status": "started"})
        response = self.h.finish("GET", path, outcome)
        self.assertEqual((response.header("X-Marvin-Wait"), response.json["status"]), ("met", "started"))

    def test_change(self) -> None:
        """
        Every answer names its state; C{wait=change&from=<state>} answers at
        once if the state moved on since, else at the next status change.
        """
        path = f"/v1/experiments/{self.expid}/schedules"
        first = self.h.request("GET", path, self.people.alice).header("X-Marvin-State")
        self.assertEqual(len(first), 16)
        held = f"{path}?wait=change&from={first}&timeout=60"
        outcome = self.h.begin("GET", held, self.people.alice)
        self.assertEqual(outcome, [])
        self.h.request("PUT", f"/v1/schedules/{self.schedid}", self.people.node1, json_={"status": "deployed"})
        response = self.h.finish("GET", held, outcome)
        self.assertEqual(response.header("X-Marvin-Wait"), "met")
        self.assertNotEqual(response.header("X-Marvin-State"), first)
        self.assertEqual(response.json["schedules"][str(self.schedid)]["status"], "deployed")
        # A client behind by a change gets the news at once.
        stale = self.h.request("GET", f"{path}?wait=change&from={first}", self.people.alice)
        self.assertEqual(stale.header("X-Marvin-Wait"), "met")
        self.assertEqual(self.pendingCount(), 0)

    def test_timeout(self) -> None:
        """
        At the timeout the answer is the current state, marked C{timeout};
        a timeout above the operator's cap is cut to it.
        """
        path = f"/v1/experiments/{self.expid}?wait=final&timeout=100000"
        outcome = self.h.begin("GET", path, self.people.alice)
        self.h.clock.advance(119)
        self.h.agent.flush()
        self.assertEqual(outcome, [])
        self.h.clock.advance(1)
        response = self.h.finish("GET", path, outcome)
        self.assertEqual((response.code, response.header("X-Marvin-Wait")), (200, "timeout"))
        self.assertEqual(response.json["status"], "active")
        self.assertEqual((self.pendingCount(), self.h.clock.getDelayedCalls()), (0, []))

    def test_disconnectCleansUp(self) -> None:
        """
        A client that goes away leaves no waiter and no timer behind.
        """
        self.h.begin("GET", f"/v1/experiments/{self.expid}?wait=final", self.people.alice)
        self.assertEqual(self.pendingCount(), 1)
        self.h.disconnect()
        self.assertEqual((self.pendingCount(), self.h.clock.getDelayedCalls()), (0, []))

    def test_accessStillApplies(self) -> None:
        """
        Another user's experiment is refused at once, not waited on.
        """
        response = self.h.request("GET", f"/v1/experiments/{self.expid}?wait=final", self.people.bob)
        self.assertEqual(response.code, 403)
        self.assertEqual(self.pendingCount(), 0)

    def test_badValues(self) -> None:
        for query, parameter in (
            ("wait=sleeping", "wait"), ("wait=final&timeout=-1", "timeout"), ("wait=final&timeout=x", "timeout"),
            ("timeout=5", "timeout"), ("wait=change", "from"), ("from=abc", "from"),
        ):
            response = self.h.request("GET", f"/v1/experiments/{self.expid}?{query}", self.people.alice)
            self.assertEqual(response.code, 400, query)
            self.assertEqual(response.json.get("parameter"), parameter, query)
