"""The candles a retraining learns from and is judged on: several candle files (or a topic's records)
merged into one table, the held-out period at its end, and the table written back as a candle CSV
for ``models.training`` (which reads one file and records its digest)."""

from __future__ import annotations

import csv
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from candlecast.candlefile import COLUMNS, CandleTable
from candlecast.errors import DataError
from daemon.candle import format_ts


def merge(tables: Sequence[CandleTable]) -> CandleTable:
    """One table sorted by (symbol, ts) as ``read_candles`` gives it; where files overlap, the
    first file's candle for a (symbol, ts) is kept."""
    if not tables:
        raise DataError("no candles to retrain on")
    symbols = np.concatenate([t.symbols for t in tables])
    ts = np.concatenate([t.ts for t in tables])
    ohlcv = np.concatenate([t.ohlcv for t in tables])
    source = np.concatenate([np.full(len(t), i) for i, t in enumerate(tables)])
    order = np.lexsort((source, ts, symbols))
    symbols, ts, ohlcv = symbols[order], ts[order], ohlcv[order]
    first = np.ones(len(ts), dtype=bool)
    first[1:] = (symbols[1:] != symbols[:-1]) | (ts[1:] != ts[:-1])
    return CandleTable(symbols[first], ts[first], ohlcv[first])


def holdout_start(table: CandleTable, candles: int) -> int:
    """Open time of the first of the last ``candles`` distinct candle times: the held-out period."""
    times = np.unique(table.ts)
    if candles < 1 or len(times) <= candles:
        raise DataError(f"{len(times)} distinct candle times: too few to hold out the last {candles}")
    return int(times[-candles])


def before(table: CandleTable, ts: int) -> CandleTable:
    """The candles that open before ``ts`` (what the challenger may learn from)."""
    return table.select(np.flatnonzero(table.ts < ts))


def write_candles(table: CandleTable, path: Path) -> Path:
    """Write a candle CSV (``candlecast.candlefile`` format, ISO times); prices as Python's shortest
    exact float text, so reading it back gives the same float64 values."""
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(COLUMNS)
        for symbol, ts, values in zip(table.symbols.tolist(), table.ts.tolist(), table.ohlcv.tolist(), strict=True):
            writer.writerow([format_ts(ts), symbol, *(repr(v) for v in values)])
    return path
