"""
Issue 13 over real sockets, against a real marvinctld on SQLite: text no store
can hold, the last admin, the legacy nodetypes rule, stop against duration,
unknown parameters, the GENI face's strings, slow and greedy clients, and
what the fuzzer found where the OpenAPI document and the server disagreed
(the fuzzing itself is tests/test_rest_fuzz.py).
"""

from __future__ import annotations

import http.client
import json
import os
import shutil
import tempfile
import xmlrpc.client

import pytest

from am.devtools.demopki import ensureDemoPKI
from rest_compat import schemacheck
from schemas import __file__ as _schemas
from tests.live_ctl import USER, LiveController

IMAGE = "docker.io/monroe/ping"


@pytest.fixture(scope="module")
def pki():
    directory = tempfile.mkdtemp(prefix="marvin-wire-pki-")
    yield ensureDemoPKI(directory)
    shutil.rmtree(directory, ignore_errors=True)


@pytest.fixture(scope="module")
def live(pki, tmp_path_factory):
    controller = LiveController(
        str(tmp_path_factory.mktemp("wire")), pki, geni={"authority": "marvin.test", "trust_roots": [pki.certificate("ca")]}
    )
    controller.ensureUser()
    yield controller
    controller.stop()


def submit(live, **body):
    values = {"name": "w", "nodecount": 1, "nodetypes": "", "script": IMAGE, "duration": 300, "dryrun": 1}
    values.update(body)
    return live.call("POST", "/v1/experiments", fingerprint=USER, body={k: v for k, v in values.items() if v is not None})


def rawPost(live, path, payload: bytes, contentType="application/json", fingerprint=USER):
    connection = http.client.HTTPConnection("127.0.0.1", live.ports["http"], timeout=30)
    try:
        connection.request("POST", path, body=payload, headers={
            "Content-Type": contentType, "VERIFIED": "SUCCESS", "SSL_FINGERPRINT": fingerprint})
        response = connection.getresponse()
        return response.status, json.loads(response.read() or b"null")
    finally:
        connection.close()


# 1. text that cannot be stored


@pytest.mark.parametrize("field", ["name", "taskname", "script", "nodetypes"])
def test_loneSurrogateInSubmissionIs400(live, field):
    body = {"name": None if field == "taskname" else "w", field: "x\ud800", "dryrun": None}
    status, reply = submit(live, **body)
    assert status == 400, reply
    assert reply["parameter"] == field and "cannot be stored" in reply["message"]


def test_nulAndSurrogatesEverywhere(live):
    fp = live.pki.fingerprints["admin"]
    status, reply = live.call("POST", "/v1/users", who="admin", body={"name": "e\ud800", "ssl": "e5" * 20, "role": "user"})
    assert (status, reply["parameter"]) == (400, "name"), reply
    status, reply = live.call("POST", "/v1/users", who="admin", form={"name": "e\x00", "ssl": "e5" * 20, "role": "user"})
    assert (status, reply["parameter"]) == (400, "name"), reply
    status, reply = submit(live, options={"note": ["\udfff"]})
    assert (status, reply["parameter"]) == (400, "options.note[0]"), reply
    status, reply = rawPost(live, "/v1/experiments", b'{"\\ud800": 1}')
    assert status == 400 and "parameter name" in reply["message"], reply
    status, reply = live.call("GET", "/v1/schedules/find?nodecount=1&duration=300&nodetypes=type:%00", fingerprint=USER)
    assert (status, reply["parameter"]) == (400, "nodetypes"), reply
    status, reply = live.call("PUT", "/v1/resources/1", fingerprint=fp, body={"type": "site:\ud800"})
    assert (status, reply["parameter"]) == (400, "type"), reply
    # nothing was stored, and the server still serves
    status, users = live.call("GET", "/v1/users", who="admin")
    assert status == 200 and not any(u["name"].startswith("e") and u["name"] != "alice" for u in users)


def test_geniStringsCannotCarryThem(live):
    for reference in (b"&#xD800;", b"&#0;"):
        payload = (b"<?xml version='1.0'?><methodCall><methodName>GetVersion</methodName><params><param>"
                   b"<value><struct><member><name>x</name><value><string>a" + reference +
                   b"</string></value></member></struct></value></param></params></methodCall>")
        import ssl
        context = ssl.create_default_context(cafile=live.pki.certificate("ca"))
        context.load_cert_chain(live.pki.certificate("user"), live.pki.key("user"))
        connection = http.client.HTTPSConnection("localhost", live.ports["https"], context=context, timeout=30)
        try:
            connection.request("POST", "/xmlrpc/am/3.0", body=payload, headers={"Content-Type": "text/xml"})
            response = connection.getresponse()
            body = response.read()
        finally:
            connection.close()
        assert response.status == 200, body
        (answer,), _ = xmlrpc.client.loads(body)
        assert answer["code"]["geni_code"] == 1, answer  # BADARGS


# 2. the last admin


def test_lastAdminCannotInvalidateItself(live):
    status, me = live.call("GET", "/v1/backend/auth", who="admin")
    status, reply = live.call("DELETE", f"/v1/users/{me['user']['id']}", who="admin")
    assert status == 409 and "last valid admin" in reply["message"], reply
    assert live.call("GET", "/v1/backend/auth", who="admin")[0] == 200


def test_rekeyingAnInvalidatedUser(live):
    status, reply = live.call("POST", "/v1/users", who="admin", form={"name": "gone", "ssl": "f6" * 20, "role": "user"})
    assert status == 201, reply
    userid = reply["id"]
    assert live.call("DELETE", f"/v1/users/{userid}", who="admin")[0] == 200
    status, reply = live.call("PUT", f"/v1/users/{userid}", who="admin", form={"ssl": "f7" * 20})
    assert status == 409 and "invalidated" in reply["message"], reply
    assert live.call("GET", "/v1/backend/auth", fingerprint="f7" * 20)[0] == 401


# 3. nodetypes


def test_nodetypesRequiredUnlessNodesGiven(live):
    status, reply = submit(live, nodetypes=None)
    assert status == 400 and reply["missing"] == ["nodetypes"], reply
    assert reply["message"].startswith("Parameters missing")
    status, reply = submit(live, nodetypes=None, options={"nodes": "1"})
    assert status == 200, reply
    status, reply = submit(live, nodetypes="")
    assert status == 200, reply


# 4. stop against duration, unknown parameters


def test_stopAndDurationDisagree(live):
    status, now = live.call("GET", "/v1/backend/auth", who="admin")
    start = 4_000_000_000
    status, reply = submit(live, start=start, stop=start + 1800, duration=600)
    assert status == 400 and reply["parameters"] == ["stop", "duration"], reply
    assert "stop" in reply["message"] and "duration" in reply["message"]
    status, reply = submit(live, start=start, stop=start + 600, duration=600)
    assert status != 400 or "disagree" not in reply["message"], reply


def test_unknownParametersWarned(live):
    status, reply = submit(live, nodes="1", colour="red")
    assert status == 200, reply
    assert reply["warnings"] == [
        "Unknown parameter colour ignored.",
        "Unknown parameter nodes ignored (did you mean options.nodes?).",
    ]
    live.logged(r"Unknown parameter colour ignored")
    status, reply = submit(live)
    assert status == 200 and "warnings" not in reply


def test_restartRestoresTheConfiguredAdmin(pki, tmp_path):
    live = LiveController(str(tmp_path), pki)
    try:
        other = "b7" * 20
        status, reply = live.call("POST", "/v1/users", who="admin", form={"name": "op2", "ssl": other, "role": "admin"})
        assert status == 201, reply
        status, me = live.call("GET", "/v1/backend/auth", who="admin")
        assert live.call("DELETE", f"/v1/users/{me['user']['id']}", fingerprint=other)[0] == 200
        assert live.call("GET", "/v1/backend/auth", who="admin")[0] == 401
        live.stop()
        live.start()
        status, again = live.call("GET", "/v1/backend/auth", who="admin")
        assert status == 200 and again["user"]["id"] == me["user"]["id"], again
    finally:
        live.stop()


# 5. slow and greedy clients, oversized headers, malformed multipart


def exchange(live, payload: bytes, tls=False):
    """
    Send raw bytes, read until the server closes (or answers and closes).
    """
    import socket
    import ssl

    raw = socket.create_connection(("127.0.0.1", live.ports["https" if tls else "http"]), timeout=30)
    if tls:
        context = ssl.create_default_context(cafile=live.pki.certificate("ca"))
        context.load_cert_chain(live.pki.certificate("admin"), live.pki.key("admin"))
        raw = context.wrap_socket(raw, server_hostname="localhost")
    try:
        raw.sendall(payload)
        received = b""
        while True:
            try:
                chunk = raw.recv(65536)
            except (ConnectionResetError, ssl.SSLError):
                break
            if not chunk:
                break
            received += chunk
        return received
    finally:
        raw.close()


@pytest.mark.parametrize("tls", [False, True])
def test_megabyteHeaderLineIs431(live, tls):
    answer = exchange(live, b"GET /version HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (1 << 20) + b"\r\n\r\n", tls)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 431 "), answer[:200]
    assert "line over" in json.loads(body)["message"]


def test_multipartWithoutBoundaryIsJSON400(live):
    status, reply = rawPost(live, "/v1/experiments", b"name=x", contentType="multipart/form-data")
    assert status == 400 and "multipart" in reply["message"], reply
    live.logged(r"POST /v1/experiments \S+ 400")


@pytest.fixture(scope="module")
def strict(pki, tmp_path_factory):
    controller = LiveController(
        str(tmp_path_factory.mktemp("strict")), pki,
        listen={**_listen(pki), "request_timeout": 1, "max_connections_per_peer": 3},
    )
    yield controller
    controller.stop()


def _listen(pki):
    return {
        "tls": {"address": "127.0.0.1", "port": 0, "certificate": pki.certificate("server"),
                "key": pki.key("server"), "client_ca": [pki.certificate("ca")]},
        "http": {"address": "127.0.0.1", "port": 0},
    }


@pytest.mark.parametrize("tls", [False, True])
def test_requestMustArriveInTime(strict, tls):
    # headers never finished: the server answers 408 and closes once the
    # deadline passes (the read below waits for that, it does not sleep)
    answer = exchange(strict, b"GET /version HTTP/1.1\r\nHost: x\r\n", tls)
    assert answer.startswith(b"HTTP/1.1 408 "), answer[:200]
    assert strict.call("GET", "/version", who="admin") == (200, "1.0")


def test_connectionsPerPeerCappedOnTLS(strict):
    import socket
    import ssl

    context = ssl.create_default_context(cafile=strict.pki.certificate("ca"))
    context.load_cert_chain(strict.pki.certificate("admin"), strict.pki.key("admin"))
    held = []
    try:
        for _ in range(3):
            held.append(context.wrap_socket(socket.create_connection(("127.0.0.1", strict.ports["https"]), timeout=30),
                                            server_hostname="localhost"))
        with pytest.raises((ConnectionError, ssl.SSLError, OSError)):
            extra = context.wrap_socket(socket.create_connection(("127.0.0.1", strict.ports["https"]), timeout=30),
                                        server_hostname="localhost")
            extra.sendall(b"GET /version HTTP/1.1\r\nHost: x\r\n\r\n")
            if not extra.recv(100):
                raise ConnectionError("closed")
        strict.logged(r"holds 3 connections: refusing more")
    finally:
        for s in held:
            s.close()
    # the plain listener's peer is a trusted proxy: not capped
    assert all(strict.call("GET", "/version")[0] == 200 for _ in range(5))


# 6. the document and the server agree on what the fuzzer found


def _document():
    with open(os.path.join(os.path.dirname(_schemas), "openapi.json"), encoding="utf-8") as f:
        return json.load(f)


def _parameterSchema(path: str, name: str):
    document = _document()
    (found,) = [p["schema"] for p in document["paths"][path]["get"]["parameters"] if p["name"] == name]
    return document, found


@pytest.mark.parametrize(
    "path, name, value, quoted",
    [
        ("/schedules/find", "nodetypes", "0:\x1f", "0:%1F"),  # a control character str.strip would trim
        ("/schedules/find", "nodetypes", "type:a\x85", "type:a%C2%85"),
        ("/schedules/find", "nodetypes", "0:0\x00", "0:0%00"),
        ("/schedules/find", "nodecount", "", ""),  # empty-string integers are not integers
        ("/schedules/find", "duration", " ", "%20"),
        ("/schedules/find", "start", "\u0663", "%D9%A3"),  # a digit, but not an ASCII one
        ("/schedules.json", "start", "", ""),
        ("/schedules.json", "nodetypes", "a:\x01b", "a:%01b"),
        ("/resources", "nodetypes", "a:\x7f", "a:%7F"),
        ("/ui/changes", "since", "-1", "-1"),
    ],
)
def test_documentRefusesWhatTheServerRefuses(live, path, name, value, quoted):
    document, schema = _parameterSchema(path, name)
    # a query value is text; a client may have meant it as the integer it spells
    digits = value.strip().lstrip("-")
    meant = [value] + ([int(value)] if digits.isascii() and digits.isdigit() else [])
    assert all(schemacheck.errors(v, schema, document) for v in meant), (name, value)
    status, reply = live.call("GET", f"/v1{path}?{name}={quoted}", fingerprint=USER)
    assert (status, reply["parameter"]) == (400, name), reply


def test_textNumbersWithinSixtyFourBits(live):
    status, reply = rawPost(live, "/v1/experiments", b'{"name": 0.0, "nodecount": 1, "nodetypes": "", '
                            b'"script": 9.223372036854776e+18}')
    assert (status, reply["parameter"]) == (400, "body"), reply
    document = _document()
    script = document["components"]["schemas"]["Submission"]["properties"]["script"]
    assert schemacheck.errors(9.223372036854776e18, script, document)
