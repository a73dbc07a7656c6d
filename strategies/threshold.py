"""Threshold strategy: BUY above an upper probability, SELL below a lower one, HOLD between.

Hysteresis keeps an action while the probability stays within ``hysteresis`` of the threshold
that triggered it; a cooldown takes an action only once it has been asked for ``cooldown + 1``
candles in a row and then keeps it at least that long. Both have a finite memory
(``strategies.smoothing``), so the signal does not flicker around a threshold and a restarted
daemon still decides exactly as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Self

from pydantic import BaseModel, ConfigDict, Field, model_validator

from candlecast.strategies.base import (
    Action,
    Decision,
    EnsembleOutput,
    OutputSpec,
    directional_confidence,
)
from candlecast.strategies.smoothing import Smoothing


class ThresholdParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    buy_above: float = Field(0.6, gt=0.5, lt=1.0, description="BUY when p exceeds this.")
    sell_below: float = Field(0.4, gt=0.0, lt=0.5, description="SELL when p is below this.")
    hysteresis: float = Field(
        0.0, ge=0.0, lt=0.5, description="Keep BUY while p > buy_above - hysteresis (SELL alike)."
    )
    cooldown: int = Field(
        0, ge=0, le=64, description="An action is taken after cooldown + 1 candles asking for it, then kept as long."
    )
    memory: int = Field(
        8, ge=1, le=256, description="Candles an action is remembered without the band asking for it again."
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


class ThresholdStrategy:
    name: ClassVar[str] = "threshold"

    def __init__(self, spec: OutputSpec, params: ThresholdParams) -> None:
        self.index = horizon_index(spec, params.horizon)
        """Position of the horizon acted on in each output's tuples."""
        self._p = params
        self._smoothing = Smoothing(params.hysteresis > 0.0, params.cooldown, params.memory)

    @classmethod
    def from_params(cls, spec: OutputSpec, params: Mapping[str, Any]) -> Self:
        return cls(spec, ThresholdParams.model_validate(dict(params)))

    @property
    def memory(self) -> int:
        return self._smoothing.total_memory

    @property
    def params(self) -> Mapping[str, Any]:
        return self._p.model_dump()

    def band(self, output: EnsembleOutput, previous: Action) -> Action:
        """The action the thresholds ask for, given the one they asked for on the candle before."""
        p = output.probabilities[self.index]
        if p > self._p.buy_above or (previous is Action.BUY and p > self._p.buy_above - self._p.hysteresis):
            return Action.BUY
        if p < self._p.sell_below or (previous is Action.SELL and p < self._p.sell_below + self._p.hysteresis):
            return Action.SELL
        return Action.HOLD

    def decide(self, history: Sequence[EnsembleOutput]) -> Decision:
        action = self._smoothing.action(history, self.band)
        return Decision(action, directional_confidence(action, history[-1].probabilities[self.index]))
