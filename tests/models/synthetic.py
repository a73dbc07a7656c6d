"""Synthetic candles for the model tests: weekday candles with holidays and a long gap, and
random OHLCV windows."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from daemon.intervals import DAY_MS, is_weekday

START_DAY = 19_000  # 2022-01-08


def weekday_candles(
    symbols: tuple[str, ...] = ("AAA", "BBB"), days: int = 520, seed: int = 0
) -> list[tuple[int, str, float, float, float, float, float]]:
    """Rows (ts, symbol, o, h, l, c, v) on weekdays, with a few one-day holidays and, for the
    second symbol, a two-week gap (longer than the gap policy tolerates)."""
    rng = np.random.default_rng(seed)
    rows = []
    for k, symbol in enumerate(symbols):
        close = 50.0 * (k + 1)
        for day in range(START_DAY, START_DAY + days):
            if not is_weekday(day) or day % 37 == 0 or (k == 1 and 19_300 <= day < 19_314):
                continue
            open_ = close * float(np.exp(rng.normal(0, 0.004)))
            close = open_ * float(np.exp(rng.normal(0.0005, 0.015)))
            high = max(open_, close) * (1 + abs(float(rng.normal(0, 0.004))))
            low = min(open_, close) * (1 - abs(float(rng.normal(0, 0.004))))
            rows.append((day * DAY_MS, symbol, open_, high, low, close, float(rng.lognormal(12, 0.5))))
    return rows


def write_csv(path: Path, rows: list[tuple[int, str, float, float, float, float, float]]) -> Path:
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["ts", "symbol", "open", "high", "low", "close", "volume"])
        writer.writerows(rows)
    return path


def hourly_candles(
    symbol: str = "COIN", hours: int = 1400, seed: int = 5
) -> list[tuple[int, str, float, float, float, float, float]]:
    """Rows of one symbol every hour, weekends included (a 24/7 market)."""
    rng = np.random.default_rng(seed)
    rows = []
    close = 100.0
    start = START_DAY * DAY_MS
    for k in range(hours):
        open_ = close
        close = open_ * float(np.exp(rng.normal(0.0002, 0.01)))
        high = max(open_, close) * (1 + abs(float(rng.normal(0, 0.003))))
        low = min(open_, close) * (1 - abs(float(rng.normal(0, 0.003))))
        rows.append((start + k * 3_600_000, symbol, open_, high, low, close, float(rng.lognormal(8, 0.5))))
    return rows
