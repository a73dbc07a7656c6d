"""The window store keeps each candle's slot index beside it: a request's candle slots are those of its
window's candles, gaps included, which is what a streaming scorer's states step by."""

from __future__ import annotations

import numpy as np

from daemon.candle import Candle
from daemon.intervals import Interval
from daemon.window import GapMode, GapPolicy, WindowStore

HOUR = 3_600_000
HOURLY = {"1h": Interval.parse("1h")}


def candle(index: int) -> Candle:
    return Candle("A", "1h", index * HOUR, 100.0, 101.0, 99.0, 100.0, 1.0)


def test_slots_follow_the_candles_across_tolerated_and_filled_gaps_and_the_ring() -> None:
    """With a tolerated gap the slots jump (not derived from the newest candle); forward-filled candles have
    the slots of the hours they fill; the newest window and older ones read the same ring, wrapped."""
    hours = [0, 1, 2, 4, 5, 8, 9, 10, 11]
    for mode, expected in (
        (GapMode.TOLERATE, [[4, 5, 8, 9], [5, 8, 9, 10], [8, 9, 10, 11]]),
        (GapMode.FORWARD_FILL, [[8, 9, 10, 11], [7, 8, 9, 10], [6, 7, 8, 9]][::-1]),
    ):
        store = WindowStore(4, intervals=HOURLY, gap_policies={"1h": GapPolicy(mode, 2)}, history=2)
        for offset, hour in enumerate(hours):
            _, slot = store.push(candle(hour), 0, offset)
        assert store.newest_slots(slot).tolist() == expected[-1]
        assert store.gather_slots([slot, slot, slot], [2, 1, 0]).tolist() == expected
        assert np.array_equal(store.gather_slots([slot])[0], store.newest_slots(slot))
