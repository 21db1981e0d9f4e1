# -*- test-case-name: tests.test_policy -*-
"""
Scheduling policy: the bounds the legacy scheduler hard-coded, as configuration.

Defaults are the legacy values (legacy reference §5.4, §5.7, §9.1, §12.1).
"""

from __future__ import annotations

from typing import Any, Mapping, Optional

import attrs

DAY = 86400


def _parseClock(text: str) -> int:
    """
    C{"09:30"} -> seconds after midnight UTC.
    """
    hours, _, minutes = str(text).partition(":")
    value = int(hours) * 3600 + int(minutes or 0) * 60
    if not 0 <= value <= DAY:
        raise ValueError(f"time of day out of range: {text!r}")
    return value


@attrs.frozen
class MaintenanceWindow:
    """
    A daily window (UTC seconds after midnight) in which nodes are serviced and
    no task may run. C{end} may be smaller than C{start} for a window across midnight.
    """

    start: int
    end: int

    def occurrences(self, first: int, last: int):
        """
        Yield the absolute C{(start, end)} of every occurrence that may touch
        C{[first, last)}, in order.
        """
        length = (self.end - self.start) % DAY or DAY
        day = (first // DAY - 1) * DAY
        while day + self.start < last:
            yield day + self.start, day + self.start + length
            day += DAY


@attrs.frozen
class Policy:
    """
    Every scheduling bound, in seconds (or bytes for storage and traffic).
    """

    padding: int = 120
    minDelay: int = 60
    minRuntime: int = 60
    maxRuntime: int = 90000
    horizon: int = 40 * DAY
    recurrenceMinimum: int = 1200
    recurrenceStep: int = 1200
    maintenance: tuple[MaintenanceWindow, ...] = (
        MaintenanceWindow(9 * 3600 + 1800, 10 * 3600),
        MaintenanceWindow(21 * 3600 + 1800, 22 * 3600),
    )
    requireHeartbeat: bool = True
    imminentWindow: int = 1200
    imminentHeartbeatAge: int = 600
    heartbeatAge: int = 48 * 3600
    maxStorage: int = 1048576000
    maxTraffic: int = 3145728000
    defaultQuotaTime: int = 100 * DAY
    defaultQuotaData: int = 10**11
    defaultQuotaStorage: int = 2 * 10**11
    prefetch: int = DAY
    deploymentRepository: Optional[str] = None
    allocationExpiry: int = 600
    maxNodecount: int = 1000
    maxIntervals: int = 3000
    reportGrace: int = 900
    healSilence: int = 900
    healFailures: int = 2
    healWindow: int = 7 * DAY
    healAhead: int = DAY
    # Notifications and waits (the controller's C{notifications} section,
    # docs/notifications.md): private targets allowed, how long and how
    # often to retry, and the longest wait a request may hold.
    notifyPrivate: bool = False
    notifyRetryFor: int = DAY
    notifyBackoff: int = 10
    notifyBackoffMax: int = 3600
    waitMax: int = 300
    resultsGrace: int = 3600
    resultsRetention: int = 30 * DAY

    @classmethod
    def fromConfig(cls, config: Mapping[str, Any]) -> "Policy":
        """
        Build a policy from the C{scheduling} section of the configuration.

        @raise ValueError: naming the bad key.
        """
        config = dict(config or {})
        kwargs: dict[str, Any] = {}
        names = {
            "padding": "padding",
            "min_delay": "minDelay",
            "min_runtime": "minRuntime",
            "max_runtime": "maxRuntime",
            "horizon": "horizon",
            "recurrence_minimum": "recurrenceMinimum",
            "recurrence_step": "recurrenceStep",
            "require_heartbeat": "requireHeartbeat",
            "imminent_window": "imminentWindow",
            "imminent_heartbeat_age": "imminentHeartbeatAge",
            "heartbeat_age": "heartbeatAge",
            "max_storage": "maxStorage",
            "max_traffic": "maxTraffic",
            "default_quota_time": "defaultQuotaTime",
            "default_quota_data": "defaultQuotaData",
            "default_quota_storage": "defaultQuotaStorage",
            "prefetch": "prefetch",
            "deployment_repository": "deploymentRepository",
            "allocation_expiry": "allocationExpiry",
            "max_nodecount": "maxNodecount",
            "max_intervals": "maxIntervals",
            "report_grace": "reportGrace",
            "heal_silence": "healSilence",
            "heal_failures": "healFailures",
            "heal_window": "healWindow",
            "heal_ahead": "healAhead",
            "results_grace": "resultsGrace",
            "results_retention": "resultsRetention",
        }
        windows = config.pop("maintenance_windows", None)
        for key, value in config.items():
            if key not in names:
                raise ValueError(f"scheduling: unknown key {key!r}")
            attr = names[key]
            if attr == "requireHeartbeat":
                if not isinstance(value, bool):
                    raise ValueError(f"scheduling.{key} must be true or false")
            elif attr == "deploymentRepository":
                if value is not None and not isinstance(value, str):
                    raise ValueError(f"scheduling.{key} must be a host name")
            elif isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"scheduling.{key} must be a non-negative integer")
            kwargs[attr] = value
        if windows is not None:
            try:
                kwargs["maintenance"] = tuple(
                    MaintenanceWindow(_parseClock(w["start"]), _parseClock(w["end"]))
                    for w in windows
                )
            except (TypeError, KeyError, ValueError) as e:
                raise ValueError(
                    "scheduling.maintenance_windows must be a list of "
                    f"{{start: 'HH:MM', end: 'HH:MM'}} (UTC): {e}"
                ) from None
        policy = cls(**kwargs)
        if policy.recurrenceStep == 0:
            raise ValueError("scheduling.recurrence_step must be positive")
        return policy

    def maintenanceConflict(self, start: int, stop: int) -> Optional[int]:
        """
        If C{[start, stop)}, padded, overlaps a maintenance window, return the
        earliest start after that window; otherwise C{None}. Windows across
        midnight and tasks spanning days are handled (a legacy bug).
        """
        first, last = start - self.padding, stop + self.padding
        latest = None
        for window in self.maintenance:
            for wStart, wEnd in window.occurrences(first, last):
                if wStart < last and first < wEnd:
                    candidate = wEnd + self.padding
                    if latest is None or candidate < latest:
                        latest = candidate
                    break
        return latest

    def maintenanceFreeUntil(self, start: int, limit: int) -> int:
        """
        The latest stop, at most C{limit}, for a window starting at C{start} that
        stays clear (with padding) of every maintenance window after C{start}.
        """
        for window in self.maintenance:
            for wStart, wEnd in window.occurrences(start, limit + self.padding):
                if wStart - self.padding >= start:
                    limit = min(limit, wStart - self.padding)
                    break
        return limit
