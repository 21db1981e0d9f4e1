# -*- test-case-name: tests.test_node_agent -*-
"""
Test doubles for marvind: a fake controller and a fake hook runner.

L{FakeController} is a C{twisted.web} resource implementing the controller's
node routes exactly as the agent relies on them (heartbeat, status report,
certificate check), recording every call. Tests serve it in memory with
C{treq.testing.StubTreq} (driving the real HTTP client code), or over real
TLS for end-to-end tests.
"""

from __future__ import annotations

import copy
import hashlib
import json
from typing import Any
from urllib.parse import parse_qs

import attrs
from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.web.http import datetimeToString
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface import implementer

from node.client import ControllerResponse, ControllerUnreachable
from node.hooks import HookResult, IHookRunner
from node.state import TaskRecord
from node.wire import FINAL, STATUS_CODES, statusCode


@attrs.frozen
class RecordedCall:
    """
    One request the fake controller received.

    @ivar route: C{auth}, C{heartbeat}, C{report} or C{unknown}.
    @ivar fields: form fields, each with its list of values.
    @ivar peer: the common name of the client certificate, over TLS.
    """

    method: str
    path: str
    route: str
    fields: dict[str, list[str]]
    peer: str | None = None


class FakeController(Resource):
    """
    The controller's node routes, in memory. Mount it as the C{v1} child of a
    root resource (see L{root}).

    @ivar tasks: schedule id to task (the wire format), the schedules of node
        L{nodeId}.
    @ivar calls: every request received, in order.
    @ivar reports: C{(schedid, status, when)} of every report applied.
    @ivar available: when false every request gets 503.
    @ivar authorized: when false every request gets 401.
    @ivar dateOffset: added to the clock for the C{Date} header.
    """

    isLeaf = True

    def __init__(self, clock: IReactorTime, nodeId: str = "1") -> None:
        super().__init__()
        self.clock = clock
        self.nodeId = nodeId
        self.tasks: dict[str, dict[str, Any]] = {}
        self.calls: list[RecordedCall] = []
        self.reports: list[tuple[str, str, int]] = []
        self.available = True
        self.authorized = True
        self.dateOffset = 0.0

    def root(self) -> Resource:
        """
        A root resource with this controller at C{/v1}.
        """
        root = Resource()
        root.putChild(b"v1", self)
        return root

    def addTask(
        self, schedid: str, start: float, stop: float, image: str = "registry.example/exp:1",
        expid: int = 1, status: str = "defined", **options: Any,
    ) -> dict[str, Any]:
        """
        Schedule a task on this node.
        """
        task = {
            "id": schedid, "nodeid": self.nodeId, "expid": expid, "start": int(start),
            "stop": int(stop), "status": status, "shared": 0,
            "deployment_options": dict(script=image, **options),
        }
        self.tasks[schedid] = task
        return task

    def statuses(self, schedid: str) -> list[str]:
        """
        The statuses reported for C{schedid}, in order.
        """
        return [status for (sid, status, _) in self.reports if sid == schedid]

    def routeCalls(self, route: str) -> list[RecordedCall]:
        return [c for c in self.calls if c.route == route]

    def render(self, request: Request) -> bytes:  # type: ignore[override]
        segments = [s.decode("utf-8", "replace") for s in request.postpath]
        method = request.method.decode("ascii")
        fields: dict[str, list[str]] = {}
        if method == "PUT":
            body = request.content.read().decode("utf-8", "replace")
            fields = parse_qs(body, keep_blank_values=True)
        route = {
            ("GET", 2, "backend"): "auth",
            ("PUT", 2, "resources"): "heartbeat",
            ("PUT", 2, "schedules"): "report",
        }.get((method, len(segments), segments[0] if segments else ""), "unknown")
        peer = None
        getPeerCertificate = getattr(request.transport, "getPeerCertificate", None)
        if getPeerCertificate is not None:
            certificate = getPeerCertificate()
            if certificate is not None:
                from cryptography.x509.oid import NameOID

                names = certificate.to_cryptography().subject.get_attributes_for_oid(
                    NameOID.COMMON_NAME
                )
                peer = str(names[0].value) if names else None
        self.calls.append(RecordedCall(method, "/".join(segments), route, fields, peer))
        request.setHeader(b"date", datetimeToString(self.clock.seconds() + self.dateOffset))
        request.setHeader(b"content-type", b"application/json")
        if not self.available:
            return self._answer(request, 503, "Service unavailable.")
        if not self.authorized:
            return self._answer(request, 401, "Certificate not known.")
        if route == "auth" and segments[1] == "auth":
            return self._answer(request, 200, body={
                "verified": "SUCCESS", "fingerprint": "00:11:22",
                "user": {"id": 7, "name": f"Node {self.nodeId}", "role": "node"},
            })
        if route == "heartbeat":
            return self._heartbeat(request, segments[1], fields)
        if route == "report":
            return self._report(request, segments[1], fields)
        return self._answer(request, 404, "Not found.")

    def _answer(
        self, request: Request, code: int, message: str | None = None, body: Any = None
    ) -> bytes:
        request.setResponseCode(code)
        return json.dumps(body if body is not None else {"message": message}).encode("utf-8")

    def _heartbeat(self, request: Request, nodeId: str, fields: dict[str, list[str]]) -> bytes:
        if nodeId != self.nodeId:
            return self._answer(request, 401, f"Wrong user to update this status. (Node {nodeId})")
        try:
            limit = int(fields.get("limit", ["3"])[0])
            interfaces = json.loads(fields.get("interfaces", ["[]"])[0])
            maintenance = fields.get("maintenance", ["0"])[0]
        except ValueError:
            return self._answer(request, 400, "Bad parameters.")
        if not isinstance(interfaces, list) or maintenance not in ("0", "1"):
            return self._answer(request, 400, "Bad parameters.")
        now = self.clock.seconds()

        def inWindow(task: dict[str, Any]) -> bool:
            try:
                return float(task["stop"]) > now and float(task["start"]) < now + 86400
            except (KeyError, TypeError, ValueError):
                return True  # malformed on purpose: let the agent see it

        window = [t for t in self.tasks.values() if inWindow(t)]
        window.sort(key=lambda t: t["start"] if isinstance(t.get("start"), (int, float)) else 0)
        reply = copy.deepcopy(window[:limit])
        for task in window[:limit]:
            if task.get("status") == "defined":
                task["status"] = "requested"
        return self._answer(request, 200, body={"interfaces": {}, "tasks": reply})

    def _report(self, request: Request, schedid: str, fields: dict[str, list[str]]) -> bytes:
        task = self.tasks.get(schedid)
        if task is None:
            return self._answer(request, 404, "Could not find schedule entry with this id.")
        if "status" not in fields:
            return self._answer(request, 400, "Parameters missing (required: status, or traffic)")
        status = fields["status"][0].strip()
        if statusCode(status) not in STATUS_CODES:
            return self._answer(request, 400, f"Unknown status code ({status}).")
        old = statusCode(task["status"])
        if old in FINAL:
            return self._answer(request, 409, body={
                "message": f"Status {old} cannot be reset.", "code": "final", "status": old,
            })
        task["status"] = status
        when = int(fields.get("when", ["0"])[0] or 0)
        self.reports.append((schedid, status, when))
        return self._answer(request, 200, "Ok.")


@implementer(IHookRunner)
class FakeHookRunner:
    """
    Records hook runs and answers with configured exit codes, at once or
    when a test releases them.

    @ivar runs: C{(action, schedid, argument)} of every run, in order.
    @ivar held: actions whose runs wait for L{release}.
    """

    def __init__(self) -> None:
        self.runs: list[tuple[str, str, str | None]] = []
        self.held: set[str] = set()
        self._once: dict[tuple[str, str | None], list[HookResult]] = {}
        self._always: dict[tuple[str, str | None], HookResult] = {}
        self._waiting: list[tuple[str, str, Deferred[HookResult]]] = []

    def setResult(
        self, action: str, exitCode: int | None = 0, schedid: str | None = None,
        timedOut: bool = False, times: int = 0,
    ) -> None:
        """
        Make C{action} (for C{schedid}, or for every task) end this way: the
        next C{times} runs only, or from now on when C{times} is 0.
        """
        result = HookResult(
            action, exitCode=exitCode, signal=15 if timedOut else None, timedOut=timedOut,
            timeout=30.0,
        )
        key = (action, schedid)
        if times:
            self._once.setdefault(key, []).extend([result] * times)
        else:
            self._always[key] = result

    def _resultFor(self, action: str, schedid: str) -> HookResult:
        for key in ((action, schedid), (action, None)):
            if self._once.get(key):
                return self._once[key].pop(0)
        for key in ((action, schedid), (action, None)):
            if key in self._always:
                return self._always[key]
        return HookResult(action, exitCode=0)

    def actions(self, schedid: str) -> list[str]:
        """
        The actions run for C{schedid}, in order.
        """
        return [action for (action, sid, _) in self.runs if sid == schedid]

    def runHook(self, action: str, task: TaskRecord, argument: str | None = None) -> Deferred[HookResult]:
        self.runs.append((action, task.id, argument))
        result = self._resultFor(action, task.id)
        if action in self.held:
            d: Deferred[HookResult] = Deferred()
            self._waiting.append((action, task.id, d))
            return d
        return succeed(result)

    def release(self, action: str, exitCode: int = 0) -> None:
        """
        End the oldest held run of C{action} with C{exitCode}.
        """
        for i, (waitingAction, _, d) in enumerate(self._waiting):
            if waitingAction == action:
                del self._waiting[i]
                d.callback(HookResult(action, exitCode=exitCode))
                return
        raise AssertionError(f"no {action} hook is running")


@attrs.frozen
class ControllerPKI:
    """
    Paths of a throw-away PKI written by L{writeControllerPKI} (all PEM).
    """

    caCertificate: str
    serverCertificate: str
    serverKey: str
    clientCertificate: str
    clientKey: str


def writeControllerPKI(directory: str, serverNames: tuple[str, ...] = ("localhost", "127.0.0.1")) -> ControllerPKI:
    """
    Write a CA, a controller certificate for C{serverNames} and a node client
    certificate (C{CN=Node 1}), all signed by the CA, into C{directory}.
    EC keys keep this fast enough to do per test module.
    """
    import datetime
    import ipaddress
    import os

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    os.makedirs(directory, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    def name(cn: str) -> x509.Name:
        return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])

    def write(filename: str, data: bytes) -> str:
        path = os.path.join(directory, filename)
        with open(path, "wb") as f:
            f.write(data)
        return path

    def keyPEM(key: ec.EllipticCurvePrivateKey) -> bytes:
        return key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    caKey = ec.generate_private_key(ec.SECP256R1())
    caName = name(f"Marvin test CA {os.path.basename(directory)}")
    ca = (
        x509.CertificateBuilder().subject_name(caName).issuer_name(caName)
        .public_key(caKey.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=2))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(caKey, hashes.SHA256())
    )

    def leaf(cn: str, usage: x509.ObjectIdentifier, names: list[x509.GeneralName]) -> tuple[bytes, bytes]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (
            x509.CertificateBuilder().subject_name(name(cn)).issuer_name(caName)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
        )
        if names:
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(caKey, hashes.SHA256())
        return cert.public_bytes(serialization.Encoding.PEM), keyPEM(key)

    sans: list[x509.GeneralName] = []
    for serverName in serverNames:
        try:
            sans.append(x509.IPAddress(ipaddress.ip_address(serverName)))
        except ValueError:
            sans.append(x509.DNSName(serverName))
    serverCert, serverKey = leaf("controller", ExtendedKeyUsageOID.SERVER_AUTH, sans)
    clientCert, clientKey = leaf("Node 1", ExtendedKeyUsageOID.CLIENT_AUTH, [])
    return ControllerPKI(
        caCertificate=write("ca.pem", ca.public_bytes(serialization.Encoding.PEM)),
        serverCertificate=write("server.pem", serverCert),
        serverKey=write("server.key", serverKey),
        clientCertificate=write("client.pem", clientCert),
        clientKey=write("client.key", clientKey),
    )


def serverTLSOptions(pki: ControllerPKI) -> Any:
    """
    TLS options for serving a fake controller with C{pki}'s server
    certificate, requiring client certificates from C{pki}'s CA.
    """
    from twisted.internet.ssl import Certificate, PrivateCertificate

    with open(pki.serverCertificate, "rb") as f:
        cert = f.read()
    with open(pki.serverKey, "rb") as f:
        key = f.read()
    with open(pki.caCertificate, "rb") as f:
        ca = Certificate.loadPEM(f.read())
    return PrivateCertificate.loadPEM(cert + key).options(ca)


class FakeResultsController:
    """
    The controller's result routes as the shipper sees them
    (L{node.client.IControllerClient}'s upload methods), in memory, with the
    real protocol's answers: offsets, chunk and file digests, the allowance
    and a closed window. C{down} makes every call fail as unreachable.
    """

    def __init__(self, allowance: int = 10**9) -> None:
        self.allowance = allowance
        self.stored: dict[tuple[str, str], bytes] = {}
        self.partial: dict[tuple[str, str, int, str], bytes] = {}
        self.traffic: dict[str, dict[str, int]] = {}
        self.closed: set[str] = set()
        self.down = False
        self.chunks = 0

    @staticmethod
    def _answer(code: int, body: dict[str, Any]) -> Deferred[ControllerResponse]:
        return succeed(ControllerResponse(code, body, json.dumps(body), None))

    def _refusal(self, schedid: str, path: str, size: int) -> Deferred[ControllerResponse] | None:
        if self.down:
            return fail(ControllerUnreachable("connection refused"))
        if schedid in self.closed:
            return self._answer(409, {"message": "The upload window of this task is closed."})
        used = sum(len(v) for (s, p), v in self.stored.items() if s == schedid and p != path)
        if used + size > self.allowance:
            return self._answer(409, {"message": "over", "allowance": self.allowance, "used": used, "size": size})
        return None

    def uploadStatus(self, schedid: str, path: str, size: int, sha256: str) -> Deferred[ControllerResponse]:
        refused = self._refusal(schedid, path, size)
        if refused is not None:
            return refused
        if hashlib.sha256(self.stored.get((schedid, path), b"-")).hexdigest() == sha256:
            return self._answer(200, {"path": path, "size": size, "offset": size, "complete": True})
        offset = len(self.partial.get((schedid, path, size, sha256), b""))
        return self._answer(200, {"path": path, "size": size, "offset": offset, "complete": False})

    def uploadChunk(
        self, schedid: str, path: str, size: int, sha256: str, offset: int, chunk: bytes
    ) -> Deferred[ControllerResponse]:
        refused = self._refusal(schedid, path, size)
        if refused is not None:
            return refused
        self.chunks += 1
        key = (schedid, path, size, sha256)
        have = self.partial.get(key, b"")
        if offset != len(have):
            return self._answer(409, {"message": "The upload stands at another offset.", "offset": len(have)})
        have += chunk
        if len(have) < size:
            self.partial[key] = have
            return self._answer(200, {"path": path, "size": size, "offset": len(have), "complete": False})
        self.partial.pop(key, None)
        if hashlib.sha256(have).hexdigest() != sha256:
            return self._answer(409, {"message": "the file's sha256 does not match", "offset": 0})
        self.stored[(schedid, path)] = have
        return self._answer(200, {"path": path, "size": size, "offset": size, "complete": True})

    def reportTraffic(self, schedid: str, meters: dict[str, int]) -> Deferred[ControllerResponse]:
        if self.down:
            return fail(ControllerUnreachable("connection refused"))
        self.traffic.setdefault(schedid, {}).update(meters)
        return self._answer(200, {"message": "Ok."})
