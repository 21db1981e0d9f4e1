# -*- test-case-name: tests.test_geni_api -*-
"""
The AM API v3 methods over the scheduling core: trust first, then RSpec, then
one core transaction, then the answer. Nothing here decides a scheduling rule.

A slice is one experiment (its URN kept on the experiment), a sliver is one
schedule (one node, one window); Allocate books with C{allocated} schedules that
nodes do not see until Provision.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

import attrs
from twisted.logger import Logger

from am.core import states
from am.core.interfaces import IScheduler, IStoreTransaction
from am.core.model import Schedule, User
from am.core.requests import Allocation
from am.core.slices import Slice, SliceRequest, SliceTarget, SliverName
from am.geni import calllog
from am.geni.envelope import BADARGS, BADVERSION, REFUSED, SEARCHFAILED, UNSUPPORTED, GeniError, result
from am.geni.statemap import UNALLOCATED, geniStates
from am.trust.certs import Caller
from am.trust.gate import Grant, Trust
from am.trust.urn import parseURN
from rspec.advertisement import advertisement
from rspec.manifest import SliverView, manifest
from rspec.request import RequestSpec, parseRequest
from rspec.times import formatTime, parseTime
from rspec.xml import GENI_NS, MARVIN_NS, PROXY_NS, nodeURN, sliverIdFromURN

log = Logger()

GENI_SCHEMA_BASE = "http://www.geni.net/resources/rspec/3"
EXTENSIONS = [
    "http://nitlab.inf.uth.gr/schema/sfa/rspec/1/request-reservation.xsd",
    "http://nitlab.inf.uth.gr/schema/sfa/rspec/1/ad-reservation.xsd",
    MARVIN_NS,
    PROXY_NS,
]
USER_CACHE_SECONDS = 10
ACTIONS = ("geni_start", "geni_restart", "geni_stop", "geni_update_users")


@attrs.frozen
class Settings:
    """
    What the GENI face needs to know about this deployment.
    """

    authority: str
    publicURL: str
    defaultDuration: int = 3600
    defaultImage: Optional[str] = None
    adCacheSeconds: int = 60
    codeVersion: str = "0.1.0"
    # Where a sliver's results are listed (REST, docs/results.md): this plus
    # "<sliver id>/results"; None leaves them out of manifests.
    resultsBase: Optional[str] = None


def _rspecVersion(options: dict[str, Any], required: bool = True) -> None:
    version = options.get("geni_rspec_version")
    if version is None:
        if required:
            raise GeniError(BADARGS, "options.geni_rspec_version is required ({type: GENI, version: 3})")
        return
    if not isinstance(version, dict):
        raise GeniError(BADARGS, "options.geni_rspec_version must be a struct {type, version}")
    kind, number = str(version.get("type", "")).lower(), str(version.get("version", ""))
    if kind != "geni" or number != "3":
        raise GeniError(BADVERSION, f"RSpec type {version.get('type')!r} version {number!r} is not supported; use GENI 3")


def _time(value: Any, what: str) -> int:
    """
    An RFC 3339 time from the client, or BADARGS naming the argument.
    """
    try:
        return parseTime(value, what)
    except ValueError as e:
        raise GeniError(BADARGS, str(e)[:200]) from None


def _truthy(value: Any) -> bool:
    """
    A Marvin flag option: XML-RPC booleans, numbers, or strings such as "1" and "true".
    """
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


def _checkOptions(options: Any) -> dict[str, Any]:
    if not isinstance(options, dict):
        raise GeniError(BADARGS, "options must be a struct")
    return options


def _checkURNs(urns: Any) -> list[str]:
    if not isinstance(urns, list) or not urns or not all(isinstance(u, str) for u in urns):
        raise GeniError(BADARGS, "urns must be a non-empty array of URN strings")
    if len(urns) > 10000:
        raise GeniError(BADARGS, "too many URNs")
    return urns


class AggregateManager:
    """
    The GENI face's logic; L{am.geni.xmlrpc} puts it on the wire.
    """

    def __init__(
        self, scheduler: IScheduler, trust: Trust, settings: Settings,
        usersVersion: Optional[Callable[[], Optional[int]]] = None,
    ) -> None:
        self.scheduler = scheduler
        self.trust = trust
        self.settings = settings
        self.amURN = f"urn:publicid:IDN+{settings.authority}+authority+am"
        self._adCache: dict[tuple[bool, bool], tuple[int, str]] = {}
        # Active users by URN, so a call need not wait for a store read; any
        # change here clears it. Changes made by another controller on the
        # same database: with usersVersion (PostgreSQL, am/store/pgusers.py)
        # an entry holds while it has not moved (nothing is kept while it is
        # None); without, entries live USER_CACHE_SECONDS at most.
        self._usersVersion = usersVersion
        self._userCache: dict[str, tuple[int, Optional[int], Any]] = {}
        scheduler.events.subscribe(lambda event: self._adCache.clear())
        scheduler.events.subscribe(lambda event: self._userCache.clear())

    # -- helpers -------------------------------------------------------------

    def _status(self, schedule: Schedule, error: str = "") -> dict[str, Any]:
        allocationState, operational = geniStates(schedule.status, schedule.deploymentOptions.get("run_state"))
        expires = schedule.expires if schedule.status == states.ALLOCATED else schedule.stop
        shown = formatTime(expires)
        asked = schedule.deploymentOptions.get("geni_expires_text")
        if isinstance(asked, str):
            try:
                if parseTime(asked) == expires:
                    shown = asked  # echo a renewal exactly as the client wrote it
            except Exception:
                pass
        return {
            "geni_sliver_urn": self._sliverURN(schedule),
            "geni_expires": shown,
            "geni_allocation_status": allocationState,
            "geni_operational_status": operational,
            "geni_error": error or (schedule.reason if schedule.status == states.FAILED else ""),
            "geni_start_time": formatTime(schedule.start),
            "geni_end_time": formatTime(schedule.stop),
            "marvin_status": schedule.statusText,
        }

    def _sliverURN(self, schedule: Schedule) -> str:
        return f"urn:publicid:IDN+{self.settings.authority}+sliver+{schedule.id}"

    def _manifest(self, txn: IStoreTransaction, schedules: list[Schedule], compressed: bool = False) -> str:
        nodes = {n.id: n for n in txn.listNodes()} if schedules else {}
        views = []
        for s in schedules:
            node = nodes.get(s.nodeid)
            if node is None:
                continue
            options = s.deploymentOptions
            views.append(
                SliverView.fromSchedule(
                    s,
                    node,
                    clientId=options.get("geni_client_id"),
                    image=options.get("script"),
                    leaseClientId=options.get("geni_lease_client_id"),
                    extensions=tuple(options.get("geni_extensions", ())),
                    resultsURL=(
                        f"{self.settings.resultsBase}{s.id}/results" if self.settings.resultsBase else None
                    ),
                )
            )
        return manifest(views, self.settings.authority, self.scheduler.now(), compressed=compressed)

    def _target(self, urns: list[str]) -> SliceTarget:
        """
        One slice URN, or sliver URNs of one slice, as the core names them.
        """
        sliceURNs, sliverIds = [], []
        for urn in urns:
            try:
                parsed = parseURN(urn)
            except Exception:
                raise GeniError(BADARGS, f"not a URN: {urn[:200]!r}") from None
            if parsed.type == "slice":
                sliceURNs.append(urn)
            elif parsed.type == "sliver":
                try:
                    sliverIds.append(sliverIdFromURN(urn, self.settings.authority))
                except Exception:
                    raise GeniError(SEARCHFAILED, f"sliver {urn[:200]} is not of this aggregate") from None
            else:
                raise GeniError(BADARGS, f"{urn[:200]} is neither a slice nor a sliver URN")
        if sliceURNs and sliverIds or len(sliceURNs) > 1:
            raise GeniError(BADARGS, "give exactly one slice URN, or sliver URNs of one slice")
        if sliceURNs:
            return SliceTarget(sliceURN=sliceURNs[0])
        return SliceTarget(sliverIds=tuple(sliverIds))

    async def _authorized(
        self, caller: Caller, method: str, target: Optional[str], credentials: Any, options: dict
    ) -> tuple[Grant, User]:
        grant = self.trust.authorize(caller, method, target=target, credentials=credentials, options=options)
        now = self.scheduler.now()
        following = self._usersVersion
        version = following() if following is not None else None
        seen = self._userCache.get(grant.callerURN)
        if seen is not None and (
            now - seen[0] < USER_CACHE_SECONDS if following is None else version is not None and seen[1] == version
        ):
            return grant, seen[2]
        user = await self.scheduler.read(lambda txn: txn.findUser(urn=grant.callerURN))
        if user is None or not user.active:
            # First call of this user (or an invalidated one, refused there).
            user = await self.scheduler.userForURN(grant.callerURN)
        if len(self._userCache) >= 4096:
            self._userCache.clear()
        if following is None or version is not None:
            # (The version from before the read: a change heard since makes it stale.)
            self._userCache[grant.callerURN] = (now, version, user)
        return grant, user

    async def _sliceFor(
        self, caller: Caller, method: str, urns: Any, credentials: Any, options: dict
    ) -> tuple[SliceTarget, Slice, Grant, User]:
        """
        The target a call names, the slice as it is now (to authorize against
        its URN and answer queries), the grant and the caller. Commands
        re-resolve the target in their own transaction.
        """
        target = self._target(_checkURNs(urns))
        found = await self.scheduler.resolveSlice(target)
        calllog.noteSlice(found.urn)
        grant, user = await self._authorized(caller, method, found.urn, credentials, options)
        return target, found, grant, user

    # -- methods -------------------------------------------------------------

    async def GetVersion(self, caller: Caller, options: Any = None) -> dict[str, Any]:
        if options is not None:
            _checkOptions(options)
        rspecVersion = lambda schema: {  # noqa: E731
            "type": "GENI",
            "version": "3",
            "schema": f"{GENI_SCHEMA_BASE}/{schema}.xsd",
            "namespace": GENI_NS,
            "extensions": list(EXTENSIONS),
        }
        value = {
            "geni_api": 3,
            "geni_api_versions": {"3": self.settings.publicURL},
            "geni_request_rspec_versions": [rspecVersion("request")],
            "geni_ad_rspec_versions": [rspecVersion("ad")],
            "geni_credential_types": [
                {"geni_type": "geni_sfa", "geni_version": "3"},
                {"geni_type": "geni_sfa", "geni_version": "2"},
                {"geni_type": "geni_abac", "geni_version": "1"},
            ],
            "geni_single_allocation": 1,  # an int: geni-tools' checker refuses a boolean
            "geni_allocate": "geni_single",
            "geni_am_type": "marvin",
            "geni_am_code": self.settings.codeVersion,
            "urn": self.amURN,
            "geni_am_urn": self.amURN,
            "hrn": self.settings.authority,
        }
        answer = result(value)
        answer["geni_api"] = 3
        return answer

    async def ListResources(self, caller: Caller, credentials: Any, options: Any) -> dict[str, Any]:
        options = _checkOptions(options)
        if "geni_slice_urn" in options:
            raise GeniError(BADARGS, "geni_slice_urn is not a v3 option: use Describe")
        _rspecVersion(options)
        await self._authorized(caller, "ListResources", None, credentials, options)
        key = (bool(options.get("geni_available")), bool(options.get("geni_compressed")))
        now = self.scheduler.now()
        cached = self._adCache.get(key)
        if cached and now - cached[0] < self.settings.adCacheSeconds:
            return result(cached[1])
        offer = await self.scheduler.offer(key[0])
        policy = self.scheduler.policy
        text = advertisement(
            offer.nodes, offer.leases, self.settings.authority, now, now + self.settings.adCacheSeconds,
            key[1], granularity=policy.recurrenceStep, padding=policy.padding,
            usable=lambda node: node.id in offer.usable,
        )
        self._adCache[key] = (now, text)
        return result(text)

    async def Allocate(self, caller: Caller, sliceURN: Any, credentials: Any, rspec: Any, options: Any):
        options = _checkOptions(options)
        if not isinstance(sliceURN, str):
            raise GeniError(BADARGS, "slice_urn must be a string")
        try:
            if parseURN(sliceURN).type != "slice":
                raise ValueError()
        except Exception:
            raise GeniError(BADARGS, f"{sliceURN[:200]!r} is not a slice URN") from None
        if not isinstance(rspec, str) or not rspec.strip():
            raise GeniError(BADARGS, "rspec must be a non-empty request RSpec string")
        grant, user = await self._authorized(caller, "Allocate", sliceURN, credentials, options)
        spec = parseRequest(rspec, self.settings.authority, ignoreForeign=True)
        request = self._request(spec, sliceURN, options, grant)
        if _truthy(options.get("marvin_dryrun")):
            return self._preview(*await self.scheduler.allocateSlice(attrs.evolve(request, dryrun=True), user.id))
        schedules, missing = await self.scheduler.allocateSlice(request, user.id)
        text = await self.scheduler.read(self._manifest, schedules)
        output = f"best effort: not allocated: {missing}" if missing else ""
        return result({"geni_rspec": text, "geni_slivers": [self._status(s) for s in schedules]}, output)

    def _preview(self, booking: Allocation, missing: str) -> dict[str, Any]:
        """
        The answer to an Allocate dry run (C{marvin_dryrun}): the cost per
        quota, what would remain and when each quota resets; nothing booked.
        """
        return result({
            "marvin_dryrun": True,
            "marvin_charged": dict(booking.charged),
            "marvin_remaining": dict(booking.remaining),
            "marvin_resets": {kind: formatTime(when) for kind, when in booking.resets.items()},
            "marvin_slivers": [
                {"marvin_component_id": nodeURN(self.settings.authority, s.nodeid),
                 "geni_start_time": formatTime(s.start), "geni_end_time": formatTime(s.stop)}
                for s in booking.schedules
            ],
        }, f"dry run: nothing was allocated{'; best effort would leave out ' + missing if missing else ''}")

    def _request(self, spec: RequestSpec, sliceURN: str, options: dict, grant: Grant) -> SliceRequest:
        """
        The request RSpec and options as plain values; the core decides the window.
        """
        images = spec.images
        if len(images) > 1:
            raise GeniError(BADARGS, "one container image per Allocate: the nodes name different images")
        image = next(iter(images), None) or self.settings.defaultImage
        if not image:
            raise GeniError(BADARGS, "name the container image with <services><install url=...> or <disk_image>")
        bound = [n for n in spec.nodes if n.bound]
        unbound = [n for n in spec.nodes if not n.bound]
        if bound and unbound:
            raise GeniError(BADARGS, "bind every node (component_id) or none in one Allocate")
        filters = {n.nodetypes or "" for n in unbound}
        if len(filters) > 1:
            raise GeniError(BADARGS, "unbound nodes of one Allocate must share one marvin:filter")
        windows = {(lease.validFrom, lease.validUntil) for n in spec.nodes for lease in n.leases}
        if len(windows) > 1:
            raise GeniError(BADARGS, "one window per Allocate: the nodes reference different leases")
        start, stop = (next(iter(windows)) if windows else (None, None))
        if start is None and "geni_start_time" in options:
            start = _time(options["geni_start_time"], "geni_start_time")
        if stop is None and "geni_end_time" in options:
            stop = _time(options["geni_end_time"], "geni_end_time")
        names = {
            n.nodeid: SliverName(n.clientId, n.leases[0].clientId if n.leases else None, tuple(n.extensions))
            for n in bound
        }
        unboundNames: list[SliverName] = []
        for n in unbound:
            lease = n.leases[0].clientId if n.leases else None
            unboundNames += [
                SliverName(n.clientId if n.count == 1 else f"{n.clientId}-{k}", lease, tuple(n.extensions))
                for k in range(n.count)
            ]
        recurrence = spec.recurrence
        notify = options.get("marvin_notify")
        if notify is not None and not isinstance(notify, str):
            raise GeniError(BADARGS, "options.marvin_notify must be an http(s) URL string")
        return SliceRequest(
            sliceURN=sliceURN,
            name=parseURN(sliceURN).name,
            image=image,
            nodes=tuple(n.nodeid for n in bound) if bound else None,
            nodecount=sum(n.count for n in unbound),
            nodetypes=filters.pop() if filters else "",
            start=start,
            stop=stop,
            duration=spec.duration,
            defaultDuration=self.settings.defaultDuration,
            notAfter=grant.expires.timestamp() if grant.expires is not None else None,
            shared=bool(spec.shared),
            recurrence=recurrence.scheme if recurrence else None,
            period=recurrence.period if recurrence else None,
            until=recurrence.until if recurrence else None,
            storage=spec.storage or 0,
            traffic=spec.traffic or 0,
            options=dict(spec.options),
            names=names,
            unbound=tuple(unboundNames),
            notify=notify,
            bestEffort=bool(options.get("geni_best_effort")),
            heal=_truthy(options.get("marvin_heal")),
        )

    async def Describe(self, caller: Caller, urns: Any, credentials: Any, options: Any):
        options = _checkOptions(options)
        _rspecVersion(options)
        target, found, grant, user = await self._sliceFor(caller, "Describe", urns, credentials, options)
        text = await self.scheduler.read(self._manifest, found.schedules, bool(options.get("geni_compressed")))
        return result({
            "geni_rspec": text,
            "geni_urn": found.urn,
            "geni_slivers": [self._status(s) for s in found.schedules],
        })

    async def Status(self, caller: Caller, urns: Any, credentials: Any, options: Any):
        options = _checkOptions(options)
        target, found, grant, user = await self._sliceFor(caller, "Status", urns, credentials, options)
        if not found.schedules:
            # Never booked here (jFed's tester expects an error), or every
            # sliver deleted or past its end time: gone slivers are not listed.
            raise GeniError(SEARCHFAILED, f"no slivers of {found.urn} at this aggregate")
        return result({"geni_urn": found.urn, "geni_slivers": [self._status(s) for s in found.schedules]})

    def _requireSlivers(self, found: Slice) -> None:
        # An early answer; the command decides again in its own transaction.
        if not found.schedules:
            raise GeniError(SEARCHFAILED, f"no slivers in {found.urn} at this aggregate")

    async def Provision(self, caller: Caller, urns: Any, credentials: Any, options: Any):
        options = _checkOptions(options)
        _rspecVersion(options)
        target, found, grant, user = await self._sliceFor(caller, "Provision", urns, credentials, options)
        self._requireSlivers(found)
        done = await self.scheduler.provision(target, user.id, self._users(options))
        text = await self.scheduler.read(self._manifest, done)
        return result({"geni_rspec": text, "geni_slivers": [self._status(s) for s in done]})

    def _users(self, options: dict) -> dict[str, Any]:
        users = options.get("geni_users")
        if users is None:
            return {}
        if not isinstance(users, list) or not all(isinstance(u, dict) for u in users):
            raise GeniError(BADARGS, "geni_users must be an array of {urn, keys}")
        keys, logins = [], []
        for u in users:
            userKeys = u.get("keys", [])
            if not isinstance(userKeys, list) or not all(isinstance(k, str) for k in userKeys):
                raise GeniError(BADARGS, "geni_users keys must be an array of strings")
            keys += [k.strip() for k in userKeys if k.strip()][:32]
            urn = u.get("urn")
            if isinstance(urn, str) and "+user+" in urn:
                logins.append(urn.rsplit("+", 1)[-1])
        return {"ssh_keys": keys, "geni_logins": logins}

    async def PerformOperationalAction(self, caller: Caller, urns: Any, credentials: Any, action: Any, options: Any):
        options = _checkOptions(options)
        if not isinstance(action, str) or action not in ACTIONS:
            raise GeniError(UNSUPPORTED, f"unsupported action {str(action)[:64]!r}; supported: {', '.join(ACTIONS)}")
        target, found, grant, user = await self._sliceFor(
            caller, "PerformOperationalAction", urns, credentials, options
        )
        self._requireSlivers(found)
        updates = self._users(options) if action == "geni_update_users" else {}
        fresh = await self.scheduler.performAction(target, user.id, action.removeprefix("geni_"), updates)
        return result([self._status(s) for s in fresh])

    async def Renew(self, caller: Caller, urns: Any, credentials: Any, expiration: Any, options: Any):
        options = _checkOptions(options)
        target, found, grant, user = await self._sliceFor(caller, "Renew", urns, credentials, options)
        self._requireSlivers(found)
        stop = _time(expiration, "expiration_time")
        if grant.expires is not None and stop > grant.expires.timestamp():
            raise GeniError(REFUSED, "cannot renew past the slice credential's expiry "
                            f"({formatTime(grant.expires.timestamp())})")
        fresh, errors = await self.scheduler.renewSlivers(
            target, user.id, stop, expiration, bool(options.get("geni_best_effort"))
        )
        return result([self._status(s, errors.get(s.id, "")) for s in fresh])

    async def Delete(self, caller: Caller, urns: Any, credentials: Any, options: Any):
        options = _checkOptions(options)
        target, found, grant, user = await self._sliceFor(caller, "Delete", urns, credentials, options)
        self._requireSlivers(found)
        ended = await self.scheduler.endSlivers(target, user.id)
        now = self.scheduler.now()
        return result([
            {"geni_sliver_urn": self._sliverURN(s), "geni_allocation_status": UNALLOCATED,
             "geni_expires": formatTime(now), "geni_error": ""}
            for s in ended
        ])

    async def Shutdown(self, caller: Caller, sliceURN: Any, credentials: Any, options: Any):
        options = _checkOptions(options)
        if not isinstance(sliceURN, str):
            raise GeniError(BADARGS, "slice_urn must be a string")
        target = self._target([sliceURN])
        if target.sliceURN is None:
            raise GeniError(BADARGS, "Shutdown takes a slice URN")
        grant, _ = await self._authorized(caller, "Shutdown", target.sliceURN, credentials, options)
        await self.scheduler.shutdownSlice(target.sliceURN, grant.callerURN)
        return result(True)
