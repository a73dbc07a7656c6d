"""Candle CSV files: the bundled real candles and users' own files.

Format: a header ``ts,symbol,open,high,low,close,volume``; ``ts`` is the candle open time,
ISO-8601 UTC (``2024-01-02T00:00:00Z``) or epoch milliseconds.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

from candlecast.errors import DataError
from daemon.candle import CandleMessage, parse_ts

COLUMNS = ("ts", "symbol", "open", "high", "low", "close", "volume")
BUNDLED = ("us_stocks_1d.csv", "btcusd_1h.csv", "sp500_1d_2009.csv")
# The candles live in the checkout's top-level data/ folder beside the packages (docs/design.md).
BUNDLED_DIR = Path(__file__).resolve().parent.parent / "data"


def bundled_path(name: str) -> Path:
    """Path of a bundled candle file (see ``data/README.md`` for sources and licenses)."""
    if name not in BUNDLED:
        raise DataError(f"no bundled candle file {name!r}; bundled: {', '.join(BUNDLED)}")
    path = BUNDLED_DIR / name
    if not path.is_file():
        # A wheel carries the packages and the bundled models, not the candle files.
        raise DataError(f"bundled candles are in a source checkout's data/ folder, not found at {path}; pass --data")
    return path


@dataclass(frozen=True)
class CandleTable:
    """Candles of one or more symbols, sorted by (symbol, ts)."""

    symbols: npt.NDArray[np.str_]
    ts: npt.NDArray[np.int64]
    """Open times, epoch milliseconds UTC."""
    ohlcv: npt.NDArray[np.float64]
    """``[N, 5]``: open, high, low, close, volume."""

    def __len__(self) -> int:
        return len(self.ts)

    def symbol_slices(self) -> dict[str, slice]:
        """Row range of each symbol."""
        names, starts = np.unique(self.symbols, return_index=True)
        order = np.argsort(starts)
        names, starts = names[order], starts[order]
        ends = [*starts[1:].tolist(), len(self.ts)]
        return {str(n): slice(int(s), int(e)) for n, s, e in zip(names, starts, ends, strict=True)}

    def select(self, rows: npt.NDArray[np.bool_] | npt.NDArray[np.int64]) -> CandleTable:
        return CandleTable(self.symbols[rows], self.ts[rows], self.ohlcv[rows])

    def tail_per_symbol(self, count: int) -> CandleTable:
        """The last ``count`` candles of every symbol."""
        keep = np.zeros(len(self.ts), dtype=bool)
        for span in self.symbol_slices().values():
            keep[max(span.start, span.stop - count) : span.stop] = True
        return self.select(keep)

    def only(self, symbols: list[str]) -> CandleTable:
        return self.select(np.isin(self.symbols, symbols))

    def time_order(self) -> npt.NDArray[np.int64]:
        """Row order by (ts, symbol): how a live feed would deliver the candles."""
        return np.lexsort((self.symbols, self.ts))

    def messages(self, interval: str) -> list[tuple[str, CandleMessage]]:
        """(symbol, message) pairs in time order, ready to publish."""
        out: list[tuple[str, CandleMessage]] = []
        for row in self.time_order().tolist():
            o, h, lo, c, v = self.ohlcv[row].tolist()
            symbol = str(self.symbols[row])
            out.append((symbol, CandleMessage(symbol, interval, int(self.ts[row]), o, h, lo, c, v)))
        return out


def read_candles(path: Path) -> CandleTable:
    """Read a candle CSV; raises ``DataError`` naming the line of the first bad row."""
    try:
        handle = path.open(newline="")
    except OSError as exc:
        raise DataError(f"{path}: {exc.strerror}") from exc
    symbols: list[str] = []
    ts: list[int] = []
    values: list[tuple[float, ...]] = []
    with handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None or tuple(h.strip() for h in header) != COLUMNS:
            raise DataError(f"{path}: header must be {','.join(COLUMNS)}")
        for line, row in enumerate(reader, start=2):
            try:
                when = parse_ts(int(row[0]) if row[0].isdigit() else row[0])
                values.append(tuple(float(x) for x in row[2:7]))
            except (ValueError, IndexError) as exc:
                raise DataError(f"{path}:{line}: {exc}") from exc
            if when is None:
                raise DataError(f"{path}:{line}: bad ts {row[0]!r}")
            ts.append(when)
            symbols.append(row[1])
    table = CandleTable(np.asarray(symbols), np.asarray(ts, dtype=np.int64), np.asarray(values, dtype=np.float64))
    order = np.lexsort((table.ts, table.symbols))
    return table.select(order)


def infer_interval(table: CandleTable) -> str:
    """The most common spacing between consecutive candles of a symbol, as an interval name."""
    steps: list[npt.NDArray[np.int64]] = [np.diff(table.ts[span]) for span in table.symbol_slices().values()]
    diffs = np.concatenate(steps) if steps else np.array([], dtype=np.int64)
    diffs = diffs[diffs > 0]
    if diffs.size == 0:
        raise DataError("cannot infer the interval: no symbol has two candles")
    values, counts = np.unique(diffs, return_counts=True)
    step = int(values[np.argmax(counts)])
    for unit, ms in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1_000)):
        if step % ms == 0:
            return f"{step // ms}{unit}"
    raise DataError(f"cannot name an interval of {step} ms")
