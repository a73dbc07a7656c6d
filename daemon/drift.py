"""Drift of the model's live inputs and outputs against the reference histograms in its manifest.

The manifest stores, for each standardised newest-candle feature and for the primary-horizon
probability, a reference histogram from validation: inner bin edges (bins open-ended at both
ends) and the share of reference values per bin (``models.export.reference_histogram``). The
daemon keeps the newest values in sliding windows and compares them with those histograms:

- PSI (population stability index) over the reference bins, ``sum((a - e) * ln(a / e))``, with
  shares floored at ``SHARE_FLOOR`` so that an empty bin gives a large but finite value. Usual
  reading: below 0.1 stable, 0.1 to 0.25 moderate shift, above 0.25 a shift worth acting on.
- KS, the largest distance between the window's empirical CDF and the reference CDF. The
  reference CDF is known exactly at the bin edges and taken as linear between them (the
  histogram says nothing finer); beyond the outer edges it is unknown, so the distance is
  measured over ``[edges[0], edges[-1]]`` only, where the reference covers all but its two tail shares.

Pure numpy: the daemon does not depend on scipy.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from models.artifact import Histogram, Reference

FloatArray = npt.NDArray[np.float64]

SHARE_FLOOR = 1e-4
"""Smallest bin share PSI uses: an empty bin would make it infinite."""


def bin_shares(values: npt.ArrayLike, edges: Sequence[float]) -> FloatArray:
    """Share of values per reference bin, binned as the reference was (a value on an edge goes right)."""
    data = np.asarray(values, dtype=np.float64)
    counts = np.bincount(
        np.searchsorted(np.asarray(edges, dtype=np.float64), data, side="right"), minlength=len(edges) + 1
    )
    total = counts.sum()
    return counts / total if total else counts.astype(np.float64)


def population_stability_index(actual: npt.ArrayLike, expected: npt.ArrayLike) -> float:
    """PSI between two vectors of bin shares (each summing to 1)."""
    a = np.maximum(np.asarray(actual, dtype=np.float64), SHARE_FLOOR)
    e = np.maximum(np.asarray(expected, dtype=np.float64), SHARE_FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def ks_statistic(values: npt.ArrayLike, reference: Histogram) -> float:
    """Largest |empirical CDF - reference CDF| over the reference's inner range (see the module doc)."""
    data = np.sort(np.asarray(values, dtype=np.float64))
    edges = np.asarray(reference.edges, dtype=np.float64)
    if data.size == 0 or edges.size == 0:
        return 0.0
    # Reference CDF at each edge: the shares of the bins left of it.
    cdf_at_edges = np.cumsum(np.asarray(reference.fractions, dtype=np.float64))[: edges.size]
    inside = data[(data >= edges[0]) & (data <= edges[-1])]
    points = np.concatenate([edges, inside])
    reference_cdf = np.interp(points, edges, cdf_at_edges)
    n = data.size
    # The empirical CDF jumps at each data point: compare on both sides of every jump.
    below = np.searchsorted(data, points, side="left") / n
    at_or_below = np.searchsorted(data, points, side="right") / n
    return float(max(np.max(np.abs(below - reference_cdf)), np.max(np.abs(at_or_below - reference_cdf))))


class SlidingSample:
    """The newest ``capacity`` rows of a stream of fixed-width float vectors, in a ring buffer."""

    def __init__(self, capacity: int, width: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be at least 1")
        self._rows = np.zeros((capacity, width), dtype=np.float64)
        self._next = 0
        self._filled = 0
        self.seen = 0
        """Rows ever added (the window's content changes whenever this does)."""

    def __len__(self) -> int:
        return self._filled

    def extend(self, rows: npt.ArrayLike) -> None:
        block = np.asarray(rows, dtype=np.float64).reshape(-1, self._rows.shape[1])
        self.seen += len(block)
        capacity = len(self._rows)
        block = block[-capacity:]
        count = len(block)
        first = min(count, capacity - self._next)
        self._rows[self._next : self._next + first] = block[:first]
        self._rows[: count - first] = block[first:]
        self._next = (self._next + count) % capacity
        self._filled = min(capacity, self._filled + count)

    def values(self) -> FloatArray:
        """The rows held, in no particular order."""
        return self._rows[: self._filled]


@dataclass(frozen=True, slots=True)
class DriftReport:
    samples: int
    """Observations in the window the statistics are computed over."""
    feature_psi: dict[str, float]
    feature_ks: dict[str, float]
    prediction_psi: float
    prediction_ks: float


class DriftMonitor:
    """Sliding windows of the newest features and primary-horizon probabilities, compared with a reference."""

    def __init__(self, reference: Reference, feature_names: Sequence[str], *, window: int, min_samples: int) -> None:
        # Features without a reference histogram cannot drift against one: they are not tracked.
        self._columns = [(i, name) for i, name in enumerate(feature_names) if name in reference.features]
        self._features: Mapping[str, Histogram] = reference.features
        self._prediction = reference.prediction
        self._min_samples = min_samples
        self._sample = SlidingSample(window, len(self._columns) + 1)
        self._report: DriftReport | None = None
        self._report_seen = -1

    def __len__(self) -> int:
        return len(self._sample)

    def observe(self, features: npt.ArrayLike, probabilities: npt.ArrayLike) -> None:
        """``[B, F]`` standardised newest-candle features and ``[B]`` primary-horizon probabilities."""
        feats = np.asarray(features, dtype=np.float64)
        columns = [i for i, _ in self._columns]
        probs = np.asarray(probabilities, dtype=np.float64).reshape(-1, 1)
        self._sample.extend(np.concatenate([feats[:, columns], probs], axis=1))

    def report(self) -> DriftReport | None:
        """The statistics over the current window; ``None`` until it holds ``min_samples`` observations.

        Computed when asked (at scrape time), and only again once new observations arrived.
        """
        if len(self._sample) < self._min_samples:
            return None
        if self._report_seen != self._sample.seen:
            self._report = self._compute()
            self._report_seen = self._sample.seen
        return self._report

    def _compute(self) -> DriftReport:
        rows = self._sample.values()
        psi: dict[str, float] = {}
        ks: dict[str, float] = {}
        for column, (_, name) in enumerate(self._columns):
            reference = self._features[name]
            values = rows[:, column]
            psi[name] = population_stability_index(bin_shares(values, reference.edges), reference.fractions)
            ks[name] = ks_statistic(values, reference)
        predictions = rows[:, -1]
        return DriftReport(
            samples=len(rows),
            feature_psi=psi,
            feature_ks=ks,
            prediction_psi=population_stability_index(
                bin_shares(predictions, self._prediction.edges), self._prediction.fractions
            ),
            prediction_ks=ks_statistic(predictions, self._prediction),
        )
