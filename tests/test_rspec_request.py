"""
Tests for L{rspec.request}: realistic requests parse into plain objects, and
every kind of bad request is refused with an L{RSpecError} naming the
problem.
"""

from __future__ import annotations

import pytest
from lxml import etree

from rspec.request import LeaseSpec, NodeSpec, Recurrence, parseRequest
from rspec.times import parseTime
from rspec.xml import MAX_SIZE, RSpecError
from tests.test_rspec_schemas import assertValid, schemas  # noqa: F401 (fixture)
from tests.test_rspec_xml import billionLaughs

AUTH = "marvin.example"
CM = f"urn:publicid:IDN+{AUTH}+authority+am"
NODE = f"urn:publicid:IDN+{AUTH}+node+"
HEAD = (
    '<rspec xmlns="http://www.geni.net/resources/rspec/3" '
    'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
    'xmlns:ol="http://nitlab.inf.uth.gr/schema/sfa/rspec/1" '
    'xmlns:marvin="http://marvin.monroe-project.eu/rspec/ext/1" type="request">'
)


def req(body: str) -> str:
    """
    A request RSpec around C{body}.
    """
    return HEAD + body + "</rspec>"


# jFed writes a lease, a bound node with its lease_ref, its own layout
# extension, times with fractions and a local offset.
JFED = f"""<?xml version='1.0' encoding='UTF-8'?>
<rspec xmlns="http://www.geni.net/resources/rspec/3"
       xmlns:jfed="http://jfed.iminds.be/rspec/ext/jfed/1"
       xmlns:ol="http://nitlab.inf.uth.gr/schema/sfa/rspec/1"
       xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance"
       type="request" generated_by="jFed RSpec Editor" generated="2026-04-30T18:35:22.186+02:00"
       xsi:schemaLocation="http://www.geni.net/resources/rspec/3 http://www.geni.net/resources/rspec/3/request.xsd http://nitlab.inf.uth.gr/schema/sfa/rspec/1 http://nitlab.inf.uth.gr/schema/sfa/rspec/1/request-reservation.xsd">
  <ol:lease client_id="lease0" valid_from="2026-05-01T14:00:00.000+02:00" valid_until="2026-05-01T15:00:00.000+02:00"/>
  <node client_id="node0" exclusive="true"
        component_manager_id="{CM}"
        component_id="{NODE}412" component_name="412">
    <sliver_type name="container">
      <disk_image name="docker.io/monroe/base:latest"/>
    </sliver_type>
    <ol:lease_ref id_ref="lease0"/>
    <jfed:location x="120.0" y="86.5"/>
  </node>
</rspec>
"""

# omni/geni-lib: a bound node, no lease (run as soon as possible), the image
# as an install service.
OMNI = f"""<?xml version="1.0" encoding="UTF-8"?>
<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">
  <node client_id="n1" component_id="{NODE}7" exclusive="false">
    <sliver_type name="container"/>
    <services>
      <install url="docker.io/monroe/ping:1.0" install_path="/"/>
    </services>
  </node>
</rspec>
"""

# Our extension: two unbound groups chosen by filter, recurring, with options.
UNBOUND = f"""<?xml version="1.0" encoding="UTF-8"?>
<rspec xmlns="http://www.geni.net/resources/rspec/3"
       xmlns:marvin="http://marvin.monroe-project.eu/rspec/ext/1"
       xmlns:ol="http://nitlab.inf.uth.gr/schema/sfa/rspec/1" type="request">
  <marvin:recurrence scheme="simple" period="3600" until="2026-12-01T00:00:00Z"/>
  <marvin:options shared="false" storage="500000000" traffic="100000000" duration="1800">
    <marvin:option name="ssh" value="1"/>
    <marvin:option name="target" value="8.8.8.8"/>
  </marvin:options>
  <ol:lease valid_from="2026-05-01T12:00:00Z" valid_until="2026-05-01T12:30:00Z"/>
  <node client_id="spain">
    <sliver_type name="container">
      <disk_image name="docker.io/monroe/ping"/>
    </sliver_type>
    <marvin:filter nodetypes="type:testing,country:es" count="3"/>
  </node>
  <node client_id="anywhere" component_manager_id="{CM}">
    <sliver_type name="container">
      <disk_image name="docker.io/monroe/ping"/>
    </sliver_type>
  </node>
</rspec>
"""


class TestRealistic:
    """
    Requests as real clients write them parse, and they are valid GENI v3
    requests (with our extension) to begin with.
    """

    def test_jfed(self, schemas) -> None:  # noqa: F811
        """
        jFed: a bound node in a NITOS lease, fractional offset times, its
        layout extension kept for the manifest.
        """
        assertValid(schemas["request"], JFED.encode())
        spec = parseRequest(JFED, AUTH)
        lease = LeaseSpec("lease0", None, parseTime("2026-05-01T12:00:00Z"), parseTime("2026-05-01T13:00:00Z"))
        assert spec.leases == (lease,)
        [node] = spec.nodes
        assert node.clientId == "node0"
        assert node.bound and node.nodeid == "412"
        assert node.componentId == f"{NODE}412"
        assert node.componentName == "412"
        assert node.exclusive is True
        assert node.sliverType == "container"
        assert node.image == "docker.io/monroe/base:latest"
        assert node.leases == (lease,)
        assert node.nodetypes is None and node.count == 1
        [extension] = node.extensions
        element = etree.fromstring(extension)
        assert element.tag == "{http://jfed.iminds.be/rspec/ext/jfed/1}location"
        assert element.get("x") == "120.0"
        assert "geni.net" not in extension  # only the namespaces it uses
        assert spec.recurrence is None and spec.options == {} and spec.foreign == ()

    def test_omni(self, schemas) -> None:  # noqa: F811
        """
        omni: bound node, no lease, the image from C{services/install}.
        """
        assertValid(schemas["request"], OMNI.encode())
        spec = parseRequest(OMNI.encode(), AUTH)
        [node] = spec.nodes
        assert node == NodeSpec(
            clientId="n1",
            componentId=f"{NODE}7",
            nodeid="7",
            exclusive=False,
            sliverType="container",
            image="docker.io/monroe/ping:1.0",
        )
        assert spec.leases == ()
        assert spec.images == {"docker.io/monroe/ping:1.0"}

    def test_unbound(self, schemas) -> None:  # noqa: F811
        """
        Unbound nodes with our filter and count, recurrence and options; an
        anonymous lease applies to every node that references none.
        """
        assertValid(schemas["request"], UNBOUND.encode())
        spec = parseRequest(UNBOUND, AUTH)
        spain, anywhere = spec.nodes
        assert not spain.bound and spain.nodetypes == "type:testing,country:es" and spain.count == 3
        assert not anywhere.bound and anywhere.nodetypes is None and anywhere.count == 1
        window = LeaseSpec(None, None, parseTime("2026-05-01T12:00:00Z"), parseTime("2026-05-01T12:30:00Z"))
        assert spain.leases == anywhere.leases == (window,)
        assert spec.recurrence == Recurrence("simple", 3600, parseTime("2026-12-01T00:00:00Z"))
        assert (spec.shared, spec.storage, spec.traffic, spec.duration) == (False, 500000000, 100000000, 1800)
        assert spec.options == {"ssh": "1", "target": "8.8.8.8"}

    def test_diskImageURL(self) -> None:
        """
        C{disk_image url} wins over its name. (The partial v3 schema in the
        reference set predates the C{url} attribute, so this one is not
        schema-checked.)
        """
        spec = parseRequest(
            req(
                '<node client_id="a"><sliver_type name="container">'
                '<disk_image name="ping" url="registry.example/monroe/ping:2"/>'
                "</sliver_type></node>"
            ),
            AUTH,
        )
        assert spec.nodes[0].image == "registry.example/monroe/ping:2"

    def test_installAndDiskImageAgree(self) -> None:
        """
        Install URL and disk image may both be given if they name one image.
        """
        spec = parseRequest(
            req(
                '<node client_id="a"><sliver_type name="container"><disk_image name="img:1"/></sliver_type>'
                '<services><install url="img:1" install_path="/"/></services></node>'
            ),
            AUTH,
        )
        assert spec.nodes[0].image == "img:1"

    def test_noImage(self) -> None:
        """
        A request without an image parses; the face decides what that means.
        """
        assert parseRequest(req('<node client_id="a"/>'), AUTH).nodes[0].image is None


class TestLeases:
    """
    NITOS leases in their various spellings.
    """

    def test_omfPrefix(self) -> None:
        """
        The prefix does not matter, only the namespace (some write C{omf:}).
        """
        spec = parseRequest(
            '<rspec xmlns="http://www.geni.net/resources/rspec/3" '
            'xmlns:omf="http://nitlab.inf.uth.gr/schema/sfa/rspec/1" type="request">'
            '<omf:lease client_id="x" valid_from="2026-05-01T12:00:00Z" valid_until="2026-05-01T13:00:00Z"/>'
            '<node client_id="a"><omf:lease_ref id_ref="x"/></node></rspec>',
            AUTH,
        )
        assert spec.nodes[0].leases[0].clientId == "x"

    def test_aliasNamespace(self) -> None:
        """
        The URI without C{schema/} that some omf_sfa requests use is read
        too, rather than silently booking "now".
        """
        spec = parseRequest(
            '<rspec xmlns="http://www.geni.net/resources/rspec/3" '
            'xmlns:ol="http://nitlab.inf.uth.gr/sfa/rspec/1" type="request">'
            '<ol:lease client_id="x" valid_from="2026-05-01T12:00:00Z" valid_until="2026-05-01T13:00:00Z"/>'
            '<node client_id="a"><ol:lease_ref id_ref="x"/></node></rspec>',
            AUTH,
        )
        assert spec.nodes[0].leases[0].validFrom == parseTime("2026-05-01T12:00:00Z")

    def test_existingLease(self) -> None:
        """
        C{id} refers to a lease we issued; it may restate its window or not.
        """
        spec = parseRequest(
            req(
                '<ol:lease id="17"/>'
                '<ol:lease id="18" valid_from="2026-05-01T12:00:00Z" valid_until="2026-05-01T13:00:00Z"/>'
                '<node client_id="a"><ol:lease_ref id_ref="17"/><ol:lease_ref id_ref="18"/></node>'
            ),
            AUTH,
        )
        first, second = spec.nodes[0].leases
        assert first == LeaseSpec(None, "17") and first.existing
        assert second.id == "18" and second.validUntil - second.validFrom == 3600

    def test_referByEither(self) -> None:
        """
        A lease with both C{client_id} and C{id} can be referenced by either;
        a node referencing it twice gets it once.
        """
        spec = parseRequest(
            req(
                '<ol:lease id="17" client_id="mine" valid_from="2026-05-01T12:00:00Z" '
                'valid_until="2026-05-01T13:00:00Z"/>'
                '<node client_id="a"><ol:lease_ref id_ref="17"/><ol:lease_ref id_ref="mine"/></node>'
            ),
            AUTH,
        )
        assert len(spec.nodes[0].leases) == 1

    def test_severalWindows(self) -> None:
        """
        Several leases on one node, one lease on several nodes, and a lease
        written inside a node (which applies to that node).
        """
        spec = parseRequest(
            req(
                '<ol:lease client_id="l1" valid_from="2026-05-01T12:00:00Z" valid_until="2026-05-01T13:00:00Z"/>'
                '<ol:lease client_id="l2" valid_from="2026-05-02T12:00:00Z" valid_until="2026-05-02T13:00:00Z"/>'
                '<node client_id="a"><ol:lease_ref id_ref="l1"/><ol:lease_ref id_ref="l2"/></node>'
                '<node client_id="b"><ol:lease_ref id_ref="l1"/></node>'
                '<node client_id="c"><ol:lease client_id="l3" valid_from="2026-05-03T12:00:00Z" '
                'valid_until="2026-05-03T13:00:00Z"/></node>'
            ),
            AUTH,
        )
        a, b, c = spec.nodes
        assert [lease.clientId for lease in a.leases] == ["l1", "l2"]
        assert [lease.clientId for lease in b.leases] == ["l1"]
        assert [lease.clientId for lease in c.leases] == ["l3"]
        assert len(spec.leases) == 3

    def test_unreferencedNamedLease(self) -> None:
        """
        A named lease no node of ours references (it may be another
        aggregate's) is listed but binds nothing.
        """
        spec = parseRequest(
            req(
                '<ol:lease client_id="l9" valid_from="2026-05-01T12:00:00Z" valid_until="2026-05-01T13:00:00Z"/>'
                '<node client_id="a"/>'
            ),
            AUTH,
        )
        assert spec.nodes[0].leases == () and len(spec.leases) == 1


class TestForeign:
    """
    Nodes of other aggregates.
    """

    MULTI = req(
        '<node client_id="ours" component_manager_id="urn:publicid:IDN+MARVIN.example+authority+am"/>'
        '<node client_id="wall" component_manager_id="urn:publicid:IDN+wall2.ilabt.iminds.be+authority+cm" '
        'component_id="urn:publicid:IDN+wall2.ilabt.iminds.be+node+n1"/>'
        '<node client_id="bare" component_id="urn:publicid:IDN+wall2.ilabt.iminds.be+node+n2"/>'
    )

    def test_refusedByDefault(self) -> None:
        """
        A foreign manager is an error naming it.
        """
        with pytest.raises(RSpecError, match="wall2.ilabt.iminds.be\\+authority\\+cm"):
            parseRequest(self.MULTI, AUTH)

    def test_ignored(self) -> None:
        """
        With C{ignoreForeign}, other aggregates' nodes are skipped and
        listed; authorities compare case-insensitively.
        """
        spec = parseRequest(self.MULTI, AUTH, ignoreForeign=True)
        assert [n.clientId for n in spec.nodes] == ["ours"]
        assert spec.foreign == ("wall", "bare")

    def test_ourManagerForeignComponent(self) -> None:
        """
        A foreign component under our manager is an error even when
        ignoring foreign nodes.
        """
        body = req(
            f'<node client_id="a" component_manager_id="{CM}" '
            'component_id="urn:publicid:IDN+other.example+node+1"/>'
        )
        for ignore in (False, True):
            with pytest.raises(RSpecError, match="other.example\\+node\\+1"):
                parseRequest(body, AUTH, ignoreForeign=ignore)

    def test_nothingOurs(self) -> None:
        """
        A request with only foreign nodes names nothing for us.
        """
        body = req('<node client_id="w" component_manager_id="urn:publicid:IDN+x.example+authority+cm"/>')
        with pytest.raises(RSpecError, match="no node of this aggregate"):
            parseRequest(body, AUTH, ignoreForeign=True)


def refused(body: str | bytes, match: str, **kwargs) -> None:
    with pytest.raises(RSpecError, match=match):
        parseRequest(body, AUTH, **kwargs)


LEASE = '<ol:lease client_id="l" valid_from="{}" valid_until="{}"/><node client_id="a"><ol:lease_ref id_ref="l"/></node>'


class TestRefusals:
    """
    Each way a request can be wrong, with a message that says so.
    """

    def test_doctype(self) -> None:
        refused("<!DOCTYPE rspec>" + req('<node client_id="a"/>'), "DOCTYPE")

    def test_externalEntity(self) -> None:
        refused(
            '<!DOCTYPE rspec [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            + req('<node client_id="&x;"/>'),
            "DOCTYPE",
        )

    def test_billionLaughs(self) -> None:
        refused(billionLaughs(), "DOCTYPE")

    def test_oversize(self) -> None:
        refused(req('<node client_id="a"/>' + " " * MAX_SIZE), "larger than")
        refused(req('<node client_id="a"/>'), "larger than 50 bytes", maxSize=50)

    def test_tooDeep(self) -> None:
        refused(req('<node client_id="a">' + "<x:a xmlns:x='urn:x'>" * 60 + "</x:a>" * 60 + "</node>"), "deeper")

    @pytest.mark.parametrize("data", ["<rspec", req('<node client_id="a">'), "", b"\x00\x01"])
    def test_malformed(self, data: str | bytes) -> None:
        refused(data, "RSpec")

    def test_wrongRoot(self) -> None:
        refused('<foo xmlns="http://www.geni.net/resources/rspec/3" type="request"/>', "root must be <rspec>")

    def test_wrongNamespace(self) -> None:
        refused('<rspec type="request"><node client_id="a"/></rspec>', "namespace \\(none\\)")
        refused(
            '<rspec xmlns="http://www.protogeni.net/resources/rspec/2" type="request"><node client_id="a"/></rspec>',
            "protogeni",
        )

    @pytest.mark.parametrize("kind", ["manifest", "advertisement", "", "REQUEST"])
    def test_wrongType(self, kind: str) -> None:
        refused(HEAD.replace('type="request"', f'type="{kind}"') + '<node client_id="a"/></rspec>', 'type="request"')

    def test_missingType(self) -> None:
        refused(HEAD.replace(' type="request"', "") + '<node client_id="a"/></rspec>', "'none'")

    def test_foreignManager(self) -> None:
        refused(
            req('<node client_id="a" component_manager_id="urn:publicid:IDN+evil.example+authority+am"/>'),
            "evil.example",
        )

    def test_subAuthorityIsForeign(self) -> None:
        refused(req(f'<node client_id="a" component_id="urn:publicid:IDN+{AUTH}:sub+node+1"/>'), "not a node of")

    def test_componentNotANode(self) -> None:
        refused(req(f'<node client_id="a" component_id="urn:publicid:IDN+{AUTH}+link+1"/>'), "not a node of")

    def test_managerNotAnAuthority(self) -> None:
        refused(req(f'<node client_id="a" component_manager_id="urn:publicid:IDN+{AUTH}+node+1"/>'), "is not this")

    def test_malformedURN(self) -> None:
        refused(req('<node client_id="a" component_id="node 1"/>'), "not a valid URN")

    @pytest.mark.parametrize(
        "start, stop, match",
        [
            ("2026-05-01T12:00:00", "2026-05-01T13:00:00Z", "zone"),
            ("yesterday", "2026-05-01T13:00:00Z", "valid_from"),
            ("2026-05-01T12:00:00Z", "2026-02-30T13:00:00Z", "valid_until"),
            ("2026-05-01T12:00:00Z", "2026-05-01T12:00:00Z", "before or when"),
            ("2026-05-01T12:00:00Z", "2026-05-01T13:59:00+02:00", "before or when"),
        ],
    )
    def test_badTimes(self, start: str, stop: str, match: str) -> None:
        refused(req(LEASE.format(start, stop)), match)

    def test_leaseWithoutTimes(self) -> None:
        refused(req('<ol:lease client_id="l" valid_from="2026-05-01T12:00:00Z"/><node client_id="a"/>'), "both")
        refused(req('<ol:lease id="9" valid_until="2026-05-01T12:00:00Z"/><node client_id="a"/>'), "both")

    def test_unknownLease(self) -> None:
        refused(req('<node client_id="a"><ol:lease_ref id_ref="nope"/></node>'), "unknown lease 'nope'")
        refused(req('<node client_id="a"><ol:lease_ref/></node>'), "without id_ref")

    def test_duplicateLease(self) -> None:
        lease = '<ol:lease client_id="l" valid_from="2026-05-01T12:00:00Z" valid_until="2026-05-01T13:00:00Z"/>'
        refused(req(lease + lease + '<node client_id="a"/>'), "share the id 'l'")

    def test_clientIds(self) -> None:
        refused(req("<node/>"), "client_id")
        refused(req('<node client_id="a"/><node client_id="a"/>'), "share the client_id")
        refused(req(f'<node client_id="{"x" * 300}"/>'), "longer than")

    def test_filterOnBoundNode(self) -> None:
        refused(
            req(f'<node client_id="a" component_id="{NODE}1"><marvin:filter nodetypes="type:testing"/></node>'),
            "unbound nodes only",
        )

    @pytest.mark.parametrize("filterAttrs, match", [('nodetypes="type"', "expected"), ('count="0"', "count")])
    def test_badFilter(self, filterAttrs: str, match: str) -> None:
        refused(req(f'<node client_id="a"><marvin:filter {filterAttrs}/></node>'), match)

    def test_marvinElements(self) -> None:
        refused(req('<node client_id="a"><marvin:filtre/></node>'), "unknown extension element marvin:filtre")
        refused(req('<node client_id="a"><marvin:tag name="a" value="b"/></node>'), "advertisements")
        refused(req('<marvin:filter/><node client_id="a"/>'), "child of <node>")
        refused(
            req('<node client_id="a"><marvin:recurrence scheme="simple" period="1" until="2026-01-01T00:00:00Z"/></node>'),
            "child of <rspec>",
        )
        refused(req('<marvin:option name="a" value="b"/><node client_id="a"/>'), "child of <marvin:options>")
        refused(req('<marvin:options/><marvin:options/><node client_id="a"/>'), "more than one marvin:options")

    @pytest.mark.parametrize(
        "element, match",
        [
            ('<marvin:recurrence scheme="weekly" period="3600" until="2026-12-01T00:00:00Z"/>', "simple"),
            ('<marvin:recurrence scheme="simple" until="2026-12-01T00:00:00Z"/>', "period"),
            ('<marvin:recurrence scheme="simple" period="3600"/>', "until"),
            ('<marvin:recurrence scheme="simple" period="3600" until="2026-12-01"/>', "until"),
            ('<marvin:options shared="maybe"/>', "true or false"),
            ('<marvin:options storage="-1"/>', "storage"),
            ('<marvin:options traffic="1e9"/>', "traffic"),
            ('<marvin:options duration="0"/>', "duration"),
            ('<marvin:options><marvin:option value="1"/></marvin:options>', "needs a name"),
            ('<marvin:options><marvin:option name="a"/></marvin:options>', "needs a value"),
            ('<marvin:options><marvin:option name="shared" value="1"/></marvin:options>', "attribute"),
            (
                '<marvin:options><marvin:option name="a" value="1"/><marvin:option name="a" value="2"/></marvin:options>',
                "twice",
            ),
        ],
    )
    def test_badExtension(self, element: str, match: str) -> None:
        refused(req(element + '<node client_id="a"/>'), match)

    def test_sliverType(self) -> None:
        refused(req('<node client_id="a"><sliver_type name="raw-pc"/></node>'), "'raw-pc' is not offered")
        refused(req('<node client_id="a"><sliver_type/></node>'), "needs a name")
        refused(req('<node client_id="a"><sliver_type name="container"/><sliver_type name="container"/></node>'),
                "more than one sliver_type")
        spec = parseRequest(req('<node client_id="a"><sliver_type name="raw-pc"/></node>'), AUTH, sliverTypes=None)
        assert spec.nodes[0].sliverType == "raw-pc"

    def test_images(self) -> None:
        refused(
            req(
                '<node client_id="a"><sliver_type name="container"><disk_image name="one"/></sliver_type>'
                '<services><install url="two" install_path="/"/></services></node>'
            ),
            "several container images: two, one",
        )
        refused(req('<node client_id="a"><services><install install_path="/"/></services></node>'), "needs a url")
        refused(req('<node client_id="a"><sliver_type name="container"><disk_image/></sliver_type></node>'),
                "url or a name")
        refused(req('<node client_id="a"><services><install url="a b"/></services></node>'), "one word")

    def test_exclusive(self) -> None:
        refused(req('<node client_id="a" exclusive="yes"/>'), "exclusive must be true or false")

    def test_link(self) -> None:
        refused(req('<node client_id="a"/><link client_id="l"/>'), "links are not supported")

    def test_noNodes(self) -> None:
        refused(req(""), "no node")
