"""The bundled model: the registry's current version loads verified, is what was decided, and is
the model the model card describes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from daemon.serving import load_serving_model
from daemon.settings import ModelSettings, bundled_registry
from models.networks import MEMBER_KINDS
from models.registry import Registry

DOCS = Path(__file__).resolve().parents[2] / "docs"


def test_the_bundled_model_is_verified_and_as_decided() -> None:
    registry = Registry(bundled_registry())
    entry = registry.current()
    assert entry is not None and entry.ref == "equities-1d/1.0.0"
    assert entry.artifact.stat().st_size < 5_000_000
    model = load_serving_model(ModelSettings(), torch.device("cpu"))
    manifest = model.manifest
    assert (manifest.name, manifest.version, manifest.interval, manifest.window) == ("equities-1d", "1.0.0", "1d", 64)
    assert (manifest.calendar, manifest.gap_policy, manifest.max_missing) == ("weekdays", "tolerate", 3)
    assert manifest.horizons == [1, 5, 20] and manifest.quantiles == [0.1, 0.5, 0.9]
    assert [m.kind for m in manifest.members] == list(MEMBER_KINDS)
    assert 100_000 <= sum(m.parameters for m in manifest.members) <= 300_000
    assert manifest.training.data[0].name == "us_stocks_1d.csv"
    assert manifest.training.train.end < manifest.training.validation.start
    assert manifest.training.calibration is not None and manifest.training.test is not None
    assert manifest.training.calibration.end < manifest.training.test.start
    outputs = model.score(np.asarray(manifest.golden.input, dtype=np.float32))
    assert outputs.probabilities.shape == (len(manifest.golden.input), 3)


def test_the_model_card_describes_the_bundled_model() -> None:
    entry = Registry(bundled_registry()).current()
    assert entry is not None
    manifest = entry.manifest()
    figures = json.loads((DOCS / "model-card.json").read_text())
    assert figures["model"]["weights_sha256"] == manifest.weights_sha256
    assert figures["sets"]["last-fold"]["weights_sha256"] == [manifest.weights_sha256]
    card = (DOCS / "model-card.md").read_text()
    assert manifest.weights_sha256 in card
    for image in (DOCS / "img").glob("model-card-*.png"):
        assert f"img/{image.name}" in card
