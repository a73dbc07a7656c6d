"""Data hygiene: price jumps without a market move are found, described and cut out of windows."""

from __future__ import annotations

import math

import numpy as np

from candlecast.candlefile import CandleTable
from daemon.intervals import DAY_MS
from models.dataset import audited_windows, build_windows
from models.hygiene import find_jumps, split_ratio
from tests.models.conftest import tiny_spec
from tests.models.synthetic import weekday_candles

START = 19_003  # a Monday


def _table(closes: dict[str, list[float]]) -> CandleTable:
    symbols, ts, rows = [], [], []
    for symbol, series in closes.items():
        for k, close in enumerate(series):
            day = START + 7 * (k // 5) + k % 5
            symbols.append(symbol)
            ts.append(day * DAY_MS)
            rows.append([close, close * 1.01, close * 0.99, close, 1000.0])
    return CandleTable(np.array(symbols), np.array(ts, dtype=np.int64), np.array(rows))


def test_a_split_is_a_jump_and_a_market_crash_is_not() -> None:
    """A 2:1 split of one stock is a jump; the same move in every stock at once is the market's."""
    flat = [100.0] * 10
    split = [100.0] * 5 + [50.0] * 5
    jumps = find_jumps(_table({"AAA": split, "BBB": flat, "CCC": flat}))
    assert [(j.symbol, j.ts, j.looks_like) for j in jumps] == [("AAA", (START + 7) * DAY_MS, "2:1")]
    assert math.isclose(jumps[0].log_return, math.log(0.5)) and jumps[0].market_log_return == 0.0
    assert find_jumps(_table({"AAA": split, "BBB": split, "CCC": split})) == []


def test_one_symbol_has_no_market_to_compare_with() -> None:
    """Without other symbols, every move beyond the threshold is a jump; a small move never is."""
    assert [j.looks_like for j in find_jumps(_table({"BTC": [100.0] * 5 + [1000.0] * 5}))] == ["1:10"]
    assert find_jumps(_table({"BTC": [100.0] * 5 + [120.0] * 5})) == []


def test_split_ratio_names_the_nearest_split_only_when_close() -> None:
    """A jump is described as a split only within the tolerance of its price ratio."""
    assert split_ratio(math.log(1 / 3)) == "3:1"
    assert split_ratio(math.log(0.5) + 0.02) == "2:1"
    assert split_ratio(-0.30) is None


def test_no_window_or_label_straddles_a_jump() -> None:
    """Windows across a jump are left out and counted; the rest are those without the jump."""
    rows = weekday_candles(symbols=("AAA", "BBB", "CCC"), days=200)
    symbols = np.array([r[1] for r in rows])
    ts = np.array([r[0] for r in rows], dtype=np.int64)
    ohlcv = np.array([r[2:] for r in rows])
    clean = CandleTable(symbols, ts, ohlcv.copy())
    aaa = np.flatnonzero(symbols == "AAA")
    jump_row = aaa[100]
    ohlcv[jump_row : aaa[-1] + 1, :4] /= 2.0  # AAA splits 2:1 at its 101st candle
    split = CandleTable(symbols, ts, ohlcv)
    before = build_windows(clean, tiny_spec())
    after, audit = audited_windows(split, tiny_spec())
    assert [(j.symbol, j.ts) for j in audit.jumps] == [("AAA", int(ts[jump_row]))]
    lost = len(before) - len(after)
    assert lost == tiny_spec().length - 1  # the windows holding both sides of the split
    inside = after.symbols == "AAA"
    windows = after.windows[inside]
    returns = np.log(windows[:, 1:, 3] / windows[:, :-1, 3])
    assert np.abs(returns).max() < 0.25
    crossing = (after.end_ts < ts[jump_row]) & (after.label_ts[:, -1] >= ts[jump_row])
    assert not crossing[inside].any()
    assert np.all(np.abs(after.log_return[inside & after.valid[:, -1], -1]) < 0.25)
