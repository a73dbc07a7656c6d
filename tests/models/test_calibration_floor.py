"""The statistics behind the ECE floor of issue 13's test blocks (``models.calibration_floor``)."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.quality import expected_calibration_error
from models.calibration_floor import (
    Floor,
    calibrated_ece,
    calibrated_outcomes,
    calibration_in_the_large,
    ece_per_draw,
    market_correlation,
    oracle_bootstrap_ece,
    trailing_outcome_rate,
    verdict,
)

outcomes = st.lists(st.booleans(), min_size=1, max_size=300).map(lambda v: np.array(v, dtype=bool))


def layout(times: int, symbols: int) -> tuple[np.ndarray, np.ndarray]:
    return np.repeat(np.arange(times), symbols), np.tile(np.arange(symbols), times)


@given(outcomes)
def test_the_oracle_constant_has_no_calibration_error(up: np.ndarray) -> None:
    """Stating the block's own realised up rate everywhere leaves no gap, in the large or per bin."""
    p = np.full(len(up), up.mean())
    assert abs(calibration_in_the_large(p, up)) < 1e-12
    assert expected_calibration_error(p, up) < 1e-12


@given(st.data(), outcomes)
def test_ece_is_never_below_the_gap_in_the_large(data: st.DataObject, up: np.ndarray) -> None:
    """Per-bin gaps add up to at least the overall gap, whatever the probabilities."""
    p = np.array(data.draw(st.lists(st.floats(0.0, 1.0), min_size=len(up), max_size=len(up))))
    assert expected_calibration_error(p, up) >= abs(calibration_in_the_large(p, up)) - 1e-12


@given(st.data(), st.integers(1, 5))
def test_ece_per_draw_bins_as_the_daemon_does(data: st.DataObject, draws: int) -> None:
    """Each draw's ECE is the daemon's live ECE of the same probabilities and outcomes."""
    n = data.draw(st.integers(1, 60))
    p = np.array(data.draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n)))
    drawn = np.array(data.draw(st.lists(st.booleans(), min_size=n * draws, max_size=n * draws))).reshape(draws, n)
    expected = [expected_calibration_error(p, row) for row in drawn]
    assert np.allclose(ece_per_draw(p, drawn), expected)


def test_simulated_outcomes_come_true_as_often_as_stated() -> None:
    """Outcomes drawn for a perfectly calibrated forecaster are up with exactly the stated probabilities."""
    times, symbols = layout(60, 4)
    p = np.linspace(0.2, 0.8, len(times))
    drawn = calibrated_outcomes(p, times, symbols, horizon=5, correlation=0.4, draws=4000, rng=np.random.default_rng(1))
    assert np.max(np.abs(drawn.mean(axis=0) - p)) < 0.035


def test_a_perfect_forecasters_floor_shrinks_with_the_sample() -> None:
    """Sixteen times the independent outcomes cut the calibrated forecaster's median ECE about fourfold."""
    small, large = (layout(n, 1) for n in (200, 3200))
    p_small, p_large = np.full(200, 0.55), np.full(3200, 0.55)
    floor_small = np.median(calibrated_ece(p_small, *small, horizon=1, correlation=0.0, draws=1000, seed=0))
    floor_large = np.median(calibrated_ece(p_large, *large, horizon=1, correlation=0.0, draws=1000, seed=0))
    assert 2.5 < floor_small / floor_large < 6.0


def test_overlapping_labels_and_correlated_symbols_raise_the_floor() -> None:
    """The same label count holds fewer outcomes when horizons overlap or symbols move together."""
    times, symbols = layout(250, 6)
    p = np.full(len(times), 0.55)

    def median(horizon: int, correlation: float) -> float:
        return float(
            np.median(calibrated_ece(p, times, symbols, horizon=horizon, correlation=correlation, draws=400, seed=0))
        )

    independent = median(1, 0.0)
    assert median(1, 0.5) > 1.4 * independent
    assert median(20, 0.5) > 2 * median(1, 0.5)


def test_the_bootstrap_oracle_shows_the_sampling_noise_of_the_up_rate() -> None:
    """On independent daily outcomes, the resampled up rate's median distance from the block's is the binomial one."""
    rng = np.random.default_rng(5)
    up = rng.random(2000) < 0.5
    distances = oracle_bootstrap_ece(up, np.arange(2000, dtype=np.int64), block=20, samples=2000, seed=0)
    binomial = 0.6745 * np.sqrt(up.mean() * (1 - up.mean()) / len(up))
    assert abs(np.median(distances) / binomial - 1) < 0.2


def test_market_correlation_recovers_the_shared_factor() -> None:
    """Symbols driven by a common factor with half the variance show a mean pairwise correlation near 0.5."""
    rng = np.random.default_rng(3)
    times, symbols = layout(2000, 5)
    market = rng.standard_normal(2000)[times]
    returns = np.sqrt(0.5) * market + np.sqrt(0.5) * rng.standard_normal(len(times))
    assert abs(market_correlation(returns, times, symbols) - 0.5) < 0.05
    assert market_correlation(returns[symbols == 0], times[symbols == 0], symbols[symbols == 0]) == 0.0


@settings(max_examples=60)
@given(st.lists(st.booleans(), min_size=2, max_size=80), st.integers(1, 5), st.floats(1.0, 50.0), st.data())
def test_the_trailing_outcome_rate_is_causal(
    up: list[bool], horizon: int, half_life: float, data: st.DataObject
) -> None:
    """A time's trailing rate is the prior-started EWMA of the rates resolved by then; no later outcome moves it."""
    n = len(up)
    end_ts = np.arange(n, dtype=np.int64)
    label_ts = end_ts + horizon
    at = np.arange(n + horizon + 1, dtype=np.int64)
    y = np.array(up, dtype=bool)
    rate = trailing_outcome_rate(y, end_ts, label_ts, at, half_life=half_life, prior=0.6)
    decay = 0.5 ** (1 / half_life)
    for t in at:
        expected = 0.6
        for i in range(n):
            if label_ts[i] <= t:
                expected = decay * expected + (1 - decay) * y[i]
        assert abs(rate[t] - expected) < 1e-9
    cut = data.draw(st.integers(0, n - 1))
    flipped = y.copy()
    flipped[cut:] = ~flipped[cut:]
    again = trailing_outcome_rate(flipped, end_ts, label_ts, at, half_life=half_life, prior=0.6)
    unresolved = at < label_ts[cut]
    assert np.array_equal(rate[unresolved], again[unresolved])


def test_the_trailing_outcome_rate_counts_each_time_once() -> None:
    """Windows ending together (the symbols of one market day) enter as that day's up share, one observation."""
    end_ts = np.array([0, 0, 0, 0, 1], dtype=np.int64)
    up = np.array([True, True, True, False, False])
    rate = trailing_outcome_rate(up, end_ts, end_ts + 1, np.array([2], dtype=np.int64), half_life=1.0, prior=0.5)
    # Day 0's share 0.75, then day 1's 0.0, each halving what came before.
    assert rate[0] == 0.5 * (0.5 * 0.5 + 0.5 * 0.75)


def test_verdicts_follow_the_perfect_forecasters_failure_rate() -> None:
    """A failure counts as miscalibration only when a perfect forecaster would pass in 95% of draws."""
    assert verdict(0.02, Floor(0.05, 0.1, 0.9), 0.03) == "met"
    assert verdict(0.06, Floor(0.04, 0.1, 0.6), 0.03) == "unattainable"
    assert verdict(0.06, Floor(0.02, 0.04, 0.2), 0.03) == "untestable"
    assert verdict(0.06, Floor(0.01, 0.02, 0.01), 0.03) == "miscalibrated"
