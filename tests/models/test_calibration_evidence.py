"""How much evidence the combination asks for before it leaves the base rate."""

from __future__ import annotations

import numpy as np

from models.calibration import CalibrationPart, Standardisation, fit_combination

SYMBOLS = 6


def _standardisation() -> Standardisation:
    return Standardisation(np.zeros((1, 1)), np.ones((1, 1)), np.array([0.5]), np.array([1.0]))


def _part(member: np.ndarray, up: np.ndarray, end_ts: np.ndarray) -> CalibrationPart:
    n = len(up)
    return CalibrationPart(member[:, None, None], np.zeros((n, 1)), up[:, None], np.ones((n, 1), dtype=bool), end_ts)


def test_windows_ending_together_count_as_one_outcome() -> None:
    """A weak member effect seen on 500 days is dropped, however many symbols repeat each day's outcome."""
    rng = np.random.default_rng(11)
    days = 500
    member = rng.normal(0, 1, days)
    up = rng.random(days) < 1 / (1 + np.exp(-0.15 * member))
    one_symbol = _part(member, up, np.arange(days, dtype=np.int64))
    # Six symbols moving with the market: the same outcome and member output on each day.
    many = _part(
        np.repeat(member, SYMBOLS), np.repeat(up, SYMBOLS), np.repeat(np.arange(days, dtype=np.int64), SYMBOLS)
    )
    alone = fit_combination([one_symbol], np.array([0.5]), _standardisation())
    repeated = fit_combination([many], np.array([0.5]), _standardisation())
    assert alone.scale[0] == 0.0
    assert repeated.scale[0] == 0.0
    assert repeated.labels == [days * SYMBOLS]


def test_an_effect_needs_more_than_one_outcome_per_coefficient() -> None:
    """A member effect worth less than ln(n) / 2 outcomes of log loss is dropped; a clear one is kept."""
    rng = np.random.default_rng(11)
    n = 3000
    member = rng.normal(0, 1, n)
    times = np.arange(n, dtype=np.int64)
    faint = rng.random(n) < 1 / (1 + np.exp(-0.07 * member))
    clear = rng.random(n) < 1 / (1 + np.exp(-0.3 * member))
    assert fit_combination([_part(member, faint, times)], np.array([0.5]), _standardisation()).scale[0] == 0.0
    assert fit_combination([_part(member, clear, times)], np.array([0.5]), _standardisation()).scale[0] > 0.15
