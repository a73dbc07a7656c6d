"""Confidence-gated strategy: the threshold strategy, holding when the ensemble is unsure.

A candle is *uncertain* when, at the horizon acted on, the members' probabilities disagree by
more than ``max_disagreement`` (their standard deviation) or the predicted log-return interval
between two quantile levels is wider than ``max_interval``. The thresholds then ask for HOLD,
whatever the probability; hysteresis and cooldown apply on top, as in ``strategies.threshold``
(with a cooldown, an uncertain spell must last ``cooldown + 1`` candles to force HOLD).
"""

from __future__ import annotations

from typing import ClassVar, Self

import numpy as np
import numpy.typing as npt
from pydantic import Field, model_validator

from strategies.base import Action, EnsembleOutput, OutputRows, OutputSpec
from strategies.smoothing import HOLD_CODE
from strategies.threshold import ThresholdParams, ThresholdStrategy


class GatedParams(ThresholdParams):
    max_disagreement: float | None = Field(
        0.1, gt=0.0, description="HOLD when the members' probabilities have a larger standard deviation; null: off."
    )
    max_interval: float | None = Field(
        None,
        gt=0.0,
        description="HOLD when the quantile interval (log return) is wider; null: off. Depends on asset and interval.",
    )
    interval: tuple[float, float] | None = Field(
        None, description="Quantile levels bounding the interval; default the model's lowest and highest."
    )

    @model_validator(mode="after")
    def _gated(self) -> Self:
        if self.max_disagreement is None and self.max_interval is None:
            raise ValueError("set max_disagreement or max_interval (with neither, use the threshold strategy)")
        return self


class GatedStrategy(ThresholdStrategy):
    name: ClassVar[str] = "gated"
    params_model = GatedParams

    def __init__(self, spec: OutputSpec, params: GatedParams) -> None:
        super().__init__(spec, params)
        self._gate = params
        low, high = params.interval or (spec.quantiles[0], spec.quantiles[-1])
        for level in (low, high):
            if level not in spec.quantiles:
                raise ValueError(f"interval: the model predicts quantiles {list(spec.quantiles)}, not {level}")
        if low >= high:
            raise ValueError("interval: the lower quantile level must come first")
        self._low, self._high = spec.quantiles.index(low), spec.quantiles.index(high)

    def uncertain(self, output: EnsembleOutput) -> bool:
        """Whether the members disagree or the quantile interval is too wide to act on."""
        limit = self._gate.max_disagreement
        if limit is not None and output.disagreement[self.index] > limit:
            return True
        width = output.quantiles[self.index][self._high] - output.quantiles[self.index][self._low]
        return self._gate.max_interval is not None and width > self._gate.max_interval

    def band(self, output: EnsembleOutput, previous: Action) -> Action:
        return Action.HOLD if self.uncertain(output) else super().band(output, previous)

    def uncertain_rows(self, rows: OutputRows) -> npt.NDArray[np.bool_]:
        """``uncertain`` for every row at once."""
        uncertain = np.zeros(len(rows.probabilities), dtype=np.bool_)
        limit = self._gate.max_disagreement
        if limit is not None:
            uncertain |= rows.disagreement[:, self.index].astype(np.float64) > limit
        if self._gate.max_interval is not None:
            levels = rows.quantiles[:, self.index].astype(np.float64)
            uncertain |= levels[:, self._high] - levels[:, self._low] > self._gate.max_interval
        return uncertain

    def band_rows(self, rows: OutputRows) -> npt.NDArray[np.int8]:
        return np.where(self.uncertain_rows(rows), np.int8(HOLD_CODE), super().band_rows(rows)).astype(np.int8)
