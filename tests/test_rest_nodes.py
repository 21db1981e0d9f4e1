"""
Tests for L{rest_compat.nodes}: the heartbeat and status reports exactly as
marvind sends them (PUT forms) and as JSON, and the replies it relies on.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from rest_compat.testing import RESTHarness, book, populate


class HeartbeatTests(SynchronousTestCase):
    """
    C{PUT /resources/<own id>} by a node.
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.people = populate(self.h)
        self.now = self.h.scheduler.now()

    def beat(self, user=None, nodeid: str = "1", **fields):
        form = {"maintenance": "0", "interfaces": "[]", "limit": "3"}
        form.update(fields)
        return self.h.request("PUT", f"/v1/resources/{nodeid}", user or self.people.node1, form=form)

    def test_replyShape(self) -> None:
        """
        The reply is C{{"interfaces": {}, "tasks": [...]}}; each task has the
        legacy keys, hidden C{_} options included, and C{defined} tasks are
        now C{requested}.
        """
        expid = book(self.h, self.people.alice, options={"nodes": "1", "_eduroam.identity": "me", "vm": 1})
        response = self.beat()
        self.assertEqual(response.code, 200, response.body)
        body = response.json
        self.assertEqual(body["interfaces"], {})
        [task] = body["tasks"]
        schedid = self.h.run(lambda txn: txn.schedulesOfExperiment(expid)[0].id)
        self.assertEqual(task, {
            "id": str(schedid), "nodeid": 1, "expid": expid, "start": self.now + 60, "stop": self.now + 660,
            "status": "requested", "shared": 0,
            "deployment_options": {"_eduroam.identity": "me", "vm": 1, "script": "docker.io/monroe/ping"},
        })
        self.assertEqual(self.h.run(lambda txn: txn.getSchedule(schedid)).status, "requested")

    def test_nonNumericNodeIdIsText(self) -> None:
        """
        Node ids that are not canonical numbers stay text.
        """
        from am.core.model import Node

        self.h.run(lambda txn: txn.putNode(Node(id="lab-7", heartbeat=self.now, inventoryTags={"type": "testing"})))
        lab = self.h.addUser("Node lab-7", "node")
        book(self.h, self.people.alice, options={"nodes": "lab-7"})
        response = self.beat(lab, "lab-7")
        self.assertEqual(response.json["tasks"][0]["nodeid"], "lab-7")

    def test_maintenanceAndInterfaces(self) -> None:
        """
        C{maintenance=1} puts the node in maintenance; C{interfaces} (a JSON
        string) are stored and shown on the resource.
        """
        interfaces = [{"iccid": "8946", "opname": "telia", "host": 10, "netns": 0}, {"opname": "eth0", "mac": "aa"}]
        response = self.beat(maintenance="1", interfaces=json.dumps(interfaces))
        self.assertEqual(response.code, 200)
        node = self.h.request("GET", "/v1/resources/1", self.people.admin).json[0]
        self.assertEqual((node["status"], node["interfaces"]), ("maintenance", interfaces))
        self.beat(maintenance="0")
        node = self.h.request("GET", "/v1/resources/1", self.people.admin).json[0]
        self.assertEqual(node["status"], "active")

    def test_jsonHeartbeat(self) -> None:
        """
        A JSON body works too, with C{interfaces} as a list and booleans.
        """
        response = self.h.request("PUT", "/v1/resources/1", self.people.node1,
                                  json_={"maintenance": True, "interfaces": [{"opname": "x"}], "limit": 1})
        self.assertEqual(response.code, 200)
        self.assertEqual(self.h.run(lambda txn: txn.getNode("1")).status, "maintenance")

    def test_limitAndKnownTasks(self) -> None:
        """
        C{limit} caps the tasks; repeated C{known_tasks} are accepted and ignored.
        """
        for offset in (3600, 7200, 10800):
            book(self.h, self.people.alice, start=self.now + offset, options={"nodes": "1"})
        response = self.h.request("PUT", "/v1/resources/1", self.people.node1,
                                  form=[("limit", "2"), ("known_tasks", "1"), ("known_tasks", "2")])
        self.assertEqual(len(response.json["tasks"]), 2)
        self.assertEqual(len(self.beat().json["tasks"]), 3)

    def test_otherNode(self) -> None:
        """
        A node may heartbeat only its own resource.
        """
        response = self.beat(self.people.node1, "2")
        self.assertEqual(response.code, 403)
        self.assertEqual(response.json["message"], "Wrong user to update this status. (Node 1)")

    def test_unknownNode(self) -> None:
        """
        A node user whose node is gone is 404.
        """
        ghost = self.h.addUser("Node 42", "node")
        self.assertEqual(self.beat(ghost, "42").code, 404)

    def test_badFields(self) -> None:
        """
        Bad heartbeat fields are 400 naming the field.
        """
        for field, value in (("maintenance", "perhaps"), ("interfaces", "{not json"), ("interfaces", '{"a": 1}'),
                             ("interfaces", "[1, 2]"), ("limit", "0"), ("limit", "x")):
            response = self.beat(**{field: value})
            self.assertEqual(response.code, 400, (field, value))
            self.assertEqual(response.json["parameter"], field)

    def test_invalidatedNodeRefused(self) -> None:
        """
        An invalidated node user is 401.
        """
        self.h.request("DELETE", f"/v1/users/{self.people.node1.id}", self.people.admin)
        self.assertEqual(self.beat().code, 401)


class ReportTests(SynchronousTestCase):
    """
    C{PUT /schedules/<id>} by the node running it.
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.people = populate(self.h)
        self.expid = book(self.h, self.people.alice, options={"nodes": "1"})
        self.schedid = self.h.run(lambda txn: txn.schedulesOfExperiment(self.expid)[0].id)

    def report(self, user=None, schedid=None, **kwargs):
        return self.h.request("PUT", f"/v1/schedules/{schedid or self.schedid}", user or self.people.node1, **kwargs)

    def status(self) -> str:
        return self.h.run(lambda txn: txn.getSchedule(self.schedid)).statusText

    def test_lifecycleAsForms(self) -> None:
        """
        The agent's form reports move the task along; each answers "Ok.".
        """
        for value in ("deployed", "started", "started", "stopped"):
            response = self.report(form={"schedid": str(self.schedid), "status": value, "when": "1"})
            self.assertEqual((response.code, response.json), (200, {"message": "Ok."}), value)
        self.assertEqual(self.status(), "stopped")

    def test_jsonAndReason(self) -> None:
        """
        A JSON body works; C{"code; reason"} keeps the reason.
        """
        response = self.report(json_={"status": "failed; image not found"})
        self.assertEqual(response.code, 200)
        self.assertEqual(self.status(), "failed; image not found")

    def test_finalCannotBeReset(self) -> None:
        """
        A final status is never overwritten: 409 with the machine-readable
        code C{final} (what the agent reads), the legacy "cannot be reset"
        message and the old status.
        """
        self.report(form={"status": "deployed"})
        self.report(form={"status": "finished"})
        for value in ("started", "finished", "failed; late"):
            response = self.report(form={"status": value})
            self.assertEqual(response.code, 409, value)
            self.assertEqual(response.json["message"], "Status finished cannot be reset.")
            self.assertEqual(response.json["status"], "finished")
            self.assertEqual(response.json["code"], "final")
            self.assertIn(b"cannot be reset", response.body)
        self.assertEqual(self.status(), "finished")

    def test_canceledTaskReportsAreDropped(self) -> None:
        """
        Reports for a deleted (canceled) task get the "cannot be reset" 409.
        """
        self.h.request("DELETE", f"/v1/experiments/{self.expid}", self.people.alice)
        response = self.report(form={"status": "started"})
        self.assertEqual(response.code, 409)
        self.assertIn("cannot be reset", response.json["message"])

    def test_unknownCode(self) -> None:
        """
        An unknown status code is 400 with the legacy message.
        """
        response = self.report(form={"status": " running; ok "})
        self.assertEqual(response.code, 400)
        self.assertEqual(response.json["message"], "Unknown status code (running; ok).")

    def test_refusedTransition(self) -> None:
        """
        Other refused transitions are 409 with the core's message.
        """
        response = self.report(form={"status": "stopped"})
        self.assertEqual(response.code, 409)
        self.assertEqual(response.json["message"], "Status defined cannot change to stopped.")
        response = self.report(form={"status": "canceled"})
        self.assertEqual(response.code, 409)
        self.assertEqual(response.json["message"], "A node may not change status defined to canceled.")

    def test_traffic(self) -> None:
        """
        Traffic reports are accepted as a JSON string in a form or an object in
        JSON, kept per meter and shown in the schedule's C{report}; malformed
        ones are 400.
        """
        traffic = {"deployment": 10, "results": 20, "interfaces": {"8946": 300}, "final": True}
        self.assertEqual(self.report(form={"traffic": json.dumps(traffic)}).json, {"message": "Ok."})
        self.assertEqual(self.report(json_={"traffic": dict(traffic, results=25)}).code, 200)
        for bad in ("{nope", "[1]", "5"):
            response = self.report(form={"traffic": bad})
            self.assertEqual(response.code, 400, bad)
            self.assertEqual(response.json["message"], "Could not parse JSON code for traffic parameter")
        self.assertEqual(self.status(), "defined")
        shown = self.h.request("GET", f"/v1/schedules/{self.schedid}", self.people.alice).json
        self.assertEqual(shown["report"], {"deployment": 10, "results": 25, "8946": 300})
        response = self.report(json_={"traffic": {"interfaces": {"x": -1}}})
        self.assertEqual(response.code, 400)

    def test_missingFields(self) -> None:
        """
        Neither status nor traffic is 400.
        """
        response = self.report(form={"when": "1"})
        self.assertEqual(response.code, 400)
        self.assertEqual(response.json["message"], "Parameters missing (required: status, or traffic)")

    def test_otherNodesSchedule(self) -> None:
        """
        A node may report only on its own schedules, status or traffic.
        """
        response = self.report(self.people.node2, form={"status": "deployed"})
        self.assertEqual(response.code, 403)
        self.assertEqual(response.json["message"], "Wrong user to update this status (Node 2)")
        self.assertEqual(self.report(self.people.node2, form={"traffic": "{}"}).code, 403)

    def test_unknownSchedule(self) -> None:
        """
        Unknown schedule ids are 404, for status and traffic alike.
        """
        for schedid in ("999", "abc"):
            self.assertEqual(self.report(schedid=schedid, form={"status": "deployed"}).code, 404)
            self.assertEqual(self.report(schedid=schedid, form={"traffic": "{}"}).code, 404)

    def test_wrongTypes(self) -> None:
        """
        A non-string status is 400.
        """
        response = self.report(json_={"status": ["started"]})
        self.assertEqual((response.code, response.json["parameter"]), (400, "status"))
