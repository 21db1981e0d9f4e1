# -*- test-case-name: tests.test_rest_results -*-
"""
Sending a large body without holding it: a list of pieces (literal bytes, or
a range of a stored result file) written block by block, each block read off
the reactor thread and the next one only once the connection has taken the
last (a push producer registered on the request pauses the loop), so memory
stays at a block or two per download whatever the size.
"""

from __future__ import annotations

from typing import Any, Iterable, Union

from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IPushProducer
from zope.interface import implementer

from am.results.hub import ResultsHub

BLOCK = 64 * 1024

#: Literal bytes, or C{(key, offset, length)} of a stored file.
Piece = Union[bytes, tuple[str, int, int]]


@implementer(IPushProducer)
class Valve:
    """
    The producer the connection pauses and resumes; L{wait} fires when it may write again.
    """

    def __init__(self) -> None:
        self.paused = False
        self.stopped = False
        self._waiting: list[Deferred] = []

    def pauseProducing(self) -> None:
        self.paused = True

    def resumeProducing(self) -> None:
        self.paused = False
        self._release()

    def stopProducing(self) -> None:
        self.stopped = True
        self._release()

    def _release(self) -> None:
        waiting, self._waiting = self._waiting, []
        for d in waiting:
            d.callback(None)

    def wait(self) -> Deferred:
        if not self.paused or self.stopped:
            return succeed(None)
        d: Deferred = Deferred()
        self._waiting.append(d)
        return d


def totalLength(pieces: Iterable[Piece]) -> int:
    """
    The body's length, for C{Content-Length}.
    """
    return sum(len(p) if isinstance(p, bytes) else p[2] for p in pieces)


async def pump(request: Any, hub: ResultsHub, pieces: Iterable[Piece], lost: list[bool]) -> None:
    """
    Write every piece to C{request}; stop early when the client goes away.

    @raise IOError: a stored file was shorter than its record says.
    """
    valve = Valve()
    request.registerProducer(valve, True)
    try:
        for piece in pieces:
            if valve.stopped or lost:
                return
            if isinstance(piece, bytes):
                request.write(piece)
                await valve.wait()
                continue
            key, offset, length = piece
            reader = await hub.open(key, offset, length)
            try:
                left = length
                while left > 0:
                    data = await hub.read(reader, min(BLOCK, left))
                    if not data:
                        raise IOError(f"stored result {key} is shorter than recorded")
                    left -= len(data)
                    request.write(data)
                    await valve.wait()
                    if valve.stopped or lost:
                        return
            finally:
                await hub.close(reader)
    finally:
        request.unregisterProducer()
