# -*- test-case-name: tests.test_node_shipper -*-
"""
A token bucket on the reactor's clock: the node's cap on upload bandwidth
(C{results.bandwidth}, bytes per second). A sender asks L{TokenBucket.take}
for the bytes it is about to send and waits for the Deferred; the bucket
runs into debt for a request larger than it holds, so chunks of any size
pass at the configured rate on average, never faster over a second.
"""

from __future__ import annotations

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.internet.task import deferLater


class TokenBucket:
    """
    @ivar rate: bytes per second; 0 means no cap.
    @ivar capacity: the largest burst, in bytes (one second's worth).
    """

    def __init__(self, clock: IReactorTime, rate: float) -> None:
        self.clock = clock
        self.rate = rate
        self.capacity = rate
        self.tokens = rate
        self.updated = clock.seconds()

    def take(self, amount: int) -> Deferred[None]:
        """
        Fires when C{amount} bytes may be sent.
        """
        if self.rate <= 0:
            return succeed(None)
        now = self.clock.seconds()
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        self.tokens -= amount
        if self.tokens >= 0:
            return succeed(None)
        return deferLater(self.clock, -self.tokens / self.rate, lambda: None)
