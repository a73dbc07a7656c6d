"""Hysteresis and cooldown for band strategies, both with a finite memory.

A band strategy says, for each ensemble output, which action it asks for: its *band action*
(``BandRule``). With hysteresis the band action also depends on the one asked for just before
(keep BUY while p stays within ``hysteresis`` of the threshold). ``Smoothing`` turns band
actions into the signal in two steps, each a function of a fixed number of recent outputs, so a
decision depends on the last ``memory`` outputs only (see ``strategies.base`` for why):

1. *Hysteresis replay.* The band action of each candle is replayed from HOLD over that candle's
   last ``memory`` outputs: an action kept by hysteresis alone is forgotten after ``memory``
   candles.
2. *Cooldown.* The signal takes an action once the band has asked for it ``cooldown + 1``
   candles in a row (the action is *confirmed*) and keeps it until another action is confirmed.
   When the band has confirmed nothing for ``max(memory, cooldown)`` candles (it keeps changing
   its mind), the signal falls back to HOLD, and an action confirmed around that moment counts
   only once it has been asked for ``cooldown + 1`` candles after the fallback.

So every action the signal takes, a fallback to HOLD included, lasts at least ``cooldown + 1``
candles. A cooldown that instead locked an action for ``cooldown`` candles after taking it cannot
have a finite memory: whether a change is locked out depends on when the previous change
happened, and so on back to the first candle.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Self, TypeVar

import numpy as np
import numpy.typing as npt
from pydantic import BaseModel, ConfigDict, Field

from strategies.base import (
    Action,
    Decision,
    EnsembleOutput,
    OutputRows,
    OutputSpec,
    RowDecisions,
    directional_confidence,
)

BAND_CODES = (Action.HOLD, Action.BUY, Action.SELL)
"""The action of each code a batch band rule (``BandStrategy.band_rows``) answers with."""
HOLD_CODE, BUY_CODE, SELL_CODE = 0, 1, 2

BandRule = Callable[[EnsembleOutput, Action], Action]
"""The action a strategy asks for given an output and the action it asked for on the candle before."""


@dataclass(frozen=True, slots=True)
class Smoothing:
    hysteresis: bool
    """Whether band actions depend on the previous band action (they need replaying)."""
    cooldown: int
    memory: int

    @property
    def band_memory(self) -> int:
        """Outputs that decide one candle's band action."""
        return self.memory if self.hysteresis else 1

    @property
    def expiry(self) -> int:
        """Candles a confirmed action outlives its last confirmation; at least the cooldown, so an
        action confirmed late, after a fallback, is still kept ``cooldown + 1`` candles."""
        return max(self.memory, self.cooldown)

    @property
    def settle_memory(self) -> int:
        """Band actions that decide the signal: enough to see a confirmed action expire and the
        run before it, which the fallback rule needs."""
        return 2 * (self.expiry + self.cooldown + 1) if self.cooldown else 1

    @property
    def total_memory(self) -> int:
        return self.band_memory + self.settle_memory - 1

    def action(self, history: Sequence[EnsembleOutput], band: BandRule) -> Action:
        """The signal's action for ``history[-1]``."""
        recent = history[-self.total_memory :]
        count = len(recent)
        ends = range(max(0, count - self.settle_memory), count)
        if self.band_memory == 1:
            actions = [band(recent[end], Action.HOLD) for end in ends]
        else:
            actions = [replay_band(recent[max(0, end - self.band_memory + 1) : end + 1], band) for end in ends]
        if not self.cooldown:
            return actions[-1]
        return settled_action(actions, confirm=self.cooldown + 1, expiry=self.expiry)


def replay_band(outputs: Sequence[EnsembleOutput], band: BandRule) -> Action:
    """The band action of the last output, replayed from HOLD."""
    state = Action.HOLD
    for output in outputs:
        state = band(output, state)
    return state


def settled_action(band_actions: Sequence[Action], *, confirm: int, expiry: int) -> Action:
    """The signal after the last of ``band_actions`` (oldest first): the most recently confirmed
    action, or HOLD when none was confirmed or it expired (module docstring)."""
    latest: tuple[Action, int] | None = None
    """The action counted last, and the last position where it counted."""
    previous_end: int | None = None
    """Last position of the run before, if it was long enough to confirm its action."""
    for start, stop, action in _runs(band_actions):
        if stop - start < confirm:
            continue
        counts_from = start + confirm - 1
        if previous_end is not None:
            fallback = previous_end + expiry + 1
            if counts_from >= fallback:
                # Confirmed after the fallback to HOLD: the fallback, too, lasts `confirm` candles.
                counts_from = max(counts_from, fallback + confirm)
        if counts_from < stop:
            latest = (action, stop - 1)
        previous_end = stop - 1
    if latest is None:
        return Action.HOLD
    action, end = latest
    return Action.HOLD if len(band_actions) - 1 > end + expiry else action


def _runs(actions: Sequence[Action]) -> Iterator[tuple[int, int, Action]]:
    """Maximal runs of equal actions as ``(start, stop, action)``, ``stop`` exclusive."""
    start = 0
    for position in range(1, len(actions) + 1):
        if position == len(actions) or actions[position] is not actions[start]:
            yield start, position, actions[start]
            start = position


class SmoothingParams(BaseModel):
    """Parameters every band strategy shares."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    hysteresis: float = Field(
        0.0, ge=0.0, lt=0.5, description="Keep an action while p stays this close to its threshold."
    )
    cooldown: int = Field(
        0, ge=0, le=64, description="An action is taken after cooldown + 1 candles asking for it, then kept as long."
    )
    memory: int = Field(
        8, ge=1, le=256, description="Candles an action is remembered without the band asking for it again."
    )


P = TypeVar("P", bound=SmoothingParams)


class BandStrategy(Generic[P]):
    """A strategy made of a band rule (``band``) smoothed by hysteresis and cooldown.

    Subclasses set ``name`` and ``params_model``, may extend ``__init__`` (and set
    ``confidence_index``, the horizon the confidence reports, by default the primary one) and
    implement ``band``.
    """

    name: ClassVar[str]
    params_model: ClassVar[type[SmoothingParams]]

    def __init__(self, spec: OutputSpec, params: P) -> None:
        self._p = params
        self._smoothing = Smoothing(params.hysteresis > 0.0, params.cooldown, params.memory)
        self.confidence_index = 0

    @classmethod
    def from_params(cls, spec: OutputSpec, params: Mapping[str, Any]) -> Self:
        parsed = cls.params_model.model_validate(dict(params))
        return cls(spec, parsed)  # type: ignore[arg-type]  # params_model is the subclass's P

    @property
    def memory(self) -> int:
        return self._smoothing.total_memory

    @property
    def params(self) -> Mapping[str, Any]:
        return self._p.model_dump()

    def band(self, output: EnsembleOutput, previous: Action) -> Action:
        """The action this output asks for, given the one asked for on the candle before."""
        raise NotImplementedError

    def decide(self, history: Sequence[EnsembleOutput]) -> Decision:
        action = self._smoothing.action(history, self.band)
        return Decision(action, directional_confidence(action, history[-1].probabilities[self.confidence_index]))

    def band_rows(self, rows: OutputRows) -> npt.NDArray[np.int8]:
        """``band(row, Action.HOLD)`` for every row at once, as ``BAND_CODES`` codes; a class that
        defines it beside ``band`` lets the daemon decide a batch over arrays (``decide_rows``)."""
        raise NotImplementedError

    def decide_rows(self, rows: OutputRows) -> RowDecisions | None:
        """Every row's decision at once when no earlier output counts (``memory == 1``: no hysteresis,
        no cooldown) and the strategy's own class defines ``band_rows``; else ``None``."""
        if self.memory != 1 or "band_rows" not in vars(type(self)):
            # An inherited batch rule would miss what a subclass changed (``band``, ``uncertain``, ...).
            return None
        codes = self.band_rows(rows)
        # float64 arithmetic on the exact float32 values: the same doubles ``directional_confidence`` makes.
        p = rows.probabilities[:, self.confidence_index].astype(np.float64)
        confidence = np.where(codes == BUY_CODE, p, np.where(codes == SELL_CODE, 1.0 - p, np.maximum(p, 1.0 - p)))
        return RowDecisions([BAND_CODES[code] for code in codes.tolist()], confidence.tolist())


def band_codes(buy: npt.NDArray[np.bool_], sell: npt.NDArray[np.bool_]) -> npt.NDArray[np.int8]:
    """BUY where ``buy``, else SELL where ``sell``, else HOLD: the order of a band rule's tests."""
    return np.where(buy, BUY_CODE, np.where(sell, SELL_CODE, HOLD_CODE)).astype(np.int8)
