"""Evaluating an exported artifact on any candle file, without the run that trained it.

The artifact's manifest says how windows are cut (length, interval, calendar, gap policy); the
file is read as the daemon would read it, and every row it would reject is counted by reason. The
windows' end times are split once: the baselines (and the Platt scaling of each member alone) are
fitted on the earlier part, or on another file, and never see a label of the scored part; every
model is then scored on exactly the same windows, with the figures of ``models.evaluation.assess``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt

from candlecast.candlefile import infer_interval, read_candles
from candlecast.errors import ConfigError, DataError
from models.artifact import Manifest
from models.baselines import (
    ConstantBaseline,
    LogisticBaseline,
    MomentumBaseline,
    QuantileBaseline,
    VolatilityQuantileBaseline,
)
from models.calibration import drift_offset, fit_logistic, logit, mean_log_loss, sigmoid
from models.contenders import BEST_MEMBER, CONSTANT, ENSEMBLE, LOGISTIC, MOMENTUM, REWEIGHTED, Json
from models.dataset import CandleAudit, WindowSet, WindowSpec, audited_windows, iso
from models.evaluation import EvaluationSettings, Scored, assess, goal_rows
from models.market_fit import misfit
from models.registry import Registry
from models.reweighting import ReweightingParams, reweighted_stream
from models.simulation import periods_per_year
from models.torchscript import LoadedModel

SCORE_BATCH = 4096
PROBABILITY_FLOOR = 1e-7


def model_spec(manifest: Manifest) -> WindowSpec:
    return WindowSpec.build(
        length=manifest.window,
        interval=manifest.interval,
        calendar=manifest.calendar,
        gap_policy=manifest.gap_policy,
        max_missing=manifest.max_missing,
        horizons=manifest.horizons,
    )


def check_fit(manifest: Manifest, interval: str, source: str, registry: Registry) -> None:
    """Refuse candles of another interval than the model's, naming the models that exist."""
    reason = misfit(manifest, interval, registry)
    if reason is not None:
        raise ConfigError(f"{source}: {reason}")


@dataclass(frozen=True)
class Prepared:
    """A candle file cut into the model's windows, with what was dropped on the way."""

    path: Path
    windows: WindowSet
    audit: CandleAudit

    def audit_figures(self) -> Json:
        return {
            "file": self.path.name,
            "rows": self.audit.rows,
            "rejected": dict(sorted(self.audit.rejected.items())),
            "rejected_total": sum(self.audit.rejected.values()),
            "jumps": [msgspec.to_builtins(j) | {"date": iso(j.ts)} for j in self.audit.jumps],
            "windows": len(self.windows),
        }


def prepare(path: Path, manifest: Manifest, registry: Registry) -> Prepared:
    table = read_candles(path)
    check_fit(manifest, infer_interval(table), str(path), registry)
    windows, audit = audited_windows(table, model_spec(manifest))
    return Prepared(path, windows, audit)


def split_by_time(data: WindowSet, fraction: float) -> tuple[WindowSet, WindowSet]:
    """The windows ending in the first ``fraction`` of the distinct end times, with every label
    realised at or after the first scored window's end dropped, and the rest (scored)."""
    if not 0 < fraction < 1:
        raise ConfigError(f"baseline fraction {fraction}: must be between 0 and 1")
    times = np.unique(data.end_ts)
    cut = int(len(times) * fraction)
    if cut < 1 or cut >= len(times):
        raise DataError(f"{len(times)} window-end times are too few to fit baselines on the first {fraction:.0%}")
    start = int(times[cut])
    earlier = data.select(np.flatnonzero(data.end_ts < start)).labels_before(start)
    return earlier, data.select(np.flatnonzero(data.end_ts >= start))


@dataclass(frozen=True)
class ArtifactScores:
    """The artifact's outputs on some windows: calibrated probabilities ``[N, H]``, quantiles
    ``[N, H, Q]``, member logits ``[N, M, H]`` (from the member probabilities)."""

    probabilities: npt.NDArray[np.float64]
    quantiles: npt.NDArray[np.float64]
    member_logits: npt.NDArray[np.float64]


def score_windows(model: LoadedModel, windows: npt.NDArray[np.float32]) -> ArtifactScores:
    parts = [model.score(windows[s : s + SCORE_BATCH]) for s in range(0, len(windows), SCORE_BATCH)]
    members = np.concatenate([p.member_probabilities for p in parts]).astype(np.float64)
    members = np.clip(members, PROBABILITY_FLOOR, 1 - PROBABILITY_FLOOR)
    return ArtifactScores(
        np.concatenate([p.probabilities for p in parts]).astype(np.float64),
        np.concatenate([p.quantiles for p in parts]).astype(np.float64),
        logit(members),
    )


@dataclass(frozen=True)
class MemberPlatt:
    """Each member's logit standardised on the baseline windows, with a Platt slope fitted there
    and the intercept at their up rate."""

    mean: npt.NDArray[np.float64]
    spread: npt.NDArray[np.float64]
    slope: npt.NDArray[np.float64]
    anchor: npt.NDArray[np.float64]
    log_loss: npt.NDArray[np.float64]
    """``[M, H]`` on the baseline windows."""

    @classmethod
    def fit(cls, logits: npt.NDArray[np.float64], data: WindowSet) -> MemberPlatt:
        count, horizons = logits.shape[1], logits.shape[2]
        mean, spread = np.zeros((count, horizons)), np.ones((count, horizons))
        slope, losses, anchor = np.zeros((count, horizons)), np.zeros((count, horizons)), np.zeros(horizons)
        for j in range(horizons):
            rows = data.valid[:, j]
            up = data.up[rows, j]
            anchor[j] = float(logit(np.array((up.sum() + 1.0) / (len(up) + 2.0))))
            for m in range(count):
                x = logits[rows, m, j]
                mean[m, j], spread[m, j] = x.mean(), x.std() + 1e-6
                standardised = ((x - mean[m, j]) / spread[m, j])[:, None]
                slope[m, j] = fit_logistic(standardised, up, offset=anchor[j], signed=1)[0]
                losses[m, j] = mean_log_loss(slope[m, j] * standardised[:, 0] + anchor[j], up)
        return cls(mean, spread, slope, anchor, losses)

    def probabilities(self, logits: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """``[N, M, H]``"""
        return sigmoid(self.slope * (logits - self.mean) / self.spread + self.anchor)


def score_artifact(
    model: LoadedModel, baseline: WindowSet, rows: WindowSet, params: ReweightingParams
) -> tuple[Scored, MemberPlatt]:
    """The artifact and the baselines fitted on ``baseline``, all on ``rows``."""
    manifest = model.manifest
    names = [m.name for m in manifest.members]
    scores = score_windows(model, rows.windows)
    platt = MemberPlatt.fit(score_windows(model, baseline.windows).member_logits, baseline)
    members = platt.probabilities(scores.member_logits)
    best = int(np.argmin(platt.log_loss[:, 0]))
    calibration = manifest.calibration
    weights = np.array([m.weights for m in manifest.members])
    offset = (
        drift_offset(rows.windows, rows.horizons, np.array(calibration.drift_coef), np.array(calibration.drift_centre))
        if calibration.drift_coef
        else None
    )
    # Centres of 0 and the bias as anchor: with the manifest's weights this is the artifact itself.
    reweighted, history = reweighted_stream(
        scores.member_logits,
        rows.up,
        rows.valid,
        rows.end_ts,
        rows.label_ts,
        prior=weights,
        scale=np.array(calibration.scale),
        centre=np.zeros_like(weights),
        anchor=np.array(calibration.bias),
        params=params,
        offset=offset,
    )
    probabilities = {
        ENSEMBLE: scores.probabilities,
        REWEIGHTED: reweighted,
        BEST_MEMBER: members[:, best],
        LOGISTIC: LogisticBaseline.fit(baseline).probabilities(rows),
        MOMENTUM: MomentumBaseline.fit(baseline).probabilities(rows),
        CONSTANT: ConstantBaseline.fit(baseline).probabilities(rows),
    }
    scored = Scored(
        rows,
        probabilities,
        members,
        names,
        [names[best]],
        history,
        [manifest.weights_sha256],
        scores.quantiles,
        QuantileBaseline.fit(baseline, manifest.quantiles).quantiles(rows),
        VolatilityQuantileBaseline.fit(baseline, manifest.quantiles).quantiles(rows),
        manifest.quantiles,
    )
    return scored, platt


def artifact_figures(model: LoadedModel) -> Json:
    """What the report says about an artifact: its manifest, less the golden windows."""
    m = model.manifest
    training = m.training
    return {
        "source": "artifact",
        "name": m.name,
        "version": m.version,
        "path": str(model.path),
        "file_sha256": model.file_sha256,
        "weights_sha256": m.weights_sha256,
        "window": m.window,
        "interval": m.interval,
        "calendar": m.calendar,
        "gap_policy": m.gap_policy,
        "max_missing": m.max_missing,
        "horizons": m.horizons,
        "quantiles": m.quantiles,
        "parameters": sum(member.parameters for member in m.members),
        "members": [msgspec.to_builtins(member) for member in m.members],
        "dropped_members": m.dropped_members,
        "members_note": m.members_note,
        "calibration": msgspec.to_builtins(m.calibration),
        "training": {
            "data": [msgspec.to_builtins(d) for d in training.data],
            "symbols": training.symbols,
            "train": msgspec.to_builtins(training.train),
            "validation": msgspec.to_builtins(training.validation),
            "calibration": msgspec.to_builtins(training.calibration),
            "test": msgspec.to_builtins(training.test),
        },
    }


def _overlap(manifest: Manifest, rows: WindowSet, path: Path, sha256: str) -> str:
    training = manifest.training
    start, end = iso(int(rows.end_ts.min())), iso(int(rows.end_ts.max()))
    trained_to = (training.calibration or training.validation).end
    same_file = any(d.sha256 == sha256 for d in training.data)
    shared = sorted({str(s) for s in rows.symbols} & set(training.symbols))
    if end < training.train.start:
        when = "before all of the model's training windows"
    elif start > trained_to:
        when = "after every window the model was trained, stopped or calibrated on"
    else:
        when = (
            f"OVERLAPPING the windows the model was trained, stopped or calibrated on ({training.train.start[:10]} "
            f".. {trained_to[:10]}), so this is not an out-of-sample test for those symbols"
        )
    file_text = "the model's own training file" if same_file else "a file the model was not trained on"
    symbols = f"shares the symbols {', '.join(shared)} with training" if shared else "shares no symbol with training"
    return f"`{path.name}` is {file_text}; its scored windows end {start[:10]} .. {end[:10]}: {when}. It {symbols}."


def evaluate_artifact(
    model: LoadedModel,
    data: Path,
    *,
    registry: Registry,
    settings: EvaluationSettings,
    params: ReweightingParams,
    baseline_data: Path | None = None,
    baseline_fraction: float = 0.3,
) -> Json:
    """Figures of an artifact on a candle file beside baselines fitted on an earlier part of it
    (``baseline_fraction`` of its window-end times) or on ``baseline_data``."""
    from models.dataset import table_digest

    manifest = model.manifest
    scored_file = prepare(data, manifest, registry)
    if baseline_data is None:
        baseline, rows = split_by_time(scored_file.windows, baseline_fraction)
        baseline_text = (
            f"the first {baseline_fraction:.0%} of the file's window-end times ({len(baseline):,} windows, "
            f"{iso(int(baseline.end_ts.min()))[:10]} .. {iso(int(baseline.end_ts.max()))[:10]}), their labels cut "
            "where the scored windows start"
        )
        audits = [scored_file.audit_figures()]
    else:
        baseline_file = prepare(baseline_data, manifest, registry)
        baseline, rows = baseline_file.windows, scored_file.windows
        baseline_text = f"`{baseline_data.name}` ({len(baseline):,} windows)"
        audits = [scored_file.audit_figures(), baseline_file.audit_figures()]
    if not baseline.valid.any(axis=0).all() or len(rows) == 0:
        raise DataError(f"{data}: no labelled windows to fit baselines on or to score")
    scored, _ = score_artifact(model, baseline, rows, params)
    periods = periods_per_year(manifest.interval, manifest.calendar)
    description = (
        f"The artifact {manifest.name} {manifest.version} on `{data.name}`. "
        + _overlap(manifest, rows, data, table_digest(data))
        + f" Baselines, and each member's Platt scaling, are fitted on {baseline_text}; every model is scored on "
        "the same windows."
    )
    key = f"file-{data.stem}"
    return {
        "title": f"{manifest.name} {manifest.version} on {data.name}",
        "model": artifact_figures(model),
        "settings": {
            **dataclasses.asdict(settings),
            "cost_bps": settings.cost_bps,
            "periods_per_year": periods,
            "reweighting": dataclasses.asdict(params),
            "baseline": {"data": baseline_data.name if baseline_data else None, "fraction": baseline_fraction},
        },
        "data": audits,
        "goals": {f"file {data.name}": goal_rows(scored)},
        "sets": {
            key: {
                "title": f"{data.name}: the artifact on candles it is handed",
                "short": f"file {data.name}",
                "description": description,
                "best_member_rule": "lowest log loss on the baseline windows",
                "member_calibration": "each Platt-calibrated on the baseline windows",
                **assess(scored, settings, periods),
            }
        },
    }
