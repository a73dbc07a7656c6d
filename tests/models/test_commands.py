"""`candlecast train` and `candlecast evaluate` end to end on synthetic candles."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from candlecast.errors import ConfigError, DataError
from models.commands import evaluate, train
from models.contenders import BUY_AND_HOLD, CONSTANT, ENSEMBLE, LOGISTIC, MOMENTUM, REFERENCE_STRATEGY
from models.training import RunInfo, read_run
from tests.models.synthetic import weekday_candles, write_csv

app = typer.Typer()
app.command("train")(train)
app.command("evaluate")(evaluate)
runner = CliRunner()


def invoke(*args: str) -> str:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output
    return result.output


def test_train_command_writes_a_run(candles_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    invoke(
        "train", "--data", str(candles_csv), "--out", str(out), "--name", "cli", "--version", "9.9.9",
        "--window", "32", "--horizons", "1,5", "--members", "multiscale", "--folds", "1", "--test-candles", "40",
        "--validation-candles", "30", "--calibration-candles", "30", "--epochs", "1", "--threads", "1", "--quiet",
    )  # fmt: skip
    run = read_run(out)
    assert (run.name, run.version, run.members, run.horizons, run.sizes["purge"]) == (
        "cli",
        "9.9.9",
        ["multiscale"],
        [1, 5],
        5,
    )
    assert (out / run.folds[0].weights_file).is_file()
    with pytest.raises(DataError, match="purge gap 2"):
        invoke("train", "--data", str(candles_csv), "--out", str(out), "--horizons", "1,5", "--purge", "2")
    with pytest.raises(ConfigError, match="members"):
        invoke("train", "--data", str(candles_csv), "--out", str(out), "--members", "lstm,xgboost")


def test_evaluate_command_writes_the_report(trained: tuple[Path, RunInfo], tmp_path: Path) -> None:
    out, run = trained
    external = write_csv(tmp_path / "other.csv", weekday_candles(("CCC", "DDD", "EEE"), days=200, seed=11))
    reports = tmp_path / "reports"
    invoke(
        "evaluate", "--run", str(out), "--data", str(external), "--report-dir", str(reports), "--stem", "card",
        "--bootstrap", "50", "--card",
    )  # fmt: skip
    figures = json.loads((reports / "card.json").read_text())
    assert list(figures["sets"]) == ["last-fold", "walk-forward", "external-other"]
    for key, figures_of_set in figures["sets"].items():
        models = figures_of_set["models"]
        assert {ENSEMBLE, LOGISTIC, MOMENTUM, CONSTANT, BUY_AND_HOLD} <= models.keys()
        for name in (ENSEMBLE, LOGISTIC, CONSTANT):
            for horizon in ("1", "5"):
                entry = models[name]["horizons"][horizon]
                assert {"accuracy", "accuracy_ci", "log_loss", "brier", "ece", "auc"} <= entry.keys()
            assert {"BUY", "SELL", "HOLD"} == models[name]["actions"].keys()
        assert "accuracy_minus_ensemble" in models[BUY_AND_HOLD]["horizons"]["1"]
        trading = figures_of_set["trading"]
        assert {"total_return", "sharpe", "sharpe_ci", "max_drawdown", "win_rate", "turnover"} <= trading[
            REFERENCE_STRATEGY
        ].keys()
        assert "sharpe_minus_ensemble" in trading[BUY_AND_HOLD]
        quantiles = figures_of_set["quantiles"]
        assert set(quantiles) == {"1", "5"}
        assert {"below", "interval_coverage", "pinball"} <= quantiles["1"]["ensemble"].keys()
        for kind in ("calibration", "equity", "confusion", "confidence"):
            assert (reports / "img" / f"card-{key}-{kind}.png").stat().st_size > 1000
    assert figures["sets"]["last-fold"]["weights_sha256"] == [run.folds[-1].weights_sha256]
    assert "not a forward test" not in figures["sets"]["external-other"]["description"]
    page = (reports / "card.md").read_text()
    assert page.startswith("# Model card: tiny 0.1.0")
    assert "candlecast train --data=" in page and "candlecast evaluate --run=" in page
    assert "(img/card-last-fold-equity.png)" in page
    assert "nan" not in page.lower().replace("nanoseconds", "")
    with pytest.raises(ConfigError, match="thresholds"):
        invoke("evaluate", "--run", str(out), "--buy-above", "0.4")
