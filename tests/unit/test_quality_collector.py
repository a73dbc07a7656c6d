"""The outcome tracker's waiting predictions cost the garbage collector nothing per candle."""

from __future__ import annotations

import gc

from daemon.intervals import Interval
from daemon.quality import OutcomeTracker
from daemon.window import GapPolicy

DAY_MS = 86_400_000


def test_waiting_predictions_are_not_tracked_by_the_collector() -> None:
    """Predictions waiting for the longest horizon add no collector-tracked objects, only each key's own state:
    every full collection would otherwise walk keys x horizon of them."""
    keys, horizons = 200, (1, 5, 20)
    tracker = OutcomeTracker(horizons, {"1d": Interval.parse("1d", "continuous")}, {"1d": GapPolicy()}, capacity=keys)
    gc.collect()
    before = len(gc.get_objects())
    for day in range(30):
        for k in range(keys):
            tracker.observe((f"S{k}", "1d"), day * DAY_MS, 100.0 + (k + day) % 7, [0.4, 0.5, 0.6])
    gc.collect()
    added = len(gc.get_objects()) - before
    assert tracker.pending == keys * max(horizons)
    assert added < 3 * keys
