"""A streaming artifact served through its step path: one LSTM step per candle from per-symbol state.

``SteppedModel`` is the ``Scorer`` a route serves when its scoring mode is ``stream``
(``model.scoring``; ``auto`` picks it when the manifest has a ``streaming`` section). It keeps the
states of its keys in a ``RecurrentStates`` whose rows are the route's window-store slots
(``ScoreRequest.row``), so the states take at most as many rows as the store holds windows, and a
slot that another key takes over is rebuilt for it (a state is used only by the key that stepped it).
The states belong to this model: a reload or a restart starts from none, and a state is only a cache
of a function of the window (``daemon.recurrent_state``), so every output equals what stepping the
window from zero gives, bit for bit, whatever was cached.

Scoring runs on the pipeline's one inference thread (``Pipeline.run_in_model_thread``); the query
API's windows come without keys and are stepped from zero on a throwaway store, leaving the live
states alone.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch

from candlecast.errors import ConfigError
from daemon.ports import WindowOrigins
from daemon.recurrent_state import RecurrentStates, StepPlans
from models.artifact import Manifest, ModelOutputs, Streaming
from models.stepping import StreamingScorer
from models.torchscript import LoadedModel

ScoringMode = Literal["auto", "window", "stream"]


@dataclass(slots=True)
class StepTally:
    """Candle steps taken, both state copies counted: ``carried`` from a cached state (one per copy and
    candle in steady service), ``rebuilt`` from a zero state (restarts, rebalances, gap resets,
    evictions, re-scored history, the planned restarts every ``span / 2`` slots). Kept by the route
    across reloads, so the counts only grow."""

    carried: int = 0
    rebuilt: int = 0


class TalliedStates(RecurrentStates):
    """``RecurrentStates`` that count the steps of every plan they make."""

    def __init__(self, streaming: Streaming, tally: StepTally, limit: int | None) -> None:
        super().__init__(streaming.state_size, streaming.span, streaming.lookback, limit=limit)
        self.tally = tally

    def plan(self, rows: Sequence[int], keys: Sequence[Hashable], slots: npt.NDArray[np.int64]) -> StepPlans:
        plans = super().plan(rows, keys, slots)
        rebuilt = int((plans.length - plans.starts)[plans.fresh].sum())
        self.tally.rebuilt += rebuilt
        self.tally.carried += plans.steps - rebuilt
        return plans


class SteppedModel:
    """A verified streaming artifact scoring through ``advance`` and ``emit`` with per-symbol state."""

    def __init__(self, model: LoadedModel, tally: StepTally | None = None, rows: int | None = None) -> None:
        """``rows``: the route's window capacity (``windows.max_windows``), the most state rows it needs."""
        streaming = model.manifest.streaming
        if streaming is None:
            raise ValueError(f"{model.manifest.name}/{model.version} has no step path")
        self.loaded = model
        self.streaming = streaming
        self.states = TalliedStates(streaming, tally or StepTally(), rows)
        self._scorer = StreamingScorer(model.module, self.states, model.device)

    @property
    def manifest(self) -> Manifest:
        return self.loaded.manifest

    @property
    def version(self) -> str:
        return self.loaded.version

    @property
    def device(self) -> torch.device:
        return self.loaded.device

    @property
    def file_sha256(self) -> str:
        return self.loaded.file_sha256

    @property
    def state_bytes(self) -> int:
        """Bytes allocated for the states (rows grow with the window store's slots, never beyond them)."""
        return self.states.nbytes

    def score(self, windows: npt.NDArray[np.float32], origins: WindowOrigins | None = None) -> ModelOutputs:
        """Outputs of the step path for ``[B, T, 5]`` windows at ``origins.slots``: from the keys'
        cached states, or, without keys, from a zero state on a store of their own."""
        if origins is None:
            raise ValueError("the step path needs each window's candle slots")
        if origins.keys is None:
            count = len(windows)
            states = RecurrentStates(self.streaming.state_size, self.streaming.span, self.streaming.lookback, count)
            scorer = StreamingScorer(self.loaded.module, states, self.loaded.device)
            return scorer.score(list(range(count)), range(count), windows, origins.slots)
        return self._scorer.score(origins.keys, origins.rows, windows, origins.slots)


def warm_up_origins(windows: npt.NDArray[np.float32], manifest: Manifest) -> WindowOrigins:
    """Candle slots for warming up on the golden windows: contiguous, the newest at a restart of copy
    0, so the warm-up runs both of ``StreamingScorer``'s step shapes (all rows, and the rebuilding ones)
    and ``emit``, in about ``span / 2`` steps."""
    length = windows.shape[1]
    span = manifest.streaming.span if manifest.streaming is not None else length
    first = -(length - 1) % span
    slots = np.arange(first, first + length, dtype=np.int64)
    return WindowOrigins(np.broadcast_to(slots, (len(windows), length)).copy())


def resolve_scoring(scoring: ScoringMode, manifest: Manifest) -> Literal["window", "stream"]:
    """The mode a route scores in with this artifact; ``stream`` for an artifact without a step
    path raises ``ConfigError`` naming the setting."""
    if scoring == "window":
        return "window"
    if manifest.streaming is not None:
        return "stream"
    if scoring == "stream":
        raise ConfigError(
            f'model.scoring: "stream", but {manifest.name}/{manifest.version} has no step path (its manifest '
            'has no `streaming` section: some member does not stream); set model.scoring to "window" or "auto"'
        )
    return "window"
