"""Evaluating a trained run: each fold's ensemble and the baselines fitted on its training windows
score held-out windows (the last fold's test block, every fold's test block joined, external
candle files), and every set is assessed with the same figures (``models.metrics``,
``models.simulation``, ``models.bootstrap``) into the JSON the report and model card are written from.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec
import numpy as np

from candlecast.errors import DataError
from models.baselines import (
    ConstantBaseline,
    LogisticBaseline,
    MomentumBaseline,
    QuantileBaseline,
    VolatilityQuantileBaseline,
)
from models.bootstrap import Bootstrap, difference
from models.calibration import drift_offset, logit, sigmoid
from models.contenders import (
    BEST_MEMBER,
    BUY_AND_HOLD,
    CONSTANT,
    ENSEMBLE,
    LOGISTIC,
    MOMENTUM,
    REFERENCE_STRATEGY,
    REWEIGHTED,
    Json,
)
from models.dataset import WindowSet, concat_windows, iso, load_audited_windows, walk_forward
from models.metrics import (
    BUY,
    SELL,
    FloatArray,
    IntArray,
    action_figures,
    classification,
    confidence_reliability,
    confusion,
    direction_accuracy,
    log_losses,
    pinball,
    reliability,
    threshold_actions,
)
from models.reweighting import ReweightingParams, reweighted_stream
from models.simulation import periods_per_year, simulate, trading_figures
from models.training import FoldInfo, RunInfo, load_fold, predict, read_run, run_data


@dataclass(frozen=True)
class EvaluationSettings:
    """What an evaluation measures with: strategy thresholds, costs and the bootstrap."""

    buy_above: float = 0.6
    sell_below: float = 0.4
    fee_bps: float = 2.0
    slippage_bps: float = 3.0
    samples: int = 2000
    block: int = 20
    seed: int = 0
    level: float = 0.95

    @property
    def cost_bps(self) -> float:
        """Charged per unit of position changed (a long-to-short flip pays it twice)."""
        return self.fee_bps + self.slippage_bps


@dataclass(frozen=True)
class Scored:
    """Held-out windows with every model's probabilities ``[N, H]`` (one fold, or folds joined)."""

    data: WindowSet
    probabilities: dict[str, FloatArray]
    member_probabilities: FloatArray
    """``[N, M, H]`` each member, Platt-calibrated on its fold's calibration slice."""
    member_names: list[str]
    best_members: list[str]
    """The member chosen as the best-single-member baseline, per fold."""
    reweighting: FloatArray
    """``[D, M, H]`` the online weights on each distinct candle."""
    weights_sha256: list[str]
    quantiles: FloatArray
    """``[N, H, Q]`` the ensemble's log-return quantiles."""
    baseline_quantiles: FloatArray
    """``[N, H, Q]`` the training returns' unconditional quantiles."""
    volatility_quantiles: FloatArray
    """``[N, H, Q]`` EWMA volatility times the training returns' standardised quantiles."""
    levels: list[float]


def score_fold(
    run_dir: Path, run: RunInfo, fold: int, *, train: WindowSet, rows: WindowSet, params: ReweightingParams
) -> Scored:
    """A fold's ensemble and the baselines fitted on its training windows, on ``rows``."""
    info = run.folds[fold]
    ensemble = load_fold(run_dir, run, fold)
    predicted = predict(ensemble, rows.windows)
    platt = np.asarray(info.member_platt)
    members = sigmoid(platt[None, :, :, 0] * predicted.member_logits + platt[None, :, :, 1])
    best = int(np.argmin(np.asarray(info.member_log_loss)[:, 0]))
    reweighted, history = reweighted_stream(
        predicted.member_logits,
        rows.up,
        rows.valid,
        rows.end_ts,
        rows.label_ts,
        prior=np.asarray(info.ensemble_weights),
        scale=np.asarray(info.calibration_scale),
        centre=np.asarray(info.member_train_mean),
        anchor=logit(np.asarray(info.train_rate)),
        params=params,
        offset=_drift(info, rows),
    )
    probabilities = {
        ENSEMBLE: predicted.probabilities,
        REWEIGHTED: reweighted,
        BEST_MEMBER: members[:, best],
        LOGISTIC: LogisticBaseline.fit(train).probabilities(rows),
        MOMENTUM: MomentumBaseline.fit(train).probabilities(rows),
        CONSTANT: ConstantBaseline.fit(train).probabilities(rows),
    }
    return Scored(
        rows,
        probabilities,
        members,
        run.members,
        [run.members[best]],
        history,
        [info.weights_sha256],
        predicted.quantiles,
        QuantileBaseline.fit(train, run.quantiles).quantiles(rows),
        VolatilityQuantileBaseline.fit(train, run.quantiles).quantiles(rows),
        run.quantiles,
    )


def _drift(info: FoldInfo, rows: WindowSet) -> FloatArray | None:
    if not info.drift_coef:
        return None
    return drift_offset(rows.windows, rows.horizons, np.asarray(info.drift_coef), np.asarray(info.drift_centre))


def join_scored(parts: list[Scored]) -> Scored:
    return Scored(
        concat_windows([p.data for p in parts]),
        {name: np.concatenate([p.probabilities[name] for p in parts]) for name in parts[0].probabilities},
        np.concatenate([p.member_probabilities for p in parts]),
        parts[0].member_names,
        [name for p in parts for name in p.best_members],
        np.concatenate([p.reweighting for p in parts]),
        [digest for p in parts for digest in p.weights_sha256],
        np.concatenate([p.quantiles for p in parts]),
        np.concatenate([p.baseline_quantiles for p in parts]),
        np.concatenate([p.volatility_quantiles for p in parts]),
        parts[0].levels,
    )


def assess(scored: Scored, settings: EvaluationSettings, periods: float) -> Json:
    """Every figure of one evaluation set, as JSON-ready values."""
    data = scored.data
    drawn = Bootstrap.over(data.end_ts, block=settings.block, samples=settings.samples, seed=settings.seed)
    boot = Bootstrap(drawn.dates, drawn.indices, settings.level)
    valid, horizons = data.valid, data.horizons
    called = {name: p > 0.5 for name, p in scored.probabilities.items()}
    called[MOMENTUM] = np.repeat(MomentumBaseline.called_up(data)[:, None], len(horizons), axis=1)
    called[BUY_AND_HOLD] = np.ones((len(data), len(horizons)), dtype=bool)
    models: dict[str, Json] = {}
    draws: dict[tuple[str, str, int], FloatArray] = {}
    for name, calls in called.items():
        per_horizon: dict[str, Json] = {}
        for j, h in enumerate(horizons):
            v = valid[:, j]
            up, dates = data.up[v, j], data.end_ts[v]
            p = scored.probabilities.get(name)
            figures: Json = classification(p[v, j], up) if p is not None else {}
            # The call is the model's direction (momentum: the last return's sign, not p > 0.5).
            figures.update(direction_accuracy(calls[v, j], up))
            draws[name, "accuracy", j] = boot.mean((calls[v, j] == up).astype(np.float64), dates)
            figures["accuracy_ci"] = boot.summary(figures["accuracy"], draws[name, "accuracy", j])
            if p is not None:
                draws[name, "log_loss", j] = boot.mean(log_losses(p[v, j], up), dates)
                figures["log_loss_ci"] = boot.summary(figures["log_loss"], draws[name, "log_loss", j])
            per_horizon[str(h)] = figures
        models[name] = {"horizons": per_horizon}
    for name, entry in models.items():
        for j, h in enumerate(horizons):
            figures, reference = entry["horizons"][str(h)], models[ENSEMBLE]["horizons"][str(h)]
            for metric in ("accuracy", "log_loss"):
                if name != ENSEMBLE and (name, metric, j) in draws:
                    figures[f"{metric}_minus_ensemble"] = difference(
                        boot,
                        figures[metric] - reference[metric],
                        draws[name, metric, j],
                        draws[ENSEMBLE, metric, j],
                    )
    primary = valid[:, 0]
    rows = data.select(np.flatnonzero(primary))
    up1 = rows.up[:, 0]
    actions = {}
    for name, p in scored.probabilities.items():
        p1 = p[primary, 0]
        actions[name] = chosen = threshold_actions(p1, settings.buy_above, settings.sell_below)
        models[name]["actions"] = action_figures(chosen, p1, up1)
        models[name]["confusion"] = confusion(chosen, up1)
        models[name]["confidence_reliability"] = confidence_reliability(chosen, p1, up1)
        models[name]["calibration_curve"] = {
            str(h): reliability(p[valid[:, j], j], data.up[valid[:, j], j]) for j, h in enumerate(horizons)
        }
    return {
        "windows": len(data),
        "symbols": len(np.unique(data.symbols)),
        "days": len(boot.dates),
        "start": iso(int(data.end_ts.min())),
        "end": iso(int(data.end_ts.max())),
        "labels": {str(h): int(valid[:, j].sum()) for j, h in enumerate(horizons)},
        "up_rate": {str(h): float(data.up[valid[:, j], j].mean()) for j, h in enumerate(horizons)},
        "ties": {str(h): float(np.mean(data.log_return[valid[:, j], j] == 0.0)) for j, h in enumerate(horizons)},
        "best_members": scored.best_members,
        "weights_sha256": scored.weights_sha256,
        "models": models,
        "trading": trading_rows(scored, rows, actions, settings=settings, periods=periods, boot=boot),
        "members": member_rows(scored),
        "quantiles": quantile_rows(scored, boot),
        "reweighting": {
            "member_names": scored.member_names,
            "mean_weights": scored.reweighting.mean(axis=0).tolist(),
        },
    }


def trading_rows(
    scored: Scored,
    rows: WindowSet,
    actions: dict[str, IntArray],
    *,
    settings: EvaluationSettings,
    periods: float,
    boot: Bootstrap,
) -> dict[str, Json]:
    """The trading simulation of every strategy, with paired Sharpe intervals against the ensemble's."""
    primary = scored.data.valid[:, 0]
    p_ensemble = scored.probabilities[ENSEMBLE][primary, 0]
    p_logistic = scored.probabilities[LOGISTIC][primary, 0]
    strategies: dict[str, IntArray] = {
        REFERENCE_STRATEGY: actions[ENSEMBLE],
        f"{ENSEMBLE}, long/short by p > 0.5": np.where(p_ensemble > 0.5, BUY, SELL).astype(np.int64),
        f"{REWEIGHTED}, threshold strategy": actions[REWEIGHTED],
        f"{BEST_MEMBER}, threshold strategy": actions[BEST_MEMBER],
        f"{LOGISTIC}, threshold strategy": actions[LOGISTIC],
        f"{LOGISTIC}, long/short by p > 0.5": np.where(p_logistic > 0.5, BUY, SELL).astype(np.int64),
        f"{MOMENTUM}, long/short by the last return": MomentumBaseline.positions(rows),
        BUY_AND_HOLD: np.ones(len(rows), dtype=np.int64),
        f"{CONSTANT}, threshold strategy (always HOLD)": actions[CONSTANT],
    }
    out: dict[str, Json] = {}
    draws: dict[str, FloatArray] = {}
    for name, positions in strategies.items():
        simulation = simulate(positions, rows, cost_bps=settings.cost_bps)
        figures: Json = trading_figures(simulation, periods)
        draws[name] = boot.sharpe(simulation.returns, simulation.dates, periods)
        figures["sharpe_ci"] = boot.summary(figures["sharpe"], draws[name])
        figures["equity"] = {
            "dates": [iso(int(t)) for t in simulation.dates],
            "values": simulation.equity().tolist(),
        }
        out[name] = figures
    reference = out[REFERENCE_STRATEGY]
    for name, figures in out.items():
        if name != REFERENCE_STRATEGY:
            estimate = figures["sharpe"] - reference["sharpe"]
            figures["sharpe_minus_ensemble"] = difference(boot, estimate, draws[name], draws[REFERENCE_STRATEGY])
    return out


def quantile_rows(scored: Scored, boot: Bootstrap) -> dict[str, Json]:
    """Per horizon: how often the realised log return fell below each predicted quantile (ideally
    the level), the coverage and width of the outer interval, and the pinball loss against the
    training returns' unconditional quantiles and against the volatility-scaled ones (paired
    bootstrap of the differences)."""
    data, levels = scored.data, np.asarray(scored.levels)
    out: dict[str, Json] = {}
    for j, h in enumerate(data.horizons):
        v = data.valid[:, j]
        returns, dates = data.log_return[v, j], data.end_ts[v]
        figures: Json = {"levels": scored.levels}
        losses = {}
        for name, quantiles in (
            ("ensemble", scored.quantiles[v, j]),
            ("baseline", scored.baseline_quantiles[v, j]),
            ("volatility", scored.volatility_quantiles[v, j]),
        ):
            below = returns[:, None] < quantiles
            inside = (returns >= quantiles[:, 0]) & (returns <= quantiles[:, -1])
            losses[name] = pinball(returns, quantiles, levels)
            figures[name] = {
                "below": below.mean(axis=0).tolist(),
                "interval_coverage": float(inside.mean()),
                "interval_width": float(np.mean(quantiles[:, -1] - quantiles[:, 0])),
                "pinball": float(losses[name].mean()),
            }
        ensemble_draws = boot.mean(losses["ensemble"], dates)
        for name in ("baseline", "volatility"):
            figures[f"pinball_minus_{name}"] = difference(
                boot,
                figures["ensemble"]["pinball"] - figures[name]["pinball"],
                ensemble_draws,
                boot.mean(losses[name], dates),
            )
        out[str(h)] = figures
    return out


def member_rows(scored: Scored) -> dict[str, dict[str, float]]:
    """Each member alone (Platt-calibrated) on the primary horizon."""
    data = scored.data
    v = data.valid[:, 0]
    out: dict[str, dict[str, float]] = {}
    for m, name in enumerate(scored.member_names):
        p = scored.member_probabilities[v, m, 0]
        out[name] = classification(p, data.up[v, 0])
        out[name]["mean_weight"] = float(scored.reweighting[:, m, 0].mean())
    return out


def model_figures(run: RunInfo) -> Json:
    """What the report says about the model: the run's configuration and its last fold."""
    last = run.folds[-1]
    weights = np.asarray(last.ensemble_weights)
    return {
        "name": run.name,
        "version": run.version,
        "parameters": run.parameters,
        "window": run.window,
        "interval": run.interval,
        "calendar": run.calendar,
        "gap_policy": run.gap_policy,
        "max_missing": run.max_missing,
        "horizons": run.horizons,
        "quantiles": run.quantiles,
        "data": msgspec.to_builtins(run.data),
        "symbols": run.symbols,
        "weights_sha256": last.weights_sha256,
        "train_seconds": run.seconds,
        "train_cpu_seconds": run.cpu_seconds,
        "threads": run.config["threads"],
        "device": run.config["device"],
        "config": run.config,
        "sizes": run.sizes,
        "audit": msgspec.to_builtins(run.audit) if run.audit else None,
        "members": [{**msgspec.to_builtins(m), "weights": weights[i].tolist()} for i, m in enumerate(last.members)],
        "calibration": {
            "scale": last.calibration_scale,
            "bias": last.calibration_bias,
            "drift_coef": last.drift_coef,
            "drift_centre": last.drift_centre,
            "labels": last.calibration_labels,
        },
        "folds": [
            {
                "index": f.index,
                "train": msgspec.to_builtins(f.train),
                "validation": msgspec.to_builtins(f.validation),
                "calibration": msgspec.to_builtins(f.calibration),
                "test": msgspec.to_builtins(f.test),
                "weights_sha256": f.weights_sha256,
                "seconds": f.seconds,
            }
            for f in run.folds
        ],
    }


def evaluate_run(
    run_dir: Path,
    *,
    externals: Sequence[Path] = (),
    walk_forward_folds: bool = True,
    settings: EvaluationSettings,
    params: ReweightingParams,
    data_path: Path | None = None,
) -> Json:
    """Figures of a run on its last fold's test block, on every fold's test block (walk-forward)
    and on external candle files, each beside the baselines."""
    run = read_run(run_dir)
    path, data = run_data(run, data_path)
    folds = walk_forward(data, run.split_sizes())
    for fold, info in zip(folds, run.folds, strict=True):
        if list(fold.cutoffs) != info.cutoffs:
            raise DataError(f"{path}: the walk-forward splits differ from those of {run_dir}")
    periods = periods_per_year(run.interval, run.calendar)
    last = len(folds) - 1
    train_last = folds[last].part(data, "train")

    def scored(index: int, rows: WindowSet) -> Scored:
        train = train_last if index == last else folds[index].part(data, "train")
        return score_fold(run_dir, run, index, train=train, rows=rows, params=params)

    sets: dict[str, Json] = {}
    goals: dict[str, Json] = {}
    last_test = scored(last, folds[last].part(data, "test"))
    sets["last-fold"] = {
        "title": "Last fold's test block: the exported model on data it has not seen",
        "short": "last fold's test block",
        "description": (
            f"The exported model (fold {last}) on its own test block, the newest {run.sizes['test']} candles of "
            f"`{run.data.name}`, which follow the calibration slice after a purge gap of {run.sizes['purge']} "
            "candles. Training, early stopping, ensemble weighting and calibration never saw these labels."
        ),
        **assess(last_test, settings, periods),
    }
    if walk_forward_folds and len(folds) > 1:
        parts = [last_test if k == last else scored(k, folds[k].part(data, "test")) for k in range(len(folds))]
        for k, part in enumerate(parts):
            goals[f"fold {k} test block"] = goal_rows(part)
        sets["walk-forward"] = {
            "title": f"All {len(folds)} walk-forward test blocks",
            "short": "walk-forward test blocks",
            "description": (
                "Each fold's model on its own test block, joined in time: every prediction was made by a model "
                "trained, stopped and calibrated on earlier data only. Only the last fold's model is exported; "
                "the earlier ones were trained the same way on less history."
            ),
            **assess(join_scored(parts), settings, periods),
        }
    trained_from, trained_to = data.end_ts.min(), folds[last].cutoffs[0]
    if not goals:
        goals[f"fold {last} test block"] = goal_rows(last_test)
    for external in externals:
        rows, audit = load_audited_windows(external, run.spec())
        on_external = scored(last, rows)
        goals[f"external set {external.name}"] = goal_rows(on_external)
        sets[f"external-{external.stem}"] = {
            "title": f"External test set: {external.name}",
            "short": f"external set {external.name}",
            "description": _external_description(external, rows, run, int(trained_from), int(trained_to)),
            "audit": msgspec.to_builtins(audit),
            "audit_file": external.name,
            **assess(on_external, settings, periods),
        }
    return {
        "title": f"{run.name} {run.version}: evaluation",
        "model": model_figures(run),
        "settings": {
            **dataclasses.asdict(settings),
            "cost_bps": settings.cost_bps,
            "periods_per_year": periods,
            "reweighting": dataclasses.asdict(params),
        },
        "goals": goals,
        "sets": sets,
    }


LOG_LOSS_MARGIN = 0.002
"""Issue 13's goals: log loss at most this much above the constant probability's, and ..."""
ECE_LIMIT = 0.03
"""... an expected calibration error at most this, at every horizon of every test set."""


def goal_rows(scored: Scored) -> dict[str, Json]:
    """Per horizon, the ensemble's log loss against the constant probability's and its ECE, and
    whether both goals are met."""
    data = scored.data
    out: dict[str, Json] = {}
    for j, h in enumerate(data.horizons):
        v = data.valid[:, j]
        ensemble = classification(scored.probabilities[ENSEMBLE][v, j], data.up[v, j])
        constant = classification(scored.probabilities[CONSTANT][v, j], data.up[v, j])
        excess = ensemble["log_loss"] - constant["log_loss"]
        out[str(h)] = {
            "labels": int(v.sum()),
            "log_loss": ensemble["log_loss"],
            "log_loss_constant": constant["log_loss"],
            "log_loss_excess": excess,
            "ece": ensemble["ece"],
            "ece_constant": constant["ece"],
            "met": bool(excess <= LOG_LOSS_MARGIN and ensemble["ece"] <= ECE_LIMIT),
        }
    return out


def _external_description(path: Path, rows: WindowSet, run: RunInfo, trained_from: int, trained_to: int) -> str:
    start, end = int(rows.end_ts.min()), int(rows.end_ts.max())
    overlap = sorted({str(s) for s in rows.symbols} & set(run.symbols))
    if end < trained_from:
        when = (
            "EARLIER than all training data, so this is a test on other symbols in another period, not a forward test"
        )
    elif start >= trained_to:
        when = "after the exported model's training data"
    else:
        when = "overlapping the training period"
    shared = f"shares the symbols {', '.join(overlap)} with training" if overlap else "shares no symbol with training"
    return (
        f"`{path.name}` ({len(np.unique(rows.symbols))} symbols), never used in training, scored by the exported "
        f"model; baselines are fitted on the exported model's training windows. Its windows end "
        f"{iso(start)[:10]} .. {iso(end)[:10]}: {when}. The file {shared}."
    )
