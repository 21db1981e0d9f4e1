# -*- test-case-name: tests.test_trust_tls -*-
"""
Transport identity for the GENI face: a TLS listener that requires a client
certificate chained to the configured GENI roots, and the caller it names.

The listener is built by hand because the C{ssl:} server endpoint string
cannot require client certificates::

    options = serverTLSOptions(certPEM, keyPEM, rootPEMs)
    endpoint = SSL4ServerEndpoint(reactor, 8001, options)

C{trustRoot} holds the GENI roots only (never the system CA store); Twisted
then asks OpenSSL to require and verify the peer certificate.  HTTP/2 is not
offered: under H2 the request transport has no C{getPeerCertificate}.
"""

from __future__ import annotations

from typing import Any, Iterable

import OpenSSL
from cryptography import x509
from cryptography.hazmat.primitives.serialization import (
    Encoding,
    PublicFormat,
    load_pem_private_key,
)
from OpenSSL import crypto
from twisted.internet.ssl import (
    Certificate,
    CertificateOptions,
    TLSVersion,
    trustRootFromCertificates,
)

from am.trust.certs import (
    Caller,
    callerFromCertificate,
    loadCertificates,
    urnFromCertificate,
)
from am.trust.errors import FORBIDDEN, TrustError

__all__ = ["serverTLSOptions", "callerFromRequest", "urnFromCertificate", "Caller"]


def _roots(rootPEMs: object) -> list[x509.Certificate]:
    if isinstance(rootPEMs, (bytes, str)):
        return loadCertificates(rootPEMs)
    roots: list[x509.Certificate] = []
    for item in rootPEMs:  # type: ignore[attr-defined]
        if isinstance(item, x509.Certificate):
            roots.append(item)
        else:
            roots.extend(loadCertificates(item))
    return roots


def serverTLSOptions(
    certPEM: bytes | str,
    keyPEM: bytes | str,
    rootPEMs: bytes | str | Iterable[bytes | str | x509.Certificate],
) -> CertificateOptions:
    """
    TLS options for the GENI listener.

    @param certPEM: the AM's server certificate, optionally followed by its
        issuers (sent to clients as the chain).
    @param keyPEM: the AM's private key (unencrypted PEM).
    @param rootPEMs: the GENI trust roots: PEM data holding one or more
        certificates, or an iterable of PEM blobs or certificates.
    @raise ValueError: if the key does not match the certificate, or no root
        is given.
    """
    certs = loadCertificates(certPEM)
    if isinstance(keyPEM, str):
        keyPEM = keyPEM.encode("ascii")
    key = load_pem_private_key(keyPEM, password=None)
    spki = (Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    if certs[0].public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise ValueError("the private key does not match the server certificate")
    roots = _roots(rootPEMs)
    if not roots:
        raise ValueError("no GENI trust roots given")
    options = CertificateOptions(
        privateKey=_forOpenSSL(key),
        certificate=_forOpenSSL(certs[0]),
        extraCertChain=[_forOpenSSL(c) for c in certs[1:]] or None,
        trustRoot=trustRootFromCertificates(
            [Certificate(crypto.X509.from_cryptography(r)) for r in roots]
        ),
        raiseMinimumTo=TLSVersion.TLSv1_2,
        # A client that comes back with its session ticket (jFed's Java
        # client, or any client keeping its TLS session) resumes without a
        # full handshake; the client certificate verified in the first
        # handshake travels, sealed, in the ticket. Stateless tickets only:
        # no server-side session cache (Twisted warns about OpenSSL's).
        enableSessionTickets=True,
    )
    # TLS 1.3: our order wins (Twisted asks OpenSSL for the server's
    # preference) and AES-128-GCM with SHA-256 comes first, the suite every
    # TLS 1.3 client must offer: its key schedule (SHA-256, with the CPU's
    # SHA instructions) costs the server less per full handshake than the
    # SHA-384 of the AES-256 suite Python and Java clients list first.
    # (pyOpenSSL before 25.2 cannot set them: OpenSSL's default order then.)
    context = options.getContext()
    if hasattr(context, "set_tls13_ciphersuites"):
        context.set_tls13_ciphersuites(TLS13_SUITES)
    return options


TLS13_SUITES = b"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"


# pyOpenSSL 24.3 takes cryptography keys and certificates for a context and
# deprecates its own; older releases need their own.
_TAKES_CRYPTOGRAPHY = tuple(int(p) for p in OpenSSL.__version__.split(".")[:2]) >= (24, 3)


def _forOpenSSL(thing: Any) -> Any:
    if _TAKES_CRYPTOGRAPHY:
        return thing
    if isinstance(thing, x509.Certificate):
        return crypto.X509.from_cryptography(thing)
    return crypto.PKey.from_cryptography_key(thing)


def callerFromRequest(request: object) -> Caller:
    """
    Who sent this request: the GENI URN in the TLS client certificate.

    Fails closed: a request that did not come over our TLS listener (no
    C{getPeerCertificate} on its transport, as with a plain listener or
    HTTP/2), with no peer certificate, or with a certificate that carries no
    valid GENI URN is refused.

    @param request: a L{twisted.web.iweb.IRequest}.
    @raise TrustError: (FORBIDDEN) with a message saying which of these it
        was.
    """
    transport = getattr(request, "transport", None)
    getPeer = getattr(transport, "getPeerCertificate", None)
    if getPeer is None:
        raise TrustError(
            FORBIDDEN, "no TLS client certificate: call over HTTPS with your GENI certificate"
        )
    try:
        peer = getPeer()
    except Exception:
        peer = None
    if peer is None:
        raise TrustError(
            FORBIDDEN, "no TLS client certificate: call over HTTPS with your GENI certificate"
        )
    return callerFromCertificate(peer)
