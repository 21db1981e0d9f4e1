"""
Tests for speaks-for (L{am.trust.speaksfor} through C{Trust.authorize}): a
tool acting for a user with a C{geni_abac} credential the user signed.
"""

from __future__ import annotations

from lxml import etree
from twisted.trial.unittest import SynchronousTestCase

from am.devtools import authority
from am.devtools.issue import fillSpeaksFor, newDocument, signAs
from am.trust.certs import Caller
from am.trust.credential import XML_ID
from am.trust.errors import BADARGS, EXPIRED, FORBIDDEN, TrustError
from tests.trust_helpers import HOUR, NOW, abac, makeTrust, pki, sfa, sliceCredential


def statement(signer: object, head: object, tail: object, role: str | None = None, lifetime: float = HOUR) -> str:
    """
    A speaks-for statement signed by C{signer}, naming C{head}'s key as the
    user and C{tail}'s as the tool.
    """
    keyid = lambda who: authority._keyid(who.certificate)  # noqa: E731
    document, credential = newDocument()
    fillSpeaksFor(credential, keyid(head), head.urn, keyid(tail), tail.urn, NOW + lifetime)  # type: ignore[attr-defined]
    if role is not None:
        credential.find("abac/rt0/head/role").text = role  # type: ignore[union-attr]
    return signAs(document, credential.get(XML_ID), signer).decode()  # type: ignore[arg-type]


class SpeaksForTests(SynchronousTestCase):
    """
    The tool calls with its own certificate, C{geni_speaking_for} and the
    user's speaks-for credential; the user's slice credential then works.
    """

    def setUp(self) -> None:
        self.p = pki()
        self.trust, self.clock = makeTrust()
        self.tool = Caller(self.p.tool.urn, self.p.tool.certificate)
        self.options = {"geni_speaking_for": self.p.alice.urn}

    def authorize(self, speaksFor: object, options: object = None, caller: object = None) -> object:
        return self.trust.authorize(
            caller or self.tool, "Allocate", self.p.s1.urn,
            [sfa(sliceCredential()), speaksFor], self.options if options is None else options,
        )

    def refused(self, code: int, fragment: str, *args: object, **kw: object) -> TrustError:
        e = self.assertRaises(TrustError, self.authorize, *args, **kw)
        self.assertEqual((e.geniCode, fragment in e.message), (code, True), e.message)
        return e

    def test_speaksFor(self) -> None:
        """
        With a valid speaks-for credential the tool acts as Alice; the grant
        names both.
        """
        grant = self.authorize(abac(authority.issueSpeaksFor(self.p.alice, self.p.tool, now=NOW)))
        self.assertEqual((grant.callerURN, grant.toolURN), (self.p.alice.urn, self.p.tool.urn))  # type: ignore[attr-defined]

    def test_legacyString(self) -> None:
        """
        The speaks-for credential may come as a bare string: its type is
        read from the document.
        """
        self.authorize(authority.issueSpeaksFor(self.p.alice, self.p.tool, now=NOW))

    def test_withoutSpeaksForTheToolIsItself(self) -> None:
        """
        Without C{geni_speaking_for} the tool is itself and Alice's slice
        credential is not its own.
        """
        cred = abac(authority.issueSpeaksFor(self.p.alice, self.p.tool, now=NOW))
        self.refused(FORBIDDEN, "not to the caller", cred, options={})

    def test_speakingForSelf(self) -> None:
        """
        C{geni_speaking_for} naming the caller itself needs no statement.
        """
        self.trust.authorize(
            self.p.alice.urn, "Allocate", self.p.s1.urn, [sliceCredential()], self.options
        )

    def test_notSignedByUser(self) -> None:
        """
        A statement naming Alice's key as the user but signed by Bob is
        refused.
        """
        forged = statement(self.p.bob, self.p.alice, self.p.tool)
        self.refused(FORBIDDEN, "not signed by the user it speaks for", abac(forged))

    def test_otherUsersStatement(self) -> None:
        """
        Bob's (genuine) statement for the tool does not let it speak for
        Alice.
        """
        bobs = authority.issueSpeaksFor(self.p.bob, self.p.tool, now=NOW)
        self.refused(FORBIDDEN, f"is from {self.p.bob.urn}, not {self.p.alice.urn}", abac(bobs))

    def test_otherTool(self) -> None:
        """
        A statement for another tool does not help this one.
        """
        forBob = authority.issueSpeaksFor(self.p.alice, self.p.bob, now=NOW)
        self.refused(FORBIDDEN, "given to another tool", abac(forBob))

    def test_notSpeaksForRole(self) -> None:
        """
        An ABAC statement with another role is not a speaks-for statement.
        """
        other = statement(self.p.alice, self.p.alice, self.p.tool, role="admin")
        self.refused(FORBIDDEN, "not a speaks-for statement", abac(other))

    def test_expired(self) -> None:
        """
        An expired speaks-for credential is refused as EXPIRED.
        """
        cred = abac(authority.issueSpeaksFor(self.p.alice, self.p.tool, lifetime=HOUR, now=NOW))
        self.clock.advance(2 * HOUR)
        self.refused(EXPIRED, "speaks-for refused: the credential expired", cred)

    def test_untrustedSigner(self) -> None:
        """
        A statement signed by a user of an untrusted CA is refused.
        """
        cred = abac(statement(self.p.mallory, self.p.mallory, self.p.tool))
        self.refused(FORBIDDEN, "does not chain", cred, options={"geni_speaking_for": self.p.mallory.urn})

    def test_tampered(self) -> None:
        """
        A statement changed after signing (the tool's key swapped in) is
        refused.
        """
        original = authority.issueSpeaksFor(self.p.alice, self.p.bob, now=NOW)
        bobKey, toolKey = (authority._keyid(x.certificate) for x in (self.p.bob, self.p.tool))
        self.refused(FORBIDDEN, "does not verify", abac(original.replace(bobKey, toolKey)))

    def test_missing(self) -> None:
        """
        C{geni_speaking_for} without any speaks-for credential is refused.
        """
        self.refused(FORBIDDEN, "no speaks-for (geni_abac) credential", sfa(sliceCredential()))

    def test_badOption(self) -> None:
        """
        A C{geni_speaking_for} that is not a URN is BADARGS.
        """
        cred = abac(authority.issueSpeaksFor(self.p.alice, self.p.tool, now=NOW))
        self.refused(BADARGS, "must be a URN", cred, options={"geni_speaking_for": 3})
        self.refused(BADARGS, "not a URN", cred, options={"geni_speaking_for": "alice"})

    def test_needsToolCertificate(self) -> None:
        """
        Speaks-for needs the tool's certificate, not just its URN.
        """
        cred = abac(authority.issueSpeaksFor(self.p.alice, self.p.tool, now=NOW))
        self.refused(FORBIDDEN, "needs the calling tool's certificate", cred, caller=self.p.tool.urn)

    def test_privilegeCredentialIsNoStatement(self) -> None:
        """
        A privilege credential offered as C{geni_abac} is not a speaks-for
        statement, and an ABAC statement offered as C{geni_sfa} grants
        nothing.
        """
        self.refused(FORBIDDEN, "not an ABAC statement", abac(sliceCredential()))
        statementOnly = authority.issueSpeaksFor(self.p.alice, self.p.alice, now=NOW)
        e = self.assertRaises(
            TrustError, self.trust.authorize, self.p.alice.urn, "Allocate", self.p.s1.urn, [sfa(statementOnly)]
        )
        self.assertIn("not a privilege credential", e.message)

    def test_statementShape(self) -> None:
        """
        An ABAC statement with two tails is malformed.
        """
        cred = authority.issueSpeaksFor(self.p.alice, self.p.tool, now=NOW)
        root = etree.fromstring(cred.encode())
        rt0 = root.find("credential/abac/rt0")
        rt0.append(etree.fromstring(etree.tostring(rt0.find("tail"))))  # type: ignore[union-attr]
        self.refused(BADARGS, "exactly one <head> and one <tail>", abac(etree.tostring(root)))
