"""`candlecast evaluate`'s figure files are checked before the evaluation starts."""

from __future__ import annotations

from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from candlecast.errors import ConfigError
from models.commands import evaluate
from models.training import RunInfo

app = typer.Typer()
app.command("evaluate")(evaluate)
app.command("unused")(lambda: None)


@pytest.mark.parametrize("option", ["--members-figures", "--streaming-figures"])
def test_an_unreadable_figures_file_stops_evaluate_before_any_candle_is_read(
    trained: tuple[Path, RunInfo], tmp_path: Path, option: str
) -> None:
    """A figures file that is missing or not JSON fails at once, naming its option, before the
    evaluation reads the run's candles (here a training file that is missing too)."""
    out, _ = trained
    broken = tmp_path / "figures.json"
    broken.write_text("{not json")
    for path in (broken, tmp_path / "missing.json"):
        args = ["evaluate", "--run", str(out), "--training-data", str(tmp_path / "no-candles.csv"), option, str(path)]
        result = CliRunner().invoke(app, args)
        assert isinstance(result.exception, ConfigError), result.exception
        assert str(result.exception).startswith(f"{option}: {path}")
