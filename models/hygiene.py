"""Price jumps that are not market moves: split and reverse-split jumps in unadjusted candles.

A candle whose close is more than ``JUMP_LOG_RETURN`` (in absolute log return) away from its
symbol's previous close, while the market (the median return of the other symbols' candles of the
same open time) did not move with it by at least as much less the threshold, is a jump: a 2-for-1
split halves the price overnight. Windows and labels must not straddle it (a window would read a
-69% candle the symbol never had); ``models.dataset`` starts a new run of candles at each jump, as
after a gap too long to tolerate, so training and evaluation skip every window and label across it.

The rule cannot tell a split from a real 30% earnings gap of one stock: both are excluded, and
counted. A file of one symbol has no market to compare with: every such move counts as a jump.
"""

from __future__ import annotations

import math

import msgspec
import numpy as np
import numpy.typing as npt

from candlecast.candlefile import CandleTable

JUMP_LOG_RETURN = 0.25
SPLIT_RATIOS = ((2, 1), (3, 1), (4, 1), (5, 1), (7, 1), (8, 1), (10, 1), (15, 1), (20, 1))
"""Common splits, ``(new, old)`` shares: an ``n:m`` split multiplies the price by ``m / n``. 3:2 and
4:3 are left out: an earnings gap of -30% to -40% would look like them."""
SPLIT_TOLERANCE = 0.05
"""Largest ``|log(ratio) - log(split ratio)|`` for a jump to be described as that split."""


class Jump(msgspec.Struct, frozen=True):
    """One excluded jump: the candle's symbol and open time, its log return from the previous
    close, the market's median log return then (NaN without other symbols), and the split it
    looks like (``"2:1"``, ``"1:10"``), if any."""

    symbol: str
    ts: int
    log_return: float
    market_log_return: float
    looks_like: str | None


def split_ratio(log_return: float) -> str | None:
    """The split (``"N:1"``, or ``"1:N"`` for a reverse split) whose price ratio is nearest to the
    jump, within ``SPLIT_TOLERANCE``."""
    best: tuple[float, str] | None = None
    for new, old in SPLIT_RATIOS:
        step = math.log(new / old)
        for signed, name in ((-step, f"{new}:{old}"), (step, f"{old}:{new}")):
            distance = abs(log_return - signed)
            if distance <= SPLIT_TOLERANCE and (best is None or distance < best[0]):
                best = (distance, name)
    return best[1] if best else None


def find_jumps(table: CandleTable, threshold: float = JUMP_LOG_RETURN) -> list[Jump]:
    """Every candle of ``table`` (sorted by symbol and ts, as read) whose log return from the
    symbol's previous candle exceeds ``threshold`` in size without a matching market move."""
    returns = np.full(len(table), np.nan)
    close = table.ohlcv[:, 3]
    for span in table.symbol_slices().values():
        returns[span.start + 1 : span.stop] = np.log(
            close[span.start + 1 : span.stop] / close[span.start : span.stop - 1]
        )
    candidates = np.flatnonzero(np.abs(np.nan_to_num(returns)) > threshold)
    jumps: list[Jump] = []
    for row in candidates.tolist():
        same_time = (table.ts == table.ts[row]) & (table.symbols != table.symbols[row]) & ~np.isnan(returns)
        market = float(np.median(returns[same_time])) if same_time.any() else math.nan
        r = float(returns[row])
        if math.isnan(market) or abs(r - market) > threshold:
            jumps.append(Jump(str(table.symbols[row]), int(table.ts[row]), r, market, split_ratio(r)))
    return jumps


def jump_rows(table: CandleTable, jumps: list[Jump]) -> npt.NDArray[np.bool_]:
    """``[N]`` the rows of ``table`` that are jumps."""
    flagged = {(j.symbol, j.ts) for j in jumps}
    return np.array([(str(s), int(t)) in flagged for s, t in zip(table.symbols, table.ts, strict=True)], dtype=bool)
