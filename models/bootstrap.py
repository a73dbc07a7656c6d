"""Block-bootstrap confidence intervals over days, paired across models.

Windows of one day are correlated (the symbols move together) and so are nearby days (labels up
to 20 candles ahead overlap, volatility clusters), so resampling single windows would give
intervals that are far too narrow. The bootstrap resamples whole days in circular blocks of
``block`` consecutive days (a circular block bootstrap), and every model is scored on the same
resampled days, so differences between models get paired intervals.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def block_indices(days: int, block: int, samples: int, seed: int) -> IntArray:
    """Circular block bootstrap: ``samples`` resamplings of ``days`` day indices in blocks."""
    rng = np.random.default_rng(seed)
    block = max(1, min(block, days))
    blocks = -(-days // block)
    starts = rng.integers(0, days, size=(samples, blocks))
    indices: IntArray = ((starts[:, :, None] + np.arange(block)) % days).reshape(samples, -1)[:, :days]
    return indices


def interval(values: FloatArray, level: float = 0.95) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Bootstrap:
    """Resampled days shared by every model of an evaluation set, so intervals are paired."""

    dates: IntArray
    """The distinct days, ascending."""
    indices: IntArray
    """``[samples, days]`` resampled positions into ``dates``."""
    level: float = 0.95

    @classmethod
    def over(cls, dates: IntArray, *, block: int, samples: int, seed: int) -> Bootstrap:
        unique = np.unique(dates)
        return cls(unique, block_indices(len(unique), block, samples, seed))

    def mean(self, values: FloatArray, dates: IntArray) -> FloatArray:
        """Bootstrap distribution of the mean of per-window values (accuracy: 0/1 hits) dated ``dates``."""
        day = np.searchsorted(self.dates, dates)
        sums = np.bincount(day, weights=values.astype(np.float64), minlength=len(self.dates))
        counts = np.bincount(day, minlength=len(self.dates)).astype(np.float64)
        totals = counts[self.indices].sum(axis=1)
        out: FloatArray = sums[self.indices].sum(axis=1) / np.where(totals > 0, totals, np.nan)
        return out

    def sharpe(self, returns: FloatArray, dates: IntArray, periods: float) -> FloatArray:
        """Bootstrap distribution of the Sharpe ratio of a daily return series dated ``dates``."""
        series = np.zeros(len(self.dates))
        series[np.searchsorted(self.dates, dates)] = returns
        resampled = series[self.indices]
        std = resampled.std(axis=1, ddof=1)
        out: FloatArray = np.where(std > 0, resampled.mean(axis=1) / np.where(std > 0, std, 1) * math.sqrt(periods), 0)
        return out

    def summary(self, estimate: float, distribution: FloatArray) -> dict[str, float]:
        low, high = interval(distribution, self.level)
        return {"estimate": estimate, "low": low, "high": high}


def difference(bootstrap: Bootstrap, estimate: float, mine: FloatArray, reference: FloatArray) -> Mapping[str, float]:
    """Paired interval of ``mine - reference``, and the share of resamples where it is positive."""
    delta = mine - reference
    out = dict(bootstrap.summary(estimate, delta))
    out["share_positive"] = float(np.mean(delta[np.isfinite(delta)] > 0)) if np.isfinite(delta).any() else math.nan
    return out
