"""
Recurrence expansion and all-or-nothing booking of recurring experiments.
"""

from __future__ import annotations

import pytest

from am.core.errors import BadRequest, Conflict
from am.core.policy import Policy
from am.core.recurrence import expandOffsets
from tests.core_helpers import NOW, CoreTestCase

S = NOW + 1000
P = Policy()


@pytest.mark.parametrize(
    "until,count", [(S + 7700, 3), (S + 7200, 2), (S + 1, 1), (S + 10**11, 960)]
)
def test_workedExampleC(until: int, count: int) -> None:
    """
    Instances start at start + k*period while before min(until, now + 40 days).
    """
    offsets = expandOffsets(S, 500, "simple", 3600, until, NOW, P)
    assert len(offsets) == count
    assert offsets[:3] == [0, 3600, 7200][:count]


def test_noRecurrence() -> None:
    """
    Without recurrence there is one instance.
    """
    assert expandOffsets(S, 500, None, None, None, NOW, P) == [0]


@pytest.mark.parametrize(
    "recurrence,period,until,message",
    [
        ("weekly", 3600, S + 9000, "Unsupported recurrence scheme"),
        ("simple", 3600, None, "End of recurrence set to before start time."),
        ("simple", 400, S + 9000, "Must be greater than task runtime."),
        ("simple", 600, S + 9000, "Must be greater than 1200 seconds."),
        ("simple", 1800, S + 9000, "Recurrence must be a multiple of 1200 seconds."),
        ("simple", 3600, S, "no intervals generated"),
    ],
)
def test_refusals(recurrence: str, period: int, until, message: str) -> None:
    """
    The legacy messages, in the legacy order.
    """
    with pytest.raises(Conflict, match=message):
        expandOffsets(S, 500, recurrence, period, until, NOW, P)


def test_badTypes() -> None:
    """
    Non-integer period or until is a bad request (legacy gave 500).
    """
    with pytest.raises(BadRequest, match="period must be an integer"):
        expandOffsets(S, 500, "simple", "hourly", S + 9000, NOW, P)
    with pytest.raises(BadRequest, match="until must be an integer"):
        expandOffsets(S, 500, "simple", 3600, [], NOW, P)


def test_configuredBounds() -> None:
    """
    Granularity comes from the policy.
    """
    policy = Policy(recurrenceMinimum=600, recurrenceStep=600)
    assert len(expandOffsets(S, 500, "simple", 600, S + 1800, NOW, policy)) == 3


class RecurringBookingTests(CoreTestCase):
    """
    Booking every instance or none.
    """

    nodes = 1

    def test_allInstancesBooked(self) -> None:
        """
        Three instances become three schedules charged three times.
        """
        a = self.book(start=S, duration=500, recurrence="simple", period=3600, until=S + 7700)
        self.assertEqual([s.start for s in a.schedules], [S, S + 3600, S + 7200])
        self.assertEqual(a.intervals, 3)
        self.assertEqual(a.charged["time"], 1500)

    def test_allOrNothing(self) -> None:
        """
        One busy instance refuses the whole series and books nothing.
        """
        self.book(start=S + 7200, duration=500)
        before = self.blocking()
        error = self.refused(Conflict, start=S, duration=500, recurrence="simple", period=3600, until=S + 7700)
        self.assertIn("interval 3", error.message)
        self.assertEqual(self.blocking(), before)

    def test_asapSeries(self) -> None:
        """
        ASAP moves the whole series until every instance fits.
        """
        self.book(start=NOW + 3600 + 60, duration=500)
        a = self.book(start=0, duration=500, recurrence="simple", period=3600, until=NOW + 7300)
        starts = [s.start for s in a.schedules]
        self.assertEqual(starts[1] - starts[0], 3600)
        for s in starts:
            self.assertTrue(s >= NOW + 3600 + 60 + 500 + 120 or s + 500 + 120 <= NOW + 3600 + 60)
