"""Member cost and contribution: measured from a run, turned into the ensemble's choice and the card's section."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import numpy as np

from models.contribution import chosen_members, contributions, member_costs
from models.dataset import SplitSizes
from models.report import render_streaming
from models.streaming import STREAMING_KINDS
from models.training import TrainConfig, train_run
from tests.models.conftest import tiny_spec
from tests.support.model import synthetic_windows

STREAMING = list(STREAMING_KINDS)


def subset(members: list[str], low: float, weights: list[list[float]] | None = None) -> dict[str, Any]:
    return {
        "members": members,
        "log_loss": [0.69, 0.69],
        "change": [{"estimate": low + 0.001, "low": low, "high": low + 0.002}] * 2,
        "weights": weights or [[0.5, 0.5]] * len(members),
        "scale": [0.0, 0.0],
    }


def test_streaming_members_alone_are_chosen_when_leaving_the_windowed_out_loses_nothing_measurable() -> None:
    """The streaming members alone are chosen when their change's interval reaches 0; else all members stay."""
    whole = subset(["lstm", "streaming-lstm"], 0.0)
    cheap = subset(["streaming-lstm"], -0.001)
    assert chosen_members([whole, subset(["streaming-lstm"], -0.001), cheap], STREAMING) == ["streaming-lstm"]
    worse = subset(["streaming-lstm"], 0.0005)
    assert chosen_members([whole, worse], STREAMING) == ["lstm", "streaming-lstm"]


def test_members_with_no_weight_at_any_horizon_are_left_out_of_the_choice() -> None:
    """A member of the chosen set whose weight is 0 at every horizon is not chosen."""
    whole = subset(["lstm", "attention"], 0.0, weights=[[1.0, 0.6], [0.0, 0.0]])
    assert chosen_members([whole], STREAMING) == ["lstm"]


def test_every_kind_has_a_windowed_cost_and_the_streaming_ones_a_step_cost() -> None:
    """Costs come for every kind asked; only streaming kinds have a step cost and a state."""
    windows = synthetic_windows(16, 64, seed=2)
    costs = {c.kind: c for c in member_costs(windows, ["lstm", "streaming-stacked"], rounds=1, repeats=1)}
    assert costs["lstm"].window_ms > 0 and costs["lstm"].step_ms is None and costs["lstm"].state_floats == 0
    stacked = costs["streaming-stacked"]
    assert stacked.step_ms is not None and stacked.step_ms > 0
    assert stacked.state_floats == 2 * (2 * 2 * 32)


def test_contributions_refit_the_combination_without_each_member(candles_csv: Path, tmp_path: Path) -> None:
    """The whole ensemble, each member left out, and the streaming and windowed members alone (each set
    once) get a walk-forward log loss, the whole ensemble's change being 0."""
    out = tmp_path / "run"
    config = TrainConfig(
        members=("lstm", "multiscale", "streaming-lstm"),
        epochs=1,
        patience=1,
        batch_size=64,
        seed=3,
        threads=1,
        hidden=8,
    )
    sizes = SplitSizes(folds=2, test=40, validation=30, calibration=30, purge=5)
    train_run(candles_csv, out, spec=tiny_spec(), sizes=sizes, config=config, name="tiny", version="0.4.0")
    figures = contributions(out, samples=50, block=5, seed=0)
    members = [f.members for f in figures]
    assert members == [
        ["lstm", "multiscale", "streaming-lstm"],
        ["multiscale", "streaming-lstm"],
        ["lstm", "streaming-lstm"],
        ["lstm", "multiscale"],
        ["streaming-lstm"],
    ]
    assert all(c["estimate"] == 0.0 for c in figures[0].change)
    assert all(np.isfinite(f.log_loss).all() and len(f.weights) == len(f.members) for f in figures)


def test_the_card_renders_the_streaming_section_from_the_figures() -> None:
    """The streaming section's tables carry the member-figures' numbers, the earlier version's beside this one."""
    horizons = [1, 5]
    goals = {
        "fold 0 test block": {
            str(h): {"labels": 100, "log_loss": 0.6901, "log_loss_constant": 0.6902, "met": True} for h in horizons
        }
    }
    members = {
        "run": {"members": ["lstm", "streaming-lstm"]},
        "train_config": {"epochs": 3, "patience": 2, "seed": 7},
        "sizes": {"folds": 1},
        "costs": [
            {"kind": "lstm", "parameters": 10, "window_ms": 40.0, "step_ms": None, "state_floats": 0},
            {"kind": "streaming-lstm", "parameters": 12, "window_ms": 30.0, "step_ms": 1.5, "state_floats": 256},
        ],
        "subsets": [subset(["lstm", "streaming-lstm"], 0.0), subset(["streaming-lstm"], -0.0012)],
        "service": {"service": [[0.6911, 0.6912]], "longest": [[0.6901, 0.6901]], "labels": [[100, 100]]},
        "beside": {
            "model": "equities-1d/1.2.0",
            "folds": {"fold 0 test block": {"1": {"log_loss": 0.6931}, "5": {"log_loss": 0.6932}}},
            "pinball": {"1": 0.00603, "5": 0.01299},
        },
        "chosen": ["streaming-lstm"],
        "batch": 512,
        "options": {"rounds": 7, "repeats": 3, "bootstrap": 1000, "block": 20},
        "streaming_kinds": STREAMING,
    }
    figures = {
        "title": "t",
        "model": {
            "name": "m",
            "version": "2.0.0",
            "horizons": horizons,
            "quantiles": [0.1, 0.5, 0.9],
            "members": [{"kind": "streaming-lstm"}],
        },
        "goals": goals,
        "sets": {
            "walk-forward": {
                "quantiles": {
                    str(h): {"ensemble": {"pinball": 0.00599 * h}, "volatility": {"pinball": 0.00586 * h}}
                    for h in horizons
                }
            }
        },
        "streaming": {"streaming_kinds": STREAMING, "members": members, "comparison": None},
    }
    section = render_streaming(msgspec.json.decode(msgspec.json.encode(figures)))
    assert section.startswith("## Streaming scoring")
    assert "Every member of m 2.0.0 streams" in section
    assert "| fold 0 | 1 | 100 | 0.6901 | 0.6911 | 0.6931 | 0.6902 |" in section
    assert "| streaming-lstm | yes | 12 | 30.0 | 1.5 | 1,024 B |" in section
    assert "(-0.0002 [-0.0012, +0.0008])" in section
    assert "it chooses: streaming-lstm." in section
    assert "| 1 | 0.00599 | 0.00603 | 0.00586 |" in section
