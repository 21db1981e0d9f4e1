"""
Slow and greedy clients (am/ctl/slowclients.py) on the reactor's clock: the
read deadline, 431 for oversized header lines, the per-peer connection cap.
"""

from __future__ import annotations

import json

from twisted.internet.address import IPv4Address
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.trial.unittest import SynchronousTestCase
from twisted.web.resource import Resource

from am.ctl.site import makeSite
from am.ctl.slowclients import ClientLimits, GuardedChannel, guard


class Hello(Resource):
    isLeaf = True

    def render(self, request):
        return b"hello"


def peer(host="192.0.2.7", port=40000):
    return IPv4Address("TCP", host, port)


class Connections:
    """
    A guarded site on a memory reactor, connections over string transports.
    """

    def __init__(self, limits=ClientLimits(readTimeout=10, perPeer=2), exempt=()):
        self.reactor = MemoryReactorClock()
        self.site = makeSite(Hello(), [1 << 20], self.reactor)
        self.factory = guard(self.site, limits, exempt)

    def connect(self, host="192.0.2.7"):
        protocol = self.factory.buildProtocol(peer(host))
        transport = StringTransport(peerAddress=peer(host))
        transport.abortConnection = lambda: setattr(transport, "aborted", True)
        transport.aborted = False
        protocol.makeConnection(transport)
        return protocol, transport


def status(transport) -> int:
    return int(transport.value().split(b" ", 2)[1])


def body(transport):
    return json.loads(transport.value().split(b"\r\n\r\n", 1)[1])


class DeadlineTests(SynchronousTestCase):
    def test_dripFedHeadersCutOff(self):
        c = Connections()
        protocol, transport = c.connect()
        protocol.dataReceived(b"GET / HTTP/1.1\r\n")
        for _ in range(9):
            c.reactor.advance(1)  # a header line a second keeps the idle timer happy...
            protocol.dataReceived(b"X-Drip: 1\r\n")
        self.assertEqual(transport.value(), b"")
        c.reactor.advance(1)  # ...but not the total deadline
        self.assertEqual(status(transport), 408)
        self.assertIn("10 s", body(transport)["message"])
        c.reactor.advance(GuardedChannel.lingerTimeout)
        self.assertTrue(transport.aborted)

    def test_slowBodyCutOff(self):
        c = Connections()
        protocol, transport = c.connect()
        protocol.dataReceived(b"POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n")
        protocol.dataReceived(b"x" * 50)
        c.reactor.advance(10)
        self.assertEqual(status(transport), 408)

    def test_promptRequestsServedAndDeadlineRestarts(self):
        c = Connections()
        protocol, transport = c.connect()
        for _ in range(3):
            protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(transport.value().endswith(b"hello"), transport.value())
            transport.clear()
            c.reactor.advance(9)  # idle between requests: the deadline is not running
        protocol.dataReceived(b"GET / HTTP/1.1\r\n")
        c.reactor.advance(10)
        self.assertEqual(status(transport), 408)

    def test_wholeRequestsSetNoTimer(self):
        """
        A request that comes whole in one read is served without a deadline
        ever being set; the incomplete one pipelined behind it gets one.
        """
        c = Connections()
        protocol, transport = c.connect()
        channel = protocol.wrappedProtocol
        deadlines = []
        realCallLater = channel.callLater

        def callLater(delay, func, *args, **kwargs):
            if func == channel._readTooSlow:
                deadlines.append(delay)
            return realCallLater(delay, func, *args, **kwargs)

        channel.callLater = callLater
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        self.assertTrue(transport.value().endswith(b"hello"))
        self.assertEqual(deadlines, [])
        transport.clear()
        protocol.dataReceived(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\n")
        self.assertEqual(deadlines, [10])
        c.reactor.advance(10)
        self.assertEqual(transport.value().count(b"HTTP/1.1 "), 2)
        self.assertIn(b"408", transport.value())

    def test_noDeadlineLeftAfterClose(self):
        c = Connections()
        protocol, transport = c.connect()
        protocol.dataReceived(b"GET / HTTP/1.1\r\n")
        protocol.connectionLost(None)
        self.assertFalse([d for d in c.reactor.getDelayedCalls() if d.func == protocol.wrappedProtocol._readTooSlow])


class HeaderSizeTests(SynchronousTestCase):
    def test_longHeaderLineIs431(self):
        c = Connections()
        protocol, transport = c.connect()
        protocol.dataReceived(b"GET / HTTP/1.1\r\nX-Big: " + b"a" * (1 << 20))
        self.assertEqual(status(transport), 431)
        self.assertIn("line over", body(transport)["message"])
        transport.clear()
        protocol.dataReceived(b"more\r\n\r\n")  # read and dropped while lingering
        self.assertEqual(transport.value(), b"")

    def test_tooManyHeaderBytesIs431(self):
        c = Connections()
        protocol, transport = c.connect()
        protocol.dataReceived(b"GET / HTTP/1.1\r\n")
        for i in range(20):
            protocol.dataReceived(b"X-H%d: " % i + b"a" * 10000 + b"\r\n")
        self.assertEqual(status(transport), 431)


class PeerCapTests(SynchronousTestCase):
    def test_capPerPeer(self):
        c = Connections()
        first = c.connect()
        second = c.connect()
        third, transport = c.connect()
        self.assertTrue(transport.aborted)
        self.assertFalse(second[1].aborted)
        _, other = c.connect("198.51.100.1")  # another address is not affected
        self.assertFalse(other.aborted)
        first[0].connectionLost(None)
        _, again = c.connect()
        self.assertFalse(again.aborted)
        self.assertEqual(c.factory.counts, {"192.0.2.7": 2, "198.51.100.1": 1})

    def test_exemptNetworks(self):
        c = Connections(exempt=["127.0.0.1/32"])
        transports = [c.connect("127.0.0.1")[1] for _ in range(5)]
        self.assertFalse(any(t.aborted for t in transports))

    def test_alpnOffersHTTP11Only(self):
        self.assertEqual(Connections().factory.acceptableProtocols(), [b"http/1.1"])
