# -*- test-case-name: tests.test_lifecycle -*-
"""
The transaction functions behind the L{am.core.scheduler.Scheduler} commands
that act for a user: each takes the user's id, reads the user in its own
transaction (L{am.core.accounts.actingUser}), and runs the rule. The rules
themselves (L{am.core.lifecycle}) take the user read here, never one a face
read earlier.
"""

from __future__ import annotations

from typing import Any, Optional

from am.core import lifecycle, results
from am.core.accounts import actingUser
from am.core.errors import Forbidden
from am.core.interfaces import IStoreTransaction
from am.core.model import Schedule, User
from am.core.policy import Policy


def _caller(txn: IStoreTransaction, userid: Any) -> User:
    """
    Like L{actingUser}, with the legacy node-route message for a user gone meanwhile.
    """
    user = txn.getUser(userid)
    if user is None:
        raise Forbidden("Unknown or invalidated user.")
    return user


def changeStatus(
    txn: IStoreTransaction, schedid: Any, text: Any, userid: int, now: int, policy: Policy,
    when: Any = None,
) -> tuple[Schedule, bool]:
    return lifecycle.changeStatus(txn, schedid, text, _caller(txn, userid), now, policy, when)


def reportTraffic(
    txn: IStoreTransaction, schedid: Any, report: dict[str, Any], userid: int, now: int, policy: Policy
) -> Schedule:
    return lifecycle.reportTraffic(txn, schedid, report, _caller(txn, userid), now, policy)


def heartbeat(
    txn: IStoreTransaction, userid: int, nodeid: str, now: int, policy: Policy, **kwargs: Any
) -> lifecycle.HeartbeatReply:
    return lifecycle.heartbeat(txn, _caller(txn, userid), nodeid, now, policy, **kwargs)


# Small and frequent: a store may commit several in one transaction
# (L{am.store.postgres.PostgresDatabase.runBatch}).
heartbeat.batchable = True  # type: ignore[attr-defined]
# What it reads first: a batch's reads may be made in one round trip (am/store/pgahead.py).
heartbeat.readAhead = lifecycle.heartbeatReads  # type: ignore[attr-defined]


def deleteExperiment(
    txn: IStoreTransaction, expid: Any, userid: int, now: int, policy: Policy
) -> lifecycle.Deletion:
    return lifecycle.deleteExperiment(txn, expid, _caller(txn, userid), now, policy)


def mergeExperiments(
    txn: IStoreTransaction, into: Any, source: Any, userid: int, name: Optional[str], now: int = 0
) -> tuple[int, int, int]:
    return lifecycle.mergeExperiments(txn, into, source, actingUser(txn, userid), name, now)


def admitUpload(
    txn: IStoreTransaction, schedid: Any, userid: int, path: Any, size: Any, sha256: Any, now: int
) -> results.Admission:
    return results.admit(txn, schedid, path, size, sha256, _caller(txn, userid), now)


def recordResult(
    txn: IStoreTransaction, schedid: Any, userid: int, path: Any, size: Any, sha256: Any, now: int
) -> Any:
    return results.record(txn, schedid, path, size, sha256, _caller(txn, userid), now)
