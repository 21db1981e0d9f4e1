"""
Node pairs on the REST face: the admin's C{PUT /resources/<id> pair=...},
pairs in C{GET /resources}, and C{interfaceCount} and two scripts in
C{POST /experiments} and C{GET /schedules/find} (legacy reference §3.2 row
15, §4.1, §5.3). Every response is also held against the OpenAPI document.
"""

from __future__ import annotations

from typing import Any

from twisted.trial.unittest import SynchronousTestCase

from rest_compat.testing import RESTHarness, populate

IMAGE = "docker.io/monroe/ping"
TAIL = "docker.io/monroe/tail"


class PairAdminTests(SynchronousTestCase):
    """
    Setting, showing and deleting pairs.
    """

    def setUp(self) -> None:
        self.h = RESTHarness(nodes=4)
        self.people = populate(self.h)

    def put(self, path: str, user: Any = None, **form: Any):
        return self.h.request("PUT", path, user or self.people.admin, form=form)

    def listed(self) -> dict[int, Any]:
        nodes = self.h.request("GET", "/v1/resources", self.people.alice).json
        return {n["id"]: n.get("pair") for n in nodes}

    def test_setShowDelete(self) -> None:
        """
        C{pair=<tail>} answers "Node pair set." and both nodes show the pair
        at once; C{pair=delete} (from either end) removes it.
        """
        response = self.put("/v1/resources/1", pair="2")
        self.assertEqual((response.code, response.json), (200, {"message": "Node pair set."}))
        pair = {"head": 1, "tail": 2}
        self.assertEqual(self.listed(), {1: pair, 2: pair, 3: None, 4: None})
        self.assertEqual(self.h.request("GET", "/v1/resources/2", self.people.bob).json[0]["pair"], pair)
        response = self.put("/v1/resources/2", pair="delete")
        self.assertEqual((response.code, response.json), (200, {"message": "Node pair deleted."}))
        self.assertEqual(self.listed(), {1: None, 2: None, 3: None, 4: None})

    def test_replaces(self) -> None:
        """
        A new pair replaces the pairs of both nodes.
        """
        self.put("/v1/resources/1", pair="2")
        self.put("/v1/resources/3", pair="4")
        self.put("/v1/resources/4", pair="1")
        self.assertEqual(self.listed(), {1: {"head": 4, "tail": 1}, 2: None, 3: None, 4: {"head": 4, "tail": 1}})

    def test_withTypeAndJSON(self) -> None:
        """
        C{pair} goes with C{type} in one change; a JSON number works too.
        """
        response = self.h.request("PUT", "/v1/resources/3", self.people.admin, json_={"type": "site:x", "pair": 4})
        self.assertEqual(response.json, {"message": "Node type and pair set."})
        node = self.h.request("GET", "/v1/resources/3", self.people.admin).json[0]
        self.assertEqual((node["site"], node["pair"]), ("x", {"head": 3, "tail": 4}))
        response = self.put("/v1/resources/3", status="maintenance", pair="delete")
        self.assertEqual(response.json, {"message": "Node status set, pair deleted."})

    def test_errors(self) -> None:
        """
        Unknown nodes 404 "Node id does not exist."; nothing to delete 404
        saying so (legacy: C{{"message": 0}}); a self-pair 400; non-admins
        refused; a failed change changes nothing.
        """
        self.put("/v1/resources/1", pair="2")
        cases = [
            ("/v1/resources/1", {"pair": "99"}, 404, "Node id does not exist."),
            ("/v1/resources/99", {"pair": "1"}, 404, "Node id does not exist."),
            ("/v1/resources/3", {"pair": "delete"}, 404, "Node 3 is not in a pair."),
            ("/v1/resources/3", {"pair": "3"}, 400, "A node cannot be paired with itself."),
            ("/v1/resources/3", {"type": "site:y", "pair": "99"}, 404, "Node id does not exist."),
        ]
        for path, form, code, message in cases:
            response = self.put(path, **form)
            self.assertEqual((response.code, response.json["message"]), (code, message), form)
        response = self.put("/v1/resources/3", self.people.alice, pair="4")
        self.assertEqual(response.code, 403)
        self.assertEqual(self.listed(), {1: {"head": 1, "tail": 2}, 2: {"head": 1, "tail": 2}, 3: None, 4: None})
        self.assertNotIn("site", self.h.request("GET", "/v1/resources/3", self.people.admin).json[0])


class PairSubmissionTests(SynchronousTestCase):
    """
    Booking and searching pairs. Nodes 1-2 and 3-4 are pairs.
    """

    def setUp(self) -> None:
        self.h = RESTHarness(nodes=4)
        self.people = populate(self.h)
        self.now = self.h.scheduler.now()
        for head, tail in (("1", "2"), ("3", "4")):
            self.h.request("PUT", f"/v1/resources/{head}", self.people.admin, form={"pair": tail})

    def post(self, **kwargs: Any):
        return self.h.request("POST", "/v1/experiments", self.people.alice, **kwargs)

    def schedules(self, expid: int) -> list[tuple[str, str]]:
        return [(s.nodeid, s.deploymentOptions["script"])
                for s in self.h.run(lambda txn: txn.schedulesOfExperiment(expid))]

    def test_formInterfaceCountIsANumber(self) -> None:
        """
        A form C{interfaceCount=3} books pairs; the reply counts pairs.
        """
        response = self.post(form={"name": "p", "nodecount": "4", "nodetypes": "", "script": IMAGE, "duration": "300",
                                   "interfaceCount": "3"})
        self.assertEqual(response.code, 201, response.body)
        self.assertEqual(response.json["nodecount"], 2)
        self.assertEqual(self.schedules(response.json["experiment"]),
                         [("1", IMAGE), ("2", IMAGE), ("3", IMAGE), ("4", IMAGE)])

    def test_singlesAndHeads(self) -> None:
        """
        C{interfaceCount} 1 takes tails, 2 heads.
        """
        for count, nodes in (("1", ["2", "4"]), (2, ["1", "3"])):
            response = self.post(json_={"name": "s", "nodecount": 2, "nodetypes": "", "script": IMAGE, "duration": 300,
                                        "interfaceCount": count, "start": self.now + 7200 * int(count)})
            self.assertEqual(response.code, 201, response.body)
            self.assertEqual([n for n, _ in self.schedules(response.json["experiment"])], nodes)

    def test_twoScripts(self) -> None:
        """
        C{script="a|b"}: the head runs a, the tail b.
        """
        response = self.post(json_={"name": "t", "nodecount": 2, "nodetypes": "", "script": f"{IMAGE}|{TAIL}", "duration": 300})
        self.assertEqual(response.code, 201, response.body)
        self.assertEqual(response.json["nodecount"], 1)
        self.assertEqual(self.schedules(response.json["experiment"]), [("1", IMAGE), ("2", TAIL)])
        experiment = self.h.request("GET", f"/v1/experiments/{response.json['experiment']}", self.people.alice)
        self.assertEqual(experiment.json["script"], f"{IMAGE}|{TAIL}")

    def test_refusals(self) -> None:
        """
        Odd counts and busy pairs are 409 with the legacy wording, counting pairs.
        """
        response = self.post(json_={"name": "o", "nodecount": 3, "nodetypes": "", "script": f"{IMAGE}|{TAIL}", "duration": 300})
        self.assertEqual((response.code, response.json["message"]),
                         (409, "Could not allocate. Node count must be even for paired nodes."))
        start = self.now + 3600
        self.post(json_={"name": "b", "nodecount": 1, "nodetypes": "", "script": IMAGE, "duration": 300, "start": start,
                         "options": {"nodes": "4"}})
        response = self.post(json_={"name": "p", "nodecount": 4, "nodetypes": "", "script": IMAGE, "duration": 300,
                                    "start": start, "interfaceCount": 3})
        self.assertEqual(response.code, 409)
        self.assertTrue(response.json["message"].startswith(
            "Could not allocate. Only 1/2 node pairs are available during interval 1 ("), response.json)
        self.assertEqual((response.json["available"], response.json["requested"], response.json["code"]),
                         (1, 2, "sc1"))
        self.assertEqual(response.json["suggestions"][0]["nodecount"], 4)
        response = self.post(json_={"name": "x", "nodecount": 2, "nodetypes": "", "script": IMAGE, "duration": 300,
                                    "interfaceCount": "many"})
        self.assertEqual((response.code, response.json["parameter"]), (400, "interfaceCount"))

    def test_dryRun(self) -> None:
        """
        A dry run says how many pairs would be booked.
        """
        response = self.post(json_={"name": "d", "nodecount": 2, "nodetypes": "", "script": f"{IMAGE}|{TAIL}", "duration": 300,
                                    "dryrun": True})
        self.assertEqual(response.code, 200, response.body)
        self.assertTrue(response.json["message"].startswith("Dry run: 1 node pair(s) x 1 interval(s)"))
        self.assertEqual([s["deployment_options"]["script"] for s in response.json["schedules"]], [IMAGE, TAIL])

    def test_find(self) -> None:
        """
        C{GET /schedules/find?interfaceCount=3} searches pairs, counting nodes.
        """
        response = self.h.request("GET", "/v1/schedules/find?nodecount=4&duration=600&interfaceCount=3",
                                  self.people.alice)
        self.assertEqual(response.code, 200, response.body)
        self.assertEqual((response.json[0]["nodecount"], response.json[0]["max_nodecount"]), (4, 4))
        response = self.h.request("GET", "/v1/schedules/find?nodecount=1&interfaceCount=3", self.people.alice)
        self.assertEqual((response.code, response.json["message"]), (409, "Node count must be even for paired nodes."))
