"""The champion/challenger gate, the champion a registry names, and the recent-candle helpers, without
training anything."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

from candlecast.candlefile import CandleTable, read_candles
from candlecast.errors import ConfigError, DataError
from models.decision import DECISION_FILE, Decision, Gap, ModelFigures, decide, encode
from models.recent_candles import before, holdout_start, merge, write_candles
from models.registry import Registry
from models.retrain import next_version
from models.retrain_command import parse_moment


@pytest.mark.parametrize(
    ("gap", "outcome", "words"),
    [
        (Gap(-0.004, -0.006, -0.002, 0.0), "promoted", "excludes zero"),
        (Gap(-0.004, -0.009, 0.001, 0.1), "refused", "does not exclude zero"),
        (Gap(-0.0005, -0.0008, -0.0002, 0.0), "refused", "not lower by the margin"),
        (Gap(0.003, 0.001, 0.005, 1.0), "refused", "higher by 0.00300"),
    ],
)
def test_the_gate_needs_the_margin_and_an_interval_below_zero(gap: Gap, outcome: str, words: str) -> None:
    """Promotion needs both a log-loss improvement of at least the margin and an interval wholly below zero."""
    decided, reason = decide(gap, margin=0.001, level=0.95)
    assert decided == outcome
    assert words in reason


def _version(root: Path, ref: str, outcome: str | None = None) -> None:
    directory = root / ref
    directory.mkdir(parents=True)
    (directory / "model.pt").write_bytes(b"not loaded here")
    if outcome is not None:
        figures = ModelFigures(ref, "", {})
        decision = Decision(
            outcome=outcome,  # type: ignore[arg-type]
            reason="",
            decided_at="",
            horizon=1,
            margin=0.001,
            level=0.95,
            champion=figures,
            challenger=figures,
            difference={},
            holdout={},
            training={},
            current_before=None,
            current_after=None,
            command="",
        )
        (directory / DECISION_FILE).write_bytes(encode(decision))


def test_the_champion_is_current_or_the_newest_version_no_retraining_refused(tmp_path: Path) -> None:
    """``current`` when it names the model; otherwise its newest version that was not refused."""
    for ref, outcome in (("a/1.0.0", None), ("a/1.0.1", "promoted"), ("a/1.0.2", "refused"), ("b/1.0.0", None)):
        _version(tmp_path, ref, outcome)
    registry = Registry(tmp_path)
    (tmp_path / "current").write_text("b/1.0.0\n")
    champion = registry.champion("a")
    assert champion is not None and champion.ref == "a/1.0.1"
    (tmp_path / "current").write_text("a/1.0.0\n")
    champion = registry.champion("a")
    assert champion is not None and champion.ref == "a/1.0.0"
    assert registry.champion("c") is None


def test_versions_count_up_past_those_taken() -> None:
    """The challenger's version raises the champion's last number past every version already there."""
    assert next_version("1.1.0", set()) == "1.1.1"
    assert next_version("1.1.0", {"1.1.1", "1.1.2"}) == "1.1.3"
    assert next_version("2024-06", set()) == "2024-06.1"


def test_merged_files_keep_the_first_candle_and_round_trip_through_csv(tmp_path: Path) -> None:
    """Overlapping files merge into one table (the first file's candle wins), written and read back exactly."""
    first = CandleTable(np.array(["X", "X"]), np.array([0, 3_600_000]), np.array([[1.0, 2, 0.5, 1.5, 10]] * 2))
    second = CandleTable(
        np.array(["X", "X", "Y"]),
        np.array([3_600_000, 7_200_000, 0]),
        np.array([[9.0, 9, 9, 9, 9], [1.1, 2.2, 0.3, 1.7, 0.1], [3.0, 3, 3, 3, 3]]),
    )
    merged = merge([first, second])
    assert merged.symbols.tolist() == ["X", "X", "X", "Y"]
    assert merged.ohlcv[1].tolist() == [1.0, 2, 0.5, 1.5, 10]
    back = read_candles(write_candles(merged, tmp_path / "merged.csv"))
    assert np.array_equal(back.ohlcv, merged.ohlcv) and np.array_equal(back.ts, merged.ts)
    cut = holdout_start(merged, 2)
    assert cut == 3_600_000
    assert before(merged, cut).ts.tolist() == [0, 0]
    with pytest.raises(DataError, match="too few"):
        holdout_start(merged, 3)


def test_since_and_until_take_iso_times_or_durations_before_until() -> None:
    """``--since 90d`` is 90 days before ``--until``; an ISO time without an offset is UTC; anything else is refused."""
    until = parse_moment("2026-12-01T00:00:00Z", "--until")
    assert until == datetime(2026, 12, 1, tzinfo=UTC)
    assert parse_moment("90d", "--since", anchor=until) == until - timedelta(days=90)
    assert parse_moment("36h", "--since", anchor=until) == until - timedelta(hours=36)
    assert parse_moment("2026-11-01T12:00", "--since", anchor=until) == datetime(2026, 11, 1, 12, tzinfo=UTC)
    with pytest.raises(ConfigError, match="--since: '90 days'"):
        parse_moment("90 days", "--since", anchor=until)
