# -*- test-case-name: tests.test_occurrences -*-
"""
A recurring booking seen as a series of occurrences: occurrence C{k} of an
experiment booked with C{recurrence=simple} is every schedule of its
C{k}-th instance (nominal start C{start + k*period}). A pure view of
schedules (no rule, no write), so both faces can group what they show.

A schedule whose occurrence was moved keeps its index in the hidden
deployment option L{OCCURRENCE}; the others derive it from their start.
"""

from __future__ import annotations

from typing import Iterable, Optional

import attrs

from am.core import states
from am.core.model import Experiment, Schedule

# Hidden deployment option (never shown: a leading underscore): the occurrence
# of a schedule whose window was moved away from its nominal start.
OCCURRENCE = "_occurrence"


def period(experiment: Experiment) -> Optional[int]:
    """
    The period of a recurring booking, or C{None} for a one-off one.
    """
    options = experiment.options or {}
    value = options.get("period")
    if options.get("recurrence") != "simple" or value is None:
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def occurrenceOf(schedule: Schedule, experiment: Experiment) -> int:
    """
    The index of the occurrence a schedule belongs to (0 for one-off bookings).
    """
    moved = schedule.deploymentOptions.get(OCCURRENCE)
    if isinstance(moved, int) and not isinstance(moved, bool):
        return moved
    every = period(experiment)
    if every is None or schedule.start < experiment.start:
        return 0
    return (schedule.start - experiment.start) // every


@attrs.frozen
class Occurrence:
    """
    One occurrence of a series: its index, its nominal start, its schedules
    (by start, id) and the span they cover now.
    """

    index: int
    nominal: int
    schedules: tuple[Schedule, ...]

    @property
    def start(self) -> int:
        """
        The earliest start of its schedules (its nominal start when moved back).
        """
        return min(s.start for s in self.schedules)

    @property
    def stop(self) -> int:
        """
        The latest end of its schedules.
        """
        return max(s.stop for s in self.schedules)

    @property
    def moved(self) -> bool:
        """
        Whether any of its schedules was moved from the nominal window.
        """
        return any(OCCURRENCE in s.deploymentOptions for s in self.schedules)

    @property
    def live(self) -> list[Schedule]:
        """
        Its schedules that are not final.
        """
        return [s for s in self.schedules if not states.isFinal(s.status)]

    @property
    def status(self) -> str:
        """
        One word for the whole occurrence: the status all its schedules share,
        else C{mixed}.
        """
        found = {s.status for s in self.schedules}
        return found.pop() if len(found) == 1 else "mixed"


def group(experiment: Experiment, schedules: Iterable[Schedule]) -> list[Occurrence]:
    """
    The occurrences of an experiment's schedules, by index.
    """
    every = period(experiment) or 0
    byIndex: dict[int, list[Schedule]] = {}
    for schedule in schedules:
        byIndex.setdefault(occurrenceOf(schedule, experiment), []).append(schedule)
    return [
        Occurrence(k, experiment.start + k * every, tuple(sorted(found, key=lambda s: (s.start, s.id or 0))))
        for k, found in sorted(byIndex.items())
    ]
