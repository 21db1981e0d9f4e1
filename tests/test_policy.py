"""
Scheduling policy: configuration and maintenance windows.
"""

from __future__ import annotations

import pytest

from am.core.policy import DAY, MaintenanceWindow, Policy

T = 1_000_080_000  # a midnight UTC


def test_midnight() -> None:
    """
    The test epoch is a midnight, so times below read as clock times.
    """
    assert T % DAY == 0


def test_defaultsAreLegacy() -> None:
    """
    The defaults are the legacy constants.
    """
    p = Policy()
    assert (p.padding, p.minDelay, p.minRuntime, p.maxRuntime) == (120, 60, 60, 90000)
    assert p.horizon == 3456000 and p.recurrenceMinimum == 1200 and p.recurrenceStep == 1200
    assert p.maintenance == (MaintenanceWindow(34200, 36000), MaintenanceWindow(77400, 79200))


def test_maintenanceTouching() -> None:
    """
    A window may end at 09:30 minus padding, or start at 10:00 plus padding.
    """
    p = Policy()
    assert p.maintenanceConflict(T + 34200 - 120 - 600, T + 34200 - 120) is None
    assert p.maintenanceConflict(T + 34200 - 119 - 600, T + 34200 - 119) == T + 36000 + 120
    assert p.maintenanceConflict(T + 36000 + 120, T + 36000 + 720) is None
    assert p.maintenanceConflict(T + 36000 + 119, T + 36000 + 719) == T + 36000 + 120


def test_maintenanceAcrossMidnight() -> None:
    """
    A long task starting late in the day that reaches the next morning's window is
    caught (the legacy check missed it).
    """
    p = Policy()
    start = T + 22 * 3600 + 1800  # 22:30
    assert p.maintenanceConflict(start, start + 12 * 3600) == T + DAY + 36000 + 120


def test_windowAcrossMidnight() -> None:
    """
    A configured window that wraps midnight blocks both sides of it.
    """
    p = Policy.fromConfig({"maintenance_windows": [{"start": "23:00", "end": "01:00"}], "padding": 0})
    assert p.maintenanceConflict(T + 23 * 3600 + 60, T + 23 * 3600 + 120) == T + DAY + 3600
    assert p.maintenanceConflict(T + 1800, T + 2400) == T + 3600
    assert p.maintenanceConflict(T + 3600, T + 7200) is None


def test_freeUntil() -> None:
    """
    The latest stop before the next window, padding included.
    """
    p = Policy()
    assert p.maintenanceFreeUntil(T, T + DAY) == T + 34200 - 120
    assert p.maintenanceFreeUntil(T, T + 3600) == T + 3600


@pytest.mark.parametrize(
    "config,message",
    [
        ({"padding": -1}, "scheduling.padding must be a non-negative integer"),
        ({"padding": "10"}, "scheduling.padding must be a non-negative integer"),
        ({"require_heartbeat": "yes"}, "scheduling.require_heartbeat must be true or false"),
        ({"bogus": 1}, "scheduling: unknown key 'bogus'"),
        ({"maintenance_windows": [{"start": "25:00", "end": "1"}]}, "maintenance_windows"),
        ({"maintenance_windows": "nope"}, "maintenance_windows"),
        ({"recurrence_step": 0}, "recurrence_step must be positive"),
    ],
)
def test_badConfig(config: dict, message: str) -> None:
    """
    Bad policy configuration names the key.
    """
    with pytest.raises(ValueError, match=message):
        Policy.fromConfig(config)


def test_noMaintenance() -> None:
    """
    An empty list disables maintenance windows.
    """
    p = Policy.fromConfig({"maintenance_windows": []})
    assert p.maintenanceConflict(T + 34200, T + 36000) is None
