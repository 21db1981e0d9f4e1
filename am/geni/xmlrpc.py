# -*- test-case-name: tests.test_geni_api -*-
"""
The AM API v3 on the wire: XML-RPC over the controller's TLS listener.

Every answer is a GENI struct, even for an unparsable body, an unknown method,
the wrong number of arguments or a body over the size limit (TOOBIG), so
clients never see a Fault or an HTTP error for an API-level problem.
Arguments nested deeper than L{MAX_DEPTH} are BADARGS (no GENI argument is
nested more than a few levels). Every call is logged once when answered
(L{am.geni.calllog}).
"""

from __future__ import annotations

import time
import xmlrpc.client
from typing import Any, Callable, Optional
from xml.parsers import expat

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web import resource, server

from am.geni import calllog, envelope
from am.geni.envelope import BADARGS, TOOBIG, UNSUPPORTED, GeniError, result
from am.geni.service import AggregateManager
from am.trust.tls import callerFromRequest

log = Logger()

MAX_DEPTH = 16

# method name -> number of arguments after the caller
SIGNATURES = {
    "GetVersion": (0, 1),
    "ListResources": (2, 2),
    "Describe": (3, 3),
    "Allocate": (4, 4),
    "Renew": (4, 4),
    "Provision": (3, 3),
    "Status": (3, 3),
    "PerformOperationalAction": (4, 4),
    "Delete": (3, 3),
    "Shutdown": (3, 3),
}


def _announced(request: server.Request) -> int:
    """
    The body length the client announced (0 when none or malformed): the
    site stores no body announced over its limit, so the face checks this too.
    """
    try:
        return int((request.requestHeaders.getRawHeaders(b"content-length") or [b"0"])[0])
    except ValueError:
        return 0


class AggregateManagerResource(resource.Resource):
    """
    POSTed XML-RPC calls to the L{AggregateManager}.
    """

    isLeaf = True

    def __init__(
        self,
        am: AggregateManager,
        maxBody: int = 4 * 1024 * 1024,
        timer: Callable[[], float] = time.perf_counter,
        identify: Callable[[Any], Any] = callerFromRequest,
    ) -> None:
        """
        @param identify: the caller of a request, or L{TrustError}: the
            certificate of our own TLS connection by default; the controller
            adds a trusted proxy's certificate header
            (L{am.trust.proxies.proxiedCallerFromRequest}).
        """
        super().__init__()
        self.am = am
        self.identify = identify
        self.maxBody = maxBody
        self.timer = timer
        self._escaped: dict[int, tuple[str, str]] = {}

    def render_GET(self, request: server.Request) -> bytes:
        request.setResponseCode(405)
        request.setHeader(b"allow", b"POST")
        request.setHeader(b"content-type", b"text/plain")
        return b"GENI AM API v3: POST XML-RPC calls here.\n"

    def render_POST(self, request: server.Request) -> Any:
        started = self.timer()
        record = calllog.CallRecord("?")
        body = request.content.read(self.maxBody + 1)
        if len(body) > self.maxBody or _announced(request) > self.maxBody:
            self._send(result("", f"request larger than {self.maxBody} bytes", TOOBIG), request, record, started)
            return server.NOT_DONE_YET
        try:
            args, method = loads(body)
        except Exception:
            self._send(result("", "malformed XML-RPC request", BADARGS), request, record, started)
            return server.NOT_DONE_YET
        record.method = str(method)[:64]
        d = Deferred.fromCoroutine(self._call(request, method, args, record))
        d.addCallback(self._send, request, record, started)
        return server.NOT_DONE_YET

    async def _call(
        self, request: server.Request, method: Any, args: tuple, record: calllog.CallRecord | None = None
    ) -> dict[str, Any]:
        record = record or calllog.CallRecord(str(method)[:64])
        calllog.current().set(record)
        try:
            try:
                caller = self.identify(request)
                record.caller = caller.urn
            except Exception as e:
                caller, refusal = None, e  # refused below, after the checks of the call itself
            if method not in SIGNATURES:
                raise GeniError(UNSUPPORTED, f"no method {str(method)[:64]!r} in GENI AM API v3")
            low, high = SIGNATURES[method]
            if not low <= len(args) <= high:
                raise GeniError(BADARGS, f"{method} takes {low if low == high else f'{low} to {high}'} arguments, not {len(args)}")
            if _tooDeep(args, MAX_DEPTH):
                raise GeniError(BADARGS, f"arguments nested deeper than {MAX_DEPTH} levels")
            args = tuple(_plain(a) for a in args)
            if method in ("Allocate", "Shutdown"):
                calllog.noteSlice(args[0])
            if caller is None:
                raise refusal
            return await getattr(self.am, method)(caller, *args)
        except BaseException as e:  # every error becomes a struct
            return envelope.fromException(e, str(method)[:64])

    def _send(
        self, answer: dict[str, Any], request: server.Request, record: calllog.CallRecord, started: float
    ) -> None:
        code = answer.get("code", {}).get("geni_code")
        # For the controller's metrics: the method and the answer's geni_code.
        request.geniCall = (record.method if record.method in SIGNATURES else "-", code)  # type: ignore[attr-defined]
        log.info(
            "GENI {method} {caller} {slice} {slivers} slivers geni_code {code} {duration:.1f} ms",
            method=record.method,
            caller=record.caller,
            slice=record.sliceURN,
            slivers=calllog.sliversIn(answer),
            code=code,
            duration=(self.timer() - started) * 1000,
        )
        if request._disconnected:
            return
        method = record.method
        try:
            payload = self._marshal(answer)
        except Exception:
            log.failure("Cannot marshal the answer to {method}", method=method)
            payload = xmlrpc.client.dumps(
                (result("", "internal error while encoding the answer", envelope.SERVERERROR),),
                methodresponse=True,
            )
        data = payload.encode("utf-8")
        request.setHeader(b"content-type", b"text/xml; charset=utf-8")
        request.setHeader(b"content-length", str(len(data)).encode())
        request.write(data)
        request.finish()


    def _marshal(self, answer: dict[str, Any]) -> str:
        """
        The XML-RPC response. A large text value (a cached advertisement, the
        same string object call after call) is escaped once and reused: escaping
        half a megabyte is most of the cost of a ListResources answer, and even
        the 10 kB compressed one costs three passes over it per call.
        """
        value = answer.get("value")
        if not isinstance(value, str) or len(value) < _LARGE:
            return xmlrpc.client.dumps((answer,), methodresponse=True, allow_none=False)
        cached = self._escaped.get(id(value))
        if cached is None or cached[0] is not value:
            cached = (value, xmlrpc.client.escape(value))
            if len(self._escaped) >= 8:
                self._escaped.clear()
            self._escaped[id(value)] = cached
        shell = xmlrpc.client.dumps((dict(answer, value=_PLACEHOLDER),), methodresponse=True, allow_none=False)
        return shell.replace(_PLACEHOLDER, cached[1], 1)


_LARGE = 4 * 1024
_PLACEHOLDER = "MARVIN-LARGE-VALUE-9f3c2e71"


def loads(body: bytes) -> tuple[tuple, Optional[str]]:
    """
    C{xmlrpc.client.loads(body)}, with expat buffering character data. A
    credential travels XML-escaped inside a string, and unbuffered expat hands
    the unmarshaller each run of text between two entities on its own: some
    450 Python calls for one credential, most of the cost of decoding a call.
    """
    target = xmlrpc.client.Unmarshaller()
    parser = expat.ParserCreate(None, None)
    parser.buffer_text = True
    parser.buffer_size = 64 * 1024
    parser.StartElementHandler = target.start
    parser.EndElementHandler = target.end
    parser.CharacterDataHandler = target.data
    target.xml(None, None)
    parser.Parse(body, True)
    return target.close(), target.getmethodname()


def _tooDeep(value: Any, limit: int) -> bool:
    """
    Whether arrays and structs in C{value} nest deeper than C{limit} (checked
    without recursion, so any depth the parser accepted is safe to ask about).
    """
    stack = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (list, tuple, dict)):
            if depth >= limit:
                return True
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return False


def _plain(value: Any) -> Any:
    """
    Binary arguments (a Python 3 client sending bytes) become text; DateTime becomes its string.
    """
    if isinstance(value, xmlrpc.client.Binary):
        return value.data.decode("utf-8", "replace")
    if isinstance(value, xmlrpc.client.DateTime):
        return value.value
    if isinstance(value, list):
        return [_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    return value
