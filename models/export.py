"""Export a trained ensemble to a verified TorchScript artifact with its manifest."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch

from candlecast.models.artifact import (
    INPUT_FIELDS,
    Calibration,
    Golden,
    Histogram,
    LoadedModel,
    Manifest,
    Member,
    Reference,
    Training,
    framework_versions,
    load_artifact,
    pad_rows,
    save_artifact,
    weights_digest,
)
from candlecast.models.features import FEATURE_NAMES
from candlecast.models.networks import Ensemble

GOLDEN_TOLERANCE = 1e-5


def reference_histogram(values: npt.ArrayLike, bins: int = 10) -> Histogram:
    """Decile-style histogram of reference values: inner edges at quantiles, shares per bin."""
    data = np.asarray(values, dtype=np.float64)
    data = data[np.isfinite(data)]
    if data.size == 0:
        raise ValueError("no finite reference values")
    edges = np.unique(np.quantile(data, np.linspace(0, 1, bins + 1)[1:-1]))
    counts = np.bincount(np.searchsorted(edges, data, side="right"), minlength=len(edges) + 1)
    return Histogram(edges=edges.tolist(), fractions=(counts / counts.sum()).tolist())


def reference_from(
    last_features: npt.NDArray[np.float32],
    probabilities: npt.NDArray[np.float64],
    *,
    hit_rate: float,
    brier: float,
    ece: float,
) -> Reference:
    """Reference distributions from validation outputs (standardised newest-candle features and
    primary-horizon probabilities)."""
    return Reference(
        features={name: reference_histogram(last_features[:, i]) for i, name in enumerate(FEATURE_NAMES)},
        prediction=reference_histogram(probabilities),
        hit_rate=hit_rate,
        brier=brier,
        ece=ece,
    )


def export_ensemble(
    ensemble: Ensemble,
    path: Path,
    *,
    name: str,
    version: str,
    window: int,
    interval: str,
    calendar: Literal["continuous", "weekdays"],
    gap_policy: Literal["reset", "tolerate", "forward_fill"],
    max_missing: int,
    horizons: Sequence[int],
    quantiles: Sequence[float],
    member_names: Sequence[str],
    member_kinds: Sequence[str],
    training: Training,
    metrics: dict[str, dict[str, float]],
    reference: Reference,
    golden_windows: npt.NDArray[np.float32],
) -> LoadedModel:
    """Script the ensemble, write the artifact, and load it back through the verifying loader."""
    ensemble = ensemble.eval()
    scripted = torch.jit.script(ensemble)
    with torch.inference_mode():
        golden_p = scripted(torch.from_numpy(pad_rows(golden_windows)))[0][: len(golden_windows)]
    weights = ensemble.weights.detach().cpu().numpy()
    members = [
        Member(
            name=member_name,
            kind=kind,
            parameters=sum(p.numel() for p in module.parameters()),
            weights=weights[i].tolist(),
        )
        for i, (member_name, kind, module) in enumerate(zip(member_names, member_kinds, ensemble.members, strict=True))
    ]
    manifest = Manifest(
        name=name,
        version=version,
        created_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        window=window,
        interval=interval,
        calendar=calendar,
        gap_policy=gap_policy,
        max_missing=max_missing,
        input_fields=list(INPUT_FIELDS),
        features=list(FEATURE_NAMES),
        horizons=list(horizons),
        quantiles=list(quantiles),
        members=members,
        calibration=Calibration(
            method="platt",
            scale=ensemble.calibration_scale.tolist(),
            bias=ensemble.calibration_bias.tolist(),
        ),
        training=training,
        metrics=metrics,
        reference=reference,
        framework=framework_versions(),
        weights_sha256=weights_digest(scripted),
        golden=Golden(
            input=golden_windows.astype(np.float64).tolist(),
            probabilities=golden_p.double().tolist(),
            tolerance=GOLDEN_TOLERANCE,
        ),
    )
    save_artifact(scripted, manifest, path)
    return load_artifact(path)
