"""The trading report of a backtest: what its signals would have earned after fees and slippage.

Positions come from the signals as the model evaluation takes them (BUY long, SELL short, HOLD
flat, each held from the signal's candle's close to the next candle's close) and go through the
evaluation's simulator (``models.simulation.simulate``), so a backtest and the model card count
returns, costs, Sharpe ratio, drawdown, win rate and turnover the same way. Buy-and-hold on the
same symbol-candles is the benchmark. Needs the ``train`` extra (scikit-learn, matplotlib).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt

from candlecast.candlefile import CandleTable
from daemon.candle import parse_ts
from daemon.signal import Signal
from models.dataset import NO_LABEL, WindowSet, iso
from models.plots import plot_equity
from models.report import num, pct, table
from models.simulation import periods_per_year, simulate, trading_figures

Json = dict[str, Any]
POSITIONS = {"BUY": 1, "SELL": -1, "HOLD": 0}
STRATEGY = "strategy"
BUY_AND_HOLD = "buy-and-hold"
EQUITY_PLOT = "equity.png"


@dataclass
class SignalColumns:
    """What the simulation needs of each signal, collected while signals stream to their file."""

    symbols: list[str] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)

    def add(self, signal: Signal) -> None:
        opened = parse_ts(signal.ts)
        assert opened is not None, "signals carry ISO-8601 UTC open times"
        self.symbols.append(signal.symbol)
        self.ts.append(opened)
        self.positions.append(POSITIONS[signal.action])

    def __len__(self) -> int:
        return len(self.ts)


def next_candles(columns: SignalColumns, candles: CandleTable) -> WindowSet:
    """Each signal with its symbol's next candle in the file: its open time and the log return from
    this close to that one (no next candle: no label)."""
    count = len(columns)
    label_ts = np.full((count, 1), NO_LABEL, dtype=np.int64)
    log_return = np.full((count, 1), np.nan)
    rows_of = candles.symbol_slices()
    for i, (symbol, ts) in enumerate(zip(columns.symbols, columns.ts, strict=True)):
        rows = rows_of[symbol]
        row = rows.start + int(np.searchsorted(candles.ts[rows], ts))
        if row + 1 < rows.stop:
            label_ts[i, 0] = candles.ts[row + 1]
            log_return[i, 0] = np.log(candles.ohlcv[row + 1, 3] / candles.ohlcv[row, 3])
    return WindowSet(
        windows=np.zeros((count, 0, 5), dtype=np.float32),
        symbols=np.asarray(columns.symbols, dtype=np.str_),
        end_ts=np.asarray(columns.ts, dtype=np.int64),
        label_ts=label_ts,
        log_return=log_return,
        up=np.nan_to_num(log_return) > 0,
        horizons=(1,),
    )


def trading_results(
    columns: SignalColumns, candles: CandleTable, *, interval: str, calendar: str, cost_bps: float
) -> Json:
    """Figures and equity curves of the signals' positions and of buy-and-hold, on the signals whose
    next candle is in the file."""
    data = next_candles(columns, candles)
    labelled = np.flatnonzero(data.valid[:, 0])
    rows = data.select(labelled)
    positions: npt.NDArray[np.int64] = np.asarray(columns.positions, dtype=np.int64)[labelled]
    periods = periods_per_year(interval, calendar)
    out: Json = {}
    for name, held in ((STRATEGY, positions), (BUY_AND_HOLD, np.ones(len(rows), dtype=np.int64))):
        simulation = simulate(held, rows, cost_bps=cost_bps)
        figures: Json = trading_figures(simulation, periods)
        figures["equity"] = {
            "dates": [iso(int(t)) for t in simulation.dates],
            "values": simulation.equity().tolist(),
        }
        out[name] = figures
    return out


def write_report(report: Json, directory: Path) -> list[Path]:
    """``report.json``, ``report.md`` and ``equity.png`` under ``directory``."""
    directory.mkdir(parents=True, exist_ok=True)
    figures = directory / "report.json"
    figures.write_bytes(msgspec.json.format(msgspec.json.encode(report)) + b"\n")
    import matplotlib as mpl

    mpl.use("Agg")
    plot_equity({"trading": report["trading"]}, directory / EQUITY_PLOT)
    markdown = directory / "report.md"
    markdown.write_text(render(report))
    return [figures, markdown, directory / EQUITY_PLOT]


def render(report: Json) -> str:
    trading = report["trading"]
    mine, benchmark = trading[STRATEGY], trading[BUY_AND_HOLD]
    rows = [
        ("total return", pct(mine["total_return"]), pct(benchmark["total_return"])),
        ("annual return", pct(mine["annual_return"]), pct(benchmark["annual_return"])),
        ("Sharpe ratio (annualised)", num(mine["sharpe"], 2), num(benchmark["sharpe"], 2)),
        ("maximum drawdown", pct(mine["max_drawdown"]), pct(benchmark["max_drawdown"])),
        ("win rate (symbol-candles in a position)", pct(mine["win_rate"]), pct(benchmark["win_rate"])),
        ("turnover (capital traded per candle)", pct(mine["turnover"]), pct(benchmark["turnover"])),
        ("exposure (capital in a position)", pct(mine["exposure"]), pct(benchmark["exposure"])),
    ]
    signals, data, costs = report["signals"], report["data"], report["costs"]
    actions = ", ".join(f"{action} {count}" for action, count in signals["actions"].items())
    rejected = ", ".join(f"{reason} {count}" for reason, count in signals["rejected"].items()) or "none"
    return "\n".join(
        [
            "# Backtest",
            "",
            f"Model `{report['model']['name']}/{report['model']['version']}`, strategy `{report['strategy']}`.",
            "",
            f"Data: `{data['file']}`, {data['candles']} candles of {len(data['symbols'])} symbols "
            f"({data['interval']}), {data['start']} to {data['end']}.",
            f"Signals: {signals['count']} ({actions}), written to `{signals['file']}`; rejected candles: {rejected}.",
            "",
            f"## Trading after costs ({costs['fee_bps']:g} bps fees + {costs['slippage_bps']:g} bps slippage)",
            "",
            table(("", STRATEGY, BUY_AND_HOLD), rows),
            "",
            f"Over {int(mine['days'])} candles. BUY is long, SELL short and HOLD flat, each held from the "
            "signal's candle's close to the next candle's close; every symbol with a signal gets an equal share "
            "of capital that candle. Costs are charged per unit of position changed (a long-to-short flip pays "
            "twice) and when a symbol's run of signals ends. Signals without a next candle in the file are not "
            "traded. The same simulator as the model card (`models/simulation.py`).",
            "",
            f"![equity curve]({EQUITY_PLOT})",
            "",
        ]
    )
