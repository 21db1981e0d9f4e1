"""
Tests for L{rspec.advertisement}: ListResources documents built from core
nodes and booked windows.
"""

from __future__ import annotations


import pytest
from lxml import etree

from am.core.model import Node
from am.testing import demoNodes
from rspec.advertisement import advertisement
from rspec.times import formatTime
from rspec.xml import GENI_NS, MARVIN_NS, OL_NS, XSI_NS, decompress
from tests.test_rspec_schemas import assertValid, schemas  # noqa: F401 (fixture)

AUTH = "marvin.example"
NOW = 1777636800  # 2026-05-01T12:00:00Z
NS = {"g": GENI_NS, "ol": OL_NS, "marvin": MARVIN_NS}


def nodes() -> list[Node]:
    """
    Three nodes: one with full location tags, one under maintenance, one
    without a country.
    """
    first, second, third = demoNodes(3, NOW)
    first.inventoryTags.update(latitude="59.40", longitude="17.95")
    second.status = "maintenance"
    third.inventoryTags.pop("country")
    third.inventoryTags.pop("model")
    return [first, second, third]


def build(nodeList=None, leases=(), **kwargs) -> etree._Element:
    text = advertisement(nodes() if nodeList is None else nodeList, leases, AUTH, NOW, NOW + 600, **kwargs)
    return etree.fromstring(text.encode())


def nodeElement(root: etree._Element, nodeid: str) -> etree._Element:
    [element] = root.xpath(f"g:node[@component_name='{nodeid}']", namespaces=NS)
    return element


class TestDocument:
    """
    The document as a whole.
    """

    def test_valid(self, schemas) -> None:  # noqa: F811
        """
        Nodes, leases and our extension validate against GENI v3 ad.xsd (with
        its ProtoGENI-derived common part) and our extension schema.
        """
        leases = [(10, "1", NOW - 60, NOW + 3600), (11, "1", NOW + 7200, NOW + 9000), (11, "2", NOW + 7200, NOW + 9000)]
        text = advertisement(nodes(), leases, AUTH, NOW, NOW + 600, granularity=1200, padding=120)
        assertValid(schemas["advertisement"], text)

    def test_empty(self, schemas) -> None:  # noqa: F811
        """
        No nodes is still a valid advertisement.
        """
        assertValid(schemas["advertisement"], advertisement([], [], AUTH, NOW, NOW + 600))

    def test_root(self) -> None:
        """
        Type, RFC 3339 times without fractions, and schema locations as
        space-separated pairs for GENI, NITOS and our extension.
        """
        root = build()
        assert root.tag == f"{{{GENI_NS}}}rspec"
        assert root.get("type") == "advertisement"
        assert root.get("generated") == "2026-05-01T12:00:00Z"
        assert root.get("expires") == "2026-05-01T12:10:00Z"
        items = root.get(f"{{{XSI_NS}}}schemaLocation").split(" ")
        pairs = dict(zip(items[::2], items[1::2]))
        assert len(items) == 6
        assert pairs[GENI_NS] == "http://www.geni.net/resources/rspec/3/ad.xsd"
        assert pairs[OL_NS] == "http://nitlab.inf.uth.gr/schema/sfa/rspec/1/ad-reservation.xsd"
        assert pairs[MARVIN_NS].startswith("http://marvin.monroe-project.eu/rspec/ext/1/")

    def test_compressed(self) -> None:
        """
        C{compressed} gives the same document, base64 of zlib.
        """
        plain = advertisement(nodes(), [], AUTH, NOW, NOW + 600)
        assert decompress(advertisement(nodes(), [], AUTH, NOW, NOW + 600, compressed=True)) == plain

    def test_schedulingInfo(self) -> None:
        """
        Granularity and padding are advertised when given, and only then.
        """
        root = build(granularity=1200, padding=120)
        assert root.find(f"{{{MARVIN_NS}}}granularity").get("seconds") == "1200"
        assert root.find(f"{{{MARVIN_NS}}}padding").get("seconds") == "120"
        root = build()
        assert root.find(f"{{{MARVIN_NS}}}granularity") is None
        assert root.find(f"{{{MARVIN_NS}}}padding") is None


class TestNodes:
    """
    One C{<node>} per node, from the node's tags.
    """

    def test_identity(self) -> None:
        """
        URNs of our authority, the node id as name, exclusive.
        """
        element = nodeElement(build(), "1")
        assert element.get("component_id") == f"urn:publicid:IDN+{AUTH}+node+1"
        assert element.get("component_manager_id") == f"urn:publicid:IDN+{AUTH}+authority+am"
        assert element.get("exclusive") == "true"

    def test_types(self) -> None:
        """
        Hardware type from the C{model} tag (or C{monroe-node}); the only
        sliver type is C{container}.
        """
        root = build()
        assert nodeElement(root, "1").find(f"{{{GENI_NS}}}hardware_type").get("name") == "apu2d"
        assert nodeElement(root, "3").find(f"{{{GENI_NS}}}hardware_type").get("name") == "monroe-node"
        for element in root.iterchildren(f"{{{GENI_NS}}}node"):
            [sliverType] = element.iterchildren(f"{{{GENI_NS}}}sliver_type")
            assert sliverType.get("name") == "container" and len(sliverType) == 0

    def test_location(self) -> None:
        """
        Country (upper-cased ISO code) and coordinates where tagged; no
        location without a country; non-numeric coordinates left out.
        """
        first, second, third = nodes()
        second.inventoryTags.update(latitude="nan", longitude="east")
        root = build([first, second, third])
        location = nodeElement(root, "1").find(f"{{{GENI_NS}}}location")
        assert dict(location.attrib) == {"country": "SE", "latitude": "59.40", "longitude": "17.95"}
        assert dict(nodeElement(root, "2").find(f"{{{GENI_NS}}}location").attrib) == {"country": "SE"}
        assert nodeElement(root, "3").find(f"{{{GENI_NS}}}location") is None

    def test_tags(self) -> None:
        """
        Every effective tag (admin over inventory) as a C{marvin:tag}, sorted.
        """
        node = Node(id="9", inventoryTags={"type": "testing", "country": "se"}, adminTags={"type": "deployed"})
        element = nodeElement(build([node]), "9")
        tags = [(t.get("name"), t.get("value")) for t in element.iterchildren(f"{{{MARVIN_NS}}}tag")]
        assert tags == [("country", "se"), ("type", "deployed")]

    def test_unrepresentableCharacters(self, schemas) -> None:  # noqa: F811
        """
        Characters XML cannot carry are dropped from tag values instead of
        failing the whole advertisement.
        """
        node = Node(id="9", inventoryTags={"site": "bus\x00 7\x1b"})
        text = advertisement([node], [], AUTH, NOW, NOW + 600)
        assertValid(schemas["advertisement"], text)
        tag = nodeElement(etree.fromstring(text.encode()), "9").find(f"{{{MARVIN_NS}}}tag")
        assert tag.get("value") == "bus 7"

    def test_badNodeId(self) -> None:
        """
        A node id that cannot be a URN name is a caller's bug.
        """
        with pytest.raises(ValueError):
            advertisement([Node(id="a b")], [], AUTH, NOW, NOW + 600)


class TestAvailability:
    """
    C{available now}: usable and not booked at this instant.
    """

    def available(self, leases, node=None, **kwargs) -> str:
        node = node or demoNodes(1, NOW)[0]
        return nodeElement(build([node], leases, **kwargs), node.id).find(f"{{{GENI_NS}}}available").get("now")

    def test_free(self) -> None:
        assert self.available([]) == "true"

    def test_bookedNow(self) -> None:
        assert self.available([(1, "1", NOW - 10, NOW + 10)]) == "false"

    def test_halfOpen(self) -> None:
        """
        A window ending now no longer blocks; one starting now does.
        """
        assert self.available([(1, "1", NOW - 600, NOW)]) == "true"
        assert self.available([(1, "1", NOW, NOW + 600)]) == "false"

    def test_futureOnly(self) -> None:
        assert self.available([(1, "1", NOW + 60, NOW + 600)]) == "true"

    def test_otherNodeBooked(self) -> None:
        assert self.available([(1, "2", NOW - 10, NOW + 10)]) == "true"

    def test_notActive(self) -> None:
        node = demoNodes(1, NOW)[0]
        node.status = "maintenance"
        assert self.available([], node) == "false"

    def test_usable(self) -> None:
        """
        The caller may decide usability (e.g. heartbeat age).
        """
        assert self.available([], usable=lambda node: False) == "false"


class TestLeases:
    """
    Booked windows as NITOS leases: listed once, referenced per node, no
    owners.
    """

    def test_leases(self) -> None:
        leases = [(11, "1", NOW + 7200, NOW + 9000), (10, "1", NOW - 60, NOW + 3600), (11, "2", NOW + 7200, NOW + 9000)]
        root = build(leases=leases)
        top = root.findall(f"{{{OL_NS}}}lease")
        assert [dict(lease.attrib) for lease in top] == [
            {"id": "10", "valid_from": formatTime(NOW - 60), "valid_until": formatTime(NOW + 3600)},
            {"id": "11", "valid_from": formatTime(NOW + 7200), "valid_until": formatTime(NOW + 9000)},
        ]
        refs = lambda n: [r.get("id_ref") for r in nodeElement(root, n).iterchildren(f"{{{OL_NS}}}lease_ref")]  # noqa: E731
        assert refs("1") == ["10", "11"]
        assert refs("2") == ["11"]
        assert refs("3") == []

    def test_unadvertisedNodes(self) -> None:
        """
        Windows of nodes not in the advertisement are left out.
        """
        root = build(leases=[(5, "99", NOW, NOW + 60)])
        assert root.findall(f"{{{OL_NS}}}lease") == []

    def test_inconsistent(self) -> None:
        """
        One lease id with two windows is a caller's bug.
        """
        with pytest.raises(ValueError, match="two different windows"):
            build(leases=[(5, "1", NOW, NOW + 60), (5, "2", NOW, NOW + 120)])


def test_large() -> None:
    """
    A large testbed (500 nodes, 10 000 booked windows) renders every lease
    (its speed is printed by bench/bench_hostile_input.py).
    """
    many = demoNodes(500, NOW)
    leases = [(i, str(1 + i % 500), NOW + 3600 * (i // 500), NOW + 3600 * (i // 500) + 1800) for i in range(10_000)]
    text = advertisement(many, leases, AUTH, NOW, NOW + 600)
    assert text.count("<ol:lease ") == 10_000
