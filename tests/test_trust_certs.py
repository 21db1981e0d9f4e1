"""
Tests for L{am.trust.certs}: GENI identities in certificates and chain
checks against only the configured roots.
"""

from __future__ import annotations

import os

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from OpenSSL import crypto
from twisted.trial.unittest import SynchronousTestCase

from am.devtools.pki import certify, newKey
from am.trust.certs import (
    ChainVerifier,
    callerFromCertificate,
    keyIdentifiers,
    loadRoots,
    orderChain,
    urnFromCertificate,
)
from am.trust.errors import FORBIDDEN, TrustError
from tests.trust_helpers import HOUR, NOW, pki


class URNFromCertificateTests(SynchronousTestCase):
    """
    L{urnFromCertificate} names the holder of a certificate by the GENI URN
    in its subjectAltName, and refuses certificates that name nobody.
    """

    def test_cryptographyPyOpenSSLAndPEM(self) -> None:
        """
        The URN is read from a cryptography certificate, a pyOpenSSL X509
        (what C{getPeerCertificate} returns) and PEM alike; the
        C{urn:uuid} and e-mail next to it are ignored.
        """
        alice = pki().alice
        for form in (
            alice.certificate,
            crypto.X509.from_cryptography(alice.certificate),
            alice.certPEM,
            alice.certPEM.decode(),
        ):
            self.assertEqual(urnFromCertificate(form), "urn:publicid:IDN+geni:marvin+user+alice")

    def assertRefused(self, cert: object, fragment: str) -> None:
        e = self.assertRaises(TrustError, urnFromCertificate, cert)
        self.assertEqual(e.geniCode, FORBIDDEN)
        self.assertIn(fragment, e.message)

    def test_noURN(self) -> None:
        """
        A certificate without a GENI URN is refused, saying so.
        """
        ca = pki().ca
        key = newKey("ec")
        cert = certify(ca, key, "urn:publicid:IDN+x+user+y", "y").certificate
        # Rebuild without the SAN.
        builder = (
            x509.CertificateBuilder()
            .subject_name(cert.subject)
            .issuer_name(cert.issuer)
            .public_key(key.public_key())
            .serial_number(1)
            .not_valid_before(cert.not_valid_before_utc)
            .not_valid_after(cert.not_valid_after_utc)
        )
        bare = builder.sign(ca.key, hashes.SHA256())  # type: ignore[arg-type]
        self.assertRefused(bare, "no GENI URN")

    def test_malformedURN(self) -> None:
        """
        A URN-looking SAN that does not parse is refused.
        """
        key = newKey("ec")
        ca = pki().ca
        good = certify(ca, key, "urn:publicid:IDN+x+user+y", "y")
        builder = (
            x509.CertificateBuilder()
            .subject_name(good.certificate.subject)
            .issuer_name(ca.certificate.subject)
            .public_key(key.public_key())
            .serial_number(2)
            .not_valid_before(good.certificate.not_valid_before_utc)
            .not_valid_after(good.certificate.not_valid_after_utc)
            .add_extension(
                x509.SubjectAlternativeName(
                    [x509.UniformResourceIdentifier("urn:publicid:IDN+x+user")]
                ),
                critical=False,
            )
        )
        self.assertRefused(builder.sign(ca.key, hashes.SHA256()), "malformed")  # type: ignore[arg-type]

    def test_unreadable(self) -> None:
        """
        Garbage is refused as unreadable, not with a traceback.
        """
        self.assertRefused(b"-----BEGIN CERTIFICATE-----\nxx\n-----END CERTIFICATE-----\n", "could not be read")
        self.assertRefused(42, "could not be read")

    def test_caller(self) -> None:
        """
        L{callerFromCertificate} keeps the URN and the certificate.
        """
        caller = callerFromCertificate(pki().bob.certPEM)
        self.assertEqual(caller.urn, pki().bob.urn)
        self.assertEqual(caller.certificate, pki().bob.certificate)
        self.assertEqual(str(caller), pki().bob.urn)


class ChainVerifierTests(SynchronousTestCase):
    """
    L{ChainVerifier} accepts certificates that chain to its roots, and only
    those.
    """

    def setUp(self) -> None:
        self.p = pki()
        self.verifier = ChainVerifier([self.p.ca.certificate])

    def test_direct(self) -> None:
        """
        A user certificate issued by the root verifies; the window returned
        is the intersection of the chain's validity.
        """
        window = self.verifier.verify(self.p.alice.certificate, [], NOW, "x")
        self.assertEqual(window.notAfter, self.p.alice.certificate.not_valid_after_utc.timestamp())
        self.assertTrue(window.covers(NOW))

    def test_root(self) -> None:
        """
        The root itself verifies (authorities sign with their root).
        """
        self.verifier.verify(self.p.ca.certificate, [], NOW, "x")

    def test_intermediate(self) -> None:
        """
        A certificate issued by an intermediate verifies when the
        intermediate is presented, not otherwise.
        """
        self.verifier.verify(self.p.carol.certificate, [self.p.sub.certificate], NOW, "x")
        e = self.assertRaises(
            TrustError, self.verifier.verify, self.p.carol.certificate, [], NOW, "carol"
        )
        self.assertEqual(e.geniCode, FORBIDDEN)
        self.assertIn("carol: certificate does not chain to a trusted root", e.message)

    def test_trustedIntermediate(self) -> None:
        """
        An operator may trust an intermediate authority alone.
        """
        verifier = ChainVerifier([self.p.sub.certificate])
        verifier.verify(self.p.carol.certificate, [], NOW, "x")
        self.assertRaises(TrustError, verifier.verify, self.p.alice.certificate, [], NOW, "x")

    def test_untrusted(self) -> None:
        """
        Certificates of another CA are refused, even with that CA presented
        as an intermediate, and so is an impostor root with the trusted
        root's name.
        """
        for leaf, rest in [
            (self.p.mallory.certificate, []),
            (self.p.mallory.certificate, [self.p.evil.certificate]),
            (self.p.impostor.certificate, []),
        ]:
            self.assertRaises(TrustError, self.verifier.verify, leaf, rest, NOW, "x")

    def test_systemStoreIgnored(self) -> None:
        """
        The verifier trusts nothing from the system CA store, even when
        C{SSL_CERT_FILE} points at our untrusted CA.
        """
        path = self.mktemp()
        with open(path, "wb") as f:
            f.write(self.p.evil.certPEM)
        self.patch(os, "environ", {**os.environ, "SSL_CERT_FILE": path})
        verifier = ChainVerifier([self.p.ca.certificate])
        self.assertRaises(TrustError, verifier.verify, self.p.mallory.certificate, [], NOW, "x")

    def test_time(self) -> None:
        """
        Verification happens at the time given: before a certificate's
        start or after its end it is refused, and a cached success is not
        reused outside its window.
        """
        self.verifier.verify(self.p.alice.certificate, [], NOW, "x")
        late = self.p.alice.certificate.not_valid_after_utc.timestamp() + HOUR
        e = self.assertRaises(TrustError, self.verifier.verify, self.p.alice.certificate, [], late, "x")
        self.assertIn("expired", e.message)
        early = NOW - 2 * HOUR
        self.assertRaises(TrustError, self.verifier.verify, self.p.alice.certificate, [], early, "x")

    def test_noRoots(self) -> None:
        """
        A verifier that trusts nobody is a configuration error.
        """
        self.assertRaises(ValueError, ChainVerifier, [])


class LoadRootsTests(SynchronousTestCase):
    """
    L{loadRoots} reads PEM files and gcf-style directories of them.
    """

    def test_fileAndDirectory(self) -> None:
        """
        Files are read whole (several certificates each); directories
        contribute their C{.pem} and C{.crt} files holding certificates;
        other files (keys, READMEs) are ignored.
        """
        p = pki()
        d = self.mktemp()
        os.makedirs(d)
        with open(os.path.join(d, "a.pem"), "wb") as f:
            f.write(p.ca.certPEM + p.sub.certPEM)
        with open(os.path.join(d, "b.crt"), "wb") as f:
            f.write(p.evil.certPEM)
        with open(os.path.join(d, "README"), "w") as f:
            f.write("not a cert")
        with open(os.path.join(d, "ca-key.pem"), "wb") as f:
            f.write(p.ca.keyPEM)
        single = os.path.join(d, "a.pem")
        self.assertEqual(len(loadRoots([d])), 3)
        self.assertEqual(loadRoots([single]), [p.ca.certificate, p.sub.certificate])

    def test_errors(self) -> None:
        """
        A file without certificates, or no roots at all, is an error naming
        the file.
        """
        d = self.mktemp()
        os.makedirs(d)
        bad = os.path.join(d, "bad.pem")
        with open(bad, "w") as f:
            f.write("nothing here")
        e = self.assertRaises(ValueError, loadRoots, [bad])
        self.assertIn("bad.pem", str(e))
        empty = os.path.join(d, "empty")
        os.makedirs(empty)
        self.assertRaises(ValueError, loadRoots, [empty])


class KeyTests(SynchronousTestCase):
    """
    L{keyIdentifiers} and L{orderChain}.
    """

    def test_keyIdentifiers(self) -> None:
        """
        The key id of a certificate is the SHA-1 of its public key (and
        its subjectKeyIdentifier, which is the same for ours).
        """
        cert = pki().alice.certificate
        ski = x509.SubjectKeyIdentifier.from_public_key(cert.public_key()).digest.hex()
        self.assertEqual(keyIdentifiers(cert), frozenset({ski}))

    def test_orderChain(self) -> None:
        """
        The end certificate is the one that issued none of the others,
        wherever it appears.
        """
        p = pki()
        carol, sub, ca = p.carol.certificate, p.sub.certificate, p.ca.certificate
        self.assertEqual(orderChain([sub, ca, carol]), (carol, [sub, ca]))
        self.assertEqual(orderChain([carol, sub]), (carol, [sub]))
        self.assertEqual(orderChain([ca]), (ca, []))
        self.assertRaises(ValueError, orderChain, [])
        self.assertRaises(ValueError, orderChain, [ca] * 9)
