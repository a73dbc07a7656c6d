"""The strategy interface: the ensemble's outputs for one symbol in, a signal decision out.

A strategy is pure and deterministic, with a *finite memory*: its decision for a candle is a
function of the ensemble outputs of that candle and at most ``memory - 1`` candles before it,
replayed from a neutral state. Hysteresis and cooldown fit this shape, and because the decision
never depends on anything older, a daemon that restarts re-scores those few windows and takes
exactly the decision an uninterrupted daemon would have taken.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, ClassVar, Protocol, Self, runtime_checkable

import msgspec
import numpy as np
import numpy.typing as npt


class Action(StrEnum):
    BUY = "BUY"
    SELL = "SELL"
    HOLD = "HOLD"


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """What the serving model predicts, from its manifest."""

    horizons: tuple[int, ...]
    """Horizons in candles ahead; the first is the primary one that signals report."""
    quantiles: tuple[float, ...]
    """Quantile levels of the predicted log return, ascending (e.g. 0.1, 0.5, 0.9)."""


# A struct the garbage collector does not track (``gc=False``: it holds only tuples of floats, so it
# is never part of a cycle): the daemon keeps ``memory - 1`` of them per symbol for strategies with a
# memory, which as tracked objects made every full collection walk them all.
class EnsembleOutput(msgspec.Struct, frozen=True, gc=False):
    """The ensemble's prediction for one window."""

    probabilities: tuple[float, ...]
    """Calibrated probability that the close ``h`` candles ahead is above this close, per horizon."""
    quantiles: tuple[tuple[float, ...], ...]
    """Per horizon, the predicted log-return quantiles at ``OutputSpec.quantiles``."""
    disagreement: tuple[float, ...]
    """Per horizon, the standard deviation of the members' probabilities."""


@dataclass(frozen=True, slots=True)
class Decision:
    action: Action
    confidence: float
    """Calibrated probability that the action's direction is right; see ``directional_confidence``."""


def directional_confidence(action: Action, probability: float) -> float:
    """Confidence of an action given the calibrated probability ``p`` of an up move.

    BUY is right when the price rises (confidence ``p``), SELL when it falls (``1 - p``); HOLD
    reports the probability of the more likely direction, the one not strong enough to act on.
    """
    if action is Action.BUY:
        return probability
    if action is Action.SELL:
        return 1.0 - probability
    return max(probability, 1.0 - probability)


@runtime_checkable
class Strategy(Protocol):
    """A pure, finite-memory mapping from ensemble outputs to a decision."""

    name: ClassVar[str]

    @property
    def memory(self) -> int:
        """How many of the most recent outputs (this candle's included) the decision may use."""
        ...

    @property
    def params(self) -> Mapping[str, Any]:
        """The strategy's parameters, as published with each signal's strategy name."""
        ...

    def decide(self, history: Sequence[EnsembleOutput]) -> Decision:
        """Decide for the newest output, ``history[-1]``; earlier entries are older candles."""
        ...


@dataclass(frozen=True, slots=True)
class OutputRows:
    """The ensemble's predictions for a batch of windows, one row per window (arrays of ``EnsembleOutput``'s
    fields): what a batch decision reads."""

    probabilities: npt.NDArray[np.float32]
    """``[B, horizons]``."""
    quantiles: npt.NDArray[np.float32]
    """``[B, horizons, quantile levels]``."""
    disagreement: npt.NDArray[np.float32]
    """``[B, horizons]``."""

    def output(self, row: int) -> EnsembleOutput:
        """Row ``row`` as the per-item ``decide`` sees it (Python floats, exact copies of the array's)."""
        return EnsembleOutput(
            probabilities=tuple(self.probabilities[row].tolist()),
            quantiles=tuple(tuple(q) for q in self.quantiles[row].tolist()),
            disagreement=tuple(self.disagreement[row].tolist()),
        )


@dataclass(frozen=True, slots=True)
class RowDecisions:
    """One decision per row of an ``OutputRows``, as parallel lists (no ``Decision`` object per row)."""

    actions: list[Action]
    confidences: list[float]


@runtime_checkable
class BatchStrategy(Strategy, Protocol):
    """A strategy that can also decide a whole batch of windows at once, over arrays.

    Optional: the daemon decides row by row with ``decide`` when a strategy lacks ``decide_rows`` or
    it answers ``None``. Only asked of strategies with ``memory == 1`` (no earlier outputs count), and
    must equal ``decide([rows.output(i)])`` for every row ``i``, bit for bit."""

    def decide_rows(self, rows: OutputRows) -> RowDecisions | None:
        """Each row's decision as if it were the only output of its history; ``None``: not supported."""
        ...


class StrategyFactory(Protocol):
    """What an entry point in the ``candlecast.strategies`` group must be (usually the class)."""

    name: ClassVar[str]

    @classmethod
    def from_params(cls, spec: OutputSpec, params: Mapping[str, Any]) -> Self:
        """Build the strategy; raise ``ValueError`` naming the parameter if one is invalid."""
        ...
