"""
The GENI AM API v3 methods over the scheduling core: every method, the
lifecycle, isolation between slices, and the codes of refusals.
"""

from __future__ import annotations

import base64
import zlib

from lxml import etree

from am.core.allocation import AllocationRequest
from rspec.times import parseTime
from am.geni.service import AggregateManager, Settings
from tests.geni_helpers import AUTHORITY, V3, GeniTestCase, requestRSpec
from tests.trust_helpers import NOW

GENI = "{http://www.geni.net/resources/rspec/3}"


class GetVersionTests(GeniTestCase):
    """
    What strict v3 clients check in GetVersion.
    """

    def test_fields(self) -> None:
        """
        geni_api is the integer 3 at top level and in value; the rest is as omni and jFed expect.
        """
        for args in ((), ({},)):
            answer = self.call("GetVersion", *args)
            self.assertEqual(answer["geni_api"], 3)
            value = answer["value"]
            self.assertEqual(value["geni_api"], 3)
            self.assertEqual(value["geni_api_versions"], {"3": "https://am.example.org:8443/xmlrpc/am/3.0"})
            self.assertIs(value["geni_single_allocation"], 1)
            self.assertEqual(value["geni_allocate"], "geni_single")
            self.assertIn({"geni_type": "geni_sfa", "geni_version": "3"}, value["geni_credential_types"])
            for key in ("geni_request_rspec_versions", "geni_ad_rspec_versions"):
                (version,) = value[key]
                self.assertEqual((version["type"], version["version"]), ("GENI", "3"))
                self.assertEqual(len(version["extensions"]), len(set(version["extensions"])))
            self.assertEqual(value["urn"], f"urn:publicid:IDN+{AUTHORITY}+authority+am")
            self.assertEqual(answer["output"], "")

    def test_badOptions(self) -> None:
        """
        options must be a struct.
        """
        self.assertEqual(self.code("GetVersion", "nope"), 1)


class ListResourcesTests(GeniTestCase):
    """
    The advertisement.
    """

    def test_needsUserCredential(self) -> None:
        """
        No credential, an unparsable one, or an untrusted one: refused.
        """
        self.assertNotEqual(self.code("ListResources", [], V3), 0)
        self.assertEqual(self.code("ListResources", [{"geni_type": "geni_sfa", "geni_version": "3", "geni_value": "<x"}], V3), 1)
        self.assertNotEqual(self.code("ListResources", self.userCred(self.p.mallory), V3), 0)

    def test_rspecVersionRequired(self) -> None:
        """
        Missing version is BADARGS, an unknown one BADVERSION.
        """
        self.assertEqual(self.code("ListResources", self.userCred(), {}), 1)
        self.assertEqual(self.code("ListResources", self.userCred(), {"geni_rspec_version": {"type": "PG", "version": "2"}}), 4)

    def test_advertisement(self) -> None:
        """
        Every node with its URN; booked windows as ol:lease; compressed on demand.
        """
        self.successResultOf(self.scheduler.addUser(name="x", role="user", fingerprint="e" * 40))
        self.successResultOf(self.scheduler.allocate(AllocationRequest(
            ownerid=1, name="e", script="img", nodes=["2"], duration=600, start=int(NOW) + 100)))
        text = self.ok("ListResources", self.userCred(), V3)
        root = etree.fromstring(text.encode())
        self.assertEqual(root.get("type"), "advertisement")
        ids = [n.get("component_id") for n in root.iter(f"{GENI}node")]
        self.assertEqual(ids, [f"urn:publicid:IDN+{AUTHORITY}+node+{i}" for i in (1, 2, 3)])
        leases = root.findall("{http://nitlab.inf.uth.gr/schema/sfa/rspec/1}lease")
        self.assertEqual(len(leases), 1)
        packed = self.ok("ListResources", self.userCred(), dict(V3, geni_compressed=True))
        self.assertEqual(zlib.decompress(base64.b64decode(packed)).decode(), text)

    def test_cacheInvalidated(self) -> None:
        """
        A booking changes the next advertisement at once.
        """
        before = self.ok("ListResources", self.userCred(), V3)
        self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(["1"], int(NOW) + 600, int(NOW) + 1200), {})
        after = self.ok("ListResources", self.userCred(), V3)
        self.assertNotEqual(before, after)
        self.assertIn("ol:lease ", after)


    def test_invalidatedUser(self) -> None:
        """
        Users are remembered between calls, but an invalidation made here is
        seen at once, and one made by another controller on the same
        database (no notification) within USER_CACHE_SECONDS.
        """
        import attrs

        from am.geni.service import USER_CACHE_SECONDS

        creds = self.userCred()
        self.ok("ListResources", creds, V3)

        def invalidate(txn, active=False) -> None:
            txn.updateUser(attrs.evolve(txn.findUser(urn=self.p.alice.urn), invalid=not active))

        self.successResultOf(self.store.transact(invalidate))  # as another controller would
        self.ok("ListResources", creds, V3)
        self.clock.advance(USER_CACHE_SECONDS)
        self.assertEqual(self.code("ListResources", creds, V3), 3)
        self.successResultOf(self.store.transact(invalidate, True))
        self.clock.advance(USER_CACHE_SECONDS)
        self.ok("ListResources", creds, V3)
        alice = self.successResultOf(self.scheduler.read(lambda txn: txn.findUser(urn=self.p.alice.urn)))
        self.successResultOf(self.scheduler.invalidateUser(alice.id))
        self.assertEqual(self.code("ListResources", creds, V3), 3)

    def test_invalidatedUserFollowsVersion(self) -> None:
        """
        Following a user-change version (PostgreSQL's notifications), a user
        changed by another controller is read again as soon as the version
        moves, however soon; and nothing is remembered while it is C{None}.
        """
        import attrs

        version: list = [1]
        self.am = AggregateManager(
            self.scheduler, self.trust, Settings(AUTHORITY, "https://am.example.org:8443/xmlrpc/am/3.0"),
            lambda: version[0],
        )
        creds = self.userCred()
        self.ok("ListResources", creds, V3)

        def invalidate(txn, active=False) -> None:
            txn.updateUser(attrs.evolve(txn.findUser(urn=self.p.alice.urn), invalid=not active))

        self.successResultOf(self.store.transact(invalidate))  # as another controller would
        self.ok("ListResources", creds, V3)  # not heard yet: remembered
        version[0] = 2
        self.assertEqual(self.code("ListResources", creds, V3), 3)
        self.successResultOf(self.store.transact(invalidate, True))
        version[0] = None  # not listening
        self.ok("ListResources", creds, V3)
        self.successResultOf(self.store.transact(invalidate))
        self.assertEqual(self.code("ListResources", creds, V3), 3)


class LifecycleTests(GeniTestCase):
    """
    Allocate -> Provision -> Status -> PerformOperationalAction -> Renew -> Describe -> Delete.
    """

    def test_lifecycle(self) -> None:
        start, stop = int(NOW) + 600, int(NOW) + 1800
        value = self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(["1", "2"], start, stop), {})
        slivers = value["geni_slivers"]
        self.assertEqual({s["geni_allocation_status"] for s in slivers}, {"geni_allocated"})
        self.assertEqual([parseTime(s["geni_start_time"]) for s in slivers], [start, start])
        manifest = etree.fromstring(value["geni_rspec"].encode())
        self.assertEqual(sorted(n.get("client_id") for n in manifest.iter(f"{GENI}node")), ["n1", "n2"])
        self.assertEqual(sorted(n.get("component_id") for n in manifest.iter(f"{GENI}node")),
                         [f"urn:publicid:IDN+{AUTHORITY}+node+{i}" for i in (1, 2)])

        users = [{"urn": self.p.alice.urn, "keys": ["ssh-ed25519 AAAA alice"]}]
        value = self.ok("Provision", [self.s1], self.sliceCred(), dict(V3, geni_users=users))
        self.assertEqual({s["geni_allocation_status"] for s in value["geni_slivers"]}, {"geni_provisioned"})
        schedules = self.store.run(lambda txn: txn.schedulesOfNode("1", 0, 2**40))
        self.assertEqual(schedules[0].deploymentOptions["ssh_keys"], ["ssh-ed25519 AAAA alice"])

        status = self.ok("Status", [self.s1], self.sliceCred(), {})
        self.assertEqual(status["geni_urn"], self.s1)
        self.assertEqual({s["geni_operational_status"] for s in status["geni_slivers"]}, {"geni_notready"})

        self.assertEqual(len(self.ok("PerformOperationalAction", [self.s1], self.sliceCred(), "geni_start", {})), 2)

        value = self.ok("Renew", [self.s1], self.sliceCred(), _rfc(stop + 600), {})
        self.assertEqual({parseTime(s["geni_expires"]) for s in value}, {stop + 600})

        described = self.ok("Describe", [self.s1], self.sliceCred(), V3)
        self.assertEqual(len(described["geni_slivers"]), 2)

        deleted = self.ok("Delete", [self.s1], self.sliceCred(), {})
        self.assertEqual({d["geni_allocation_status"] for d in deleted}, {"geni_unallocated"})
        statuses = {s.status for s in self.store.run(lambda txn: txn.schedulesOfNode("1", 0, 2**40))}
        self.assertEqual(statuses, {"canceled"})

    def test_emptySliceDescribe(self) -> None:
        """
        Describe of a slice with nothing here is an empty manifest.
        """
        value = self.ok("Describe", [self.s1], self.sliceCred(), V3)
        self.assertEqual(value["geni_slivers"], [])
        self.assertEqual(etree.fromstring(value["geni_rspec"].encode()).get("type"), "manifest")

    def test_singleAllocation(self) -> None:
        """
        A second Allocate on a live slice is ALREADYEXISTS.
        """
        self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(["1"]), {})
        self.assertEqual(self.code("Allocate", self.s1, self.sliceCred(), requestRSpec(["2"]), {}), 17)

    def test_refusedWithSuggestions(self) -> None:
        """
        A busy window is REFUSED and the value carries when the same request would fit.
        """
        start, stop = int(NOW) + 600, int(NOW) + 1200
        self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(["1"], start, stop), {})
        answer = self.call("Allocate", self.s2, self.sliceCred(slice_=self.p.s2), requestRSpec(["1"], start, stop), {})
        self.assertEqual(answer["code"]["geni_code"], 7)
        first = answer["value"]["geni_suggestions"][0]
        self.assertEqual(parseTime(first["geni_start_time"]), stop + 120)

    def test_unboundWithFilter(self) -> None:
        """
        Unbound nodes are chosen by the filter; the manifest binds them.
        """
        value = self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(unbound="type:testing", count=2), {})
        self.assertEqual(len(value["geni_slivers"]), 2)
        manifest = etree.fromstring(value["geni_rspec"].encode())
        self.assertEqual(sorted(n.get("client_id") for n in manifest.iter(f"{GENI}node")), ["any-0", "any-1"])

    def test_badRSpec(self) -> None:
        """
        Unparsable, DOCTYPE-carrying or foreign-node RSpecs are BADARGS.
        """
        for text in ("", "<rspec", '<!DOCTYPE x [<!ENTITY a "b">]><rspec/>', requestRSpec(["1"]).replace("geni:marvin", "geni:other")):
            self.assertEqual(self.code("Allocate", self.s1, self.sliceCred(), text, {}), 1, text[:40])

    def test_unknownAction(self) -> None:
        """
        An unknown or empty action is a struct with UNSUPPORTED.
        """
        self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(["1"]), {})
        for action in ("geni_reboot", "", 7):
            self.assertEqual(self.code("PerformOperationalAction", [self.s1], self.sliceCred(), action, {}), 13)

    def test_stopKeepsTheSliver(self) -> None:
        """
        geni_stop changes the running state, not the reservation: the sliver
        stays provisioned (not ready) with its end time.
        """
        value = self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(["1"]), {})
        self.ok("Provision", [self.s1], self.sliceCred(), V3)
        stopped = self.ok("PerformOperationalAction", [self.s1], self.sliceCred(), "geni_stop", {})
        self.assertEqual((stopped[0]["geni_allocation_status"], stopped[0]["geni_operational_status"]),
                         ("geni_provisioned", "geni_notready"))
        self.assertEqual(stopped[0]["geni_end_time"], value["geni_slivers"][0]["geni_end_time"])

    def test_renewPastCredential(self) -> None:
        """
        Renew never goes past the slice credential's expiry.
        """
        self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(["1"]), {})
        self.assertEqual(self.code("Renew", [self.s1], self.sliceCred(lifetime=3600), _rfc(int(NOW) + 7200), {}), 7)

    def test_sliverURNs(self) -> None:
        """
        Sliver URNs address single slivers; unknown ones are SEARCHFAILED.
        """
        value = self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(["1", "2"]), {})
        first = value["geni_slivers"][0]["geni_sliver_urn"]
        status = self.ok("Status", [first], self.sliceCred(), {})
        self.assertEqual([s["geni_sliver_urn"] for s in status["geni_slivers"]], [first])
        self.assertEqual(self.code("Status", [f"urn:publicid:IDN+{AUTHORITY}+sliver+999"], self.sliceCred(), {}), 12)
        self.assertEqual(self.code("Status", ["not a urn"], self.sliceCred(), {}), 1)
        self.assertEqual(self.code("Status", [], self.sliceCred(), {}), 1)


class IsolationTests(GeniTestCase):
    """
    Two slices cannot see or touch each other's slivers.
    """

    def test_otherSliceForbidden(self) -> None:
        value = self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(["1"]), {})
        sliver = value["geni_slivers"][0]["geni_sliver_urn"]
        bobs = self.sliceCred(self.p.bob, self.p.s2)
        for method, args in (("Status", ([sliver], bobs, {})), ("Describe", ([self.s1], bobs, V3)),
                             ("Delete", ([sliver], bobs, {})), ("Provision", ([self.s1], bobs, V3))):
            self.assertEqual(self.code(method, *args, caller=self.bob), 3, method)
        self.assertEqual(self.code("Status", [self.s2], bobs, {}, caller=self.bob), 12)  # nothing booked here

    def test_userCredentialNotEnough(self) -> None:
        """
        A user credential where a slice credential is needed is refused.
        """
        self.assertEqual(self.code("Allocate", self.s1, self.userCred(), requestRSpec(["1"]), {}), 3)
        self.assertEqual(self.code("Describe", [self.s1], self.userCred(), V3), 3)


class CrossFaceTests(GeniTestCase):
    """
    GENI and REST bookings share one core and respect each other.
    """

    def test_geniBlocksRest(self) -> None:
        start, stop = int(NOW) + 600, int(NOW) + 1200
        self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(["1"], start, stop), {})
        user = self.successResultOf(self.scheduler.addUser(name="rest", role="user", fingerprint="e" * 40))
        failure = self.failureResultOf(self.scheduler.allocate(AllocationRequest(
            ownerid=user.id, name="r", script="img", nodes=["1"], duration=600, start=start)))
        self.assertEqual(failure.value.extra["code"], "sc1")

    def test_restBlocksGeni(self) -> None:
        start = int(NOW) + 600
        user = self.successResultOf(self.scheduler.addUser(name="rest", role="user", fingerprint="e" * 40))
        self.successResultOf(self.scheduler.allocate(AllocationRequest(
            ownerid=user.id, name="r", script="img", nodes=["1"], duration=600, start=start)))
        self.assertEqual(self.code("Allocate", self.s1, self.sliceCred(), requestRSpec(["1"], start, start + 600), {}), 7)
        ad = self.ok("ListResources", self.userCred(), V3)
        self.assertIn("ol:lease ", ad)


class SweepTests(GeniTestCase):
    """
    What the sweep fails shows to GENI as geni_failed with the reason.
    """

    def test_neverDeployedIsGeniFailed(self) -> None:
        start, stop = int(NOW) + 600, int(NOW) + 1200
        self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(["1"], start, stop), {})
        self.ok("Provision", [self.s1], self.sliceCred(), V3)
        self.clock.advance(stop - self.clock.seconds())
        self.successResultOf(self.scheduler.sweep())
        [sliver] = self.ok("Status", [self.s1], self.sliceCred(), {})["geni_slivers"]
        self.assertEqual(
            (sliver["geni_allocation_status"], sliver["geni_operational_status"], sliver["geni_error"]),
            ("geni_provisioned", "geni_failed", "node 1 never deployed the task"),
        )
        # Listed so for an hour after its end time, then gone like any expired sliver.
        from am.core.slices import FAILED_VISIBLE

        self.clock.advance(FAILED_VISIBLE)
        self.assertEqual(self.code("Status", [self.s1], self.sliceCred(), {}), 12)


def _rfc(when: int) -> str:
    from rspec.times import formatTime

    return formatTime(when)


class ShutdownTests(GeniTestCase):
    """
    Shutdown: an operator's emergency stop of one slice.
    """

    def test_operatorStopsSlice(self) -> None:
        """
        An operator credential (target: this AM) with shutdown ends every sliver of the slice.
        """
        from am.devtools import authority
        from tests.trust_helpers import sfa

        self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(["1", "2"]), {})
        self.ok("Provision", [self.s1], self.sliceCred(), V3)
        operator = [sfa(authority.issueOperatorCredential(self.p.ca, self.p.bob, self.p.am, now=NOW))]
        self.assertEqual(self.ok("Shutdown", self.s1, operator, {}, caller=self.bob), True)
        statuses = {s.status for s in self.store.run(lambda txn: txn.schedulesOfNode("1", 0, 2**40))}
        self.assertEqual(statuses, {"canceled"})

    def test_sliceOwnerWithoutShutdownPrivilege(self) -> None:
        """
        An ordinary slice credential does not carry shutdown.
        """
        self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(["1"]), {})
        self.assertEqual(self.code("Shutdown", self.s1, self.sliceCred(), {}), 3)


class JFedTesterTests(GeniTestCase):
    """
    What jFed's automated tester checks beyond the spec text (fed4fire.md §1.5, §1.8).
    """

    def test_statusOfUnknownSliceIsAnError(self) -> None:
        """
        Status of a slice never booked here is SEARCHFAILED; Describe of an
        empty slice succeeds with no slivers.
        """
        self.assertEqual(self.code("Status", [self.s1], self.sliceCred(), {}), 12)
        self.assertEqual(self.ok("Describe", [self.s1], self.sliceCred(), dict(V3, geni_compressed=True))["geni_slivers"], [])

    def test_deletedSliversAreGone(self) -> None:
        """
        After Delete the slivers are gone: Status, a second Delete and every
        call naming them are SEARCHFAILED; Describe of the slice lists none.
        """
        creds = self.sliceCred()
        value = self.ok("Allocate", self.s1, creds, requestRSpec(["1", "2"]), {})
        slivers = [s["geni_sliver_urn"] for s in value["geni_slivers"]]
        self.ok("Provision", [self.s1], creds, V3)
        deleted = self.ok("Delete", [slivers[0]], creds, {})
        self.assertEqual([s["geni_allocation_status"] for s in deleted], ["geni_unallocated"])
        listed = self.ok("Status", [self.s1], creds, {})["geni_slivers"]
        self.assertEqual([s["geni_sliver_urn"] for s in listed], slivers[1:])
        for method, args in (("Status", ({},)), ("Describe", (V3,)), ("Delete", ({},)),
                             ("Provision", (V3,)), ("PerformOperationalAction", ("geni_start", {}))):
            self.assertEqual(self.code(method, [slivers[0]], creds, *args), 12, method)
        self.ok("Delete", [self.s1], creds, {})
        for method, args in (("Status", ({},)), ("Delete", ({},)), ("Renew", (_rfc(int(NOW) + 7200), {}))):
            self.assertEqual(self.code(method, [self.s1], creds, *args), 12, method)
        self.assertEqual(self.ok("Describe", [self.s1], creds, V3)["geni_slivers"], [])

    def test_renewOfFinalSliversRefused(self) -> None:
        """
        A sliver whose task is over (failed, before its end time) is not
        renewed in silence: REFUSED with why, or with geni_best_effort an
        error on that sliver while the others are renewed.
        """
        creds = self.sliceCred()
        value = self.ok("Allocate", self.s1, creds, requestRSpec(["1", "2"]), {})
        ids = [int(s["geni_sliver_urn"].rsplit("+", 1)[-1]) for s in value["geni_slivers"]]
        self.ok("Provision", [self.s1], creds, V3)

        def fail(txn) -> None:
            schedule = txn.getSchedule(ids[0])
            schedule.status = "failed"
            txn.updateSchedule(schedule)

        self.successResultOf(self.store.transact(fail))
        stop = parseTime(value["geni_slivers"][1]["geni_end_time"]) + 600
        answer = self.call("Renew", [self.s1], creds, _rfc(stop), {})
        self.assertEqual(answer["code"]["geni_code"], 7)
        self.assertIn("failed", answer["output"])
        self.assertIn("cannot be renewed", answer["output"])
        renewed = self.ok("Renew", [self.s1], creds, _rfc(stop), {"geni_best_effort": True})
        byId = {int(s["geni_sliver_urn"].rsplit("+", 1)[-1]): s for s in renewed}
        self.assertIn("cannot be renewed", byId[ids[0]]["geni_error"])
        self.assertEqual((byId[ids[1]]["geni_error"], parseTime(byId[ids[1]]["geni_end_time"])), ("", stop))

    def test_deletedAfterItsTaskEnded(self) -> None:
        """
        Delete of a sliver whose task already failed (its status stays
        failed) makes it gone all the same.
        """
        creds = self.sliceCred()
        value = self.ok("Allocate", self.s1, creds, requestRSpec(["1"]), {})
        sid = int(value["geni_slivers"][0]["geni_sliver_urn"].rsplit("+", 1)[-1])
        self.ok("Provision", [self.s1], creds, V3)

        def fail(txn) -> None:
            schedule = txn.getSchedule(sid)
            schedule.status = "failed"
            txn.updateSchedule(schedule)

        self.successResultOf(self.store.transact(fail))
        self.assertEqual(self.ok("Status", [self.s1], creds, {})["geni_slivers"][0]["geni_operational_status"],
                         "geni_failed")
        self.ok("Delete", [self.s1], creds, {})
        self.assertEqual(self.code("Status", [self.s1], creds, {}), 12)
        self.assertEqual(self.code("Delete", [self.s1], creds, {}), 12)

    def test_expiredSliversAreGone(self) -> None:
        """
        A sliver past its end time is gone too, whatever its status says.
        """
        creds = self.sliceCred()
        value = self.ok("Allocate", self.s1, creds, requestRSpec(["1"]), {})
        sliver = value["geni_slivers"][0]["geni_sliver_urn"]
        self.ok("Provision", [self.s1], creds, V3)
        self.clock.advance(parseTime(value["geni_slivers"][0]["geni_end_time"]) - self.clock.seconds())
        self.assertEqual(self.code("Status", [self.s1], creds, {}), 12)
        self.assertEqual(self.code("Status", [sliver], creds, {}), 12)

    def test_renewEchoesTheClientsTime(self) -> None:
        """
        Renew to expiry + 5 min, written with an offset: Status shows that very string.
        """
        self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(["1"]), {})
        self.ok("Provision", [self.s1], self.sliceCred(), V3)
        status = self.ok("Status", [self.s1], self.sliceCred(), {})["geni_slivers"][0]
        later = parseTime(status["geni_expires"]) + 300
        from datetime import datetime, timedelta, timezone

        text = datetime.fromtimestamp(later, timezone(timedelta(hours=1))).isoformat()
        self.ok("Renew", [self.s1], self.sliceCred(), text, {})
        status = self.ok("Status", [self.s1], self.sliceCred(), {})["geni_slivers"][0]
        self.assertEqual(status["geni_expires"], text)

    def test_renewHoldsAnAllocation(self) -> None:
        """
        Renewing an unprovisioned sliver keeps the allocation longer, not the window.
        """
        start = int(NOW) + 3600
        self.ok("Allocate", self.s1, self.sliceCred(), requestRSpec(["1"], start, start + 600), {})
        value = self.ok("Renew", [self.s1], self.sliceCred(), _rfc(int(NOW) + 1800), {})
        self.assertEqual(parseTime(value[0]["geni_expires"]), int(NOW) + 1800)
        self.assertEqual(parseTime(value[0]["geni_end_time"]), start + 600)
        self.assertEqual(self.code("Renew", [self.s1], self.sliceCred(), _rfc(start + 60), {}), 7)

    def test_manifestEchoesNodeExtensions(self) -> None:
        """
        Extension elements the client put in a node (jFed's layout) come back in the manifest.
        """
        request = requestRSpec(["1"]).replace(
            '<sliver_type name="container">',
            '<jfed:location xmlns:jfed="http://jfed.iminds.be/rspec/ext/jfed/1" x="10" y="20"/>'
            '<sliver_type name="container">', 1)
        value = self.ok("Allocate", self.s1, self.sliceCred(), request, {})
        self.assertIn('x="10"', value["geni_rspec"])
        described = self.ok("Describe", [self.s1], self.sliceCred(), V3)
        self.assertIn("jfed.iminds.be/rspec/ext/jfed/1", described["geni_rspec"])



class BestEffortTests(GeniTestCase):
    """
    Allocate with geni_best_effort books what it can.
    """

    def test_boundNodes(self) -> None:
        start, stop = int(NOW) + 600, int(NOW) + 1200
        self.ok("Allocate", self.s2, self.sliceCred(slice_=self.p.s2), requestRSpec(["2"], start, stop), {})
        self.assertEqual(self.code("Allocate", self.s1, self.sliceCred(), requestRSpec(["1", "2"], start, stop), {}), 7)
        answer = self.call("Allocate", self.s1, self.sliceCred(), requestRSpec(["1", "2"], start, stop),
                           {"geni_best_effort": True})
        self.assertEqual(answer["code"]["geni_code"], 0)
        self.assertEqual(len(answer["value"]["geni_slivers"]), 1)
        self.assertIn("nodes 2", answer["output"])
        self.assertIn('client_id="n1"', answer["value"]["geni_rspec"])

    def test_unboundNodes(self) -> None:
        start, stop = int(NOW) + 600, int(NOW) + 1200
        self.ok("Allocate", self.s2, self.sliceCred(slice_=self.p.s2), requestRSpec(["3"], start, stop), {})
        answer = self.call("Allocate", self.s1, self.sliceCred(),
                           requestRSpec(unbound="type:testing", count=3, start=start, stop=stop),
                           {"geni_best_effort": True})
        self.assertEqual(answer["code"]["geni_code"], 0, answer["output"])
        self.assertEqual(len(answer["value"]["geni_slivers"]), 2)
        self.assertIn("1 of 3 nodes", answer["output"])

    def test_nothingFree(self) -> None:
        start, stop = int(NOW) + 600, int(NOW) + 1200
        self.ok("Allocate", self.s2, self.sliceCred(slice_=self.p.s2), requestRSpec(["1"], start, stop), {})
        self.assertEqual(self.code("Allocate", self.s1, self.sliceCred(), requestRSpec(["1"], start, stop),
                                   {"geni_best_effort": True}), 7)
