# -*- test-case-name: tests.test_trust_certs -*-
"""
Certificates: loading, GENI identities, and chain checks against only the
configured GENI roots.

The chain check never consults the system CA store: its L{X509Store} starts
empty and holds only the roots given to L{ChainVerifier}.
"""

from __future__ import annotations

import calendar
import datetime
import os
from typing import Iterable, Sequence

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtensionOID
from OpenSSL import crypto

from am.trust._lru import LRU
from am.trust.errors import FORBIDDEN, TrustError
from am.trust.urn import PREFIX, parseURN

MAX_CHAIN = 8

def loadCertificates(data: bytes | str) -> list[x509.Certificate]:
    """
    Load every PEM certificate in C{data}, in order.

    @raise ValueError: if C{data} holds no certificate, too many, or a block
        that does not parse.
    """
    if isinstance(data, str):
        data = data.encode("ascii", "strict")
    if b"-----BEGIN CERTIFICATE-----" not in data:
        raise ValueError("no PEM certificate found")
    certs = x509.load_pem_x509_certificates(data)
    if len(certs) > MAX_CHAIN * 16:
        raise ValueError("too many certificates")
    return certs


def loadRoots(paths: Iterable[str | os.PathLike[str]]) -> list[x509.Certificate]:
    """
    Load trust roots from PEM files and from directories of C{*.pem} and
    C{*.crt} files (gcf's C{trusted_roots/} layout; files there without a
    certificate, such as keys, are skipped).

    @raise ValueError: if a path holds no certificate, or no root is found
        at all (an AM that trusts nobody is a configuration error).
    """
    roots: list[x509.Certificate] = []
    for path in paths:
        path = os.fspath(path)
        inDirectory = os.path.isdir(path)
        if inDirectory:
            names = sorted(
                n for n in os.listdir(path) if n.endswith((".pem", ".crt"))
            )
            files = [os.path.join(path, n) for n in names]
        else:
            files = [path]
        for name in files:
            with open(name, "rb") as f:
                data = f.read()
            if inDirectory and b"-----BEGIN CERTIFICATE-----" not in data:
                continue  # e.g. a key file next to the certificates
            try:
                roots.extend(loadCertificates(data))
            except ValueError as e:
                raise ValueError(f"{name}: {e}") from None
    if not roots:
        raise ValueError("no trust roots found")
    return roots


def asCryptography(cert: object) -> x509.Certificate:
    """
    Coerce a cryptography certificate, a pyOpenSSL C{X509} or a PEM string
    to a cryptography certificate (the first one, for PEM).

    @raise TypeError: for anything else.
    @raise ValueError: for PEM that does not parse.
    """
    if isinstance(cert, x509.Certificate):
        return cert
    if isinstance(cert, crypto.X509):
        return cert.to_cryptography()
    if isinstance(cert, (bytes, str)):
        return loadCertificates(cert)[0]
    raise TypeError(f"not a certificate: {type(cert).__name__}")


def certificatePEM(cert: x509.Certificate) -> bytes:
    """
    The PEM encoding of C{cert}.
    """
    return cert.public_bytes(serialization.Encoding.PEM)


# Pure functions of a certificate (certificates hash and compare by their
# DER), remembered because reading extensions and names is the slow part of
# handling a credential.
_urns: LRU[x509.Certificate, tuple[str, ...]] = LRU(1024)
_orders: LRU[tuple[x509.Certificate, ...], tuple[x509.Certificate, list[x509.Certificate]]] = LRU(1024)


def urnsInCertificate(cert: x509.Certificate) -> list[str]:
    """
    The C{urn:publicid:IDN+} URIs in C{cert}'s subjectAltName, in order.
    """
    return list(_urns.memo(cert, lambda: tuple(_readURNs(cert))))


def _readURNs(cert: x509.Certificate) -> list[str]:
    try:
        san = cert.extensions.get_extension_for_oid(
            ExtensionOID.SUBJECT_ALTERNATIVE_NAME
        ).value
    except Exception:
        # Absent, or extensions that do not parse (duplicates, bad
        # encodings): either way the certificate names no one.
        return []
    return [
        uri
        for uri in san.get_values_for_type(x509.UniformResourceIdentifier)  # type: ignore[attr-defined]
        if uri[: len(PREFIX)].lower() == PREFIX.lower()
    ]


def urnFromCertificate(cert: object) -> str:
    """
    The GENI URN that identifies the holder of C{cert}: the one
    C{urn:publicid:IDN+...} URI in its subjectAltName.

    @param cert: a cryptography certificate, a pyOpenSSL C{X509} (as
        C{getPeerCertificate()} returns) or PEM.
    @raise TrustError: (FORBIDDEN) when the certificate carries no GENI URN,
        several, or a malformed one: such a certificate identifies nobody.
    """
    try:
        cert = asCryptography(cert)
    except (TypeError, ValueError):
        raise TrustError(FORBIDDEN, "the certificate could not be read") from None
    urns = urnsInCertificate(cert)
    if not urns:
        raise TrustError(
            FORBIDDEN,
            "certificate has no GENI URN (URI:urn:publicid:IDN+...) in its "
            "subjectAltName",
        )
    if len(urns) > 1:
        raise TrustError(FORBIDDEN, "certificate has more than one GENI URN")
    try:
        parseURN(urns[0])
    except ValueError as e:
        raise TrustError(FORBIDDEN, f"certificate URN is malformed: {e}") from None
    return urns[0]


def keyIdentifiers(cert: x509.Certificate) -> frozenset[str]:
    """
    The key identifiers that name C{cert}'s key in ABAC statements, as
    lower-case hex: its subjectKeyIdentifier extension (if any) and the
    SHA-1 of its public key (RFC 5280 method 1, what ABAC tools compute).
    """
    ids = set()
    try:
        ids.add(
            x509.SubjectKeyIdentifier.from_public_key(
                cert.public_key()  # type: ignore[arg-type]
            ).digest.hex()
        )
    except Exception:
        pass  # a key type we cannot read has no identifier we can match
    try:
        ext = cert.extensions.get_extension_for_oid(
            ExtensionOID.SUBJECT_KEY_IDENTIFIER
        ).value
    except Exception:
        pass
    else:
        ids.add(ext.digest.hex())  # type: ignore[attr-defined]
    return frozenset(ids)


def samePublicKey(a: x509.Certificate, b: x509.Certificate) -> bool:
    """
    Do C{a} and C{b} certify the same key?
    """
    fmt = serialization.PublicFormat.SubjectPublicKeyInfo
    enc = serialization.Encoding.DER
    try:
        return a.public_key().public_bytes(enc, fmt) == b.public_key().public_bytes(
            enc, fmt
        )
    except Exception:
        return False  # an unreadable key matches nothing


def orderChain(
    certs: Sequence[x509.Certificate],
) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """
    Split certificates presented together (a GID, or an XML-DSig C{X509Data})
    into the end certificate and the others.

    The end certificate is the first one that issued none of the others; the
    rest are offered to chain building as untrusted intermediates.

    @raise ValueError: if C{certs} is empty or too long.
    """
    if not certs:
        raise ValueError("no certificate")
    if len(certs) > MAX_CHAIN:
        raise ValueError("certificate chain is too long")
    leaf, rest = _orders.memo(tuple(certs), lambda: _order(certs))
    return leaf, list(rest)


def _order(
    certs: Sequence[x509.Certificate],
) -> tuple[x509.Certificate, list[x509.Certificate]]:
    issuers = {c.issuer for c in certs if c.issuer != c.subject}
    for i, cert in enumerate(certs):
        if cert.subject not in issuers:
            return cert, [c for j, c in enumerate(certs) if j != i]
    return certs[0], list(certs[1:])


@frozen
class Validity:
    """
    When a verified chain stays valid.

    @ivar notBefore: POSIX seconds; the chain is not valid before.
    @ivar notAfter: POSIX seconds; the chain is not valid after.
    """

    notBefore: float
    notAfter: float

    def covers(self, now: float) -> bool:
        """
        Is C{now} inside this window?
        """
        return self.notBefore <= now <= self.notAfter

    def intersect(self, other: Validity) -> Validity:
        """
        The window in which both C{self} and C{other} hold.
        """
        return Validity(
            max(self.notBefore, other.notBefore), min(self.notAfter, other.notAfter)
        )


ALWAYS = Validity(float("-inf"), float("inf"))


def _x509Seconds(stamp: bytes) -> float:
    """
    An OpenSSL C{YYYYMMDDhhmmssZ} time as POSIX seconds.
    """
    text = stamp.decode("ascii")
    return float(
        calendar.timegm(
            (int(text[0:4]), int(text[4:6]), int(text[6:8]),
             int(text[8:10]), int(text[10:12]), int(text[12:14]), 0, 0, 0)
        )
    )


_openssl: LRU[x509.Certificate, crypto.X509] = LRU(1024)


def _asOpenSSL(cert: x509.Certificate) -> crypto.X509:
    return _openssl.memo(cert, lambda: crypto.X509.from_cryptography(cert))


class ChainVerifier:
    """
    Check that certificates chain to the configured roots, and only those.

    Results are cached by the exact certificates presented, with the window
    in which they hold, so the same user or authority chain costs one
    verification until a certificate in it expires.
    """

    cacheSize = 1024

    def __init__(self, roots: Sequence[x509.Certificate]) -> None:
        """
        @param roots: the trusted GENI roots.  A root need not be
            self-signed: an operator may trust an intermediate authority.
        """
        if not roots:
            raise ValueError("no trust roots")
        self.roots = tuple(roots)
        self._roots = [crypto.X509.from_cryptography(root) for root in roots]
        self._cache: LRU[tuple[x509.Certificate, ...], Validity] = LRU(self.cacheSize)

    def verify(
        self,
        leaf: x509.Certificate,
        intermediates: Sequence[x509.Certificate],
        now: float,
        what: str,
    ) -> Validity:
        """
        Verify C{leaf} against the roots at time C{now}.

        @param what: names the certificate in error messages, e.g.
            C{"signer of credential 1"}.
        @return: the window in which the verified chain is valid.
        @raise TrustError: (FORBIDDEN) if no chain to a root exists, or a
            certificate in it is expired or not yet valid.
        """
        key = (leaf, *intermediates)
        cached = self._cache.get(key)
        if cached is not None and cached.covers(now):
            return cached
        untrusted = [_asOpenSSL(c) for c in intermediates]
        # A fresh store per check: OpenSSL keeps the first verification
        # time set on a store, so a shared one cannot follow the clock.
        store = crypto.X509Store()
        for root in self._roots:
            store.add_cert(root)
        store.set_flags(crypto.X509StoreFlags.PARTIAL_CHAIN)
        store.set_time(
            datetime.datetime.fromtimestamp(now, datetime.timezone.utc).replace(tzinfo=None)
        )
        context = crypto.X509StoreContext(
            store, _asOpenSSL(leaf), chain=untrusted
        )
        try:
            chain = context.get_verified_chain()
        except (crypto.X509StoreContextError, crypto.Error) as e:
            reason = e.args[0] if e.args else "verification failed"
            raise TrustError(
                FORBIDDEN,
                f"{what}: certificate does not chain to a trusted root ({reason})",
            ) from None
        window = ALWAYS
        for cert in chain:
            window = window.intersect(
                Validity(
                    _x509Seconds(cert.get_notBefore() or b""),
                    _x509Seconds(cert.get_notAfter() or b""),
                )
            )
        self._cache.put(key, window)
        return window


@frozen
class Caller:
    """
    Who is calling: the URN from a client certificate, and that certificate
    when we have it (speaks-for needs it to name the tool's key).

    @ivar urn: the caller's GENI URN.
    @ivar certificate: the caller's certificate, or C{None} when only the URN
        is known (e.g. from a trusted TLS proxy).
    """

    urn: str
    certificate: x509.Certificate | None = None

    def __str__(self) -> str:
        return self.urn


def callerFromCertificate(cert: object) -> Caller:
    """
    The L{Caller} a client certificate identifies.

    @raise TrustError: (FORBIDDEN) if it carries no valid GENI URN.
    """
    try:
        parsed = asCryptography(cert)
    except (TypeError, ValueError):
        raise TrustError(FORBIDDEN, "the client certificate could not be read") from None
    return Caller(urnFromCertificate(parsed), parsed)
