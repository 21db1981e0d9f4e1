# -*- test-case-name: tests.test_notifier -*-
"""
The C{notifications} section of marvinctld.conf: what the core's policy
takes (private targets, retry bound, backoff, longest wait) and what the
deliverer takes (request timeout, batch, idle look, whether this controller
delivers at all) and how long settled rows are kept (the leader's prune
pass). docs/notifications.md explains each key.
"""

from __future__ import annotations

import math
from typing import Any

import attrs

from am.core.policy import Policy

KEYS = {
    "allow_private", "retry_for", "backoff", "backoff_max", "wait_max", "timeout", "batch", "poll", "deliver",
    "keep",
}


@attrs.frozen
class NotifierSettings:
    """
    The deliverer's own settings (L{am.ctl.notifier.Notifier}) and the
    outbox's retention (L{am.ctl.housekeeping.pruneNotifications}).

    @ivar timeout: seconds one POST may take (connect, send, answer).
    @ivar batch: notifications claimed per look.
    @ivar poll: seconds between looks at the outbox when idle (rows of other
        controllers, leases that ran out).
    @ivar deliver: whether this controller delivers (else it only writes rows).
    @ivar allowPrivate: private, loopback and link-local targets allowed.
    @ivar keep: seconds a delivered or failed-for-good row is kept after its
        event; 0 keeps every row forever.
    """

    timeout: float = 10.0
    batch: int = 50
    poll: float = 15.0
    deliver: bool = True
    allowPrivate: bool = False
    keep: int = 30 * 86400

    @property
    def lease(self) -> int:
        """
        How long a claim keeps other controllers off a row: longer than any
        attempt (connect and answer, each within C{timeout}).
        """
        return math.ceil(2 * self.timeout) + 2


def _flag(section: dict[str, Any], key: str, default: bool) -> bool:
    value = section.get(key, default)
    if not isinstance(value, bool):
        raise ValueError(f"notifications.{key}: must be true or false, not {value!r}")
    return value


def _number(section: dict[str, Any], key: str, default: float, low: float, high: float = float("inf")) -> float:
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        bound = f"between {low:g} and {high:g}" if high != float("inf") else f"at least {low:g}"
        raise ValueError(f"notifications.{key}: must be a number {bound}, not {value!r}")
    return float(value)


def parseNotifications(section: dict[str, Any], policy: Policy) -> tuple[NotifierSettings, Policy]:
    """
    The deliverer's settings and the policy with the section's rules in it
    (seconds for every duration).

    @raise ValueError: naming the bad key (L{am.ctl.config} makes it a
        C{ConfigError}).
    """
    unknown = sorted(set(section) - KEYS)
    if unknown:
        raise ValueError(f"notifications: unknown key {unknown[0]!r} (known: {', '.join(sorted(KEYS))})")
    allow = _flag(section, "allow_private", policy.notifyPrivate)
    policy = attrs.evolve(
        policy,
        notifyPrivate=allow,
        notifyRetryFor=int(_number(section, "retry_for", policy.notifyRetryFor, 0)),
        notifyBackoff=int(_number(section, "backoff", policy.notifyBackoff, 1)),
        notifyBackoffMax=int(_number(section, "backoff_max", policy.notifyBackoffMax, 1)),
        waitMax=int(_number(section, "wait_max", policy.waitMax, 1)),
    )
    settings = NotifierSettings(
        timeout=_number(section, "timeout", 10.0, 0.1), batch=int(_number(section, "batch", 50, 1, 1000)),
        poll=_number(section, "poll", 15.0, 0.1), deliver=_flag(section, "deliver", True), allowPrivate=allow,
        # A fraction of a second is a (short) retention, not "forever".
        keep=math.ceil(_number(section, "keep", 30 * 86400, 0)),
    )
    return settings, policy
