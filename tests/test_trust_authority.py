"""
Tests for L{am.devtools.authority}: the C{marvin-authority} development
authority, as a command and as a Python API.
"""

from __future__ import annotations

import io
import os
import stat
import sys

from cryptography import x509
from cryptography.x509.oid import ExtensionOID
from twisted.trial.unittest import SynchronousTestCase

from am.devtools import authority
from am.trust.certs import Caller, loadCertificates
from am.trust.gate import Trust
from tests.trust_helpers import HOUR, NOW, abac, clocked, makeTrust, pki, sfa


def run(*argv: str) -> tuple[int, str, str]:
    """
    Run C{marvin-authority} with C{argv}; return its status, output and
    errors.
    """
    out, err = io.StringIO(), io.StringIO()
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    try:
        try:
            status = authority.main(list(argv))
        except SystemExit as e:
            status = int(e.code or 0)
    finally:
        sys.stdout, sys.stderr = saved
    return status, out.getvalue(), err.getvalue()


class CommandTests(SynchronousTestCase):
    """
    The command makes a PKI and credentials an AM trusting the CA accepts.
    """

    def setUp(self) -> None:
        self.dir = self.mktemp()

    def ok(self, *argv: str) -> str:
        status, out, err = run("--dir", self.dir, *argv)
        self.assertEqual((status, err), (0, ""))
        return out

    def test_demoFlow(self) -> None:
        """
        CA, AM, users and a slice; a delegatable slice credential,
        a delegation, speaks-for, a user and an operator credential: all
        accepted by an AM that trusts only C{ca-cert.pem}.
        """
        self.assertIn("created urn:publicid:IDN+geni:demo+authority+sa", self.ok("ca", "--authority", "geni:demo"))
        self.ok("am", "--hostname", "am.example.org")
        self.ok("user", "alice", "--email", "alice@example.org")
        self.ok("user", "bob")
        self.assertIn("geni:demo:proj+slice+s1", self.ok("slice", "s1", "--project", "proj"))
        path = lambda name: os.path.join(self.dir, name)  # noqa: E731
        self.assertEqual(self.ok("slice-credential", "alice", "s1", "--delegatable", "-o", path("sc.xml")), "")
        self.ok("delegate", path("sc.xml"), "alice", "bob", "-p", "control", "-o", path("bob.xml"))
        self.ok("speaks-for", "alice", "bob", "--hours", "2", "-o", path("sf.xml"))
        userCred = self.ok("user-credential", "alice")
        self.ok("operator-credential", "bob", "-o", path("op.xml"))
        self.assertTrue(userCred.startswith("<?xml"))

        trust = Trust.fromPaths([path("ca-cert.pem")], "urn:publicid:IDN+geni:demo+authority+am")
        read = lambda name: open(path(name)).read()  # noqa: E731
        alice = "urn:publicid:IDN+geni:demo+user+alice"
        bob = Caller("urn:publicid:IDN+geni:demo+user+bob", loadCertificates(read("user-bob-cert.pem"))[0])
        s1 = "urn:publicid:IDN+geni:demo:proj+slice+s1"
        trust.authorize(alice, "ListResources", None, [sfa(userCred)])
        self.assertEqual(trust.authorize(alice, "Allocate", s1, [sfa(read("sc.xml"))]).callerURN, alice)
        grant = trust.authorize(bob, "Provision", s1, [sfa(read("bob.xml"))])
        self.assertEqual((grant.delegated, grant.privileges), (True, frozenset({"control"})))
        spoken = trust.authorize(
            bob, "Delete", s1, [sfa(read("sc.xml")), abac(read("sf.xml"))], {"geni_speaking_for": alice}
        )
        self.assertEqual((spoken.callerURN, spoken.toolURN), (alice, bob.urn))
        trust.authorize(bob, "Shutdown", s1, [sfa(read("op.xml"))])

    def test_files(self) -> None:
        """
        Keys are private to their owner; certificate files hold the chain.
        """
        self.ok("ca", "-a", "geni:demo")
        self.ok("user", "alice")
        for name in ("ca-key.pem", "user-alice-key.pem"):
            self.assertEqual(stat.S_IMODE(os.stat(os.path.join(self.dir, name)).st_mode), 0o600)
        with open(os.path.join(self.dir, "user-alice-cert.pem"), "rb") as f:
            self.assertEqual(len(loadCertificates(f.read())), 2)
        loaded = authority.loadIdentity(self.dir, "user-alice")
        self.assertEqual(loaded.urn, "urn:publicid:IDN+geni:demo+user+alice")
        self.assertEqual(loaded.issuers, (authority.loadCA(self.dir).certificate,))

    def test_errors(self) -> None:
        """
        Bad names, a missing CA or user, bad hours and a missing command are
        reported without tracebacks.
        """
        status, _, err = run("--dir", self.dir, "user", "alice")
        self.assertEqual(status, 1)
        self.assertIn("ca-cert.pem: not found (make it first)", err)
        self.ok("ca", "-a", "geni:demo")
        status, _, err = run("--dir", self.dir, "user", "9lives")
        self.assertEqual(status, 1)
        self.assertIn("invalid GENI user name", err)
        status, _, err = run("--dir", self.dir, "user-credential", "nobody")
        self.assertEqual(status, 1)
        self.assertIn("user-nobody-cert.pem: not found", err)
        status, _, err = run("--dir", self.dir, "user-credential", "alice", "--hours", "-1")
        self.assertEqual(status, 2)
        self.assertIn("hours must be positive", err)
        self.assertNotIn("Traceback", err)
        self.assertEqual(run()[0], 2)

    def test_help(self) -> None:
        """
        The help and the module docstring say it is for testing and demos,
        not production.
        """
        status, out, _ = run("--help")
        self.assertEqual(status, 0)
        self.assertIn("For testing and demonstrations only", " ".join(out.split()))
        self.assertIn("not a production authority", " ".join(out.split()))
        self.assertIn("FOR TESTING AND DEMONSTRATIONS ONLY", authority.__doc__ or "")
        status, out, _ = run("delegate", "--help")
        self.assertIn("not a production authority", " ".join(out.split()))


def extension(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> object:
    return cert.extensions.get_extension_for_oid(oid)


class CertificateTests(SynchronousTestCase):
    """
    The certificates look like a GENI clearinghouse's.
    """

    def test_ca(self) -> None:
        """
        The CA is a critical C{CA:TRUE} with its authority URN and a
        C{urn:uuid}.
        """
        ca = pki().ca
        constraints = extension(ca.certificate, ExtensionOID.BASIC_CONSTRAINTS)
        self.assertTrue(constraints.critical and constraints.value.ca)  # type: ignore[attr-defined]
        uris = extension(ca.certificate, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value.get_values_for_type(  # type: ignore[attr-defined]
            x509.UniformResourceIdentifier
        )
        self.assertEqual(uris[0], "urn:publicid:IDN+geni:marvin+authority+sa")
        self.assertTrue(uris[1].startswith("urn:uuid:"))

    def test_user(self) -> None:
        """
        A user certificate is not a CA, carries URN, uuid and e-mail, and
        allows client authentication.
        """
        alice = pki().alice.certificate
        self.assertFalse(extension(alice, ExtensionOID.BASIC_CONSTRAINTS).value.ca)  # type: ignore[attr-defined]
        san = extension(alice, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value  # type: ignore[attr-defined]
        self.assertEqual(san.get_values_for_type(x509.UniformResourceIdentifier)[0], pki().alice.urn)
        self.assertEqual(san.get_values_for_type(x509.RFC822Name), ["alice@example.org"])
        self.assertIn(
            x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH,
            extension(alice, ExtensionOID.EXTENDED_KEY_USAGE).value,  # type: ignore[attr-defined]
        )

    def test_am(self) -> None:
        """
        The AM certificate names its host and carries the AM's URN.
        """
        am = pki().am
        san = extension(am.certificate, ExtensionOID.SUBJECT_ALTERNATIVE_NAME).value  # type: ignore[attr-defined]
        self.assertEqual(san.get_values_for_type(x509.DNSName), ["am.example.org"])
        self.assertEqual(am.urn, "urn:publicid:IDN+geni:marvin+authority+am")

    def test_names(self) -> None:
        """
        GENI's name rules are applied to users and slices.
        """
        ca = pki().ca
        self.assertRaises(ValueError, authority.makeUser, None, ca, "toolongname")
        self.assertRaises(ValueError, authority.makeSlice, None, ca, "bad_slice")
        self.assertRaises(ValueError, authority.makeCA, None, "bad authority")


class CredentialAPITests(SynchronousTestCase):
    """
    The Python API's credentials.
    """

    def test_delegateDefaults(self) -> None:
        """
        By default a delegation passes on the delegatable privileges until
        the parent expires.
        """
        p = pki()
        trust, _ = makeTrust()
        parent = authority.issueSliceCredential(
            p.ca, p.alice, p.s1, privileges=[("control", True), ("info", False)], lifetime=HOUR, now=NOW
        )
        child = trust.verifyCredential(authority.delegate(parent, p.alice, p.bob, now=NOW))
        self.assertEqual([x.name for x in child.credential.privileges], ["control"])
        self.assertEqual(child.credential.expires, NOW + HOUR)

    def test_sha1(self) -> None:
        """
        C{digest="sha1"} signs as gcf does.
        """
        p = pki()
        cred = authority.issueSliceCredential(p.ca, p.alice, p.s1, digest="sha1", now=NOW)
        self.assertIn("xmldsig#rsa-sha1", cred)
        makeTrust(clocked())[0].verifyCredential(cred)
