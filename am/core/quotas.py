# -*- test-case-name: tests.test_quotas -*-
"""
Per-user quotas (node-time, data, storage): checked and charged at allocation,
refunded when a schedule is canceled or ends early, every change journalled.

The monthly reset restores C{resetValue}; an admin who sets a quota sets both the
current value and C{resetValue}, so the reset never undoes an admin's decision
(the legacy reset restored the default).
"""

from __future__ import annotations

import datetime
from typing import Any, Mapping, Optional

from am.core.errors import Conflict
from am.core.interfaces import IStoreTransaction
from am.core.model import QUOTA_KINDS, JournalEntry, Quota, User
from am.core.policy import Policy

_MESSAGES = {
    "time": "Insufficient time quota.",
    "data": "Insufficient data quota.",
    "storage": "Insufficient storage quota.",
}


def firstOfNextMonth(now: int) -> int:
    """
    Midnight UTC on the first day of the month after C{now}.
    """
    day = datetime.datetime.fromtimestamp(now, datetime.timezone.utc)
    year, month = (day.year + 1, 1) if day.month == 12 else (day.year, day.month + 1)
    return int(datetime.datetime(year, month, 1, tzinfo=datetime.timezone.utc).timestamp())


def defaults(policy: Policy) -> dict[str, int]:
    """
    The quota every new user starts with.
    """
    return {
        "time": policy.defaultQuotaTime,
        "data": policy.defaultQuotaData,
        "storage": policy.defaultQuotaStorage,
    }


def chargedUser(txn: IStoreTransaction, userid: Any) -> Optional[User]:
    """
    The user whose quotas this writing transaction goes on to charge: read
    with the row lock that reading its quotas would take, where the store can
    take both in one statement (PostgreSQL: a round trip less per booking).
    """
    read = getattr(txn, "getUserToCharge", None)
    return read(userid) if read is not None else txn.getUser(userid)


def currentQuotas(
    txn: IStoreTransaction, userid: int, now: int, policy: Policy
) -> dict[str, Quota]:
    """
    The user's quotas after any due monthly reset (creating missing ones).
    """
    quotas = txn.getQuotas(userid)
    for kind, value in defaults(policy).items():
        quota = quotas.get(kind)
        if quota is None:
            quota = quotas[kind] = Quota(kind, value, value, firstOfNextMonth(now), now)
            txn.putQuota(userid, quota)
            _journal(txn, userid, kind, value, value, "user created", now)
        elif quota.resetDate <= now:
            delta = quota.resetValue - quota.current
            quota.current = quota.resetValue
            quota.resetDate = firstOfNextMonth(now)
            quota.lastReset = now
            txn.putQuota(userid, quota)
            _journal(txn, userid, kind, delta, quota.current, "scheduled reset", now)
    return quotas


def effective(quotas: Mapping[str, Quota], now: int) -> dict[str, Quota]:
    """
    What the quotas are now, with any due monthly reset applied, without
    writing anything (for reads; the next change writes the reset).
    """
    shown = {}
    for kind, quota in quotas.items():
        if quota.resetDate <= now:
            quota = Quota(kind, quota.resetValue, quota.resetValue, firstOfNextMonth(now), now)
        shown[kind] = quota
    return shown


def preview(txn: IStoreTransaction, userid: int, now: int, policy: Policy) -> dict[str, Quota]:
    """
    The user's quotas as the next change would see them (due resets applied,
    missing ones at their defaults), without writing anything: a dry run
    runs in a read-only transaction.
    """
    quotas = effective(txn.getQuotas(userid), now)
    for kind, value in defaults(policy).items():
        quotas.setdefault(kind, Quota(kind, value, value, firstOfNextMonth(now), now))
    return quotas


def remaining(quotas: Mapping[str, Quota], amounts: Mapping[str, int]) -> dict[str, int]:
    """
    What each quota would hold after charging C{amounts} (a cost preview).
    """
    return {kind: quotas[kind].current - amounts.get(kind, 0) for kind in QUOTA_KINDS}


def _journal(txn, userid, kind, delta, newValue, reason, now) -> None:
    txn.addJournal(JournalEntry(now, userid, kind, delta, newValue, reason))


def check(quotas: Mapping[str, Quota], amounts: Mapping[str, int]) -> None:
    """
    Refuse when any amount exceeds what is left (legacy §9.1 order), saying
    which quota (C{quota}), how much is missing (C{missing}, in the quota's
    unit) and when it resets (C{resets}, UNIX seconds): the legacy keys
    C{quota_<kind>} and C{required} stay.
    """
    for kind in ("data", "time", "storage"):
        need = amounts.get(kind, 0)
        left = quotas[kind].current
        if need > left:
            raise Conflict(
                _MESSAGES[kind],
                **{f"quota_{kind}": left, "required": need},
                quota=kind, missing=need - max(left, 0), resets=quotas[kind].resetDate,
            )


def charge(
    txn: IStoreTransaction,
    userid: int,
    quotas: Mapping[str, Quota],
    amounts: Mapping[str, int],
    reason: str,
    now: int,
) -> None:
    """
    Check, then deduct every amount, one journal row per quota (zero amounts
    too, as the legacy server did); a quota a zero amount leaves as it was
    (as read, or as L{currentQuotas} just wrote it) is not written again.
    """
    check(quotas, amounts)
    for kind in QUOTA_KINDS:
        amount = amounts.get(kind, 0)
        quota = quotas[kind]
        if amount:
            quota.current -= amount
            txn.putQuota(userid, quota)
        _journal(txn, userid, kind, -amount, quota.current, reason, now)


def refund(
    txn: IStoreTransaction,
    userid: int,
    amounts: Mapping[str, int],
    reason: str,
    now: int,
    policy: Policy,
) -> None:
    """
    Give amounts back; nothing is written for zero amounts.
    """
    if not any(amounts.values()):
        return
    quotas = currentQuotas(txn, userid, now, policy)
    for kind in QUOTA_KINDS:
        amount = amounts.get(kind, 0)
        if amount:
            quota = quotas[kind]
            quota.current += amount
            txn.putQuota(userid, quota)
            _journal(txn, userid, kind, amount, quota.current, reason, now)


def setByAdmin(
    txn: IStoreTransaction, userid: int, kind: str, value: int, now: int, policy: Policy
) -> Quota:
    """
    An admin's value becomes both the current quota and what the monthly reset restores.
    """
    quotas = currentQuotas(txn, userid, now, policy)
    quota = quotas[kind]
    delta = value - quota.current
    quota.current = quota.resetValue = value
    txn.putQuota(userid, quota)
    _journal(txn, userid, kind, delta, value, "set by admin", now)
    return quota
