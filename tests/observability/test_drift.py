"""Drift statistics: PSI over the reference bins, KS against the reference CDF, sliding windows."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

from daemon.drift import (
    DriftMonitor,
    SlidingSample,
    bin_shares,
    ks_statistic,
    population_stability_index,
)
from models.artifact import Histogram, Reference
from models.export import reference_histogram


def test_bins_like_the_reference_histogram() -> None:
    """Binning reference data with its own edges gives back the manifest's shares."""
    data = np.random.default_rng(0).normal(size=5000)
    reference = reference_histogram(data)
    assert bin_shares(data, reference.edges) == pytest.approx(reference.fractions)


def test_psi_by_hand() -> None:
    assert population_stability_index([0.5, 0.5], [0.5, 0.5]) == 0.0
    expected = (0.7 - 0.5) * np.log(0.7 / 0.5) + (0.3 - 0.5) * np.log(0.3 / 0.5)
    assert population_stability_index([0.7, 0.3], [0.5, 0.5]) == pytest.approx(expected)
    # An empty bin is floored, not infinite.
    assert np.isfinite(population_stability_index([1.0, 0.0], [0.5, 0.5]))


def test_psi_separates_same_from_shifted() -> None:
    rng = np.random.default_rng(1)
    reference = reference_histogram(rng.normal(size=20_000))
    same = bin_shares(rng.normal(size=5000), reference.edges)
    shifted = bin_shares(rng.normal(0.5, 1.0, size=5000), reference.edges)
    assert population_stability_index(same, reference.fractions) < 0.02
    assert population_stability_index(shifted, reference.fractions) > 0.2


def test_ks_equals_scipy_against_the_piecewise_linear_cdf() -> None:
    """With no tail shares the reference CDF is fully known: the statistic is scipy's one-sample KS."""
    edges = [0.0, 0.1, 0.3, 0.6, 1.0]
    reference = Histogram(edges=edges, fractions=[0.0, 0.2, 0.3, 0.1, 0.4, 0.0])
    cdf_at_edges = np.cumsum(reference.fractions)[: len(edges)]
    data = np.random.default_rng(2).uniform(0, 1, size=700)
    expected = stats.kstest(data, lambda x: np.interp(x, edges, cdf_at_edges)).statistic
    assert ks_statistic(data, reference) == pytest.approx(expected, abs=1e-12)


def test_ks_same_and_shifted() -> None:
    rng = np.random.default_rng(3)
    reference = reference_histogram(rng.normal(size=20_000))
    assert ks_statistic(rng.normal(size=5000), reference) < 0.05
    assert ks_statistic(rng.normal(1.0, 1.0, size=5000), reference) > 0.3
    assert ks_statistic([], reference) == 0.0


def test_sliding_sample_keeps_the_newest_rows() -> None:
    sample = SlidingSample(4, 1)
    sample.extend([[1.0], [2.0], [3.0]])
    sample.extend([[4.0], [5.0]])
    assert sorted(sample.values()[:, 0].tolist()) == [2.0, 3.0, 4.0, 5.0]
    sample.extend(np.arange(10, 20, dtype=np.float64).reshape(-1, 1))
    assert sorted(sample.values()[:, 0].tolist()) == [16.0, 17.0, 18.0, 19.0]
    assert (len(sample), sample.seen) == (4, 15)


def test_monitor_reports_once_it_has_enough_samples() -> None:
    rng = np.random.default_rng(4)
    reference = Reference(
        features={"a": reference_histogram(rng.normal(size=10_000)), "b": reference_histogram(rng.normal(size=10_000))},
        prediction=reference_histogram(rng.uniform(size=10_000)),
        hit_rate=0.5,
        brier=0.25,
        ece=0.01,
    )
    # Column "c" has no reference histogram: it is not tracked.
    monitor = DriftMonitor(reference, ["a", "c", "b"], window=1000, min_samples=500)
    monitor.observe(
        np.column_stack([rng.normal(size=400), rng.normal(size=400), rng.normal(3, 1, 400)]), rng.uniform(size=400)
    )
    assert monitor.report() is None
    monitor.observe(
        np.column_stack([rng.normal(size=400), rng.normal(size=400), rng.normal(3, 1, 400)]), rng.uniform(size=400)
    )
    report = monitor.report()
    assert report is not None
    assert report.samples == 800
    assert set(report.feature_psi) == set(report.feature_ks) == {"a", "b"}
    assert report.feature_psi["a"] < 0.05 < 1.0 < report.feature_psi["b"]
    assert report.prediction_psi < 0.05
    assert report.prediction_ks < 0.1
    assert monitor.report() is report  # nothing new: not computed again
