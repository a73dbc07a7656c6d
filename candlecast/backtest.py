"""``candlecast backtest``: a candle file through the daemon's own core, signals and a trading report out.

The core (windows, validation, strategy, signal building) is built by ``build_core`` from the
same settings the daemon reads, and driven by the daemon's own pipeline on in-memory transports
(``daemon.backtest``); see there for why the signals equal the daemon's. Output, under ``--out``:
``signals.jsonl`` (one signal per line, exactly the JSON the daemon publishes) and the trading
report (``trading_report``).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

from candlecast.candlefile import CandleTable, infer_interval
from candlecast.errors import DataError
from daemon.backtest import SOURCE, candle_records, run_backtest_pipeline
from daemon.batching import BatchPolicy
from daemon.core import build_core
from daemon.dispatch import DEFAULT_ROUTE
from daemon.ports import PublishBatch
from daemon.serving import load_serving_model, served_scoring
from daemon.settings import ModelSettings, Settings
from daemon.signal import Signal, encoder
from models.device import resolve_device
from models.market_fit import misfit
from models.registry import Registry
from models.torchscript import LoadedModel, load_artifact

SIGNALS_FILE = "signals.jsonl"


@dataclass(frozen=True)
class BacktestRun:
    """What a backtest produced: its signals file and counts (the report is written separately)."""

    signals_path: Path
    signals: int
    candles: int
    actions: dict[str, int]
    rejected: dict[str, int]
    strategy: str
    interval: str
    calendar: str


def load_model(ref: str | None, settings: ModelSettings) -> LoadedModel:
    """An artifact file, a ``NAME/VERSION`` of the configured registry, or that registry's current version."""
    device = resolve_device(settings.device)
    if ref is None:
        return load_serving_model(settings, device)
    path = Path(ref)
    if path.is_file():
        return load_artifact(path, device)
    registry = Registry(settings.registry)
    return registry.load(registry.entry(ref), device)


def run_backtest(
    settings: Settings,
    model: LoadedModel,
    candles: CandleTable,
    out: Path,
    *,
    console: Console | None = None,
    route: str = DEFAULT_ROUTE,
) -> BacktestRun:
    """Feed every candle in time order through the daemon's core and write the signals to ``out``.

    Signals name ``route`` (``settings`` as that route sees them). ``console`` shows a progress bar.
    Raises ``DataError`` when the file's candles are not the model's interval.
    """
    interval = infer_interval(candles)
    reason = misfit(model.manifest, interval, Registry(settings.model.registry))
    if reason is not None:
        raise DataError(f"{reason}: pick one with --model")
    core = build_core(settings, model, route=route)
    scorer = served_scoring(model, settings.model.scoring, settings.windows.max_windows)
    policy = BatchPolicy(settings.batching.max_batch)
    messages = candles.messages(interval)
    out.mkdir(parents=True, exist_ok=True)
    signals_path = out / SIGNALS_FILE
    actions: Counter[str] = Counter()
    progress = Progress(
        TextColumn("backtest"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=console,
        disable=console is None,
    )
    with progress, signals_path.open("wb") as sink:
        task = progress.add_task("backtest", total=len(messages))

        def write(batch: PublishBatch) -> None:
            for signal, _ in batch.signals:
                sink.write(encoder.encode(signal) + b"\n")
                actions[signal.action] += 1
            mark = batch.checkpoint.get((SOURCE, 0))
            if mark is not None:
                progress.update(task, completed=mark.offset)

        records = candle_records(messages)
        asyncio.run(run_backtest_pipeline(records, core.ingestor, core.builder, scorer, policy, on_published=write))
    return BacktestRun(
        signals_path=signals_path,
        signals=sum(actions.values()),
        candles=len(messages),
        actions={action: actions[action] for action in ("BUY", "SELL", "HOLD")},
        rejected=dict(core.ingestor.counters.rejected),
        strategy=core.builder.strategy_name,
        interval=interval,
        calendar=core.intervals[interval].calendar,
    )


def write_trading_report(
    run: BacktestRun,
    model: LoadedModel,
    candles: CandleTable,
    data: Path,
    out: Path,
    *,
    fee_bps: float,
    slippage_bps: float,
) -> list[Path]:
    """The trading report of a run's signals (``candlecast.trading_report``; needs the train extra)."""
    from candlecast.trading_report import SignalColumns, trading_results, write_report
    from models.dataset import iso

    columns = SignalColumns()
    with run.signals_path.open("rb") as lines:
        for line in lines:
            columns.add(msgspec.json.decode(line, type=Signal))
    report: dict[str, Any] = {
        "model": {"name": model.manifest.name, "version": model.version},
        "strategy": run.strategy,
        "data": {
            "file": str(data),
            "candles": run.candles,
            "symbols": sorted(candles.symbol_slices()),
            "interval": run.interval,
            "start": iso(int(candles.ts.min())),
            "end": iso(int(candles.ts.max())),
        },
        "costs": {"fee_bps": fee_bps, "slippage_bps": slippage_bps},
        "signals": {"count": run.signals, "file": SIGNALS_FILE, "actions": run.actions, "rejected": run.rejected},
        "trading": trading_results(
            columns,
            candles,
            interval=run.interval,
            calendar=run.calendar,
            cost_bps=fee_bps + slippage_bps,
        ),
    }
    return write_report(report, out)
