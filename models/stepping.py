"""Scoring candles through a streaming artifact's step path, with per-symbol state.

``StreamingScorer.score`` takes the same windows the windowed forward would, plus each window's
key, window-store row and candle slots. It brings each key's two state copies to the window's
newest candle (``daemon.recurrent_state.RecurrentStates.plan``: usually one step from the cache,
at most ``span`` from zero), then reads the outputs from the copy with the longer history. A batch
steps all its keys together; keys that need more candles (rebuilds) step in further rounds on the
rows that still need them. Every call runs on a multiple of ``BATCH_MULTIPLE`` rows, as the windowed
forward does, which keeps a key's state and outputs bitwise independent of which other keys share
the batch, so a state rebuilt after a restart equals the one carried through. (Unpadded, ``advance``
differed in the last bit for batches of 1 and 2 rows, and ``emit`` also at some sizes that are not a
multiple of 8; padding a step costs at most 7 rows of one candle, not of a window.)

States live in the store's numpy arrays (rows beside the windows); on a CUDA device a batch's rows
travel to it and back with the batch.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence

import numpy as np
import numpy.typing as npt
import torch

from daemon.recurrent_state import COPIES, RecurrentStates
from models.artifact import BATCH_MULTIPLE, ModelOutputs

OUTPUT_FIELDS = tuple(field.name for field in dataclasses.fields(ModelOutputs))


def _padded(rows: torch.Tensor) -> torch.Tensor:
    """``rows`` padded to a multiple of ``BATCH_MULTIPLE`` with copies of the first (as ``pad_rows``)."""
    missing = -rows.shape[0] % BATCH_MULTIPLE
    if missing == 0:
        return rows
    return torch.cat([rows, rows[:1].expand(missing, *rows.shape[1:])])


def _padded_pairs(state: torch.Tensor) -> torch.Tensor:
    """States of ``COPIES`` rows per window, padded as ``_padded`` pads the windows."""
    missing = -(state.shape[0] // COPIES) % BATCH_MULTIPLE
    if missing == 0:
        return state
    return torch.cat([state, state[:COPIES].repeat(missing, 1)])


def waves(rows: Sequence[int]) -> list[list[int]]:
    """Positions of ``rows`` split, in order, into runs in which no row appears twice: a key's later
    window in the same batch steps from the state its earlier one left."""
    if len(set(rows)) == len(rows):
        return [list(range(len(rows)))]
    out: list[list[int]] = [[]]
    seen: set[int] = set()
    for position, row in enumerate(rows):
        if row in seen:
            out.append([])
            seen = set()
        out[-1].append(position)
        seen.add(row)
    return out


class StreamingScorer:
    """A streaming artifact's ``advance`` and ``emit`` over the states in a ``RecurrentStates``."""

    def __init__(self, module: torch.jit.ScriptModule, states: RecurrentStates, device: torch.device) -> None:
        self.module = module
        self.states = states
        self.device = device
        self.steps = 0
        """Row steps taken (both copies counted), for measuring rebuild work."""

    def score(
        self,
        keys: Sequence[Hashable],
        rows: Sequence[int],
        windows: npt.NDArray[np.float32],
        slots: npt.NDArray[np.int64],
    ) -> ModelOutputs:
        """Outputs for ``[B, T, 5]`` windows whose candles sit at ``slots [B, T]``, ``keys[i]``'s
        window being row ``rows[i]`` of the state store."""
        if len(keys) == 0:
            raise ValueError("no windows to score")
        parts = [(wave, self._score_wave(wave, keys, rows, windows, slots)) for wave in waves(rows)]
        if len(parts) == 1:
            return parts[0][1]
        order = np.argsort(np.concatenate([np.asarray(wave) for wave, _ in parts]), kind="stable")
        fields = [np.concatenate([getattr(out, name) for _, out in parts])[order] for name in OUTPUT_FIELDS]
        return ModelOutputs(*fields)

    def _score_wave(
        self,
        wave: list[int],
        keys: Sequence[Hashable],
        rows: Sequence[int],
        windows: npt.NDArray[np.float32],
        slots: npt.NDArray[np.int64],
    ) -> ModelOutputs:
        if len(wave) == len(keys):
            # The usual batch, one wave of every window in order: no copies of the windows and slots.
            wave_keys, wave_rows, wave_windows, wave_slots = keys, rows, windows, slots
        else:
            wave_keys, wave_rows = [keys[i] for i in wave], [rows[i] for i in wave]
            wave_windows, wave_slots = windows[wave], slots[wave]
        plans = self.states.plan(wave_rows, wave_keys, wave_slots)
        count = len(wave)
        length = windows.shape[1]
        lookback = self.states.lookback
        starts = plans.starts.reshape(-1)
        with torch.inference_mode():
            state = torch.from_numpy(self.states.cached(plans)).reshape(count * COPIES, -1).to(self.device)
            window = torch.from_numpy(np.require(wave_windows, np.float32, ["C", "W"])).to(self.device)
            for position in range(int(starts.min()), length):
                active = np.flatnonzero(starts <= position)
                recent = window[:, position - lookback : position + 1]
                if len(active) == len(starts):
                    state = self.module.advance(_padded_pairs(state), _padded(recent))[: len(active)]
                else:
                    index = torch.from_numpy(active).to(self.device)
                    lookbacks = recent[torch.from_numpy(active // COPIES).to(self.device)]
                    stepped = self.module.advance(_padded(state[index]), _padded(lookbacks))[: len(active)]
                    state = state.index_copy(0, index, stepped)
                self.steps += len(active)
            readers = torch.from_numpy(COPIES * np.arange(count) + plans.readers).to(self.device)
            outputs = self.module.emit(_padded(state.index_select(0, readers)), _padded(window))
            host = state.cpu().numpy().reshape(count, COPIES, -1)
            p, q, d, m, f = (t[:count].float().cpu().numpy() for t in outputs)
        self.states.commit(plans, wave_keys, host)
        return ModelOutputs(p, q, d, m, f)
