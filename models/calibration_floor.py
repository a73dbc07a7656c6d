"""How small an ECE issue 13's test blocks can show at all, and whether a causal intercept that
follows the market gets any closer.

Two facts bound what any forecaster can score on a block:

- ECE (10 equal-width bins) is a sum of per-bin gaps ``|sum(y_b) - sum(p_b)| / n``, so by the
  triangle inequality it is never below the calibration-in-the-large gap ``|mean(y) - mean(p)|``.
  A block whose realised up rate lies 0.1 from anything the past suggested fails ECE <= 0.03
  whatever the model's shape.
- A *perfectly* calibrated forecaster (its stated probabilities are the probabilities the outcomes
  are drawn from) still shows a positive ECE on a finite sample. How large depends on how many
  independent outcomes the block holds: overlapping ``h``-candle labels and symbols that move
  together hold far fewer than their count. ``calibrated_ece`` draws outcomes with exactly the
  stated probabilities and the block's dependence (a Gaussian copula: each symbol's ``h``-candle
  sum of daily shocks that share a market factor of the block's measured correlation), and
  ``oracle_bootstrap_ece`` resamples the block's own outcomes in blocks of days for a forecaster
  that states the block's realised rate. The first keeps returns independent in time (a lower
  bound on real dependence); the second keeps the block's own dependence up to the resampling
  block.

Where the perfect forecaster's ECE exceeds 0.03 in more than 5% of draws, a failure on that block
is no evidence of miscalibration; where it exceeds it in most draws, the goal is unattainable on
that block by any forecaster. ``trailing_outcome_rate`` is the best causal attempt at the
intercept: an exponentially weighted mean of the market's resolved outcomes.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.signal import lfilter
from scipy.stats import norm

from daemon.quality import CALIBRATION_BINS
from models.bootstrap import Bootstrap

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
DRAW_CHUNK = 50
"""Simulated draws generated at once (memory: draws x symbols x times normals)."""


def calibration_in_the_large(p: FloatArray, up: BoolArray) -> float:
    """Realised up rate minus mean stated probability: a lower bound on ECE in absolute value."""
    return float(np.mean(up) - np.mean(p)) if len(p) else 0.0


def ece_per_draw(p: FloatArray, outcomes: BoolArray, bins: int = CALIBRATION_BINS) -> FloatArray:
    """ECE of fixed probabilities ``p`` ``[N]`` against each row of ``outcomes`` ``[D, N]``,
    binned as ``daemon.quality.expected_calibration_error`` bins."""
    which = np.minimum((p * bins).astype(np.int64), bins - 1)
    onehot = np.zeros((len(p), bins))
    onehot[np.arange(len(p)), which] = 1.0
    stated = p @ onehot
    realised = outcomes.astype(np.float64) @ onehot
    out: FloatArray = np.abs(realised - stated).sum(axis=1) / max(len(p), 1)
    return out


def dense_index(values: npt.NDArray[np.generic]) -> IntArray:
    """Each value's rank among the distinct values (end times to steps, symbols to rows)."""
    out: IntArray = np.unique(values, return_inverse=True)[1].astype(np.int64)
    return out


def market_correlation(returns: FloatArray, time_index: IntArray, symbol_index: IntArray) -> float:
    """Mean pairwise correlation of the symbols' one-candle returns (0 with one symbol): each
    symbol's returns are standardised, and at each time the products of distinct pairs are
    averaged."""
    symbols, times = int(symbol_index.max()) + 1, int(time_index.max()) + 1
    if symbols < 2:
        return 0.0
    grid = np.full((symbols, times), np.nan)
    grid[symbol_index, time_index] = returns
    z = (grid - np.nanmean(grid, axis=1, keepdims=True)) / (np.nanstd(grid, axis=1, keepdims=True) + 1e-12)
    present = ~np.isnan(z)
    z = np.where(present, z, 0.0)
    count = present.sum(axis=0)
    pairs = count * (count - 1)
    cross = z.sum(axis=0) ** 2 - (z**2).sum(axis=0)
    usable = pairs > 0
    return float(np.clip(cross[usable].sum() / pairs[usable].sum(), 0.0, 1.0)) if usable.any() else 0.0


def calibrated_outcomes(
    p: FloatArray,
    time_index: IntArray,
    symbol_index: IntArray,
    *,
    horizon: int,
    correlation: float,
    draws: int,
    rng: np.random.Generator,
) -> BoolArray:
    """``[draws, N]`` outcomes with ``P(up_i) = p_i`` exactly, dependent as ``horizon``-candle
    labels of correlated symbols are: label ``i`` is up when the sum of its symbol's shocks over
    the ``horizon`` steps after its time falls below the ``p_i`` quantile; each step's shock is a
    market factor (share ``correlation`` of its variance) plus the symbol's own."""
    symbols, steps = int(symbol_index.max()) + 1, int(time_index.max()) + 1 + horizon
    # total[:, s, u] is the sum of the symbol's shocks before step u; label i sums steps t+1 .. t+h.
    threshold = norm.ppf(np.clip(p, 1e-12, 1 - 1e-12)) * np.sqrt(horizon)
    out = np.empty((draws, len(p)), dtype=bool)
    for start in range(0, draws, DRAW_CHUNK):
        n = min(DRAW_CHUNK, draws - start)
        market = rng.standard_normal((n, 1, steps))
        own = rng.standard_normal((n, symbols, steps))
        shocks = np.sqrt(correlation) * market + np.sqrt(1.0 - correlation) * own
        total = np.concatenate([np.zeros((n, symbols, 1)), np.cumsum(shocks, axis=2)], axis=2)
        ahead = total[:, symbol_index, time_index + horizon + 1] - total[:, symbol_index, time_index + 1]
        out[start : start + n] = ahead < threshold
    return out


def calibrated_ece(
    p: FloatArray,
    time_index: IntArray,
    symbol_index: IntArray,
    *,
    horizon: int,
    correlation: float,
    draws: int,
    seed: int,
) -> FloatArray:
    """ECE of a perfectly calibrated forecaster stating ``p`` on ``draws`` simulated samples of
    the block's size and dependence (``calibrated_outcomes``)."""
    rng = np.random.default_rng(seed)
    chunks = [
        ece_per_draw(
            p,
            calibrated_outcomes(
                p, time_index, symbol_index, horizon=horizon, correlation=correlation, draws=n, rng=rng
            ),
        )
        for n in np.diff(np.r_[np.arange(0, draws, DRAW_CHUNK), draws])
    ]
    return np.concatenate(chunks)


def oracle_bootstrap_ece(up: BoolArray, end_ts: IntArray, *, block: int, samples: int, seed: int) -> FloatArray:
    """ECE on circular block-bootstrap resamples of the block's days of a constant forecaster
    stating the block's realised up rate (the rate the resampling draws from): ``|mean(y*) -
    mean(y)|``, the sampling noise of the up rate itself."""
    drawn = Bootstrap.over(end_ts, block=block, samples=samples, seed=seed)
    rates = drawn.mean(up.astype(np.float64), end_ts)
    out: FloatArray = np.abs(rates - float(np.mean(up)))
    return out


def trailing_outcome_rate(
    up: BoolArray, end_ts: IntArray, label_ts: IntArray, at: IntArray, *, half_life: float, prior: float
) -> FloatArray:
    """Per time in ``at``, the exponentially weighted mean of the market's daily up rates over the
    outcomes resolved by then (label time at or before it), each day one observation, decaying
    by half every ``half_life`` resolved days, started from ``prior`` as if the whole past had
    had that rate. Causal: nothing resolved after a time moves its value."""
    days, day = np.unique(end_ts, return_inverse=True)
    counts = np.bincount(day, minlength=len(days)).astype(np.float64)
    rates = np.bincount(day, weights=up.astype(np.float64), minlength=len(days)) / np.maximum(counts, 1.0)
    resolved = np.full(len(days), np.iinfo(np.int64).min, dtype=np.int64)
    np.maximum.at(resolved, day, label_ts)
    order = np.argsort(resolved, kind="stable")
    decay = 0.5 ** (1.0 / half_life)
    # a_k = decay * a_(k-1) + (1 - decay) * rate_k, from a_0 = prior.
    smoothed = lfilter([1.0 - decay], [1.0, -decay], rates[order], zi=[decay * prior])[0]
    after = np.concatenate([[prior], smoothed])
    taken = np.searchsorted(resolved[order], at, side="right")
    out: FloatArray = after[taken]
    return out


@dataclass(frozen=True)
class Floor:
    """The ECE a perfectly calibrated forecaster shows on one block and horizon."""

    median: float
    p95: float
    share_above: float
    """Share of draws with ECE above the limit."""

    @classmethod
    def of(cls, draws: FloatArray, limit: float) -> Floor:
        return cls(float(np.median(draws)), float(np.quantile(draws, 0.95)), float(np.mean(draws > limit)))


def verdict(ece: float, floor: Floor, limit: float) -> str:
    """``met``; ``unattainable`` when a perfectly calibrated forecaster fails in most draws;
    ``untestable`` when it fails in more than 5% (a failure is then no evidence); else
    ``miscalibrated``."""
    if ece <= limit:
        return "met"
    if floor.median > limit:
        return "unattainable"
    if floor.p95 > limit:
        return "untestable"
    return "miscalibrated"


def expected_met(floors: Sequence[Floor]) -> float:
    """Blocks a perfectly calibrated forecaster would meet the ECE limit on, in expectation."""
    return float(sum(1.0 - f.share_above for f in floors))
