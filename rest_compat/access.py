# -*- test-case-name: tests.test_rest_access -*-
"""
Who may do what on the REST face: the one table of route -> method -> roles,
and the per-object rules (least privilege) that the table cannot express.

Every handler asks this module; none decides access on its own. Roles are the
core's (C{user}, C{admin}, C{node}) plus L{ANONYMOUS} for callers without a
valid, known, non-invalidated certificate.
"""

from __future__ import annotations

from typing import Optional

from am.core import states
from am.core.errors import Forbidden
from am.core.model import Schedule, User

ANONYMOUS = "anonymous"
USER = "user"
ADMIN = "admin"
NODE = "node"

EVERYONE = frozenset({ANONYMOUS, USER, ADMIN, NODE})
AUTHENTICATED = frozenset({USER, ADMIN, NODE})
PEOPLE = frozenset({USER, ADMIN})

# route name -> HTTP method -> roles allowed. OPTIONS is allowed to everyone on
# every route and HEAD follows GET; both are added by L{allowedMethods}.
MATRIX: dict[str, dict[str, frozenset[str]]] = {
    "version": {"GET": EVERYONE},
    "openapi": {"GET": EVERYONE},
    "resources": {"GET": AUTHENTICATED},
    "resource": {"GET": AUTHENTICATED, "PUT": frozenset({ADMIN, NODE})},
    "resource/schedules": {"GET": AUTHENTICATED},
    "resource/all": {"GET": AUTHENTICATED},
    "resource/journals": {"GET": AUTHENTICATED},
    "resource/journal": {"GET": AUTHENTICATED},
    "users": {"GET": AUTHENTICATED, "POST": frozenset({ADMIN})},
    "user": {"GET": AUTHENTICATED, "PUT": frozenset({ADMIN}), "DELETE": frozenset({ADMIN})},
    "user/schedules": {"GET": AUTHENTICATED},
    "user/experiments": {"GET": AUTHENTICATED},
    "user/journals": {"GET": AUTHENTICATED},
    "user/notify-secret": {"GET": PEOPLE, "POST": PEOPLE},
    "experiments": {"GET": AUTHENTICATED, "POST": frozenset({USER})},
    "experiment": {
        "GET": AUTHENTICATED,
        "PUT": frozenset({USER}),
        "DELETE": PEOPLE,
    },
    "experiment/merge": {"PUT": frozenset({USER})},
    "experiment/schedules": {"GET": AUTHENTICATED},
    "experiment/schedule": {"GET": AUTHENTICATED},
    "experiment/occurrences": {"GET": AUTHENTICATED, "DELETE": PEOPLE},
    "experiment/occurrence": {"GET": AUTHENTICATED, "PUT": PEOPLE, "DELETE": PEOPLE},
    "experiment/events": {"GET": PEOPLE},
    "schedules": {"GET": AUTHENTICATED},
    "schedules/find": {"GET": PEOPLE},
    "ui": {"GET": PEOPLE},
    "ui/file": {"GET": PEOPLE},
    "ui/changes": {"GET": PEOPLE},
    "calendar": {"GET": AUTHENTICATED},
    "user/calendar": {"GET": AUTHENTICATED},
    "experiment/calendar": {"GET": AUTHENTICATED},
    "resource/calendar": {"GET": AUTHENTICATED},
    "schedule": {"GET": AUTHENTICATED, "PUT": frozenset({NODE})},
    "schedule/results": {"GET": PEOPLE},
    "schedule/result": {"GET": PEOPLE},
    "schedule/upload": {"GET": frozenset({NODE}), "PUT": frozenset({NODE})},
    "experiment/results": {"GET": PEOPLE},
    "backend/auth": {"GET": EVERYONE},
    "backend/activity": {"GET": PEOPLE},
    "backend/pubkeys": {"GET": EVERYONE},
    "backend/sync": {"PUT": frozenset({ADMIN})},
}

_ARTICLES = {USER: "a user", ADMIN: "an admin", NODE: "a node"}



#: Statuses of placed schedules nodes never see (GENI allocations not yet provisioned).
HIDDEN_FROM_NODES = (states.ALLOCATED,)


def hiddenFromNodes(schedule: Schedule) -> bool:
    """
    Schedules nodes never see: GENI allocations not yet provisioned, and tasks
    of the low-priority queue that were never placed (queued, or canceled
    while queued).
    """
    return schedule.status in HIDDEN_FROM_NODES or schedule.start == states.QUEUE_START


class Unauthenticated(Exception):
    """
    The route needs a known certificate and the caller has none (HTTP 401).
    """


class MethodNotAllowed(Exception):
    """
    The route exists but not with this method (HTTP 405).

    @ivar allow: the methods the route does allow, for the C{Allow} header.
    """

    def __init__(self, allow: list[str]) -> None:
        super().__init__(", ".join(allow))
        self.allow = allow


def roleOf(user: Optional[User]) -> str:
    """
    The role a caller acts in: invalidated or unknown users are anonymous.
    """
    if user is None or not user.active:
        return ANONYMOUS
    return user.role


def allowedMethods(route: str) -> list[str]:
    """
    The methods a route answers, for C{Allow} headers and CORS preflights.
    """
    methods = set(MATRIX[route])
    if "GET" in methods:
        methods.add("HEAD")
    methods.add("OPTIONS")
    return sorted(methods)


def effectiveMethod(method: str) -> str:
    """
    HEAD is a GET without a body as far as access goes.
    """
    return "GET" if method == "HEAD" else method


def check(route: str, method: str, user: Optional[User]) -> None:
    """
    Apply the matrix.

    @raise MethodNotAllowed: the route has no such method.
    @raise Unauthenticated: an anonymous caller on a protected cell.
    @raise Forbidden: a known caller whose role the cell does not allow.
    """
    if method == "OPTIONS":
        return
    cell = MATRIX[route].get(effectiveMethod(method))
    if cell is None:
        raise MethodNotAllowed(allowedMethods(route))
    role = roleOf(user)
    if role in cell:
        return
    if role == ANONYMOUS:
        raise Unauthenticated()
    wanted = " or ".join(_ARTICLES[r] for r in sorted(cell) if r in _ARTICLES)
    raise Forbidden(f"You'd have to be {wanted} to do that.", role=role)


# Per-object rules. Each returns normally or raises Forbidden.


def nodeScope(user: Optional[User]) -> Optional[str]:
    """
    The node a node caller is confined to; C{None} for people.
    """
    if roleOf(user) == NODE:
        return str(user.nodeid)
    return None


def isAdmin(user: Optional[User]) -> bool:
    """
    Admins see everything.
    """
    return roleOf(user) == ADMIN


def checkNode(user: Optional[User], nodeid: str) -> None:
    """
    A node may read only its own node record and schedules.
    """
    scope = nodeScope(user)
    if scope is not None and scope != str(nodeid):
        raise Forbidden("A node may only read its own resource.")


def checkUserRecord(user: Optional[User], userid: int) -> None:
    """
    Only admins read other users' records (which carry fingerprints and quotas).
    """
    if isAdmin(user) or (user is not None and user.id == userid):
        return
    raise Forbidden("Only admins may read other users' records.")


def mayListAll(user: Optional[User]) -> bool:
    """
    Whether listings (users, experiments) show everyone's entries.
    """
    return isAdmin(user)


def checkExperiment(user: Optional[User], ownerid: int, nodeids: set[str]) -> None:
    """
    Admins read any experiment, users their own, nodes those with a task on them.
    """
    if isAdmin(user):
        return
    scope = nodeScope(user)
    if scope is not None:
        if scope in nodeids:
            return
        raise Forbidden("A node may only read experiments with tasks on it.")
    if user is not None and user.id == ownerid:
        return
    raise Forbidden(f"Only admins and user {ownerid} can read this experiment.")


def mayReadOptions(user: Optional[User], ownerid: int, nodeid: str) -> bool:
    """
    Deployment options (which may carry credentials) are shown to admins, the
    experiment's owner and the node that runs the task only.
    """
    if isAdmin(user):
        return True
    scope = nodeScope(user)
    if scope is not None:
        return scope == str(nodeid)
    return user is not None and user.id == ownerid


def checkSchedule(user: Optional[User], ownerid: int, nodeid: str) -> None:
    """
    A single schedule is read by admins, its owner and its node.
    """
    if not mayReadOptions(user, ownerid, nodeid):
        raise Forbidden("Only admins, the owner and the node may read this schedule.")


def checkResults(user: Optional[User], ownerid: int) -> None:
    """
    Results are read by admins and the experiment's owner only.
    """
    if isAdmin(user) or (roleOf(user) == USER and user.id == ownerid):
        return
    raise Forbidden(f"Only admins and user {ownerid} can read these results.")
