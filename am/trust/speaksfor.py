# -*- test-case-name: tests.test_trust_speaksfor -*-
"""
Speaks-for: a tool calls with its own certificate on behalf of a user.

The tool passes C{options["geni_speaking_for"] = <user URN>} and a
C{geni_abac} credential: an ABAC statement
C{K_user.speaks_for_K_user <- K_tool}, signed by the user.  It is accepted
when (after L{am.trust.verifier} has checked its signature, signer chain and
expiry):

  - the head key id names the key that signed it (so the user said it);
  - the role is C{speaks_for_<head key id>} and the tail is a bare principal;
  - the tail key id names the calling tool's certificate key;
  - the signer's URN is the C{geni_speaking_for} user.

The user's URN then stands in for the caller in every further check.
"""

from __future__ import annotations

from am.trust.certs import Caller, keyIdentifiers
from am.trust.errors import FORBIDDEN, TrustError
from am.trust.urn import sameURN
from am.trust.verifier import VerifiedCredential


def checkSpeaksFor(
    verified: VerifiedCredential, tool: Caller, userURN: str
) -> str:
    """
    Does C{verified} let C{tool} speak for C{userURN}?

    @param verified: a verified C{abac} credential.
    @param tool: the TLS caller, with its certificate.
    @param userURN: the C{geni_speaking_for} option.
    @return: the user's URN, as the signer's certificate states it.
    @raise TrustError: (FORBIDDEN) if it does not.
    """
    statement = verified.credential.abac
    if verified.credential.type != "abac" or statement is None:
        raise TrustError(FORBIDDEN, "the speaks-for credential is not an ABAC statement")
    if tool.certificate is None:
        raise TrustError(
            FORBIDDEN, "speaks-for needs the calling tool's certificate, not just its URN"
        )
    signerKeys = keyIdentifiers(verified.signerCertificate)
    if statement.head.keyid not in signerKeys:
        raise TrustError(
            FORBIDDEN,
            "the speaks-for statement is not signed by the user it speaks for",
        )
    if statement.role != f"speaks_for_{statement.head.keyid}" or statement.tailRole:
        raise TrustError(
            FORBIDDEN, "the ABAC statement is not a speaks-for statement"
        )
    if statement.tail.keyid not in keyIdentifiers(tool.certificate):
        raise TrustError(
            FORBIDDEN, "the speaks-for credential was given to another tool"
        )
    if not sameURN(verified.signerURN, userURN):
        raise TrustError(
            FORBIDDEN,
            f"the speaks-for credential is from {verified.signerURN}, not "
            f"{userURN}",
        )
    return verified.signerURN
