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

from collections.abc import Hashable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

COPIES = 2
NOT_STEPPED = np.iinfo(np.int64).min
"""The last stepped slot of a copy that holds no state."""


def restart_slots(newest: npt.NDArray[np.int64], span: int) -> npt.NDArray[np.int64]:
    """``[B, 2]`` the slot at which each copy last restarted, at or before each ``newest`` slot."""
    offsets = np.arange(COPIES, dtype=np.int64) * (span // 2)
    restarts: npt.NDArray[np.int64] = (newest[:, None] - offsets) // span * span + offsets
    return restarts


def slots_at_or_before(slots: npt.NDArray[np.int64], targets: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``[B, K]`` how many of each row's ``slots [B, T]`` lie at or before each of its ``targets [B, K]``."""
    counts: npt.NDArray[np.int64] = np.count_nonzero(slots[:, None, :] <= targets[:, :, None], axis=2)
    return counts


def rows_lacking(mask: npt.NDArray[np.bool_]) -> npt.NDArray[np.int64]:
    """Rows of a ``[B, 2]`` mask where some copy is False (``all(axis=1)`` is ten times slower)."""
    return np.flatnonzero(~(mask[:, 0] & mask[:, 1]))


def reader_copies(restarts: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
    """``[B]`` the copy a signal reads: the one that restarted earlier (the longer history)."""
    return (restarts[:, 1] < restarts[:, 0]).astype(np.int64)


@dataclass(frozen=True, slots=True)
class StepPlans:
    """How to bring the two state copies of a batch of keys (each row once) to their windows' newest candles."""

    rows: npt.NDArray[np.int64]
    starts: npt.NDArray[np.int64]
    """``[B, 2]`` per copy, the position in the window of the first candle to step (the window's length: none)."""
    fresh: npt.NDArray[np.bool_]
    """``[B, 2]`` per copy, whether stepping starts from a zero state (else from the cached one)."""
    readers: npt.NDArray[np.int64]
    """``[B]`` the copy each signal reads."""
    newest: npt.NDArray[np.int64]
    """``[B]`` slot of each window's newest candle."""
    length: int
    """Candles in each window."""

    @property
    def steps(self) -> int:
        """Candle steps the plans take, both copies together."""
        return int((self.length - self.starts).sum())


class RecurrentStates:
    """Two state copies of ``state_size`` float32 values per row, and what each copy last stepped."""

    def __init__(self, state_size: int, span: int, lookback: int, rows: int = 64, limit: int | None = None) -> None:
        if span < 2 or span % 2:
            raise ValueError("span must be even and at least 2")
        if state_size < 1 or lookback < 0 or rows < 1:
            raise ValueError("state_size and rows must be positive, lookback not negative")
        self.state_size = state_size
        self.span = span
        self.lookback = lookback
        self.limit = limit
        """Most rows the owner uses (its window store's capacity): doubling stops there."""
        rows = rows if limit is None else max(1, min(rows, limit))
        self.states = np.zeros((rows, COPIES, state_size), dtype=np.float32)
        self._last = np.full((rows, COPIES), NOT_STEPPED, dtype=np.int64)
        self._keys: list[Hashable | None] = [None] * rows

    @property
    def nbytes(self) -> int:
        return self.states.nbytes + self._last.nbytes

    def bytes_per_row(self) -> int:
        return COPIES * (self.state_size * 4 + 8)

    def _ensure(self, rows: int) -> None:
        held = len(self._keys)
        if rows <= held:
            return
        grown = max(rows, 2 * held if self.limit is None else min(2 * held, self.limit))
        states = np.zeros((grown, COPIES, self.state_size), dtype=np.float32)
        states[:held] = self.states
        last = np.full((grown, COPIES), NOT_STEPPED, dtype=np.int64)
        last[:held] = self._last
        self.states, self._last = states, last
        self._keys.extend([None] * (grown - held))

    def plan(self, rows: Sequence[int], keys: Sequence[Hashable], slots: npt.NDArray[np.int64]) -> StepPlans:
        """The steps that bring each row's copies to the newest of its window's candle ``slots``
        (``[B, T]``, ascending, oldest first; no row twice); raises ``ValueError`` when a window is
        too short for them."""
        if len(set(rows)) != len(rows):
            raise ValueError("a row appears twice in one plan")
        index = np.asarray(rows, dtype=np.int64)
        self._ensure(int(index.max()) + 1)
        length = slots.shape[1]
        newest = slots[:, -1]
        restarts = restart_slots(newest, self.span)
        last = self._last[index]
        ours = np.fromiter((self._keys[row] == key for row, key in zip(rows, keys, strict=True)), bool, len(index))
        # In steady service each copy last stepped the window's previous candle: no search for those.
        found = last == slots[:, -2, None]
        held = np.where(found, length - 2, -1)
        search = rows_lacking(found)
        if len(search):
            held[search] = slots_at_or_before(slots[search], last[search]) - 1
            at = np.take_along_axis(slots[search], np.clip(held[search], 0, length - 1), axis=1)
            found[search] = at == last[search]
        resume = ours[:, None] & (restarts <= last) & (last <= newest[:, None]) & (held >= 0) & found
        first = np.zeros_like(held)
        rebuilt = rows_lacking(resume)
        if len(rebuilt):
            first[rebuilt] = slots_at_or_before(slots[rebuilt], restarts[rebuilt] - 1)
        short = ~resume & (first < self.lookback)
        if short.any():
            b, copy = (int(i) for i in np.argwhere(short)[0])
            raise ValueError(
                f"the window holds {first[b, copy]} candles before slot {restarts[b, copy]}; "
                f"the features need {self.lookback}"
            )
        starts = np.where(resume, held + 1, first)
        return StepPlans(index, starts, ~resume, reader_copies(restarts), newest.copy(), length)

    def cached(self, plans: StepPlans) -> npt.NDArray[np.float32]:
        """``[B, 2, state_size]`` the states the plans start from (zeros for fresh copies)."""
        out: npt.NDArray[np.float32] = np.take(self.states, plans.rows, axis=0)
        if plans.fresh.any():
            out[plans.fresh] = 0.0
        return out

    def commit(self, plans: StepPlans, keys: Sequence[Hashable], states: npt.NDArray[np.float32]) -> None:
        """Store ``[B, 2, state_size]`` states that have stepped the plans' newest candles."""
        if len(keys) != len(plans.rows):
            raise ValueError(f"{len(keys)} keys for {len(plans.rows)} planned rows")
        self.states[plans.rows] = states
        self._last[plans.rows] = plans.newest[:, None]
        # A row whose two copies both resumed holds this key already.
        for i in rows_lacking(~plans.fresh).tolist():
            self._keys[int(plans.rows[i])] = keys[i]

    def forget(self, row: int) -> None:
        """Drop a row's states (its window went); the next plan for it steps from zero."""
        if row < len(self._keys):
            self._keys[row] = None
            self._last[row] = NOT_STEPPED
