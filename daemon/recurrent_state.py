"""Per-symbol recurrent state of streaming members: a cache of a pure function of the window.

Each window slot has two copies of the state. Copy 0 restarts from zero at every candle slot
(``Interval.slot_index``) that is a multiple of ``span``; copy 1 restarts ``span / 2`` slots later.
By definition, a copy's state at the window's newest candle is the streaming members run from zero
over the window's candles whose slot lies between the copy's last restart and that candle: the
windowed reference, a function of the window alone. A signal reads the copy that restarted
earlier, a history of ``span / 2 + 1`` to ``span`` slots.

The store only caches those states. ``plan`` says, per copy, from which of the window's candles to
step and whether from zero: a copy resumes from its cache only when the cache holds this key's
state and the candle it last stepped is in the window, at or after the copy's last restart. Anything
else (a restart, a rebalance, a gap that reset the window, an eviction, an older window re-scored)
steps from zero from the last restart on, at most ``span`` candles of the window, so a lost state is
rebuilt exactly with bounded work. The window must hold ``span + lookback`` candles: those since the
restart and the ``lookback`` before the first of them, which its feature row reads.

Pure numpy: the scorer (``models.stepping``) runs the steps and writes the states back with
``commit``. Rows are the window store's slots, so states live beside the windows.
"""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

COPIES = 2
NOT_STEPPED = np.iinfo(np.int64).min
"""The last stepped slot of a copy that holds no state."""


def restart_slot(slot: int, copy: int, span: int) -> int:
    """The slot at which ``copy`` last restarted, at or before ``slot``."""
    offset = copy * (span // 2)
    return (slot - offset) // span * span + offset


def reader_copy(slot: int, span: int) -> int:
    """The copy a signal at ``slot`` reads: the one that restarted earlier (the longer history)."""
    return 0 if restart_slot(slot, 0, span) < restart_slot(slot, 1, span) else 1


@dataclass(frozen=True, slots=True)
class StepPlan:
    """How to bring one key's two state copies to its window's newest candle."""

    row: int
    starts: tuple[int, int]
    """Per copy, the position in the window of the first candle to step (the window's length: none)."""
    fresh: tuple[bool, bool]
    """Per copy, whether stepping starts from a zero state (else from the cached one)."""
    reader: int
    """The copy the signal reads."""
    newest: int
    """Slot of the window's newest candle."""
    length: int
    """Candles in the window."""

    @property
    def steps(self) -> int:
        """Candle steps the plan takes, both copies together."""
        return sum(self.length - start for start in self.starts)


class RecurrentStates:
    """Two state copies of ``state_size`` float32 values per row, and what each copy last stepped."""

    def __init__(self, state_size: int, span: int, lookback: int, rows: int = 64) -> None:
        if span < 2 or span % 2:
            raise ValueError("span must be even and at least 2")
        if state_size < 1 or lookback < 0 or rows < 1:
            raise ValueError("state_size and rows must be positive, lookback not negative")
        self.state_size = state_size
        self.span = span
        self.lookback = lookback
        self.states = np.zeros((rows, COPIES, state_size), dtype=np.float32)
        self._last = np.full((rows, COPIES), NOT_STEPPED, dtype=np.int64)
        self._keys: list[Hashable | None] = [None] * rows

    @property
    def nbytes(self) -> int:
        return self.states.nbytes + self._last.nbytes

    def bytes_per_row(self) -> int:
        return COPIES * (self.state_size * 4 + 8)

    def _ensure(self, row: int) -> None:
        rows = len(self._keys)
        if row < rows:
            return
        grown = max(row + 1, 2 * rows)
        states = np.zeros((grown, COPIES, self.state_size), dtype=np.float32)
        states[:rows] = self.states
        last = np.full((grown, COPIES), NOT_STEPPED, dtype=np.int64)
        last[:rows] = self._last
        self.states, self._last = states, last
        self._keys.extend([None] * (grown - rows))

    def plan(self, row: int, key: Hashable, slots: npt.NDArray[np.int64]) -> StepPlan:
        """The steps that bring ``row``'s copies to the newest of the window's candle ``slots``
        (ascending, oldest first); raises ``ValueError`` when the window is too short for them."""
        length = len(slots)
        newest = int(slots[-1])
        self._ensure(row)
        ours = self._keys[row] == key
        starts: list[int] = []
        fresh: list[bool] = []
        for copy in range(COPIES):
            restart = restart_slot(newest, copy, self.span)
            last = int(self._last[row, copy])
            if ours and restart <= last <= newest:
                held = int(np.searchsorted(slots, last))
                if held < length and slots[held] == last:
                    starts.append(held + 1)
                    fresh.append(False)
                    continue
            first = int(np.searchsorted(slots, restart))
            if first < self.lookback:
                raise ValueError(
                    f"the window holds {first} candles before slot {restart}; the features need {self.lookback}"
                )
            starts.append(first)
            fresh.append(True)
        return StepPlan(
            row, (starts[0], starts[1]), (fresh[0], fresh[1]), reader_copy(newest, self.span), newest, length
        )

    def cached(self, plan: StepPlan) -> npt.NDArray[np.float32]:
        """``[2, state_size]`` the states the plan starts from (zeros for fresh copies)."""
        out: npt.NDArray[np.float32] = self.states[plan.row].copy()
        for copy in range(COPIES):
            if plan.fresh[copy]:
                out[copy] = 0.0
        return out

    def commit(self, plan: StepPlan, key: Hashable, states: npt.NDArray[np.float32]) -> None:
        """Store ``[2, state_size]`` states that have stepped the plan's newest candle."""
        self.states[plan.row] = states
        self._last[plan.row] = plan.newest
        self._keys[plan.row] = key

    def forget(self, row: int) -> None:
        """Drop a row's states (its window went); the next plan for it steps from zero."""
        if row < len(self._keys):
            self._keys[row] = None
            self._last[row] = NOT_STEPPED
