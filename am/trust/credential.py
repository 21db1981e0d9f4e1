# -*- test-case-name: tests.test_trust_credential -*-
"""
Reading SFA credentials (C{geni_sfa} 2 and 3, and C{geni_abac} 1 speaks-for
statements) with a hardened parser.

Parsing only: nothing here says a credential is genuine.  That is
L{am.trust.verifier}'s job.  Everything that is not a well-formed credential
of a supported kind is refused with L{TrustError} C{BADARGS}:

  - the document is bounded in size (L{MAX_BYTES}) before parsing, and
    libxml2 bounds its depth (256 without C{huge_tree});
  - any DTD (so any entity declaration) is refused before parsing; the
    parser neither loads DTDs, resolves entities, nor touches the network;
  - comments are dropped and a field with child nodes (a processing
    instruction, an element) is refused, so what we read is exactly the text
    the signature covers;
  - each field may appear once; a delegation chain is at most
    L{MAX_DELEGATION} deep.
"""

from __future__ import annotations

import datetime
import xmlrpc.client
from typing import Iterator

from attrs import field, frozen
from cryptography import x509
from lxml import etree

from am.safexml import UnsafeXML, parseUntrusted
from am.trust._lru import LRU
from am.trust.certs import loadCertificates, orderChain, urnsInCertificate
from am.trust.errors import BADARGS, TrustError
from am.trust.urn import parseURN, sameURN

MAX_BYTES = 256 * 1024
MAX_DELEGATION = 8
MAX_PRIVILEGES = 64
MAX_SIGNATURES = MAX_DELEGATION + 1

XML_ID = "{http://www.w3.org/XML/1998/namespace}id"
DSIG = "http://www.w3.org/2000/09/xmldsig#"
SIGNATURE = f"{{{DSIG}}}Signature"

_FIELDS = frozenset(
    {
        "type",
        "serial",
        "owner_gid",
        "owner_urn",
        "target_gid",
        "target_urn",
        "uuid",
        "expires",
        "privileges",
        "ticket",
        "capabilities",
        "abac",
        "parent",
    }
)

def _bad(message: str) -> TrustError:
    return TrustError(BADARGS, message)


@frozen
class Privilege:
    """
    One privilege a credential grants.

    @ivar name: e.g. C{control}, C{info}, or C{*} for all.
    @ivar canDelegate: may the owner pass it on?
    """

    name: str
    canDelegate: bool


@frozen
class AbacPrincipal:
    """
    A principal in an ABAC statement: a key identifier (hex SHA-1 of the
    public key) and an optional human-readable mnemonic (a URN).
    """

    keyid: str
    mnemonic: str | None


@frozen
class AbacStatement:
    """
    An ABAC RT0 statement C{head.role <- tail}; speaks-for is
    C{K_user.speaks_for_K_user <- K_tool}.
    """

    head: AbacPrincipal
    role: str
    tail: AbacPrincipal
    tailRole: str | None


@frozen
class Credential:
    """
    One C{<credential>} element, parsed but not verified.

    @ivar refid: its C{xml:id}, which its signature references.
    @ivar type: C{privilege} or C{abac}.
    @ivar ownerGID: the owner certificate then its issuers (empty for ABAC).
    @ivar ownerURN: the owner's URN, from C{ownerGID}.
    @ivar targetGID: the target certificate then its issuers (empty for ABAC).
    @ivar targetURN: the target's URN, from C{targetGID}.
    @ivar expires: POSIX seconds.
    @ivar privileges: what it grants (privilege credentials).
    @ivar abac: the statement (ABAC credentials).
    @ivar parent: the credential this one was delegated from, if any.
    """

    refid: str
    type: str
    ownerGID: tuple[x509.Certificate, ...]
    ownerURN: str | None
    targetGID: tuple[x509.Certificate, ...]
    targetURN: str | None
    expires: float
    privileges: tuple[Privilege, ...]
    abac: AbacStatement | None
    parent: Credential | None

    def chain(self) -> Iterator[Credential]:
        """
        This credential, then its parent, grandparent, ...
        """
        cred: Credential | None = self
        while cred is not None:
            yield cred
            cred = cred.parent


@frozen
class SignedCredential:
    """
    A parsed C{<signed-credential>} document.

    @ivar credential: the outermost credential.
    @ivar signatures: the C{ds:Signature} elements, by the C{xml:id} each
        references.
    @ivar root: the parsed document, kept for signature verification.
    """

    credential: Credential
    signatures: dict[str, etree._Element] = field(eq=False)
    root: etree._Element = field(eq=False, repr=False)


def documentBytes(value: object) -> bytes:
    """
    The bytes of a credential as it came over XML-RPC: a string (the spec),
    or C{bytes} / L{xmlrpc.client.Binary} (what some Python 3 clients send).

    @raise TrustError: (BADARGS) for anything else, non-UTF-8 bytes, or a
        document over L{MAX_BYTES}.
    """
    if isinstance(value, xmlrpc.client.Binary):
        value = value.data
    if isinstance(value, str):
        if len(value) > MAX_BYTES:
            raise _bad(f"credential is larger than {MAX_BYTES} bytes")
        try:
            data = value.encode("utf-8")
        except UnicodeEncodeError:
            raise _bad("credential is not valid Unicode") from None
    elif isinstance(value, bytes):
        data = value
        try:
            data.decode("utf-8")
        except UnicodeDecodeError:
            raise _bad("credential is not UTF-8") from None
    else:
        raise _bad(f"credential must be a string, not {type(value).__name__}")
    if len(data) > MAX_BYTES:
        raise _bad(f"credential is larger than {MAX_BYTES} bytes")
    return data


def parseDocument(data: bytes) -> etree._Element:
    """
    Parse C{data} with the hardened recipe of L{am.safexml}.

    @raise TrustError: (BADARGS) for a DTD, an entity declaration, or
        anything that is not well-formed XML.
    """
    try:
        # Read as UTF-8 whatever the declaration says: signatures are checked
        # over exactly these bytes.
        return parseUntrusted(data, "credential", encoding="utf-8", signed=True)
    except UnsafeXML as e:
        raise _bad(e.message) from None


def _text(element: etree._Element, name: str) -> str:
    if len(element):
        raise _bad(f"<{name}> must contain only text")
    return (element.text or "").strip()


def _children(
    element: etree._Element, name: str, only: frozenset[str] | None = None
) -> dict[str, etree._Element]:
    """
    The child elements of C{element} by tag, refusing a repeated one (which
    of two C{<owner_gid>}s would the signature have meant?).  With C{only},
    other tags are ignored and may repeat (C{<extensions>}).
    """
    fields: dict[str, etree._Element] = {}
    for child in element:
        tag = child.tag
        if not isinstance(tag, str) or (only is not None and tag not in only):
            continue
        if tag in fields:
            raise _bad(f"<{name}> has more than one <{tag}>")
        fields[tag] = child
    return fields


def parseTime(text: str) -> float:
    """
    Parse an C{xs:dateTime} as GENI tools write it (C{Z}, an offset, or no
    zone meaning UTC) to POSIX seconds.

    @raise TrustError: (BADARGS) if it does not parse.
    """
    if not text or len(text) > 64:
        raise _bad("<expires> is missing or malformed")
    try:
        when = datetime.datetime.fromisoformat(text.strip())
    except ValueError:
        raise _bad("<expires> is not an ISO 8601 date-time") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.timezone.utc)
    return when.timestamp()


# GIDs by their exact text: a user's and a slice's GIDs recur in every
# credential they hold.
_gids: LRU[str, tuple[tuple[x509.Certificate, ...], str]] = LRU(512)


def _readGID(text: str, which: str) -> tuple[tuple[x509.Certificate, ...], str]:
    try:
        leaf, rest = orderChain(loadCertificates(text))
    except ValueError as e:
        raise _bad(f"<{which}_gid> is not a PEM certificate chain: {e}") from None
    urns = urnsInCertificate(leaf)
    if len(urns) != 1:
        raise _bad(f"<{which}_gid> certificate does not carry exactly one GENI URN")
    try:
        parseURN(urns[0])
    except ValueError as e:
        raise _bad(f"<{which}_gid> certificate URN is malformed: {e}") from None
    return (leaf, *rest), urns[0]


def _gid(
    fields: dict[str, etree._Element], which: str
) -> tuple[tuple[x509.Certificate, ...], str]:
    element = fields.get(f"{which}_gid")
    if element is None:
        raise _bad(f"credential has no <{which}_gid>")
    text = _text(element, f"{which}_gid")
    certs, urn = _gids.memo(text, lambda: _readGID(text, which))
    stated = fields.get(f"{which}_urn")
    if stated is not None and not sameURN(_text(stated, f"{which}_urn"), urn):
        raise _bad(f"<{which}_urn> does not match the URN in <{which}_gid>")
    return certs, urn


def _privileges(element: etree._Element) -> tuple[Privilege, ...]:
    result = []
    for child in element:
        if not isinstance(child.tag, str):
            continue
        if child.tag != "privilege":
            raise _bad(f"<privileges> contains <{child.tag}>")
        fields = _children(child, "privilege")
        if "name" not in fields:
            raise _bad("<privilege> has no <name>")
        name = _text(fields["name"], "name")
        if not name or len(name) > 64:
            raise _bad("<privilege> has an empty or overlong <name>")
        delegate = fields.get("can_delegate")
        flag = "false" if delegate is None else _text(delegate, "can_delegate")
        if flag.lower() not in ("true", "false", "1", "0"):
            raise _bad("<can_delegate> must be true or false")
        result.append(Privilege(name, flag.lower() in ("true", "1")))
        if len(result) > MAX_PRIVILEGES:
            raise _bad("credential has too many privileges")
    return tuple(result)


def _principal(element: etree._Element, where: str) -> AbacPrincipal:
    fields = _children(element, "ABACprincipal")
    if "keyid" not in fields:
        raise _bad(f"ABAC {where} principal has no <keyid>")
    keyid = _text(fields["keyid"], "keyid").lower()
    if not keyid or len(keyid) > 128:
        raise _bad(f"ABAC {where} principal has an empty or overlong <keyid>")
    mnemonic = fields.get("mnemonic")
    return AbacPrincipal(
        keyid, None if mnemonic is None else _text(mnemonic, "mnemonic")
    )


def _abac(element: etree._Element) -> AbacStatement:
    statements = [c for c in element if c.tag == "rt0"]
    if len(statements) != 1:
        raise _bad("ABAC credential must hold exactly one <rt0> statement")
    rt0 = statements[0]
    tails = [c for c in rt0 if c.tag == "tail"]
    heads = [c for c in rt0 if c.tag == "head"]
    if len(heads) != 1 or len(tails) != 1:
        raise _bad("ABAC statement must have exactly one <head> and one <tail>")
    head = _children(heads[0], "head")
    tail = _children(tails[0], "tail")
    if "ABACprincipal" not in head or "role" not in head:
        raise _bad("ABAC <head> must name a principal and a role")
    if "ABACprincipal" not in tail:
        raise _bad("ABAC <tail> must name a principal")
    return AbacStatement(
        head=_principal(head["ABACprincipal"], "head"),
        role=_text(head["role"], "role"),
        tail=_principal(tail["ABACprincipal"], "tail"),
        tailRole=_text(tail["role"], "role") if "role" in tail else None,
    )


def parseCredential(element: etree._Element, depth: int = 0) -> Credential:
    """
    Read one C{<credential>} element (and, recursively, its parents).

    @raise TrustError: (BADARGS) if it is malformed or of a type we do not
        support (tickets, capabilities, ProtoGENI C{speaksfor}).
    """
    if depth > MAX_DELEGATION:
        raise _bad(f"delegation chain is longer than {MAX_DELEGATION}")
    refid = element.get(XML_ID)
    if not refid:
        raise _bad("<credential> has no xml:id")
    fields = _children(element, "credential", _FIELDS)
    if "type" not in fields:
        raise _bad("credential has no <type>")
    kind = _text(fields["type"], "type")
    expires = parseTime(_text(fields["expires"], "expires") if "expires" in fields else "")
    if kind == "privilege":
        if "privileges" not in fields:
            raise _bad("privilege credential has no <privileges>")
        ownerGID, ownerURN = _gid(fields, "owner")
        targetGID, targetURN = _gid(fields, "target")
        privileges = _privileges(fields["privileges"])
        abac = None
    elif kind == "abac":
        if "abac" not in fields:
            raise _bad("ABAC credential has no <abac> statement")
        ownerGID = targetGID = ()
        ownerURN = targetURN = None
        privileges = ()
        abac = _abac(fields["abac"])
    else:
        raise _bad(
            f"unsupported credential type {kind[:32]!r} "
            "(supported: privilege, abac)"
        )
    parent = None
    if "parent" in fields:
        if kind != "privilege":
            raise _bad("only privilege credentials may be delegated")
        inner = [c for c in fields["parent"] if c.tag == "credential"]
        if len(inner) != 1:
            raise _bad("<parent> must hold exactly one <credential>")
        parent = parseCredential(inner[0], depth + 1)
        if parent.type != "privilege":
            raise _bad("a delegated credential's parent must be a privilege credential")
    return Credential(
        refid=refid,
        type=kind,
        ownerGID=ownerGID,
        ownerURN=ownerURN,
        targetGID=targetGID,
        targetURN=targetURN,
        expires=expires,
        privileges=privileges,
        abac=abac,
        parent=parent,
    )


def _signatures(root: etree._Element) -> dict[str, etree._Element]:
    container = [c for c in root if c.tag == "signatures"]
    if not container:
        return {}
    if len(container) > 1:
        raise _bad("credential has more than one <signatures>")
    result: dict[str, etree._Element] = {}
    for signature in container[0]:
        if not isinstance(signature.tag, str):
            continue
        if signature.tag != SIGNATURE:
            raise _bad("<signatures> may hold only XML-DSig <Signature> elements")
        if len(result) >= MAX_SIGNATURES:
            raise _bad("credential has too many signatures")
        references = signature.findall(f"{{{DSIG}}}SignedInfo/{{{DSIG}}}Reference")
        if len(references) != 1:
            raise _bad("each signature must have exactly one Reference")
        uri = references[0].get("URI") or ""
        if not uri.startswith("#") or len(uri) < 2:
            raise _bad("a signature Reference must point at a credential by #id")
        refid = uri[1:]
        if refid in result:
            raise _bad("two signatures reference the same credential")
        result[refid] = signature
    return result


def parseSignedCredential(value: object) -> tuple[bytes, SignedCredential]:
    """
    Read a C{<signed-credential>} document.

    @param value: the credential as received (see L{documentBytes}).
    @return: the exact bytes parsed (for digests) and the parsed credential.
    @raise TrustError: (BADARGS) if it is malformed, unsupported, or has
        duplicate C{xml:id}s.
    """
    data = documentBytes(value)
    root = parseDocument(data)
    if root.tag != "signed-credential":
        raise _bad("not an SFA credential: the root element is not <signed-credential>")
    credentials = [c for c in root if c.tag == "credential"]
    if len(credentials) != 1:
        raise _bad("<signed-credential> must hold exactly one <credential>")
    credential = parseCredential(credentials[0])
    refids = [c.refid for c in credential.chain()]
    if len(set(refids)) != len(refids):
        raise _bad("credentials in a delegation chain must have distinct xml:ids")
    return data, SignedCredential(credential, _signatures(root), root)
