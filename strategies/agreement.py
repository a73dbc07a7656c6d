"""Multi-horizon agreement: BUY only when every chosen horizon is above its threshold.

The probabilities of all the model's horizons (or the ``horizons`` chosen) must agree: BUY when
each is above its ``buy_above``, SELL when each is below its ``sell_below``, HOLD otherwise.
Thresholds are one number for every horizon or one per horizon. Hysteresis (every horizon
within ``hysteresis`` of its threshold keeps the action) and cooldown work as in
``strategies.threshold``. Confidence is about the first chosen horizon (by default the model's
primary one, the horizon every signal reports).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import numpy as np
import numpy.typing as npt
from pydantic import Field, field_validator

from strategies.base import Action, EnsembleOutput, OutputRows, OutputSpec
from strategies.smoothing import BandStrategy, SmoothingParams, band_codes
from strategies.threshold import horizon_index

Threshold = float | dict[int, float]
"""One threshold for every horizon, or one per horizon (keyed by horizon in candles)."""


class AgreementParams(SmoothingParams):
    horizons: tuple[int, ...] | None = Field(
        None, min_length=1, description="Horizons that must agree, the first one reported; default all."
    )
    buy_above: Threshold = Field(0.6, description="BUY when every horizon's p exceeds its value (in (0.5, 1)).")
    sell_below: Threshold = Field(0.4, description="SELL when every horizon's p is below its value (in (0, 0.5)).")
    hysteresis: float = Field(0.0, ge=0.0, lt=0.5, description="Keep an action while every p is this close.")

    @field_validator("buy_above", "sell_below")
    @classmethod
    def _sorted(cls, value: Threshold) -> Threshold:
        # Sorted keys: the same thresholds always give the same strategy reference (and signal ids).
        return dict(sorted(value.items())) if isinstance(value, dict) else value


class AgreementStrategy(BandStrategy[AgreementParams]):
    name: ClassVar[str] = "agreement"
    params_model = AgreementParams

    def __init__(self, spec: OutputSpec, params: AgreementParams) -> None:
        super().__init__(spec, params)
        horizons = params.horizons or spec.horizons
        if len(set(horizons)) != len(horizons):
            raise ValueError(f"horizons: {list(horizons)} names a horizon twice")
        self._indices = [horizon_index(spec, h, "horizons") for h in horizons]
        self._buy = _per_horizon(params.buy_above, horizons, "buy_above", 0.5, 1.0)
        self._sell = _per_horizon(params.sell_below, horizons, "sell_below", 0.0, 0.5)
        narrowest = min(b - s for b, s in zip(self._buy, self._sell, strict=True))
        if params.hysteresis >= narrowest:
            raise ValueError("hysteresis must be smaller than buy_above - sell_below at every horizon")
        self.confidence_index = self._indices[0]

    def band(self, output: EnsembleOutput, previous: Action) -> Action:
        """BUY or SELL when every chosen horizon agrees, given the action asked for before."""
        p = [output.probabilities[i] for i in self._indices]
        keep_buy = self._p.hysteresis if previous is Action.BUY else 0.0
        if all(q > b - keep_buy for q, b in zip(p, self._buy, strict=True)):
            return Action.BUY
        keep_sell = self._p.hysteresis if previous is Action.SELL else 0.0
        if all(q < s + keep_sell for q, s in zip(p, self._sell, strict=True)):
            return Action.SELL
        return Action.HOLD

    def band_rows(self, rows: OutputRows) -> npt.NDArray[np.int8]:
        p = rows.probabilities[:, self._indices].astype(np.float64)
        buy = np.all(p > np.asarray(self._buy, dtype=np.float64), axis=1)
        sell = np.all(p < np.asarray(self._sell, dtype=np.float64), axis=1)
        return band_codes(np.asarray(buy), np.asarray(sell))


def _per_horizon(value: Threshold, horizons: Sequence[int], field: str, low: float, high: float) -> list[float]:
    """The threshold of each horizon, checked to lie strictly between ``low`` and ``high``."""
    if isinstance(value, dict):
        unknown = sorted(set(value) - set(horizons))
        if unknown:
            raise ValueError(f"{field}: thresholds for horizons {unknown} that are not among {list(horizons)}")
        missing = [h for h in horizons if h not in value]
        if missing:
            raise ValueError(f"{field}: no threshold for horizons {missing}")
        values = [value[h] for h in horizons]
    else:
        values = [value] * len(horizons)
    for horizon, threshold in zip(horizons, values, strict=True):
        if not low < threshold < high:
            raise ValueError(f"{field}: {threshold} for horizon {horizon} is not between {low} and {high}")
    return values
