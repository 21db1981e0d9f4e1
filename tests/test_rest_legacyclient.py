"""
The requests the official MONROE Python client makes (read from its public
source, re-stated here): a JSON body whose C{options} is itself a JSON string,
C{start: 0} with C{stop} meaning the duration, countries OR-ed before the node
type, C{nodes} as a JSON list inside that string, C{ssh} as another JSON
string; then the reads it does. Marvin must serve them unchanged.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from rest_compat.testing import RESTHarness, populate


def clientBody(**overrides) -> dict:
    """
    The shape of the client's prepareJson(): every value as it sends it.
    """
    options = {"traffic": 1048576, "resultsQuota": 0, "shared": 0, "storage": 128}
    options.update(overrides.pop("options", {}))
    body = {
        "name": "ping",
        "nodecount": 2,
        "nodetypes": "country:se|country:no,type:testing",
        "options": json.dumps(options),
        "script": "docker.io/monroe/ping",
        "start": 0,
        "stop": 300,
    }
    body.update(overrides)
    return body


class OfficialClientTests(SynchronousTestCase):
    """
    A session of the official client against the REST face.
    """

    def setUp(self) -> None:
        self.h = RESTHarness(nodes=3)
        self.people = populate(self.h)

    def post(self, body: dict):
        return self.h.request("POST", "/v1/experiments", self.people.alice, json_=body,
                              headers={"Content-Type": "application/json"})

    def test_session(self) -> None:
        """
        auth, resources, submit, the user's experiments and an experiment's schedules.
        """
        auth = self.h.request("GET", "/v1/backend/auth", self.people.alice).json
        uid = auth["user"]["id"]
        self.assertEqual(len(self.h.request("GET", "/v1/resources/", self.people.alice).json), 3)
        submitted = self.post(clientBody())
        self.assertEqual(submitted.code, 201, submitted.json)
        expid = submitted.json["experiment"]
        schedules = self.h.request("GET", f"/v1/experiments/{expid}/schedules", self.people.alice).json
        windows = {(s["stop"] - s["start"]) for s in schedules["schedules"].values()}
        self.assertEqual(windows, {300})  # start 0 + stop 300 = as soon as possible for 300 s
        mine = self.h.request("GET", f"/v1/users/{uid}/experiments", self.people.alice).json
        self.assertEqual([e["id"] for e in mine], [expid])
        journal = self.h.request("GET", f"/v1/users/{uid}/journals", self.people.alice)
        self.assertEqual(journal.code, 200)

    def test_nodesAsJSONListString(self) -> None:
        """
        C{nodes} arrives as a JSON list inside the options string (legacy: 500).
        """
        response = self.post(clientBody(nodecount=1, options={"nodes": json.dumps(["2"])}))
        self.assertEqual(response.code, 201, response.json)
        expid = response.json["experiment"]
        rows = self.h.request("GET", f"/v1/experiments/{expid}/schedules", self.people.alice).json
        self.assertEqual([s["nodeid"] for s in rows["schedules"].values()], [2])

    def test_sshTunnelOption(self) -> None:
        """
        The tunnel options arrive as a JSON string; a key pair is made for the task.
        """
        ssh = json.dumps({"server": "tunnel.example", "server.port": 29999, "server.user": "tunnel",
                          "client.public": "ssh-ed25519 AAAA user"})
        response = self.post(clientBody(nodecount=1, options={"ssh": ssh}))
        self.assertEqual(response.code, 201, response.json)
        self.assertEqual(len(self.h.request("GET", "/v1/backend/pubkeys", None).json), 1)

    def test_recurrence(self) -> None:
        """
        Recurrence options as the client sets them.
        """
        now = int(self.h.clock.seconds())
        response = self.post(clientBody(start=now + 3600, stop=now + 3900,
                                        options={"recurrence": "simple", "period": 3600, "until": now + 4 * 3600}))
        self.assertEqual(response.code, 201, response.json)
        self.assertEqual(response.json["intervals"], 3)
