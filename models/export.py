"""Export a trained ensemble to a verified TorchScript artifact with its manifest."""

from __future__ import annotations

import math
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
import torch

from models.artifact import (
    INPUT_FIELDS,
    Calibration,
    Golden,
    Histogram,
    Manifest,
    Member,
    Reference,
    Streaming,
    Training,
    pad_rows,
)
from models.features import FEATURE_NAMES
from models.networks import Ensemble
from models.streaming import StreamingEnsemble, StreamingLstmMember
from models.torchscript import LoadedModel, framework_versions, load_artifact, save_artifact, weights_digest

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
    dropped_members: Sequence[str] = (),
    fitted_on: str = "",
    members_note: str = "",
) -> LoadedModel:
    """Script the ensemble, write the artifact, and load it back through the verifying loader.

    The module is scripted, not frozen. Freezing helps small batches (bundled model, one CPU
    thread: 64 windows 43 -> 29 ms, 512 windows 309 -> 296 ms) but folds the weights into the graph
    as constants: the archive would no longer carry the state dict whose digest ``load_artifact``
    recomputes, and the fusions it enables would change kernels whose batch invariance the tests
    establish. A loader that wants the speed can freeze after verifying.
    """
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
            streams=isinstance(module, StreamingLstmMember),
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
            drift_coef=ensemble.drift_coef.tolist(),
            drift_centre=ensemble.drift_centre.tolist(),
            fitted_on=fitted_on,
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
        dropped_members=list(dropped_members),
        members_note=members_note,
        streaming=(
            Streaming(span=ensemble.span, lookback=ensemble.lookback, state_size=ensemble.state_size)
            if isinstance(ensemble, StreamingEnsemble)
            else None
        ),
    )
    save_artifact(scripted, manifest, path)
    return load_artifact(path)


GOLDEN_WINDOWS = 8


def without_idle_members(ensemble: Ensemble, names: Sequence[str]) -> tuple[list[str], list[str]]:
    """Remove, in place, the members whose weight is 0 at every horizon (they add exactly 0 to the
    logit and the quantiles); returns the kept and the dropped names. Where a horizon's scale is 0
    its weights are uniform (they then weigh the quantiles), so no member is idle there."""
    weights = ensemble.weights.detach()
    keep = [m for m in range(len(names)) if bool(torch.any(weights[m] > 0))]
    dropped = [names[m] for m in range(len(names)) if m not in keep]
    if dropped:
        ensemble.members = torch.nn.ModuleList([ensemble.members[m] for m in keep])
        ensemble.weights = weights[keep].clone()
        if isinstance(ensemble, StreamingEnsemble):
            ensemble.sizes = [ensemble.sizes[m] for m in keep]
            ensemble.state_size = sum(ensemble.sizes)
    return [names[m] for m in keep], dropped


def members_note(ensemble: Ensemble, horizons: Sequence[int]) -> str:
    """Why the members stay where some carry no weight in the probabilities: at a horizon with a
    calibration scale of 0 no member moves the probability, and their uniform weights there
    average the return quantiles. It names what does set the probability there: the base rate, and
    the trailing up-rate term only at the horizons where its coefficient is not 0."""
    scale = ensemble.calibration_scale.detach().tolist()
    drift = ensemble.drift_coef.detach().tolist()
    idle = [h for h, a in zip(horizons, scale, strict=True) if a == 0.0]
    if not idle:
        return ""
    trailing = [h for h, a, d in zip(horizons, scale, drift, strict=True) if a == 0.0 and d != 0.0]
    if not trailing:
        source = "the base rate alone sets it"
    elif trailing == idle:
        source = "the base rate and the trailing up-rate term set it"
    else:
        source = f"the base rate sets it, with the trailing up-rate term at horizons {trailing}"
    return (
        f"calibration scale 0 at horizons {idle}: no member moves the probability there ({source}); the members "
        "stay in the graph because their uniform weights at those horizons average the return quantiles"
    )


def flat_metrics(figures: dict[int, dict[str, float]]) -> dict[str, float]:
    """``{horizon: {metric: value}}`` as ``{"metric_hH": value}`` (the manifest's flat form)."""
    return {
        f"{metric}_h{h}": value
        for h, values in figures.items()
        for metric, value in values.items()
        if math.isfinite(value)  # JSON has no NaN (an AUC is undefined when one class is missing)
    }


def export_run(
    run_dir: Path, path: Path, *, data: Path | None = None, version: str | None = None
) -> tuple[LoadedModel, Ensemble]:
    """Export the last fold's ensemble of a training run as a verified artifact at ``path``.

    The manifest gets the fold's ranges, the calibration-slice reference distributions, and the
    ensemble's metrics (and the constant-probability baseline's) on the calibration slice and on
    the test block, which no part of training saw.
    """
    from candlecast.errors import DataError
    from models.baselines import ConstantBaseline
    from models.dataset import CALENDARS, GAP_POLICIES, walk_forward
    from models.metrics import classification
    from models.training import load_fold, predict, read_run, run_data

    run = read_run(run_dir)
    index = len(run.folds) - 1
    info = run.folds[index]
    ensemble = load_fold(run_dir, run, index)
    _, windows = run_data(run, data)
    fold = walk_forward(windows, run.split_sizes())[index]
    if list(fold.cutoffs) != info.cutoffs:
        raise DataError(f"{run_dir}: the data's walk-forward splits differ from the run's")
    train, calibration, test = (fold.part(windows, split) for split in ("train", "calibration", "test"))
    constant = ConstantBaseline.fit(train)
    metrics: dict[str, dict[str, float]] = {}
    outputs = {}
    for split, part in (("calibration", calibration), ("test", test)):
        outputs[split] = predicted = predict(ensemble, part.windows)
        for name, p in (("", predicted.probabilities), ("_constant", constant.probabilities(part))):
            per_horizon = {
                h: classification(p[part.valid[:, j], j], part.up[part.valid[:, j], j])
                for j, h in enumerate(part.horizons)
            }
            metrics[split + name] = flat_metrics(per_horizon)
    reference_figures = metrics["calibration"]
    primary = run.horizons[0]
    reference = reference_from(
        outputs["calibration"].last_features,
        outputs["calibration"].probabilities[:, 0],
        hit_rate=reference_figures[f"accuracy_h{primary}"],
        brier=reference_figures[f"brier_h{primary}"],
        ece=reference_figures[f"ece_h{primary}"],
    )
    golden_rows = np.linspace(0, len(test) - 1, GOLDEN_WINDOWS).round().astype(np.int64)
    kept, dropped = without_idle_members(ensemble, run.members)
    labels = info.calibration_labels
    pooled = len(run.folds)
    fitted_on = (
        f"pooled out-of-fold predictions: the calibration slice and the {pooled - 1} earlier folds' test blocks "
        f"({', '.join(map(str, labels))} labels per horizon)"
        if labels
        else "the calibration slice"
    )
    training = Training(
        data=[run.data],
        symbols=run.symbols,
        train=info.train,
        validation=info.validation,
        test=info.test,
        purge_candles=run.sizes["purge"],
        seed=int(str(run.config["seed"])),
        config={**run.config, "sizes": run.sizes, "fold": index, "train_seconds": run.seconds},
        calibration=info.calibration,
    )
    model = export_ensemble(
        ensemble,
        path,
        name=run.name,
        version=version or run.version,
        window=run.window,
        interval=run.interval,
        calendar=CALENDARS[run.calendar],
        gap_policy=GAP_POLICIES[run.gap_policy],
        max_missing=run.max_missing,
        horizons=run.horizons,
        quantiles=run.quantiles,
        member_names=kept,
        member_kinds=kept,
        training=training,
        metrics=metrics,
        reference=reference,
        golden_windows=test.windows[golden_rows],
        dropped_members=dropped,
        fitted_on=fitted_on,
        members_note=members_note(ensemble, run.horizons),
    )
    return model, ensemble
