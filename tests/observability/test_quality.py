"""Live quality: outcomes resolved exactly as training labels are, and the rolling figures over them."""

from __future__ import annotations

import numpy as np
import pytest

from candlecast.candlefile import bundled_path, read_candles
from daemon.intervals import Interval
from daemon.quality import (
    OutcomeTracker,
    RollingQuality,
    brier_score,
    expected_calibration_error,
    hit_rate,
)
from daemon.window import GapMode, GapPolicy
from models.dataset import WindowSpec, build_windows

HORIZONS = (1, 5, 20)


@pytest.mark.parametrize(
    ("calendar", "mode", "max_missing"),
    [
        ("weekdays", "tolerate", 3),  # holidays skipped as if contiguous
        ("weekdays", "reset", 0),  # every holiday restarts the run
        ("continuous", "forward_fill", 3),  # weekends filled with flat candles, which count as steps
        ("continuous", "tolerate", 2),  # weekends tolerated, longer gaps (holidays next to one) reset
    ],
)
def test_outcomes_equal_the_training_labels(calendar: str, mode: str, max_missing: int) -> None:
    """Every window the daemon would score, fed in order: each outcome equals the dataset's label, none is missed."""
    table = read_candles(bundled_path("us_stocks_1d.csv")).only(["AAPL", "NVDA"])
    spec = WindowSpec.build(
        length=16, interval="1d", calendar=calendar, gap_policy=mode, max_missing=max_missing, horizons=HORIZONS
    )
    windows = build_windows(table, spec)
    tracker = OutcomeTracker(HORIZONS, {"1d": spec.interval}, {"1d": spec.policy}, capacity=10)
    resolved: dict[tuple[int, int], bool] = {}
    for row in range(len(windows)):
        # The probability carries the row, so each outcome says which prediction it resolved.
        key = (str(windows.symbols[row]), "1d")
        close = float(windows.windows[row][-1, 3])
        for index, probability, up in tracker.observe(key, int(windows.end_ts[row]), close, [float(row)] * 3):
            resolved[(int(probability), index)] = up
    rows, horizons = np.nonzero(windows.valid)
    expected = {(int(r), int(h)): bool(windows.up[r, h]) for r, h in zip(rows, horizons, strict=True)}
    assert len(expected) > 2000
    assert resolved == expected
    assert tracker.pending <= 2 * max(HORIZONS)


def test_memory_stays_bounded_by_capacity() -> None:
    day = Interval.parse("1d")
    tracker = OutcomeTracker(HORIZONS, {"1d": day}, {"1d": GapPolicy(GapMode.RESET)}, capacity=3)
    for step in range(50):
        for symbol in ("A", "B", "C", "D", "E"):
            tracker.observe((symbol, "1d"), step * day.ms, 100.0 + step, [0.5, 0.5, 0.5])
    assert len(tracker) == 3
    assert tracker.pending <= 3 * max(HORIZONS)


def test_unknown_interval_is_ignored() -> None:
    tracker = OutcomeTracker(HORIZONS, {"1d": Interval.parse("1d")}, {}, capacity=3)
    assert tracker.observe(("A", "1h"), 0, 1.0, [0.5, 0.5, 0.5]) == []
    assert len(tracker) == 0


def test_figures_by_hand() -> None:
    p = np.array([0.9, 0.8, 0.3, 0.6, 0.5])
    up = np.array([True, False, False, True, True])
    assert hit_rate(p, up) == pytest.approx(3 / 5)  # 0.5 counts as a "not up" call
    assert brier_score(p, up) == pytest.approx((0.01 + 0.64 + 0.09 + 0.16 + 0.25) / 5)
    # Bins: 0.3 -> 3, 0.5 -> 5, 0.6 -> 6, 0.8 -> 8, 0.9 -> 9, one prediction each.
    assert expected_calibration_error(p, up) == pytest.approx((0.1 + 0.8 + 0.3 + 0.4 + 0.5) / 5)
    assert expected_calibration_error([1.0], [True]) == 0.0


def test_rolling_window_keeps_the_newest_outcomes() -> None:
    quality = RollingQuality(HORIZONS, window=10, min_outcomes=5)
    quality.add([(0, 0.9, False) for _ in range(4)])
    assert quality.report(0) is None  # fewer than min_outcomes
    quality.add([(0, 0.9, False) for _ in range(6)] + [(2, 0.1, False)])
    first = quality.report(0)
    assert first is not None
    assert first.hit_rate == 0.0
    quality.add([(0, 0.9, True) for _ in range(10)])
    report = quality.report(0)
    assert report is not None
    assert (report.samples, report.hit_rate) == (10, 1.0)
    assert report.brier == pytest.approx(0.01)
    assert quality.resolved == [20, 0, 1]
    assert quality.samples(2) == 1
    assert quality.report(1) is None
