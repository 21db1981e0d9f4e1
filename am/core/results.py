# -*- test-case-name: tests.test_results_core -*-
"""
The rules of results (docs/results.md): which uploads a node may make, what
they may add up to, when the storage a task did not fill is refunded, and
how long results are kept.

A task's allowance is the storage charged for it (its C{storage} option).
Its node uploads while the task is on the node, and for C{results_grace}
seconds after it became final (the window opened by L{openWindow}, a side
effect of the final transition); when that window closes, the storage not
filled is refunded (L{settle}). Files older than C{results_retention} are
forgotten (L{expire}); the controller deletes their bytes after the commit.
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from am.core import quotas, states
from am.core.errors import BadRequest, Conflict, Forbidden
from am.core.interfaces import IStoreTransaction
from am.core.model import ResultFile, Schedule, User
from am.core.policy import Policy
from am.core.values import integer, lookup

MAX_PATH = 1024
_SEGMENT = re.compile(r"^[^\x00-\x1f\x7f/\\]{1,255}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@attrs.frozen
class Admission:
    """
    An upload the core accepts: the file's normalised C{path}, its declared
    C{size}, the task's C{allowance} and what its other files already use.
    """

    schedid: int
    nodeid: str
    path: str
    size: int
    sha256: str
    allowance: int
    used: int


def checkPath(value: Any) -> str:
    """
    A file's path relative to the results directory: segments separated by
    C{/}, none empty, C{.} or C{..}, no control characters or backslashes.

    @raise BadRequest: naming the parameter C{path}.
    """
    if not isinstance(value, str) or not value or len(value) > MAX_PATH:
        raise BadRequest(f"path must be a relative file path of at most {MAX_PATH} characters", parameter="path")
    segments = value.split("/")
    for segment in segments:
        if segment in (".", "..") or not _SEGMENT.match(segment):
            raise BadRequest(
                "path must be relative, without empty, '.' or '..' segments, control characters or backslashes",
                parameter="path",
            )
    return value


def checkDigest(value: Any) -> str:
    """
    A SHA-256 digest in lower-case hex.
    """
    if not isinstance(value, str) or not _SHA256.match(value.strip().lower()):
        raise BadRequest("sha256 must be 64 hexadecimal digits", parameter="sha256")
    return value.strip().lower()


def _target(txn: IStoreTransaction, schedid: Any, user: User, now: int) -> Schedule:
    """
    The schedule a node uploads for: its own, on the node or within its window.
    """
    schedule = lookup(txn.getSchedule, schedid, "Could not find schedule entry with this id.")
    if user.role != "node" or not user.active or str(user.nodeid) != schedule.nodeid:
        raise Forbidden("Only the node of this task may upload its results.")
    if schedule.status in states.ON_NODE:
        return schedule
    if states.isFinal(schedule.status):
        closes = txn.resultWindow(schedule.id)
        if closes is not None and closes > now:
            return schedule
        raise Conflict("The upload window of this task is closed.", schedid=schedule.id)
    raise Conflict("This task is not on its node: no results yet.", schedid=schedule.id)


def admit(
    txn: IStoreTransaction, schedid: Any, path: Any, size: Any, sha256: Any, user: User, now: int
) -> Admission:
    """
    Whether C{user} may upload C{size} bytes to C{path} of the task: its node,
    in time, within the allowance (a new version of a file replaces the old).

    @raise Conflict: beyond the allowance, or outside the upload window.
    """
    schedule = _target(txn, schedid, user, now)
    path = checkPath(path)
    size = integer("size", size, 0)
    sha256 = checkDigest(sha256)
    used = sum(f.size for f in txn.resultFiles(schedule.id) if f.path != path)
    allowance = schedule.chargedStorage
    if used + size > allowance:
        raise Conflict(
            "The results would exceed the task's storage allowance.",
            allowance=allowance, used=used, size=size,
        )
    return Admission(schedule.id, schedule.nodeid, path, size, sha256, allowance, used)


def record(
    txn: IStoreTransaction, schedid: Any, path: Any, size: Any, sha256: Any, user: User, now: int
) -> ResultFile:
    """
    A file arrived whole and verified: admit it again (the rules may have
    changed since its first chunk) and record it.
    """
    admission = admit(txn, schedid, path, size, sha256, user, now)
    result = ResultFile(admission.schedid, admission.path, admission.size, admission.sha256, now)
    txn.putResultFile(result)
    return result


def openWindow(txn: IStoreTransaction, schedule: Schedule, now: int, policy: Policy) -> None:
    """
    A schedule just became final: its node may still upload for
    C{results_grace} seconds, if any storage is charged for it.
    """
    if schedule.chargedStorage > 0:
        txn.openResultWindow(schedule.id, now + policy.resultsGrace)


def settle(txn: IStoreTransaction, now: int, policy: Policy) -> int:
    """
    Close the upload windows that are due and refund the storage their
    schedules did not fill.

    @return: how many windows closed.
    """
    closed = txn.closedResultWindows(now)
    for schedid in closed:
        schedule = txn.getSchedule(schedid)
        txn.closeResultWindow(schedid)
        if schedule is None:
            continue
        used = sum(f.size for f in txn.resultFiles(schedid))
        unused = max(0, schedule.chargedStorage - used)
        if unused:
            schedule.chargedStorage -= unused
            txn.updateSchedule(schedule)
            experiment = txn.getExperiment(schedule.expid)
            quotas.refund(
                txn, experiment.ownerid, {"storage": unused},
                f"schedule {schedid}: {unused} bytes of storage not used", now, policy,
            )
    return len(closed)


def expire(txn: IStoreTransaction, now: int, policy: Policy, limit: int = 1000) -> list[ResultFile]:
    """
    Forget up to C{limit} files stored longer than C{results_retention}
    seconds ago (0 keeps them for ever).

    @return: the files forgotten, whose bytes the caller deletes.
    """
    if policy.resultsRetention <= 0:
        return []
    stale = txn.staleResultFiles(now - policy.resultsRetention, limit)
    for result in stale:
        txn.deleteResultFile(result.schedid, result.path)
    return stale
