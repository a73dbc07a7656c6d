"""Paired latency ratios with bootstrap intervals: the figures of a with/without comparison measured in
interleaved rounds on one machine, where the load of the moment moves both arms of a round together.

Each round measures every arm once, so a round is the unit that is resampled: the interval of a
ratio comes from drawing rounds with replacement, never single candles, whose latencies within a
phase are not independent (a pause delays every candle in flight at once).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

Latencies = npt.NDArray[np.float64]


@dataclass(frozen=True)
class RatioSummary:
    """One arm against the baseline arm, at one percentile."""

    percentile: float
    per_round: list[float]
    """The arm's percentile over the baseline's, round by round."""
    median: float
    """Median of ``per_round``."""
    median_interval: tuple[float, float]
    """95% bootstrap interval of that median (rounds resampled)."""
    pooled: float
    """The percentile of every round's latencies pooled, the arm's over the baseline's."""
    pooled_interval: tuple[float, float]
    """95% bootstrap interval of the pooled ratio (rounds resampled, each with all its latencies)."""


def summarize(
    baseline: Sequence[Latencies],
    arm: Sequence[Latencies],
    percentile: float,
    *,
    resamples: int = 2_000,
    seed: int = 0,
) -> RatioSummary:
    """The arm's latencies against the baseline's, round ``i`` of one beside round ``i`` of the other."""
    if len(baseline) != len(arm) or not baseline:
        raise ValueError("both arms need the same number of rounds, at least one")
    base_q = np.array([np.percentile(b, percentile) for b in baseline])
    arm_q = np.array([np.percentile(a, percentile) for a in arm])
    ratios = arm_q / base_q
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(ratios), size=(resamples, len(ratios)))
    medians = np.median(ratios[draws], axis=1)
    pooled = np.array([_pooled(baseline, arm, rounds, percentile) for rounds in draws])
    every = np.arange(len(ratios))
    return RatioSummary(
        percentile=percentile,
        per_round=ratios.tolist(),
        median=float(np.median(ratios)),
        median_interval=_interval(medians),
        pooled=_pooled(baseline, arm, every, percentile),
        pooled_interval=_interval(pooled),
    )


def _pooled(
    baseline: Sequence[Latencies], arm: Sequence[Latencies], rounds: npt.NDArray[np.int64], percentile: float
) -> float:
    base = np.concatenate([baseline[i] for i in rounds])
    other = np.concatenate([arm[i] for i in rounds])
    return float(np.percentile(other, percentile) / np.percentile(base, percentile))


def _interval(values: npt.NDArray[np.float64]) -> tuple[float, float]:
    low, high = np.percentile(values, [2.5, 97.5]).tolist()
    return float(low), float(high)
