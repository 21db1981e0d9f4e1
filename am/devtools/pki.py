# -*- test-case-name: tests.test_trust_authority -*-
"""
Keys and certificates for the development authority (see
L{am.devtools.authority}): a clearinghouse CA, the AM's server certificate,
user and slice certificates with GENI URNs, laid out as files in one
directory.  Not a production authority.
"""

from __future__ import annotations

import datetime
import os
import uuid
from typing import Sequence

from attrs import frozen
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from am.trust.certs import certificatePEM, loadCertificates, urnFromCertificate
from am.trust.urn import parseURN

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey

_DAY = datetime.timedelta(days=1)
_SKEW = datetime.timedelta(minutes=5)


@frozen
class Identity:
    """
    A certified principal: an authority, the AM, a user or a slice.

    @ivar urn: its GENI URN.
    @ivar certificate: its certificate.
    @ivar key: its private key.
    @ivar issuers: the certificates above it, nearest first (empty for the
        CA); with C{certificate} they form its GID.
    """

    urn: str
    certificate: x509.Certificate
    key: PrivateKey
    issuers: tuple[x509.Certificate, ...] = ()

    @property
    def certPEM(self) -> bytes:
        """
        The certificate alone, PEM.
        """
        return certificatePEM(self.certificate)

    @property
    def chainPEM(self) -> bytes:
        """
        The certificate then its issuers, PEM: the GID that goes in
        credentials and the chain a TLS client presents.
        """
        return b"".join(certificatePEM(c) for c in (self.certificate, *self.issuers))

    @property
    def keyPEM(self) -> bytes:
        """
        The private key, unencrypted PKCS#8 PEM.
        """
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    @property
    def authority(self) -> str:
        """
        The authority part of its URN.
        """
        return parseURN(self.urn).authority

    def save(self, directory: str | os.PathLike[str], stem: str) -> None:
        """
        Write C{<stem>-cert.pem} (the GID chain) and C{<stem>-key.pem}
        (mode 0600) in C{directory}.
        """
        os.makedirs(directory, exist_ok=True)
        base = os.path.join(os.fspath(directory), stem)
        with open(base + "-cert.pem", "wb") as f:
            f.write(self.chainPEM)
        fd = os.open(base + "-key.pem", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(self.keyPEM)


def loadIdentity(directory: str | os.PathLike[str], stem: str) -> Identity:
    """
    Read an identity written by L{Identity.save}.

    @raise FileNotFoundError: if it is not there.
    @raise ValueError: if the files do not hold a certificate with a GENI
        URN and its key.
    """
    base = os.path.join(os.fspath(directory), stem)
    with open(base + "-cert.pem", "rb") as f:
        certs = loadCertificates(f.read())
    with open(base + "-key.pem", "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    if not isinstance(key, (rsa.RSAPrivateKey, ec.EllipticCurvePrivateKey)):
        raise ValueError(f"{base}-key.pem: unsupported key type")
    return Identity(urnFromCertificate(certs[0]), certs[0], key, tuple(certs[1:]))


def newKey(kind: str = "rsa") -> PrivateKey:
    """
    A fresh key: RSA 2048 (what GENI tools expect) or EC P-256 (fast, for
    slice certificates whose keys are never used).
    """
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _utcnow(now: float | None) -> datetime.datetime:
    if now is None:
        return datetime.datetime.now(datetime.timezone.utc)
    return datetime.datetime.fromtimestamp(now, datetime.timezone.utc)


def certify(
    issuer: Identity | None,
    key: PrivateKey,
    urn: str,
    commonName: str,
    *,
    ca: bool = False,
    days: int = 365,
    dnsNames: Sequence[str] = (),
    email: str | None = None,
    serverAuth: bool = False,
    now: float | None = None,
) -> Identity:
    """
    Issue a certificate for C{urn} as GENI clearinghouses do: the URN and a
    C{urn:uuid} in subjectAltName, subject and authority key identifiers.

    @param issuer: the signing identity, or C{None} for a self-signed root.
    """
    parseURN(urn)
    start = _utcnow(now)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, commonName[:64])])
    names: list[x509.GeneralName] = [
        x509.UniformResourceIdentifier(urn),
        x509.UniformResourceIdentifier(f"urn:uuid:{uuid.uuid4()}"),
    ]
    names += [x509.DNSName(n) for n in dnsNames]
    if email:
        names.append(x509.RFC822Name(email))
    signer = key if issuer is None else issuer.key
    issuerName = subject if issuer is None else issuer.certificate.subject
    issuerKey = key.public_key() if issuer is None else issuer.certificate.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuerName)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start - _SKEW)
        .not_valid_after(start + days * _DAY)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuerKey),  # type: ignore[arg-type]
            critical=False,
        )
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=not ca and isinstance(key, rsa.RSAPrivateKey),
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=ca,
                crl_sign=ca,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    )
    if not ca:
        usages = [ExtendedKeyUsageOID.CLIENT_AUTH]
        if serverAuth:
            usages.insert(0, ExtendedKeyUsageOID.SERVER_AUTH)
        builder = builder.add_extension(x509.ExtendedKeyUsage(usages), critical=False)
    cert = builder.sign(signer, hashes.SHA256())  # type: ignore[arg-type]
    issuers: tuple[x509.Certificate, ...] = ()
    if issuer is not None:
        issuers = (issuer.certificate, *issuer.issuers)
    return Identity(urn, cert, key, issuers)
