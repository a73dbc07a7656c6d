"""The trading simulation of the model card and of ``candlecast backtest``'s report: positions held
one candle, costs on every change, an equal-weight daily portfolio, and its return figures."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from daemon.intervals import DAY_MS, interval_ms
from models.dataset import WindowSet

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def periods_per_year(interval: str, calendar: str) -> float:
    """Candles in a year: 252 trading days for the weekdays calendar, 365 days otherwise."""
    per_day = DAY_MS / interval_ms(interval)
    return (252.0 if calendar == "weekdays" else 365.0) * per_day


@dataclass(frozen=True)
class Simulation:
    """A daily portfolio: every symbol with a window that candle gets an equal share of capital."""

    dates: IntArray
    """Window-end times (the position is taken at that candle's close, held one candle)."""
    returns: FloatArray
    """Portfolio return per date, after costs."""
    turnover: FloatArray
    """Share of capital traded per date."""
    exposure: FloatArray
    """Share of capital in a position per date."""
    wins: int
    active: int
    """Symbol-candles with a position, and how many of them made money after costs."""

    def equity(self) -> FloatArray:
        return np.cumprod(1.0 + self.returns, dtype=np.float64)


def simulate(positions: IntArray, data: WindowSet, *, cost_bps: float) -> Simulation:
    """Hold ``positions`` (+1 long, -1 short, 0 flat) from each window's close to the next candle's
    (the primary horizon must be 1 candle; rows need that label).

    Costs of ``cost_bps`` basis points are charged on every change of position, including opening
    from flat and closing when a symbol's run of candles ends (its next window does not start
    where this one's position ends).
    """
    if data.horizons[0] != 1:
        raise ValueError("the trading simulation needs a 1-candle primary horizon")
    if not data.valid[:, 0].all():
        raise ValueError("every simulated window needs its next candle")
    symbols, end_ts, next_ts, next_log_return = data.symbols, data.end_ts, data.label_ts[:, 0], data.log_return[:, 0]
    cost = cost_bps / 1e4
    order = np.lexsort((end_ts, symbols))
    pos = positions[order].astype(np.float64)
    sym, ts, nxt = symbols[order], end_ts[order], next_ts[order]
    gross = pos * np.expm1(next_log_return[order])
    chained = np.zeros(len(pos), dtype=bool)
    chained[1:] = (sym[1:] == sym[:-1]) & (ts[1:] == nxt[:-1])
    previous = np.where(chained, np.r_[0.0, pos[:-1]], 0.0)
    closes = np.r_[~chained[1:], True]
    traded = np.abs(pos - previous) + np.where(closes, np.abs(pos), 0.0)
    net = gross - cost * traded
    dates, day = np.unique(ts, return_inverse=True)
    per_day = np.bincount(day, minlength=len(dates)).astype(np.float64)
    active = pos != 0
    return Simulation(
        dates=dates,
        returns=np.bincount(day, weights=net, minlength=len(dates)) / per_day,
        turnover=np.bincount(day, weights=traded, minlength=len(dates)) / per_day,
        exposure=np.bincount(day, weights=np.abs(pos), minlength=len(dates)) / per_day,
        wins=int(np.sum(active & (net > 0))),
        active=int(active.sum()),
    )


def sharpe(returns: FloatArray, periods: float) -> float:
    """Annualised Sharpe ratio (no risk-free rate); 0 for a flat series."""
    std = float(returns.std(ddof=1)) if len(returns) > 1 else 0.0
    return float(returns.mean()) / std * math.sqrt(periods) if std > 0 else 0.0


def max_drawdown(returns: FloatArray) -> float:
    equity = np.cumprod(1.0 + returns)
    peak = np.maximum.accumulate(np.r_[1.0, equity])[1:]
    return float(np.max(1.0 - equity / peak)) if len(equity) else 0.0


def trading_figures(simulation: Simulation, periods: float) -> dict[str, float]:
    returns = simulation.returns
    total = float(np.prod(1.0 + returns) - 1.0)
    years = len(returns) / periods
    return {
        "total_return": total,
        "annual_return": (1.0 + total) ** (1.0 / years) - 1.0 if years > 0 and total > -1 else math.nan,
        "sharpe": sharpe(returns, periods),
        "max_drawdown": max_drawdown(returns),
        "win_rate": simulation.wins / simulation.active if simulation.active else math.nan,
        "turnover": float(simulation.turnover.mean()),
        "exposure": float(simulation.exposure.mean()),
        "days": float(len(returns)),
    }
