"""
Schema sets for validating RSpecs, and tests of our extension schema
(C{schemas/marvin-rspec-ext.xsd}) on its own.

The reference XSDs stay in the shared folder next to the repository; they
are never copied into the project. Where a reference set is incomplete the
missing pieces are derived at test time in a temporary directory:

  - request: GENI v3 C{request.xsd} as it is.
  - advertisement: GENI v3 C{ad.xsd} as it is, plus C{ad-common.xsd}, which
    the partial v3 set lacks, taken from ProtoGENI v2 (its direct ancestor)
    with the namespace changed to GENI v3.
  - manifest: no v3 manifest schema exists in the reference set; the
    ProtoGENI v2 manifest set with the namespace changed to GENI v3.

Each set is loaded with our extension schema through a wrapper that imports
both. The GENI schemas admit foreign elements with C{processContents="lax"}:
an element of a namespace the set knows (ours) is validated strictly, one of
an unknown namespace (C{ol:}, C{proxy:}, C{jfed:}) is skipped.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from lxml import etree

from rspec.xml import GENI_NS, MARVIN_NS

REFERENCE = Path(__file__).parent.parent.parent / "shared" / "schemas-reference"
GENI3 = REFERENCE / "geni-3-partial-from-ocf"
PG2 = REFERENCE / "protogeni-2-from-emulab-stable"
PG2_NS = "http://www.protogeni.net/resources/rspec/2"
EXTENSION = Path(__file__).parent.parent / "schemas" / "marvin-rspec-ext.xsd"


def _wrapper(directory: Path, geniSchema: Path) -> etree.XMLSchema:
    """
    One schema importing the GENI one and ours.
    """
    wrapper = directory / "wrapper.xsd"
    wrapper.write_text(
        '<xs:schema xmlns:xs="http://www.w3.org/2001/XMLSchema">\n'
        f'  <xs:import namespace="{GENI_NS}" schemaLocation="{geniSchema.resolve().as_uri()}"/>\n'
        f'  <xs:import namespace="{MARVIN_NS}" schemaLocation="{EXTENSION.resolve().as_uri()}"/>\n'
        "</xs:schema>\n"
    )
    return etree.XMLSchema(etree.parse(str(wrapper)))


def _retarget(source: Path, directory: Path) -> None:
    """
    A ProtoGENI v2 schema file rewritten into the GENI v3 namespace.
    """
    text = source.read_text(encoding="utf-8").replace(PG2_NS, GENI_NS)
    (directory / source.name).write_text(text, encoding="utf-8")


def buildSchemas(directory: Path) -> dict[str, etree.XMLSchema]:
    """
    The request, advertisement and manifest validators, built in C{directory}.
    """
    schemas = {}
    request = directory / "request"
    request.mkdir()
    schemas["request"] = _wrapper(request, GENI3 / "request.xsd")

    ad = directory / "ad"
    ad.mkdir()
    (ad / "ad.xsd").write_bytes((GENI3 / "ad.xsd").read_bytes())
    (ad / "any-extension-schema.xsd").write_bytes((GENI3 / "any-extension-schema.xsd").read_bytes())
    _retarget(PG2 / "ad-common.xsd", ad)
    schemas["advertisement"] = _wrapper(ad, ad / "ad.xsd")

    manifest = directory / "manifest"
    manifest.mkdir()
    for name in ("manifest.xsd", "manifest-request.xsd", "manifest-common.xsd", "any-extension-schema.xsd"):
        _retarget(PG2 / name, manifest)
    schemas["manifest"] = _wrapper(manifest, manifest / "manifest.xsd")
    return schemas


@pytest.fixture(scope="module")
def schemas(tmp_path_factory: pytest.TempPathFactory) -> dict[str, etree.XMLSchema]:
    """
    The validators, built once per test module.
    """
    return buildSchemas(tmp_path_factory.mktemp("rspec-schemas"))


def assertValid(schema: etree.XMLSchema, document: str | bytes | etree._Element) -> None:
    """
    Fail with the schema's own messages when C{document} is invalid.
    """
    if isinstance(document, str):
        document = document.encode("utf-8")
    tree = etree.fromstring(document) if isinstance(document, bytes) else document
    if not schema.validate(tree):
        raise AssertionError("\n".join(str(e) for e in schema.error_log))


@pytest.fixture(scope="module")
def extension() -> etree.XMLSchema:
    """
    Our extension schema alone, for fragments.
    """
    return etree.XMLSchema(etree.parse(str(EXTENSION)))


def _fragment(text: str) -> etree._Element:
    return etree.fromstring(f'<marvin:{text} xmlns:marvin="{MARVIN_NS}"/>')


GOOD_FRAGMENTS = [
    'filter nodetypes="type:testing,country:es"',
    'filter count="3"',
    'filter nodetypes="" count="1"',
    'recurrence scheme="simple" period="3600" until="2026-12-01T00:00:00Z"',
    'recurrence scheme="simple" period="1200" until="2026-12-01T01:00:00.5+01:00"',
    'options shared="true" storage="500000000" traffic="100000000"',
    'options duration="3600"',
    'tag name="country" value="se"',
    'granularity seconds="1200"',
    'padding seconds="0"',
]

BAD_FRAGMENTS = [
    'filter count="0"',
    'filter count="many"',
    'recurrence scheme="weekly" period="3600" until="2026-12-01T00:00:00Z"',
    'recurrence scheme="simple" until="2026-12-01T00:00:00Z"',
    'recurrence scheme="simple" period="3600" until="2026-12-01T00:00:00"',
    'recurrence scheme="simple" period="-5" until="2026-12-01T00:00:00Z"',
    'options shared="yes"',
    'options storage="-1"',
    'options duration="0"',
    'tag name="country"',
    'granularity seconds="0"',
    'padding',
    'unknown',
]


class TestExtensionSchema:
    """
    C{schemas/marvin-rspec-ext.xsd} accepts the documented forms and
    refuses malformed ones.
    """

    @pytest.mark.parametrize("text", GOOD_FRAGMENTS)
    def test_good(self, extension: etree.XMLSchema, text: str) -> None:
        """
        Every documented element form validates.
        """
        assertValid(extension, _fragment(text))

    @pytest.mark.parametrize("text", BAD_FRAGMENTS)
    def test_bad(self, extension: etree.XMLSchema, text: str) -> None:
        """
        Missing or ill-typed attributes, unknown schemes and zone-less times
        are refused.
        """
        assert not extension.validate(_fragment(text))

    def test_optionChildren(self, extension: etree.XMLSchema) -> None:
        """
        C{marvin:options} holds C{marvin:option} children and nothing else.
        """
        good = etree.fromstring(
            f'<marvin:options xmlns:marvin="{MARVIN_NS}" shared="false">'
            '<marvin:option name="ssh" value="1"/><marvin:option name="x" value=""/></marvin:options>'
        )
        assertValid(extension, good)
        bad = etree.fromstring(
            f'<marvin:options xmlns:marvin="{MARVIN_NS}"><marvin:tag name="a" value="b"/></marvin:options>'
        )
        assert not extension.validate(bad)


class TestReferenceSets:
    """
    The derived validators behave as the module docstring says.
    """

    def test_laxForeign(self, schemas: dict[str, etree.XMLSchema]) -> None:
        """
        A foreign element of an unknown namespace passes (lax), one of our
        namespace is checked against our schema.
        """
        base = (
            f'<rspec xmlns="{GENI_NS}" xmlns:x="urn:example:x" xmlns:marvin="{MARVIN_NS}" type="request">'
            '<node client_id="a">{}</node></rspec>'
        )
        assertValid(schemas["request"], base.format('<x:whatever y="1"><x:z/></x:whatever>'))
        assertValid(schemas["request"], base.format('<marvin:filter nodetypes="type:testing"/>'))
        assert not schemas["request"].validate(
            etree.fromstring(base.format('<marvin:filter count="zero"/>').encode())
        )

    def test_typeChecked(self, schemas: dict[str, etree.XMLSchema]) -> None:
        """
        Each set accepts only its own RSpec type.
        """
        doc = '<rspec xmlns="{}" type="{}"/>'
        assertValid(schemas["request"], doc.format(GENI_NS, "request"))
        assertValid(schemas["advertisement"], doc.format(GENI_NS, "advertisement"))
        assertValid(schemas["manifest"], doc.format(GENI_NS, "manifest"))
        assert not schemas["request"].validate(etree.fromstring(doc.format(GENI_NS, "manifest")))
        assert not schemas["advertisement"].validate(etree.fromstring(doc.format(GENI_NS, "request")))
        assert not schemas["manifest"].validate(etree.fromstring(doc.format(GENI_NS, "advertisement")))
        assert not schemas["manifest"].validate(etree.fromstring(doc.format(PG2_NS, "manifest")))

    def test_adStrictness(self, schemas: dict[str, etree.XMLSchema]) -> None:
        """
        The advertisement set has teeth: a node needs its component ids and
        C{exclusive}, and our tags are checked inside it.
        """
        node = (
            '<node component_id="urn:publicid:IDN+a+node+1" '
            'component_manager_id="urn:publicid:IDN+a+authority+am" exclusive="true">{}</node>'
        )
        doc = f'<rspec xmlns="{GENI_NS}" xmlns:marvin="{MARVIN_NS}" type="advertisement">{{}}</rspec>'
        assertValid(schemas["advertisement"], doc.format(node.format('<marvin:tag name="a" value="b"/>')))
        for bad in (
            node.format('<marvin:tag name="a"/>'),
            node.replace(' exclusive="true"', "").format(""),
            '<node component_id="urn:publicid:IDN+a+node+1" exclusive="true"/>',
            node.format('<available/>'),
        ):
            assert not schemas["advertisement"].validate(etree.fromstring(doc.format(bad).encode())), bad

    def test_manifestStrictness(self, schemas: dict[str, etree.XMLSchema]) -> None:
        """
        The manifest set has teeth: nodes need a client_id, logins an
        authentication.
        """
        doc = f'<rspec xmlns="{GENI_NS}" type="manifest">{{}}</rspec>'
        assertValid(schemas["manifest"], doc.format('<node client_id="a" sliver_id="x"><services>'
                                                    '<login authentication="ssh-keys" username="u"/></services></node>'))
        for bad in ('<node sliver_id="x"/>', '<node client_id="a"><services><login/></services></node>'):
            assert not schemas["manifest"].validate(etree.fromstring(doc.format(bad).encode())), bad
