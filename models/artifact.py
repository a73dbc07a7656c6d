"""Model artifacts without torch: the manifest, the model's outputs, and the batch padding rule.

An artifact is a TorchScript ensemble with its manifest (plain JSON) in the archive's extra files;
``models.torchscript`` loads, verifies and saves it. Everything here is pure data and numpy, so the
daemon's core, its monitors and its schemas read manifests and outputs without importing torch.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import msgspec
import numpy as np
import numpy.typing as npt

from candlecast.errors import ArtifactError

ARTIFACT_FORMAT = "candlecast.artifact/1"
MANIFEST_FILE = "manifest.json"
INPUT_FIELDS = ("open", "high", "low", "close", "volume")
BATCH_MULTIPLE = 8
"""Every forward pass runs on a multiple of this many rows: GEMM and elementwise kernels then take
the same path whatever the batch, so a window's score never depends on its neighbours."""


class Histogram(msgspec.Struct, frozen=True):
    """A reference distribution: bin edges (ascending, open-ended at both ends) and the share of
    reference values in each of the ``len(edges) + 1`` bins."""

    edges: list[float]
    fractions: list[float]


class Member(msgspec.Struct, frozen=True):
    name: str
    kind: str
    parameters: int
    weights: list[float]
    """Ensemble weight of this member, per horizon."""
    streams: bool = False
    """The member scores a candle with one step from per-symbol state (``Manifest.streaming``)."""


class Streaming(msgspec.Struct, frozen=True):
    """How the artifact scores a candle from per-symbol state (``models.streaming``): TorchScript
    methods ``advance(state [B, state_size], lookback [B, lookback + 1, 5]) -> state`` and
    ``emit(state, window [B, window, 5])`` (``forward``'s five outputs), beside the windowed
    ``forward``. Two copies of the state per symbol restart every ``span`` candle slots, staggered by
    half (``daemon.recurrent_state``)."""

    span: int
    lookback: int
    state_size: int


class Calibration(msgspec.Struct, frozen=True):
    """Platt scaling of the weighted member logit ``z`` per horizon, with an intercept that follows
    the window's own trailing up rate ``r`` (``models.calibration``):
    ``p = sigmoid(scale * z + bias + drift_coef * (r - drift_centre))``. Empty drift lists (older
    artifacts): no trailing term."""

    method: Literal["platt"]
    scale: list[float]
    bias: list[float]
    drift_coef: list[float] = []
    drift_centre: list[float] = []
    fitted_on: str = ""
    """What the weights and the calibration were fitted on."""


class DataFile(msgspec.Struct, frozen=True):
    name: str
    sha256: str
    rows: int


class TimeRange(msgspec.Struct, frozen=True):
    """Candle open times of the window ends in a split (ISO-8601 UTC) and how many windows."""

    start: str
    end: str
    windows: int


class Training(msgspec.Struct, frozen=True):
    data: list[DataFile]
    symbols: list[str]
    train: TimeRange
    validation: TimeRange
    test: TimeRange | None
    purge_candles: int
    seed: int
    config: dict[str, object]
    calibration: TimeRange | None = None
    """Windows the ensemble weights and the calibration were fitted on (after ``validation``)."""


class Reference(msgspec.Struct, frozen=True):
    """Validation-time distributions and quality, for drift and live-quality metrics."""

    features: dict[str, Histogram]
    """Standardised newest-candle features, by feature name."""
    prediction: Histogram
    """Calibrated probability at the primary horizon."""
    hit_rate: float
    brier: float
    ece: float


class Golden(msgspec.Struct, frozen=True):
    """A few real windows and the probabilities the exported model gave for them."""

    input: list[list[list[float]]]
    probabilities: list[list[float]]
    tolerance: float


class Manifest(msgspec.Struct, frozen=True):
    """Everything a user or the daemon needs to know about an artifact."""

    name: str
    version: str
    created_at: str
    window: int
    interval: str
    calendar: Literal["continuous", "weekdays"]
    gap_policy: Literal["reset", "tolerate", "forward_fill"]
    """How training windows treated missing candles; the daemon's default for this interval."""
    max_missing: int
    input_fields: list[str]
    features: list[str]
    horizons: list[int]
    quantiles: list[float]
    members: list[Member]
    calibration: Calibration
    training: Training
    metrics: dict[str, dict[str, float]]
    reference: Reference
    framework: dict[str, str]
    weights_sha256: str
    golden: Golden
    format: str = ARTIFACT_FORMAT
    dropped_members: list[str] = []
    """Members trained but left out of the graph because their weight was 0 at every horizon."""
    members_note: str = ""
    """Why members without weight in the probabilities at some horizon stay in the graph."""
    streaming: Streaming | None = None
    """Set when every member streams: the artifact can score a candle from per-symbol state."""


@dataclass(frozen=True, slots=True)
class ModelOutputs:
    """The ensemble's outputs for a batch of windows, as numpy arrays."""

    probabilities: npt.NDArray[np.float32]
    """``[B, H]`` calibrated probability of an up move per horizon."""
    quantiles: npt.NDArray[np.float32]
    """``[B, H, Q]`` log-return quantiles."""
    disagreement: npt.NDArray[np.float32]
    """``[B, H]`` standard deviation of member probabilities."""
    member_probabilities: npt.NDArray[np.float32]
    """``[B, M, H]``"""
    last_features: npt.NDArray[np.float32]
    """``[B, F]`` standardised features of each window's newest candle."""


def pad_rows(windows: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """Pad a batch to a multiple of ``BATCH_MULTIPLE`` rows with copies of its first row."""
    missing = -len(windows) % BATCH_MULTIPLE
    if missing == 0:
        return np.ascontiguousarray(windows, dtype=np.float32)
    filler = np.broadcast_to(windows[:1], (missing, *windows.shape[1:]))
    return np.ascontiguousarray(np.concatenate([windows, filler]), dtype=np.float32)


def file_digest(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def decode_manifest(path: Path, text: str | bytes) -> Manifest:
    """The manifest in an archive's extra file; raises ``ArtifactError`` naming what is wrong."""
    if not text:
        raise ArtifactError(f"{path}: the archive has no {MANIFEST_FILE}")
    try:
        manifest = msgspec.json.decode(text, type=Manifest)
    except msgspec.DecodeError as exc:
        raise ArtifactError(f"{path}: invalid manifest: {exc}") from exc
    if manifest.format != ARTIFACT_FORMAT:
        raise ArtifactError(f"{path}: manifest format {manifest.format!r}, expected {ARTIFACT_FORMAT!r}")
    return manifest


def manifest_json_schema() -> dict[str, object]:
    schema: dict[str, object] = msgspec.json.schema(Manifest)
    return schema
