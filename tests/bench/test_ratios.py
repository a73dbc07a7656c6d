"""Paired latency ratios: per round, their median and the pooled ratio, with intervals from resampled rounds."""

from __future__ import annotations

import numpy as np
import pytest

from candlecast.bench.ratios import summarize


def rounds(scales: list[float], size: int = 1_000) -> list[np.ndarray]:
    """Latencies 1..size ms per round, each round scaled (a round's load moves all its latencies)."""
    base = np.arange(1.0, size + 1.0)
    return [base * scale for scale in scales]


def test_an_arm_equal_to_the_baseline_has_every_ratio_and_interval_at_one() -> None:
    """The same latencies on both sides give 1 per round, median 1, pooled 1, intervals [1, 1]."""
    same = rounds([1.0, 3.0, 0.5, 2.0])
    summary = summarize(same, same, 99)
    assert summary.per_round == [1.0, 1.0, 1.0, 1.0]
    assert summary.median == 1.0 and summary.median_interval == (1.0, 1.0)
    assert summary.pooled == pytest.approx(1.0) and summary.pooled_interval == pytest.approx((1.0, 1.0))


def test_a_round_whose_both_arms_are_slow_does_not_move_the_ratio() -> None:
    """An arm 10% slower than the baseline in every round gives 1.10 per round and in median and pooled,
    although one round's latencies are five times the others' (a loaded moment hits both arms)."""
    scales = [1.0, 1.0, 5.0, 1.0, 1.0]
    summary = summarize(rounds(scales), rounds([1.1 * s for s in scales]), 99)
    assert summary.per_round == pytest.approx([1.1] * 5)
    assert summary.median == pytest.approx(1.1)
    assert summary.pooled == pytest.approx(1.1)
    assert summary.median_interval == pytest.approx((1.1, 1.1))


def test_the_interval_widens_with_the_spread_of_the_rounds_and_holds_the_median() -> None:
    """Ratios that scatter from round to round give an interval around their median, wider than the
    interval of ratios that do not."""
    baseline = rounds([1.0] * 6)
    scattered = summarize(baseline, rounds([0.8, 1.3, 0.9, 1.2, 1.0, 1.1]), 99, seed=3)
    steady = summarize(baseline, rounds([1.05] * 6), 99, seed=3)
    low, high = scattered.median_interval
    assert low < scattered.median < high
    assert high - low > steady.median_interval[1] - steady.median_interval[0]


def test_arms_of_different_round_counts_are_refused() -> None:
    """Each round measures every arm: a missing round is an error, not a shorter comparison."""
    with pytest.raises(ValueError, match="same number of rounds"):
        summarize(rounds([1.0, 1.0]), rounds([1.0]), 99)
