"""Threshold strategy: BUY above an upper probability, SELL below a lower one, HOLD between.

Hysteresis keeps an action while the probability stays within ``hysteresis`` of the threshold
that triggered it, and a cooldown keeps any new action for at least ``cooldown`` more candles,
so the signal does not flicker around a threshold. Both are replayed over the last ``memory``
outputs from HOLD (see ``strategies.base`` for why the memory is finite).
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


class ThresholdParams(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    buy_above: float = Field(0.6, gt=0.5, lt=1.0, description="BUY when p exceeds this.")
    sell_below: float = Field(0.4, gt=0.0, lt=0.5, description="SELL when p is below this.")
    hysteresis: float = Field(
        0.0, ge=0.0, lt=0.5, description="Keep BUY while p > buy_above - hysteresis (SELL alike)."
    )
    cooldown: int = Field(0, ge=0, description="Candles a new action is kept before it may change.")
    memory: int = Field(8, ge=1, le=256, description="Outputs replayed when hysteresis or cooldown is on.")
    horizon: int | None = Field(None, description="Horizon (candles) to act on; default the model's primary.")

    @model_validator(mode="after")
    def _ordered(self) -> Self:
        if self.hysteresis >= self.buy_above - self.sell_below:
            raise ValueError("hysteresis must be smaller than buy_above - sell_below")
        return self


class ThresholdStrategy:
    name: ClassVar[str] = "threshold"

    def __init__(self, spec: OutputSpec, params: ThresholdParams) -> None:
        horizon = params.horizon if params.horizon is not None else spec.horizons[0]
        if horizon not in spec.horizons:
            raise ValueError(f"horizon: the model predicts horizons {list(spec.horizons)}, not {horizon}")
        self._index = spec.horizons.index(horizon)
        self._p = params
        stateful = params.hysteresis > 0.0 or params.cooldown > 0
        self._memory = max(params.memory, params.cooldown + 1) if stateful else 1

    @classmethod
    def from_params(cls, spec: OutputSpec, params: Mapping[str, Any]) -> Self:
        return cls(spec, ThresholdParams.model_validate(dict(params)))

    @property
    def memory(self) -> int:
        return self._memory

    @property
    def params(self) -> Mapping[str, Any]:
        return self._p.model_dump()

    def _wanted(self, p: float, state: Action) -> Action:
        hold_buy = state is Action.BUY and p > self._p.buy_above - self._p.hysteresis
        if p > self._p.buy_above or hold_buy:
            return Action.BUY
        hold_sell = state is Action.SELL and p < self._p.sell_below + self._p.hysteresis
        if p < self._p.sell_below or hold_sell:
            return Action.SELL
        return Action.HOLD

    def decide(self, history: Sequence[EnsembleOutput]) -> Decision:
        state = Action.HOLD
        since_change = self._p.cooldown
        for output in history[-self._memory :]:
            wanted = self._wanted(output.probabilities[self._index], state)
            if wanted is not state and since_change >= self._p.cooldown:
                state, since_change = wanted, 0
            else:
                since_change += 1
        p = history[-1].probabilities[self._index]
        return Decision(state, directional_confidence(state, p))
