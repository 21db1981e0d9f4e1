"""
Shared set-up for the trust-layer tests: one PKI per test process (RSA key
generation is the slow part), credential builders, forgers and clocks.
"""

from __future__ import annotations

import base64
import functools
import time

from attrs import frozen
from cryptography.hazmat.primitives.asymmetric import rsa
from lxml import etree
from twisted.internet.task import Clock

from am.devtools import authority
from am.devtools.issue import DSIG, signDocument, x509Data
from am.devtools.pki import Identity, certify, newKey
from am.trust.credential import XML_ID, parseDocument
from am.trust.gate import Trust
from am.trust.urn import makeURN

# Certificates are made valid from a few minutes before the wall clock at
# import; credentials are issued at NOW and the trust clock starts there.
NOW = float(int(time.time()))
HOUR = 3600.0

SFA = "geni_sfa"


@frozen
class PKI:
    """
    The identities every trust test uses.

    @ivar ca: the trusted clearinghouse CA, C{geni:marvin}.
    @ivar am: the AM (C{geni:marvin+authority+am}).
    @ivar alice: a user; owns slice C{s1}.
    @ivar bob: another user.
    @ivar tool: a portal/tool user that speaks for others.
    @ivar s1: a slice; L{s2} another.
    @ivar sub: an intermediate slice authority C{geni:marvin:sub}, signed by
        C{ca}; L{carol} is its user and L{s3} its slice.
    @ivar evil: an untrusted CA; L{mallory} its user, L{evilSlice} its slice.
    @ivar impostor: a self-signed CA claiming the trusted CA's name and URN
        with another key.
    """

    ca: Identity
    am: Identity
    alice: Identity
    bob: Identity
    tool: Identity
    s1: Identity
    s2: Identity
    sub: Identity
    carol: Identity
    s3: Identity
    evil: Identity
    mallory: Identity
    evilSlice: Identity
    impostor: Identity


@functools.cache
def pki() -> PKI:
    """
    Make the shared PKI, once per process.
    """
    ca = authority.makeCA(None, "geni:marvin", now=NOW)
    sub = certify(
        ca,
        newKey(),
        makeURN("geni:marvin:sub", "authority", "sa"),
        "geni:marvin:sub.authority.sa",
        ca=True,
        now=NOW,
    )
    evil = authority.makeCA(None, "geni:evil", now=NOW)
    impostor = certify(
        None, newKey(), ca.urn, "geni:marvin.authority.sa", ca=True, now=NOW
    )
    return PKI(
        ca=ca,
        am=authority.makeAM(None, ca, "am.example.org", now=NOW),
        alice=authority.makeUser(None, ca, "alice", email="alice@example.org", now=NOW),
        bob=authority.makeUser(None, ca, "bob", now=NOW),
        tool=authority.makeUser(None, ca, "tool", now=NOW),
        s1=authority.makeSlice(None, ca, "s1", now=NOW),
        s2=authority.makeSlice(None, ca, "s2", now=NOW),
        sub=sub,
        carol=authority.makeUser(None, sub, "carol", now=NOW),
        s3=authority.makeSlice(None, sub, "s3", now=NOW),
        evil=evil,
        mallory=authority.makeUser(None, evil, "mallory", now=NOW),
        evilSlice=authority.makeSlice(None, evil, "s1", now=NOW),
        impostor=impostor,
    )


def makeTrust(clock: Clock | None = None) -> tuple[Trust, Clock]:
    """
    A L{Trust} that trusts only C{pki().ca}, on a clock at L{NOW}.
    """
    if clock is None:
        clock = Clock()
        clock.advance(NOW)
    p = pki()
    return Trust([p.ca.certificate], p.am.urn, clock=clock), clock


def sfa(value: object, version: str = "3") -> dict[str, object]:
    """
    The AM API v3 credential struct for an SFA credential.
    """
    return {"geni_type": SFA, "geni_version": version, "geni_value": value}


def abac(value: object) -> dict[str, object]:
    """
    The AM API v3 credential struct for a speaks-for credential.
    """
    return {"geni_type": "geni_abac", "geni_version": "1", "geni_value": value}


def sliceCredential(**kw: object) -> str:
    """
    Alice's credential for C{s1}, issued at L{NOW} for a day.
    """
    p = pki()
    kw.setdefault("now", NOW)
    return authority.issueSliceCredential(p.ca, p.alice, p.s1, **kw)  # type: ignore[arg-type]


def userCredential(user: Identity | None = None, **kw: object) -> str:
    """
    A user credential (default: Alice's), issued at L{NOW} for a day.
    """
    p = pki()
    kw.setdefault("now", NOW)
    return authority.issueUserCredential(p.ca, user or p.alice, **kw)  # type: ignore[arg-type]


def keyValue(key: rsa.RSAPrivateKey) -> etree._Element:
    """
    An XML-DSig C{KeyValue} element for C{key}'s public half.
    """
    numbers = key.public_key().public_numbers()

    def b64(n: int) -> str:
        return base64.b64encode(n.to_bytes((n.bit_length() + 7) // 8, "big")).decode()

    value = etree.Element(f"{{{DSIG}}}KeyValue", nsmap={None: DSIG})  # type: ignore[dict-item]
    rsaValue = etree.SubElement(value, f"{{{DSIG}}}RSAKeyValue")
    etree.SubElement(rsaValue, f"{{{DSIG}}}Modulus").text = b64(numbers.n)
    etree.SubElement(rsaValue, f"{{{DSIG}}}Exponent").text = b64(numbers.e)
    return value


def resign(
    document: str | bytes,
    key: object,
    keyInfo: list[etree._Element],
    digest: str = "sha256",
) -> str:
    """
    Strip C{document}'s signatures and sign its outermost credential again
    with C{key}, putting C{keyInfo} (in that order) in C{KeyInfo}: the
    forger's tool.
    """
    data = document.encode() if isinstance(document, str) else document
    root = parseDocument(data)
    old = root.find("signatures")
    if old is not None:
        root.remove(old)
    refid = root.find("credential").get(XML_ID)  # type: ignore[union-attr]
    return signDocument(root, refid, key, keyInfo, digest).decode()


def unsign(document: str) -> str:
    """
    C{document} with its C{<signatures>} removed.
    """
    root = parseDocument(document.encode())
    old = root.find("signatures")
    if old is not None:
        root.remove(old)
    return etree.tostring(root).decode()


def certData(*identities: Identity) -> etree._Element:
    """
    An C{X509Data} carrying the certificates of C{identities}.
    """
    return x509Data([i.certificate for i in identities])


@functools.cache
def attackerKey() -> rsa.RSAPrivateKey:
    """
    A key nobody trusts.
    """
    return newKey()  # type: ignore[return-value]


def clocked(seconds: float = NOW) -> Clock:
    """
    A L{Clock} at C{seconds}.
    """
    clock = Clock()
    clock.advance(seconds)
    return clock


def refusal(f: object, *a: object, **kw: object) -> object:
    """
    Call C{f} and return its result, or the exception it raised.
    """
    try:
        return f(*a, **kw)  # type: ignore[operator]
    except Exception as e:
        return e
