"""What the daemon keeps in memory per symbol."""

from __future__ import annotations

import time
import tracemalloc
from typing import TYPE_CHECKING

import numpy as np

from candlecast.bench.report import Memory
from daemon.settings import Settings, WindowSettings

if TYPE_CHECKING:
    from models.torchscript import LoadedModel


def window_memory(model: LoadedModel, symbols: int) -> Memory:
    """What the daemon keeps per symbol: its window (arrays and per-key Python objects, traced by
    tracemalloc while ``symbols`` keys are added) and the strategy's remembered outputs."""
    from daemon.candle import Candle
    from daemon.core import build_core
    from daemon.engine import ScoreRequest
    from models.artifact import ModelOutputs

    core = build_core(Settings(windows=WindowSettings(max_windows=symbols)), model)
    interval = next(iter(core.intervals.values()))
    names = [f"M{i:06d}" for i in range(symbols)]
    ts = interval.slot_time(interval.slot_index(int(time.time() * 1000)) - 1)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        store = core.store
        for offset, name in enumerate(names):
            store.push(Candle(name, interval.name, ts, 1.0, 1.0, 1.0, 1.0, 1.0), 0, offset)
        traced = tracemalloc.get_traced_memory()[0] - before
        before = tracemalloc.get_traced_memory()[0]
        horizons, quantiles = len(core.spec.horizons), len(core.spec.quantiles)
        window = np.zeros((store.length, 5), dtype=np.float32)
        step = 512
        for first in range(0, symbols, step):
            chunk = names[first : first + step]
            rows = len(chunk)
            outputs = ModelOutputs(
                np.full((rows, horizons), 0.5, dtype=np.float32),
                np.zeros((rows, horizons, quantiles), dtype=np.float32),
                np.zeros((rows, horizons), dtype=np.float32),
                np.zeros((rows, 1, horizons), dtype=np.float32),
                np.zeros((rows, 1), dtype=np.float32),
            )
            requests = [ScoreRequest((n, interval.name), ts, window, "t", 0, 0, 0, 0) for n in chunk]
            core.builder.build(requests, outputs, "bench")
        strategy = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return Memory(symbols, store.length, store.span, store.nbytes, traced, strategy)
