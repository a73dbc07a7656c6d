"""Threshold strategy: BUY above an upper probability, SELL below a lower one, HOLD between.

Hysteresis keeps an action while the probability stays within ``hysteresis`` of the threshold
that triggered it; a cooldown takes an action only once it has been asked for ``cooldown + 1``
candles in a row and then keeps it at least that long. Both have a finite memory
(``strategies.smoothing``), so the signal does not flicker around a threshold and a restarted
daemon still decides exactly as an uninterrupted one.
"""

from __future__ import annotations

from typing import ClassVar, Self

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from strategies.base import Action, EnsembleOutput, OutputRows, OutputSpec
from strategies.smoothing import BandStrategy, SmoothingParams, band_codes


class ThresholdParams(SmoothingParams):
    buy_above: float = Field(0.6, gt=0.5, lt=1.0, description="BUY when p exceeds this.")
    sell_below: float = Field(0.4, gt=0.0, lt=0.5, description="SELL when p is below this.")
    hysteresis: float = Field(
        0.0, ge=0.0, lt=0.5, description="Keep BUY while p > buy_above - hysteresis (SELL alike)."
    )
    horizon: int | None = Field(None, description="Horizon (candles) to act on; default the model's primary.")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.hysteresis >= self.buy_above - self.sell_below:
            raise ValueError("hysteresis must be smaller than buy_above - sell_below")
        return self


def horizon_index(spec: OutputSpec, horizon: int | None, field: str = "horizon") -> int:
    """Position of ``horizon`` (default: the primary one) among the model's horizons."""
    chosen = spec.horizons[0] if horizon is None else horizon
    if chosen not in spec.horizons:
        raise ValueError(f"{field}: the model predicts horizons {list(spec.horizons)}, not {chosen}")
    return spec.horizons.index(chosen)


class ThresholdStrategy(BandStrategy[ThresholdParams]):
    name: ClassVar[str] = "threshold"
    params_model = ThresholdParams

    def __init__(self, spec: OutputSpec, params: ThresholdParams) -> None:
        super().__init__(spec, params)
        self.index = self.confidence_index = horizon_index(spec, params.horizon)
        """Position of the horizon acted on in each output's tuples."""

    def band(self, output: EnsembleOutput, previous: Action) -> Action:
        """The action the thresholds ask for, given the one they asked for on the candle before."""
        p = output.probabilities[self.index]
        if p > self._p.buy_above or (previous is Action.BUY and p > self._p.buy_above - self._p.hysteresis):
            return Action.BUY
        if p < self._p.sell_below or (previous is Action.SELL and p < self._p.sell_below + self._p.hysteresis):
            return Action.SELL
        return Action.HOLD

    def band_rows(self, rows: OutputRows) -> npt.NDArray[np.int8]:
        p = rows.probabilities[:, self.index].astype(np.float64)
        return band_codes(p > self._p.buy_above, p < self._p.sell_below)
