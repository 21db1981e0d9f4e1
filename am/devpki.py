# -*- test-case-name: tests.test_ctl_config -*-
"""
A development certificate authority for C{marvinctld --demo} and for tests.

Small on purpose: one CA, a TLS server certificate for localhost and client
certificates for the demo's admin, user and node. It is not a production CA
(no revocation, no serial bookkeeping); the GENI trust layer has its own
authority for GENI-shaped certificates.
"""

from __future__ import annotations

import datetime
import hashlib
import ipaddress
import os
from typing import Iterable, Optional

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

#: Long enough for a demo directory to keep working; short enough to be obviously not production.
VALIDITY = datetime.timedelta(days=825)


@attrs.frozen
class Issued:
    """
    A certificate and its private key.
    """

    certificate: x509.Certificate
    key: rsa.RSAPrivateKey

    def certificatePEM(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def keyPEM(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )

    @property
    def fingerprint(self) -> str:
        """
        What the REST face (and nginx's C{$ssl_client_fingerprint}) calls the
        certificate: SHA-1 of the DER, 40 lowercase hex digits.
        """
        return fingerprint(self.certificate)


def fingerprint(certificate: x509.Certificate) -> str:
    """
    SHA-1 of the DER encoding as 40 lowercase hex digits.
    """
    return hashlib.sha1(certificate.public_bytes(serialization.Encoding.DER)).hexdigest()


def _newKey() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _name(commonName: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Marvin development CA"),
            x509.NameAttribute(NameOID.COMMON_NAME, commonName),
        ]
    )


def makeCA(commonName: str = "Marvin development CA") -> Issued:
    """
    A self-signed CA certificate.
    """
    key = _newKey()
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(commonName))
        .issuer_name(_name(commonName))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True,
                crl_sign=True, encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .sign(key, hashes.SHA256())
    )
    return Issued(certificate, key)


def issue(
    ca: Issued,
    commonName: str,
    server: bool = False,
    dnsNames: Iterable[str] = (),
    addresses: Iterable[str] = (),
    uris: Iterable[str] = (),
) -> Issued:
    """
    A leaf certificate signed by C{ca}: a TLS server certificate when C{server}
    (names go into the subjectAltName, which is what clients check), otherwise
    a client certificate.
    """
    key = _newKey()
    now = datetime.datetime.now(datetime.timezone.utc)
    names: list[x509.GeneralName] = [x509.DNSName(n) for n in dnsNames]
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in addresses]
    names += [x509.UniformResourceIdentifier(u) for u in uris]
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(commonName))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + VALIDITY)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca.key.public_key()), critical=False
        )
    )
    if names:
        builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
    return Issued(builder.sign(ca.key, hashes.SHA256()), key)


def save(issued: Issued, certificatePath: str, keyPath: str) -> None:
    """
    Write a certificate and its key (the key readable by the owner only).
    """
    with open(certificatePath, "wb") as f:
        f.write(issued.certificatePEM())
    fd = os.open(keyPath, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(issued.keyPEM())


def load(certificatePath: str, keyPath: str) -> Issued:
    """
    Read back what L{save} wrote.
    """
    with open(certificatePath, "rb") as f:
        certificate = x509.load_pem_x509_certificate(f.read())
    with open(keyPath, "rb") as f:
        key = serialization.load_pem_private_key(f.read(), password=None)
    return Issued(certificate, key)  # type: ignore[arg-type]


@attrs.frozen
class DemoPKI:
    """
    The demo's files: C{paths[name] = (certificate, key)} for C{ca}, C{server},
    C{admin}, C{user} and C{node}, and the client certificates' fingerprints.
    """

    directory: str
    paths: dict[str, tuple[str, str]]
    fingerprints: dict[str, str]
    created: bool

    def certificate(self, name: str) -> str:
        return self.paths[name][0]

    def key(self, name: str) -> str:
        return self.paths[name][1]


DEMO_CLIENTS = ("admin", "user", "node")


def ensureDemoPKI(directory: str, nodeid: str = "1", serverNames: Optional[Iterable[str]] = None) -> DemoPKI:
    """
    Make the demo CA and its certificates in C{directory} on first use and
    reuse them afterwards, so the printed curl commands keep working across
    restarts. A partial set (say, a deleted key) is remade from scratch.
    """
    os.makedirs(directory, mode=0o700, exist_ok=True)
    names = ("ca", "server") + DEMO_CLIENTS
    paths = {
        n: (os.path.join(directory, f"{n}.pem"), os.path.join(directory, f"{n}.key")) for n in names
    }
    complete = all(os.path.exists(p) for pair in paths.values() for p in pair)
    issued: dict[str, Issued] = {}
    if complete:
        for name in DEMO_CLIENTS:
            issued[name] = load(*paths[name])
    else:
        ca = makeCA()
        issued["ca"] = ca
        issued["server"] = issue(
            ca, "localhost", server=True,
            dnsNames=list(serverNames or ("localhost",)), addresses=("127.0.0.1", "::1"),
        )
        issued["admin"] = issue(ca, "Marvin demo admin")
        issued["user"] = issue(ca, "Marvin demo user")
        issued["node"] = issue(ca, f"Node {nodeid}")
        for name in names:
            save(issued[name], *paths[name])
    return DemoPKI(
        directory=directory,
        paths=paths,
        fingerprints={n: issued[n].fingerprint for n in DEMO_CLIENTS},
        created=not complete,
    )
