"""The in-graph features equal the numpy reference (the specification) on random valid windows."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from models.features import FEATURE_NAMES, SIGMA_FLOOR, pool_window, window_features, window_volatility
from models.networks import WindowFeatures, pool
from models.networks import window_volatility as window_volatility_graph
from tests.support.model import synthetic_windows


@st.composite
def ohlcv_windows(draw: st.DrawFn) -> np.ndarray:
    """Consistent OHLCV windows: a random walk of closes, opens near the previous close, highs and
    lows around both, volumes that may be zero; prices from cents to thousands."""
    batch = draw(st.integers(1, 4))
    length = draw(st.sampled_from([16, 32, 64]))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([0.05, 3.0, 150.0, 4000.0]))
    volatility = draw(st.floats(0.002, 0.08))
    rng = np.random.default_rng(seed)
    closes = scale * np.exp(np.cumsum(rng.normal(0, volatility, (batch, length + 1)), axis=1))
    opens = closes[:, :-1] * np.exp(rng.normal(0, volatility / 4, (batch, length)))
    closes = closes[:, 1:]
    highs = np.maximum(opens, closes) * np.exp(np.abs(rng.normal(0, volatility / 2, opens.shape)))
    lows = np.minimum(opens, closes) * np.exp(-np.abs(rng.normal(0, volatility / 2, opens.shape)))
    volumes = np.where(rng.random(opens.shape) < 0.05, 0.0, rng.lognormal(10, 2, opens.shape))
    return np.stack([opens, highs, lows, closes, volumes], axis=-1).astype(np.float32)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ohlcv_windows())
def test_graph_features_match_the_numpy_reference(windows: np.ndarray) -> None:
    expected = window_features(windows.astype(np.float64))
    got = WindowFeatures().raw(torch.from_numpy(windows)).double().numpy()
    assert got.shape == expected.shape == (*windows.shape[:2], len(FEATURE_NAMES))
    np.testing.assert_allclose(got, expected, rtol=2e-3, atol=2e-3)


@settings(max_examples=30, deadline=None)
@given(ohlcv_windows(), st.sampled_from([2, 4, 8, 16]))
def test_graph_pooling_matches_the_numpy_reference(windows: np.ndarray, factor: int) -> None:
    expected = pool_window(windows.astype(np.float64), factor)
    got = pool(torch.from_numpy(windows), factor).double().numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6)


def test_standardisation_uses_the_buffers() -> None:
    windows = torch.from_numpy(synthetic_windows(3, 32))
    features = WindowFeatures()
    raw = features.raw(windows)
    features.mean.fill_(1.0)
    features.std.fill_(2.0)
    torch.testing.assert_close(features(windows), (raw - 1.0) / 2.0)


@settings(max_examples=30, deadline=None)
@given(ohlcv_windows())
def test_graph_volatility_matches_the_numpy_reference(windows: np.ndarray) -> None:
    got = window_volatility_graph(torch.from_numpy(windows), SIGMA_FLOOR).double().numpy()
    np.testing.assert_allclose(got, window_volatility(windows.astype(np.float64)), rtol=2e-3, atol=1e-6)
