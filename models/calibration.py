"""Ensemble weights and calibration, fitted on pooled out-of-fold predictions.

A fold's combination is fitted on every prediction that was out of sample for the model that
made it: the earlier folds' models on their own test blocks (labels cut at this fold's test block)
and this fold's model on its calibration slice. Half a year of one model says little about the
next year; five years of out-of-fold predictions of five models say more, and a member that only
looked good on one slice gets no weight.

The logit of an up move at horizon ``h`` is

    anchor_h + sum_m v_m (z_m - mu_m) / s_m + k_h (r_h - c_h) / d_h

- ``anchor_h``: log-odds of the training up rate (the base rate everything shrinks toward);
- ``z_m``: member ``m``'s logit, ``mu_m`` and ``s_m`` its mean and spread on its own model's
  training windows (each fold's logits are standardised with their own model's statistics);
- ``r_h``: the share of up moves over ``h`` candles realised inside the window itself (``trailing_rates``),
  ``c_h`` and ``d_h`` its mean and spread on training windows. This is calibration-in-the-large that
  follows the market the model serves, causally (only candles the window holds), so the daemon's
  exact recovery is untouched: a bull market's up rate is not baked into a bear market's signals.

``v >= 0`` and ``k`` are maximum a posteriori estimates under Gaussian priors. Every coefficient
must earn its own place beside the others: refitting without it must cost the pooled log loss
more than ``ln(n) / 2`` independent outcomes' worth (Schwarz's criterion, never weaker than
Akaike's one outcome). Backward elimination enforces it: the term whose removal costs least is
dropped while that cost is not above the bar, and the rest are refitted; with no term left the
horizon predicts the base rate. Testing the fit as a whole instead (total gain against the bar
times the number of coefficients) let a term without evidence of its own ride on another's: the
trailing rate's -1.50 on crypto-1h fold 3 at 1 hour, which gained 0.00073 beside the members
against a bar of 0.00085, and left that test block's ECE at twice the constant's (0.0395).
Outcomes are counted as independent only as far as they are: windows that end at the same time (the symbols of
one market on one day) share that day's market move and count once, and labels of an
``h``-candle horizon on consecutive times overlap, so ``n`` is the number of distinct window-end
times divided by ``h``, both against the priors and in the criterion. Counting every window of six
stocks as an outcome, with Akaike's criterion, let equities-1d keep member and trailing-rate
coefficients fitted on noise that were worse than the base rate on two later test blocks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize

from candlecast.errors import DataError
from models.dataset import WindowSet

FloatArray = npt.NDArray[np.float64]
STD_FLOOR = 1e-6
PRIOR_SD = 0.1
"""Prior standard deviation of a member coefficient, in logit per standard deviation of the
member's output: daily direction signals are weak, and without it a member whose output barely
varies gets a huge scale that amplifies noise."""
DRIFT_PRIOR_SD = 0.25
"""Prior standard deviation of the trailing-rate coefficient, in logit per standard deviation of
the trailing up rate."""


def sigmoid(z: FloatArray) -> FloatArray:
    out: FloatArray = 0.5 * (1.0 + np.tanh(0.5 * z))
    return out


def logit(p: FloatArray) -> FloatArray:
    out: FloatArray = np.log(p / (1 - p))
    return out


def trailing_rates(windows: npt.NDArray[np.float32], horizons: Sequence[int]) -> FloatArray:
    """``[N, H]`` share of ``close[t+h] > close[t]`` over the pairs inside each window (what
    ``models.networks.Ensemble.trailing_rates`` computes in the graph); NaN where ``h`` is not
    shorter than the window."""
    close = windows[:, :, 3]
    length = close.shape[1]
    out = np.full((len(windows), len(horizons)), np.nan)
    for j, h in enumerate(horizons):
        if h < length:
            out[:, j] = (close[:, h:] > close[:, : length - h]).mean(axis=1)
    return out


def fit_logistic(
    inputs: FloatArray,
    up: npt.NDArray[np.bool_],
    *,
    offset: float,
    prior_sd: float | FloatArray = PRIOR_SD,
    signed: int = 0,
    overlap: float = 1.0,
) -> FloatArray:
    """Maximum a posteriori ``v`` of ``p = sigmoid(inputs @ v + offset)`` under a Gaussian prior
    ``N(0, prior_sd^2)`` on each coefficient (L-BFGS-B); the first ``k - signed`` coefficients are
    non-negative, the last ``signed`` free. Labels that are not independent (an ``h``-candle
    horizon on consecutive windows, symbols of one market at one time) weigh as ``len(up) /
    overlap`` independent ones against the prior."""
    x = np.asarray(inputs, dtype=np.float64)
    y = up.astype(np.float64)
    k = x.shape[1]
    sd = np.broadcast_to(np.asarray(prior_sd, dtype=np.float64), (k,))
    ridge = overlap / (sd * sd * len(y))

    def objective(v: FloatArray) -> tuple[float, FloatArray]:
        z = x @ v + offset
        # log(1 + e^z) - y z, computed without overflow; the prior in the same per-label units.
        loss = float(np.mean(np.logaddexp(0.0, z) - y * z) + 0.5 * float(v @ (ridge * v)))
        return loss, x.T @ (sigmoid(z) - y) / len(y) + ridge * v

    bounds: list[tuple[float | None, float | None]] = [(0.0, None)] * (k - signed) + [(None, None)] * signed
    result = minimize(objective, np.zeros(k), jac=True, method="L-BFGS-B", bounds=bounds)
    return np.asarray(result.x, dtype=np.float64)


def mean_log_loss(z: FloatArray, up: npt.NDArray[np.bool_]) -> float:
    return float(np.mean(np.logaddexp(0.0, z) - up * z))


def evidence_bar(independent: float) -> float:
    """Mean log loss a coefficient must save to be kept: ``ln(n) / 2`` (never less than 1) of
    ``n`` independent outcomes."""
    return float(max(np.log(independent), 2.0) / (2 * independent))


def fit_with_evidence(
    inputs: FloatArray,
    up: npt.NDArray[np.bool_],
    *,
    offset: float,
    prior_sd: FloatArray,
    signed: int,
    overlap: float,
    independent: float,
) -> FloatArray:
    """``fit_logistic``'s coefficients after backward elimination: while some non-zero coefficient
    costs less than ``evidence_bar`` to refit without, the cheapest is set to 0 and the rest are
    refitted, so each one left has earned its bar beside the others (the free ``signed`` columns
    come last and stay last)."""
    k = inputs.shape[1]
    bar = evidence_bar(independent)
    free = np.arange(k) >= k - signed

    def fit(active: npt.NDArray[np.bool_]) -> tuple[FloatArray, float]:
        v = np.zeros(k)
        if active.any():
            v[active] = fit_logistic(
                inputs[:, active],
                up,
                offset=offset,
                prior_sd=prior_sd[active],
                signed=int(np.count_nonzero(free & active)),
                overlap=overlap,
            )
        return v, mean_log_loss(inputs @ v + offset, up)

    v, loss = fit(np.ones(k, dtype=bool))
    while np.any(v != 0):
        # A coefficient at its bound (0) leaves the optimum of the others unchanged: only non-zero ones are terms.
        active = v != 0
        without = [fit(active & (np.arange(k) != t)) for t in np.flatnonzero(active)]
        cheapest = min(range(len(without)), key=lambda i: without[i][1])
        if without[cheapest][1] - loss > bar:
            break
        v, loss = without[cheapest]
    return v


def fit_terms(
    x: FloatArray, d: FloatArray, up: npt.NDArray[np.bool_], *, offset: float, independent: float
) -> FloatArray:
    """One horizon's combination under the evidence rule (``fit_with_evidence``): ``[M + 1]``
    coefficients of the members' standardised logits ``x [N, M]`` and of the trailing-rate drift ``d``
    (left out, and 0, where it never varies)."""
    count = x.shape[1]
    usable = bool(np.any(d != 0.0))
    inputs = np.concatenate([x, d[:, None]], axis=1) if usable else x
    priors = np.r_[np.full(count, PRIOR_SD), [DRIFT_PRIOR_SD] * usable]
    v = fit_with_evidence(
        inputs,
        up,
        offset=offset,
        prior_sd=priors,
        signed=int(usable),
        overlap=len(up) / independent,
        independent=independent,
    )
    return v if usable else np.r_[v, 0.0]


@dataclass(frozen=True)
class Standardisation:
    """A model's member logits and the windows' trailing rates on its training windows."""

    mean: FloatArray
    """``[M, H]`` each member's mean logit."""
    spread: FloatArray
    """``[M, H]``"""
    drift_centre: FloatArray
    """``[H]`` mean trailing up rate (0 where the horizon is not shorter than the window)."""
    drift_spread: FloatArray
    """``[H]``"""

    @classmethod
    def fit(
        cls, train_logits: FloatArray, windows: npt.NDArray[np.float32], horizons: Sequence[int]
    ) -> Standardisation:
        rates = trailing_rates(windows, horizons)
        usable = ~np.isnan(rates).all(axis=0)
        centre = np.where(usable, np.nanmean(np.where(usable, rates, 0.0), axis=0), 0.0)
        spread = np.where(usable, np.nanstd(np.where(usable, rates, 0.0), axis=0), 1.0) + STD_FLOOR
        return cls(train_logits.mean(axis=0), train_logits.std(axis=0) + STD_FLOOR, centre, spread)


@dataclass(frozen=True)
class CalibrationPart:
    """Out-of-fold predictions of one model, standardised with that model's own statistics."""

    standardised: FloatArray
    """``[N, M, H]``"""
    drift: FloatArray
    """``[N, H]`` trailing up rate, centred and scaled by the fitting fold's statistics (0 where undefined)."""
    up: npt.NDArray[np.bool_]
    valid: npt.NDArray[np.bool_]
    end_ts: npt.NDArray[np.int64]
    """``[N]`` window end times: windows ending together are one outcome of the market."""

    @classmethod
    def of(
        cls, member_logits: FloatArray, data: WindowSet, own: Standardisation, fitting: Standardisation
    ) -> CalibrationPart:
        rates = trailing_rates(data.windows, data.horizons)
        drift = np.where(np.isnan(rates), 0.0, (rates - fitting.drift_centre) / fitting.drift_spread)
        return cls((member_logits - own.mean) / own.spread, drift, data.up, data.valid, data.end_ts)

    def times(self, horizon: int) -> int:
        """Distinct end times of the windows labelled at horizon index ``horizon``."""
        return len(np.unique(self.end_ts[self.valid[:, horizon]]))


@dataclass(frozen=True)
class Combination:
    weights: FloatArray
    """``[M, H]`` non-negative, summing to one per horizon (uniform where the scale is 0, for the quantiles)."""
    scale: FloatArray
    bias: FloatArray
    drift_coef: FloatArray
    """``[H]`` logit per unit of trailing up rate."""
    drift_centre: FloatArray
    """``[H]``"""
    member_platt: FloatArray
    """``[M, H, 2]`` each member's own Platt scale and bias (for the best-member baseline)."""
    member_log_loss: FloatArray
    """``[M, H]`` each calibrated member's pooled out-of-fold log loss."""
    member_train_mean: FloatArray
    """``[M, H]`` each member's mean logit on the training windows."""
    labels: list[int]
    """Pooled out-of-fold labels per horizon the fit used."""


def pooled_horizon(
    parts: Sequence[CalibrationPart], j: int, step: int
) -> tuple[FloatArray, FloatArray, npt.NDArray[np.bool_], float]:
    """Horizon index ``j``'s labelled rows pooled over ``parts``: standardised member logits
    ``[N, M]``, trailing-rate drifts, outcomes, and the independent outcomes among them (distinct
    end times over the horizon's ``step`` candles)."""
    x = np.concatenate([p.standardised[p.valid[:, j], :, j] for p in parts])
    d = np.concatenate([p.drift[p.valid[:, j], j] for p in parts])
    up = np.concatenate([p.up[p.valid[:, j], j] for p in parts])
    return x, d, up, sum(p.times(j) for p in parts) / step


def fit_combination(
    parts: Sequence[CalibrationPart],
    train_rate: FloatArray,
    standardisation: Standardisation,
    steps: Sequence[int] | None = None,
) -> Combination:
    """Ensemble weights, Platt scale and trailing-rate coefficient per horizon on pooled
    out-of-fold predictions (see the module's text); stored as ``p = sigmoid(scale * sum_m w_m z_m
    + bias + drift_coef * (r - drift_centre))``."""
    mean, spread = standardisation.mean, standardisation.spread
    count, horizons = mean.shape
    anchor = logit(train_rate)
    weights = np.full((count, horizons), 1.0 / count)
    scale, bias, drift = np.zeros(horizons), anchor.copy(), np.zeros(horizons)
    platt = np.zeros((count, horizons, 2))
    losses = np.zeros((count, horizons))
    labels = []
    for j in range(horizons):
        x, d, up, independent = pooled_horizon(parts, j, steps[j] if steps else 1)
        labels.append(len(up))
        if len(up) < 2:
            raise DataError(f"horizon {j + 1} of {horizons}: fewer than 2 out-of-fold labels to calibrate on")
        offset = float(anchor[j])
        overlap = len(up) / independent
        v = fit_terms(x, d, up, offset=offset, independent=independent)
        coef = v[:count] / spread[:, j]
        scale[j] = coef.sum()
        if scale[j] > 0:
            weights[:, j] = coef / scale[j]
            bias[j] = offset - float(coef @ mean[:, j])
        drift[j] = v[count] / standardisation.drift_spread[j]
        for m in range(count):
            a = float(fit_logistic(x[:, m : m + 1], up, offset=offset, overlap=overlap)[0])
            platt[m, j] = (a / spread[m, j], offset - a * mean[m, j] / spread[m, j])
            losses[m, j] = mean_log_loss(a * x[:, m] + offset, up)
    return Combination(weights, scale, bias, drift, standardisation.drift_centre.copy(), platt, losses, mean, labels)


def drift_offset(
    windows: npt.NDArray[np.float32], horizons: Sequence[int], coef: FloatArray, centre: FloatArray
) -> FloatArray:
    """``[N, H]`` the trailing-rate term of the logit, as the graph adds it."""
    rates = trailing_rates(windows, horizons)
    out: FloatArray = np.where(np.isnan(rates), 0.0, coef * (rates - centre))
    return out


@dataclass(frozen=True)
class OutOfFold:
    """One fold's model on its own test block: raw member logits ``[N, M, H]``, the windows and
    that model's standardisation, pooled into the later folds' calibration."""

    member_logits: FloatArray
    data: WindowSet
    standardisation: Standardisation

    def part(self, cutoff_ts: int, fitting: Standardisation) -> CalibrationPart:
        """The predictions with every label realised at or after ``cutoff_ts`` (the fitting fold's
        test block) dropped."""
        return CalibrationPart.of(self.member_logits, self.data.labels_before(cutoff_ts), self.standardisation, fitting)
