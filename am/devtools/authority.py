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

import argparse
import os
import sys
import time
from typing import Iterable, Sequence

from cryptography import x509

from am.devtools.issue import (
    fillPrivilegeCredential,
    fillSpeaksFor,
    newDocument,
    signAs,
)
from am.devtools.pki import Identity, PrivateKey, certify, loadIdentity, newKey
from am.trust.certs import loadCertificates, urnFromCertificate
from am.trust.errors import TrustError
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


# The command line.

_WARNING = (
    "For testing and demonstrations only: not a production authority (keys "
    "are stored unencrypted, nothing is recorded or revocable)."
)


def _hours(value: str) -> float:
    try:
        hours = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of hours: {value!r}") from None
    if not 0 < hours <= 24 * 3650:
        raise argparse.ArgumentTypeError("hours must be positive (at most ten years)")
    return hours


def _privilegeList(value: str) -> list[str]:
    return [p.strip() for p in value.split(",") if p.strip()]


def parser() -> argparse.ArgumentParser:
    """
    The C{marvin-authority} argument parser.
    """
    top = argparse.ArgumentParser(
        prog="marvin-authority",
        description=(
            "A development authority for Marvin's GENI face: makes a CA, the AM "
            "certificate, user and slice certificates, and signed credentials. "
            + _WARNING
        ),
        epilog="Example: marvin-authority -d pki ca --authority geni:marvin; "
        "marvin-authority -d pki user alice; marvin-authority -d pki slice s1; "
        "marvin-authority -d pki slice-credential alice s1 -o alice-s1.xml",
    )
    top.add_argument("-d", "--dir", default=".", help="the authority's directory (default: .)")
    commands = top.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, text: str) -> argparse.ArgumentParser:
        return commands.add_parser(name, help=text, description=f"{text}. {_WARNING}")

    p = command("ca", "create the clearinghouse CA (ca-cert.pem, ca-key.pem); the AM trusts ca-cert.pem")
    p.add_argument("--authority", "-a", required=True, help="URN authority, e.g. geni:marvin")
    p.add_argument("--days", type=int, default=3650, help="validity in days (default 3650)")
    p = command("am", "create the AM's server certificate (am-cert.pem, am-key.pem)")
    p.add_argument("--hostname", "-H", required=True, help="the AM's DNS name")
    p.add_argument("--urn", help="the AM's URN (default: ...+<authority>+authority+am)")
    p.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    p = command("user", "create a user certificate (user-NAME-cert.pem, user-NAME-key.pem)")
    p.add_argument("name", help="user name: a letter, then up to 7 letters, digits or _")
    p.add_argument("--email", help="e-mail address for subjectAltName")
    p.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    p = command("slice", "create a slice certificate (slice-NAME-cert.pem)")
    p.add_argument("name", help="slice name: up to 19 letters, digits or -")
    p.add_argument("--project", help="project sub-authority")
    p.add_argument("--days", type=int, default=30, help="validity in days (default 30)")

    def credential(name: str, text: str, *arguments: str) -> argparse.ArgumentParser:
        p = command(name, text)
        for argument in arguments:
            p.add_argument(argument)
        p.add_argument(
            "--hours",
            type=_hours,
            help="lifetime in hours (default: 24, or the parent's for delegate)",
        )
        p.add_argument(
            "-p",
            "--privileges",
            type=_privilegeList,
            help="comma-separated privileges (default: the usual set)",
        )
        p.add_argument(
            "--delegatable",
            action="store_true",
            help="let the owner delegate these privileges",
        )
        p.add_argument(
            "-o",
            "--output",
            default="-",
            help="write the credential here (default: standard output)",
        )
        return p

    credential("user-credential", "issue USER a user credential (for ListResources)", "user")
    credential("slice-credential", "issue USER a credential for slice SLICE", "user", "slice")
    credential(
        "operator-credential",
        "issue USER an operator credential for the AM (allows Shutdown)",
        "user",
    )
    credential(
        "delegate",
        "delegate CREDENTIAL (a file) owned by user OWNER to user TO, signed by "
        "OWNER; by default with the delegatable privileges, until the parent expires",
        "credential",
        "owner",
        "to",
    )
    credential(
        "speaks-for", "issue, signed by USER, a speaks-for credential for TOOL (a user "
        "name here, or a PEM certificate file)", "user", "tool",
    )
    return top


def _run(args: argparse.Namespace) -> str:
    directory, command = args.dir, args.command
    if command == "ca":
        ca = makeCA(directory, args.authority, days=args.days)
        return f"created {ca.urn} in {os.path.join(directory, 'ca-cert.pem')}\n"
    ca = loadCA(directory)
    if command == "am":
        am = makeAM(directory, ca, args.hostname, urn=args.urn, days=args.days)
        return f"created {am.urn} in {os.path.join(directory, 'am-cert.pem')}\n"
    if command == "user":
        made = makeUser(directory, ca, args.name, email=args.email, days=args.days)
        return f"created {made.urn} in {os.path.join(directory, f'user-{args.name}-cert.pem')}\n"
    if command == "slice":
        made = makeSlice(directory, ca, args.name, project=args.project, days=args.days)
        return f"created {made.urn} in {os.path.join(directory, f'slice-{args.name}-cert.pem')}\n"
    lifetime = (args.hours or 24.0) * HOUR

    def user(name: str) -> Identity:
        return loadIdentity(directory, f"user-{name}")

    def privileges(default: Sequence[str]) -> Sequence[str]:
        return default if args.privileges is None else args.privileges

    if command == "user-credential":
        return issueUserCredential(
            ca,
            user(args.user),
            lifetime=lifetime,
            privileges=_privileges(privileges(USER_PRIVILEGES), args.delegatable),
        )
    if command == "slice-credential":
        return issueSliceCredential(
            ca, user(args.user), loadIdentity(directory, f"slice-{args.slice}"),
            lifetime=lifetime, privileges=privileges(SLICE_PRIVILEGES), delegatable=args.delegatable,
        )
    if command == "operator-credential":
        return issueOperatorCredential(
            ca, user(args.user), loadIdentity(directory, "am"), lifetime=lifetime,
            privileges=_privileges(privileges(("shutdown",)), args.delegatable),
        )
    if command == "delegate":
        with open(args.credential, "rb") as f:
            parent = f.read()
        return delegate(
            parent, user(args.owner), user(args.to), privileges=args.privileges,
            lifetime=None if args.hours is None else lifetime, delegatable=args.delegatable,
        )
    tool: Identity | x509.Certificate
    if os.path.isfile(args.tool):
        with open(args.tool, "rb") as f:
            tool = loadCertificates(f.read())[0]
    else:
        tool = user(args.tool)
    return issueSpeaksFor(user(args.user), tool, lifetime=lifetime)


def main(argv: Sequence[str] | None = None) -> int:
    """
    Run C{marvin-authority}.

    @return: the exit status: 0, 1 for a failure, 2 for a usage error
        (argparse exits with it itself).
    """
    args = parser().parse_args(argv)
    try:
        result = _run(args)
        if getattr(args, "output", "-") != "-":
            with open(args.output, "w", encoding="utf-8") as f:
                f.write(result)
        else:
            sys.stdout.write(result)
    except FileNotFoundError as e:
        sys.stderr.write(f"marvin-authority: {e.filename}: not found (make it first)\n")
        return 1
    except (OSError, ValueError, TrustError) as e:
        sys.stderr.write(f"marvin-authority: {e}\n")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
