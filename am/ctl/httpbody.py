# -*- test-case-name: tests.test_inventory,tests.test_inventory_oauth -*-
"""
Reading an HTTP answer from a server we do not control (the inventory API,
its OAuth2 token endpoint): the body up to a size limit, and a deadline, so
a broken peer can neither fill the controller's memory nor hang a sync.
"""

from __future__ import annotations

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure

from am.ctl.inventorymap import InventoryError

__all__ = ["BoundedBody", "describeFailure", "readBody"]


class BoundedBody(Protocol):
    """
    Collect a response body, giving up past a size limit.

    @ivar finished: fires with the body; cancelling it stops the transfer.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.finished: Deferred = Deferred(lambda _: self._stop())
        self.chunks: list[bytes] = []
        self.size = 0

    def _stop(self) -> None:
        if self.transport is not None:
            self.transport.stopProducing()  # type: ignore[attr-defined]

    def dataReceived(self, data: bytes) -> None:
        if self.finished.called:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.finished.errback(InventoryError(f"answer larger than {self.limit} bytes"))
            self._stop()
            return
        self.chunks.append(data)

    def connectionLost(self, reason: Failure) -> None:  # type: ignore[override]
        if self.finished.called:
            return
        from twisted.web.client import ResponseDone
        from twisted.web.http import PotentialDataLoss

        if reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self.chunks))
        else:
            self.finished.errback(reason)


def readBody(response: Any, limit: int) -> Deferred:
    """
    The body of a twisted.web client C{response}, at most C{limit} bytes.
    """
    body = BoundedBody(limit)
    response.deliverBody(body)
    return body.finished


def describeFailure(failure: Failure) -> str:
    """
    A one-line account of a connection error, a timeout or anything else.
    """
    from twisted.internet.defer import TimeoutError as DeferredTimeout

    if failure.check(DeferredTimeout):
        return "no answer in time"
    text = failure.getErrorMessage() or failure.type.__name__
    inner = getattr(failure.value, "reasons", None)
    if inner:
        text = "; ".join(r.getErrorMessage() or r.type.__name__ for r in inner)
    return text
