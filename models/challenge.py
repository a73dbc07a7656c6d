"""Champion and challenger scored on the same held-out windows with the evaluation code of
``candlecast evaluate --model`` (``models.artifact_evaluation.score_artifact`` and
``models.evaluation.assess``), and the paired bootstrap interval of their difference in log loss.

The held-out windows are those ending at or after a cut the challenger's training candles stop
before; both models score exactly the same rows, and the bootstrap resamples the same days for
both, so the interval of the difference is paired. The constant probability (and each member's
Platt scaling inside ``score_artifact``) is fitted on the windows just before the cut, their
labels cut there.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from candlecast.errors import DataError
from models.artifact_evaluation import score_artifact
from models.bootstrap import Bootstrap, difference
from models.contenders import CONSTANT, ENSEMBLE
from models.dataset import WindowSet, iso
from models.decision import Gap, ModelFigures
from models.evaluation import EvaluationSettings, assess
from models.metrics import FloatArray, log_losses
from models.reweighting import ReweightingParams
from models.simulation import periods_per_year
from models.torchscript import LoadedModel

FIGURES = ("count", "log_loss", "log_loss_ci", "brier", "accuracy", "ece", "auc")


@dataclass(frozen=True)
class HeldOut:
    """The windows both models are judged on (``rows``) and those just before them (``baseline``)."""

    baseline: WindowSet
    rows: WindowSet
    cut_ts: int

    @classmethod
    def at(cls, data: WindowSet, cut_ts: int, baseline_candles: int) -> HeldOut:
        """Rows ending at or after ``cut_ts``; the baseline is the ``baseline_candles`` window-end
        times before it, its labels cut at ``cut_ts``."""
        times = np.unique(data.end_ts)
        earlier = times[times < cut_ts]
        if len(earlier) == 0:
            raise DataError(f"no windows end before the held-out period starting {iso(cut_ts)}")
        start = int(earlier[max(0, len(earlier) - baseline_candles)])
        baseline = data.select(np.flatnonzero((data.end_ts >= start) & (data.end_ts < cut_ts))).labels_before(cut_ts)
        rows = data.select(np.flatnonzero(data.end_ts >= cut_ts))
        if not rows.valid.any(axis=0).all():
            raise DataError(f"the held-out windows from {iso(cut_ts)} have no label at some horizon: hold out more")
        if not baseline.valid.any(axis=0).all():
            raise DataError(f"the baseline windows before {iso(cut_ts)} have no label at some horizon")
        return cls(baseline, rows, cut_ts)

    def describe(self) -> dict[str, Any]:
        rows, baseline = self.rows, self.baseline
        return {
            "start": iso(int(rows.end_ts.min())),
            "end": iso(int(rows.end_ts.max())),
            "windows": len(rows),
            "symbols": len(np.unique(rows.symbols)),
            "days": len(np.unique(rows.end_ts)),
            "labels": {str(h): int(rows.valid[:, j].sum()) for j, h in enumerate(rows.horizons)},
            "baseline": {
                "start": iso(int(baseline.end_ts.min())),
                "end": iso(int(baseline.end_ts.max())),
                "windows": len(baseline),
            },
        }


@dataclass(frozen=True)
class Comparison:
    champion: ModelFigures
    challenger: ModelFigures
    difference: dict[str, Gap]
    """Per horizon, challenger minus champion mean log loss."""
    holdout: dict[str, Any]


def _figures(
    ref: str, model: LoadedModel, held: HeldOut, settings: EvaluationSettings
) -> tuple[ModelFigures, FloatArray]:
    """Assess one model on the held-out rows; returns its figures and its probabilities ``[N, H]``."""
    scored, _ = score_artifact(model, held.baseline, held.rows, ReweightingParams())
    manifest = model.manifest
    assessed = assess(scored, settings, periods_per_year(manifest.interval, manifest.calendar))
    horizons: dict[str, dict[str, Any]] = {}
    for h in held.rows.horizons:
        own = assessed["models"][ENSEMBLE]["horizons"][str(h)]
        horizons[str(h)] = {name: own[name] for name in FIGURES if name in own}
        horizons[str(h)]["constant_log_loss"] = assessed["models"][CONSTANT]["horizons"][str(h)]["log_loss"]
    return ModelFigures(ref, manifest.weights_sha256, horizons), scored.probabilities[ENSEMBLE]


def compare(
    champion: tuple[str, LoadedModel],
    challenger: tuple[str, LoadedModel],
    held: HeldOut,
    settings: EvaluationSettings,
) -> Comparison:
    """Both models on the same rows, and the paired interval of the difference of their log loss."""
    champion_figures, p_champion = _figures(*champion, held, settings)
    challenger_figures, p_challenger = _figures(*challenger, held, settings)
    rows = held.rows
    drawn = Bootstrap.over(rows.end_ts, block=settings.block, samples=settings.samples, seed=settings.seed)
    boot = Bootstrap(drawn.dates, drawn.indices, settings.level)
    gaps: dict[str, Gap] = {}
    for j, h in enumerate(rows.horizons):
        v = rows.valid[:, j]
        up, dates = rows.up[v, j], rows.end_ts[v]
        losses_champion, losses_challenger = log_losses(p_champion[v, j], up), log_losses(p_challenger[v, j], up)
        estimate = float(losses_challenger.mean() - losses_champion.mean())
        gap = difference(boot, estimate, boot.mean(losses_challenger, dates), boot.mean(losses_champion, dates))
        gaps[str(h)] = Gap(
            estimate=float(gap["estimate"]),
            low=float(gap["low"]),
            high=float(gap["high"]),
            share_positive=float(gap["share_positive"]),
        )
    return Comparison(champion_figures, challenger_figures, gaps, held.describe())
