"""A training run of streaming members exports a streaming artifact; the members note says only what is true."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.dataset import SplitSizes
from models.export import export_run, members_note
from models.networks import Ensemble, build_member
from models.streaming import StreamingEnsemble
from models.torchscript import load_artifact
from models.training import RunInfo, TrainConfig, load_fold, train_run
from tests.models.conftest import WINDOW, tiny_spec

SIZES = SplitSizes(folds=2, test=40, validation=30, calibration=30, purge=5)


def train_tiny(candles_csv: Path, out: Path, members: tuple[str, ...], name: str, version: str) -> RunInfo:
    """A one-epoch run of ``members`` on the tiny spec; its run record."""
    config = TrainConfig(members=members, epochs=1, patience=1, batch_size=64, seed=3, threads=1, hidden=8)
    return train_run(candles_csv, out, spec=tiny_spec(), sizes=SIZES, config=config, name=name, version=version)


def test_a_run_of_streaming_members_exports_the_step_path(candles_csv: Path, tmp_path: Path) -> None:
    """Streaming kinds alone train a streaming ensemble whose artifact streams, every member marked so."""
    out = tmp_path / "run"
    run = train_tiny(candles_csv, out, ("streaming-lstm", "streaming-stacked"), "tiny-stream", "0.2.0")
    ensemble = load_fold(out, run, 1)
    assert isinstance(ensemble, StreamingEnsemble)
    assert (ensemble.span, ensemble.lookback) == (WINDOW - 16, 16)
    model, _ = export_run(out, tmp_path / "model.pt")
    manifest = load_artifact(tmp_path / "model.pt").manifest
    assert manifest.streaming is not None
    state = {"streaming-lstm": 2 * 1 * 8, "streaming-stacked": 2 * 2 * 8}
    assert manifest.streaming.state_size == sum(state[m.kind] for m in manifest.members)
    assert manifest.members and all(m.streams for m in manifest.members)
    assert model.manifest.streaming == manifest.streaming


def test_streaming_beside_windowed_members_scores_whole_windows(candles_csv: Path, tmp_path: Path) -> None:
    """A streaming kind beside a windowed one trains a windowed ensemble: the artifact has no step path."""
    out = tmp_path / "run"
    run = train_tiny(candles_csv, out, ("lstm", "streaming-lstm"), "tiny-mixed", "0.3.0")
    ensemble = load_fold(out, run, 1)
    assert type(ensemble) is Ensemble
    export_run(out, tmp_path / "model.pt")
    manifest = load_artifact(tmp_path / "model.pt").manifest
    assert manifest.streaming is None
    streams = {m.kind: m.streams for m in manifest.members}
    assert streams.get("lstm", False) is False
    assert streams.get("streaming-lstm", True) is True


def idle_ensemble(drift_coef: list[float]) -> Ensemble:
    ensemble = Ensemble([build_member("lstm", 3, 3, 8)], 3, [1, 5, 20])
    with torch.no_grad():
        ensemble.calibration_scale.copy_(torch.tensor([0.0, 0.0, 0.7]))
        ensemble.drift_coef.copy_(torch.tensor(drift_coef))
    return ensemble


@pytest.mark.parametrize(
    ("drift_coef", "says", "never"),
    [
        ([0.0, 0.0, 0.0], "the base rate alone sets it", "trailing"),
        ([1.5, 2.0, 0.0], "the base rate and the trailing up-rate term set it", "alone"),
        ([0.0, 2.0, 0.0], "the trailing up-rate term at horizons [5]", "alone"),
    ],
)
def test_the_members_note_names_the_trailing_term_only_where_it_is_not_zero(
    drift_coef: list[float], says: str, never: str
) -> None:
    """At horizons where no member moves the probability, the note names the trailing up-rate term only
    if its coefficient there is not 0 (equities-1d 1.2.0's note named it with every coefficient 0)."""
    note = members_note(idle_ensemble(drift_coef), [1, 5, 20])
    assert note.startswith("calibration scale 0 at horizons [1, 5]")
    assert says in note
    assert never not in note
