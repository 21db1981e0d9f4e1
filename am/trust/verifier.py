# -*- test-case-name: tests.test_trust_verifier -*-
"""
Is this credential genuine?  Signatures, signer chains, delegation and
expiry, cached by document digest.

A credential is genuine when, for every credential in its delegation chain:

  - a signature references it, made by the key of a certificate that chains
    to the configured GENI roots (L{am.trust.signature} explains why the key
    is taken from the certificate and never from the document);
  - its owner and target certificates chain to the roots;
  - the innermost credential is signed by an authority over its target's
    namespace (C{...gpo+authority+sa} for C{...gpo:project+slice+s1});
  - a delegated credential is signed by its parent's owner, names the same
    target, grants a subset of the privileges its parent lets be delegated,
    and expires no later than its parent;
  - it has not expired.

Whether it lets I{this} caller do I{this} method is L{am.trust.gate}'s job.
"""

from __future__ import annotations

import datetime
import hashlib
import xmlrpc.client
from typing import Protocol

from attrs import frozen
from cryptography import x509
from twisted.logger import Logger

from am.trust._lru import LRU
from am.trust.certs import (
    ChainVerifier,
    Validity,
    orderChain,
    samePublicKey,
    urnsInCertificate,
)
from am.trust.credential import Credential, SignedCredential, parseSignedCredential
from am.trust.errors import BADARGS, EXPIRED, FORBIDDEN, TrustError
from am.trust.signature import SignatureChecker, signerCertificates
from am.trust.urn import URN, authorityCovers, isURN, parseURN, sameURN


class IClock(Protocol):
    """
    What we need of a clock: L{twisted.internet.interfaces.IReactorTime}'s
    C{seconds}.
    """

    def seconds(self) -> float:
        """
        The current time, POSIX seconds.
        """


@frozen
class VerifiedCredential:
    """
    A credential whose signatures, chains and delegation have been checked.

    @ivar credential: the outermost credential of the document.
    @ivar signerURN: who signed the outermost credential.
    @ivar signerCertificate: the certificate of that signer (for speaks-for,
        whose ABAC head must name the signer's key).
    @ivar expires: POSIX seconds; the earliest expiry in the chain.
    @ivar validity: while the checks above hold: the validity window of
        every checked certificate.  Expiry of the credential itself is
        checked by L{checkExpiry}, so a refusal can say both "this is your
        slice credential" and "it has expired".
    @ivar digest: SHA-256 of the document as verified.
    """

    credential: Credential
    signerURN: str
    signerCertificate: x509.Certificate
    expires: float
    validity: Validity
    digest: bytes

    @property
    def delegated(self) -> bool:
        """
        Was the outermost credential delegated from another?
        """
        return self.credential.parent is not None

    def checkExpiry(self, now: float) -> None:
        """
        Refuse the credential if it, or a credential it was delegated from,
        has expired at C{now}.

        @raise TrustError: (EXPIRED) naming which one and when.
        """
        if now <= self.expires:
            return
        for index, cred in enumerate(self.credential.chain()):
            if now > cred.expires:
                raise TrustError(
                    EXPIRED, f"{_describe(index)} expired at {isoTime(cred.expires)}"
                )


def isoTime(seconds: float) -> str:
    """
    C{seconds} as an RFC 3339 UTC string, for messages.
    """
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


def _describe(index: int) -> str:
    return "the credential" if index == 0 else f"delegation parent {index}"


def _grantsDelegation(parent: Credential, name: str) -> bool:
    for privilege in parent.privileges:
        if privilege.canDelegate and privilege.name in (name, "*"):
            return True
    return False


class CredentialVerifier:
    """
    Verify credential documents against the GENI roots, remembering the ones
    that passed.

    The cache is keyed by the SHA-256 of the exact document bytes, so any
    change to a document misses it and is verified from scratch.  An entry is
    used only inside its validity window; after that the document is
    verified again (and refused with the precise reason).
    """

    def __init__(
        self, chains: ChainVerifier, clock: IClock, cacheSize: int = 4096
    ) -> None:
        self._chains = chains
        self._clock = clock
        self._signatures = SignatureChecker()
        self._cache: LRU[bytes, VerifiedCredential] = LRU(cacheSize)
        self._log = Logger()

    def verify(self, value: object, checkExpiry: bool = True) -> VerifiedCredential:
        """
        Verify one credential document.

        @param value: the document as received over XML-RPC (C{str},
            C{bytes} or C{xmlrpc.client.Binary}).
        @param checkExpiry: refuse an expired credential; pass C{False} to
            check expiry later with L{VerifiedCredential.checkExpiry}.
        @raise TrustError: BADARGS if malformed, EXPIRED if expired,
            FORBIDDEN if not genuine.
        """
        now = self._clock.seconds()
        try:
            result = self._verifyAt(value, now)
        except TrustError:
            raise
        except Exception:
            # Fail closed on anything the checks did not foresee, and keep
            # the traceback for the operator, not the client.
            self._log.failure("unexpected error verifying a credential")
            raise TrustError(
                FORBIDDEN, "the credential could not be checked (unsupported content)"
            ) from None
        if checkExpiry:
            result.checkExpiry(now)
        return result

    def _verifyAt(self, value: object, now: float) -> VerifiedCredential:
        digest = _digest(value)
        if digest is not None:
            hit = self._cache.get(digest)
            if hit is not None and hit.validity.covers(now):
                return hit
        data, signed = parseSignedCredential(value)
        result = self._verifySigned(signed, hashlib.sha256(data).digest(), now)
        return self._cache.put(result.digest, result)

    def _chain(
        self, certs: tuple[x509.Certificate, ...], now: float, what: str
    ) -> Validity:
        return self._chains.verify(certs[0], certs[1:], now, what)

    def _verifySigned(
        self, signed: SignedCredential, digest: bytes, now: float
    ) -> VerifiedCredential:
        chain = list(signed.credential.chain())
        referenced = {c.refid for c in chain}
        if not signed.signatures:
            raise TrustError(FORBIDDEN, "the credential is not signed")
        for refid in signed.signatures:
            if refid not in referenced:
                raise TrustError(
                    BADARGS, "a signature references no credential in the chain"
                )
        window = Validity(float("-inf"), float("inf"))
        signers: list[tuple[str, x509.Certificate]] = []
        for index, cred in enumerate(chain):
            what = _describe(index)
            signature = signed.signatures.get(cred.refid)
            if signature is None:
                raise TrustError(FORBIDDEN, f"{what} is not signed")
            try:
                leaf, rest = orderChain(signerCertificates(signature))
            except ValueError as e:
                raise TrustError(BADARGS, f"{what}: signer certificates: {e}") from None
            window = window.intersect(
                self._chains.verify(leaf, rest, now, f"signer of {what}")
            )
            self._signatures.verify(signature, leaf, what)
            urns = urnsInCertificate(leaf)
            if len(urns) != 1 or not isURN(urns[0]):
                raise TrustError(
                    FORBIDDEN, f"the signer of {what} has no single valid GENI URN"
                )
            signers.append((urns[0], leaf))
            if cred.type == "privilege":
                window = window.intersect(
                    self._chain(cred.ownerGID, now, f"owner of {what}")
                ).intersect(self._chain(cred.targetGID, now, f"target of {what}"))
        for index, cred in enumerate(chain):
            if cred.type != "privilege":
                continue
            signerURN, signerCert = signers[index]
            if cred.parent is None:
                _checkIssuer(cred, signerURN, _describe(index))
            else:
                _checkDelegation(cred, signerURN, signerCert, _describe(index))
        return VerifiedCredential(
            credential=signed.credential,
            signerURN=signers[0][0],
            signerCertificate=signers[0][1],
            expires=min(c.expires for c in chain),
            validity=window,
            digest=digest,
        )


def _digest(value: object) -> bytes | None:
    """
    The cache key of a document as received, or C{None} if it is not a
    kind of value we could parse (parsing then refuses it properly).
    """
    if isinstance(value, str):
        try:
            return hashlib.sha256(value.encode("utf-8")).digest()
        except UnicodeEncodeError:
            return None
    if isinstance(value, bytes):
        return hashlib.sha256(value).digest()
    if isinstance(value, xmlrpc.client.Binary) and isinstance(value.data, bytes):
        return hashlib.sha256(value.data).digest()
    return None


def _checkIssuer(cred: Credential, signerURN: str, what: str) -> None:
    """
    The innermost credential must be issued by an authority over its target
    (or by the target itself, as an AM may for its operators).
    """
    assert cred.targetURN is not None
    signer: URN = parseURN(signerURN)
    target = parseURN(cred.targetURN)
    if not (authorityCovers(signer, target) or sameURN(signer, target)):
        raise TrustError(
            FORBIDDEN,
            f"{what} was signed by {signerURN}, which is not an authority for "
            f"{cred.targetURN}",
        )


def _checkDelegation(
    cred: Credential, signerURN: str, signerCert: x509.Certificate, what: str
) -> None:
    """
    A delegated credential must be signed by its parent's owner and may only
    narrow what the parent grants.
    """
    parent = cred.parent
    assert parent is not None and parent.ownerURN is not None
    if not (
        sameURN(signerURN, parent.ownerURN)
        and samePublicKey(signerCert, parent.ownerGID[0])
    ):
        raise TrustError(
            FORBIDDEN,
            f"{what} was delegated by {signerURN}, who does not own its parent",
        )
    if not sameURN(cred.targetURN or "", parent.targetURN or ""):
        raise TrustError(
            FORBIDDEN, f"{what} names a different target than its parent"
        )
    if cred.expires > parent.expires:
        raise TrustError(FORBIDDEN, f"{what} expires after its parent")
    for privilege in cred.privileges:
        if not _grantsDelegation(parent, privilege.name):
            raise TrustError(
                FORBIDDEN,
                f"{what} claims privilege {privilege.name!r}, which its parent "
                "does not grant or does not allow to be delegated",
            )
