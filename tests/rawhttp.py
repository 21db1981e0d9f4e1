"""
A client that sends one raw HTTP request and keeps what comes back: for the
faces' tests of what a well-behaved client would never send.
"""

from __future__ import annotations

from twisted.internet.protocol import Protocol


class HTTPClient(Protocol):
    """
    Sends C{request} as it is once connected; C{received} is the answer so far.
    """

    def __init__(self, request: bytes) -> None:
        self.request = request
        self.received = b""

    def connectionMade(self) -> None:
        self.transport.write(self.request)

    def dataReceived(self, data: bytes) -> None:
        self.received += data
