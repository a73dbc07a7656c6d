"""Candle intervals, and the trading calendars that say which time slots should hold a candle.

A daily stock candle on Monday after Friday is not a gap, a Monday BTC candle after Friday is.
``Interval.missing_between`` counts the slots the calendar expected but no candle filled, and the
window's gap policy acts on that count.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Calendar = Literal["continuous", "weekdays"]

DAY_MS = 86_400_000
_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": DAY_MS}
_PATTERN = re.compile(r"^([1-9][0-9]{0,3})([smhd])$")
# Weekdays among the first k days of a week that starts on Thursday (1970-01-01 was a Thursday).
_WEEKDAYS_IN_PREFIX = (0, 1, 2, 2, 2, 3, 4)
# Day offsets of those weeks' weekdays: Thursday, Friday, Monday, Tuesday, Wednesday.
_WEEKDAY_OFFSETS = (0, 1, 4, 5, 6)


def interval_ms(name: str) -> int:
    """Length of an interval such as ``1m``, ``15m``, ``1h`` or ``1d`` in milliseconds."""
    match = _PATTERN.match(name)
    if match is None:
        raise ValueError(f"interval {name!r} is not a count and a unit (s, m, h, d), e.g. '1h'")
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def is_weekday(day: int) -> bool:
    """Whether a day, counted from 1970-01-01, is Monday to Friday."""
    return (day + 3) % 7 < 5


def _weekdays_before(day: int) -> int:
    weeks, rest = divmod(day, 7)
    return weeks * 5 + _WEEKDAYS_IN_PREFIX[rest]


@dataclass(frozen=True, slots=True)
class Interval:
    """A candle interval under a calendar."""

    name: str
    """The interval's name as it appears in candle messages, e.g. ``1h``."""
    ms: int
    """Length of one candle in milliseconds."""
    calendar: Calendar = "continuous"
    """``continuous`` expects a candle in every slot; ``weekdays`` skips Saturday and Sunday (UTC)."""

    @classmethod
    def parse(cls, name: str, calendar: Calendar = "continuous") -> Interval:
        ms = interval_ms(name)
        if calendar == "weekdays" and DAY_MS % ms != 0:
            raise ValueError(f"interval {name!r} does not divide a day; the weekdays calendar needs it")
        return cls(name, ms, calendar)

    def is_aligned(self, ts_ms: int) -> bool:
        """Whether a candle open time starts a slot of this interval under its calendar."""
        if ts_ms % self.ms != 0:
            return False
        return self.calendar == "continuous" or is_weekday(ts_ms // DAY_MS)

    def slot_index(self, ts_ms: int) -> int:
        """Number of calendar slots from the epoch up to an aligned open time."""
        if self.calendar == "continuous":
            return ts_ms // self.ms
        day, within = divmod(ts_ms, DAY_MS)
        return _weekdays_before(day) * (DAY_MS // self.ms) + within // self.ms

    def slot_time(self, index: int) -> int:
        """Open time of the calendar slot with this index (inverse of ``slot_index``)."""
        if self.calendar == "continuous":
            return index * self.ms
        per_day = DAY_MS // self.ms
        weekday_count, within = divmod(index, per_day)
        weeks, rest = divmod(weekday_count, 5)
        return (weeks * 7 + _WEEKDAY_OFFSETS[rest]) * DAY_MS + within * self.ms

    def missing_between(self, earlier_ts: int, later_ts: int) -> int:
        """Calendar slots strictly between two aligned open times that hold no candle."""
        return self.slot_index(later_ts) - self.slot_index(earlier_ts) - 1
