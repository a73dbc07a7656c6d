"""A small exported ensemble for daemon tests: real TorchScript, real manifest, untrained weights.

Daemon tests check plumbing (every signal's probability equals the model's output for the same
window), which any verified artifact shows; model quality is tested on the bundled artifact.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from models.artifact import TimeRange, Training
from models.export import export_ensemble, reference_from
from models.features import window_features
from models.networks import Ensemble, WindowFeatures, build_member
from models.torchscript import LoadedModel

WINDOW = 64
HORIZONS = (1, 5, 20)
QUANTILES = (0.1, 0.5, 0.9)


def synthetic_windows(count: int, length: int = WINDOW, seed: int = 0) -> np.ndarray:
    """Geometric random-walk OHLCV windows with consistent highs and lows."""
    rng = np.random.default_rng(seed)
    closes = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (count, length + 1)), axis=1))
    opens, closes = closes[:, :-1], closes[:, 1:]
    highs = np.maximum(opens, closes) * (1 + np.abs(rng.normal(0, 0.003, opens.shape)))
    lows = np.minimum(opens, closes) * (1 - np.abs(rng.normal(0, 0.003, opens.shape)))
    volumes = rng.lognormal(10, 1, opens.shape)
    return np.stack([opens, highs, lows, closes, volumes], axis=-1).astype(np.float32)


def build_test_model(path: Path, *, version: str = "0.0.1", seed: int = 7, interval: str = "1d") -> LoadedModel:
    torch.manual_seed(seed)
    kinds = ("lstm", "multiscale")
    ensemble = Ensemble([build_member(k, len(HORIZONS), len(QUANTILES)) for k in kinds], len(HORIZONS))
    windows = synthetic_windows(256, seed=seed)
    raw = window_features(windows.astype(np.float64)).reshape(-1, 11)
    mean, std = torch.tensor(raw.mean(0), dtype=torch.float32), torch.tensor(raw.std(0) + 1e-6, dtype=torch.float32)
    for module in ensemble.modules():
        if isinstance(module, WindowFeatures):
            module.mean.copy_(mean)
            module.std.copy_(std)
    with torch.inference_mode():
        p, _, _, _, last = ensemble.eval()(torch.from_numpy(windows))
    span = TimeRange(start="n/a", end="n/a", windows=0)
    training = Training(
        data=[],
        symbols=[],
        train=span,
        validation=span,
        test=None,
        purge_candles=0,
        seed=seed,
        config={"purpose": "test fixture, untrained"},
    )
    reference = reference_from(last.numpy(), p[:, 0].double().numpy(), hit_rate=0.5, brier=0.25, ece=0.0)
    return export_ensemble(
        ensemble,
        path,
        name="test-ensemble",
        version=version,
        window=WINDOW,
        interval=interval,
        calendar="weekdays" if interval == "1d" else "continuous",
        gap_policy="tolerate" if interval == "1d" else "reset",
        max_missing=3 if interval == "1d" else 0,
        horizons=HORIZONS,
        quantiles=QUANTILES,
        member_names=list(kinds),
        member_kinds=list(kinds),
        training=training,
        metrics={},
        reference=reference,
        golden_windows=windows[:4],
    )


STREAM_SPAN = 16
STREAM_LOOKBACK = 8
STREAM_WINDOW = STREAM_SPAN + STREAM_LOOKBACK


def build_streaming_test_model(path: Path, *, version: str = "0.0.1", seed: int = 7) -> LoadedModel:
    """A tiny streaming artifact (one one-layer LSTM member of 8 units; span 16, lookback 8, windows of
    24 daily candles): its step path and windowed forward, untrained, with the forget gate held open and
    the inputs amplified so that its outputs depend on how many candles the state has seen (an output
    at another history length differs by about 1e-3, not 1e-5)."""
    from models.streaming import fit_standardisation, streaming_ensemble

    torch.manual_seed(seed)
    ensemble = streaming_ensemble(len(HORIZONS), len(QUANTILES), [(8, 1)], span=STREAM_SPAN, lookback=STREAM_LOOKBACK)
    windows = synthetic_windows(64, STREAM_WINDOW, seed=seed)
    # Opens away from the previous close, as real candles have: else the open-gap feature's spread is
    # the floor, and any real candle saturates it.
    rng = np.random.default_rng(seed)
    windows[..., 0] *= np.exp(rng.normal(0, 0.005, windows.shape[:2])).astype(np.float32)
    windows[..., 1] = np.maximum(windows[..., 1], windows[..., 0])
    windows[..., 2] = np.minimum(windows[..., 2], windows[..., 0])
    fit_standardisation(ensemble, torch.from_numpy(windows))
    with torch.no_grad():
        for cell in ensemble.modules():
            if isinstance(cell, torch.nn.LSTM):
                bias, weight = cell.bias_ih_l0, cell.weight_ih_l0
                assert isinstance(bias, torch.Tensor) and isinstance(weight, torch.Tensor)
                bias[cell.hidden_size : 2 * cell.hidden_size] += 4.0
                weight.mul_(3.0)
    with torch.inference_mode():
        p, _, _, _, last = ensemble.eval()(torch.from_numpy(windows))
    span = TimeRange(start="n/a", end="n/a", windows=0)
    training = Training([], [], span, span, None, 0, seed, {"purpose": "test fixture, untrained, streaming"})
    return export_ensemble(
        ensemble,
        path,
        name="test-streaming",
        version=version,
        window=STREAM_WINDOW,
        interval="1d",
        calendar="weekdays",
        gap_policy="tolerate",
        max_missing=3,
        horizons=HORIZONS,
        quantiles=QUANTILES,
        member_names=["s8"],
        member_kinds=["streaming-lstm"],
        training=training,
        metrics={},
        reference=reference_from(last.numpy(), p[:, 0].double().numpy(), hit_rate=0.5, brier=0.25, ece=0.0),
        golden_windows=windows[:4],
    )
