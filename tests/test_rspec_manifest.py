"""
Tests for L{rspec.manifest}: what a slice holds, as jFed and omni read it.
"""

from __future__ import annotations

import pytest
from lxml import etree

from am.core.model import Node, Schedule
from rspec.manifest import Login, SliverView, loginsOf, manifest, parseLogin
from rspec.request import parseRequest
from rspec.times import formatTime
from rspec.xml import GENI_NS, OL_NS, PROXY_NS, XSI_NS, decompress
from tests.test_rspec_request import JFED
from tests.test_rspec_schemas import assertValid, schemas  # noqa: F401 (fixture)

AUTH = "marvin.example"
NOW = 1777636800
NS = {"g": GENI_NS, "ol": OL_NS, "proxy": PROXY_NS}


def node(nodeid: str = "412", **tags: str) -> Node:
    return Node(id=nodeid, hostname=f"node{nodeid}", inventoryTags={"type": "testing", **tags})


def sliver(schedid: int = 31, **kwargs) -> SliverView:
    values = dict(id=schedid, node=node(), clientId="node0", start=NOW + 3600, stop=NOW + 7200)
    values.update(kwargs)
    return SliverView(**values)


def build(slivers, **kwargs) -> etree._Element:
    return etree.fromstring(manifest(slivers, AUTH, NOW, **kwargs).encode())


class TestDocument:
    """
    The manifest as a whole.
    """

    def test_empty(self, schemas) -> None:  # noqa: F811
        """
        A slice without slivers has a valid, empty manifest.
        """
        text = manifest([], AUTH, NOW)
        assertValid(schemas["manifest"], text)
        root = etree.fromstring(text.encode())
        assert root.get("type") == "manifest" and len(root) == 0
        assert root.get("generated") == "2026-05-01T12:00:00Z"
        assert root.get(f"{{{XSI_NS}}}schemaLocation") == (
            "http://www.geni.net/resources/rspec/3 http://www.geni.net/resources/rspec/3/manifest.xsd"
        )
        assert root.get("expires") is None

    def test_expires(self) -> None:
        assert build([], expires=NOW + 600).get("expires") == "2026-05-01T12:10:00Z"

    def test_compressed(self) -> None:
        plain = manifest([sliver()], AUTH, NOW)
        assert decompress(manifest([sliver()], AUTH, NOW, compressed=True)) == plain

    def test_valid(self, schemas) -> None:  # noqa: F811
        """
        A full manifest (logins, proxy, leases, extension) is a valid
        manifest.
        """
        n = node(login_host="node412.example", ssh_proxy="proxy@gw.example:2222")
        slivers = [sliver(31, node=n, image="img:1", leaseClientId="lease0", usernames=("alice", "bob")),
                   sliver(32, node=n, start=NOW + 90000, stop=NOW + 93600),
                   sliver(40, node=node("5"), clientId="other", exclusive=False)]
        assertValid(schemas["manifest"], manifest(slivers, AUTH, NOW, expires=NOW + 600))


class TestNode:
    """
    One sliver on one node.
    """

    def test_attributes(self) -> None:
        """
        Client id as requested, our component URNs, the sliver URN.
        """
        [element] = build([sliver()]).findall(f"{{{GENI_NS}}}node")
        assert dict(element.attrib) == {
            "client_id": "node0",
            "component_id": f"urn:publicid:IDN+{AUTH}+node+412",
            "component_manager_id": f"urn:publicid:IDN+{AUTH}+authority+am",
            "component_name": "412",
            "exclusive": "true",
            "sliver_id": f"urn:publicid:IDN+{AUTH}+sliver+31",
        }

    def test_sliverType(self) -> None:
        """
        The sliver type, with the image as disk image when known.
        """
        element = build([sliver(image="docker.io/monroe/ping")]).find("g:node/g:sliver_type", NS)
        assert element.get("name") == "container"
        assert element.find("g:disk_image", NS).get("name") == "docker.io/monroe/ping"
        element = build([sliver()]).find("g:node/g:sliver_type", NS)
        assert len(element) == 0

    def test_lease(self) -> None:
        """
        The window as an C{ol:lease} carrying the sliver id, referenced from
        the node.
        """
        root = build([sliver(leaseClientId="lease0")])
        [lease] = root.findall(f"{{{OL_NS}}}lease")
        assert dict(lease.attrib) == {
            "id": "31",
            "client_id": "lease0",
            "valid_from": formatTime(NOW + 3600),
            "valid_until": formatTime(NOW + 7200),
            "sliver_id": f"urn:publicid:IDN+{AUTH}+sliver+31",
        }
        assert [r.get("id_ref") for r in root.findall("g:node/ol:lease_ref", NS)] == ["31"]
        assert "client_id" not in build([sliver()]).find(f"{{{OL_NS}}}lease").attrib

    def test_fromSchedule(self) -> None:
        """
        Core schedules convert directly; a shared one is not exclusive.
        """
        schedule = Schedule(expid=3, nodeid="412", start=NOW, stop=NOW + 60, shared=True, id=77)
        view = SliverView.fromSchedule(schedule, node(), image="img")
        assert (view.id, view.clientId, view.start, view.stop, view.exclusive, view.image) == (
            77, "412", NOW, NOW + 60, False, "img"
        )
        assert build([view]).find("g:node", NS).get("exclusive") == "false"


class TestGrouping:
    """
    Several windows of one requested node share one C{<node>}.
    """

    def test_recurring(self) -> None:
        """
        Three windows on one node: one node element whose sliver id is the
        earliest, three leases with their own sliver ids, three refs.
        """
        slivers = [sliver(33, start=NOW + 9000, stop=NOW + 9600),
                   sliver(31, start=NOW + 1000, stop=NOW + 1600),
                   sliver(32, start=NOW + 5000, stop=NOW + 5600)]
        root = build(slivers)
        [element] = root.findall(f"{{{GENI_NS}}}node")
        assert element.get("sliver_id").endswith("+sliver+31")
        assert [r.get("id_ref") for r in element.findall("ol:lease_ref", NS)] == ["31", "32", "33"]
        assert [lease.get("sliver_id").rsplit("+", 1)[1] for lease in root.findall("ol:lease", NS)] == ["31", "32", "33"]

    def test_distinctNodes(self) -> None:
        """
        Different client ids or nodes get their own elements, in order.
        """
        root = build([sliver(1), sliver(2, node=node("5")), sliver(3, clientId="node1")])
        names = [(e.get("client_id"), e.get("component_name")) for e in root.findall("g:node", NS)]
        assert names == [("node0", "412"), ("node0", "5"), ("node1", "412")]


class TestLogin:
    """
    SSH logins from node tags or the caller, and the jFed proxy extension.
    """

    def services(self, view: SliverView):
        return build([view]).find("g:node/g:services", NS)

    def test_none(self) -> None:
        """
        Without a login host there is nothing to show.
        """
        assert self.services(sliver()) is None

    def test_fromTags(self) -> None:
        view = sliver(node=node(login_host="n412.example", login_port="2200", login_user="monroe"))
        [login] = self.services(view)
        assert dict(login.attrib) == {
            "authentication": "ssh-keys", "hostname": "n412.example", "port": "2200", "username": "monroe",
        }

    def test_defaults(self) -> None:
        [login] = self.services(sliver(node=node(login_host="n412.example")))
        assert (login.get("port"), login.get("username")) == ("22", "root")

    def test_callerOverrides(self) -> None:
        """
        The caller's host, port and users win over the tags.
        """
        view = sliver(node=node(login_host="tag.example", login_port="2200", login_user="monroe"),
                      loginHost="tunnel.example", loginPort=40022, usernames=("alice", "bob"))
        logins = self.services(view)
        assert [(x.get("hostname"), x.get("port"), x.get("username")) for x in logins] == [
            ("tunnel.example", "40022", "alice"), ("tunnel.example", "40022", "bob"),
        ]
        assert loginsOf(sliver(loginHost="h.example"))[0] == [Login("h.example", 22, "root")]

    @pytest.mark.parametrize("port", ["abc", "0", "70000", ""])
    def test_badPortTag(self, port: str) -> None:
        """
        A wrong port tag hides the login rather than showing a wrong one.
        """
        assert self.services(sliver(node=node(login_host="n.example", login_port=port))) is None

    def test_proxy(self) -> None:
        """
        Behind NAT: a login for the gateway, one per user for the node, and
        C{proxy:proxy} joining them as jFed expects.
        """
        view = sliver(node=node(login_host="10.0.0.7", ssh_proxy="proxy@gw.example:2222"), usernames=("alice", "bob"))
        children = list(self.services(view))
        assert [(c.tag, dict(c.attrib)) for c in children] == [
            (f"{{{GENI_NS}}}login",
             {"authentication": "ssh-keys", "hostname": "gw.example", "port": "2222", "username": "proxy"}),
            (f"{{{GENI_NS}}}login",
             {"authentication": "ssh-keys", "hostname": "10.0.0.7", "port": "22", "username": "alice"}),
            (f"{{{GENI_NS}}}login",
             {"authentication": "ssh-keys", "hostname": "10.0.0.7", "port": "22", "username": "bob"}),
            (f"{{{PROXY_NS}}}proxy", {"proxy": "proxy@gw.example:2222", "for": "alice@10.0.0.7:22"}),
            (f"{{{PROXY_NS}}}proxy", {"proxy": "proxy@gw.example:2222", "for": "bob@10.0.0.7:22"}),
        ]

    def test_ipv6Address(self) -> None:
        """
        IPv6 hosts are bracketed in the proxy extension's addresses only.
        """
        view = sliver(node=node(login_host="2001:db8::7", ssh_proxy="p@[2001:db8::1]:2222"))
        gateway, login, proxy = list(self.services(view))
        assert (gateway.get("hostname"), login.get("hostname")) == ("2001:db8::1", "2001:db8::7")
        assert dict(proxy.attrib) == {"proxy": "p@[2001:db8::1]:2222", "for": "root@[2001:db8::7]:22"}

    def test_proxyOverride(self) -> None:
        view = sliver(node=node(login_host="n.example", ssh_proxy="a@b.example"), proxy="jump.example:22")
        [gateway, _, proxy] = list(self.services(view))
        assert (gateway.get("hostname"), gateway.get("username")) == ("jump.example", "root")
        assert proxy.get("proxy") == "root@jump.example:22"

    def test_badProxyTag(self) -> None:
        """
        A malformed gateway tag leaves the plain node login.
        """
        view = sliver(node=node(login_host="n.example", ssh_proxy="not a host:xx"))
        assert [c.tag for c in self.services(view)] == [f"{{{GENI_NS}}}login"]

    @pytest.mark.parametrize(
        "text, expected",
        [
            ("gw.example", Login("gw.example", 22, "root")),
            ("u@gw.example", Login("gw.example", 22, "u")),
            ("u@gw.example:2022", Login("gw.example", 2022, "u")),
            ("gw.example:2022", Login("gw.example", 2022, "root")),
            ("u@[2001:db8::1]:22", Login("2001:db8::1", 22, "u")),
            ("u@gw.example:0", None),
            ("u@gw.example:99999", None),
            ("u@@gw", None),
            ("", None),
            (None, None),
        ],
    )
    def test_parseLogin(self, text, expected) -> None:
        assert parseLogin(text) == expected


class TestEcho:
    """
    What the request said comes back.
    """

    def test_fromRequest(self, schemas) -> None:  # noqa: F811
        """
        jFed's request parsed and answered: client id, component id, lease
        client id and its layout extension all come back.
        """
        spec = parseRequest(JFED, AUTH)
        [request] = spec.nodes
        [lease] = request.leases
        n = node(request.nodeid)
        view = SliverView(
            id=31, node=n, clientId=request.clientId, start=lease.validFrom, stop=lease.validUntil,
            image=request.image, leaseClientId=lease.clientId, extensions=request.extensions,
        )
        text = manifest([view], AUTH, NOW)
        assertValid(schemas["manifest"], text)
        root = etree.fromstring(text.encode())
        element = root.find("g:node", NS)
        assert element.get("client_id") == request.clientId
        assert element.get("component_id") == request.componentId
        assert root.find("ol:lease", NS).get("client_id") == "lease0"
        assert root.find("ol:lease", NS).get("valid_from") == "2026-05-01T12:00:00Z"
        location = element.find("{http://jfed.iminds.be/rspec/ext/jfed/1}location")
        assert location.get("x") == "120.0"

    def test_badStoredExtension(self) -> None:
        """
        A stored extension that no longer parses is dropped, not fatal.
        """
        root = build([sliver(extensions=("<broken", '<x:a xmlns:x="urn:x"/>'))])
        assert [c.tag for c in root.find("g:node", NS) if c.tag.startswith("{urn:x}")] == ["{urn:x}a"]


def test_resultsNamed(schemas) -> None:  # noqa: F811
    """
    A sliver's node names where its results are, valid against the schemas.
    """
    from rspec.xml import MARVIN_NS

    text = manifest([sliver(31, resultsURL="https://am.example/v1/schedules/31/results")], AUTH, NOW)
    assertValid(schemas["manifest"], text)
    root = etree.fromstring(text.encode())
    found = root.findall(f".//{{{MARVIN_NS}}}results")
    assert [(r.get("sliver_id"), r.get("href")) for r in found] == [
        (f"urn:publicid:IDN+{AUTH}+sliver+31", "https://am.example/v1/schedules/31/results")
    ]
    assert etree.fromstring(manifest([sliver(31)], AUTH, NOW).encode()).findall(f".//{{{MARVIN_NS}}}results") == []
