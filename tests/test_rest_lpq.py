"""
The low-priority queue on the REST face (legacy C{start=-1}, legacy reference
§5.5): submission, how queued tasks show (start -1, stop = duration) and where
they do not (calendars, the node's views), placement by the node's heartbeat
and deletion. Every response is also held against the OpenAPI document.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from rest_compat.testing import RESTHarness, populate

IMAGE = "docker.io/monroe/ping"


class QueueTests(SynchronousTestCase):
    """
    C{POST /experiments} with C{start=-1} and what follows.
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.people = populate(self.h)
        self.now = self.h.scheduler.now()

    def get(self, path: str, user: Any = None):
        return self.h.request("GET", path, user or self.people.alice)

    def enqueue(self, **params: Any) -> Any:
        body = {"name": "q", "nodecount": "1", "nodetypes": "", "script": IMAGE, "duration": "600", "start": "-1",
                "options": "nodes=1"}
        body.update(params)
        return self.h.request("POST", "/v1/experiments", self.people.alice, form=body)

    def heartbeat(self) -> list[dict[str, Any]]:
        response = self.h.request("PUT", "/v1/resources/1", self.people.node1, form={"maintenance": "0"})
        return response.json["tasks"]

    def test_queuedAndPlaced(self) -> None:
        """
        A form submission with C{start=-1} queues the task: owners see it as
        C{queued}, start -1, stop = duration; calendars and the node do not
        see it until its heartbeat places it at now + 120.
        """
        response = self.enqueue(options=f"nodes=1&until={self.now + 7200}")
        self.assertEqual(response.code, 201, response.body)
        expid = response.json["experiment"]
        self.assertEqual((response.json["nodecount"], response.json["intervals"]), (1, 1))
        experiment = self.get(f"/v1/experiments/{expid}/schedules").json
        self.assertEqual((experiment["start"], experiment["stop"]), (self.now, self.now + 7200))
        [(schedid, row)] = experiment["schedules"].items()
        self.assertEqual(row, {"nodeid": 1, "status": "queued", "start": -1, "stop": 600})
        self.assertEqual(experiment["options"]["until"], self.now + 7200)
        full = self.get(f"/v1/schedules/{schedid}").json
        self.assertEqual((full["start"], full["stop"], full["status"]), (-1, 600, "queued"))
        for path in ("/v1/schedules", "/v1/resources/1/schedules", f"/v1/users/{self.people.alice.id}/schedules",
                     "/v1/schedules?start=-100&stop=10000"):
            self.assertEqual(self.get(path).json, [], path)
        node = self.people.node1
        self.assertEqual(self.get(f"/v1/schedules/{schedid}", node).code, 404)
        self.assertEqual(self.get("/v1/experiments", node).json, [])
        [task] = self.heartbeat()
        self.assertEqual((task["id"], task["start"], task["stop"], task["status"]),
                         (schedid, self.now + 120, self.now + 720, "requested"))
        self.assertEqual(self.get("/v1/schedules").json,
                         [{"nodeid": 1, "start": self.now + 120, "stop": self.now + 720,
                           "ownerid": self.people.alice.id}])
        self.assertEqual(self.get(f"/v1/schedules/{schedid}", node).json["status"], "requested")

    def test_jsonAndDryRun(self) -> None:
        """
        JSON works the same; a dry run shows the planned queued task.
        """
        response = self.h.request("POST", "/v1/experiments", self.people.alice, json_={
            "name": "q", "nodecount": 2, "nodetypes": "", "script": IMAGE, "duration": 300, "start": -1, "dryrun": 1})
        self.assertEqual(response.code, 200, response.body)
        self.assertEqual([(s["start"], s["stop"]) for s in response.json["schedules"]], [(-1, 300)] * 2)
        self.assertEqual(self.heartbeat(), [])

    def test_refusals(self) -> None:
        """
        Legacy wording for too few nodes; pairs and past expiries refused.
        """
        response = self.enqueue(nodetypes="country:xx", options="")
        self.assertEqual(response.code, 409)
        self.assertEqual(response.json["message"],
                         "Could not allocate. Only 0/1 nodes are available for scheduling this task.")
        self.assertEqual((response.json["code"], response.json["start"], response.json["stop"]), ("sc1", -1, 600))
        response = self.enqueue(nodecount="2", script=f"{IMAGE}|{IMAGE}", options="")
        self.assertTrue(response.json["message"].startswith("Could not allocate. Node pairs cannot be queued"))
        response = self.enqueue(options=f"until={self.now - 1}")
        self.assertEqual(response.json["message"],
                         "Could not allocate. The queue expiry (until) must be in the future.")

    def test_delete(self) -> None:
        """
        Deleting cancels the queued task; the node never gets it.
        """
        expid = self.enqueue().json["experiment"]
        response = self.h.request("DELETE", f"/v1/experiments/{expid}", self.people.alice)
        self.assertEqual((response.json["canceled"], response.json["archived"]), (1, True))
        self.assertEqual(self.heartbeat(), [])
        schedules = self.get(f"/v1/experiments/{expid}/schedules").json["schedules"]
        self.assertEqual([(s["status"], s["start"], s["stop"]) for s in schedules.values()], [("canceled", -1, 600)])
        self.assertEqual(self.get("/v1/experiments?showHidden=1", self.people.node1).json, [])
        self.assertEqual(self.get(f"/v1/experiments/{expid}", self.people.node1).code, 403)
        self.assertEqual(self.get("/v1/schedules?start=-100&stop=10000", self.people.admin).json, [])
