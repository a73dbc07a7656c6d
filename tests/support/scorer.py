"""A ``Scorer`` without torch, for control-flow tests of the pipeline: outputs are a pure function of
each window alone (as a real model's are), cheap enough to leave all the time to the plumbing."""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt

from models.artifact import (
    INPUT_FIELDS,
    Calibration,
    Golden,
    Histogram,
    Manifest,
    Member,
    ModelOutputs,
    Reference,
    TimeRange,
    Training,
)

FEATURES = ("log_return", "range")


def fake_manifest(
    *,
    window: int = 4,
    interval: str = "1h",
    horizons: tuple[int, ...] = (1,),
    version: str = "1.0.0",
    calendar: Literal["continuous", "weekdays"] = "continuous",
    gap_policy: Literal["reset", "tolerate", "forward_fill"] = "reset",
    max_missing: int = 0,
) -> Manifest:
    """A manifest with what the pipeline reads (window, interval, calendar, gaps, horizons) and a golden
    window of flat candles to warm up on; the rest is filler."""
    flat = Histogram(edges=[0.0], fractions=[0.5, 0.5])
    span = TimeRange(start="n/a", end="n/a", windows=0)
    return Manifest(
        name="fake",
        version=version,
        created_at="n/a",
        window=window,
        interval=interval,
        calendar=calendar,
        gap_policy=gap_policy,
        max_missing=max_missing,
        input_fields=list(INPUT_FIELDS),
        features=list(FEATURES),
        horizons=list(horizons),
        quantiles=[0.5],
        members=[Member(name="fake", kind="fake", parameters=0, weights=[1.0] * len(horizons))],
        calibration=Calibration(method="platt", scale=[1.0] * len(horizons), bias=[0.0] * len(horizons)),
        training=Training(
            data=[], symbols=[], train=span, validation=span, test=None, purge_candles=0, seed=0, config={}
        ),
        metrics={},
        reference=Reference(features=dict.fromkeys(FEATURES, flat), prediction=flat, hit_rate=0.5, brier=0.25, ece=0.0),
        framework={},
        weights_sha256="",
        golden=Golden(input=[[[1.0] * len(INPUT_FIELDS)] * window], probabilities=[], tolerance=0.0),
    )


class FakeScorer:
    """Probability of an up move = the logistic of the window's close-to-close log return, plus ``bias``."""

    def __init__(self, manifest: Manifest | None = None, *, bias: float = 0.0) -> None:
        self.manifest = manifest or fake_manifest()
        self.bias = bias
        self.batches: list[int] = []
        """Rows of each forward pass, in order."""

    @property
    def version(self) -> str:
        return self.manifest.version

    def score(self, windows: npt.NDArray[np.float32], origins: object = None) -> ModelOutputs:
        self.batches.append(len(windows))
        closes = windows[:, :, 3].astype(np.float64)
        drift = np.log(closes[:, -1] / closes[:, 0]) + self.bias
        horizons = len(self.manifest.horizons)
        p = np.repeat((1 / (1 + np.exp(-drift)))[:, None], horizons, axis=1).astype(np.float32)
        return ModelOutputs(
            probabilities=p,
            quantiles=np.zeros((len(windows), horizons, len(self.manifest.quantiles)), np.float32),
            disagreement=np.zeros((len(windows), horizons), np.float32),
            member_probabilities=p[:, None, :],
            last_features=np.zeros((len(windows), len(FEATURES)), np.float32),
        )
