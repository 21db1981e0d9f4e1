# -*- test-case-name: tests.test_store_contract -*-
"""
The core's value objects: nodes, users, quotas, experiments, schedules.

Plain attrs classes with no behaviour beyond derived views; the rules live in
L{am.core.scheduler} and L{am.core.states}, persistence in L{am.store}.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

import attrs

from am.core import states
from am.core.states import (  # noqa: F401 (re-exported: the tables own the status names)
    EXPERIMENT_ACTIVE,
    NODE_ACTIVE,
    NODE_DISABLED,
    NODE_MAINTENANCE,
    NODE_MISSING,
    NODE_STATUSES,
)

ROLES = ("user", "node", "admin")
QUOTA_KINDS = ("time", "data", "storage")

TAG_ADMIN = "admin"
TAG_INVENTORY = "inventory"


@attrs.define
class Node:
    """
    A measurement node. Tags come from the inventory and from admins; admin tags win.
    """

    id: str
    hostname: str = ""
    status: str = NODE_ACTIVE
    heartbeat: int = 0
    adminTags: dict[str, str] = attrs.field(factory=dict)
    inventoryTags: dict[str, str] = attrs.field(factory=dict)
    interfaces: list[dict[str, Any]] = attrs.field(factory=list)

    @property
    def tags(self) -> dict[str, str]:
        """
        The effective tags: inventory tags overridden by admin tags.
        """
        return {**self.inventoryTags, **self.adminTags}


@attrs.define
class NodeHealth:
    """
    A node's health record (L{am.core.health}): heartbeat gaps and tasks
    failed for node reasons, each with when the last one happened.
    """

    nodeid: str
    gaps: int = 0
    lastGap: int = 0
    failures: int = 0
    lastFailure: int = 0


@attrs.define
class User:
    """
    An experimenter, an admin or a node. Nodes are users with role C{node} whose
    C{nodeid} names the node they speak for.
    """

    name: str
    role: str
    id: Optional[int] = None
    fingerprint: Optional[str] = None
    urn: Optional[str] = None
    project: str = ""
    invalid: bool = False
    nodeid: Optional[str] = None
    version: int = 0  # bumped by every write; a write of an older version is refused

    @property
    def active(self) -> bool:
        """
        Invalidated users are treated as unknown everywhere (a legacy bug let them read).
        """
        return not self.invalid and self.role in ROLES


@attrs.define
class Quota:
    """
    One of a user's quotas: what is left now and what the monthly reset restores.
    """

    kind: str
    current: int
    resetValue: int
    resetDate: int
    lastReset: int = 0


@attrs.define
class JournalEntry:
    """
    One change of a quota, for audit.
    """

    timestamp: int
    userid: int
    kind: str
    delta: int
    newValue: int
    reason: str


@attrs.define
class Experiment:
    """
    What a user asked for: an image to run on nodes in one or more windows.
    """

    name: str
    ownerid: int
    script: str
    nodetypes: str = ""
    start: int = 0
    stop: int = 0
    options: dict[str, Any] = attrs.field(factory=dict)
    status: str = EXPERIMENT_ACTIVE
    recurringUntil: int = 0
    sliceURN: Optional[str] = None
    id: Optional[int] = None
    created: int = 0
    version: int = 0  # bumped by every write; a write of an older version is refused


@attrs.define
class Schedule:
    """
    One node booked for one window C{[start, stop)} of one experiment.
    """

    expid: int
    nodeid: str
    start: int
    stop: int
    status: str = states.DEFINED
    reason: str = ""
    shared: bool = False
    deploymentOptions: dict[str, Any] = attrs.field(factory=dict)
    chargedTime: int = 0
    chargedData: int = 0
    chargedStorage: int = 0
    expires: int = 0
    id: Optional[int] = None
    updated: int = 0
    version: int = 0  # bumped by every write; a write of an older version is refused

    @property
    def blocking(self) -> bool:
        """
        An exclusive schedule that is not final keeps its padded window from
        others; a queued one has no window yet.
        """
        return not self.shared and not states.isFinal(self.status) and self.status != states.QUEUED

    @property
    def statusText(self) -> str:
        """
        The legacy C{"code; reason"} form.
        """
        return f"{self.status}; {self.reason}" if self.reason else self.status


@attrs.frozen
class ResultFile:
    """
    One file of a schedule's results, as its node uploaded it (docs/results.md):
    C{path} is relative to the task's results directory, C{stored} when it was
    complete and verified.
    """

    schedid: int
    path: str
    size: int
    sha256: str
    stored: int


@attrs.frozen
class Interval:
    """
    A blocking window of one node, as the slot search sees it.
    """

    nodeid: str
    start: int
    stop: int


class Booked(NamedTuple):
    """
    A placed schedule as the calendar lists it (C{GET /schedules}): a plain
    tuple straight from one joined query, no options decoded, no owner
    looked up per row.
    """

    id: int
    nodeid: str
    start: int
    stop: int
    ownerid: int


class FeedRow(NamedTuple):
    """
    A placed schedule as the calendar feeds show it, with its experiment's
    name and owner (C{None} when the experiment is gone), from one joined query.
    """

    id: int
    nodeid: str
    expid: int
    start: int
    stop: int
    status: str
    reason: str
    updated: int
    ownerid: Optional[int]
    experiment: Optional[str]
    owner: Optional[str]


@attrs.define
class Notification:
    """
    One event of an experiment in the notification outbox: written in the
    transaction of the change it reports, then POSTed to the experiment's
    C{notify} URL until delivered or given up (L{am.core.outbox}).

    @ivar eventid: unique, random: what receivers de-duplicate on.
    @ivar seq: 1, 2, ... per experiment, in commit order.
    @ivar body: the core event (L{am.core.events.Event.asDict}).
    @ivar state: C{pending}, C{delivered} or C{failed} (given up or refused).
    @ivar due: when the next attempt may start.
    @ivar leaseOwner: the controller delivering it now, until C{leaseUntil}.
    """

    expid: int
    ownerid: int
    url: str
    kind: str
    body: dict[str, Any]
    created: int
    eventid: str = ""
    seq: int = 0
    state: str = "pending"
    attempts: int = 0
    due: int = 0
    delivered: int = 0
    lastError: str = ""
    leaseOwner: str = ""
    leaseUntil: int = 0
    id: Optional[int] = None
