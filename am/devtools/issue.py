# -*- test-case-name: tests.test_trust_authority -*-
"""
Writing and signing SFA credentials for the development authority (see
L{am.devtools.authority}).

The documents have the shape gcf's clearinghouse writes (one
C{<credential xml:id=...>}, a C{<signatures>} block of enveloped-reference
XML-DSig signatures with the signer's certificate chain in C{X509Data});
signatures use RSA-SHA256 unless RSA-SHA1 is asked for.
"""

from __future__ import annotations

import base64
import datetime
import uuid
from typing import Iterable, Sequence

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from am.devtools.pki import Identity
from am.trust.credential import DSIG, XML_ID, parseDocument

XSI = "http://www.w3.org/2001/XMLSchema-instance"
ROOT_NSMAP = {"xsi": XSI}
ROOT_ATTRIBUTES = {
    f"{{{XSI}}}noNamespaceSchemaLocation": (
        "http://www.geni.net/resources/credential/2/credential.xsd"
    ),
}

_ALGORITHMS = {
    "sha256": (
        "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256",
        "http://www.w3.org/2001/04/xmlenc#sha256",
    ),
    "sha1": (
        "http://www.w3.org/2000/09/xmldsig#rsa-sha1",
        "http://www.w3.org/2000/09/xmldsig#sha1",
    ),
}
C14N = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"


def isoTime(when: float) -> str:
    """
    POSIX seconds as the C{xs:dateTime} GENI credentials use.
    """
    return datetime.datetime.fromtimestamp(when, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def newRefid() -> str:
    """
    A fresh C{xml:id} for a credential, unique across delegation chains.
    """
    return f"ref{uuid.uuid4().hex}"


def _sub(parent: etree._Element, tag: str, text: str | None = None) -> etree._Element:
    element = etree.SubElement(parent, tag)
    if text is not None:
        element.text = text
    return element


def newDocument(
    root: etree._Element | None = None,
) -> tuple[etree._Element, etree._Element]:
    """
    An empty C{<signed-credential>} and its C{<credential>}.

    @param root: a document whose root's namespaces and attributes to copy,
        so that a parent credential embedded in a delegation canonicalises
        exactly as when it was signed.
    """
    nsmap = ROOT_NSMAP if root is None else root.nsmap
    attributes = ROOT_ATTRIBUTES if root is None else dict(root.attrib)
    document = etree.Element("signed-credential", nsmap=nsmap, attrib=attributes)
    credential = _sub(document, "credential")
    credential.set(XML_ID, newRefid())
    return document, credential


def fillPrivilegeCredential(
    credential: etree._Element,
    owner: Sequence[x509.Certificate],
    ownerURN: str,
    target: Sequence[x509.Certificate],
    targetURN: str,
    expires: float,
    privileges: Iterable[tuple[str, bool]],
) -> None:
    """
    Write the fields of a privilege credential into C{credential}.
    """
    _sub(credential, "type", "privilege")
    _sub(credential, "serial", str(uuid.uuid4().int % 10**9))
    _sub(credential, "owner_gid", _gid(owner))
    _sub(credential, "owner_urn", ownerURN)
    _sub(credential, "target_gid", _gid(target))
    _sub(credential, "target_urn", targetURN)
    _sub(credential, "uuid", str(uuid.uuid4()))
    _sub(credential, "expires", isoTime(expires))
    container = _sub(credential, "privileges")
    for name, canDelegate in privileges:
        privilege = _sub(container, "privilege")
        _sub(privilege, "name", name)
        _sub(privilege, "can_delegate", "true" if canDelegate else "false")


def fillSpeaksFor(
    credential: etree._Element,
    userKeyid: str,
    userURN: str,
    toolKeyid: str,
    toolURN: str,
    expires: float,
) -> None:
    """
    Write an ABAC speaks-for statement C{K_user.speaks_for_K_user <- K_tool}.
    """
    _sub(credential, "type", "abac")
    _sub(credential, "serial")
    _sub(credential, "owner_gid")
    _sub(credential, "target_gid")
    _sub(credential, "uuid")
    _sub(credential, "expires", isoTime(expires))
    rt0 = _sub(_sub(credential, "abac"), "rt0")
    _sub(rt0, "version", "1.1")
    head = _sub(rt0, "head")
    principal = _sub(head, "ABACprincipal")
    _sub(principal, "keyid", userKeyid)
    _sub(principal, "mnemonic", userURN)
    _sub(head, "role", f"speaks_for_{userKeyid}")
    principal = _sub(_sub(rt0, "tail"), "ABACprincipal")
    _sub(principal, "keyid", toolKeyid)
    _sub(principal, "mnemonic", toolURN)


def _gid(certs: Sequence[x509.Certificate]) -> str:
    return "".join(
        c.public_bytes(serialization.Encoding.PEM).decode("ascii") for c in certs
    )


def signatureTemplate(refid: str, digest: str = "sha256") -> etree._Element:
    """
    An unsigned enveloped-reference signature template for credential
    C{refid}, in the XML-DSig default namespace as gcf writes it.
    """
    signMethod, digestMethod = _ALGORITHMS[digest]
    nsmap = {None: DSIG}
    signature = etree.Element(f"{{{DSIG}}}Signature", nsmap=nsmap)  # type: ignore[dict-item]
    signature.set(XML_ID, f"Sig_{refid}")
    info = etree.SubElement(signature, f"{{{DSIG}}}SignedInfo")
    etree.SubElement(info, f"{{{DSIG}}}CanonicalizationMethod", Algorithm=C14N)
    etree.SubElement(info, f"{{{DSIG}}}SignatureMethod", Algorithm=signMethod)
    reference = etree.SubElement(info, f"{{{DSIG}}}Reference", URI=f"#{refid}")
    transforms = etree.SubElement(reference, f"{{{DSIG}}}Transforms")
    etree.SubElement(transforms, f"{{{DSIG}}}Transform", Algorithm=ENVELOPED)
    etree.SubElement(reference, f"{{{DSIG}}}DigestMethod", Algorithm=digestMethod)
    etree.SubElement(reference, f"{{{DSIG}}}DigestValue")
    etree.SubElement(signature, f"{{{DSIG}}}SignatureValue")
    return signature


def x509Data(certs: Sequence[x509.Certificate]) -> etree._Element:
    """
    A C{KeyInfo/X509Data} element carrying C{certs} in order.
    """
    data = etree.Element(f"{{{DSIG}}}X509Data", nsmap={None: DSIG})  # type: ignore[dict-item]
    for cert in certs:
        element = etree.SubElement(data, f"{{{DSIG}}}X509Certificate")
        element.text = base64.b64encode(
            cert.public_bytes(serialization.Encoding.DER)
        ).decode("ascii")
    return data


def signDocument(
    document: etree._Element,
    refid: str,
    key: object,
    keyInfo: Iterable[etree._Element],
    digest: str = "sha256",
    previous: Iterable[etree._Element] = (),
) -> bytes:
    """
    Sign credential C{refid} of C{document} with C{key} and serialise it.

    The signature goes first in C{<signatures>}, then C{previous} (the
    signatures of a delegated credential's ancestors).  C{KeyInfo} (which
    the signature does not cover) is added after signing, with the given
    children in order.

    @param key: a cryptography private key.
    @return: the signed document, UTF-8 with an XML declaration.
    """
    signatures = _sub(document, "signatures")
    signatures.append(signatureTemplate(refid, digest))
    for old in previous:
        signatures.append(old)
    # Re-parse so libxml2 registers the xml:id attributes the Reference
    # points at.
    root = parseDocument(etree.tostring(document))
    signature = root.find("signatures")[0]  # type: ignore[index]
    context = xmlsec.SignatureContext()
    context.key = xmlsec.Key.from_memory(
        key.private_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
        xmlsec.constants.KeyDataFormatPem,
    )
    context.sign(signature)
    info = etree.SubElement(signature, f"{{{DSIG}}}KeyInfo")
    for child in keyInfo:
        info.append(child)
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def signAs(
    document: etree._Element,
    refid: str,
    signer: Identity,
    digest: str = "sha256",
    previous: Iterable[etree._Element] = (),
) -> bytes:
    """
    Sign as C{signer}, with its certificate chain in C{X509Data}.
    """
    return signDocument(
        document,
        refid,
        signer.key,
        [x509Data((signer.certificate, *signer.issuers))],
        digest,
        previous,
    )
