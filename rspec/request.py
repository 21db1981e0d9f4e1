# -*- test-case-name: tests.test_rspec_request -*-
"""
Request RSpecs (GENI v3) into plain request objects.

What a request may say, and where:

  - C{<node client_id= component_id=? component_manager_id=? exclusive=?>}:
    bound when C{component_id} names one of our nodes, unbound otherwise.
  - in a node: C{<sliver_type name="container">} with an optional
    C{<disk_image url= | name=>}, C{<services><install url=>}, NITOS
    C{<ol:lease_ref id_ref=>} and, on unbound nodes only,
    C{<marvin:filter nodetypes= count=>}.
  - anywhere (usually top level): C{<ol:lease client_id= | id= valid_from=
    valid_until=>}. A lease with neither C{client_id} nor C{id} applies to
    every node that references no lease; a lease inside a node applies to it.
  - top level: C{<marvin:recurrence scheme= period= until=>} and
    C{<marvin:options shared= storage= traffic= duration=>} with
    C{<marvin:option name= value=>} children (deployment options).

Elements of other namespaces are ignored, and those that are children of a
node are kept as text so the manifest can hand them back (jFed keeps its
layout there). Rules about values (image whitelist, policy bounds, whether a
node exists) belong to the core; this module only refuses what cannot be
read or does not belong to this aggregate.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from typing import Optional

from attrs import field, frozen
from lxml import etree

from am.core.nodefilter import FilterSyntaxError
from am.core.nodefilter import parse as parseNodetypes
from am.trust.urn import parseURN
from rspec.times import parseTime
from rspec.xml import (
    GENI_NS,
    MARVIN_NS,
    MAX_DEPTH,
    MAX_SIZE,
    OL_NS_ALIASES,
    RSpecError,
    attr,
    managerURN,
    parseDocument,
    sameAuthority,
)

__all__ = [
    "LeaseSpec",
    "NodeSpec",
    "Recurrence",
    "RequestSpec",
    "SLIVER_TYPES",
    "parseRequest",
]

SLIVER_TYPES = ("container",)
_MAX_ID = 256
_MAX_IMAGE = 1024
_INTEGER = re.compile(r"\d{1,15}")
_IMAGE = re.compile(r"[^\s\x00-\x1f\x7f]+")
# Where each of our extension elements may appear (parent tag).
_MARVIN_PLACES = {
    "filter": f"{{{GENI_NS}}}node",
    "recurrence": f"{{{GENI_NS}}}rspec",
    "options": f"{{{GENI_NS}}}rspec",
    "option": f"{{{MARVIN_NS}}}options",
}
_AD_ONLY = ("tag", "granularity", "padding")
# Deployment option names that would shadow a dedicated attribute.
_RESERVED_OPTIONS = ("shared", "storage", "traffic", "duration", "recurrence", "period", "until")
_NODE = f"{{{GENI_NS}}}node"


@frozen
class LeaseSpec:
    """
    One time window (NITOS C{ol:lease}).

    @ivar clientId: the client's name for a new window, if any.
    @ivar id: the id of an existing lease (one we issued), if any.
    @ivar validFrom: UNIX start, C{None} only for a reference to an existing
        lease that does not restate its window.
    @ivar validUntil: UNIX end (exclusive), likewise.
    """

    clientId: Optional[str] = None
    id: Optional[str] = None
    validFrom: Optional[int] = None
    validUntil: Optional[int] = None

    @property
    def existing(self) -> bool:
        """
        Does this lease refer to one we issued earlier?
        """
        return self.id is not None


@frozen
class NodeSpec:
    """
    One requested node, bound (C{nodeid} set) or unbound.

    @ivar clientId: the client's name for it, echoed in the manifest.
    @ivar componentId: the requested component URN, as sent.
    @ivar nodeid: our node id from C{componentId}; C{None} if unbound.
    @ivar exclusive: the C{exclusive} attribute, C{None} when absent.
    @ivar sliverType: the C{sliver_type} name, C{None} when absent.
    @ivar image: the container image (install URL, else disk_image URL,
        else disk_image name), C{None} when absent.
    @ivar nodetypes: the C{marvin:filter} expression (unbound nodes only).
    @ivar count: how many nodes this unbound node stands for (C{marvin:filter
        count}, default 1).
    @ivar leases: the windows this node is booked in, in document order.
    @ivar extensions: foreign-namespace child elements, serialized, for the
        manifest to echo.
    """

    clientId: str
    componentId: Optional[str] = None
    nodeid: Optional[str] = None
    componentName: Optional[str] = None
    exclusive: Optional[bool] = None
    sliverType: Optional[str] = None
    image: Optional[str] = None
    nodetypes: Optional[str] = None
    count: int = 1
    leases: tuple[LeaseSpec, ...] = ()
    extensions: tuple[str, ...] = ()

    @property
    def bound(self) -> bool:
        """
        Does the client name a particular node?
        """
        return self.nodeid is not None


@frozen
class Recurrence:
    """
    C{marvin:recurrence}: repeat every window each C{period} seconds until
    C{until} (UNIX), as MONROE's C{recurrence=simple}.
    """

    scheme: str
    period: int
    until: int


@frozen
class RequestSpec:
    """
    Everything a request RSpec asks of this aggregate.

    @ivar nodes: our nodes, in document order (never empty).
    @ivar leases: every lease in the document, referenced or not.
    @ivar foreign: client ids of nodes left to other aggregates (only with
        C{ignoreForeign}).
    @ivar options: deployment options (C{marvin:option} name to value).
    """

    nodes: tuple[NodeSpec, ...]
    leases: tuple[LeaseSpec, ...] = ()
    recurrence: Optional[Recurrence] = None
    shared: Optional[bool] = None
    storage: Optional[int] = None
    traffic: Optional[int] = None
    duration: Optional[int] = None
    options: Mapping[str, str] = field(factory=dict)
    foreign: tuple[str, ...] = ()

    @property
    def images(self) -> set[str]:
        """
        The distinct container images the nodes name.
        """
        return {n.image for n in self.nodes if n.image is not None}


def parseRequest(
    xml: str | bytes,
    authority: str,
    *,
    maxSize: int = MAX_SIZE,
    maxDepth: int = MAX_DEPTH,
    ignoreForeign: bool = False,
    sliverTypes: Optional[tuple[str, ...]] = SLIVER_TYPES,
) -> RequestSpec:
    """
    Parse a GENI v3 request RSpec for the aggregate of C{authority}.

    @param authority: our URN authority, e.g. C{marvin.monroe-project.eu}.
    @param ignoreForeign: skip nodes whose C{component_manager_id} (or, when
        that is absent, C{component_id}) belongs to another aggregate instead
        of refusing them, for clients that send one multi-aggregate RSpec to
        every aggregate.
    @param sliverTypes: the accepted C{sliver_type} names; C{None} accepts any.
    @raise RSpecError: naming the first problem found.
    """
    root = parseDocument(xml, maxSize, maxDepth)
    if root.tag != f"{{{GENI_NS}}}rspec":
        raise RSpecError(
            f"the document root must be <rspec> in namespace {GENI_NS} "
            f"(GENI RSpec v3), not {_name(root)}"
        )
    kind = (root.get("type") or "").strip()
    if kind != "request":
        raise RSpecError(f'a request RSpec must have type="request", not {kind or "none"!r}')
    _checkMarvinPlaces(root)
    if root.find(f"{{{GENI_NS}}}link") is not None:
        raise RSpecError("links are not supported by this aggregate")

    leases, byKey, anonymous, owner = _leases(root)
    nodes: list[NodeSpec] = []
    foreign: list[str] = []
    seen: set[str] = set()
    for element in root.iterchildren(_NODE):
        node = _node(element, authority, byKey, anonymous, owner, ignoreForeign, sliverTypes)
        if node is None:
            foreign.append(attr(element, "client_id") or "")
            continue
        if node.clientId in seen:
            raise RSpecError(f"two nodes share the client_id {node.clientId!r}")
        seen.add(node.clientId)
        nodes.append(node)
    if not nodes:
        raise RSpecError(
            f"the request names no node of this aggregate ({managerURN(authority)})"
        )
    shared, storage, traffic, duration, options = _options(root)
    return RequestSpec(
        nodes=tuple(nodes),
        leases=tuple(leases),
        recurrence=_recurrence(root),
        shared=shared,
        storage=storage,
        traffic=traffic,
        duration=duration,
        options=options,
        foreign=tuple(foreign),
    )


# -- leases ------------------------------------------------------------------


def _leases(root: etree._Element):
    """
    Every C{ol:lease}, with the lookups nodes need: by C{client_id} and
    C{id}, the anonymous ones, and the node element each nested one is in.
    Elements themselves are the keys (not their C{id()}): the dict keeps the
    lxml proxies alive, so the same node yields the same proxy later.
    """
    tags = [f"{{{ns}}}lease" for ns in OL_NS_ALIASES]
    leases: list[LeaseSpec] = []
    byKey: dict[str, LeaseSpec] = {}
    anonymous: list[LeaseSpec] = []
    owner: dict[etree._Element, list[LeaseSpec]] = {}
    for element in root.iter(*tags):
        lease = _lease(element)
        leases.append(lease)
        parent = element.getparent()
        if parent is not None and parent.tag == _NODE:
            owner.setdefault(parent, []).append(lease)
        elif lease.clientId is None and lease.id is None:
            anonymous.append(lease)
        for key in (lease.clientId, lease.id):
            if key is None:
                continue
            if key in byKey and byKey[key] is not lease:
                raise RSpecError(f"two leases share the id {key!r}")
            byKey[key] = lease
    return leases, byKey, anonymous, owner


def _lease(element: etree._Element) -> LeaseSpec:
    clientId = _identifier(element, "client_id")
    leaseId = _identifier(element, "id")
    name = repr(clientId or leaseId) if (clientId or leaseId) else "without id"
    start, stop = attr(element, "valid_from"), attr(element, "valid_until")
    if leaseId is not None and start is None and stop is None:
        return LeaseSpec(clientId, leaseId)
    if start is None or stop is None:
        raise RSpecError(f"lease {name} needs both valid_from and valid_until")
    try:
        validFrom = parseTime(start, f"lease {name} valid_from")
        validUntil = parseTime(stop, f"lease {name} valid_until")
    except ValueError as e:
        raise RSpecError(str(e)) from None
    if validUntil <= validFrom:
        raise RSpecError(f"lease {name} ends (valid_until) before or when it starts (valid_from)")
    return LeaseSpec(clientId, leaseId, validFrom, validUntil)


# -- nodes -------------------------------------------------------------------


def _node(
    element: etree._Element,
    authority: str,
    byKey: Mapping[str, LeaseSpec],
    anonymous: list[LeaseSpec],
    owner: Mapping[etree._Element, list[LeaseSpec]],
    ignoreForeign: bool,
    sliverTypes: Optional[tuple[str, ...]],
) -> Optional[NodeSpec]:
    """
    One C{<node>}, or C{None} for another aggregate's node when ignored.
    """
    clientId = _identifier(element, "client_id")
    if clientId is None:
        raise RSpecError("every node needs a client_id")
    who = f"node {clientId!r}"

    manager = attr(element, "component_manager_id")
    if manager is not None:
        urn = _urn(manager, who, "component_manager_id")
        if urn.type.lower() != "authority" or not sameAuthority(urn, authority):
            if ignoreForeign:
                return None
            raise RSpecError(
                f"{who}: component_manager_id {manager} is not this aggregate "
                f"({managerURN(authority)})"
            )
    componentId = attr(element, "component_id")
    nodeid = None
    if componentId is not None:
        urn = _urn(componentId, who, "component_id")
        if urn.type.lower() != "node" or not sameAuthority(urn, authority):
            if ignoreForeign and manager is None:
                return None
            raise RSpecError(
                f"{who}: component_id {componentId} is not a node of this aggregate "
                f"(urn:publicid:IDN+{authority}+node+<id>)"
            )
        nodeid = urn.name

    sliverType, diskImage = _sliverType(element, who, sliverTypes)
    image = _image(element, who, diskImage)
    nodetypes, count = _filter(element, who, nodeid is not None)

    leases: list[LeaseSpec] = list(owner.get(element, ()))
    for ref in _olChildren(element, "lease_ref"):
        key = attr(ref, "id_ref")
        if key is None:
            raise RSpecError(f"{who}: lease_ref without id_ref")
        lease = byKey.get(key)
        if lease is None:
            raise RSpecError(f"{who}: lease_ref names an unknown lease {key!r}")
        if lease not in leases:
            leases.append(lease)
    if not leases:
        leases = list(anonymous)

    return NodeSpec(
        clientId=clientId,
        componentId=componentId,
        nodeid=nodeid,
        componentName=attr(element, "component_name"),
        exclusive=_boolean(element, "exclusive", who),
        sliverType=sliverType,
        image=image,
        nodetypes=nodetypes,
        count=count,
        leases=tuple(leases),
        extensions=tuple(_extensions(element)),
    )


def _sliverType(element, who, sliverTypes):
    """
    The sliver type name and the image its C{disk_image} names, if any.
    """
    found = element.findall(f"{{{GENI_NS}}}sliver_type")
    if not found:
        return None, None
    if len(found) > 1:
        raise RSpecError(f"{who}: more than one sliver_type")
    name = attr(found[0], "name")
    if name is None:
        raise RSpecError(f"{who}: sliver_type needs a name")
    if sliverTypes is not None and name not in sliverTypes:
        raise RSpecError(
            f"{who}: sliver_type {name!r} is not offered here (offered: {', '.join(sliverTypes)})"
        )
    images = []
    for disk in found[0].iterchildren(f"{{{GENI_NS}}}disk_image"):
        value = attr(disk, "url") or attr(disk, "name")
        if value is None:
            raise RSpecError(f"{who}: disk_image needs a url or a name")
        images.append(value)
    if len(set(images)) > 1:
        raise RSpecError(f"{who}: more than one disk_image")
    return name, (images[0] if images else None)


def _image(element, who, diskImage: Optional[str]) -> Optional[str]:
    """
    The container image: an install URL or the disk image; both may be
    given only if they agree.
    """
    candidates = []
    for services in element.iterchildren(f"{{{GENI_NS}}}services"):
        for install in services.iterchildren(f"{{{GENI_NS}}}install"):
            url = attr(install, "url")
            if url is None:
                raise RSpecError(f"{who}: install needs a url")
            candidates.append(url)
    if diskImage is not None:
        candidates.append(diskImage)
    distinct = list(dict.fromkeys(candidates))
    if len(distinct) > 1:
        raise RSpecError(f"{who}: names several container images: {', '.join(distinct)}")
    if not distinct:
        return None
    image = distinct[0]
    if len(image) > _MAX_IMAGE or not _IMAGE.fullmatch(image):
        raise RSpecError(f"{who}: the container image must be one word of at most {_MAX_IMAGE} characters")
    return image


def _filter(element, who, bound: bool) -> tuple[Optional[str], int]:
    found = element.findall(f"{{{MARVIN_NS}}}filter")
    if not found:
        return None, 1
    if len(found) > 1:
        raise RSpecError(f"{who}: more than one marvin:filter")
    if bound:
        raise RSpecError(f"{who}: marvin:filter applies to unbound nodes only (drop component_id)")
    nodetypes = found[0].get("nodetypes")
    if nodetypes is not None:
        try:
            parseNodetypes(nodetypes)
        except FilterSyntaxError as e:
            raise RSpecError(f"{who}: marvin:filter {e}") from None
    count = _integer(found[0], "count", f"{who}: marvin:filter", minimum=1)
    return nodetypes, (1 if count is None else count)


def _extensions(element: etree._Element) -> list[str]:
    """
    The node's children from namespaces we do not interpret, as text.
    """
    ours = {GENI_NS, MARVIN_NS, *OL_NS_ALIASES}
    kept = []
    for child in element:
        if not isinstance(child.tag, str):
            continue
        namespace = etree.QName(child).namespace
        if namespace not in ours:
            # A detached copy carries only the namespaces it uses.
            detached = copy.deepcopy(child)
            detached.tail = None
            etree.cleanup_namespaces(detached)
            kept.append(etree.tostring(detached, encoding="unicode"))
    return kept


def _olChildren(element: etree._Element, name: str):
    for ns in OL_NS_ALIASES:
        yield from element.iterchildren(f"{{{ns}}}{name}")


# -- rspec-level extensions ----------------------------------------------------


def _checkMarvinPlaces(root: etree._Element) -> None:
    """
    Our own elements must be known and in their place: a typo in our
    namespace is an error, not an ignored extension.
    """
    for element in root.iter(f"{{{MARVIN_NS}}}*"):
        local = etree.QName(element).localname
        if local in _AD_ONLY:
            raise RSpecError(f"marvin:{local} belongs in advertisements, not in requests")
        place = _MARVIN_PLACES.get(local)
        if place is None:
            raise RSpecError(f"unknown extension element marvin:{local}")
        parent = element.getparent()
        if parent is None or parent.tag != place:
            raise RSpecError(f"marvin:{local} must be a child of {_name(place)}")
    for local in ("recurrence", "options"):
        if len(root.findall(f"{{{MARVIN_NS}}}{local}")) > 1:
            raise RSpecError(f"more than one marvin:{local}")


def _recurrence(root: etree._Element) -> Optional[Recurrence]:
    element = root.find(f"{{{MARVIN_NS}}}recurrence")
    if element is None:
        return None
    scheme = attr(element, "scheme")
    if scheme != "simple":
        raise RSpecError(f'marvin:recurrence scheme must be "simple", not {scheme!r}')
    period = _integer(element, "period", "marvin:recurrence", minimum=1)
    if period is None:
        raise RSpecError("marvin:recurrence needs a period (seconds)")
    until = attr(element, "until")
    if until is None:
        raise RSpecError("marvin:recurrence needs until (an RFC 3339 time)")
    try:
        return Recurrence(scheme, period, parseTime(until, "marvin:recurrence until"))
    except ValueError as e:
        raise RSpecError(str(e)) from None


def _options(root: etree._Element):
    element = root.find(f"{{{MARVIN_NS}}}options")
    if element is None:
        return None, None, None, None, {}
    what = "marvin:options"
    shared = _boolean(element, "shared", what)
    storage = _integer(element, "storage", what, minimum=0)
    traffic = _integer(element, "traffic", what, minimum=0)
    duration = _integer(element, "duration", what, minimum=1)
    options: dict[str, str] = {}
    for option in element.iterchildren(f"{{{MARVIN_NS}}}option"):
        name = _identifier(option, "name")
        if name is None:
            raise RSpecError("marvin:option needs a name")
        if name in _RESERVED_OPTIONS:
            raise RSpecError(f"marvin:option {name!r}: use the {name} attribute of marvin:options")
        if name in options:
            raise RSpecError(f"marvin:option {name!r} is given twice")
        value = option.get("value")
        if value is None:
            raise RSpecError(f"marvin:option {name!r} needs a value")
        options[name] = value
    return shared, storage, traffic, duration, options


# -- values ------------------------------------------------------------------


def _urn(text: str, who: str, name: str):
    try:
        return parseURN(text)
    except ValueError as e:
        raise RSpecError(f"{who}: {name} {text[:200]!r} is not a valid URN ({e})") from None


def _identifier(element: etree._Element, name: str) -> Optional[str]:
    value = attr(element, name)
    if value is not None and len(value) > _MAX_ID:
        raise RSpecError(f"{_name(element.tag)} {name} is longer than {_MAX_ID} characters")
    return value


def _boolean(element: etree._Element, name: str, who: str) -> Optional[bool]:
    value = attr(element, name)
    if value is None:
        return None
    if value.lower() in ("true", "1"):
        return True
    if value.lower() in ("false", "0"):
        return False
    raise RSpecError(f"{who}: {name} must be true or false, not {value[:40]!r}")


def _integer(element: etree._Element, name: str, who: str, minimum: int) -> Optional[int]:
    value = attr(element, name)
    if value is None:
        return None
    if not _INTEGER.fullmatch(value) or int(value) < minimum:
        raise RSpecError(f"{who}: {name} must be an integer of at least {minimum}, not {value[:40]!r}")
    return int(value)


def _name(tagOrElement) -> str:
    """
    A tag for humans: C{<prefix:local>} for known namespaces.
    """
    tag = tagOrElement if isinstance(tagOrElement, str) else tagOrElement.tag
    if not isinstance(tag, str):
        return "a non-element"
    qname = etree.QName(tag)
    prefix = {GENI_NS: "", MARVIN_NS: "marvin:"}.get(qname.namespace or "", None)
    if prefix is None:
        return f"<{qname.localname}> in namespace {qname.namespace or '(none)'}"
    return f"<{prefix}{qname.localname}>"
