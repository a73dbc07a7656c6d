"""Baselines the ensemble is judged against, each fitted on the same fold's training windows.

- constant probability: the training up rate per horizon (with the default thresholds the
  strategy then always HOLDs, so it is also the always-HOLD baseline);
- momentum: calls the direction of the window's last return; its probability is the training up
  rate after an up (or a not-up) last candle;
- logistic regression on the same window features as the networks (the newest candle's, and their
  means over the last 5 and 20 candles);
- buy-and-hold (always long) has no probability: only its accuracy ("always up") and trading
  figures are defined;
- for the return quantiles: the training log returns' own quantiles, the same for every window,
  and the EWMA volatility of the window times the training returns' quantiles in units of it.
The best single member is chosen from the ensemble's own members by calibration-slice log loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import LogisticRegression  # type: ignore[import-untyped]
from sklearn.pipeline import make_pipeline  # type: ignore[import-untyped]
from sklearn.preprocessing import StandardScaler  # type: ignore[import-untyped]

from models.dataset import WindowSet
from models.features import window_features

FloatArray = npt.NDArray[np.float64]
SUMMARY_SPANS = (5, 20)
LOGISTIC_C = 0.1
FEATURE_CHUNK = 4096


def last_return(windows: npt.NDArray[np.float32]) -> FloatArray:
    """Log return of each window's newest candle (close over previous close)."""
    close = windows[:, :, 3].astype(np.float64)
    out: FloatArray = np.log(close[:, -1] / close[:, -2])
    return out


def _rate(up: npt.NDArray[np.bool_]) -> float:
    # Laplace smoothing keeps an empty group from predicting 0 or 1.
    return (float(up.sum()) + 1.0) / (len(up) + 2.0)


@dataclass(frozen=True)
class ConstantBaseline:
    rate: FloatArray
    """``[H]`` training up rate."""

    @classmethod
    def fit(cls, train: WindowSet) -> ConstantBaseline:
        valid = train.valid
        return cls(np.array([_rate(train.up[valid[:, j], j]) for j in range(len(train.horizons))]))

    def probabilities(self, data: WindowSet) -> FloatArray:
        return np.broadcast_to(self.rate, (len(data), len(self.rate))).copy()


@dataclass(frozen=True)
class MomentumBaseline:
    rates: FloatArray
    """``[H, 2]`` training up rate after a not-up and after an up last candle."""

    @classmethod
    def fit(cls, train: WindowSet) -> MomentumBaseline:
        rose = last_return(train.windows) > 0
        rates = np.array(
            [
                [_rate(train.up[train.valid[:, j] & (rose == side), j]) for side in (False, True)]
                for j in range(len(train.horizons))
            ]
        )
        return cls(rates)

    @staticmethod
    def called_up(data: WindowSet) -> npt.NDArray[np.bool_]:
        called: npt.NDArray[np.bool_] = last_return(data.windows) > 0
        return called

    @staticmethod
    def positions(data: WindowSet) -> npt.NDArray[np.int64]:
        """Long after an up candle, short after a down candle, flat after an unchanged one."""
        out: npt.NDArray[np.int64] = np.sign(last_return(data.windows)).astype(np.int64)
        return out

    def probabilities(self, data: WindowSet) -> FloatArray:
        rose = self.called_up(data).astype(np.int64)
        out: FloatArray = self.rates[:, rose].T.copy()
        return out


def summary_features(windows: npt.NDArray[np.float32]) -> FloatArray:
    """The window features (``models.features``) of the newest candle and their recent means."""
    parts = []
    for start in range(0, len(windows), FEATURE_CHUNK):
        features = window_features(windows[start : start + FEATURE_CHUNK].astype(np.float64))
        columns = [features[:, -1], *(features[:, -span:].mean(axis=1) for span in SUMMARY_SPANS)]
        parts.append(np.concatenate(columns, axis=1))
    return np.concatenate(parts) if parts else np.zeros((0, 11 * (1 + len(SUMMARY_SPANS))))


@dataclass(frozen=True)
class LogisticBaseline:
    """One standardised, L2-regularised logistic regression per horizon (scikit-learn)."""

    models: tuple[object, ...]

    @classmethod
    def fit(cls, train: WindowSet) -> LogisticBaseline:
        x = summary_features(train.windows)
        models = []
        for j in range(len(train.horizons)):
            rows = train.valid[:, j]
            model = make_pipeline(StandardScaler(), LogisticRegression(C=LOGISTIC_C, max_iter=1000))
            model.fit(x[rows], train.up[rows, j])
            models.append(model)
        return cls(tuple(models))

    def probabilities(self, data: WindowSet, features: FloatArray | None = None) -> FloatArray:
        x = summary_features(data.windows) if features is None else features
        columns = [np.asarray(model.predict_proba(x))[:, 1] for model in self.models]  # type: ignore[attr-defined]
        return np.stack(columns, axis=1).astype(np.float64)


@dataclass(frozen=True)
class QuantileBaseline:
    """Unconditional quantiles of the training log returns, per horizon: the same interval for
    every window, which any useful quantile model must beat."""

    values: FloatArray
    """``[H, Q]``"""

    @classmethod
    def fit(cls, train: WindowSet, levels: list[float]) -> QuantileBaseline:
        return cls(
            np.array([np.quantile(train.log_return[train.valid[:, j], j], levels) for j in range(len(train.horizons))])
        )

    def quantiles(self, data: WindowSet) -> FloatArray:
        return np.broadcast_to(self.values, (len(data), *self.values.shape)).copy()


EWMA_DECAY = 0.94
"""RiskMetrics' daily decay of the exponentially weighted variance."""


def ewma_volatility(windows: npt.NDArray[np.float32], decay: float = EWMA_DECAY) -> FloatArray:
    """``[N]`` exponentially weighted standard deviation of each window's close-to-close log returns
    (newest weighted most), floored so a flat window does not divide by zero."""
    close = windows[:, :, 3].astype(np.float64)
    returns = np.log(close[:, 1:] / close[:, :-1])
    weights = decay ** np.arange(returns.shape[1])[::-1]
    variance = (returns**2) @ weights / weights.sum()
    out: FloatArray = np.sqrt(variance) + 1e-8
    return out


@dataclass(frozen=True)
class VolatilityQuantileBaseline:
    """Each window's EWMA volatility times the training returns' unconditional quantiles in units
    of that volatility: a quantile model that knows today's volatility and nothing else, which a
    useful one must beat."""

    standardised: FloatArray
    """``[H, Q]`` quantiles of ``log_return / ewma_volatility`` on the training windows."""

    @classmethod
    def fit(cls, train: WindowSet, levels: list[float]) -> VolatilityQuantileBaseline:
        z = train.log_return / ewma_volatility(train.windows)[:, None]
        return cls(np.array([np.quantile(z[train.valid[:, j], j], levels) for j in range(len(train.horizons))]))

    def quantiles(self, data: WindowSet) -> FloatArray:
        out: FloatArray = ewma_volatility(data.windows)[:, None, None] * self.standardised[None]
        return out
