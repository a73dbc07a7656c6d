"""The backtest: real candles through the daemon's core without Kafka, its command, and its trading report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import msgspec
import numpy as np
import pytest
from typer.testing import CliRunner

from candlecast.backtest import run_backtest
from candlecast.candlefile import CandleTable, bundled_path, read_candles
from candlecast.cli import app
from candlecast.errors import DataError
from candlecast.trading_report import SignalColumns, trading_results
from daemon.backtest import backtest_signals, candle_records
from daemon.batching import BatchPolicy
from daemon.candle import format_ts
from daemon.core import build_core
from daemon.settings import BatchingSettings, ModelSettings, Settings, StrategySettings
from daemon.signal import Signal
from models.torchscript import LoadedModel, load_artifact

CANDLES_PER_SYMBOL = 80
STATEFUL = StrategySettings(
    name="threshold", params={"buy_above": 0.501, "sell_below": 0.472, "hysteresis": 0.003, "cooldown": 2, "memory": 4}
)


@pytest.fixture(scope="module")
def model(test_artifact: Path) -> LoadedModel:
    return load_artifact(test_artifact)


@pytest.fixture(scope="module")
def candles() -> CandleTable:
    return read_candles(bundled_path("us_stocks_1d.csv")).tail_per_symbol(CANDLES_PER_SYMBOL)


def settings_for(artifact: Path, strategy: StrategySettings, max_batch: int = 512) -> Settings:
    return Settings(
        model=ModelSettings(artifact=artifact), strategy=strategy, batching=BatchingSettings(max_batch=max_batch)
    )


def signals_of(settings: Settings, model: LoadedModel, candles: CandleTable) -> list[Signal]:
    core = build_core(settings, model)
    records = candle_records(candles.messages("1d"))
    policy = BatchPolicy(settings.batching.max_batch)
    return list(backtest_signals(records, core.ingestor, core.builder, model, policy))


def without_produce_time(signals: list[Signal]) -> list[Signal]:
    return [msgspec.structs.replace(s, produced_at="") for s in signals]


def test_every_full_window_gets_the_models_signal(
    test_artifact: Path, model: LoadedModel, candles: CandleTable
) -> None:
    """One signal per candle once its window is full, in candle order, with the model's own output."""
    signals = signals_of(settings_for(test_artifact, StrategySettings()), model, candles)
    window = model.manifest.window
    spans = candles.symbol_slices()
    assert len(signals) == len(spans) * (CANDLES_PER_SYMBOL - window + 1)
    for symbol, span in spans.items():
        mine = [s for s in signals if s.symbol == symbol]
        rows = candles.ohlcv[span].astype(np.float32)
        windows = np.lib.stride_tricks.sliding_window_view(rows, (window, 5)).reshape(-1, window, 5)
        direct = model.score(np.ascontiguousarray(windows)).probabilities
        assert [s.ts for s in mine] == [format_ts(int(t)) for t in candles.ts[span][window - 1 :]]
        assert [s.probability for s in mine] == direct[:, 0].tolist()


def test_batch_size_does_not_change_any_signal(test_artifact: Path, model: LoadedModel, candles: CandleTable) -> None:
    """Batches of 7 or 512 windows: the same signals, so the daemon's load-dependent batching cannot matter."""
    small, large = (
        without_produce_time(signals_of(settings_for(test_artifact, STATEFUL, size), model, candles))
        for size in (7, 512)
    )
    assert small == large
    assert {s.action for s in small} == {"SELL", "HOLD"}


def test_a_file_of_another_interval_is_refused(test_artifact: Path, model: LoadedModel, tmp_path: Path) -> None:
    hourly = read_candles(bundled_path("btcusd_1h.csv")).tail_per_symbol(10)
    """Hourly candles handed to a daily model are refused, naming the registry's models to pick from."""
    with pytest.raises(
        DataError, match=r"the candles are 1h, the model scores 1d candles .*equities-1d/[\d.]+ \(1d, weekdays\)"
    ):
        run_backtest(settings_for(test_artifact, StrategySettings()), model, hourly, tmp_path)


def test_trading_returns_follow_the_signals_positions() -> None:
    """BUY, SELL, HOLD on closes 100 -> 110 -> 99 -> 99: long +10%, short +10%, flat 0%, costs per unit traded."""
    day = 86_400_000
    start = 1_704_153_600_000  # 2024-01-02, a Tuesday
    closes = [100.0, 110.0, 99.0, 99.0]
    candles = CandleTable(
        np.asarray(["X"] * 4),
        np.asarray([start + i * day for i in range(4)], dtype=np.int64),
        np.asarray([[c, c, c, c, 1.0] for c in closes]),
    )
    columns = SignalColumns()
    for i, action in enumerate(["BUY", "SELL", "HOLD", "BUY"]):
        columns.symbols.append("X")
        columns.ts.append(start + i * day)
        columns.positions.append({"BUY": 1, "SELL": -1, "HOLD": 0}[action])
    cost = 5e-4
    figures = trading_results(columns, candles, interval="1d", calendar="continuous", cost_bps=5.0)["strategy"]
    expected = (1 + 0.1 - cost) * (1 + 0.1 - 2 * cost) * (1 - cost) - 1
    assert figures["total_return"] == pytest.approx(expected)
    assert figures["days"] == 3  # the last signal has no next candle to trade on
    assert figures["win_rate"] == 1.0


def test_the_command_writes_signals_and_a_report(test_artifact: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    result = CliRunner().invoke(
        app,
        [
            "backtest",
            "--data",
            str(bundled_path("us_stocks_1d.csv")),
            "--model",
            str(test_artifact),
            "--strategy",
            "gated",
            "--params",
            json.dumps({"max_disagreement": 0.006, "sell_below": 0.472, "buy_above": 0.55}),
            "--symbols",
            "AAPL,NVDA",
            "--last",
            "100",
            "--out",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    signals = [msgspec.json.decode(line, type=Signal) for line in (out / "signals.jsonl").read_bytes().splitlines()]
    assert len(signals) == 2 * (100 - 64 + 1)
    assert all(s.strategy.startswith("gated(") for s in signals)
    report = json.loads((out / "report.json").read_text())
    assert report["signals"]["count"] == len(signals)
    assert report["signals"]["actions"]["HOLD"] > 0 and report["signals"]["actions"]["SELL"] > 0
    figures = report["trading"]["strategy"]
    for name in ("total_return", "sharpe", "max_drawdown", "win_rate", "turnover"):
        assert math.isfinite(figures[name]), name
    assert len(figures["equity"]["dates"]) == len(figures["equity"]["values"]) == figures["days"]
    assert (out / "equity.png").read_bytes().startswith(b"\x89PNG")
    assert "| Sharpe ratio (annualised) |" in (out / "report.md").read_text()


def test_bad_params_are_a_configuration_error(test_artifact: Path, tmp_path: Path) -> None:
    runner = CliRunner()
    base = ["backtest", "--data", str(bundled_path("us_stocks_1d.csv")), "--model", str(test_artifact)]
    result = runner.invoke(app, [*base, "--params", "[1]", "--out", str(tmp_path)])
    assert "--params: must be a JSON object" in str(result.exception)
    result = runner.invoke(app, [*base, "--strategy", "threshold", "--params", '{"buy_above": 2}'])
    assert "strategy.params.buy_above" in str(result.exception)


def test_the_command_runs_as_a_route_of_the_settings(test_artifact: Path, tmp_path: Path) -> None:
    """With ``--route``, the backtest scores with that route's model and strategy and its signals name the
    route and the model, as the daemon's signals of that route do; an unknown route is refused, naming them."""
    config = tmp_path / "routes.toml"
    config.write_text(
        f"""
[[routes]]
name = "crypto-1h"
symbols = "*USD"
interval = "1h"

[[routes]]
name = "stocks-1d"
interval = "1d"
model = {{ artifact = "{test_artifact}" }}
strategy = {{ name = "gated", params = {{}} }}
"""
    )
    out = tmp_path / "out"
    runner = CliRunner()
    base = ["backtest", "--data", str(bundled_path("us_stocks_1d.csv")), "--config", str(config)]
    result = runner.invoke(app, [*base, "--route", "stocks-1d", "--symbols", "AAPL", "--last", "70", "--out", str(out)])
    assert result.exit_code == 0, result.output
    signals = [msgspec.json.decode(line, type=Signal) for line in (out / "signals.jsonl").read_bytes().splitlines()]
    assert len(signals) == 70 - 64 + 1
    assert {(s.route, s.model, s.strategy.split("(")[0]) for s in signals} == {("stocks-1d", "test-ensemble", "gated")}
    refused = runner.invoke(app, [*base, "--route", "fx-1m", "--out", str(out)])
    assert "--route: the settings have no route 'fx-1m' (routes: crypto-1h, stocks-1d)" in str(refused.exception)
