# -*- test-case-name: tests.test_rest_resource -*-
"""
The REST face as one Twisted resource: routing of the legacy paths (with and
without C{/v1}), authentication, the access matrix, parameter parsing, error
mapping to JSON bodies, CORS and one log line per request.

The controller mounts what L{buildRESTResource} returns as its site root and
adds its own children (C{xmlrpc} for the GENI face) with C{putChild}; every
other first path segment is served here.
"""

from __future__ import annotations

import importlib.resources
import json
import secrets
import time
from typing import Any, Awaitable, Callable, Iterable, Optional, Union
from urllib.parse import unquote_to_bytes

import attrs
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.web.resource import IResource, Resource
from twisted.web.server import NOT_DONE_YET

from am.core.errors import BadRequest, Conflict, Forbidden, MarvinError, NotFound
from am.core.interfaces import IScheduler
from rest_compat import (
    access, backend, calendar, experiments, nodes, notifications, occurrences, render, resources, results,
    schedules, ui, users,
)
from rest_compat.auth import Authenticator, Caller
from rest_compat.backend import UNAUTHENTICATED
from rest_compat.context import Context, HTTPError, Reply
from rest_compat.cors import CORSPolicy
from rest_compat.identities import Identities
from rest_compat.params import MAX_BODY, BodyTooLarge, parseQuery, readParams

API_VERSION = "1.0"

# Path patterns ("*" is one non-empty segment) -> route names of the access
# matrix; the first match wins, so literal segments come before wildcards.
ROUTES: tuple[tuple[tuple[str, ...], str], ...] = (
    (("version",), "version"),
    (("openapi.json",), "openapi"),
    (("ui",), "ui"),
    (("ui", "changes"), "ui/changes"),
    (("ui", "*"), "ui/file"),
    (("schedules.ics",), "calendar"),
    (("schedules.json",), "calendar"),
    (("users", "*", "schedules.ics"), "user/calendar"),
    (("users", "*", "schedules.json"), "user/calendar"),
    (("experiments", "*", "schedules.ics"), "experiment/calendar"),
    (("experiments", "*", "schedules.json"), "experiment/calendar"),
    (("resources", "*", "schedules.ics"), "resource/calendar"),
    (("resources", "*", "schedules.json"), "resource/calendar"),
    (("resources",), "resources"),
    (("resources", "*"), "resource"),
    (("resources", "*", "schedules"), "resource/schedules"),
    (("resources", "*", "all"), "resource/all"),
    (("resources", "*", "journals"), "resource/journals"),
    (("resources", "*", "journals", "*"), "resource/journal"),
    (("users",), "users"),
    (("users", "*"), "user"),
    (("users", "*", "schedules"), "user/schedules"),
    (("users", "*", "experiments"), "user/experiments"),
    (("users", "*", "journals"), "user/journals"),
    (("users", "*", "notify-secret"), "user/notify-secret"),
    (("experiments",), "experiments"),
    (("experiments", "*"), "experiment"),
    (("experiments", "*", "schedules"), "experiment/schedules"),
    (("experiments", "*", "schedule"), "experiment/schedules"),
    (("experiments", "*", "schedules", "*"), "experiment/schedule"),
    (("experiments", "*", "schedule", "*"), "experiment/schedule"),
    (("experiments", "*", "occurrences"), "experiment/occurrences"),
    (("experiments", "*", "occurrences", "*"), "experiment/occurrence"),
    (("experiments", "*", "events"), "experiment/events"),
    (("experiments", "*", "results.tar"), "experiment/results"),
    (("experiments", "*", "*"), "experiment/merge"),
    (("schedules",), "schedules"),
    (("schedules", "find"), "schedules/find"),
    (("schedules", "*"), "schedule"),
    (("schedules", "*", "results"), "schedule/results"),
    (("schedules", "*", "results", "*"), "schedule/result"),
    (("schedules", "*", "uploads", "*"), "schedule/upload"),
    (("backend", "auth"), "backend/auth"),
    (("backend", "activity"), "backend/activity"),
    (("backend", "pubkeys"), "backend/pubkeys"),
    (("backend", "sync"), "backend/sync"),
)

Handler = Callable[[Context], Awaitable[Reply]]

# (route, method) -> handler; the roles are in L{access.MATRIX} only.
HANDLERS: dict[tuple[str, str], Handler] = {
    ("version", "GET"): backend.version,
    ("openapi", "GET"): backend.openapi,
    ("resources", "GET"): resources.listResources,
    ("resource", "GET"): resources.getResource,
    ("resource", "PUT"): resources.putResource,
    ("resource/schedules", "GET"): resources.resourceSchedules,
    ("resource/all", "GET"): resources.resourceAll,
    ("resource/journals", "GET"): resources.resourceJournals,
    ("resource/journal", "GET"): resources.resourceJournals,
    ("users", "GET"): users.listUsers,
    ("users", "POST"): users.addUser,
    ("user", "GET"): users.getUser,
    ("user", "PUT"): users.updateUser,
    ("user", "DELETE"): users.deleteUser,
    ("user/schedules", "GET"): users.userSchedules,
    ("user/experiments", "GET"): users.userExperiments,
    ("user/journals", "GET"): users.userJournals,
    ("user/notify-secret", "GET"): notifications.readSecret,
    ("user/notify-secret", "POST"): notifications.rotateSecret,
    ("experiments", "GET"): experiments.listExperiments,
    ("experiments", "POST"): experiments.submit,
    ("experiment", "GET"): experiments.getExperiment,
    ("experiment", "PUT"): experiments.mergeMissing,
    ("experiment", "DELETE"): experiments.delete,
    ("experiment/merge", "PUT"): experiments.merge,
    ("experiment/schedules", "GET"): experiments.experimentSchedules,
    ("experiment/schedule", "GET"): experiments.experimentSchedule,
    ("experiment/occurrences", "GET"): occurrences.listOccurrences,
    ("experiment/occurrences", "DELETE"): occurrences.cancelFrom,
    ("experiment/occurrence", "GET"): occurrences.getOccurrence,
    ("experiment/occurrence", "PUT"): occurrences.move,
    ("experiment/occurrence", "DELETE"): occurrences.cancelOne,
    ("experiment/events", "GET"): notifications.experimentEvents,
    ("schedules", "GET"): schedules.listSchedules,
    ("ui", "GET"): ui.page,
    ("ui/file", "GET"): ui.asset,
    ("ui/changes", "GET"): ui.changes,
    ("calendar", "GET"): calendar.allCalendar,
    ("user/calendar", "GET"): calendar.userCalendar,
    ("experiment/calendar", "GET"): calendar.experimentCalendar,
    ("resource/calendar", "GET"): calendar.resourceCalendar,
    ("schedules/find", "GET"): schedules.find,
    ("schedule", "GET"): schedules.getSchedule,
    ("schedule", "PUT"): nodes.report,
    ("schedule/results", "GET"): results.listResults,
    ("schedule/result", "GET"): results.download,
    ("schedule/upload", "GET"): results.uploadStatus,
    ("schedule/upload", "PUT"): results.uploadChunk,
    ("experiment/results", "GET"): results.experimentArchive,
    ("backend/auth", "GET"): backend.auth,
    ("backend/activity", "GET"): backend.activity,
    ("backend/pubkeys", "GET"): backend.pubkeys,
    ("backend/sync", "PUT"): backend.sync,
}

# Routes whose body is data, not parameters: only the query string is parsed.
RAW_BODY: frozenset[tuple[str, str]] = frozenset({("schedule/upload", "PUT")})

_STATUS = ((BadRequest, 400), (Forbidden, 403), (NotFound, 404), (Conflict, 409))


def _byShape(
    routes: Iterable[tuple[tuple[str, ...], str]],
) -> dict[tuple[int, str], list[tuple[tuple[str, ...], str]]]:
    """
    The routes a path could match, by its length and first segment (C{"*"}:
    a first segment no pattern names), each list in the order of L{ROUTES}.
    """
    routes = list(routes)
    shapes = {(len(p), p[0]) for p, _ in routes if p} | {(len(p), "*") for p, _ in routes if p}
    return {
        (length, first): [(p, r) for p, r in routes if len(p) == length and p[0] in (first, "*")]
        for length, first in shapes
    }


_SHAPES = _byShape(ROUTES)


def resolve(segments: list[str]) -> Optional[tuple[str, tuple[str, ...]]]:
    """
    The route and its variable segments for a path (without C{/v1}), or C{None}.
    """
    if not segments:
        return None
    candidates = _SHAPES.get((len(segments), segments[0])) or _SHAPES.get((len(segments), "*"), [])
    for pattern, route in candidates:
        args = []
        for want, got in zip(pattern, segments):
            if want == "*":
                if not got:
                    break
                args.append(got)
            elif want != got:
                break
        else:
            return route, tuple(args)
    return None


def pathSegments(raw: list[bytes]) -> Optional[list[str]]:
    """
    Decoded path segments without the optional C{v1} prefix and one trailing
    slash; C{None} when a segment is not UTF-8.
    """
    try:
        segments = [unquote_to_bytes(s).decode("utf-8") for s in raw]
    except UnicodeDecodeError:
        return None
    if segments and segments[-1] == "":
        segments.pop()
    if segments and segments[0] == "v1":
        segments.pop(0)
    return segments


# Who a request is from until it is authenticated (a Caller is frozen: one will do).
_NOBODY = Caller()


@attrs.define
class _Exchange:
    """
    What the request log needs to know about one request.
    """

    method: str = "-"
    route: Optional[str] = None
    caller: Caller = _NOBODY


class RESTApplication:
    """
    Serves each request start to finish; nothing escapes as an exception.
    """

    log = Logger()

    def __init__(
        self,
        scheduler: IScheduler,
        authenticator: Authenticator,
        cors: Optional[CORSPolicy] = None,
        sync: Optional[Callable[[], Any]] = None,
        maxBody: int = MAX_BODY,
        document: bytes = b"{}",
        timer: Callable[[], float] = time.perf_counter,
        results: Any = None,
        rememberCallers: bool = True,
        callersVersion: Optional[Callable[[], int]] = None,
    ) -> None:
        self.scheduler = scheduler
        self.authenticator = authenticator
        self.identities = Identities(scheduler, rememberCallers, version=callersVersion)
        self.cors = cors
        self.sync = sync
        self.maxBody = maxBody
        self.document = document
        self.timer = timer
        self.results = results

    async def serve(self, request: Any, segments: list[bytes], lost: list[bool]) -> None:
        """
        Answer C{request}; C{lost} becomes non-empty if the client went away.
        """
        started = self.timer()
        exchange = _Exchange()
        try:
            reply = await self._process(request, segments, exchange)
            payload = self._payload(reply)
        except Exception:
            requestId = secrets.token_hex(6)
            self.log.failure("Internal error {requestId} serving {path}", requestId=requestId, path=_path(request))
            reply = Reply(500, render.message(f"Internal error {requestId}"))
            payload = render.encode(reply.body)
        # For the controller's metrics (a node's heartbeat is counted as such).
        request.marvinRole = exchange.caller.role
        if exchange.route is not None:
            request.marvinRoute = exchange.route
        if not lost:
            try:
                self._send(request, reply, payload, exchange)
                if reply.stream is not None:
                    await self._stream(request, reply, lost)
            except Exception:
                self.log.failure("Could not send the reply to {path}", path=_path(request))
                if reply.stream is not None and not lost:
                    request.loseConnection()
        self.log.info(
            "{method} {path} {user} {status} {duration:.1f} ms",
            face="rest",
            method=exchange.method,
            path=_path(request),
            route=exchange.route,
            user=exchange.caller.name,
            status=reply.code,
            duration=round((self.timer() - started) * 1000, 3),
            requestId=getattr(request, "requestId", None),
        )

    async def _stream(self, request: Any, reply: Reply, lost: list[bool]) -> None:
        """
        Write a streamed body after its headers (nothing for HEAD), then finish.
        """
        if request.method != b"HEAD":
            await reply.stream(request, lost)
        if not lost:
            request.finish()

    async def _process(self, request: Any, segments: list[bytes], exchange: _Exchange) -> Reply:
        try:
            return await self._dispatch(request, segments, exchange)
        except access.Unauthenticated:
            return Reply(401, render.message(UNAUTHENTICATED))
        except access.MethodNotAllowed as e:
            return Reply(405, render.message("Method not allowed."), headers={"Allow": ", ".join(e.allow)})
        except BodyTooLarge as e:
            return Reply(413, render.message(f"Request body too large (at most {e.limit} bytes)."))
        except HTTPError as e:
            return Reply(e.code, render.message(e.message, **e.extra), headers=e.headers)
        except MarvinError as e:
            for kind, code in _STATUS:
                if isinstance(e, kind):
                    return Reply(code, render.message(e.message, **e.extra))
            raise

    async def _dispatch(self, request: Any, raw: list[bytes], exchange: _Exchange) -> Reply:
        method = exchange.method = request.method.decode("ascii", "replace").upper()
        segments = pathSegments(raw)
        match = resolve(segments) if segments is not None else None
        if match is None:
            raise NotFound("Unknown path.")
        route, args = match
        exchange.route = route
        if method == "OPTIONS":
            return Reply(204, headers={"Allow": ", ".join(access.allowedMethods(route))})
        if access.effectiveMethod(method) not in access.MATRIX[route]:
            raise access.MethodNotAllowed(access.allowedMethods(route))
        caller = exchange.caller = await self.authenticator.authenticate(request, self.scheduler, self.identities)
        access.check(route, method, caller.user)
        key = (route, access.effectiveMethod(method))
        params = parseQuery(request.uri) if key in RAW_BODY else readParams(request, self.maxBody)
        handler = HANDLERS[key]
        context = Context(request, self.scheduler, caller, args, params, self.sync, self.document, self.results)
        return await handler(context)

    def _payload(self, reply: Reply) -> bytes:
        if reply.raw is not None:
            return reply.raw
        if reply.body is None and reply.code == 204:
            return b""
        return render.encode(reply.body)

    def _send(self, request: Any, reply: Reply, payload: bytes, exchange: _Exchange) -> None:
        headers = {"api-version": API_VERSION}
        if payload:
            headers["Content-Type"] = "application/json"
        if self.cors is not None:
            origin = request.getHeader(b"origin")
            methods = access.allowedMethods(exchange.route) if exchange.route else []
            headers.update(
                self.cors.headers(
                    origin.decode("ascii", "replace") if origin else None,
                    exchange.method == "OPTIONS",
                    methods,
                )
            )
        if reply.stream is not None:
            headers.pop("Content-Type", None)
        headers.update(reply.headers)
        if reply.stream is None:
            headers["Content-Length"] = str(len(payload))
        request.setResponseCode(reply.code)
        for name, value in headers.items():
            request.setHeader(name.encode("ascii"), value.encode("ascii", "replace"))
        if reply.stream is None:
            request.write(payload)
            request.finish()


def _path(request: Any) -> str:
    return getattr(request, "path", b"").decode("ascii", "backslashreplace")


class _Endpoint(Resource):
    """
    The leaf that serves every path below the root (except the controller's
    own children).
    """

    isLeaf = True

    def __init__(self, application: RESTApplication) -> None:
        super().__init__()
        self.application = application

    def render(self, request: Any) -> Any:
        return self.serve(request, request.prepath[-1:] + request.postpath)

    def serve(self, request: Any, segments: list[bytes]) -> Any:
        lost: list[bool] = []
        request.notifyFinish().addErrback(lambda _: lost.append(True))
        Deferred.fromCoroutine(self.application.serve(request, segments, lost))
        return NOT_DONE_YET


class RESTRoot(Resource):
    """
    The root: the controller's children first, then the REST routes.
    """

    def __init__(self, application: RESTApplication) -> None:
        super().__init__()
        self.application = application
        self._endpoint = _Endpoint(application)

    def getChild(self, path: bytes, request: Any) -> Resource:
        return self._endpoint

    def render(self, request: Any) -> Any:
        return self._endpoint.serve(request, [])


def loadDocument() -> bytes:
    """
    The OpenAPI description shipped as C{schemas/openapi.json}.
    """
    document = importlib.resources.files("schemas").joinpath("openapi.json").read_bytes()
    json.loads(document)
    return document


def buildRESTResource(
    scheduler: IScheduler,
    authenticator: Authenticator,
    cors: Union[None, CORSPolicy, Iterable[str]] = None,
    sync: Optional[Callable[[], Any]] = None,
    maxBody: int = MAX_BODY,
    results: Any = None,
    rememberCallers: bool = True,
    callersVersion: Optional[Callable[[], int]] = None,
) -> IResource:
    """
    The REST face over C{scheduler}.

    @param authenticator: identifies callers (certificate or trusted proxy).
    @param cors: allowed browser origins (or a L{CORSPolicy}); C{None} sends
        no CORS headers.
    @param sync: a callable returning a Deferred that synchronises the
        inventory, for C{PUT /backend/sync}; C{None} answers 501 there.
    @param maxBody: the largest request body accepted, in bytes (413 beyond).
    @param results: the results hub (L{am.results.hub.ResultsHub}); C{None}
        answers 501 on the results routes.
    @param rememberCallers: remember active users by fingerprint between
        requests (L{rest_compat.identities}); only when no other controller
        writes the same database.
    @param callersVersion: with processes sharing the database (marvinctld's
        workers), a counter they all bump with every user change: callers
        are remembered only while it stays put (L{rest_compat.identities}).
    @return: a root resource serving C{/version}, C{/openapi.json}, C{/v1/...}
        and the same paths without C{/v1}; C{putChild} more on it freely.
    """
    ui.counterFor(scheduler)  # the timeline's live updates follow the core's events from now on
    application = RESTApplication(
        scheduler, authenticator, CORSPolicy.coerce(cors), sync, maxBody, loadDocument(), results=results,
        rememberCallers=rememberCallers, callersVersion=callersVersion,
    )
    return RESTRoot(application)
