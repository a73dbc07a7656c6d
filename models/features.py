"""Reference implementation of the window features, in numpy (float64).

The exported model computes the same features inside its TorchScript graph
(``models.networks.WindowFeatures``), so training and serving cannot disagree; this module is
the specification that the graph is tested against, and what baselines (logistic regression)
are fitted on.

Every feature is scale-free: price moves are divided by the window's own realised volatility
(``sigma``, the standard deviation of its close-to-close log returns), and the level of that
volatility enters as its logarithm. A window of BTC in dollars and one of a stock in cents give
comparable inputs.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

FEATURE_NAMES: tuple[str, ...] = (
    "ret",  # close-to-close log return / sigma
    "gap",  # open vs previous close / sigma
    "body",  # log(close / open) / sigma
    "range",  # log(high / low) / sigma
    "upper_wick",  # log(high / max(open, close)) / sigma
    "lower_wick",  # log(min(open, close) / low) / sigma
    "volume_change",  # change of log1p(volume)
    "volume_z",  # log1p(volume) standardised within the window
    "rolling_vol",  # std of the last ROLLING returns / sigma
    "range_position",  # where the close sits between the window's lowest and highest close
    "log_sigma",  # log of the window's realised volatility
)
ROLLING = 8
SIGMA_FLOOR = 1e-6
VOLUME_FLOOR = 1e-3
POSITION_FLOOR = 1e-6

FloatArray = npt.NDArray[np.float64]


def window_features(window: npt.ArrayLike) -> FloatArray:
    """Features of one or many windows: ``[..., T, 5]`` OHLCV in, ``[..., T, 11]`` out."""
    x = np.asarray(window, dtype=np.float64)
    o, h, lo, c, v = (x[..., i] for i in range(5))
    prev_close = np.concatenate([o[..., :1], c[..., :-1]], axis=-1)
    ret = np.log(c / prev_close)
    sigma = ret.std(axis=-1, keepdims=True) + SIGMA_FLOOR
    log_volume = np.log1p(v)
    prev_log_volume = np.concatenate([log_volume[..., :1], log_volume[..., :-1]], axis=-1)
    volume_z = (log_volume - log_volume.mean(axis=-1, keepdims=True)) / (
        log_volume.std(axis=-1, keepdims=True) + VOLUME_FLOOR
    )
    log_close = np.log(c)
    low_close = log_close.min(axis=-1, keepdims=True)
    high_close = log_close.max(axis=-1, keepdims=True)
    columns = [
        ret / sigma,
        np.log(o / prev_close) / sigma,
        np.log(c / o) / sigma,
        np.log(h / lo) / sigma,
        np.log(h / np.maximum(o, c)) / sigma,
        np.log(np.minimum(o, c) / lo) / sigma,
        log_volume - prev_log_volume,
        volume_z,
        rolling_std(ret, ROLLING) / sigma,
        (log_close - low_close) / (high_close - low_close + POSITION_FLOOR),
        np.broadcast_to(np.log(sigma), ret.shape),
    ]
    return np.stack(columns, axis=-1)


def window_volatility(window: npt.ArrayLike) -> FloatArray:
    """``sigma`` of each window, ``[..., T, 5]`` in, ``[...]`` out: the scale the features divide
    price moves by, and the unit of the members' return quantiles."""
    x = np.asarray(window, dtype=np.float64)
    o, c = x[..., 0], x[..., 3]
    prev_close = np.concatenate([o[..., :1], c[..., :-1]], axis=-1)
    out: FloatArray = np.log(c / prev_close).std(axis=-1) + SIGMA_FLOOR
    return out


def rolling_std(values: FloatArray, k: int) -> FloatArray:
    """Causal standard deviation over the last ``k`` values (fewer at the start of the window)."""
    n = values.shape[-1]
    out = np.empty_like(values)
    for t in range(n):
        out[..., t] = values[..., max(0, t - k + 1) : t + 1].std(axis=-1)
    return out


def pool_window(window: npt.ArrayLike, factor: int) -> FloatArray:
    """Coarser candles: every ``factor`` candles become one (first open, max high, min low,
    last close, summed volume). ``T`` must be divisible by ``factor``."""
    x = np.asarray(window, dtype=np.float64)
    t = x.shape[-2]
    if t % factor:
        raise ValueError(f"window length {t} is not divisible by {factor}")
    g = x.reshape(*x.shape[:-2], t // factor, factor, 5)
    return np.stack(
        [
            g[..., 0, 0],
            g[..., :, 1].max(axis=-1),
            g[..., :, 2].min(axis=-1),
            g[..., -1, 3],
            g[..., :, 4].sum(axis=-1),
        ],
        axis=-1,
    )
