"""
Credentials tampered with I{before} signing: every signature in a delegation
chain is checked, and a delegation must be signed with the very key of the
parent's owner certificate. Each test asserts the refusal and its reason,
not only that something failed.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from am.devtools import authority
from am.trust.errors import FORBIDDEN, TrustError
from tests.trust_helpers import NOW, makeTrust, pki, sliceCredential


class TamperBeforeSigningTests(SynchronousTestCase):
    def setUp(self) -> None:
        self.p = pki()
        self.trust, self.clock = makeTrust()

    def refusal(self, document: str) -> TrustError:
        e = self.assertRaises(TrustError, self.trust.verifyCredential, document)
        self.assertEqual(e.geniCode, FORBIDDEN, e.message)
        return e

    def test_delegatorEditsOwnCredential(self) -> None:
        """
        Alice's slice credential does not let her delegate. She edits her
        copy to say it does, then delegates it to Bob and signs the
        delegation correctly with her own key: the outer signature is good,
        the parent's (the clearinghouse's) no longer is, and that is the
        reason given.
        """
        p = self.p
        original = sliceCredential()
        self.assertIn("<can_delegate>false</can_delegate>", original)
        edited = original.replace("<can_delegate>false</can_delegate>", "<can_delegate>true</can_delegate>")
        child = authority.delegate(edited, p.alice, p.bob, privileges=["control"], now=NOW)
        e = self.refusal(child)
        self.assertIn("delegation parent 1", e.message)
        self.assertIn("does not verify", e.message)

    def test_delegatorEditsPrivileges(self) -> None:
        """
        Editing the parent's privileges (adding C{*}) before delegating is
        refused the same way: the parent's signature is checked, not only the
        delegation's.
        """
        p = self.p
        original = sliceCredential(delegatable=True)
        edited = original.replace("<name>info</name>", "<name>*</name>", 1)
        self.assertNotEqual(edited, original)
        child = authority.delegate(edited, p.alice, p.bob, privileges=["*"], now=NOW)
        e = self.refusal(child)
        self.assertIn("delegation parent 1", e.message)
        self.assertIn("does not verify", e.message)

    def test_genuineDelegationAccepted(self) -> None:
        """
        The control case for the two above: the same delegation of an
        unedited delegatable credential verifies.
        """
        p = self.p
        child = authority.delegate(sliceCredential(delegatable=True), p.alice, p.bob, privileges=["control"], now=NOW)
        verified = self.trust.verifyCredential(child)
        self.assertEqual(verified.credential.ownerURN, p.bob.urn)
        self.assertEqual(verified.signerURN, p.alice.urn)

    def test_outerEditedAfterDelegation(self) -> None:
        """
        Bob edits the delegation he received (its expiry) after Alice signed
        it: the delegation's own signature fails, the parent's still holds.
        """
        p = self.p
        child = authority.delegate(sliceCredential(delegatable=True), p.alice, p.bob, privileges=["control"], now=NOW)
        # The delegation is the first <credential>; its privileges come first.
        edited = child.replace("<name>control</name>", "<name>info</name>", 1)
        self.assertNotEqual(edited, child)
        e = self.refusal(edited)
        self.assertIn("the credential: the signature does not verify", e.message)

    def test_delegationSignedByAnotherKeyOfTheSameURN(self) -> None:
        """
        A second certificate for Alice's URN, from the trusted CA but with
        another key, cannot sign a delegation of the credential issued to her
        first certificate: the signer must hold the parent owner's key, not
        just carry the owner's name.
        """
        p = self.p
        twin = authority.makeUser(None, p.ca, "alice", now=NOW)
        self.assertEqual(twin.urn, p.alice.urn)
        child = authority.delegate(sliceCredential(delegatable=True), twin, p.bob, privileges=["control"], now=NOW)
        e = self.refusal(child)
        self.assertIn("does not own its parent", e.message)

    def test_delegationSignedByAnotherUser(self) -> None:
        """
        Bob signing a delegation of Alice's credential (to himself) is refused
        for the same reason.
        """
        p = self.p
        child = authority.delegate(sliceCredential(delegatable=True), p.bob, p.bob, privileges=["control"], now=NOW)
        e = self.refusal(child)
        self.assertIn(f"delegated by {p.bob.urn}", e.message)
        self.assertIn("does not own its parent", e.message)


class CredentialBoundaryTests(SynchronousTestCase):
    """
    Expiry and the wildcard privilege at their edges.
    """

    def setUp(self) -> None:
        self.p = pki()
        self.trust, self.clock = makeTrust()

    def test_expiresAtItsSecond(self) -> None:
        """
        A credential is good up to and including its expiry second, refused
        one second later, naming when it expired; the same for a delegation
        whose parent expires first.
        """
        from am.trust.errors import EXPIRED

        credential = sliceCredential(lifetime=3600)
        child = authority.delegate(
            sliceCredential(delegatable=True, lifetime=3600), self.p.alice, self.p.bob,
            privileges=["control"], lifetime=1800, now=NOW,
        )
        self.clock.advance(1799)
        self.trust.verifyCredential(child)
        self.clock.advance(1)
        self.trust.verifyCredential(child)
        self.clock.advance(1)
        e = self.assertRaises(TrustError, self.trust.verifyCredential, child)
        self.assertEqual(e.geniCode, EXPIRED)
        self.assertIn("the credential expired at", e.message)
        self.clock.advance(3600 - 1801)
        self.trust.verifyCredential(credential)
        self.clock.advance(1)
        e = self.assertRaises(TrustError, self.trust.verifyCredential, credential)
        self.assertEqual(e.geniCode, EXPIRED)

    def test_wildcardLetsAnyPrivilegeBeDelegated(self) -> None:
        """
        A parent holding a delegatable C{*} may delegate any named privilege;
        without C{*} the same name is refused.
        """
        p = self.p
        everything = authority.issueSliceCredential(p.ca, p.alice, p.s1, privileges=["*"], delegatable=True, now=NOW)
        child = authority.delegate(everything, p.alice, p.bob, privileges=["control"], now=NOW)
        self.assertEqual([x.name for x in self.trust.verifyCredential(child).credential.privileges], ["control"])
        narrow = authority.issueSliceCredential(p.ca, p.alice, p.s1, privileges=["info"], delegatable=True, now=NOW)
        refused = authority.delegate(narrow, p.alice, p.bob, privileges=["control"], now=NOW)
        e = self.assertRaises(TrustError, self.trust.verifyCredential, refused)
        self.assertIn("claims privilege 'control'", e.message)
