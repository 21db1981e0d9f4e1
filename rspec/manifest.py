# -*- test-case-name: tests.test_rspec_manifest -*-
"""
Manifest RSpecs (Allocate, Provision, Describe): what a slice holds here.

One sliver is one schedule: one node in one window. Slivers with the same
client id on the same node (the windows of a recurring or multi-lease
request) share one C{<node>} element, whose C{sliver_id} is the earliest
one; every sliver also appears as its own C{ol:lease} carrying its
C{sliver_id}, and the node refers to each with C{ol:lease_ref}.

How to log in comes from the sliver (when the caller knows, e.g. a
per-schedule tunnel port) or else from the node's tags:

  - C{login_host}: the host name users SSH to (no login is shown without it);
  - C{login_port}: its port (default 22);
  - C{login_user}: the user name when the caller gives none (default C{root});
  - C{ssh_proxy}: C{user@host[:port]} of an SSH gateway, for nodes behind NAT
    (mobile MONROE nodes); then the manifest also carries a login for the
    gateway and the jFed proxy extension C{<proxy:proxy proxy= for=>}.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any, Optional

from attrs import frozen
from lxml import etree

from rspec.times import formatTime
from rspec.xml import (
    GENI_NS,
    MARVIN_NS,
    OL_NS,
    PROXY_NS,
    RSpecError,
    compress,
    makeRoot,
    managerURN,
    nodeURN,
    parseDocument,
    serialize,
    sliverURN,
    xmlText,
)

__all__ = ["Login", "SliverView", "manifest", "loginsOf", "parseLogin"]

_LOGIN = re.compile(r"(?:([^@\s:]+)@)?([A-Za-z0-9.-]+|\[[0-9A-Fa-f:.]+\])(?::(\d{1,5}))?")


@frozen
class Login:
    """
    Where and as whom to SSH.
    """

    hostname: str
    port: int = 22
    username: str = "root"

    @property
    def address(self) -> str:
        """
        C{user@host:port}, the form of the jFed proxy extension.
        """
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{self.username}@{host}:{self.port}"


def parseLogin(text: object, defaultUser: str = "root") -> Optional[Login]:
    """
    C{[user@]host[:port]} as a L{Login}; C{None} if C{text} is not one
    (tags are operator data: a bad one hides the login instead of failing
    the manifest).
    """
    if not isinstance(text, str):
        return None
    match = _LOGIN.fullmatch(text.strip())
    if match is None:
        return None
    port = int(match.group(3) or 22)
    if not 0 < port < 65536:
        return None
    return Login(match.group(2).strip("[]"), port, match.group(1) or defaultUser)


@frozen
class SliverView:
    """
    One sliver as the manifest shows it.

    @ivar id: the schedule id; the sliver URN and the C{ol:lease} id derive
        from it.
    @ivar node: the node (anything with C{id} and a C{tags} mapping, such as
        L{am.core.model.Node}).
    @ivar clientId: the client's name for the node, from the request.
    @ivar start: UNIX start of the window.
    @ivar stop: UNIX end of the window (exclusive).
    @ivar image: the container image, shown as the sliver type's disk image.
    @ivar leaseClientId: the client's name for the window, from the request.
    @ivar usernames: login names to show; default the C{login_user} tag.
    @ivar loginHost: overrides the C{login_host} tag.
    @ivar loginPort: overrides the C{login_port} tag.
    @ivar proxy: C{user@host[:port]}, overrides the C{ssh_proxy} tag.
    @ivar extensions: foreign elements of the request's node
        (L{rspec.request.NodeSpec.extensions}), echoed back.
    @ivar resultsURL: where the sliver's results are listed (REST), shown as
        C{<marvin:results sliver_id=... href=.../>} in its node.
    """

    id: int
    node: Any
    clientId: str
    start: int
    stop: int
    image: Optional[str] = None
    leaseClientId: Optional[str] = None
    sliverType: str = "container"
    exclusive: bool = True
    usernames: tuple[str, ...] = ()
    loginHost: Optional[str] = None
    loginPort: Optional[int] = None
    proxy: Optional[str] = None
    extensions: tuple[str, ...] = ()
    resultsURL: Optional[str] = None

    @classmethod
    def fromSchedule(cls, schedule: Any, node: Any, clientId: Optional[str] = None, **kwargs: Any) -> "SliverView":
        """
        The view of a core L{am.core.model.Schedule} on C{node}; the client id
        defaults to the node id for slivers made without a request.
        """
        return cls(
            id=schedule.id,
            node=node,
            clientId=clientId or str(node.id),
            start=schedule.start,
            stop=schedule.stop,
            exclusive=not schedule.shared,
            **kwargs,
        )


def loginsOf(sliver: SliverView) -> tuple[list[Login], Optional[Login]]:
    """
    The node logins of C{sliver} and its SSH gateway, if any.
    """
    tags = dict(sliver.node.tags)
    host = sliver.loginHost or tags.get("login_host")
    if not host:
        return [], None
    port: Optional[int] = sliver.loginPort
    if port is None:
        text = str(tags.get("login_port", "22")).strip()
        port = int(text) if text.isdigit() else 0
    if not 0 < port < 65536:
        return [], None
    users = sliver.usernames or (tags.get("login_user") or "root",)
    logins = [Login(str(host), port, str(user)) for user in users]
    return logins, parseLogin(sliver.proxy or tags.get("ssh_proxy"))


def manifest(
    slivers: Iterable[SliverView],
    authority: str,
    now: int,
    expires: Optional[int] = None,
    compressed: bool = False,
) -> str:
    """
    The manifest RSpec of C{slivers}; none gives a valid empty manifest.

    @param now: UNIX time of generation.
    @param expires: UNIX time shown as the manifest's C{expires} (clients
        read the slice's sliver expiry there), if any.
    @param compressed: return L{compress}ed text (C{geni_compressed}).
    @raise ValueError: if a node or sliver id cannot appear in a URN.
    """
    root = makeRoot("manifest", now, expires, {"ol": OL_NS, "proxy": PROXY_NS}, [])
    groups: dict[tuple[str, str], list[SliverView]] = {}
    for sliver in slivers:
        groups.setdefault((sliver.clientId, str(sliver.node.id)), []).append(sliver)
    ordered = [sorted(group, key=lambda s: (s.start, s.id)) for group in groups.values()]

    for sliver in sorted((s for g in ordered for s in g), key=lambda s: (s.start, s.id)):
        lease = etree.SubElement(root, f"{{{OL_NS}}}lease", id=str(sliver.id))
        if sliver.leaseClientId:
            lease.set("client_id", xmlText(sliver.leaseClientId))
        lease.set("valid_from", formatTime(sliver.start))
        lease.set("valid_until", formatTime(sliver.stop))
        lease.set("sliver_id", sliverURN(authority, sliver.id))

    manager = managerURN(authority)
    for group in ordered:
        _node(root, group, authority, manager)

    text = serialize(root)
    return compress(text) if compressed else text


def _node(root, group: list[SliverView], authority: str, manager: str) -> None:
    first = group[0]
    element = etree.SubElement(
        root,
        f"{{{GENI_NS}}}node",
        client_id=xmlText(first.clientId),
        component_id=nodeURN(authority, first.node.id),
        component_manager_id=manager,
        component_name=xmlText(first.node.id),
        exclusive="true" if first.exclusive else "false",
        sliver_id=sliverURN(authority, first.id),
    )
    sliverType = etree.SubElement(element, f"{{{GENI_NS}}}sliver_type", name=xmlText(first.sliverType))
    if first.image:
        etree.SubElement(sliverType, f"{{{GENI_NS}}}disk_image", name=xmlText(first.image))
    logins, proxy = loginsOf(first)
    if logins:
        services = etree.SubElement(element, f"{{{GENI_NS}}}services")
        if proxy is not None:
            _login(services, proxy)
        for login in logins:
            _login(services, login)
        if proxy is not None:
            for login in logins:
                etree.SubElement(
                    services, f"{{{PROXY_NS}}}proxy", proxy=xmlText(proxy.address), **{"for": xmlText(login.address)}
                )
    for sliver in group:
        etree.SubElement(element, f"{{{OL_NS}}}lease_ref", id_ref=str(sliver.id))
    for sliver in group:
        if sliver.resultsURL:
            etree.SubElement(
                element, f"{{{MARVIN_NS}}}results", nsmap={"marvin": MARVIN_NS},
                sliver_id=sliverURN(authority, sliver.id), href=xmlText(sliver.resultsURL),
            )
    for text in first.extensions:
        try:
            element.append(parseDocument(text))
        except RSpecError:
            # Stored request data that no longer parses is dropped, not fatal.
            continue


def _login(services, login: Login) -> None:
    etree.SubElement(
        services,
        f"{{{GENI_NS}}}login",
        authentication="ssh-keys",
        hostname=xmlText(login.hostname),
        port=str(login.port),
        username=xmlText(login.username),
    )
