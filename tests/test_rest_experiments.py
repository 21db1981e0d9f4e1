"""
Tests for C{/experiments}: booking from JSON and form parameters (options in
every legacy form), dry runs, 409 replies with suggestions, reading, deleting
and merging.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from rest_compat.testing import RESTHarness, book, populate

IMAGE = "docker.io/monroe/ping"


class SubmitTests(SynchronousTestCase):
    """
    C{POST /experiments}.
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.people = populate(self.h)
        self.now = self.h.scheduler.now()

    def post(self, user=None, **kwargs):
        return self.h.request("POST", "/v1/experiments", user or self.people.alice, **kwargs)

    def schedules(self, expid: int):
        return self.h.run(lambda txn: txn.schedulesOfExperiment(expid))

    def test_jsonBooking(self) -> None:
        """
        A JSON submission books: 201, C{Location: /v1/experiments/<id>}, the
        legacy body; options reach the node except the scheduling ones.
        """
        response = self.post(json_={
            "name": "ping", "nodecount": 2, "nodetypes": "type:testing", "script": IMAGE,
            "start": self.now + 3600, "duration": 600,
            "options": {"storage": "1000", "traffic": 5, "shared": 0, "_eduroam.hash": "h", "sysctl": {"a": 1},
                        "recurrence": None},
        })
        self.assertEqual(response.code, 201, response.body)
        expid = response.json["experiment"]
        self.assertEqual(response.header("location"), f"/v1/experiments/{expid}")
        self.assertEqual(response.json, {"message": f"Allocated task {expid}.", "experiment": expid,
                                         "nodecount": 2, "intervals": 1})
        schedules = self.schedules(expid)
        self.assertEqual([(s.start, s.stop) for s in schedules], [(self.now + 3600, self.now + 4200)] * 2)
        self.assertEqual(
            schedules[0].deploymentOptions,
            {"storage": 1000, "traffic": 5, "_eduroam.hash": "h", "sysctl": {"a": 1}, "script": IMAGE},
        )
        self.assertFalse(schedules[0].shared)

    def test_formWithStartAndStop(self) -> None:
        """
        Form strings for C{start} and C{stop} work (legacy: 500), and the
        duration defaults to C{stop - start}.
        """
        start = self.now + 7200
        response = self.post(form={"name": "f", "nodecount": "1", "nodetypes": "", "script": IMAGE,
                                   "start": str(start), "stop": str(start + 900)})
        self.assertEqual(response.code, 201, response.body)
        [schedule] = self.schedules(response.json["experiment"])
        self.assertEqual((schedule.start, schedule.stop), (start, start + 900))

    def test_asap(self) -> None:
        """
        Without C{start} the request is placed as soon as possible.
        """
        response = self.post(form={"name": "f", "nodecount": "1", "nodetypes": "", "script": IMAGE, "duration": "300"})
        self.assertEqual(response.code, 201, response.body)
        [schedule] = self.schedules(response.json["experiment"])
        self.assertEqual(schedule.start, self.now + 60)

    def test_tasknameAlias(self) -> None:
        """
        C{taskname} (what the legacy README said) names the experiment too.
        """
        response = self.post(json_={"taskname": "alias", "nodecount": 1, "nodetypes": "", "script": IMAGE, "duration": 300})
        self.assertEqual(response.code, 201, response.body)
        experiment = self.h.run(lambda txn: txn.getExperiment(response.json["experiment"]))
        self.assertEqual(experiment.name, "alias")

    def test_missingParameters(self) -> None:
        """
        Missing parameters are 400 naming them.
        """
        response = self.post(json_={"name": "x", "duration": 300})
        self.assertEqual(response.code, 400)
        self.assertEqual(response.json["missing"], ["nodecount", "nodetypes", "script"])
        self.assertEqual(response.json["code"], "sc2")
        self.assertIn("provided: duration, name", response.json["message"])

    def test_wrongTypes(self) -> None:
        """
        Ill-typed values are 400 naming the parameter, never 500.
        """
        cases = {
            "nodecount": "many", "start": "soon", "stop": [1], "duration": {"a": 1},
            "interfaceCount": "x", "script": ["a"], "name": {"x": 1}, "nodetypes": [1],
        }
        for name, value in cases.items():
            body = {"name": "x", "nodecount": 1, "nodetypes": "", "script": IMAGE, "duration": 300, name: value}
            response = self.post(json_=body)
            self.assertEqual(response.code, 400, (name, response.body))
            self.assertEqual(response.json["parameter"], name, name)
        response = self.post(json_={"name": "x", "nodecount": 0, "nodetypes": "", "script": IMAGE, "duration": 300})
        self.assertEqual((response.code, response.json["parameter"]), (400, "nodecount"))

    def test_badNodetypes(self) -> None:
        """
        A filter syntax error is 400 naming C{nodetypes}.
        """
        response = self.post(json_={"name": "x", "nodecount": 1, "nodetypes": "", "script": IMAGE, "duration": 300,
                                    "nodetypes": "type"})
        self.assertEqual((response.code, response.json["parameter"]), (400, "nodetypes"))

    def test_optionsForms(self) -> None:
        """
        C{options} as C{k=v&k=v}, as a JSON string and as an object all work,
        and C{nodes} may be a comma string or a list.
        """
        for options in ("nodes=2,3&shared=1&storage=10", '{"nodes": "2,3", "shared": 1, "storage": 10}',
                        {"nodes": ["2", 3], "shared": True, "storage": "10"}):
            h = RESTHarness()
            alice = h.addUser("alice")
            if isinstance(options, dict):
                response = h.request("POST", "/v1/experiments", alice, json_={
                    "name": "o", "nodecount": 2, "nodetypes": "", "script": IMAGE, "duration": 300, "options": options})
            else:
                response = h.request("POST", "/v1/experiments", alice, form={
                    "name": "o", "nodecount": "2", "nodetypes": "", "script": IMAGE, "duration": "300", "options": options})
            self.assertEqual(response.code, 201, (options, response.body))
            schedules = h.run(lambda txn: txn.schedulesOfExperiment(response.json["experiment"]))
            self.assertEqual(sorted(s.nodeid for s in schedules), ["2", "3"], options)
            self.assertTrue(all(s.shared for s in schedules), options)
            self.assertEqual(schedules[0].deploymentOptions["storage"], 10)

    def test_sharedZeroIsFalse(self) -> None:
        """
        C{shared=0} in a k=v string is not shared (legacy: it was).
        """
        for value in ("0", "false"):
            response = self.post(form={"name": "s", "nodecount": "1", "nodetypes": "", "script": IMAGE, "duration": "300",
                                       "options": f"shared={value}"})
            self.assertEqual(response.code, 201)
            [schedule] = self.schedules(response.json["experiment"])
            self.assertFalse(schedule.shared, value)

    def test_recurrence(self) -> None:
        """
        C{recurrence=simple} with C{period} and C{until} books every interval.
        """
        start = self.now + 3600
        response = self.post(json_={
            "name": "r", "nodecount": 1, "nodetypes": "", "script": IMAGE, "start": start, "duration": 600,
            "options": f"recurrence=simple&period=3600&until={start + 3 * 3600}",
        })
        self.assertEqual(response.code, 201, response.body)
        self.assertEqual(response.json["intervals"], 3)
        schedules = self.schedules(response.json["experiment"])
        self.assertEqual([s.start for s in schedules], [start, start + 3600, start + 7200])
        self.assertNotIn("period", schedules[0].deploymentOptions)

    def test_refusals(self) -> None:
        """
        Refusals are 409 C{"Could not allocate. <reason>"}.
        """
        base = {"name": "x", "nodecount": 1, "nodetypes": "", "script": IMAGE, "duration": 300}
        cases = [
            ({"options": "recurrence=0"}, "Could not allocate. Unsupported recurrence scheme"),
            ({"options": {"internal": 1}}, "Could not allocate. option internal not allowed"),
            ({"options": {"basedir": "/"}}, "Could not allocate. option basedir not allowed"),
            ({"interfaceCount": 3}, "Could not allocate. Node count must be even for paired nodes."),
            ({"script": "a|b|c"}, "Could not allocate. Only two scripts allowed in script parameter"),
            ({"script": "bad url"}, "Could not allocate. Container URL contains invalid characters"),
            ({"duration": 10**6}, "Could not allocate. Tasks may not run for more than"),
            ({"options": {"nodes": "99"}}, "Could not allocate. Unknown node(s): 99"),
        ]
        for extra, message in cases:
            response = self.post(json_=dict(base, **extra))
            self.assertEqual(response.code, 409, (extra, response.body))
            self.assertTrue(response.json["message"].startswith(message), (extra, response.json))

    def test_interfaceCountOneAsString(self) -> None:
        """
        A form C{interfaceCount=1} means single nodes (legacy: pairs).
        """
        response = self.post(form={"name": "i", "nodecount": "1", "nodetypes": "", "script": IMAGE, "duration": "300",
                                   "interfaceCount": "1"})
        self.assertEqual(response.code, 201, response.body)

    def test_conflictWithSuggestions(self) -> None:
        """
        A busy window is 409 C{sc1} with C{available}, C{requested} and up to
        three C{suggestions} in which the same request would fit.
        """
        start = self.now + 3600
        book(self.h, self.people.bob, start=start, duration=600, options={"nodes": "1"})
        response = self.post(json_={"name": "x", "nodecount": 1, "nodetypes": "", "script": IMAGE, "start": start,
                                    "duration": 600, "options": {"nodes": "1"}})
        self.assertEqual(response.code, 409, response.body)
        body = response.json
        self.assertTrue(body["message"].startswith("Could not allocate. Only 0/1 nodes are available"))
        self.assertEqual((body["code"], body["available"], body["requested"]), ("sc1", 0, 1))
        self.assertEqual(body["selection"], ["1"])
        self.assertTrue(1 <= len(body["suggestions"]) <= 3)
        first = body["suggestions"][0]
        self.assertGreaterEqual(first["start"], start + 600 + 120)
        retry = self.post(json_={"name": "x", "nodecount": 1, "nodetypes": "", "script": IMAGE, "start": first["start"],
                                 "duration": 600, "options": {"nodes": "1"}})
        self.assertEqual(retry.code, 201, retry.body)

    def test_quota(self) -> None:
        """
        A quota refusal carries the core's keys.
        """
        self.assertEqual(
            self.h.request("PUT", f"/v1/users/{self.people.alice.id}", self.people.admin, form={"time": "100"}).code, 200
        )
        response = self.post(json_={"name": "x", "nodecount": 1, "nodetypes": "", "script": IMAGE, "duration": 300})
        self.assertEqual(response.code, 409)
        self.assertEqual(response.json["message"], "Could not allocate. Insufficient time quota.")
        self.assertEqual((response.json["quota_time"], response.json["required"]), (100, 300))

    def test_dryrun(self) -> None:
        """
        C{dryrun} (parameter or option) answers 200 with what would be booked
        and books nothing; hidden options stay hidden.
        """
        for extra in ({"dryrun": 1}, {"dryrun": "true"}, {"options": {"dryrun": True, "_k": 1}}):
            body = {"name": "d", "nodecount": 2, "nodetypes": "", "script": IMAGE, "start": self.now + 3600, "duration": 600}
            body.update(extra)
            response = self.post(json_=body)
            self.assertEqual(response.code, 200, response.body)
            self.assertIs(response.json["dryrun"], True)
            self.assertEqual((response.json["nodecount"], response.json["intervals"]), (2, 1))
            self.assertEqual(len(response.json["schedules"]), 2)
            self.assertEqual(response.json["schedules"][0]["start"], self.now + 3600)
            self.assertEqual(response.json["charged"]["time"], 1200)
            self.assertNotIn("_k", response.json["schedules"][0]["deployment_options"])
            self.assertNotIn("dryrun", response.json["schedules"][0]["deployment_options"])
        self.assertEqual(self.h.run(lambda txn: txn.findExperiments()), [])
        self.assertEqual(self.post(json_={"name": "d", "nodecount": 1, "nodetypes": "", "script": IMAGE, "duration": 300,
                                          "dryrun": "0"}).code, 201)

    def test_dryrunConflict(self) -> None:
        """
        A dry run that would not fit is the same 409.
        """
        response = self.post(json_={"name": "d", "nodecount": 5, "nodetypes": "", "script": IMAGE, "duration": 300, "dryrun": 1})
        self.assertEqual(response.code, 409)
        self.assertEqual(response.json["code"], "sc1")


class ReadTests(SynchronousTestCase):
    """
    C{GET /experiments...}.
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.people = populate(self.h)
        self.expid = book(self.h, self.people.alice, nodecount=2, options={"_hidden": "x", "shared": 1})
        self.schedids = [s.id for s in self.h.run(lambda txn: txn.schedulesOfExperiment(self.expid))]

    def get(self, path: str, user=None):
        return self.h.request("GET", path, user or self.people.alice)

    def test_one(self) -> None:
        """
        One experiment: the legacy keys, a status summary, no hidden options.
        """
        response = self.get(f"/v1/experiments/{self.expid}")
        self.assertEqual(response.code, 200)
        body = response.json
        self.assertEqual(body["summary"], {"defined": 2})
        self.assertEqual((body["id"], body["name"], body["ownerid"], body["script"], body["status"]),
                         (self.expid, "exp", self.people.alice.id, IMAGE, "active"))
        self.assertIs(body["options"]["shared"], True)
        self.assertNotIn("_hidden", response.body.decode())

    def test_withSchedules(self) -> None:
        """
        C{/schedules} and C{/schedule} list the schedules by id.
        """
        for suffix in ("schedules", "schedule"):
            body = self.get(f"/v1/experiments/{self.expid}/{suffix}").json
            self.assertEqual(sorted(body["schedules"]), sorted(str(i) for i in self.schedids))
            self.assertNotIn("summary", body)
        one = self.get(f"/v1/experiments/{self.expid}/schedule/{self.schedids[0]}").json
        self.assertEqual(list(one["schedules"]), [str(self.schedids[0])])
        self.assertEqual(set(one["schedules"][str(self.schedids[0])]), {"nodeid", "status", "start", "stop"})

    def test_notFound(self) -> None:
        """
        Unknown experiment ids and schedules not of the experiment are 404.
        """
        other = book(self.h, self.people.alice)
        otherSchedule = self.h.run(lambda txn: txn.schedulesOfExperiment(other)[0].id)
        for path in ("/v1/experiments/999", "/v1/experiments/abc", "/v1/experiments/999/schedules",
                     f"/v1/experiments/{self.expid}/schedules/{otherSchedule}",
                     f"/v1/experiments/{self.expid}/schedules/x"):
            self.assertEqual(self.get(path, self.people.admin).code, 404, path)

    def test_listAndShowHidden(self) -> None:
        """
        Deleted experiments are listed only with C{showHidden=1}; an empty list
        is 200 C{[]} (legacy: 404).
        """
        self.assertEqual([e["id"] for e in self.get("/v1/experiments").json], [self.expid])
        self.assertEqual(self.h.request("DELETE", f"/v1/experiments/{self.expid}", self.people.alice).code, 200)
        empty = self.get("/v1/experiments")
        self.assertEqual((empty.code, empty.json), (200, []))
        hidden = self.get("/v1/experiments?showHidden=1").json
        self.assertEqual([(e["id"], e["status"]) for e in hidden], [(self.expid, "archived")])
        self.assertEqual(self.get(f"/v1/experiments/{self.expid}").json["status"], "archived")


class DeleteAndMergeTests(SynchronousTestCase):
    """
    C{DELETE /experiments/<id>} and C{PUT /experiments/<a>/<b>}.
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.people = populate(self.h)

    def test_deleteCancelsAndArchives(self) -> None:
        """
        One DELETE cancels what no node has and aborts the rest, archives and
        refunds; a second DELETE is 404.
        """
        alice = self.people.alice
        expid = book(self.h, alice, nodecount=2, options={"nodes": "1,2"})
        self.h.request("PUT", "/v1/resources/1", self.people.node1, form={"maintenance": "0"})
        response = self.h.request("DELETE", f"/v1/experiments/{expid}", alice)
        self.assertEqual(response.code, 200)
        self.assertEqual(response.json, {
            "message": "Ok. Canceled or aborted open scheduling entries and archived the experiment.",
            "canceled": 1, "aborted": 1, "archived": True,
        })
        statuses = sorted(s.status for s in self.h.run(lambda txn: txn.schedulesOfExperiment(expid)))
        self.assertEqual(statuses, ["aborted", "canceled"])
        again = self.h.request("DELETE", f"/v1/experiments/{expid}", alice)
        self.assertEqual(again.code, 404)

    def test_deleteNothingOpen(self) -> None:
        """
        An experiment whose tasks are all final is just archived.
        """
        alice = self.people.alice
        expid = book(self.h, alice, options={"nodes": "1"})
        schedid = self.h.run(lambda txn: txn.schedulesOfExperiment(expid)[0].id)
        for status in ("deployed", "started", "finished"):
            self.h.request("PUT", f"/v1/schedules/{schedid}", self.people.node1, form={"status": status})
        response = self.h.request("DELETE", f"/v1/experiments/{expid}", alice)
        self.assertEqual(response.json["message"], "Ok. Archived experiment.")

    def test_deleteOwnership(self) -> None:
        """
        Other users may not delete; admins may delete anything.
        """
        expid = book(self.h, self.people.alice)
        denied = self.h.request("DELETE", f"/v1/experiments/{expid}", self.people.bob)
        self.assertEqual(denied.code, 403)
        self.assertEqual(denied.json["message"], f"Only admins and user {self.people.alice.id} can do this")
        self.assertEqual(self.h.request("DELETE", f"/v1/experiments/{expid}", self.people.admin).code, 200)
        self.assertEqual(self.h.request("DELETE", "/v1/experiments/777", self.people.admin).code, 404)

    def test_merge(self) -> None:
        """
        Merging moves the schedules, renames, and archives the other experiment.
        """
        alice = self.people.alice
        a = book(self.h, alice, options={"nodes": "1"})
        b = book(self.h, alice, options={"nodes": "2"})
        response = self.h.request("PUT", f"/v1/experiments/{a}/{b}?name=joined", alice)
        self.assertEqual(response.code, 200, response.body)
        self.assertEqual(response.json, {"message": f"Merged 1 tasks from experiment {b} into {a}"})
        merged = self.h.request("GET", f"/v1/experiments/{a}/schedules", alice).json
        self.assertEqual(len(merged["schedules"]), 2)
        self.assertEqual(merged["name"], "joined")
        self.assertEqual(self.h.request("GET", f"/v1/experiments/{b}", alice).json["status"], "archived")

    def test_mergeRefusals(self) -> None:
        """
        Without a second id, into itself, across owners or with unknown ids,
        merging is refused with 400, 403 or 404.
        """
        alice, bob = self.people.alice, self.people.bob
        a = book(self.h, alice)
        b = book(self.h, bob)
        missing = self.h.request("PUT", f"/v1/experiments/{a}", alice)
        self.assertEqual((missing.code, missing.json["parameter"]), (400, "from"))
        self.assertEqual(self.h.request("PUT", f"/v1/experiments/{a}/{a}", alice).code, 400)
        self.assertEqual(self.h.request("PUT", f"/v1/experiments/{a}/{b}", alice).code, 403)
        self.assertEqual(self.h.request("PUT", f"/v1/experiments/{a}/999", alice).code, 404)
        self.assertEqual(self.h.request("PUT", f"/v1/experiments/{a}/{b}", self.people.admin).code, 403)
