"""`candlecast evaluate --model`: any exported artifact on any candle file, without its run."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from candlecast.errors import ConfigError
from daemon.intervals import DAY_MS
from models.commands import evaluate
from models.contenders import BEST_MEMBER, CONSTANT, ENSEMBLE, LOGISTIC, MOMENTUM, REWEIGHTED
from models.dataset import SplitSizes, WindowSpec
from models.export import export_run
from models.registry import Registry
from models.training import RunInfo, train_run
from tests.models.conftest import TINY_CONFIG
from tests.models.synthetic import hourly_candles, weekday_candles, write_csv

REPO = Path(__file__).resolve().parents[2]
app = typer.Typer()
app.command("evaluate")(evaluate)
app.command("unused")(lambda: None)  # two commands, so the first argument names one
runner = CliRunner()


def invoke(*args: str) -> None:
    result = runner.invoke(app, list(args))
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    assert result.exit_code == 0, result.output


@pytest.fixture(scope="module")
def registry(trained: tuple[Path, RunInfo], tmp_path_factory: pytest.TempPathFactory) -> Registry:
    """A registry holding the tiny daily model and a tiny hourly (24/7) one."""
    root = tmp_path_factory.mktemp("registry")
    store = Registry(root)
    daily = tmp_path_factory.mktemp("daily") / "model.pt"
    export_run(trained[0], daily)
    store.add(daily)
    hourly_csv = write_csv(tmp_path_factory.mktemp("hourly") / "coin.csv", hourly_candles())
    spec = WindowSpec.build(
        length=32, interval="1h", calendar="continuous", gap_policy="tolerate", max_missing=3, horizons=(1, 6)
    )
    run_dir = tmp_path_factory.mktemp("hourly-run")
    sizes = SplitSizes(folds=2, test=150, validation=100, calibration=100, purge=6)
    train_run(hourly_csv, run_dir, spec=spec, sizes=sizes, config=TINY_CONFIG, name="coin-1h", version="0.1.0")
    hourly = run_dir / "model.pt"
    export_run(run_dir, hourly)
    store.add(hourly)
    return store


def _report(directory: Path) -> Any:
    return json.loads((directory / "report.json").read_text())


def test_a_daily_artifact_on_another_file_with_misaligned_rows(registry: Registry, tmp_path: Path) -> None:
    """Misaligned rows are counted by reason; baselines see only windows before the scored ones;
    every model is scored on the same labels."""
    rows = weekday_candles(("XXX", "YYY"), days=300, seed=21)
    noon = [(ts + DAY_MS // 2, symbol, o, h, lo, c, v) for ts, symbol, o, h, lo, c, v in rows[100:103]]
    data = write_csv(tmp_path / "other.csv", sorted(rows + noon, key=lambda r: (r[1], r[0])))
    reports = tmp_path / "report"
    invoke(
        "evaluate", "--model", "tiny/0.1.0", "--registry", str(registry.root), "--data", str(data),
        "--report-dir", str(reports), "--bootstrap", "30", "--baseline-fraction", "0.4",
    )  # fmt: skip
    figures = _report(reports)
    assert figures["data"] == [
        {
            "file": "other.csv",
            "rows": len(rows) + 3,
            "rejected": {"misaligned_ts": 3},
            "rejected_total": 3,
            "jumps": [],
            "windows": figures["data"][0]["windows"],
        }
    ]
    assert figures["model"]["source"] == "artifact"
    (scored,) = figures["sets"].values()
    models = scored["models"]
    assert set(models) >= {ENSEMBLE, REWEIGHTED, BEST_MEMBER, LOGISTIC, MOMENTUM, CONSTANT}
    for h in ("1", "5"):
        counts = {name: models[name]["horizons"][h]["count"] for name in models}
        assert set(counts.values()) == {scored["labels"][h]}
    # Baselines were fitted on the first 40% of end times: the scored set starts after them.
    fitted = re.search(
        r"first 40% of the file's window-end times \([\d,]+ windows, \S+ \.\. (\S+)\)", scored["description"]
    )
    assert fitted is not None and fitted.group(1) < scored["start"][:10]
    assert {"interval_coverage", "pinball"} <= set(scored["quantiles"]["1"]["volatility"])
    markdown = (reports / "report.md").read_text()
    assert "misaligned_ts 3" in markdown and "EWMA volatility" in markdown
    assert {p.name for p in (reports / "img").iterdir()} == {
        f"report-file-other-{kind}.png" for kind in ("calibration", "equity", "confusion", "confidence")
    }


def test_a_continuous_hourly_artifact_with_baselines_from_another_file(registry: Registry, tmp_path: Path) -> None:
    """A 24/7 model is scored on hourly candles, weekends included, with baselines from --baseline-data."""
    later = hourly_candles(hours=900, seed=8)
    data = write_csv(tmp_path / "later.csv", [(ts + 2000 * 3_600_000, *rest) for ts, *rest in later])  # type: ignore[misc]
    earlier = write_csv(tmp_path / "earlier.csv", hourly_candles(hours=700, seed=9))
    reports = tmp_path / "hourly"
    invoke(
        "evaluate", "--model", "coin-1h/0.1.0", "--registry", str(registry.root), "--data", str(data),
        "--baseline-data", str(earlier), "--report-dir", str(reports), "--bootstrap", "30",
    )  # fmt: skip
    figures = _report(reports)
    (scored,) = figures["sets"].values()
    assert scored["windows"] == 900 - 32 + 1  # every hour, weekends included
    assert [d["file"] for d in figures["data"]] == ["later.csv", "earlier.csv"]
    assert figures["settings"]["periods_per_year"] == 365 * 24


def test_a_file_of_another_interval_is_refused_naming_the_models(registry: Registry, tmp_path: Path) -> None:
    """Daily candles handed to the hourly model are refused with the models that exist."""
    data = write_csv(tmp_path / "daily.csv", weekday_candles(("XXX",), days=200))
    with pytest.raises(
        ConfigError, match=r"are 1d, the model scores 1h candles \(coin-1h 0\.1\.0.*tiny/0\.1\.0 \(1d, weekdays\)"
    ):
        invoke("evaluate", "--model", "coin-1h/0.1.0", "--registry", str(registry.root), "--data", str(data))
    with pytest.raises(ConfigError, match="either --run"):
        invoke("evaluate", "--data", str(data))


def test_the_bundled_model_on_a_real_slice(tmp_path: Path) -> None:
    """The bundled current model, by name, on eight S&P 500 stocks of 2009-2010 (one with a 2:1 split)."""
    source = (REPO / "data" / "sp500_1d_2009.csv").read_text().splitlines()
    keep = {"AAPL", "DHR", "IBM", "KO", "MSFT", "PG", "XOM", "JPM"}
    lines = [source[0]] + [line for line in source[1:] if line.split(",")[1] in keep]
    data = tmp_path / "sp8.csv"
    data.write_text("\n".join(lines) + "\n")
    reports = tmp_path / "bundled"
    invoke("evaluate", "--model", "current", "--data", str(data), "--report-dir", str(reports), "--bootstrap", "30")
    figures = _report(reports)
    assert [(j["symbol"], j["looks_like"]) for j in figures["data"][0]["jumps"]] == [("DHR", "2:1")]
    (scored,) = figures["sets"].values()
    assert scored["symbols"] == 8
    assert "before all of the model's training windows" in scored["description"]
    loss = scored["models"][ENSEMBLE]["horizons"]["1"]["log_loss"]
    assert np.isfinite(loss)
