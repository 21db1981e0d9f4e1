"""
Tests for L{am.trust.gate}: C{Trust.authorize}, the one entry point, with
the method table of L{am.trust.policy}.
"""

from __future__ import annotations

import datetime
import os
import xmlrpc.client

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from OpenSSL import crypto
from twisted.trial.unittest import SynchronousTestCase

from am.devtools import authority
from am.trust.certs import Caller
from am.trust.errors import BADARGS, EXPIRED, FORBIDDEN, UNSUPPORTED, TrustError
from am.trust.gate import Trust
from am.trust.policy import RULES
from tests.trust_helpers import (
    HOUR,
    NOW,
    makeTrust,
    pki,
    sfa,
    sliceCredential,
    userCredential,
)

SLICE_METHODS = ["Allocate", "Provision", "PerformOperationalAction", "Renew", "Delete", "Describe", "Status"]


class GateTestCase(SynchronousTestCase):
    def setUp(self) -> None:
        self.p = pki()
        self.trust, self.clock = makeTrust()

    def refused(self, code: int, fragment: str, *args: object, **kw: object) -> TrustError:
        e = self.assertRaises(TrustError, self.trust.authorize, *args, **kw)
        self.assertEqual((e.geniCode, fragment in e.message), (code, True), e.message)
        self.assertNotIn("-----BEGIN", e.message)
        self.assertNotIn("<credential", e.message)
        return e


class GrantTests(GateTestCase):
    """
    What a successful authorization returns.
    """

    def test_sliceMethods(self) -> None:
        """
        Every slice method is granted by Alice's slice credential for s1,
        and the grant describes that credential.
        """
        cred = sliceCredential(lifetime=2 * HOUR)
        for method in SLICE_METHODS:
            grant = self.trust.authorize(self.p.alice.urn, method, self.p.s1.urn, [sfa(cred)])
            self.assertEqual(grant.method, method)
            self.assertEqual(grant.callerURN, self.p.alice.urn)
            self.assertEqual(grant.ownerURN, self.p.alice.urn)
            self.assertEqual(grant.targetURN, self.p.s1.urn)
            self.assertEqual(grant.targetType, "slice")
            self.assertEqual(grant.expires, datetime.datetime.fromtimestamp(NOW + 2 * HOUR, datetime.timezone.utc))
            self.assertIn("control", grant.privileges)
            self.assertIsNone(grant.toolURN)
            self.assertFalse(grant.delegated)

    def test_listResources(self) -> None:
        """
        ListResources takes a user credential and no target.
        """
        grant = self.trust.authorize(self.p.alice.urn, "ListResources", None, [sfa(userCredential())])
        self.assertEqual((grant.targetURN, grant.targetType), (self.p.alice.urn, "user"))

    def test_getVersion(self) -> None:
        """
        GetVersion needs only an authenticated caller.
        """
        grant = self.trust.authorize(self.p.bob.urn, "GetVersion")
        self.assertEqual((grant.callerURN, grant.targetURN, grant.expires), (self.p.bob.urn, None, None))

    def test_sfaVersion2(self) -> None:
        """
        C{geni_sfa} version 2 credentials are accepted (the same format).
        """
        self.trust.authorize(self.p.alice.urn, "Status", self.p.s1.urn, [sfa(sliceCredential(), "2")])

    def test_legacyStrings(self) -> None:
        """
        The legacy list-of-strings form works, as does
        L{xmlrpc.client.Binary} in C{geni_value}.
        """
        cred = sliceCredential()
        self.trust.authorize(self.p.alice.urn, "Allocate", self.p.s1.urn, [cred])
        binary = sfa(xmlrpc.client.Binary(cred.encode()))
        self.trust.authorize(self.p.alice.urn, "Allocate", self.p.s1.urn, [binary])

    def test_callerForms(self) -> None:
        """
        The caller may be a L{Caller}, a certificate in PEM, pyOpenSSL or
        cryptography form, or a URN.
        """
        alice = self.p.alice
        for caller in (
            Caller(alice.urn, alice.certificate),
            alice.certPEM,
            alice.certPEM.decode(),
            crypto.X509.from_cryptography(alice.certificate),
            alice.certificate,
            alice.urn,
        ):
            self.assertEqual(
                self.trust.authorize(caller, "Delete", self.p.s1.urn, [sliceCredential()]).callerURN,
                alice.urn,
            )

    def test_otherCredentialsIgnored(self) -> None:
        """
        Credentials that do not grant the call (unknown type, malformed,
        someone else's) do not stop one that does.
        """
        creds = [
            {"geni_type": "geni_foo", "geni_version": "9", "geni_value": "x"},
            sfa("<junk"),
            sfa(authority.issueSliceCredential(self.p.ca, self.p.bob, self.p.s2, now=NOW)),
            sfa(sliceCredential()),
        ]
        self.trust.authorize(self.p.alice.urn, "Allocate", self.p.s1.urn, creds)

    def test_starGrantsEverything(self) -> None:
        """
        ProtoGENI-style C{*} grants every slice method and Shutdown.
        """
        cred = sliceCredential(privileges=["*"])
        for method in SLICE_METHODS + ["Shutdown"]:
            self.trust.authorize(self.p.alice.urn, method, self.p.s1.urn, [cred])

    def test_delegated(self) -> None:
        """
        Bob may act with a credential Alice delegated to him.
        """
        p = self.p
        bobs = authority.delegate(sliceCredential(delegatable=True), p.alice, p.bob, privileges=["control"], now=NOW)
        grant = self.trust.authorize(p.bob.urn, "Provision", p.s1.urn, [sfa(bobs)])
        self.assertEqual((grant.ownerURN, grant.privileges, grant.delegated), (p.bob.urn, frozenset({"control"}), True))

    def test_fromPaths(self) -> None:
        """
        L{Trust.fromPaths} reads roots from files or directories; a
        credential from marvin-authority on disk then verifies.
        """
        d = self.mktemp()
        ca = authority.makeCA(d, "geni:ondisk", now=NOW)
        user = authority.makeUser(d, ca, "dave", now=NOW)
        s = authority.makeSlice(d, ca, "exp1", now=NOW)
        cred = authority.issueSliceCredential(ca, user, s, now=NOW)
        for paths in ([d], [os.path.join(d, "ca-cert.pem")]):
            trust = Trust.fromPaths(paths, "urn:publicid:IDN+geni:ondisk+authority+am", clock=self.clock)
            trust.authorize(user.urn, "Allocate", s.urn, [cred])
        self.assertRaises(TrustError, self.trust.authorize, user.urn, "Allocate", s.urn, [cred])
        trust = Trust.fromPEMs([ca.certPEM], "urn:publicid:IDN+geni:ondisk+authority+am", clock=self.clock)
        trust.authorize(user.urn, "Allocate", s.urn, [cred])


class RefusalTests(GateTestCase):
    """
    Every way authorization is refused, with its GENI code.
    """

    def test_ownerNotCaller(self) -> None:
        """
        Bob cannot use Alice's credential.
        """
        self.refused(
            FORBIDDEN, f"belongs to {self.p.alice.urn}, not to the caller {self.p.bob.urn}",
            self.p.bob.urn, "Allocate", self.p.s1.urn, [sfa(sliceCredential())],
        )

    def test_wrongTarget(self) -> None:
        """
        A credential for s1 does not grant anything on s2.
        """
        self.refused(
            FORBIDDEN, f"is for {self.p.s1.urn}, not for {self.p.s2.urn}",
            self.p.alice.urn, "Describe", self.p.s2.urn, [sfa(sliceCredential())],
        )

    def test_userCredentialForSlice(self) -> None:
        """
        A user credential does not grant slice methods, nor a slice
        credential ListResources.
        """
        self.refused(
            FORBIDDEN, "needs a slice credential, not a user credential",
            self.p.alice.urn, "Describe", self.p.s1.urn, [sfa(userCredential())],
        )
        self.refused(
            FORBIDDEN, "needs a user credential, not a slice credential",
            self.p.alice.urn, "ListResources", None, [sfa(sliceCredential())],
        )

    def test_insufficientPrivileges(self) -> None:
        """
        A slice credential with only C{info} and C{refresh} does not allow
        Allocate; gcf's slice privileges do not allow Shutdown.
        """
        weak = sliceCredential(privileges=["info", "refresh"])
        e = self.refused(FORBIDDEN, "needs one of the privileges", self.p.alice.urn, "Allocate", self.p.s1.urn, [weak])
        self.assertIn("grants info, refresh", e.message)
        self.refused(FORBIDDEN, "shutdown", self.p.alice.urn, "Shutdown", self.p.s1.urn, [sliceCredential()])

    def test_operator(self) -> None:
        """
        An operator credential for this AM with C{shutdown} allows Shutdown
        of any slice, and nothing else.
        """
        p = self.p
        op = authority.issueOperatorCredential(p.ca, p.bob, p.am, now=NOW)
        grant = self.trust.authorize(p.bob.urn, "Shutdown", p.s1.urn, [op])
        self.assertEqual((grant.targetURN, grant.targetType), (p.am.urn, "authority"))
        self.refused(FORBIDDEN, "needs a slice credential", p.bob.urn, "Delete", p.s1.urn, [op])
        other = authority.makeAM(None, p.ca, "other.example.org", urn="urn:publicid:IDN+geni:marvin+authority+am2", key=p.bob.key, now=NOW)
        notOurs = authority.issueOperatorCredential(p.ca, p.bob, other, now=NOW)
        self.refused(FORBIDDEN, "needs a slice credential", p.bob.urn, "Shutdown", p.s1.urn, [notOurs])

    def test_expired(self) -> None:
        """
        An expired credential is refused with EXPIRED, saying when.
        """
        cred = sliceCredential(lifetime=HOUR)
        self.clock.advance(HOUR + 1)
        self.refused(EXPIRED, "expired at", self.p.alice.urn, "Renew", self.p.s1.urn, [cred])

    def test_bestExplanation(self) -> None:
        """
        With several credentials, the refusal explains the one that came
        closest: an expired slice credential for the slice beats a user
        credential and garbage.
        """
        cred = sliceCredential(lifetime=HOUR)
        self.clock.advance(2 * HOUR)
        e = self.refused(
            EXPIRED, "credential 2: the credential expired", self.p.alice.urn, "Allocate", self.p.s1.urn,
            [sfa("<x/>"), sfa(cred), sfa(userCredential(lifetime=10 * HOUR))],
        )
        self.assertIn("(2 other credentials also refused)", e.message)

    def test_untrusted(self) -> None:
        """
        A credential from an untrusted CA is refused as FORBIDDEN.
        """
        p = self.p
        cred = authority.issueSliceCredential(p.evil, p.mallory, p.evilSlice, now=NOW)
        self.refused(FORBIDDEN, "does not chain", p.mallory.urn, "Allocate", p.evilSlice.urn, [cred])

    def test_malformed(self) -> None:
        """
        A malformed credential is refused as BADARGS.
        """
        self.refused(BADARGS, "not well-formed", self.p.alice.urn, "Allocate", self.p.s1.urn, [sfa("<a")])

    def test_unknownTypeOnly(self) -> None:
        """
        Credentials of only unknown types are refused as BADARGS, naming the
        type.
        """
        self.refused(
            BADARGS, "unsupported type 'geni_foo' version '1'",
            self.p.alice.urn, "ListResources", None, [{"geni_type": "geni_foo", "geni_version": "1", "geni_value": ""}],
        )
        self.refused(
            BADARGS, "unsupported type 'geni_sfa' version '4'",
            self.p.alice.urn, "ListResources", None, [sfa(userCredential(), "4")],
        )

    def test_badArguments(self) -> None:
        """
        No credentials, a non-list, non-struct elements, a struct without
        C{geni_value}, too many credentials or non-struct options are
        BADARGS.
        """
        a, s1 = self.p.alice.urn, self.p.s1.urn
        self.refused(BADARGS, "no credentials supplied", a, "Allocate", s1, [])
        self.refused(BADARGS, "must be an array", a, "Allocate", s1, "cred")
        self.refused(BADARGS, "must be a struct or a string", a, "Allocate", s1, [3])
        self.refused(BADARGS, "has no geni_value", a, "Allocate", s1, [{"geni_type": "geni_sfa"}])
        self.refused(BADARGS, "more than 16", a, "Allocate", s1, ["x"] * 17)
        self.refused(BADARGS, "options must be a struct", a, "Allocate", s1, [sliceCredential()], ["x"])

    def test_badTarget(self) -> None:
        """
        Slice methods need a slice URN.
        """
        cred = [sliceCredential()]
        a = self.p.alice.urn
        self.refused(BADARGS, "needs a slice URN", a, "Allocate", None, cred)
        self.refused(BADARGS, "malformed", a, "Allocate", "s1", cred)
        self.refused(BADARGS, "is not a slice URN", a, "Allocate", self.p.bob.urn, cred)

    def test_unknownMethod(self) -> None:
        """
        A method without a rule is refused, not allowed.
        """
        self.refused(UNSUPPORTED, "no access rule", self.p.alice.urn, "CreateSliver", self.p.s1.urn, [])

    def test_badCaller(self) -> None:
        """
        A malformed caller URN or a certificate without one is FORBIDDEN.
        """
        self.refused(FORBIDDEN, "malformed", "alice", "GetVersion")
        self.refused(FORBIDDEN, "could not be read", b"-----BEGIN CERTIFICATE-----\n", "GetVersion")

    def test_asGeniResult(self) -> None:
        """
        A refusal renders as the AM API v3 error struct.
        """
        e = TrustError(FORBIDDEN, "no")
        self.assertEqual(e.asGeniResult(), {"code": {"geni_code": 3}, "value": "", "output": "no"})
        self.assertEqual(str(e), "FORBIDDEN: no")

    def test_everyMethodHasARule(self) -> None:
        """
        The table covers all AM API v3 methods.
        """
        self.assertEqual(set(RULES), {"GetVersion", "ListResources", "Shutdown", *SLICE_METHODS})


class CallerFromPEMTests(GateTestCase):
    """
    L{Trust.callerFromPEM}, for certificates that did not come through our
    own handshake.
    """

    def test_chained(self) -> None:
        """
        A certificate (with its issuers) that chains to the roots names its
        caller.
        """
        self.assertEqual(self.trust.callerFromPEM(self.p.carol.chainPEM).urn, self.p.carol.urn)

    def test_untrusted(self) -> None:
        """
        A certificate from another CA, or garbage, is refused.
        """
        self.refusedPEM(self.p.mallory.chainPEM, "does not chain")
        self.refusedPEM(b"junk", "could not be read")

    def refusedPEM(self, pem: bytes, fragment: str) -> None:
        e = self.assertRaises(TrustError, self.trust.callerFromPEM, pem)
        self.assertEqual((e.geniCode, fragment in e.message), (FORBIDDEN, True), e.message)


_rpcValues = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=40) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=12,
)


class GarbageTests(SynchronousTestCase):
    """
    Whatever arrives as C{credentials}, C{options} or C{target}, the answer
    is a grant or a L{TrustError}, never another exception.
    """

    @settings(max_examples=300, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        credentials=_rpcValues,
        options=_rpcValues,
        target=_rpcValues,
        method=st.sampled_from(sorted(RULES) + ["Nope"]),
    )
    def test_garbage(self, credentials: object, options: object, target: object, method: str) -> None:
        """
        Arbitrary XML-RPC-shaped values.
        """
        trust, _ = makeTrust()
        try:
            grant = trust.authorize(pki().alice, method, target, credentials, options)
        except TrustError as e:
            self.assertIsInstance(e.message, str)
        else:
            self.assertEqual(grant.method, "GetVersion")

    @settings(max_examples=200, deadline=None, suppress_health_check=list(HealthCheck))
    @given(
        geniType=st.sampled_from(["geni_sfa", "GENI_SFA", "geni_abac", "x"]) | st.text(max_size=10),
        version=st.sampled_from(["1", "2", "3", 3]) | _rpcValues,
        value=_rpcValues,
    )
    def test_garbageStructs(self, geniType: object, version: object, value: object) -> None:
        """
        Well-formed structs with arbitrary contents, with and without
        speaks-for.
        """
        trust, _ = makeTrust()
        cred = {"geni_type": geniType, "geni_version": version, "geni_value": value}
        for options in ({}, {"geni_speaking_for": pki().bob.urn}):
            self.assertRaises(
                TrustError, trust.authorize, pki().alice, "Allocate", pki().s1.urn, [cred], options
            )
