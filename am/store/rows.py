# -*- test-case-name: tests.test_store_contract -*-
"""
Rows to model objects, for both stores: the same columns in the same order.

SQLite hands JSON columns back as text and booleans as integers; PostgreSQL
hands back parsed JSON and real booleans. L{_json} and C{bool} accept both.
"""

from __future__ import annotations

import json
from typing import Any, Optional

from am.core.model import Experiment, Node, Schedule, User

SCHEDULE_COLUMNS = (
    "id, expid, nodeid, start, stop, status, reason, shared, deployment_options, "
    "charged_time, charged_data, charged_storage, expires, updated, version"
)
EXPERIMENT_COLUMNS = (
    "id, name, ownerid, script, nodetypes, start, stop, recurring_until, options, "
    "status, slice_urn, created, version"
)
USER_COLUMNS = "id, name, role, fingerprint, urn, project, invalid, nodeid, version"


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, (str, bytes)) else value


def scheduleFromRow(row: tuple) -> Schedule:
    return Schedule(
        id=row[0], expid=row[1], nodeid=row[2], start=row[3], stop=row[4], status=row[5],
        reason=row[6], shared=bool(row[7]), deploymentOptions=_json(row[8]), chargedTime=row[9],
        chargedData=row[10], chargedStorage=row[11], expires=row[12], updated=row[13],
        version=row[14],
    )


def experimentFromRow(row: tuple) -> Experiment:
    return Experiment(
        id=row[0], name=row[1], ownerid=row[2], script=row[3], nodetypes=row[4], start=row[5],
        stop=row[6], recurringUntil=row[7], options=_json(row[8]), status=row[9], sliceURN=row[10],
        created=row[11], version=row[12],
    )


def userFromRow(row: tuple) -> User:
    return User(
        id=row[0], name=row[1], role=row[2], fingerprint=row[3], urn=row[4], project=row[5],
        invalid=bool(row[6]), nodeid=row[7], version=row[8],
    )


def nodeFromRow(row: tuple) -> Node:
    """
    A node from C{id, hostname, status, heartbeat, interfaces, admin tags, inventory tags}.
    """
    return Node(
        id=row[0], hostname=row[1], status=row[2], heartbeat=row[3], interfaces=_json(row[4]),
        adminTags=_json(row[5]), inventoryTags=_json(row[6]),
    )


def recordKey(value: Any) -> Optional[int]:
    """
    A record id as an integer, or C{None} when it cannot be one (SQLite simply
    finds no row for such a key; PostgreSQL would refuse the query).
    """
    if isinstance(value, bool):
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if -(2**63) <= number < 2**63 else None
