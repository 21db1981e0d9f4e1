"""
Tests for L{am.trust.verifier} and L{am.trust.signature}: every way a
credential can fail to be genuine, and the ways it can be.
"""

from __future__ import annotations

import functools

import xmlsec
from cryptography.hazmat.primitives import serialization
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree
from twisted.trial.unittest import SynchronousTestCase

from am.devtools import authority
from am.devtools.issue import (
    DSIG,
    fillPrivilegeCredential,
    isoTime,
    newDocument,
    signAs,
    signatureTemplate,
)
from am.trust._lru import LRU
from am.trust.credential import XML_ID, parseDocument
from am.trust.errors import BADARGS, EXPIRED, FORBIDDEN, TrustError
from tests.trust_helpers import (
    HOUR,
    NOW,
    attackerKey,
    certData,
    keyValue,
    makeTrust,
    pki,
    resign,
    sliceCredential,
    unsign,
)


def validBy(document: str, key: object) -> bool:
    """
    Is C{document}'s first signature valid by C{key}'s public half?
    """
    root = parseDocument(document.encode())
    context = xmlsec.SignatureContext()
    context.key = xmlsec.Key.from_memory(
        key.public_key().public_bytes(  # type: ignore[attr-defined]
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        xmlsec.constants.KeyDataFormatPem,
    )
    try:
        context.verify(root.find("signatures")[0])  # type: ignore[index]
    except xmlsec.Error:
        return False
    return True


class VerifierTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.p = pki()
        self.trust, self.clock = makeTrust()

    def assertRefused(self, document: object, code: int, fragment: str) -> TrustError:
        e = self.assertRaises(TrustError, self.trust.verifyCredential, document)
        self.assertEqual((e.geniCode, fragment in e.message), (code, True), e.message)
        self.assertNotIn("-----BEGIN", e.message)
        self.assertNotIn("<signed-credential xmlns", e.message)
        return e


class GenuineTests(VerifierTestCase):
    """
    Credentials from marvin-authority verify.
    """

    def test_sliceCredential(self) -> None:
        """
        A slice credential verifies; the result names the signer and the
        expiry.
        """
        verified = self.trust.verifyCredential(sliceCredential(lifetime=2 * HOUR))
        self.assertEqual(verified.signerURN, self.p.ca.urn)
        self.assertEqual(verified.expires, NOW + 2 * HOUR)
        self.assertFalse(verified.delegated)

    def test_sha1(self) -> None:
        """
        RSA-SHA1 signatures, what gcf's clearinghouse makes, verify.
        """
        self.trust.verifyCredential(sliceCredential(digest="sha1"))

    def test_gcfShapedKeyInfo(self) -> None:
        """
        gcf's signature template (C{X509SubjectName} and
        C{X509IssuerSerial} next to the certificate, then the signer's own
        C{KeyValue}) verifies.
        """
        ca = self.p.ca
        data = certData(ca)
        subject = etree.Element(f"{{{DSIG}}}X509SubjectName")
        subject.text = ca.certificate.subject.rfc4514_string()
        data.insert(0, subject)
        data.insert(1, etree.Element(f"{{{DSIG}}}X509IssuerSerial"))
        self.trust.verifyCredential(resign(sliceCredential(), ca.key, [data, keyValue(ca.key)], "sha1"))

    def test_subAuthority(self) -> None:
        """
        An intermediate authority may sign for its own namespace (its chain
        comes in the signature), and the root for any sub-namespace.
        """
        p = self.p
        self.trust.verifyCredential(authority.issueSliceCredential(p.sub, p.carol, p.s3, now=NOW))
        self.trust.verifyCredential(authority.issueSliceCredential(p.ca, p.carol, p.s3, now=NOW))


class SignatureRefusalTests(VerifierTestCase):
    """
    Unsigned, tampered, untrusted and forged credentials are refused.
    """

    def test_unsigned(self) -> None:
        """
        A credential without signatures is refused.
        """
        self.assertRefused(unsign(sliceCredential()), FORBIDDEN, "not signed")

    def test_tamperedAfterSigning(self) -> None:
        """
        Changing a privilege, the expiry or the target after signing breaks
        the signature.
        """
        good = sliceCredential(lifetime=HOUR)
        expires = isoTime(NOW + HOUR)
        s1gid = self.p.s1.certPEM.decode()
        for old, new in [
            ("<name>info</name>", "<name>*</name>"),
            (f"<expires>{expires}</expires>", "<expires>2099-01-01T00:00:00Z</expires>"),
            ("<serial>", "<serial>1"),
        ]:
            self.assertIn(old, good)
            self.assertRefused(good.replace(old, new), FORBIDDEN, "does not verify")
        retarget = good.replace(s1gid, self.p.s2.certPEM.decode()).replace(
            self.p.s1.urn, self.p.s2.urn
        )
        self.assertRefused(retarget, FORBIDDEN, "does not verify")

    def test_untrustedRoot(self) -> None:
        """
        A credential signed by another CA is refused, even for our users
        and slices.
        """
        p = self.p
        forged = authority.issueSliceCredential(p.evil, p.alice, p.s1, now=NOW)
        self.assertRefused(forged, FORBIDDEN, "does not chain to a trusted root")

    def test_impostorRoot(self) -> None:
        """
        A self-signed CA with our CA's name and URN but another key is
        refused.
        """
        p = self.p
        forged = authority.issueSliceCredential(p.impostor, p.alice, p.s1, now=NOW)
        self.assertRefused(forged, FORBIDDEN, "does not chain to a trusted root")

    def test_keyValueBeforeGenuineCertificate(self) -> None:
        """
        A signature by an attacker's key, carrying the attacker's
        C{KeyValue} before the genuine CA certificate, is refused (the
        forgery libxmlsec1 1.2 accepts).
        """
        key = attackerKey()
        forged = resign(sliceCredential(), key, [keyValue(key), certData(self.p.ca)])
        self.assertTrue(validBy(forged, key), "the forgery is a valid signature by the attacker")
        self.assertRefused(forged, FORBIDDEN, "does not verify")

    def test_keyValueAfterGenuineCertificate(self) -> None:
        """
        The same forgery with C{X509Data} first is refused too.
        """
        key = attackerKey()
        forged = resign(sliceCredential(), key, [certData(self.p.ca), keyValue(key)])
        self.assertTrue(validBy(forged, key))
        self.assertRefused(forged, FORBIDDEN, "does not verify")

    def test_trustedUserKeyWithAuthorityCertificate(self) -> None:
        """
        A trusted user signing with her own key cannot borrow the CA's
        certificate: with her C{KeyValue} and the CA certificate, the
        signature does not verify with the CA's key; with her own
        certificate too, she is the signer and no authority.
        """
        p = self.p
        borrowed = resign(sliceCredential(), p.alice.key, [keyValue(p.alice.key), certData(p.ca)])
        self.assertTrue(validBy(borrowed, p.alice.key))
        self.assertRefused(borrowed, FORBIDDEN, "does not verify")
        own = resign(sliceCredential(), p.alice.key, [certData(p.ca, p.alice)])
        self.assertRefused(own, FORBIDDEN, f"signed by {p.alice.urn}, which is not an authority")

    def test_selfSignedForgeryWithKeyValue(self) -> None:
        """
        A signature by a self-signed certificate (with its C{KeyValue},
        both orders) is refused: its certificate does not chain.
        """
        impostor = self.p.impostor
        for order in ([keyValue(impostor.key), certData(impostor)], [certData(impostor), keyValue(impostor.key)]):
            forged = resign(sliceCredential(), impostor.key, order)
            self.assertRefused(forged, FORBIDDEN, "does not chain to a trusted root")

    def test_keyValueOnly(self) -> None:
        """
        A signature that identifies its key only by C{KeyValue} is refused:
        there is no certificate to check.
        """
        key = attackerKey()
        self.assertRefused(resign(sliceCredential(), key, [keyValue(key)]), FORBIDDEN, "no X509 certificate")

    def test_genuineKeyValueMismatch(self) -> None:
        """
        The genuine CA's signature with an attacker's certificate in front
        (chained to nothing) is refused: the signer is whoever the first
        end certificate names, and it must chain.
        """
        forged = resign(sliceCredential(), self.p.ca.key, [certData(self.p.mallory, self.p.ca)])
        self.assertRefused(forged, FORBIDDEN, "does not chain")

    def test_wrapped(self) -> None:
        """
        A genuine signed credential hidden inside an unsigned one (so that
        its signature verifies) does not sign the outer one.
        """
        p = self.p
        genuine = parseDocument(sliceCredential().encode())
        inner = genuine.find("credential")
        signatures = genuine.find("signatures")
        document, outer = newDocument()
        fillPrivilegeCredential(
            outer, [p.bob.certificate], p.bob.urn, [p.s1.certificate], p.s1.urn,
            NOW + HOUR, [("*", True)],
        )
        etree.SubElement(outer, "extensions").append(inner)  # type: ignore[arg-type]
        document.append(signatures)  # type: ignore[arg-type]
        self.assertRefused(etree.tostring(document), BADARGS, "references no credential")

    def test_xpathTransformRefused(self) -> None:
        """
        A signature (even by the genuine CA) whose reference uses an XPath
        transform to leave the privileges out of the digest is refused,
        though xmlsec with all transforms enabled would accept it with
        extra privileges added.
        """
        root = parseDocument(sliceCredential().encode())
        root.remove(root.find("signatures"))  # type: ignore[arg-type]
        refid = root.find("credential").get(XML_ID)  # type: ignore[union-attr]
        template = signatureTemplate(refid)
        transforms = template.find(f".//{{{DSIG}}}Transforms")
        transform = etree.SubElement(
            transforms, f"{{{DSIG}}}Transform",  # type: ignore[arg-type]
            Algorithm="http://www.w3.org/TR/1999/REC-xpath-19991116",
        )
        etree.SubElement(transform, f"{{{DSIG}}}XPath").text = "not(ancestor-or-self::privileges)"
        etree.SubElement(root, "signatures").append(template)
        root = parseDocument(etree.tostring(root))
        context = xmlsec.SignatureContext()
        context.key = xmlsec.Key.from_memory(self.p.ca.keyPEM, xmlsec.constants.KeyDataFormatPem)
        signature = root.find("signatures")[0]  # type: ignore[index]
        context.sign(signature)
        etree.SubElement(signature, f"{{{DSIG}}}KeyInfo").append(certData(self.p.ca))
        escalated = etree.tostring(root).decode().replace("<name>info</name>", "<name>*</name>")
        self.assertTrue(validBy(escalated, self.p.ca.key))
        self.assertRefused(escalated, FORBIDDEN, "does not verify")

    def test_signedByUser(self) -> None:
        """
        A user cannot issue themselves a slice credential: the innermost
        credential must be signed by an authority over the target.
        """
        p = self.p
        forged = authority.issueCredential(p.alice, p.alice, p.s1, ["*"], now=NOW)
        self.assertRefused(forged, FORBIDDEN, "not an authority for")

    def test_authorityOfOtherNamespace(self) -> None:
        """
        A trusted intermediate authority cannot sign for a namespace above
        or beside its own.
        """
        p = self.p
        forged = authority.issueSliceCredential(p.sub, p.alice, p.s1, now=NOW)
        self.assertRefused(forged, FORBIDDEN, "not an authority for")

    def test_untrustedOwner(self) -> None:
        """
        An owner certificate that does not chain to the roots is refused,
        even in a credential our CA signed.
        """
        p = self.p
        cred = authority.issueCredential(p.ca, p.mallory, p.s1, ["control"], now=NOW)
        self.assertRefused(cred, FORBIDDEN, "owner of the credential")


def delegateAs(
    parent: str, signer: object, to: object, target: object = None,
    privileges: list[tuple[str, bool]] | None = None, expires: float | None = None,
) -> str:
    """
    Delegate C{parent} without the authority's conveniences, so tests can
    make any child they like.
    """
    root = parseDocument(parent.encode())
    cred = root.find("credential")
    p = pki()
    document, child = newDocument(root)
    targetIdentity = target or p.s1
    fillPrivilegeCredential(
        child, [to.certificate, *to.issuers], to.urn,  # type: ignore[attr-defined]
        [targetIdentity.certificate], targetIdentity.urn,  # type: ignore[attr-defined]
        NOW + HOUR if expires is None else expires, privileges or [("control", False)],
    )
    etree.SubElement(child, "parent").append(cred)  # type: ignore[arg-type]
    return signAs(
        document, child.get(XML_ID), signer, previous=list(root.find("signatures"))  # type: ignore[arg-type]
    ).decode()


class DelegationTests(VerifierTestCase):
    """
    Delegated credentials: each parent verified, privileges a subset,
    can_delegate honoured, expiry within the parent's, signed by the
    parent's owner.
    """

    def test_delegated(self) -> None:
        """
        Alice delegates C{control} on s1 to Bob; Bob delegates on to the
        tool.  Both verify.
        """
        p = self.p
        parent = sliceCredential(delegatable=True)
        bobs = authority.delegate(parent, p.alice, p.bob, privileges=["control"], delegatable=True, now=NOW)
        verified = self.trust.verifyCredential(bobs)
        self.assertTrue(verified.delegated)
        self.assertEqual(verified.credential.ownerURN, p.bob.urn)
        self.assertEqual(verified.signerURN, p.alice.urn)
        tools = authority.delegate(bobs, p.bob, p.tool, now=NOW)
        self.assertEqual(
            [c.ownerURN for c in self.trust.verifyCredential(tools).credential.chain()],
            [p.tool.urn, p.bob.urn, p.alice.urn],
        )

    def test_escalation(self) -> None:
        """
        Claiming a privilege the parent lacks (C{*}) is refused.
        """
        p = self.p
        parent = sliceCredential(delegatable=True)
        child = authority.delegate(parent, p.alice, p.bob, privileges=["*"], now=NOW)
        self.assertRefused(child, FORBIDDEN, "claims privilege '*'")

    def test_notDelegatable(self) -> None:
        """
        Delegating a privilege the parent holds but may not delegate is
        refused.
        """
        p = self.p
        child = authority.delegate(sliceCredential(), p.alice, p.bob, privileges=["control"], now=NOW)
        self.assertRefused(child, FORBIDDEN, "does not allow to be delegated")

    def test_outlivesParent(self) -> None:
        """
        A child expiring after its parent is refused.
        """
        p = self.p
        parent = sliceCredential(delegatable=True, lifetime=HOUR)
        child = authority.delegate(parent, p.alice, p.bob, lifetime=2 * HOUR, now=NOW)
        self.assertRefused(child, FORBIDDEN, "expires after its parent")

    def test_notTheOwner(self) -> None:
        """
        Only the parent's owner may delegate it: Bob cannot pass on Alice's
        credential, even claiming her URN with his key.
        """
        p = self.p
        parent = sliceCredential(delegatable=True)
        self.assertRefused(delegateAs(parent, p.bob, p.tool), FORBIDDEN, "does not own its parent")

    def test_otherTarget(self) -> None:
        """
        A child naming another target than its parent is refused.
        """
        p = self.p
        parent = sliceCredential(delegatable=True)
        self.assertRefused(
            delegateAs(parent, p.alice, p.bob, target=p.s2), FORBIDDEN, "different target"
        )

    def test_parentTampered(self) -> None:
        """
        Changing the embedded parent breaks both signatures; the child's is
        checked first.
        """
        p = self.p
        child = authority.delegate(sliceCredential(delegatable=True), p.alice, p.bob, now=NOW)
        tampered = child.replace("<name>info</name>", "<name>sa</name>", 1)
        self.assertNotEqual(tampered, child)
        self.assertRefused(tampered, FORBIDDEN, "does not verify")

    def test_parentUnsigned(self) -> None:
        """
        A delegated credential whose parent's signature is missing is
        refused.
        """
        p = self.p
        child = authority.delegate(sliceCredential(delegatable=True), p.alice, p.bob, now=NOW)
        root = parseDocument(child.encode())
        signatures = root.find("signatures")
        signatures.remove(signatures[1])  # type: ignore[union-attr]
        self.assertRefused(etree.tostring(root), FORBIDDEN, "delegation parent 1 is not signed")

    def test_parentExpired(self) -> None:
        """
        Once the parent expires, the child is refused as expired, naming the
        parent.
        """
        p = self.p
        parent = sliceCredential(delegatable=True, lifetime=HOUR)
        child = delegateAs(parent, p.alice, p.bob, expires=NOW + HOUR)
        self.trust.verifyCredential(child)
        self.clock.advance(HOUR + 1)
        self.assertRefused(child, EXPIRED, "expired at")


class ExpiryAndCacheTests(VerifierTestCase):
    """
    Expiry follows the clock, and the cache never outlives what it cached
    nor lets a changed document through.
    """

    def test_expired(self) -> None:
        """
        A credential is refused as EXPIRED once the clock passes its expiry,
        even after it was cached as genuine.
        """
        cred = sliceCredential(lifetime=HOUR)
        self.trust.verifyCredential(cred)
        self.clock.advance(HOUR)
        self.trust.verifyCredential(cred)
        self.clock.advance(1)
        e = self.assertRefused(cred, EXPIRED, "the credential expired at")
        self.assertIn(isoTime(NOW + HOUR), e.message)

    def test_cached(self) -> None:
        """
        A repeated credential is served from the cache, as C{str} or
        C{bytes}: the very same verified object comes back (the cached
        speed is printed by bench/bench_credentials.py).
        """
        cred = sliceCredential()
        first = self.trust.verifyCredential(cred)
        second = self.trust.verifyCredential(cred)
        self.assertIs(first, second)
        self.assertIs(self.trust.verifyCredential(cred.encode()), first)

    def test_changedDocumentNotCached(self) -> None:
        """
        After a genuine credential is cached, any changed copy of it is
        verified from scratch and refused if the change was inside what was
        signed; a change outside it is a new document that verifies.
        """
        cred = sliceCredential()
        self.trust.verifyCredential(cred)
        self.assertRefused(cred.replace("<name>bind</name>", "<name>sa</name>"), FORBIDDEN, "does not verify")
        outside = cred.replace("</signatures>", "</signatures>\n")
        self.assertIsNot(self.trust.verifyCredential(outside), self.trust.verifyCredential(cred))

    def test_certificateExpiryEndsCache(self) -> None:
        """
        A credential that outlives a certificate in it is refused once that
        certificate expires, although it was cached before.
        """
        p = self.p
        cred = authority.issueSliceCredential(p.ca, p.alice, p.s1, lifetime=60 * 24 * HOUR, now=NOW)
        self.trust.verifyCredential(cred)
        self.clock.advance(31 * 24 * HOUR)
        self.assertRefused(cred, FORBIDDEN, "target of the credential")

    def test_malformedNotCached(self) -> None:
        """
        Refusals are not remembered as successes: a malformed credential is
        refused every time.
        """
        for _ in range(2):
            self.assertRefused("<signed-credential/>", BADARGS, "credential")


class LRUTests(SynchronousTestCase):
    """
    L{LRU}, the bounded memo behind every cache of the trust layer.
    """

    def test_bounded(self) -> None:
        """
        Beyond its size the least recently used entry goes first.
        """
        lru: LRU[str, int] = LRU(2)
        lru.put("a", 1)
        lru.put("b", 2)
        self.assertEqual(lru.get("a"), 1)
        lru.put("c", 3)
        self.assertEqual((lru.get("a"), lru.get("b"), lru.get("c"), len(lru)), (1, None, 3, 2))

    def test_memoDoesNotRememberFailures(self) -> None:
        """
        A computation that raises is not remembered.
        """
        lru: LRU[str, int] = LRU(2)

        def fail() -> int:
            raise ValueError("no")

        self.assertRaises(ValueError, lru.memo, "k", fail)
        self.assertEqual(lru.memo("k", lambda: 5), 5)
        self.assertEqual(lru.memo("k", lambda: 6), 5)
        lru.clear()
        self.assertEqual(len(lru), 0)


class MutationTests(SynchronousTestCase):
    """
    Whatever one changes in a genuine credential, it is either refused with
    a L{TrustError} or means exactly what it meant before.
    """

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(data=st.data())
    def test_mutations(self, data: st.DataObject) -> None:
        """
        Replace, delete or insert one character anywhere.
        """
        trust, _ = makeTrust()
        original = _genuine()
        meaning = _meaning(trust.verifyCredential(original))
        position = data.draw(st.integers(0, len(original) - 1))
        replacement = data.draw(st.sampled_from(["", "x", "<", "&", "0", " ", "\u00e9", original[position]]))
        length = data.draw(st.integers(0, 1))
        mutated = original[:position] + replacement + original[position + length:]
        try:
            verified = trust.verifyCredential(mutated)
        except TrustError:
            return
        self.assertEqual(_meaning(verified), meaning)

    def test_unexpectedErrorFailsClosed(self) -> None:
        """
        An error the checks did not foresee refuses the credential (and is
        logged for the operator, not shown to the client).
        """
        trust, _ = makeTrust()

        def broken(*args: object) -> None:
            raise RuntimeError("secret detail")

        self.patch(trust.verifier, "_verifySigned", broken)
        e = self.assertRaises(TrustError, trust.verifyCredential, sliceCredential())
        self.assertEqual(e.geniCode, FORBIDDEN)
        self.assertNotIn("secret", e.message)
        self.assertEqual(len(self.flushLoggedErrors(RuntimeError)), 1)


@functools.cache
def _genuine() -> str:
    p = pki()
    return authority.delegate(sliceCredential(delegatable=True), p.alice, p.bob, now=NOW)


def _meaning(verified: object) -> object:
    return [
        (c.refid, c.ownerURN, c.targetURN, c.expires, c.privileges, c.type)
        for c in verified.credential.chain()  # type: ignore[attr-defined]
    ] + [verified.signerURN]  # type: ignore[attr-defined]
