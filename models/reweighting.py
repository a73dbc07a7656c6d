"""Online re-weighting of the ensemble's members by their recent realised loss.

The exported ensemble has fixed weights, fitted on the calibration slice. Markets change, and a
member that did well there may do badly now. This module is an exponentially weighted
("Hedge") update of those weights from outcomes as they become known:

- when the outcome of a prediction made at candle ``t`` for horizon ``h`` is realised (at candle
  ``t + h``, never earlier), each member's log loss on it, ``-log p_m`` or ``-log(1 - p_m)`` with
  ``p_m = sigmoid(z_m)``, is averaged over all symbols realised at that candle;
- each member keeps an exponentially discounted sum of those averages, ``L_m``, with a half-life
  of ``half_life`` candles;
- weights for the next predictions are ``w_m ∝ prior_m * exp(-eta * (L_m - min L))``, mixed with
  the prior by ``mix`` so no member is ever switched off for good;
- the ensemble's probability is then ``sigmoid(a * sum_m w_m (z_m - mu_m) + c + k (r - r0))`` with
  its fitted Platt scale ``a``, the members' mean training logits ``mu_m``, the training log-odds
  ``c`` and the trailing-rate term (``models.calibration.fit_combination``); with the fitted
  weights this is the exported ensemble.

It is a pure function of the stream (no wall clock, no randomness). The daemon does not use it
yet: its exact-recovery guarantee needs each decision to depend on a bounded number of recent
candles per symbol, and these weights depend on the whole history of every symbol.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
PROBABILITY_CLIP = 1e-6


@dataclass(frozen=True)
class ReweightingParams:
    half_life: float = 20.0
    """Candles after which a realised loss counts half."""
    eta: float = 20.0
    """How strongly a difference in discounted loss moves the weights."""
    mix: float = 0.1
    """Share of the prior weights always kept."""

    def __post_init__(self) -> None:
        if self.half_life <= 0 or self.eta < 0 or not 0 <= self.mix <= 1:
            raise ValueError("half_life must be positive, eta non-negative and mix in [0, 1]")


@dataclass
class OnlineReweighter:
    """Member weights ``[M, H]`` that follow realised losses; feed outcomes with ``observe``."""

    prior: FloatArray
    params: ReweightingParams = field(default_factory=ReweightingParams)
    loss: FloatArray = field(init=False)

    def __post_init__(self) -> None:
        self.prior = np.asarray(self.prior, dtype=np.float64)
        self.loss = np.zeros_like(self.prior)

    @property
    def decay(self) -> float:
        return math.pow(0.5, 1.0 / self.params.half_life)

    def weights(self) -> FloatArray:
        relative = self.loss - self.loss.min(axis=0, keepdims=True)
        hedge = self.prior * np.exp(-self.params.eta * relative)
        hedge = hedge / hedge.sum(axis=0, keepdims=True)
        out: FloatArray = (1 - self.params.mix) * hedge + self.params.mix * self.prior
        return out

    def observe(self, horizon: int, member_logits: FloatArray, up: npt.NDArray[np.bool_]) -> None:
        """Outcomes realised at one candle for one horizon: ``member_logits [K, M]``, ``up [K]``."""
        if len(up) == 0:
            return
        p = np.clip(0.5 * (1.0 + np.tanh(0.5 * member_logits)), PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
        losses = -np.where(up[:, None], np.log(p), np.log1p(-p)).mean(axis=0)
        self.loss[:, horizon] = self.decay * self.loss[:, horizon] + losses


def reweighted_stream(
    member_logits: FloatArray,
    up: npt.NDArray[np.bool_],
    valid: npt.NDArray[np.bool_],
    end_ts: npt.NDArray[np.int64],
    label_ts: npt.NDArray[np.int64],
    *,
    prior: FloatArray,
    scale: FloatArray,
    centre: FloatArray,
    anchor: FloatArray,
    params: ReweightingParams,
    offset: FloatArray | None = None,
) -> tuple[FloatArray, FloatArray]:
    """Replay a stream of predictions in time order with online weights.

    ``member_logits [N, M, H]`` with outcomes ``up``/``valid [N, H]`` realised at ``label_ts [N, H]``;
    ``scale [H]``, ``centre [M, H]`` and ``anchor [H]`` are the calibration (see the module's text),
    ``offset [N, H]`` the trailing-rate term of each window's logit (``models.calibration``), if any.
    Before the predictions of each candle, every outcome realised at or before it is observed.
    Returns the re-weighted probabilities ``[N, H]`` and the weights used at each distinct
    candle ``[D, M, H]``.
    """
    horizons = member_logits.shape[2]
    reweighter = OnlineReweighter(prior, params)
    dates = np.unique(end_ts)
    probabilities = np.zeros((len(end_ts), horizons))
    history = np.zeros((len(dates), *prior.shape))
    pending = []
    for j in range(horizons):
        rows = np.flatnonzero(valid[:, j])
        rows = rows[np.argsort(label_ts[rows, j], kind="stable")]
        pending.append((rows, label_ts[rows, j]))
    cursor = [0] * horizons
    by_date = np.argsort(end_ts, kind="stable")
    rows_by_date = np.split(by_date, np.searchsorted(end_ts[by_date], dates[1:]))
    for d, (date, rows) in enumerate(zip(dates, rows_by_date, strict=True)):
        for j in range(horizons):
            realised, times = pending[j]
            stop = int(np.searchsorted(times, date, side="right"))
            for when in np.unique(times[cursor[j] : stop]):
                batch = realised[cursor[j] : stop][times[cursor[j] : stop] == when]
                reweighter.observe(j, member_logits[batch, :, j], up[batch, j])
            cursor[j] = stop
        weights = reweighter.weights()
        history[d] = weights
        z = np.einsum("nmh,mh->nh", member_logits[rows] - centre, weights)
        shift = 0.0 if offset is None else offset[rows]
        probabilities[rows] = 0.5 * (1.0 + np.tanh(0.5 * (scale * z + anchor + shift)))
    return probabilities, history
