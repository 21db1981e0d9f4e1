# -*- test-case-name: tests.test_ctl_ops -*-
"""
C{/health} and C{/ready}, for load balancers, systemd watchdogs and
Prometheus: unauthenticated, cheap, and saying nothing about users.

C{/health} answers 200 while the process serves HTTP at all. C{/ready}
answers 200 only when the database answers a trivial read within a few
seconds, the inventory was loaded at least once (when one is configured),
and no writing transaction has been waiting or running for too long;
otherwise 503, naming the failed checks.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred
from twisted.python.failure import Failure
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET

# A write older than this means the writer is stuck (a transaction is
# milliseconds; a big inventory sync a second or two).
STUCK_AFTER = 30.0
# How long the database may take to answer the readiness read.
DATABASE_TIMEOUT = 5.0


def _json(request: Any, code: int, body: dict[str, Any]) -> bytes:
    request.setResponseCode(code)
    request.setHeader(b"content-type", b"application/json")
    request.setHeader(b"cache-control", b"no-store")
    data = json.dumps(body, sort_keys=True).encode("utf-8")
    request.setHeader(b"content-length", str(len(data)).encode("ascii"))
    return data


class HealthResource(Resource):
    """
    C{GET /health}: alive.
    """

    isLeaf = True

    def render_GET(self, request: Any) -> bytes:
        return _json(request, 200, {"status": "alive"})


class ReadyResource(Resource):
    """
    C{GET /ready}: able to do useful work.

    @param read: the store's C{read}; the check runs a transaction that does nothing.
    @param inventoryLoaded: whether the inventory has been loaded once (or
        needs no loading).
    @param oldestWrite: the age in seconds of the oldest unfinished write, or C{None}.
    """

    isLeaf = True

    def __init__(
        self,
        reactor: Any,
        read: Callable[..., Deferred],
        inventoryLoaded: Callable[[], bool],
        oldestWrite: Callable[[], Optional[float]],
        stuckAfter: float = STUCK_AFTER,
        timeout: float = DATABASE_TIMEOUT,
    ) -> None:
        super().__init__()
        self.reactor = reactor
        self.read = read
        self.inventoryLoaded = inventoryLoaded
        self.oldestWrite = oldestWrite
        self.stuckAfter = stuckAfter
        self.timeout = timeout

    def render_GET(self, request: Any) -> Any:
        checks: dict[str, str] = {}
        checks["inventory"] = "ok" if self.inventoryLoaded() else "not loaded yet"
        age = self.oldestWrite()
        checks["writer"] = "ok" if age is None or age < self.stuckAfter else f"a write has waited {age:.0f} s"

        def database(_: Any) -> None:
            checks["database"] = "ok"

        def unreachable(failure: Any) -> None:
            checks["database"] = f"unreachable: {failure.getErrorMessage() or failure.type.__name__}"

        def answer(_: Any) -> None:
            if request._disconnected:
                return
            ready = all(v == "ok" for v in checks.values())
            request.write(_json(request, 200 if ready else 503, {"ready": ready, "checks": checks}))
            request.finish()

        # Race the read against a timer without cancelling the read itself.
        outcome: Deferred = Deferred()

        def late() -> None:
            if not outcome.called:
                outcome.errback(TimeoutError(f"no answer within {self.timeout:g} s"))

        timer = self.reactor.callLater(self.timeout, late)

        def settled(result: Any) -> None:
            if timer.active():
                timer.cancel()
            if not outcome.called:
                outcome.callback(None) if not isinstance(result, Failure) else outcome.errback(result)

        self.read(lambda txn: None).addBoth(settled)
        outcome.addCallbacks(database, unreachable).addCallback(answer)
        return NOT_DONE_YET
