"""
Tests for L{rspec.times}: liberal RFC 3339 reading, strict writing.
"""

from __future__ import annotations

from datetime import datetime, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rspec.times import formatTime, parseTime

NOON = 1777636800  # 2026-05-01T12:00:00Z


class TestParse:
    """
    Every zoned RFC 3339 form names the same instant.
    """

    @pytest.mark.parametrize(
        "text",
        [
            "2026-05-01T12:00:00Z",
            "2026-05-01t12:00:00z",
            "2026-05-01 12:00:00Z",
            "2026-05-01T14:00:00+02:00",
            "2026-05-01T14:00:00+0200",
            "2026-05-01T07:30:00-04:30",
            "2026-05-01T12:00:00+00:00",
            "2026-05-01T12:00:00-00:00",
            "  2026-05-01T12:00:00Z\n",
        ],
    )
    def test_forms(self, text: str) -> None:
        """
        C{Z} in either case, offsets with and without a colon, a space or a
        lower-case C{t} as separator, surrounding whitespace.
        """
        assert parseTime(text) == NOON

    def test_fraction(self) -> None:
        """
        Fractional seconds, as jFed's editor writes them, are dropped.
        """
        assert parseTime("2026-05-01T14:00:00.186+02:00") == NOON
        assert parseTime("2026-05-01T12:00:00.999999999Z") == NOON
        assert parseTime("2026-05-01T12:00:01.0Z") == NOON + 1

    def test_leapSecond(self) -> None:
        """
        A leap second is read as the first second of the next minute.
        """
        assert parseTime("2016-12-31T23:59:60Z") == parseTime("2017-01-01T00:00:00Z")

    @pytest.mark.parametrize(
        "text",
        [
            "2026-05-01T12:00:00",  # no zone: ambiguous
            "2026-05-01",
            "12:00:00Z",
            "2026-05-01T12:00Z",
            "2026-13-01T12:00:00Z",
            "2026-02-30T12:00:00Z",
            "2026-05-01T25:00:00Z",
            "2026-05-01T12:00:00+24:00",
            "2026-05-01T12:00:00+02:60",
            "0000-01-01T00:00:00Z",
            "1777636800",
            "2026-05-01T12:00:00ZZ",
            "2026-05-01T12:00:00." + "1" * 80 + "Z",
            "",
            "now",
        ],
    )
    def test_refused(self, text: str) -> None:
        """
        Zone-less, partial, impossible and over-long times are refused with
        a message naming the value.
        """
        with pytest.raises(ValueError, match="valid_from"):
            parseTime(text, "valid_from")

    @pytest.mark.parametrize("value", [None, 1777636800, b"2026-05-01T12:00:00Z"])
    def test_notText(self, value: object) -> None:
        """
        Only strings are times.
        """
        with pytest.raises(ValueError):
            parseTime(value)


class TestFormat:
    """
    Output is always C{YYYY-MM-DDTHH:MM:SSZ}.
    """

    def test_form(self) -> None:
        """
        UTC, upper-case C{T} and C{Z}, no fraction.
        """
        assert formatTime(NOON) == "2026-05-01T12:00:00Z"
        assert formatTime(NOON + 0.75) == "2026-05-01T12:00:00Z"
        assert formatTime(0) == "1970-01-01T00:00:00Z"

    @given(st.integers(min_value=0, max_value=253402300799))
    def test_roundTrip(self, when: int) -> None:
        """
        Whatever we write, we read back to the same second.
        """
        assert parseTime(formatTime(when)) == when

    @given(
        st.datetimes(
            min_value=datetime(1971, 1, 1), max_value=datetime(9998, 12, 31),
            timezones=st.timezones(),
        )
    )
    def test_anyZone(self, when: datetime) -> None:
        """
        Python's own ISO form of an aware time in any zone parses to its
        instant (sub-second part dropped).
        """
        text = when.isoformat()
        expected = int(when.astimezone(timezone.utc).replace(microsecond=0).timestamp())
        if when.utcoffset() is not None and when.utcoffset().seconds % 60:
            # RFC 3339 offsets have no seconds; isoformat writes them.
            with pytest.raises(ValueError):
                parseTime(text)
        else:
            assert parseTime(text) == expected
