"""
Tests for L{am.trust.credential}: the hardened parser refuses everything
that is not a well-formed credential of a supported kind, quickly and with
bounded memory, as BADARGS.
"""

from __future__ import annotations

import tracemalloc
import xmlrpc.client

from twisted.trial.unittest import SynchronousTestCase

from am.trust.credential import (
    MAX_BYTES,
    MAX_DELEGATION,
    parseSignedCredential,
    parseTime,
)
from am.trust.errors import BADARGS, TrustError
from tests.trust_helpers import NOW, pki, refusal, sliceCredential

ALICE = "urn:publicid:IDN+geni:marvin+user+alice"


def body(credential: str, signatures: str = "") -> str:
    return f"<signed-credential>{credential}{signatures}</signed-credential>"


def privilegeCredential(extra: str = "", refid: str = "ref0", kind: str = "privilege") -> str:
    gid = pki().alice.chainPEM.decode()
    return (
        f'<credential xml:id="{refid}"><type>{kind}</type><serial>1</serial>'
        f"<owner_gid>{gid}</owner_gid><owner_urn>{ALICE}</owner_urn>"
        f"<target_gid>{gid}</target_gid><uuid/>"
        f"<expires>2030-01-01T00:00:00Z</expires>"
        f"<privileges><privilege><name>info</name><can_delegate>false</can_delegate>"
        f"</privilege></privileges>{extra}</credential>"
    )


class ParseTests(SynchronousTestCase):
    """
    What the parser reads from a good credential.
    """

    def test_fields(self) -> None:
        """
        Owner, target, expiry and privileges are read; the owner and target
        URNs come from the certificates.
        """
        p = pki()
        data, signed = parseSignedCredential(sliceCredential(lifetime=3600.0))
        cred = signed.credential
        self.assertEqual(cred.type, "privilege")
        self.assertEqual(cred.ownerURN, p.alice.urn)
        self.assertEqual(cred.targetURN, p.s1.urn)
        self.assertEqual(cred.ownerGID, (p.alice.certificate, p.ca.certificate))
        self.assertEqual(cred.expires, NOW + 3600)
        self.assertEqual(
            [x.name for x in cred.privileges], ["refresh", "embed", "bind", "control", "info"]
        )
        self.assertIsNone(cred.parent)
        self.assertEqual(list(signed.signatures), [cred.refid])
        self.assertTrue(data.startswith(b"<?xml"))

    def test_valueForms(self) -> None:
        """
        A credential may come as C{str}, UTF-8 C{bytes} or
        L{xmlrpc.client.Binary} (what some Python 3 clients send).
        """
        text = sliceCredential()
        for form in (text, text.encode(), xmlrpc.client.Binary(text.encode())):
            self.assertEqual(parseSignedCredential(form)[1].credential.ownerURN, pki().alice.urn)

    def test_canDelegateForms(self) -> None:
        """
        C{can_delegate} may be true/false/1/0 and defaults to false.
        """
        cred = privilegeCredential().replace(
            "<privilege><name>info</name><can_delegate>false</can_delegate></privilege>",
            "<privilege><name>a</name><can_delegate>1</can_delegate></privilege>"
            "<privilege><name>b</name><can_delegate>TRUE</can_delegate></privilege>"
            "<privilege><name>c</name></privilege>",
        )
        privileges = parseSignedCredential(body(cred))[1].credential.privileges
        self.assertEqual([(x.name, x.canDelegate) for x in privileges], [("a", True), ("b", True), ("c", False)])

    def test_times(self) -> None:
        """
        Expiry may be written with C{Z}, an offset, fractions, or no zone
        (meaning UTC).
        """
        self.assertEqual(parseTime("2030-01-01T00:00:00Z"), 1893456000.0)
        self.assertEqual(parseTime("2030-01-01T01:00:00+01:00"), 1893456000.0)
        self.assertEqual(parseTime("2030-01-01T00:00:00.5"), 1893456000.5)
        for bad in ["", "tomorrow", "2030-13-01T00:00:00Z", "9" * 70]:
            self.assertRaises(TrustError, parseTime, bad)


class RefusalTests(SynchronousTestCase):
    """
    Malformed, hostile or unsupported documents are refused with BADARGS
    and a message saying why.
    """

    def assertRefused(self, value: object, fragment: str) -> TrustError:
        e = self.assertRaises(TrustError, parseSignedCredential, value)
        self.assertEqual(e.geniCode, BADARGS, e.message)
        self.assertIn(fragment, e.message)
        return e

    def test_malformedXML(self) -> None:
        """
        Text that is not XML, or not well-formed, is refused.
        """
        self.assertRefused("hello", "not well-formed")
        self.assertRefused("<signed-credential><credential>", "not well-formed")
        self.assertRefused("<a>\x00</a>", "not well-formed")
        self.assertRefused("", "not well-formed")

    def test_notAString(self) -> None:
        """
        Structs, numbers and non-UTF-8 bytes are refused.
        """
        self.assertRefused({"x": 1}, "must be a string")
        self.assertRefused(3, "must be a string")
        self.assertRefused(b"<a>\xff</a>", "not UTF-8")
        self.assertRefused("<a>\ud800</a>", "not valid Unicode")

    def test_externalEntity(self) -> None:
        """
        A document with an external entity (XXE) is refused before parsing.
        """
        xxe = (
            '<?xml version="1.0"?><!DOCTYPE signed-credential ['
            '<!ENTITY x SYSTEM "file:///etc/passwd">]>'
            "<signed-credential>&x;</signed-credential>"
        )
        self.assertRefused(xxe, "DTD")
        self.assertRefused('<!DOCTYPE a SYSTEM "http://example.invalid/a.dtd"><a/>', "DTD")

    def test_entityExpansionFastAndSmall(self) -> None:
        """
        A billion-laughs document is refused without expanding it (memory
        stays far below what expansion would take; the time it takes is
        printed by bench/bench_hostile_input.py).
        """
        lol = ['<!DOCTYPE lolz [<!ENTITY lol "lol">']
        for i in range(1, 10):
            lol.append(f'<!ENTITY lol{i} "{("&lol%s;" % (i - 1 or "")) * 10}">')
        lol.append("]><signed-credential>&lol9;</signed-credential>")
        document = "".join(lol)
        tracemalloc.start()
        try:
            error = refusal(parseSignedCredential, document)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        self.assertIsInstance(error, TrustError)
        self.assertIn("DTD", error.message)  # type: ignore[union-attr]
        self.assertLess(peak, 1024 * 1024)

    def test_entityDeclarationDisguised(self) -> None:
        """
        A declared encoding does not hide a DTD from the check: documents
        are always read as UTF-8.
        """
        doc = '<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE a [<!ENTITY b "c">]><a>&b;</a>'
        self.assertRefused(doc, "DTD")
        self.assertRefused(doc.encode("utf-16"), "not UTF-8")

    def test_undefinedEntity(self) -> None:
        """
        References to undeclared entities are malformed.
        """
        self.assertRefused("<signed-credential>&nope;</signed-credential>", "not well-formed")

    def test_tooBig(self) -> None:
        """
        Documents over the size bound are refused without parsing.
        """
        huge = "<a>" + "x" * MAX_BYTES + "</a>"
        error = refusal(parseSignedCredential, huge)
        self.assertIsInstance(error, TrustError)
        self.assertIn("larger than", error.message)  # type: ignore[union-attr]
        self.assertRefused(huge.encode(), "larger than")

    def test_tooDeep(self) -> None:
        """
        Deeply nested documents are refused by the parser's depth bound.
        """
        deep = "<a>" * 5000 + "</a>" * 5000
        error = refusal(parseSignedCredential, deep)
        self.assertIsInstance(error, TrustError)
        self.assertIn("depth", error.message)  # type: ignore[union-attr]

    def test_wrongRoot(self) -> None:
        """
        A document that is not a C{<signed-credential>} is refused.
        """
        self.assertRefused("<rspec/>", "root element")
        self.assertRefused("<signed-credential/>", "exactly one <credential>")

    def test_unsupportedType(self) -> None:
        """
        Tickets, capabilities and ProtoGENI's SFA-form speaks-for are not
        supported.
        """
        for kind in ["ticket", "capability", "speaksfor", ""]:
            self.assertRefused(body(privilegeCredential(kind=kind)), "unsupported credential type")

    def test_missingFields(self) -> None:
        """
        Missing xml:id, type, expiry, owner, target or privileges are
        refused, naming the field.
        """
        good = privilegeCredential()
        cases = [
            (good.replace(' xml:id="ref0"', ""), "xml:id"),
            (good.replace("<type>privilege</type>", ""), "<type>"),
            (good.replace("<expires>2030-01-01T00:00:00Z</expires>", ""), "<expires>"),
            (good[: good.index("<owner_gid>")] + good[good.index("<owner_urn>"):], "<owner_gid>"),
            (good.replace("<privileges>", "<privs>").replace("</privileges>", "</privs>"), "<privileges>"),
        ]
        for document, fragment in cases:
            self.assertRefused(body(document), fragment)

    def test_duplicateFields(self) -> None:
        """
        A field given twice is refused: which one would the signer have
        meant?
        """
        self.assertRefused(
            body(privilegeCredential(extra=f"<owner_urn>{ALICE}</owner_urn>")), "more than one <owner_urn>"
        )

    def test_unknownFieldsIgnored(self) -> None:
        """
        Unknown fields (extensions) are ignored and may repeat.
        """
        parseSignedCredential(body(privilegeCredential(extra="<extensions/><extensions><x/></extensions>")))

    def test_markupInField(self) -> None:
        """
        A processing instruction or element inside a field is refused;
        comments are dropped so the text read is what the signature covers.
        """
        cred = privilegeCredential()
        self.assertRefused(body(cred.replace("<name>info</name>", "<name>in<?x y?>fo</name>")), "only text")
        self.assertRefused(body(cred.replace("<name>info</name>", "<name>in<b/>fo</name>")), "only text")
        parsed = parseSignedCredential(body(cred.replace("<name>info</name>", "<name>in<!-- c -->fo</name>")))
        self.assertEqual(parsed[1].credential.privileges[0].name, "info")

    def test_inconsistentURN(self) -> None:
        """
        An C{owner_urn} that contradicts C{owner_gid} is refused.
        """
        bad = privilegeCredential().replace(ALICE, pki().bob.urn)
        self.assertRefused(body(bad), "does not match")

    def test_badGID(self) -> None:
        """
        A GID that is not a PEM chain is refused.
        """
        gid = pki().alice.chainPEM.decode()
        self.assertRefused(body(privilegeCredential().replace(gid, "xyz", 1)), "not a PEM")

    def test_duplicateIds(self) -> None:
        """
        Two elements with the same xml:id are refused (a signature must
        point at exactly one thing).
        """
        self.assertRefused(
            body(privilegeCredential(extra='<extensions xml:id="ref0"/>')), "not well-formed"
        )

    def test_delegationTooDeep(self) -> None:
        """
        A delegation chain longer than the bound is refused.
        """
        cred = privilegeCredential(refid="r0")
        for i in range(1, MAX_DELEGATION + 2):
            cred = privilegeCredential(extra=f"<parent>{cred}</parent>", refid=f"r{i}")
        self.assertRefused(body(cred), "delegation chain is longer")

    def test_signatureShape(self) -> None:
        """
        Signatures must be XML-DSig elements with one C{#id} Reference,
        one per credential.
        """
        cred = privilegeCredential()
        ds = 'xmlns="http://www.w3.org/2000/09/xmldsig#"'

        def sig(refs: str) -> str:
            return f"<Signature {ds}><SignedInfo>{refs}</SignedInfo></Signature>"

        self.assertRefused(body(cred, "<signatures><x/></signatures>"), "only XML-DSig")
        self.assertRefused(body(cred, f"<signatures>{sig('')}</signatures>"), "exactly one Reference")
        empty = sig('<Reference URI=""/>')
        self.assertRefused(body(cred, f"<signatures>{empty}</signatures>"), "#id")
        one = sig('<Reference URI="#ref0"/>')
        self.assertRefused(body(cred, f"<signatures>{one}{one}</signatures>"), "same credential")
