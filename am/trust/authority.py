# -*- test-case-name: tests.test_trust_authority -*-
"""
marvin-authority: a development and test authority for GENI credentials.

FOR TESTING AND DEMONSTRATIONS ONLY.  This is not a production
clearinghouse: keys are written unencrypted to one directory, there is no
revocation, no record of what was issued, and no policy about who may get
what.  Production AMs trust a real federation's roots (GENI, Fed4Fire).

It makes, in one directory:

  - a clearinghouse CA (C{ca-cert.pem}, C{ca-key.pem}), URN
    C{urn:publicid:IDN+<authority>+authority+sa}; the AM trusts this file;
  - the AM's server certificate (C{am-cert.pem}, C{am-key.pem}), URN
    C{...+authority+am} and the host name as DNS name;
  - user certificates (C{user-<name>-cert.pem}), URN C{...+user+<name>}
    and a C{urn:uuid} in subjectAltName, as GENI clearinghouses issue;
  - slice certificates (C{slice-<name>-cert.pem}), the targets of slice
    credentials;

and issues signed user, slice and operator credentials, delegations of
them, and speaks-for (ABAC) credentials.

The same operations are a Python API for tests and the demo::

    ca = makeCA(d, "geni:marvin")
    alice = makeUser(d, ca, "alice")
    s1 = makeSlice(d, ca, "s1")
    cred = issueSliceCredential(ca, alice, s1, delegatable=True)
    bobs = delegate(cred, alice, bob, privileges=["control"])
"""

from __future__ import annotations

import os
import sys
import time
from typing import Iterable, Sequence

from cryptography import x509
from twisted.python import usage

from am.trust._issue import (
    fillPrivilegeCredential,
    fillSpeaksFor,
    newDocument,
    signAs,
)
from am.trust._pki import Identity, PrivateKey, certify, loadIdentity, newKey
from am.trust.certs import urnFromCertificate
from am.trust.credential import XML_ID, parseDocument, parseSignedCredential
from am.trust.urn import SLICE_NAME, USER_NAME, makeURN

__all__ = [
    "Identity",
    "makeCA",
    "loadCA",
    "makeAM",
    "makeUser",
    "makeSlice",
    "loadIdentity",
    "issueCredential",
    "issueUserCredential",
    "issueSliceCredential",
    "issueOperatorCredential",
    "delegate",
    "issueSpeaksFor",
    "main",
]

USER_PRIVILEGES = ("refresh", "resolve", "info")
SLICE_PRIVILEGES = ("refresh", "embed", "bind", "control", "info")
HOUR = 3600.0


def _save(directory: str | os.PathLike[str] | None, identity: Identity, stem: str) -> None:
    if directory is not None:
        identity.save(directory, stem)


def makeCA(
    directory: str | os.PathLike[str] | None,
    authority: str,
    *,
    days: int = 3650,
    key: PrivateKey | None = None,
    now: float | None = None,
) -> Identity:
    """
    Create a self-signed clearinghouse CA for C{authority} (e.g.
    C{geni:marvin}), saved as C{ca-cert.pem} / C{ca-key.pem}.

    @param directory: where to write it, or C{None} to keep it in memory.
    @param key: an existing key to certify (tests reuse keys).
    """
    urn = makeURN(authority, "authority", "sa")
    ca = certify(
        None, key or newKey(), urn, f"{authority}.authority.sa", ca=True, days=days, now=now
    )
    _save(directory, ca, "ca")
    return ca


def loadCA(directory: str | os.PathLike[str]) -> Identity:
    """
    Read the CA written by L{makeCA}.
    """
    return loadIdentity(directory, "ca")


def makeAM(
    directory: str | os.PathLike[str] | None,
    ca: Identity,
    hostname: str,
    *,
    urn: str | None = None,
    days: int = 365,
    key: PrivateKey | None = None,
    now: float | None = None,
) -> Identity:
    """
    Create the AM's server certificate, saved as C{am-cert.pem} /
    C{am-key.pem}: DNS name C{hostname}, URN C{urn} (default
    C{urn:publicid:IDN+<ca authority>+authority+am}).
    """
    urn = urn or makeURN(ca.authority, "authority", "am")
    am = certify(
        ca, key or newKey(), urn, hostname, dnsNames=[hostname], serverAuth=True,
        days=days, now=now,
    )
    _save(directory, am, "am")
    return am


def makeUser(
    directory: str | os.PathLike[str] | None,
    ca: Identity,
    name: str,
    *,
    email: str | None = None,
    days: int = 365,
    key: PrivateKey | None = None,
    now: float | None = None,
) -> Identity:
    """
    Create a user certificate with URN C{...+user+<name>} and a
    C{urn:uuid}, saved as C{user-<name>-cert.pem} / C{-key.pem}.

    @raise ValueError: if C{name} breaks the GENI user name rule (a letter,
        then up to 7 letters, digits or C{_}).
    """
    if not USER_NAME.match(name):
        raise ValueError(f"invalid GENI user name {name!r}: a letter then up to 7 of [a-zA-Z0-9_]")
    urn = makeURN(ca.authority, "user", name)
    user = certify(
        ca, key or newKey(), urn, f"{ca.authority}.user.{name}", email=email,
        days=days, now=now,
    )
    _save(directory, user, f"user-{name}")
    return user


def makeSlice(
    directory: str | os.PathLike[str] | None,
    ca: Identity,
    name: str,
    *,
    project: str | None = None,
    days: int = 30,
    key: PrivateKey | None = None,
    now: float | None = None,
) -> Identity:
    """
    Create a slice certificate (the target of slice credentials), URN
    C{...<authority>[:<project>]+slice+<name>}, saved as
    C{slice-<name>-cert.pem}.  Its key is EC: nobody signs with it.

    @raise ValueError: if C{name} breaks the GENI slice name rule.
    """
    if not SLICE_NAME.match(name):
        raise ValueError(f"invalid GENI slice name {name!r}: up to 19 of [a-zA-Z0-9-]")
    authority = ca.authority if project is None else f"{ca.authority}:{project}"
    urn = makeURN(authority, "slice", name)
    identity = certify(
        ca, key or newKey("ec"), urn, f"{authority}.slice.{name}", days=days, now=now
    )
    _save(directory, identity, f"slice-{name}")
    return identity


def _privileges(
    names: Iterable[str | tuple[str, bool]], delegatable: bool
) -> list[tuple[str, bool]]:
    return [
        (item, delegatable) if isinstance(item, str) else (item[0], bool(item[1]))
        for item in names
    ]


def issueCredential(
    signer: Identity,
    owner: Identity | Sequence[x509.Certificate],
    target: Identity | Sequence[x509.Certificate],
    privileges: Iterable[str | tuple[str, bool]],
    *,
    lifetime: float = 24 * HOUR,
    delegatable: bool = False,
    digest: str = "sha256",
    now: float | None = None,
) -> str:
    """
    Issue a privilege credential: C{signer} grants C{owner} C{privileges}
    on C{target}.

    @param privileges: names (delegatable per C{delegatable}) or
        C{(name, canDelegate)} pairs.
    @param digest: C{"sha256"} or C{"sha1"} (what gcf signs with).
    @return: the signed credential document.
    """
    ownerCerts = _certs(owner)
    targetCerts = _certs(target)
    expires = (time.time() if now is None else now) + lifetime
    document, credential = newDocument()
    fillPrivilegeCredential(
        credential,
        ownerCerts,
        urnFromCertificate(ownerCerts[0]),
        targetCerts,
        urnFromCertificate(targetCerts[0]),
        expires,
        _privileges(privileges, delegatable),
    )
    return signAs(document, credential.get(XML_ID), signer, digest).decode("utf-8")


def _certs(who: Identity | Sequence[x509.Certificate]) -> list[x509.Certificate]:
    if isinstance(who, Identity):
        return [who.certificate, *who.issuers]
    return list(who)


def issueUserCredential(
    ca: Identity,
    user: Identity,
    *,
    lifetime: float = 24 * HOUR,
    privileges: Iterable[str | tuple[str, bool]] = USER_PRIVILEGES,
    now: float | None = None,
) -> str:
    """
    Issue C{user} a user credential (target: the user) with gcf's user
    privileges C{refresh}, C{resolve}, C{info}: what ListResources needs.
    """
    return issueCredential(ca, user, user, privileges, lifetime=lifetime, now=now)


def issueSliceCredential(
    ca: Identity,
    user: Identity,
    slice: Identity,
    *,
    lifetime: float = 24 * HOUR,
    privileges: Iterable[str | tuple[str, bool]] = SLICE_PRIVILEGES,
    delegatable: bool = False,
    digest: str = "sha256",
    now: float | None = None,
) -> str:
    """
    Issue C{user} a slice credential for C{slice} with gcf-ch's slice
    privileges (C{refresh}, C{embed}, C{bind}, C{control}, C{info}).

    @param delegatable: may the user delegate these privileges?
    """
    return issueCredential(
        ca, user, slice, privileges, lifetime=lifetime, delegatable=delegatable,
        digest=digest, now=now,
    )


def issueOperatorCredential(
    ca: Identity,
    user: Identity,
    am: Identity,
    *,
    lifetime: float = HOUR,
    privileges: Iterable[str | tuple[str, bool]] = ("shutdown",),
    now: float | None = None,
) -> str:
    """
    Issue C{user} an operator credential whose target is the AM: with
    C{shutdown} it allows Shutdown of any slice at that AM.
    """
    return issueCredential(ca, user, am, privileges, lifetime=lifetime, now=now)


def delegate(
    credential: str | bytes,
    owner: Identity,
    to: Identity | Sequence[x509.Certificate],
    *,
    privileges: Iterable[str | tuple[str, bool]] | None = None,
    lifetime: float | None = None,
    delegatable: bool = False,
    now: float | None = None,
) -> str:
    """
    Delegate C{credential}, owned by C{owner}, to C{to}.

    The parent is embedded whole and its signatures kept; C{owner} signs
    the new credential.  Nothing is checked here: asking for privileges the
    parent does not allow to be delegated makes a credential the AM refuses
    (which is what tests of escalation need).

    @param privileges: default: those the parent lets be delegated.
    @param lifetime: default: until the parent expires.
    """
    data = credential.encode("utf-8") if isinstance(credential, str) else credential
    _, parsed = parseSignedCredential(data)
    parentRoot = parseDocument(data)
    parentCredential = parentRoot.find("credential")
    parent = parsed.credential
    if privileges is None:
        privileges = [p.name for p in parent.privileges if p.canDelegate]
    expires = parent.expires if lifetime is None else (
        (time.time() if now is None else now) + lifetime
    )
    toCerts = _certs(to)
    document, child = newDocument(parentRoot)
    fillPrivilegeCredential(
        child,
        toCerts,
        urnFromCertificate(toCerts[0]),
        parent.targetGID,
        parent.targetURN or "",
        expires,
        _privileges(privileges, delegatable),
    )
    holder = child.makeelement("parent", {})
    child.append(holder)
    holder.append(parentCredential)  # type: ignore[arg-type]
    signatures = parentRoot.find("signatures")
    previous = [] if signatures is None else list(signatures)
    return signAs(document, child.get(XML_ID), owner, previous=previous).decode("utf-8")


def issueSpeaksFor(
    user: Identity,
    tool: Identity | x509.Certificate,
    *,
    lifetime: float = 24 * HOUR,
    now: float | None = None,
) -> str:
    """
    Issue, signed by C{user}, a speaks-for credential letting C{tool} act for
    C{user} (an ABAC statement C{K_user.speaks_for_K_user <- K_tool}).
    """
    toolCert = tool.certificate if isinstance(tool, Identity) else tool
    userKeyid = _keyid(user.certificate)
    document, credential = newDocument()
    fillSpeaksFor(
        credential,
        userKeyid,
        user.urn,
        _keyid(toolCert),
        urnFromCertificate(toolCert),
        (time.time() if now is None else now) + lifetime,
    )
    return signAs(document, credential.get(XML_ID), user).decode("utf-8")


def _keyid(cert: x509.Certificate) -> str:
    return x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest.hex()
