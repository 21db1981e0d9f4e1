"""
Tests for the OpenAPI description (C{schemas/openapi.json}) and for
L{rest_compat.schemacheck}: the document describes exactly the routes served,
and real responses conform to it.
"""

from __future__ import annotations

import json

from twisted.trial.unittest import SynchronousTestCase

from rest_compat import access, resource, schemacheck
from rest_compat.schemacheck import SchemaError, errors
from rest_compat.testing import RESTHarness, book, populate


class DocumentTests(SynchronousTestCase):
    """
    The document against the routing table.
    """

    def setUp(self) -> None:
        self.h = RESTHarness()
        self.document = self.h.document

    def test_served(self) -> None:
        """
        C{/openapi.json} serves the document as JSON, to anyone.
        """
        for path in ("/openapi.json", "/v1/openapi.json"):
            response = self.h.request("GET", path)
            self.assertEqual(response.code, 200)
            self.assertEqual(response.header("content-type"), "application/json")
            self.assertEqual(response.json, self.document)
        self.assertEqual(self.document["openapi"], "3.1.0")

    def test_everyRouteDocumented(self) -> None:
        """
        Every route and method served is described, and nothing else.
        """
        documented = set()
        for template, item in self.document["paths"].items():
            route = resource.resolve(template.strip("/").split("/"))
            self.assertIsNotNone(route, template)
            for method in item:
                if method == "parameters":
                    continue
                documented.add((route[0], method.upper()))
        served = {(route, method) for route, methods in access.MATRIX.items() for method in methods}
        self.assertEqual(documented, served)

    def test_everyOperationHasADefaultError(self) -> None:
        """
        Every operation describes its errors, and every response schema uses
        only what the checker enforces.
        """
        for template, item in self.document["paths"].items():
            for method, operation in item.items():
                if method == "parameters":
                    continue
                self.assertIn("default", operation["responses"], (template, method))
                for response in operation["responses"].values():
                    for content in response.get("content", {}).values():
                        errors(None, content["schema"], self.document)
        for name, schema in self.document["components"]["schemas"].items():
            errors(None, schema, self.document)

    def test_pathParametersDeclared(self) -> None:
        """
        Every C{{parameter}} of a template is declared.
        """
        for template, item in self.document["paths"].items():
            names = {part[1:-1] for part in template.split("/") if part.startswith("{")}
            declared = {p["name"] for p in item.get("parameters", []) if p["in"] == "path"}
            self.assertEqual(names, declared, template)


class ConformanceTests(SynchronousTestCase):
    """
    A busy session in which every response is checked against the document.
    """

    def test_session(self) -> None:
        """
        Successes and failures on every route conform.
        """
        h = RESTHarness()
        people = populate(h)
        a = book(h, people.alice, options={"nodes": "1", "_k": 1})
        b = book(h, people.alice, options={"nodes": "2"})
        s = h.run(lambda txn: txn.schedulesOfExperiment(a)[0].id)
        before = h.checked
        calls = [
            ("GET", "/version", None), ("GET", "/openapi.json", None), ("GET", "/v1/backend/auth", people.alice),
            ("GET", "/v1/backend/auth", None), ("GET", "/v1/backend/pubkeys", None),
            ("GET", "/v1/backend/activity", people.admin), ("PUT", "/v1/backend/sync", people.admin),
            ("GET", "/v1/resources", people.alice), ("GET", "/v1/resources/1", people.node1),
            ("PUT", "/v1/resources/1", people.node1), ("GET", "/v1/resources/1/schedules", people.bob),
            ("GET", "/v1/resources/1/all", people.admin), ("GET", "/v1/resources/1/journals", people.alice),
            ("GET", "/v1/resources/1/journals/1", people.alice), ("GET", "/v1/users", people.admin),
            ("GET", f"/v1/users/{people.alice.id}", people.alice),
            ("GET", f"/v1/users/{people.alice.id}/schedules", people.alice),
            ("GET", f"/v1/users/{people.alice.id}/experiments", people.alice),
            ("GET", f"/v1/users/{people.alice.id}/journals", people.alice),
            ("GET", "/v1/experiments", people.alice), ("GET", f"/v1/experiments/{a}", people.node1),
            ("GET", f"/v1/experiments/{a}/schedules", people.alice),
            ("GET", f"/v1/experiments/{a}/schedule/{s}", people.node1),
            ("GET", "/v1/schedules", people.alice), ("GET", "/v1/schedules/find?results=3", people.alice),
            ("GET", "/v1/schedules/find?nodecount=9", people.alice), ("GET", f"/v1/schedules/{s}", people.node1),
            ("PUT", f"/v1/schedules/{s}", people.node1), ("GET", "/v1/nothing", None),
            ("DELETE", "/version", None), ("PUT", f"/v1/experiments/{a}", people.alice),
            ("PUT", f"/v1/experiments/{a}/{b}", people.alice), ("DELETE", f"/v1/experiments/{a}", people.alice),
            ("DELETE", f"/v1/users/{people.bob.id}", people.admin),
        ]
        for method, path, user in calls:
            h.request(method, path, user)
        h.request("PUT", f"/v1/schedules/{s}", people.node1, form={"status": "deployed"})
        h.request("POST", "/v1/experiments", people.alice,
                  json_={"name": "d", "nodecount": 1, "nodetypes": "", "script": "docker.io/a/b", "duration": 300, "dryrun": 1})
        h.request("POST", "/v1/experiments", people.alice,
                  json_={"name": "d", "nodecount": 9, "nodetypes": "", "script": "docker.io/a/b", "duration": 300})
        h.request("POST", "/v1/users", people.admin, form={"name": "z", "role": "user", "ssl": "f" * 40})
        h.request("PUT", f"/v1/users/{people.alice.id}", people.admin, form={"storage": "1"})
        self.assertEqual(h.checked - before, len(calls) + 5)

    def test_checkerCatchesMismatches(self) -> None:
        """
        The harness fails a response that does not match the document.
        """
        h = RESTHarness()
        alice = h.addUser("alice")
        response = h.request("GET", "/v1/resources", alice)
        broken = json.loads(response.body)
        del broken[0]["hostname"]
        from rest_compat.testing import Response

        fake = Response(200, response.headers, json.dumps(broken).encode())
        self.assertRaises(AssertionError, h.check, "GET", "/v1/resources", fake)
        undocumented = Response(201, response.headers, b"[]")
        self.assertRaises(AssertionError, h.check, "GET", "/v1/resources", undocumented)


class CheckerTests(SynchronousTestCase):
    """
    The JSON Schema subset.
    """

    def test_types(self) -> None:
        """
        Types, with booleans not counting as integers.
        """
        self.assertEqual(errors(3, {"type": "integer"}), [])
        self.assertNotEqual(errors(True, {"type": "integer"}), [])
        self.assertEqual(errors(None, {"type": ["string", "null"]}), [])
        self.assertNotEqual(errors(1.5, {"type": "integer"}), [])
        self.assertEqual(errors(1.5, {"type": "number"}), [])

    def test_objects(self) -> None:
        """
        Required keys, property schemas and additional properties.
        """
        schema = {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"],
                  "additionalProperties": {"type": "integer"}}
        self.assertEqual(errors({"a": "x", "b": 1}, schema), [])
        self.assertEqual(len(errors({"b": "y"}, schema)), 2)
        self.assertNotEqual(errors({"a": "x", "c": 1}, dict(schema, additionalProperties=False)), [])

    def test_arraysAndRefs(self) -> None:
        """
        Items, sizes and local references.
        """
        root = {"components": {"schemas": {"N": {"type": "integer", "minimum": 0}}},
                "x": {"type": "array", "items": {"$ref": "#/components/schemas/N"}, "maxItems": 2}}
        self.assertEqual(errors([1, 2], root["x"], root), [])
        self.assertNotEqual(errors([1, -2], root["x"], root), [])
        self.assertNotEqual(errors([1, 2, 3], root["x"], root), [])
        self.assertRaises(SchemaError, errors, 1, {"$ref": "other.json#/a"})

    def test_combinators(self) -> None:
        """
        C{anyOf}, C{oneOf}, C{allOf}, C{enum} and C{const}.
        """
        self.assertEqual(errors(1, {"anyOf": [{"type": "string"}, {"type": "integer"}]}), [])
        self.assertNotEqual(errors(1, {"oneOf": [{"type": "number"}, {"type": "integer"}]}), [])
        self.assertNotEqual(errors("a", {"allOf": [{"type": "string"}, {"minLength": 2}]}), [])
        self.assertEqual(errors(1, {"enum": [0, 1]}), [])
        self.assertNotEqual(errors(True, {"enum": [0, 1]}), [])
        self.assertNotEqual(errors(1, {"const": True}), [])
        self.assertNotEqual(errors("b", {"pattern": "^a"}), [])

    def test_unsupportedKeyword(self) -> None:
        """
        A keyword the checker does not enforce is an error, not a pass.
        """
        self.assertRaises(SchemaError, errors, 1, {"multipleOf": 2})
        self.assertRaises(SchemaError, errors, 1, {"type": "decimal"})

    def test_matchTemplate(self) -> None:
        """
        Literal segments beat parameters.
        """
        document = {"paths": {"/schedules/{id}": {}, "/schedules/find": {}, "/experiments/{id}/{other}": {},
                              "/experiments/{id}/schedules": {}}}
        self.assertEqual(schemacheck.matchTemplate(document, "/schedules/find"), "/schedules/find")
        self.assertEqual(schemacheck.matchTemplate(document, "/schedules/3"), "/schedules/{id}")
        self.assertEqual(schemacheck.matchTemplate(document, "/experiments/1/schedules"), "/experiments/{id}/schedules")
        self.assertIsNone(schemacheck.matchTemplate(document, "/nothing"))
