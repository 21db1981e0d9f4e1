# -*- test-case-name: tests.test_rest_resource,tests.test_geni_face -*-
"""
The controller's one L{Site} and its request limits.

Each face declares the largest body it accepts (the REST face
L{rest_compat.params.MAX_BODY}, the GENI face C{geni.max_request}); the
site's limit is the largest of them, so no face is cut short. A body over
the site's limit is never stored whole: the request keeps its first
C{limit + 1} bytes and drops the rest (and a body whose C{Content-Length}
announces more is not stored at all), so every face, checking the announced
length and the body against its own limit (never above the site's), answers
in its own form (REST 413, GENI TOOBIG). No flag passes between site and
faces: only standard HTTP.
"""

from __future__ import annotations

import secrets
import time
from typing import Any, Callable, Iterable, Optional

from twisted.web.resource import IResource
from twisted.web.server import Request, Site


class MarvinSite(Site):
    """
    A L{Site} without its own access log (each face logs one line per
    request, with the caller's identity) and without tracebacks in answers.
    Each request gets an id (answered as C{X-Request-Id}, logged by the
    faces) and, once finished, is counted by C{observer} with its duration
    (L{am.ctl.metrics.Metrics.observeRequest}).

    @ivar maxBody: the largest body stored, in bytes (see L{limitedRequestFactory}).
    """

    displayTracebacks = False
    noisy = False
    observer: Optional[Callable[[Any, float], None]] = None

    def __init__(self, resource: IResource, maxBody: int, **kwargs: Any) -> None:
        super().__init__(resource, requestFactory=limitedRequestFactory(maxBody), **kwargs)
        self.maxBody = maxBody

    def getResourceFor(self, request: Any) -> Any:
        request.requestId = secrets.token_hex(6)
        request.startedAt = time.perf_counter()
        request.setHeader(b"x-request-id", request.requestId.encode("ascii"))
        return super().getResourceFor(request)

    def log(self, request: Any) -> None:
        started = getattr(request, "startedAt", None)
        if self.observer is not None and started is not None:
            self.observer(request, time.perf_counter() - started)


def limitedRequestFactory(maxBody: int) -> type[Request]:
    """
    A request class that stores at most C{maxBody + 1} bytes of a body
    (Twisted buffers any size otherwise, in memory or a temporary file):
    enough for any face to see that the body is over its limit, never more.
    A body announced (C{Content-Length}) over the limit is not stored at all.
    """

    class LimitedRequest(Request):
        _announcedOver = False

        def gotLength(self, length: Optional[int]) -> None:
            if length is not None and length > maxBody:
                self._announcedOver = True
                length = 0
            super().gotLength(length)

        def handleContentChunk(self, data: bytes) -> None:
            room = 0 if self._announcedOver else maxBody + 1 - self.content.tell()
            if room > 0:
                super().handleContentChunk(data[:room])

    return LimitedRequest


def siteLimit(limits: Iterable[int]) -> int:
    """
    The site's body limit for the faces' C{limits}: the largest.
    """
    return max(limits)


def makeSite(root: IResource, limits: Iterable[int], reactor: Any = None) -> MarvinSite:
    """
    The controller's site over C{root}, storing no body past the largest of
    the faces' C{limits}.
    """
    # Faces parse bodies themselves: Twisted's own multipart parsing answered a
    # malformed body with an empty 400 that no face saw or logged.
    return MarvinSite(root, siteLimit(limits), reactor=reactor, parsePOSTFormSubmission=False)
