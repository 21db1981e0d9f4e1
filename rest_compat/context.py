# -*- test-case-name: tests.test_rest_resource -*-
"""
What a route handler receives (L{Context}) and returns (L{Reply}), shared by
the handler modules and the dispatcher in L{rest_compat.resource}.
"""

from __future__ import annotations

from typing import Any, Awaitable, Callable, Optional

import attrs

from am.core.model import User
from am.core.interfaces import IScheduler
from rest_compat.auth import Caller


class HTTPError(Exception):
    """
    An answer with a status code the core's errors do not cover (413, 501, 502...).
    """

    def __init__(self, code: int, message: str, headers: Optional[dict[str, str]] = None, **extra: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.headers = headers or {}
        self.extra = extra


@attrs.define
class Reply:
    """
    A response: C{body} is encoded as JSON unless C{raw} bytes are given;
    C{body=None} with C{raw=None} sends no body (204). A C{stream} writes the
    body itself, after the headers (its C{Content-Length} among them), given
    the request and the list that becomes non-empty if the client goes away.
    """

    code: int = 200
    body: Any = None
    headers: dict[str, str] = attrs.field(factory=dict)
    raw: Optional[bytes] = None
    stream: Optional[Callable[[Any, list[bool]], Awaitable[None]]] = None


@attrs.define
class Context:
    """
    One request as the handlers see it.

    @ivar args: the variable path segments of the route, in order.
    @ivar params: query and body parameters (see L{rest_compat.params}).
    @ivar sync: the controller's inventory synchronisation, if configured.
    @ivar document: the OpenAPI document, already encoded.
    @ivar results: the results hub (spool and store), or C{None}.
    """

    request: Any
    scheduler: IScheduler
    caller: Caller
    args: tuple[str, ...] = ()
    params: dict[str, Any] = attrs.field(factory=dict)
    sync: Optional[Callable[[], Any]] = None
    document: bytes = b"{}"
    results: Any = None  # an am.results.hub.ResultsHub, when results are configured

    @property
    def user(self) -> Optional[User]:
        """
        The authenticated user, or C{None}.
        """
        return self.caller.user

    def now(self) -> int:
        """
        The core's clock, in whole seconds.
        """
        return self.scheduler.now()
