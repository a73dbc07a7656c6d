"""The bundled model: the registry's current version loads verified, is what was decided, and is
the model the model card describes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from daemon.serving import load_serving_model
from daemon.settings import ModelSettings, bundled_registry
from models.registry import Registry

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_bundled_model_is_verified_and_as_decided() -> None:
    """The daemon's default model is equities-1d 2.0.0: two streaming members whose pooled calibration keeps the
    base rate, the step path in its manifest."""
    registry = Registry(bundled_registry())
    entry = registry.current()
    assert entry is not None and entry.ref == "equities-1d/2.0.0"
    assert entry.artifact.stat().st_size < 1_000_000
    model = load_serving_model(ModelSettings(), torch.device("cpu"))
    manifest = model.manifest
    assert (manifest.name, manifest.version, manifest.interval, manifest.window) == ("equities-1d", "2.0.0", "1d", 64)
    assert (manifest.calendar, manifest.gap_policy, manifest.max_missing) == ("weekdays", "tolerate", 3)
    assert manifest.horizons == [1, 5, 20] and manifest.quantiles == [0.1, 0.5, 0.9]
    assert [(m.kind, m.streams) for m in manifest.members] == [("streaming-lstm", True), ("streaming-stacked", True)]
    assert manifest.streaming is not None
    assert (manifest.streaming.span, manifest.streaming.lookback, manifest.streaming.state_size) == (48, 16, 256)
    assert 20_000 <= sum(m.parameters for m in manifest.members) <= 300_000
    assert len(manifest.calibration.drift_coef) == 3 and "pooled out-of-fold" in manifest.calibration.fitted_on
    assert manifest.calibration.scale == [0.0] * 3 and manifest.calibration.drift_coef == [0.0] * 3
    assert "base rate alone" in manifest.members_note and "trailing" not in manifest.members_note
    assert manifest.training.data[0].name == "us_stocks_1d.csv"
    assert manifest.training.train.end < manifest.training.validation.start
    assert manifest.training.calibration is not None and manifest.training.test is not None
    assert manifest.training.calibration.end < manifest.training.test.start
    outputs = model.score(np.asarray(manifest.golden.input, dtype=np.float32))
    assert outputs.probabilities.shape == (len(manifest.golden.input), 3)


def test_the_windowed_version_it_replaced_stays_in_the_registry() -> None:
    """equities-1d 1.2.0 (three windowed members, the base rate) stays loadable beside 2.0.0 for a rollback."""
    manifest = Registry(bundled_registry()).entry("equities-1d/1.2.0").manifest()
    assert [m.kind for m in manifest.members] == ["lstm", "attention", "multiscale"]
    assert manifest.streaming is None and manifest.calibration.scale == [0.0] * 3


@pytest.mark.parametrize(("ref", "stem"), [("current", "model-card"), ("crypto-1h/1.0.0", "model-card-crypto-1h")])
def test_each_model_card_describes_its_bundled_model(ref: str, stem: str) -> None:
    """Each bundled model's card was written from the run its artifact was exported from."""
    registry = Registry(bundled_registry())
    entry = registry.current() if ref == "current" else registry.entry(ref)
    assert entry is not None
    manifest = entry.manifest()
    figures = json.loads((DOCS / f"{stem}.json").read_text())
    assert figures["model"]["weights_sha256"] == manifest.weights_sha256
    assert figures["sets"]["last-fold"]["weights_sha256"] == [manifest.weights_sha256]
    card = (DOCS / f"{stem}.md").read_text()
    assert manifest.weights_sha256 in card
    for key in figures["sets"]:
        for kind in ("calibration", "equity", "confusion", "confidence"):
            name = f"{stem}-{key}-{kind}.png"
            assert (DOCS / "img" / name).is_file() and f"img/{name}" in card


def test_the_hourly_bitcoin_model_is_bundled_beside_it() -> None:
    """crypto-1h 1.0.0 scores 24/7 hourly candles; it is in the registry, not the daemon's default."""
    manifest = Registry(bundled_registry()).entry("crypto-1h/1.0.0").manifest()
    assert (manifest.interval, manifest.calendar, manifest.window, manifest.horizons) == (
        "1h",
        "continuous",
        64,
        [1, 6, 24],
    )
    assert manifest.training.data[0].name == "btcusd_1h.csv" and manifest.training.symbols == ["BTCUSD"]
