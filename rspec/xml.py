# -*- test-case-name: tests.test_rspec_xml -*-
"""
Hardened XML reading, namespaces, URNs and output helpers shared by the
request parser and the advertisement and manifest writers.

Request RSpecs come from anyone holding a credential, so the parser is
configured to never fetch, expand or load anything: no DTDs, no entities,
no network, no huge-tree mode. A document is refused before parsing when it
is too large, and after parsing when it carries any DOCTYPE (a DOCTYPE is
the only way to declare entities) or nests too deeply.
"""

from __future__ import annotations

import base64
import binascii
import re
import zlib
from typing import Optional

from lxml import etree

from am.safexml import UnsafeXML, parseUntrusted
from am.trust.urn import URN, parseURN
from rspec.times import formatTime

__all__ = [
    "RSpecError",
    "GENI_NS",
    "OL_NS",
    "OL_NS_ALIASES",
    "MARVIN_NS",
    "PROXY_NS",
    "XSI_NS",
    "MAX_SIZE",
    "MAX_DEPTH",
    "parseDocument",
    "serialize",
    "compress",
    "decompress",
    "nodeURN",
    "managerURN",
    "sliverURN",
    "sliverIdFromURN",
]

GENI_NS = "http://www.geni.net/resources/rspec/3"
# NITOS / omf_sfa leases (fed4fire.md section 4); the C{omf} prefix some
# documents bind to it changes nothing, as we match on the URI.
OL_NS = "http://nitlab.inf.uth.gr/schema/sfa/rspec/1"
# omf_sfa test requests also point at this URI (without C{schema/}); a lease
# in it would otherwise be silently ignored and the booking made "now".
OL_NS_ALIASES = (OL_NS, "http://nitlab.inf.uth.gr/sfa/rspec/1")
MARVIN_NS = "http://marvin.monroe-project.eu/rspec/ext/1"
PROXY_NS = "http://jfed.iminds.be/proxy/1.0"
XSI_NS = "http://www.w3.org/2001/XMLSchema-instance"

GENI_SCHEMA = {
    "request": "http://www.geni.net/resources/rspec/3/request.xsd",
    "advertisement": "http://www.geni.net/resources/rspec/3/ad.xsd",
    "manifest": "http://www.geni.net/resources/rspec/3/manifest.xsd",
}
OL_AD_SCHEMA = "http://nitlab.inf.uth.gr/schema/sfa/rspec/1/ad-reservation.xsd"
OL_REQUEST_SCHEMA = "http://nitlab.inf.uth.gr/schema/sfa/rspec/1/request-reservation.xsd"
# Where we say our extension schema lives; the file is schemas/marvin-rspec-ext.xsd.
MARVIN_SCHEMA = "http://marvin.monroe-project.eu/rspec/ext/1/marvin-rspec-ext.xsd"

MAX_SIZE = 1024 * 1024
MAX_DEPTH = 48

_DECLARATION = re.compile(r"\A\s*<\?xml[^>]*\?>")


class RSpecError(ValueError):
    """
    An RSpec was refused; C{message} says why in words a client can act on.

    The GENI face maps it to BADARGS.
    """

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


def parseDocument(
    data: str | bytes, maxSize: int = MAX_SIZE, maxDepth: int = MAX_DEPTH
) -> etree._Element:
    """
    Parse untrusted XML and return its root element.

    A C{str} is taken as already decoded: its XML declaration (whose
    encoding would be a lie) is dropped before parsing.

    @param maxSize: the largest accepted document, in bytes (UTF-8 for a
        C{str}); checked before parsing.
    @param maxDepth: the deepest accepted element nesting (the root is 1).
    @raise RSpecError: if the document is too large, not well-formed, has a
        DOCTYPE (hence any entity declaration), or nests too deeply.
    """
    if isinstance(data, str):
        # A str has at least as many UTF-8 bytes as characters: refuse a huge
        # one before paying for its encoding.
        if len(data) > maxSize:
            raise _tooLarge(maxSize)
        data = _DECLARATION.sub("", data.lstrip("\ufeff"), count=1).encode("utf-8")
    elif not isinstance(data, (bytes, bytearray, memoryview)):
        raise RSpecError("the RSpec must be a string")
    data = bytes(data)
    if len(data) > maxSize:
        raise _tooLarge(maxSize)
    try:
        return parseUntrusted(data, "the RSpec", maxDepth)
    except UnsafeXML as e:
        raise RSpecError(e.message) from None


def _tooLarge(maxSize: int) -> RSpecError:
    return RSpecError(f"the RSpec is larger than {maxSize} bytes")


def serialize(root: etree._Element) -> str:
    """
    A document as text with a double-quoted UTF-8 declaration, as GENI tools
    print them.
    """
    body = etree.tostring(root, encoding="unicode", pretty_print=True)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + body


def schemaLocation(pairs: list[tuple[str, str]]) -> str:
    """
    The C{xsi:schemaLocation} value: namespace and location pairs, every
    item separated by one space (omf_sfa glued the pairs together).
    """
    return " ".join(f"{ns} {location}" for ns, location in pairs)


def makeRoot(
    kind: str,
    generated: int,
    expires: Optional[int],
    nsmap: dict[Optional[str], str],
    schemas: list[tuple[str, str]],
) -> etree._Element:
    """
    An empty C{<rspec>} of C{kind} in the GENI v3 namespace with its times
    and schema locations.
    """
    root = etree.Element(f"{{{GENI_NS}}}rspec", nsmap={None: GENI_NS, "xsi": XSI_NS, **nsmap})
    root.set(f"{{{XSI_NS}}}schemaLocation", schemaLocation([(GENI_NS, GENI_SCHEMA[kind])] + schemas))
    root.set("type", kind)
    root.set("generated", formatTime(generated))
    if expires is not None:
        root.set("expires", formatTime(expires))
    return root


# XML 1.0 forbids these characters anywhere, even escaped.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def xmlText(value: object) -> str:
    """
    C{value} as text XML can carry: characters XML 1.0 cannot represent
    (from inventory data, say) are dropped rather than failing the document.
    """
    return _NOT_XML.sub("", str(value))


def compress(text: str) -> str:
    """
    C{geni_compressed}: base64 of the zlib (RFC 1950) stream of the UTF-8 text.
    """
    return base64.b64encode(zlib.compress(text.encode("utf-8"))).decode("ascii")


def decompress(value: str | bytes, maxSize: int = 16 * MAX_SIZE) -> str:
    """
    The inverse of L{compress}, bounded so that a small input cannot inflate
    without limit.

    @raise RSpecError: if C{value} is not base64 of a zlib stream of UTF-8
        text of at most C{maxSize} bytes.
    """
    try:
        raw = base64.b64decode(value, validate=True)
        inflater = zlib.decompressobj()
        out = inflater.decompress(raw, maxSize + 1)
        if len(out) > maxSize or inflater.unconsumed_tail:
            raise RSpecError(f"the compressed RSpec inflates beyond {maxSize} bytes")
        if not inflater.eof:
            raise RSpecError("the compressed RSpec is truncated")
        return out.decode("utf-8")
    except (binascii.Error, zlib.error, UnicodeDecodeError, ValueError) as e:
        if isinstance(e, RSpecError):
            raise
        raise RSpecError("the compressed RSpec is not base64 of zlib data") from None


# -- URNs --------------------------------------------------------------------


def _checkName(kind: str, name: object) -> str:
    text = str(name)
    try:
        parseURN(f"urn:publicid:IDN+a+{kind}+{text}")
    except ValueError:
        raise ValueError(f"{text!r} cannot be the name part of a {kind} URN") from None
    return text


def nodeURN(authority: str, nodeid: object) -> str:
    """
    C{urn:publicid:IDN+<authority>+node+<nodeid>}, the component_id of a node.

    @raise ValueError: if the node id cannot appear in a URN.
    """
    return f"urn:publicid:IDN+{authority}+node+{_checkName('node', nodeid)}"


def managerURN(authority: str) -> str:
    """
    C{urn:publicid:IDN+<authority>+authority+am}, our component_manager_id.
    """
    return f"urn:publicid:IDN+{authority}+authority+am"


def sliverURN(authority: str, schedid: object) -> str:
    """
    C{urn:publicid:IDN+<authority>+sliver+<schedule id>}: one sliver is one
    schedule (one node, one window).
    """
    return f"urn:publicid:IDN+{authority}+sliver+{_checkName('sliver', schedid)}"


def sliverIdFromURN(urn: str, authority: str) -> int:
    """
    The schedule id a sliver URN of ours names.

    @raise ValueError: if C{urn} is malformed, not a sliver, of another
        authority, or its name is not a schedule id.
    """
    parsed = parseURN(urn)
    if parsed.type.lower() != "sliver" or not sameAuthority(parsed, authority):
        raise ValueError(f"{urn} is not a sliver of this aggregate")
    if not parsed.name.isdigit() or len(parsed.name) > 18:
        raise ValueError(f"{urn} does not name a sliver of this aggregate")
    return int(parsed.name)


def sameAuthority(urn: URN, authority: str) -> bool:
    """
    Is C{urn} issued under exactly C{authority}?  Authorities compare
    case-insensitively (URN rules), sub-authorities are different ones.
    """
    return urn.authority.lower() == authority.lower()


def attr(element: etree._Element, name: str) -> Optional[str]:
    """
    An unqualified attribute, stripped; C{None} if absent or blank.
    """
    value = element.get(name)
    if value is None:
        return None
    value = value.strip()
    return value or None
