# -*- test-case-name: tests.test_rspec_advertisement -*-
"""
Advertisement RSpecs (ListResources): every node, its tags, and the booked
windows of all users as NITOS leases, without owners.

Nodes are the core's L{am.core.model.Node} objects (anything with C{id},
C{status} and a C{tags} mapping). Booked windows are given by the caller
as C{(leaseId, nodeid, start, stop)} tuples; several tuples may share a
lease id to show one window over several nodes.
"""

from __future__ import annotations

import math

from collections.abc import Callable, Iterable
from typing import Any, Optional

from lxml import etree

from rspec.times import formatTime
from rspec.xml import (
    GENI_NS,
    MARVIN_NS,
    MARVIN_SCHEMA,
    OL_AD_SCHEMA,
    OL_NS,
    compress,
    makeRoot,
    managerURN,
    nodeURN,
    serialize,
    xmlText,
)

__all__ = ["advertisement", "DEFAULT_HARDWARE_TYPE", "SLIVER_TYPE"]

DEFAULT_HARDWARE_TYPE = "monroe-node"
SLIVER_TYPE = "container"

Lease = tuple[Any, Any, int, int]


def _active(node: Any) -> bool:
    return getattr(node, "status", "active") == "active"


def advertisement(
    nodes: Iterable[Any],
    leases: Iterable[Lease],
    authority: str,
    now: int,
    expires: int,
    compressed: bool = False,
    *,
    granularity: Optional[int] = None,
    padding: Optional[int] = None,
    usable: Callable[[Any], bool] = _active,
) -> str:
    """
    The advertisement RSpec for C{nodes}.

    @param leases: C{(leaseId, nodeid, start, stop)} for every booked window;
        windows of nodes not advertised are left out.
    @param now: UNIX time of generation, also the instant for C{available}.
    @param expires: UNIX time after which clients should ask again.
    @param compressed: return L{compress}ed text (C{geni_compressed}).
    @param granularity: slot size in seconds, advertised as
        C{marvin:granularity} (e.g. the recurrence step).
    @param padding: seconds kept free around every booking, advertised as
        C{marvin:padding}.
    @param usable: whether a node could be used at all; a node is available
        now when usable and no window covers C{now}. By default: its status
        is C{active}.
    @raise ValueError: if one lease id is given with two different windows,
        or a node id cannot appear in a URN (a caller's bug, not bad input).
    """
    root = makeRoot(
        "advertisement",
        now,
        expires,
        {"ol": OL_NS, "marvin": MARVIN_NS},
        [(OL_NS, OL_AD_SCHEMA), (MARVIN_NS, MARVIN_SCHEMA)],
    )
    if granularity is not None:
        etree.SubElement(root, f"{{{MARVIN_NS}}}granularity", seconds=str(int(granularity)))
    if padding is not None:
        etree.SubElement(root, f"{{{MARVIN_NS}}}padding", seconds=str(int(padding)))

    nodes = list(nodes)
    advertised = {str(node.id) for node in nodes}
    windows: dict[str, tuple[int, int]] = {}
    perNode: dict[str, list[tuple[int, int, str]]] = {}
    for leaseId, nodeid, start, stop in leases:
        nodeid, key = str(nodeid), str(leaseId)
        if nodeid not in advertised:
            continue
        window = (int(start), int(stop))
        if windows.setdefault(key, window) != window:
            raise ValueError(f"lease {key} is given with two different windows")
        perNode.setdefault(nodeid, []).append((window[0], window[1], key))

    for key, (start, stop) in sorted(windows.items(), key=lambda kv: (kv[1], kv[0])):
        etree.SubElement(
            root,
            f"{{{OL_NS}}}lease",
            id=xmlText(key),
            valid_from=formatTime(start),
            valid_until=formatTime(stop),
        )

    manager = managerURN(authority)
    for node in nodes:
        nodeid = str(node.id)
        booked = sorted(set(perNode.get(nodeid, ())))
        busy = any(start <= now < stop for start, stop, _ in booked)
        _node(root, node, authority, manager, usable(node) and not busy, booked)

    text = serialize(root)
    return compress(text) if compressed else text


def _node(root, node, authority, manager, available, booked) -> None:
    tags = {str(k): str(v) for k, v in dict(node.tags).items()}
    element = etree.SubElement(
        root,
        f"{{{GENI_NS}}}node",
        component_id=nodeURN(authority, node.id),
        component_manager_id=manager,
        component_name=xmlText(node.id),
        exclusive="true",
    )
    etree.SubElement(
        element, f"{{{GENI_NS}}}hardware_type", name=xmlText(tags.get("model") or DEFAULT_HARDWARE_TYPE)
    )
    etree.SubElement(element, f"{{{GENI_NS}}}sliver_type", name=SLIVER_TYPE)
    etree.SubElement(element, f"{{{GENI_NS}}}available", now="true" if available else "false")
    location = _location(tags)
    if location:
        etree.SubElement(element, f"{{{GENI_NS}}}location", **location)
    for name in sorted(tags):
        etree.SubElement(element, f"{{{MARVIN_NS}}}tag", name=xmlText(name), value=xmlText(tags[name]))
    for _, _, key in booked:
        etree.SubElement(element, f"{{{OL_NS}}}lease_ref", id_ref=xmlText(key))


def _location(tags: dict[str, str]) -> dict[str, str]:
    """
    C{<location>} attributes from the C{country}, C{latitude} and
    C{longitude} tags. GENI requires a country, so without one there is no
    location; coordinates that are not numbers are left out.
    """
    country = xmlText(tags.get("country", "")).strip()
    if not country:
        return {}
    location = {"country": country.upper() if len(country) == 2 else country}
    for name in ("latitude", "longitude"):
        value = tags.get(name, "").strip()
        try:
            if not math.isfinite(float(value)):
                continue
        except ValueError:
            continue
        location[name] = xmlText(value)
    return location
