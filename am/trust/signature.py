# -*- test-case-name: tests.test_trust_verifier -*-
"""
XML-DSig signature checks with python-xmlsec, keyed by a certificate we have
already chained to the GENI roots.

libxmlsec1 1.2 accepts a signature by an untrusted key when the signature
carries a C{KeyValue} before the genuine certificate, and every xmlsec build
trusts OpenSSL's default CA paths.  So xmlsec never chooses the key here: the
caller picks the signer certificate from C{X509Data}, checks its chain
against only the configured roots (L{am.trust.certs.ChainVerifier}), and
this module hands xmlsec exactly that certificate's public key.  With a key
preset, xmlsec does not read C{KeyInfo} at all (and only C{X509} key data is
enabled in any case), so the key that verified the signature I{is} the key of
the certificate whose chain was checked.

The algorithms a signature may use are restricted to canonicalisation,
enveloped-signature, SHA digests and RSA/ECDSA signature methods: no XSLT,
XPath or HMAC.
"""

from __future__ import annotations

import base64
import binascii

import xmlsec
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from lxml import etree

from am.trust._lru import LRU
from am.trust.credential import DSIG, MAX_SIGNATURES
from am.trust.errors import BADARGS, FORBIDDEN, TrustError

_C = xmlsec.constants

_CANONICAL = (_C.TransformInclC14N, _C.TransformExclC14N, _C.TransformInclC14N11)

SIGNATURE_TRANSFORMS = (
    *_CANONICAL,
    _C.TransformRsaSha1,
    _C.TransformRsaSha256,
    _C.TransformRsaSha384,
    _C.TransformRsaSha512,
    _C.TransformEcdsaSha256,
    _C.TransformEcdsaSha384,
    _C.TransformEcdsaSha512,
)

REFERENCE_TRANSFORMS = (
    *_CANONICAL,
    _C.TransformEnveloped,
    _C.TransformSha1,
    _C.TransformSha256,
    _C.TransformSha384,
    _C.TransformSha512,
)

_X509_CERT = f"{{{DSIG}}}KeyInfo/{{{DSIG}}}X509Data/{{{DSIG}}}X509Certificate"

# Decoded certificates by their exact base64 text: authorities sign many
# credentials with the same certificates.
_decoded: LRU[str, x509.Certificate] = LRU(512)


def _decode(text: str) -> x509.Certificate:
    der = base64.b64decode("".join(text.split()), validate=True)
    return x509.load_der_x509_certificate(der)


def signerCertificates(signature: etree._Element) -> list[x509.Certificate]:
    """
    The certificates in a signature's C{KeyInfo/X509Data}, in order.

    @raise TrustError: (FORBIDDEN) if there is none, (BADARGS) if one does
        not decode.
    """
    certs: list[x509.Certificate] = []
    for element in signature.findall(_X509_CERT):
        if len(certs) >= MAX_SIGNATURES:
            raise TrustError(BADARGS, "a signature carries too many certificates")
        if len(element):
            raise TrustError(BADARGS, "<X509Certificate> must contain only base64")
        text = element.text or ""
        try:
            certs.append(_decoded.memo(text, lambda: _decode(text)))
        except (binascii.Error, ValueError):
            raise TrustError(
                BADARGS, "a signature's X509Certificate does not decode"
            ) from None
    if not certs:
        raise TrustError(
            FORBIDDEN, "signature carries no X509 certificate to identify its signer"
        )
    return certs


class SignatureChecker:
    """
    Verify XML-DSig signatures with a given certificate's key.

    The public key of each certificate is loaded into xmlsec once and kept:
    loading costs far more than verifying.  Only the public key is loaded
    (no certificate data), so xmlsec has nothing to check but the signature.
    """

    cacheSize = 256

    def __init__(self) -> None:
        self._keys: LRU[x509.Certificate, xmlsec.Key] = LRU(self.cacheSize)

    def _key(self, cert: x509.Certificate) -> xmlsec.Key:
        return self._keys.memo(
            cert,
            lambda: xmlsec.Key.from_memory(
                cert.public_key().public_bytes(
                    serialization.Encoding.DER,
                    serialization.PublicFormat.SubjectPublicKeyInfo,
                ),
                _C.KeyDataFormatDer,
            ),
        )

    def verify(
        self, signature: etree._Element, signer: x509.Certificate, what: str
    ) -> None:
        """
        Check that C{signature} is a valid signature by C{signer}'s key.

        @param what: names the signature in error messages.
        @raise TrustError: (FORBIDDEN) if it is not.
        """
        context = xmlsec.SignatureContext()
        context.set_enabled_key_data([_C.KeyDataX509])
        for transform in SIGNATURE_TRANSFORMS:
            context.enable_signature_transform(transform)
        for transform in REFERENCE_TRANSFORMS:
            context.enable_reference_transform(transform)
        try:
            context.key = self._key(signer)
        except Exception:
            raise TrustError(
                FORBIDDEN, f"{what}: the signer's key type is not supported"
            ) from None
        try:
            context.verify(signature)
        except xmlsec.Error:
            raise TrustError(
                FORBIDDEN,
                f"{what}: the signature does not verify with the signer's "
                "certificate (the document was changed after signing, or was "
                "signed by another key)",
            ) from None
