"""
Tests for L{am.trust.urn}.
"""

from __future__ import annotations

from twisted.trial.unittest import SynchronousTestCase

from am.trust.urn import URN, authorityCovers, isURN, makeURN, parseURN, sameURN


class ParseURNTests(SynchronousTestCase):
    """
    L{parseURN} reads the structure of GENI URNs and refuses anything else.
    """

    def test_parts(self) -> None:
        """
        Authority, type and name are split at C{+}; sub-authorities keep
        their C{:}.
        """
        urn = parseURN("urn:publicid:IDN+geni:gpo:gcf+slice+s1")
        self.assertEqual(urn, URN("geni:gpo:gcf", "slice", "s1"))
        self.assertEqual(str(urn), "urn:publicid:IDN+geni:gpo:gcf+slice+s1")

    def test_fed4fire(self) -> None:
        """
        Fed4Fire URNs (DNS authorities, project sub-authorities, long user
        names) parse.
        """
        self.assertTrue(isURN("urn:publicid:IDN+wall2.ilabt.iminds.be:proj+slice+my-slice"))
        self.assertTrue(isURN("urn:publicid:IDN+ilabt.imec.be+user+averylongname"))

    def test_prefixCaseInsensitive(self) -> None:
        """
        The C{urn:publicid:IDN+} prefix is matched without regard to case.
        """
        self.assertEqual(parseURN("URN:PUBLICID:IDN+a+user+b").name, "b")

    def test_malformed(self) -> None:
        """
        Wrong prefix, wrong number of parts, empty parts, whitespace, C{/},
        C{?}, C{#}, control characters, non-strings and overlong strings are
        refused with L{ValueError}.
        """
        for bad in [
            "urn:publicid:geni:gpo:gcf+authority+am",
            "urn:publicid:IDN+a+user",
            "urn:publicid:IDN+a+user+b+c",
            "urn:publicid:IDN++user+b",
            "urn:publicid:IDN+a++b",
            "urn:publicid:IDN+a+user+",
            "urn:publicid:IDN+a+user+b c",
            "urn:publicid:IDN+a/b+user+c",
            "urn:publicid:IDN+a+user+b?x",
            "urn:publicid:IDN+a+user+b#x",
            "urn:publicid:IDN+a+user+b\n",
            "urn:publicid:IDN+a+us;er+b",
            "urn:publicid:IDN+a+user+" + "b" * 600,
            None,
            b"urn:publicid:IDN+a+user+b",
        ]:
            self.assertRaises(ValueError, parseURN, bad)
            self.assertFalse(isURN(bad), bad)


class CompareURNTests(SynchronousTestCase):
    """
    L{sameURN} and L{authorityCovers}.
    """

    def test_sameIgnoresCaseOfAuthorityAndType(self) -> None:
        """
        Authority and type compare case-insensitively, the name exactly.
        """
        self.assertTrue(sameURN("urn:publicid:IDN+Geni:GPO+User+alice", "urn:publicid:IDN+geni:gpo+user+alice"))
        self.assertFalse(sameURN("urn:publicid:IDN+geni+user+Alice", "urn:publicid:IDN+geni+user+alice"))

    def test_malformedIsNeverSame(self) -> None:
        """
        A malformed URN is the same as nothing, not even itself.
        """
        self.assertFalse(sameURN("not a urn", "not a urn"))

    def test_covers(self) -> None:
        """
        An authority covers its own namespace and sub-authorities only.
        """
        sa = parseURN("urn:publicid:IDN+geni:gpo+authority+sa")
        self.assertTrue(authorityCovers(sa, parseURN("urn:publicid:IDN+geni:gpo+slice+s1")))
        self.assertTrue(authorityCovers(sa, parseURN("urn:publicid:IDN+GENI:gpo:proj+slice+s1")))
        self.assertFalse(authorityCovers(sa, parseURN("urn:publicid:IDN+geni:gpox+slice+s1")))
        self.assertFalse(authorityCovers(sa, parseURN("urn:publicid:IDN+geni+slice+s1")))

    def test_onlyAuthoritiesCover(self) -> None:
        """
        A user covers nothing, even in its own namespace.
        """
        user = parseURN("urn:publicid:IDN+geni:gpo+user+alice")
        self.assertFalse(authorityCovers(user, parseURN("urn:publicid:IDN+geni:gpo+slice+s1")))

    def test_makeURN(self) -> None:
        """
        L{makeURN} builds and checks.
        """
        self.assertEqual(makeURN("geni:m", "user", "a"), "urn:publicid:IDN+geni:m+user+a")
        self.assertRaises(ValueError, makeURN, "geni m", "user", "a")
