# -*- test-case-name: tests.test_accounts -*-
"""
Users and nodes: creation without silent replacement, invalidation, admin tags,
quota settings, and applying an inventory snapshot.
"""

from __future__ import annotations

import re
from typing import Any, Iterable, Mapping, Optional

import attrs

from am.core import quotas
from am.core.errors import BadRequest, Conflict, Forbidden, MarvinError, NotFound
from am.core.interfaces import IStoreTransaction
from am.core.model import (
    NODE_ACTIVE,
    NODE_DISABLED,
    NODE_MISSING,
    NODE_STATUSES,
    QUOTA_KINDS,
    ROLES,
    Node,
    User,
)
from am.core.events import NodeUpdated, UserChanged, emit
from am.core.policy import Policy
from am.core.states import Actor, NODE
from am.core.transitions import nodeAppeared, transition
from am.core.values import integer, lookup

_FINGERPRINT = re.compile(r"^[0-9a-f]{40}$")
_NODE_NAME = re.compile(r"^Node (\S+)$")


def normaliseFingerprint(value: str) -> str:
    """
    The form nginx's C{$ssl_client_fingerprint} uses: 40 lowercase hex digits, no colons.
    """
    text = value.strip().replace(":", "").lower()
    if not _FINGERPRINT.match(text):
        raise BadRequest("ssl must be a SHA-1 certificate fingerprint (40 hex digits)", parameter="ssl")
    return text


def addUser(
    txn: IStoreTransaction,
    name: str,
    role: str,
    now: int,
    policy: Policy,
    fingerprint: Optional[str] = None,
    urn: Optional[str] = None,
    project: str = "",
    nodeid: Optional[str] = None,
) -> User:
    """
    Create a user. An existing fingerprint, URN or (name, project) is a conflict:
    the legacy insert-or-replace silently deleted the other user.
    """
    name, project = (name or "").strip(), (project or "").strip()
    if not name:
        raise BadRequest("Parameters missing (name, ssl, role), optional: project.", parameter="name")
    if role not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}", parameter="role")
    if fingerprint:
        fingerprint = normaliseFingerprint(fingerprint)
    if not fingerprint and not urn:
        raise BadRequest("A certificate fingerprint (ssl) or a GENI URN is required.", parameter="ssl")
    if role == "node" and nodeid is None:
        match = _NODE_NAME.match(name)
        if not match:
            raise BadRequest("A node user is named 'Node <id>'.", parameter="name")
        nodeid = match.group(1)
    for key, value in (("fingerprint", fingerprint), ("urn", urn)):
        if value and txn.findUser(**{key: value}) is not None:
            raise Conflict(f"A user with this {key} exists already.")
    if txn.findUser(name=name, project=project) is not None:
        raise Conflict("A user with this name and project exists already.")
    user = User(name=name, role=role, fingerprint=fingerprint, urn=urn, project=project, nodeid=nodeid)
    txn.addUser(user)
    quotas.currentQuotas(txn, user.id, now, policy)
    return user


def userForURN(txn: IStoreTransaction, urn: str, now: int, policy: Policy) -> User:
    """
    The user behind a GENI URN that a trusted authority vouched for, registered
    on first use as an experimenter of the URN's authority.
    """
    user = txn.findUser(urn=urn)
    if user is not None:
        if not user.active:
            raise Forbidden("This user has been invalidated.")
        return user
    parts = urn.split("+")
    name, project = parts[-1], parts[1] if len(parts) > 1 else ""
    if txn.findUser(name=name, project=project) is not None:
        name = urn
    user = User(name=name, role="user", urn=urn, project=project)
    txn.addUser(user)
    quotas.currentQuotas(txn, user.id, now, policy)
    return user


def getUser(txn: IStoreTransaction, userid: Any) -> User:
    """
    Look a user up by id.
    """
    return lookup(txn.getUser, userid, "Could not find user with this id.")


def updateUser(
    txn: IStoreTransaction,
    userid: Any,
    now: int,
    policy: Policy,
    fingerprint: Optional[str] = None,
    quota: Optional[dict[str, Any]] = None,
) -> User:
    """
    Change a user's fingerprint and/or quotas, all or nothing.
    """
    user = getUser(txn, userid)
    if fingerprint is not None:
        fingerprint = normaliseFingerprint(fingerprint)
        if user.invalid:
            raise Conflict(
                f"User {user.id} has been invalidated: a new certificate would not let it in, "
                "so it was not stored. Create a new user instead."
            )
        other = txn.findUser(fingerprint=fingerprint)
        if other is not None and other.id != user.id:
            raise Conflict("A user with this fingerprint exists already.")
        user.fingerprint = fingerprint
        txn.updateUser(user)
        emit(txn, UserChanged(time=now, actor="admin", userid=user.id, fields=("fingerprint",)))
    for kind, value in (quota or {}).items():
        if kind not in QUOTA_KINDS:
            raise BadRequest(f"Unknown quota {kind}", parameter=kind)
        quotas.setByAdmin(txn, user.id, kind, integer(kind, value, 0), now, policy)
    return user


def keepAnAdmin(txn: IStoreTransaction, user: User) -> None:
    """
    Refuse a change that would take the last valid admin away (invalidating
    or demoting it): nobody could administer the installation through the
    API any more.

    @raise Conflict: when C{user} is the only valid admin.
    """
    if user.role != "admin" or user.invalid:
        return
    if not any(other.id != user.id and other.role == "admin" and other.active for other in txn.listUsers()):
        raise Conflict(
            f"User {user.id} is the last valid admin and cannot be invalidated or demoted; "
            "make another admin first."
        )


def invalidateUser(txn: IStoreTransaction, userid: Any, now: int = 0) -> User:
    """
    Invalidated users are refused everywhere, reads included (a legacy bug let them read).
    The last valid admin cannot be invalidated (L{keepAnAdmin}).
    """
    user = getUser(txn, userid)
    keepAnAdmin(txn, user)
    user.invalid = True
    txn.updateUser(user)
    emit(txn, UserChanged(time=now, actor="admin", userid=user.id, fields=("invalid",)))
    return user


def bootstrapUser(
    txn: IStoreTransaction,
    name: str,
    role: str,
    fingerprint: str,
    now: int,
    policy: Policy,
    urn: Optional[str] = None,
    project: str = "",
) -> tuple[str, User]:
    """
    Make a user the configuration names exist as configured: created when its
    fingerprint is unknown; revived and given the configured role when it was
    invalidated or has another role (the configuration is authoritative at
    start-up, so an operator can always get back in by restarting).

    @return: C{("created" | "restored" | "unchanged", user)}.
    """
    known = txn.findUser(fingerprint=normaliseFingerprint(fingerprint))
    if known is None:
        return "created", addUser(txn, name, role, now, policy, fingerprint=fingerprint, urn=urn, project=project)
    if role not in ROLES:
        raise BadRequest(f"role must be one of {', '.join(ROLES)}", parameter="role")
    if known.invalid or known.role != role:
        if known.role == "admin" and role != "admin" and not known.invalid:
            keepAnAdmin(txn, known)
        known.invalid = False
        known.role = role
        txn.updateUser(known)
        emit(txn, UserChanged(time=now, actor="admin", userid=known.id, fields=("invalid", "role")))
        return "restored", known
    return "unchanged", known


def setNodeTags(txn: IStoreTransaction, nodeid: str, text: str, now: int = 0) -> Node:
    """
    Replace a node's admin tags from C{tag:value,tag:value} (legacy C{PUT type=...}).
    """
    node = txn.getNode(str(nodeid))
    if node is None:
        raise NotFound("Node id does not exist.")
    tags = {}
    for item in (text or "").split(","):
        item = item.strip()
        if not item:
            continue
        tag, sep, value = item.partition(":")
        if not sep or not tag.strip() or not value.strip():
            raise BadRequest(f"type must be tag:value pairs separated by commas; bad item {item!r}", parameter="type")
        tags[tag.strip()] = value.strip()
    if tags != node.adminTags:
        node.adminTags = tags
        txn.putNode(node)
        emit(txn, NodeUpdated(time=now, actor=Actor.ADMIN.value, reason="admin tags", nodeid=node.id,
                              fields=("adminTags",)))
    return node


def setNodeStatus(txn: IStoreTransaction, nodeid: str, status: str, now: int = 0) -> Node:
    """
    An admin takes a node out of service or back (any status to any other:
    L{am.core.states.NODE}).
    """
    if status not in NODE_STATUSES:
        raise BadRequest(f"status must be one of {', '.join(NODE_STATUSES)}", parameter="status")
    node = txn.getNode(str(nodeid))
    if node is None:
        raise NotFound("Node id does not exist.")
    transition(txn, node, status, Actor.ADMIN, "set by an admin", now)
    return node


def setNodePair(txn: IStoreTransaction, headid: str, tailid: str, now: int = 0) -> tuple[str, str]:
    """
    Make C{headid} the head and C{tailid} the tail of a pair (legacy C{PUT
    pair=<tail>}), replacing any pair either node was in. Bookings already made
    keep their nodes; new ones see the pair at once (legacy: after the next
    hourly refresh of its cache).
    """
    head, tail = str(headid).strip(), str(tailid).strip()
    if not tail:
        raise BadRequest("pair must be the id of the tail node, or delete", parameter="pair")
    if head == tail:
        raise BadRequest("A node cannot be paired with itself.", parameter="pair")
    if txn.getNode(head) is None or txn.getNode(tail) is None:
        raise NotFound("Node id does not exist.")
    txn.setPair(head, tail)
    for nodeid in (head, tail):
        emit(txn, NodeUpdated(time=now, actor=Actor.ADMIN.value, reason=f"paired: head {head}, tail {tail}",
                              nodeid=nodeid, fields=("pair",)))
    return head, tail


def deleteNodePair(txn: IStoreTransaction, nodeid: str, now: int = 0) -> int:
    """
    Remove the pair a node is in, as head or tail (legacy C{PUT pair=delete}).
    """
    node = str(nodeid).strip()
    if txn.getNode(node) is None:
        raise NotFound("Node id does not exist.")
    removed = txn.deletePairs(node)
    if not removed:
        raise NotFound(f"Node {node} is not in a pair.")
    emit(txn, NodeUpdated(time=now, actor=Actor.ADMIN.value, reason="pair removed", nodeid=node, fields=("pair",)))
    return removed


def applyInventory(
    txn: IStoreTransaction, entries: Iterable[dict[str, Any]], complete: bool = True, now: int = 0
) -> dict[str, int]:
    """
    Bring nodes in line with an inventory snapshot: new nodes are added, known
    ones get the inventory's hostname, status and tags (admin tags win), and
    when the snapshot is C{complete} nodes it no longer lists become C{missing}.
    Nothing is ever deleted, and an empty snapshot changes nothing.
    """
    entries = list(entries)
    counts = {"added": 0, "updated": 0, "missing": 0}
    if not entries:
        return counts
    seen = set()
    known = {node.id: node for node in txn.listNodes()}
    for entry in entries:
        nodeid = str(entry["id"])
        seen.add(nodeid)
        node = known.get(nodeid)
        status = entry.get("status") or NODE_ACTIVE
        if status not in NODE_STATUSES:
            status = NODE_DISABLED
        tags = {str(k): str(v) for k, v in (entry.get("tags") or {}).items() if v is not None}
        if node is None:
            node = Node(id=nodeid, hostname=str(entry.get("hostname") or ""), status=status, inventoryTags=tags)
            counts["added"] += 1
            known[nodeid] = node
            nodeAppeared(txn, node, Actor.INVENTORY, now)
            continue
        before = (node.status, node.hostname, node.inventoryTags)
        node.hostname = str(entry.get("hostname") or node.hostname)
        changed = tuple(
            name for name, old, new in (("hostname", before[1], node.hostname), ("inventoryTags", before[2], tags))
            if old != new
        )
        node.inventoryTags = tags
        # The heartbeat owns active/maintenance; the inventory the rest (the node table says which).
        moved = NODE.allows(node.status, status, Actor.INVENTORY) and transition(
            txn, node, status, Actor.INVENTORY, "inventory", now
        )
        if not changed and not moved:
            continue  # unchanged: no write, cached tags stay valid
        counts["updated"] += 1
        if changed:
            if moved is False:
                txn.putNode(node)
            emit(txn, NodeUpdated(time=now, actor=Actor.INVENTORY.value, reason="inventory", nodeid=node.id,
                                  fields=changed))
    if complete:
        for node in known.values():
            if node.id not in seen and node.status != NODE_MISSING:
                transition(txn, node, NODE_MISSING, Actor.INVENTORY, "no longer in the inventory", now)
                counts["missing"] += 1
    return counts


def actingUser(txn: IStoreTransaction, userid: Any) -> User:
    """
    The user a command acts for, read in the command's own transaction (an
    invalidation that happened after the caller authenticated counts).

    @raise Forbidden: unknown or invalidated.
    """
    user = txn.getUser(userid)
    if user is None or not user.active:
        raise Forbidden("Unknown or invalidated user.")
    return user


def setNode(
    txn: IStoreTransaction,
    nodeid: str,
    tags: Optional[str] = None,
    status: Optional[str] = None,
    pair: Optional[str] = None,
    unpair: bool = False,
    now: int = 0,
) -> Optional[Node]:
    """
    An admin's node settings, all or nothing: admin tags, status, and the
    pair it heads (C{pair}, a tail id) or none (C{unpair}).
    """
    node = None
    if tags is not None:
        node = setNodeTags(txn, nodeid, tags, now)
    if status is not None:
        node = setNodeStatus(txn, nodeid, status, now)
    if unpair:
        deleteNodePair(txn, nodeid, now)
    elif pair is not None:
        setNodePair(txn, nodeid, pair, now)
    return node


@attrs.frozen
class Bootstrap:
    """
    What became of one configured bootstrap user: C{created}, or why not.
    """

    name: str
    created: bool
    note: str = ""
    restored: bool = False


def bootstrapUsers(
    txn: IStoreTransaction, users: Iterable[Mapping[str, Any]], now: int, policy: Policy
) -> list[Bootstrap]:
    """
    Make each configured user (C{name, role, fingerprint, urn, project}) exist
    as configured (L{bootstrapUser}): created when its fingerprint is unknown,
    revived and given its configured role when it was invalidated or changed,
    with a note saying so.
    """
    outcomes = []
    for spec in users:
        name = str(spec["name"])
        try:
            outcome, user = bootstrapUser(
                txn, name, str(spec.get("role") or ""), str(spec.get("fingerprint") or ""), now, policy,
                urn=spec.get("urn"), project=str(spec.get("project") or ""),
            )
        except MarvinError as e:
            outcomes.append(Bootstrap(name, False, f"not created: {e.message}"))
            continue
        if outcome == "restored":
            outcomes.append(Bootstrap(name, False, (
                f"user {user.id} ({user.name}) with fingerprint {user.fingerprint} was invalidated or had "
                f"another role; restored as a valid {user.role} (the configuration is authoritative)"
            ), restored=True))
        else:
            outcomes.append(Bootstrap(name, outcome == "created"))
    return outcomes
