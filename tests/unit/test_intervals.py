"""Intervals and calendars."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from daemon.intervals import DAY_MS, Interval, interval_ms, is_weekday


def ms(text: str) -> int:
    return int(datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp() * 1000)


class TestIntervalNames:
    @pytest.mark.parametrize(("name", "expected"), [("1s", 1000), ("15m", 900_000), ("1h", 3_600_000), ("1d", DAY_MS)])
    def test_known_names(self, name: str, expected: int) -> None:
        """Names are a count and a unit."""
        assert interval_ms(name) == expected

    @pytest.mark.parametrize("name", ["", "h", "0h", "1w", "1.5h", "-1m", "1H", "12345m"])
    def test_rejects_bad_names(self, name: str) -> None:
        """Anything else is refused with a message that shows the form."""
        with pytest.raises(ValueError, match="count and a unit"):
            interval_ms(name)

    def test_weekdays_needs_intervals_that_divide_a_day(self) -> None:
        """A weekdays calendar cannot place 7h candles in days."""
        with pytest.raises(ValueError, match="divide a day"):
            Interval.parse("7h", "weekdays")


class TestContinuousCalendar:
    def test_alignment(self) -> None:
        """Open times must start a slot."""
        hourly = Interval.parse("1h")
        assert hourly.is_aligned(ms("2024-01-06T10:00:00"))
        assert not hourly.is_aligned(ms("2024-01-06T10:30:00"))

    def test_missing_counts_every_slot(self) -> None:
        """Saturday and Sunday are slots like any other."""
        daily = Interval.parse("1d")
        assert daily.missing_between(ms("2024-01-05T00:00:00"), ms("2024-01-08T00:00:00")) == 2


class TestWeekdaysCalendar:
    def test_weekend_is_not_a_gap(self) -> None:
        """Friday to Monday is consecutive for daily stock candles."""
        daily = Interval.parse("1d", "weekdays")
        assert daily.missing_between(ms("2024-01-05T00:00:00"), ms("2024-01-08T00:00:00")) == 0

    def test_holiday_is_one_missing_candle(self) -> None:
        """A weekday without a candle counts as missing (Independence Day 2023 fell on a Tuesday)."""
        daily = Interval.parse("1d", "weekdays")
        assert daily.missing_between(ms("2023-07-03T00:00:00"), ms("2023-07-05T00:00:00")) == 1

    def test_weekend_candles_are_misaligned(self) -> None:
        """A Saturday candle is not in the weekdays calendar."""
        assert not Interval.parse("1d", "weekdays").is_aligned(ms("2024-01-06T00:00:00"))

    def test_intraday_skips_the_weekend(self) -> None:
        """Friday 23:00 to Monday 00:00 is consecutive hourly in the weekdays calendar."""
        hourly = Interval.parse("1h", "weekdays")
        assert hourly.missing_between(ms("2024-01-05T23:00:00"), ms("2024-01-08T00:00:00")) == 0

    @given(st.integers(min_value=-200_000, max_value=200_000), st.sampled_from(["1h", "15m", "1d", "4h"]))
    def test_slot_time_inverts_slot_index(self, index: int, name: str) -> None:
        """Every slot index maps to an aligned weekday open time and back."""
        interval = Interval.parse(name, "weekdays")
        ts = interval.slot_time(index)
        assert interval.is_aligned(ts)
        assert is_weekday(ts // DAY_MS)
        assert interval.slot_index(ts) == index

    @given(st.integers(min_value=0, max_value=30_000), st.integers(min_value=1, max_value=400))
    def test_missing_matches_counting_days(self, start_day: int, span: int) -> None:
        """missing_between equals a day-by-day count of weekdays in between."""
        daily = Interval.parse("1d", "weekdays")
        first = next(d for d in range(start_day, start_day + 7) if is_weekday(d))
        last = next(d for d in range(first + span, first + span + 7) if is_weekday(d))
        expected = sum(1 for d in range(first + 1, last) if is_weekday(d))
        assert daily.missing_between(first * DAY_MS, last * DAY_MS) == expected
