# -*- test-case-name: tests.test_trust_gate -*-
"""
The one entry point of the trust layer: may this caller do this method on
this target?

The GENI face builds one L{Trust} at startup and, per XML-RPC call::

    caller = callerFromRequest(request)            # am.trust.tls
    grant = trust.authorize(caller, "Allocate", target=sliceURN,
                            credentials=credentials, options=options)

L{Trust.authorize} returns a L{Grant} (who, on what, until when, with which
privileges) or raises L{TrustError} carrying the GENI code to return.
"""

from __future__ import annotations

import datetime
import os
import time
from typing import Iterable, Sequence

from attrs import frozen
from cryptography import x509

from am.trust import policy
from am.trust.certs import (
    Caller,
    ChainVerifier,
    callerFromCertificate,
    loadCertificates,
    loadRoots,
    orderChain,
)
from am.trust.errors import BADARGS, EXPIRED, FORBIDDEN, TrustError
from am.trust.speaksfor import checkSpeaksFor
from am.trust.urn import parseURN, sameURN
from am.trust.verifier import CredentialVerifier, IClock, VerifiedCredential

MAX_CREDENTIALS = 16

SFA_VERSIONS = frozenset({"2", "3"})
ABAC_VERSIONS = frozenset({"1"})

# How far a refused credential got; the one that got furthest explains the
# refusal best (an expired slice credential says more than a user
# credential offered for a slice method).
_FORM, _GENUINE, _OWNER, _TARGET, _PRIVILEGE, _EXPIRY = range(6)


class _WallClock:
    def seconds(self) -> float:
        return time.time()


@frozen
class Grant:
    """
    What a caller may do, as established by L{Trust.authorize}.

    @ivar method: the AM API method authorized.
    @ivar callerURN: who is acting: the certificate's URN, or with
        speaks-for the user spoken for.
    @ivar toolURN: with speaks-for, the tool's URN (the TLS caller); else
        C{None}.
    @ivar ownerURN: the owner of the credential that granted the call (the
        same as C{callerURN}); C{None} when no credential was needed.
    @ivar targetURN: the credential's target (the slice, the user, or this
        AM for an operator credential); C{None} when no credential was needed.
    @ivar targetType: the URN type of C{targetURN} (C{slice}, C{user},
        C{authority}); C{None} when no credential was needed.
    @ivar expires: when the granting credential (or an ancestor) expires, as
        an aware UTC datetime; slivers must not outlive it.  C{None} when no
        credential was needed.
    @ivar privileges: the privilege names the credential carries.
    @ivar delegated: was the granting credential delegated?
    """

    method: str
    callerURN: str
    toolURN: str | None = None
    ownerURN: str | None = None
    targetURN: str | None = None
    targetType: str | None = None
    expires: datetime.datetime | None = None
    privileges: frozenset[str] = frozenset()
    delegated: bool = False


@frozen
class _Offered:
    index: int
    kind: str | None  # "sfa", "abac", None (legacy string: read its <type>)
    value: object


@frozen
class _Refusal:
    stage: int
    index: int
    error: TrustError


def offeredCredentials(credentials: object) -> tuple[list[_Offered], list[_Refusal]]:
    """
    Sort the C{credentials} argument into what we can check.

    Accepts the v3 form (structs with C{geni_type}, C{geni_version},
    C{geni_value}) and the legacy form (bare XML strings).  Credentials of
    types we do not support are refused individually, so a call still
    succeeds when another credential grants it.

    @raise TrustError: (BADARGS) if C{credentials} is not a list of structs
        or strings, or is too long.
    """
    if not isinstance(credentials, (list, tuple)):
        raise TrustError(BADARGS, "credentials must be an array")
    if len(credentials) > MAX_CREDENTIALS:
        raise TrustError(BADARGS, f"more than {MAX_CREDENTIALS} credentials")
    offered: list[_Offered] = []
    refused: list[_Refusal] = []
    for index, item in enumerate(credentials, 1):
        if isinstance(item, dict):
            kind = str(item.get("geni_type", "")).lower()[:32]
            version = str(item.get("geni_version", ""))[:16]
            if "geni_value" not in item:
                raise TrustError(BADARGS, f"credential {index} has no geni_value")
            if kind == "geni_sfa" and version in SFA_VERSIONS:
                offered.append(_Offered(index, "sfa", item["geni_value"]))
            elif kind == "geni_abac" and version in ABAC_VERSIONS:
                offered.append(_Offered(index, "abac", item["geni_value"]))
            else:
                refused.append(
                    _Refusal(
                        _FORM,
                        index,
                        TrustError(
                            BADARGS,
                            f"credential {index} has unsupported type {kind!r} "
                            f"version {version!r} (supported: geni_sfa 3 and 2, "
                            "geni_abac 1)",
                        ),
                    )
                )
        elif isinstance(item, (str, bytes)):
            offered.append(_Offered(index, None, item))
        else:
            raise TrustError(
                BADARGS, f"credential {index} must be a struct or a string"
            )
    return offered, refused


def _explain(refusals: list[_Refusal], count: int) -> TrustError:
    best = max(refusals, key=lambda r: (r.stage, -r.index))
    message = best.error.message
    if count > 1:
        message = f"credential {best.index}: {message}"
        others = len(refusals) - 1
        if others:
            message += f" ({others} other credential{'s' if others > 1 else ''} also refused)"
    return TrustError(best.error.geniCode, message)


class Trust:
    """
    The trust layer of one AM: its GENI roots, its URN, and the caches of
    what has been verified.
    """

    def __init__(
        self,
        roots: Sequence[x509.Certificate],
        amURN: str,
        clock: IClock | None = None,
    ) -> None:
        """
        @param roots: the trusted GENI roots (clearinghouse / federation
            CAs).  Nothing else is trusted, the system CA store included.
        @param amURN: this AM's URN; operator credentials target it.
        @param clock: L{IReactorTime}-like; defaults to the wall clock.
        """
        parseURN(amURN)
        self.roots = tuple(roots)
        self.amURN = amURN
        self.clock: IClock = clock if clock is not None else _WallClock()
        self.chains = ChainVerifier(self.roots)
        self.verifier = CredentialVerifier(self.chains, self.clock)

    @classmethod
    def fromPaths(
        cls,
        rootPaths: Iterable[str | os.PathLike[str]],
        amURN: str,
        clock: IClock | None = None,
    ) -> Trust:
        """
        Build from PEM files or directories of them (gcf's C{trusted_roots}).
        """
        return cls(loadRoots(rootPaths), amURN, clock)

    @classmethod
    def fromPEMs(
        cls, rootPEMs: Iterable[bytes | str], amURN: str, clock: IClock | None = None
    ) -> Trust:
        """
        Build from PEM data (each item may hold several certificates).
        """
        roots = [cert for pem in rootPEMs for cert in loadCertificates(pem)]
        return cls(roots, amURN, clock)

    def callerFromPEM(self, pemChain: bytes | str) -> Caller:
        """
        The caller named by a PEM client certificate (and its issuers) that
        did not come through our own TLS handshake, e.g. from a TLS proxy:
        its chain is checked against the roots first.

        @raise TrustError: (FORBIDDEN) if it does not chain or has no URN.
        """
        try:
            leaf, rest = orderChain(loadCertificates(pemChain))
        except ValueError:
            raise TrustError(FORBIDDEN, "the client certificate could not be read") from None
        self.chains.verify(leaf, rest, self.clock.seconds(), "client certificate")
        return callerFromCertificate(leaf)

    def verifyCredential(self, value: object) -> VerifiedCredential:
        """
        Check that one credential document is genuine (signatures, chains,
        delegation, expiry), whoever presents it.

        @raise TrustError: if it is not.
        """
        return self.verifier.verify(value)

    def authorize(
        self,
        caller: Caller | object,
        method: str,
        target: str | None = None,
        credentials: object = (),
        options: object = None,
    ) -> Grant:
        """
        May C{caller} call C{method} on C{target} with these credentials?

        @param caller: a L{Caller} (from C{callerFromRequest}), a client
            certificate (PEM, pyOpenSSL or cryptography) taken as
            authenticated by TLS, or the caller's URN.  Speaks-for needs the
            certificate.
        @param method: the AM API method name, e.g. C{"Allocate"}.
        @param target: the slice URN the method acts on (the face resolves
            sliver URNs to their slice first); C{None} for ListResources and
            GetVersion.
        @param credentials: the method's C{credentials} argument, in the v3
            struct form or the legacy list-of-strings form.
        @param options: the method's C{options}; C{geni_speaking_for} is used.
        @return: the L{Grant}.
        @raise TrustError: BADARGS (malformed arguments or credentials),
            FORBIDDEN (nothing grants the call), EXPIRED (the credential that
            would grant it has expired), UNSUPPORTED (unknown method).
        """
        rule = policy.ruleFor(method)
        who = _asCaller(caller)
        if options is None:
            options = {}
        if not isinstance(options, dict):
            raise TrustError(BADARGS, "options must be a struct")
        if rule.kind == policy.NONE:
            return Grant(method=method, callerURN=who.urn)
        targetURN = _checkTarget(rule, method, target)
        offered, refused = offeredCredentials(credentials)
        count = len(offered) + len(refused)
        if count == 0:
            raise TrustError(
                BADARGS, f"no credentials supplied; {method} needs a {rule.kind} credential"
            )
        actor, tool = who.urn, None
        spokenFor = options.get("geni_speaking_for")
        if spokenFor is not None and not (
            isinstance(spokenFor, str) and sameURN(spokenFor, who.urn)
        ):
            actor, tool = self._speaksFor(who, spokenFor, offered), who.urn
        for offer in offered:
            if offer.kind == "abac":
                continue
            try:
                verified = self.verifier.verify(offer.value, checkExpiry=False)
            except TrustError as e:
                stage = _FORM if e.geniCode == BADARGS else _GENUINE
                refused.append(_Refusal(stage, offer.index, e))
                continue
            try:
                grant = self._grant(rule, method, verified, actor, tool, targetURN)
                verified.checkExpiry(self.clock.seconds())
            except _Refused as r:
                refused.append(_Refusal(r.stage, offer.index, r.error))
            except TrustError as e:
                refused.append(_Refusal(_EXPIRY, offer.index, e))
            else:
                return grant
        if not refused:
            raise TrustError(
                FORBIDDEN, f"no SFA credential supplied; {method} needs a {rule.kind} credential"
            )
        raise _explain(refused, count)

    def _speaksFor(self, tool: Caller, userURN: object, offered: list[_Offered]) -> str:
        if not isinstance(userURN, str):
            raise TrustError(BADARGS, "geni_speaking_for must be a URN string")
        try:
            parseURN(userURN)
        except ValueError as e:
            raise TrustError(BADARGS, f"geni_speaking_for is not a URN: {e}") from None
        reasons: list[TrustError] = []
        for offer in offered:
            if offer.kind == "sfa":
                continue
            try:
                verified = self.verifier.verify(offer.value, checkExpiry=False)
            except TrustError as e:
                if offer.kind == "abac":
                    reasons.append(e)
                continue
            if verified.credential.type != "abac":
                if offer.kind == "abac":
                    reasons.append(
                        TrustError(FORBIDDEN, "the geni_abac credential is not an ABAC statement")
                    )
                continue
            try:
                user = checkSpeaksFor(verified, tool, userURN)
                verified.checkExpiry(self.clock.seconds())
            except TrustError as e:
                reasons.append(e)
            else:
                return user
        if not reasons:
            raise TrustError(
                FORBIDDEN,
                f"geni_speaking_for is {userURN} but no speaks-for (geni_abac) "
                "credential was supplied",
            )
        best = next((e for e in reasons if e.geniCode == EXPIRED), reasons[-1])
        raise TrustError(best.geniCode, f"speaks-for refused: {best.message}")

    def _grant(
        self,
        rule: policy.Rule,
        method: str,
        verified: VerifiedCredential,
        actor: str,
        tool: str | None,
        targetURN: str | None,
    ) -> Grant:
        cred = verified.credential
        if cred.type != "privilege":
            raise _Refused(_OWNER, FORBIDDEN, "an ABAC statement is not a privilege credential")
        assert cred.ownerURN is not None and cred.targetURN is not None
        if not sameURN(cred.ownerURN, actor):
            raise _Refused(
                _OWNER,
                FORBIDDEN,
                f"the credential belongs to {cred.ownerURN}, not to the caller {actor}",
            )
        target = parseURN(cred.targetURN)
        held = frozenset(p.name for p in cred.privileges)
        operator = rule.operator and sameURN(target, self.amURN)
        if rule.kind == policy.USER and not target.type.lower() == "user":
            raise _Refused(
                _TARGET,
                FORBIDDEN,
                f"{method} needs a user credential, not a {target.type} credential",
            )
        if rule.kind == policy.SLICE and not operator:
            if target.type.lower() != "slice":
                raise _Refused(
                    _TARGET,
                    FORBIDDEN,
                    f"{method} needs a slice credential, not a {target.type} credential",
                )
            if not sameURN(target, targetURN or ""):
                raise _Refused(
                    _TARGET,
                    FORBIDDEN,
                    f"the credential is for {cred.targetURN}, not for {targetURN}",
                )
        if not held & rule.privileges:
            raise _Refused(
                _PRIVILEGE,
                FORBIDDEN,
                f"{method} needs one of the privileges "
                f"{', '.join(sorted(rule.privileges))}; the credential grants "
                f"{', '.join(sorted(held)) or 'none'}",
            )
        return Grant(
            method=method,
            callerURN=actor,
            toolURN=tool,
            ownerURN=cred.ownerURN,
            targetURN=cred.targetURN,
            targetType=target.type.lower(),
            expires=datetime.datetime.fromtimestamp(
                verified.expires, datetime.timezone.utc
            ),
            privileges=held,
            delegated=verified.delegated,
        )


class _Refused(Exception):
    def __init__(self, stage: int, code: int, message: str) -> None:
        super().__init__(message)
        self.stage = stage
        self.error = TrustError(code, message)


def _asCaller(caller: object) -> Caller:
    if isinstance(caller, Caller):
        return caller
    if isinstance(caller, str) and "-----BEGIN" not in caller:
        try:
            parseURN(caller)
        except ValueError as e:
            raise TrustError(FORBIDDEN, f"the caller URN is malformed: {e}") from None
        return Caller(caller)
    return callerFromCertificate(caller)


def _checkTarget(rule: policy.Rule, method: str, target: object) -> str | None:
    if rule.kind != policy.SLICE:
        return None
    if not isinstance(target, str):
        raise TrustError(BADARGS, f"{method} needs a slice URN")
    try:
        urn = parseURN(target)
    except ValueError as e:
        raise TrustError(BADARGS, f"{method}: the slice URN is malformed: {e}") from None
    if urn.type.lower() != "slice":
        raise TrustError(BADARGS, f"{method}: {target} is not a slice URN")
    return target
