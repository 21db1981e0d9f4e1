"""
Every bad-input path of the GENI face, one row each: the answer is the
protocol's error struct with the code the spec gives and a message saying
what was wrong, never a Fault and never code 5 (SERVERERROR).
"""

from __future__ import annotations

from typing import Any, Callable

from tests.geni_helpers import AUTHORITY, V3, GeniTestCase, requestRSpec
from tests.trust_helpers import NOW

BADARGS, SEARCHFAILED, BADVERSION, REFUSED, UNSUPPORTED = 1, 12, 4, 7, 13
SLIVER = f"urn:publicid:IDN+{AUTHORITY}+sliver+99999"
OTHER_SLIVER = "urn:publicid:IDN+elsewhere.org+sliver+1"

IMAGE = "docker.io/monroe/ping"


def rspec(body: str) -> str:
    return (
        '<rspec xmlns="http://www.geni.net/resources/rspec/3" '
        'xmlns:ol="http://nitlab.inf.uth.gr/schema/sfa/rspec/1" type="request">' + body + "</rspec>"
    )


def node(client: str, component: str | None, image: str | None = IMAGE, lease: str | None = None) -> str:
    bound = f' component_id="urn:publicid:IDN+{AUTHORITY}+node+{component}"' if component else ""
    install = f'<sliver_type name="container"><disk_image name="{image}"/></sliver_type>' if image else ""
    ref = f'<ol:lease_ref id_ref="{lease}"/>' if lease else ""
    return f'<node client_id="{client}"{bound} exclusive="true">{install}{ref}</node>'


class BadInputTests(GeniTestCase):
    def rows(self) -> list[tuple[str, Callable[[], tuple[Any, ...]], int, str]]:
        s1, cred, user = self.s1, self.sliceCred(), self.userCred()
        cred2 = self.sliceCred(slice_=self.p.s2)  # s2 has no slivers
        later = "2099-01-01T00:00:00Z"
        lease = (
            f'<ol:lease client_id="a" valid_from="2099-01-01T00:00:00Z" valid_until="2099-01-01T01:00:00Z"/>'
            f'<ol:lease client_id="b" valid_from="2099-01-02T00:00:00Z" valid_until="2099-01-02T01:00:00Z"/>'
        )
        return [
            ("GetVersion", lambda: ("nope",), BADARGS, "options must be a struct"),
            ("ListResources", lambda: (user, {}), BADARGS, "geni_rspec_version is required"),
            ("ListResources", lambda: (user, {"geni_rspec_version": "GENI 3"}), BADARGS, "must be a struct"),
            ("ListResources", lambda: (user, {"geni_rspec_version": {"type": "PG", "version": "2"}}),
             BADVERSION, "is not supported"),
            ("ListResources", lambda: (user, dict(V3, geni_slice_urn=s1)), BADARGS, "not a v3 option"),
            ("Allocate", lambda: (42, cred, requestRSpec(), {}), BADARGS, "slice_urn must be a string"),
            ("Allocate", lambda: (self.p.alice.urn, cred, requestRSpec(), {}), BADARGS, "is not a slice URN"),
            ("Allocate", lambda: (s1, cred, "", {}), BADARGS, "non-empty request RSpec"),
            ("Allocate", lambda: (s1, cred, rspec(node("a", "1") + node("b", "2", image="docker.io/x/y")), {}),
             BADARGS, "one container image per Allocate"),
            ("Allocate", lambda: (s1, cred, rspec(node("a", "1", image=None)), {}), BADARGS,
             "name the container image"),
            ("Allocate", lambda: (s1, cred, rspec(node("a", "1") + node("b", None)), {}), BADARGS,
             "bind every node"),
            ("Allocate", lambda: (s1, cred, rspec(lease + node("a", "1", lease="a") + node("b", "2", lease="b")), {}),
             BADARGS, "one window per Allocate"),
            ("Allocate", lambda: (self.s2, cred2, requestRSpec(["1"], int(NOW) - 7200, int(NOW) - 3600), {}),
             REFUSED, "lies in the past"),
            ("Describe", lambda: ("not a list", cred, V3), BADARGS, "urns must be a non-empty array"),
            ("Describe", lambda: ([], cred, V3), BADARGS, "urns must be a non-empty array"),
            ("Describe", lambda: ([s1] * 10001, cred, V3), BADARGS, "too many URNs"),
            ("Describe", lambda: (["nonsense"], cred, V3), BADARGS, "not a URN"),
            ("Describe", lambda: ([self.p.alice.urn], cred, V3), BADARGS, "neither a slice nor a sliver URN"),
            ("Describe", lambda: ([s1, self.s2], cred, V3), BADARGS, "exactly one slice URN"),
            ("Status", lambda: ([OTHER_SLIVER], cred, {}), SEARCHFAILED, "is not of this aggregate"),
            ("Status", lambda: ([self.s2], cred2, {}), SEARCHFAILED, "slivers"),
            ("Status", lambda: ([s1], cred, "x"), BADARGS, "options must be a struct"),
            ("Provision", lambda: ([s1], cred, dict(V3, geni_users="alice")), BADARGS,
             "geni_users must be an array"),
            ("Provision", lambda: ([s1], cred, dict(V3, geni_users=[{"urn": "u", "keys": "ssh-ed25519 A"}])),
             BADARGS, "keys must be an array of strings"),
            ("PerformOperationalAction", lambda: ([s1], cred, "geni_reboot", {}), UNSUPPORTED,
             "unsupported action"),
            ("PerformOperationalAction", lambda: ([s1], cred, 7, {}), UNSUPPORTED, "unsupported action"),
            ("Renew", lambda: ([s1], cred, "tomorrow", {}), BADARGS, "expiration_time"),
            ("Renew", lambda: ([s1], cred, later, {}), REFUSED, "slice credential's expiry"),
            ("Delete", lambda: ([SLIVER], cred, {}), SEARCHFAILED, ""),
            ("Shutdown", lambda: (5, cred, {}), BADARGS, "slice_urn must be a string"),
            ("Shutdown", lambda: (SLIVER, cred, {}), BADARGS, "Shutdown takes a slice URN"),
        ]

    def test_everyPath(self) -> None:
        # The slice needs slivers for the checks that come after finding them.
        self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(["3"], int(NOW) + 600, int(NOW) + 1200), {})
        seen = []
        for method, args, code, fragment in self.rows():
            answer = self.call(method, *args())
            where = (method, fragment, answer["output"][:200])
            self.assertIsInstance(answer, dict, where)
            self.assertEqual(answer["code"]["geni_code"], code, where)
            self.assertIn(fragment, answer["output"], where)
            self.assertNotIn("Traceback", answer["output"], where)
            seen.append(method)
        for method in ("GetVersion", "ListResources", "Allocate", "Describe", "Status", "Provision",
                       "PerformOperationalAction", "Renew", "Delete", "Shutdown"):
            self.assertIn(method, seen)
