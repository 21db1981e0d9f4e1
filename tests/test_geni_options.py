"""
The documented GENI options that no other test ran: C{geni_available}
filtering, the advertisement cache, best-effort C{Renew}, and the message
for a lease that lies in the past.
"""

from __future__ import annotations

from lxml import etree

from am.core.model import NODE_MAINTENANCE
from am.core.requests import AllocationRequest
from rspec.times import formatTime, parseTime
from tests.geni_helpers import AUTHORITY, V3, GeniTestCase, requestRSpec
from tests.trust_helpers import NOW

GENI = "{http://www.geni.net/resources/rspec/3}"


def nodeIds(text: str) -> list[str]:
    root = etree.fromstring(text.encode())
    prefix = f"urn:publicid:IDN+{AUTHORITY}+node+"
    return [n.get("component_id")[len(prefix):] for n in root.iter(f"{GENI}node")]


class AvailableTests(GeniTestCase):
    """
    C{geni_available}: only nodes free now and usable.
    """

    def test_busyAndMaintenanceLeftOut(self) -> None:
        """
        Node 2 runs a booking now, node 3 is in maintenance: the full
        advertisement names all three, the available one only node 1.
        """
        self.successResultOf(self.scheduler.addUser(name="x", role="user", fingerprint="e" * 40))
        now = int(NOW)
        self.successResultOf(self.scheduler.allocate(AllocationRequest(
            ownerid=1, name="e", script="img", nodes=["2"], duration=600, start=now + 300)))
        self.successResultOf(self.scheduler.setNode("3", status=NODE_MAINTENANCE))
        self.clock.advance(400)
        self.assertEqual(nodeIds(self.ok("ListResources", self.userCred(), V3)), ["1", "2", "3"])
        available = self.ok("ListResources", self.userCred(), dict(V3, geni_available=True))
        self.assertEqual(nodeIds(available), ["1"])


class CacheTests(GeniTestCase):
    """
    The advertisement is cached until a change or its lifetime ends.
    """

    def test_hitThenExpiry(self) -> None:
        """
        A second ListResources with nothing changed is answered from the
        cache (the core is not asked again); after the cache's lifetime it is
        asked again.
        """
        asked = []
        real = self.scheduler.offer

        def counting(availableOnly: bool):
            asked.append(availableOnly)
            return real(availableOnly)

        self.scheduler.offer = counting  # type: ignore[method-assign]
        first = self.ok("ListResources", self.userCred(), V3)
        second = self.ok("ListResources", self.userCred(), V3)
        self.assertEqual((first, len(asked)), (second, 1))
        self.ok("ListResources", self.userCred(), dict(V3, geni_available=True))
        self.assertEqual(asked, [False, True])
        self.clock.advance(self.am.settings.adCacheSeconds)
        self.ok("ListResources", self.userCred(), V3)
        self.assertEqual(asked, [False, True, False])


class RenewTests(GeniTestCase):
    """
    C{Renew} with and without C{geni_best_effort}.
    """

    def test_bestEffortRenewsWhatFits(self) -> None:
        """
        Node 2 is booked right after the slice's window: renewing both
        slivers past it fails as a whole, while best effort lengthens the
        sliver on node 1 and names why the one on node 2 was not.
        """
        start, stop = int(NOW) + 600, int(NOW) + 1800
        self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(["1", "2"], start, stop), {})
        self.ok("Provision", [self.s1], self.sliceCred(), V3)
        self.successResultOf(self.scheduler.addUser(name="x", role="user", fingerprint="e" * 40))
        users = self.successResultOf(self.scheduler.read(lambda txn: txn.listUsers()))
        other = [u for u in users if u.name == "x"][0]
        self.successResultOf(self.scheduler.allocate(AllocationRequest(
            ownerid=other.id, name="e", script="img", nodes=["2"], duration=600, start=stop + 300)))
        later = formatTime(stop + 1200)
        self.assertNotEqual(self.code("Renew", [self.s1], self.sliceCred(), later, {}), 0)
        value = self.ok("Renew", [self.s1], self.sliceCred(), later, {"geni_best_effort": True})
        byNode = {s["geni_sliver_urn"]: s for s in value}
        self.assertEqual(len(byNode), 2)
        renewed = [s for s in value if parseTime(s["geni_expires"]) == stop + 1200]
        refused = [s for s in value if s.get("geni_error")]
        self.assertEqual((len(renewed), len(refused)), (1, 1))
        self.assertEqual(parseTime(refused[0]["geni_expires"]), stop)


class PastLeaseTests(GeniTestCase):
    """
    A lease that has already ended is refused for what it is.
    """

    def test_windowInThePast(self) -> None:
        answer = self.call(
            "Allocate", self.s1, self.sliceCred(),
            requestRSpec(["1"], int(NOW) - 7200, int(NOW) - 3600), {},
        )
        self.assertNotEqual(answer["code"]["geni_code"], 0)
        self.assertIn("lies in the past", answer["output"])
        self.assertIn(formatTime(int(NOW) - 3600), answer["output"])
        self.assertNotIn("minimum", answer["output"])
