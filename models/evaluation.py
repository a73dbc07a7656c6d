"""Figures of merit on held-out windows: classification metrics, per-action precision and
coverage, confidence reliability, a trading simulation after costs, and block-bootstrap
confidence intervals.

Everything here is a pure function of arrays, so every number in a report can be recomputed.

Bootstrap: windows of one day are correlated (the symbols move together) and so are nearby days
(labels up to 20 candles ahead overlap, volatility clusters), so resampling single windows would
give intervals that are far too narrow. The bootstrap resamples whole days in circular blocks of
``block`` consecutive days (a circular block bootstrap), and every model is scored on the same
resampled days, so differences between models get paired intervals.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score  # type: ignore[import-untyped]

from candlecast.errors import DataError
from daemon.intervals import DAY_MS, interval_ms
from models.baselines import ConstantBaseline, LogisticBaseline, MomentumBaseline, QuantileBaseline
from models.dataset import WindowSet, concat_windows, iso, load_windows, walk_forward
from models.reweighting import ReweightingParams, reweighted_stream
from models.training import RunInfo, load_fold, logit, predict, read_run, run_data, sigmoid

Json = dict[str, Any]
FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

BUY, HOLD, SELL = 1, 0, -1
ACTION_NAMES = {BUY: "BUY", SELL: "SELL", HOLD: "HOLD"}
ECE_BINS = 10
PROBABILITY_CLIP = 1e-6


def classification(p: FloatArray, up: BoolArray) -> dict[str, float]:
    """Accuracy (``p > 0.5`` calls up), log loss, Brier score, ECE and ROC AUC of probabilities."""
    if len(p) == 0:
        return {"count": 0.0}
    clipped = np.clip(p, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    both = 0 < up.sum() < len(up)
    return {
        "count": float(len(p)),
        "up_rate": float(up.mean()),
        "mean_probability": float(p.mean()),
        "accuracy": float(np.mean((p > 0.5) == up)),
        "log_loss": float(log_loss(up, clipped, labels=[False, True])),
        "brier": float(brier_score_loss(up, p)),
        "ece": expected_calibration_error(p, up),
        "auc": float(roc_auc_score(up, p)) if both else math.nan,
    }


def direction_accuracy(predicted_up: BoolArray, up: BoolArray) -> dict[str, float]:
    """For rules that call a direction without a probability (buy-and-hold, momentum)."""
    return {"count": float(len(up)), "up_rate": float(up.mean()), "accuracy": float(np.mean(predicted_up == up))}


def expected_calibration_error(p: FloatArray, up: BoolArray, bins: int = ECE_BINS) -> float:
    """Mean |predicted - realised| over equal-width probability bins, weighted by their counts."""
    index = np.minimum((p * bins).astype(np.int64), bins - 1)
    predicted = np.bincount(index, weights=p, minlength=bins)
    realised = np.bincount(index, weights=up.astype(np.float64), minlength=bins)
    return float(np.abs(predicted - realised).sum() / max(len(p), 1))


def reliability(p: FloatArray, up: BoolArray, bins: int = ECE_BINS) -> list[dict[str, float]]:
    """Bins of ``p`` at its deciles (fewer when values repeat): mean probability, realised up rate,
    count (for calibration curves)."""
    edges = np.unique(np.quantile(p, np.linspace(0, 1, bins + 1)[1:-1])) if len(p) else np.zeros(0)
    return _binned(p, up.astype(np.float64), edges)


CONFIDENCE_EDGES = np.array([0.525, 0.55, 0.575, 0.6, 0.625, 0.65, 0.7])


def _binned(score: FloatArray, hit: FloatArray, edges: FloatArray) -> list[dict[str, float]]:
    """Rows per bin (``edges`` are inner bin edges; a value on an edge goes to the upper bin)."""
    index = np.searchsorted(edges, score, side="right")
    rows = []
    for b in range(len(edges) + 1):
        chosen = index == b
        count = int(chosen.sum())
        if count == 0:
            continue
        hits = float(hit[chosen].sum())
        low, high = wilson(hits, count)
        rows.append(
            {
                "from": float(edges[b - 1]) if b else -math.inf,
                "to": float(edges[b]) if b < len(edges) else math.inf,
                "count": float(count),
                "predicted": float(score[chosen].mean()),
                "realised": hits / count,
                "low": low,
                "high": high,
            }
        )
    return rows


def wilson(hits: float, count: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion (treats windows as independent)."""
    if count == 0:
        return math.nan, math.nan
    share = hits / count
    centre = (share + z * z / (2 * count)) / (1 + z * z / count)
    half = z * math.sqrt(share * (1 - share) / count + z * z / (4 * count * count)) / (1 + z * z / count)
    return centre - half, centre + half


def threshold_actions(p: FloatArray, buy_above: float, sell_below: float) -> IntArray:
    """The threshold strategy without hysteresis or cooldown: BUY above, SELL below, else HOLD
    (strict inequalities, as ``strategies.threshold``)."""
    actions: IntArray = np.where(p > buy_above, BUY, np.where(p < sell_below, SELL, HOLD)).astype(np.int64)
    return actions


def confidence(actions: IntArray, p: FloatArray) -> FloatArray:
    """``strategies.base.directional_confidence``, vectorised: BUY p, SELL 1 - p, HOLD max(p, 1 - p)."""
    out: FloatArray = np.where(actions == BUY, p, np.where(actions == SELL, 1 - p, np.maximum(p, 1 - p)))
    return out


def direction_right(actions: IntArray, p: FloatArray, up: BoolArray) -> BoolArray:
    """Whether the direction a decision's confidence is about came true (HOLD: the likelier one)."""
    called_up = np.where(actions == BUY, True, np.where(actions == SELL, False, p >= 0.5))
    right: BoolArray = called_up == up
    return right


def action_figures(actions: IntArray, p: FloatArray, up: BoolArray) -> dict[str, dict[str, float]]:
    """Per action: coverage (share of windows), precision (share whose direction came true) and count."""
    right = direction_right(actions, p, up)
    out: dict[str, dict[str, float]] = {}
    for code, name in ACTION_NAMES.items():
        chosen = actions == code
        count = int(chosen.sum())
        out[name] = {
            "count": float(count),
            "coverage": count / max(len(actions), 1),
            "precision": float(right[chosen].mean()) if count else math.nan,
        }
    return out


def confusion(actions: IntArray, up: BoolArray) -> dict[str, dict[str, int]]:
    """Counts of each action against the realised direction."""
    return {
        name: {"up": int(np.sum((actions == code) & up)), "down": int(np.sum((actions == code) & ~up))}
        for code, name in ACTION_NAMES.items()
    }


def confidence_reliability(actions: IntArray, p: FloatArray, up: BoolArray) -> list[dict[str, float]]:
    """Bins of the signals' confidence (``CONFIDENCE_EDGES``): mean confidence against the realised hit rate."""
    return _binned(confidence(actions, p), direction_right(actions, p, up).astype(np.float64), CONFIDENCE_EDGES)


def periods_per_year(interval: str, calendar: str) -> float:
    """Candles in a year: 252 trading days for the weekdays calendar, 365 days otherwise."""
    per_day = DAY_MS / interval_ms(interval)
    return (252.0 if calendar == "weekdays" else 365.0) * per_day


@dataclass(frozen=True)
class Simulation:
    """A daily portfolio: every symbol with a window that candle gets an equal share of capital."""

    dates: IntArray
    """Window-end times (the position is taken at that candle's close, held one candle)."""
    returns: FloatArray
    """Portfolio return per date, after costs."""
    turnover: FloatArray
    """Share of capital traded per date."""
    exposure: FloatArray
    """Share of capital in a position per date."""
    wins: int
    active: int
    """Symbol-candles with a position, and how many of them made money after costs."""

    def equity(self) -> FloatArray:
        return np.cumprod(1.0 + self.returns, dtype=np.float64)


def simulate(positions: IntArray, data: WindowSet, *, cost_bps: float) -> Simulation:
    """Hold ``positions`` (+1 long, -1 short, 0 flat) from each window's close to the next candle's
    (the primary horizon must be 1 candle; rows need that label).

    Costs of ``cost_bps`` basis points are charged on every change of position, including opening
    from flat and closing when a symbol's run of candles ends (its next window does not start
    where this one's position ends).
    """
    if data.horizons[0] != 1:
        raise ValueError("the trading simulation needs a 1-candle primary horizon")
    if not data.valid[:, 0].all():
        raise ValueError("every simulated window needs its next candle")
    symbols, end_ts, next_ts, next_log_return = data.symbols, data.end_ts, data.label_ts[:, 0], data.log_return[:, 0]
    cost = cost_bps / 1e4
    order = np.lexsort((end_ts, symbols))
    pos = positions[order].astype(np.float64)
    sym, ts, nxt = symbols[order], end_ts[order], next_ts[order]
    gross = pos * np.expm1(next_log_return[order])
    chained = np.zeros(len(pos), dtype=bool)
    chained[1:] = (sym[1:] == sym[:-1]) & (ts[1:] == nxt[:-1])
    previous = np.where(chained, np.r_[0.0, pos[:-1]], 0.0)
    closes = np.r_[~chained[1:], True]
    traded = np.abs(pos - previous) + np.where(closes, np.abs(pos), 0.0)
    net = gross - cost * traded
    dates, day = np.unique(ts, return_inverse=True)
    per_day = np.bincount(day, minlength=len(dates)).astype(np.float64)
    active = pos != 0
    return Simulation(
        dates=dates,
        returns=np.bincount(day, weights=net, minlength=len(dates)) / per_day,
        turnover=np.bincount(day, weights=traded, minlength=len(dates)) / per_day,
        exposure=np.bincount(day, weights=np.abs(pos), minlength=len(dates)) / per_day,
        wins=int(np.sum(active & (net > 0))),
        active=int(active.sum()),
    )


def sharpe(returns: FloatArray, periods: float) -> float:
    """Annualised Sharpe ratio (no risk-free rate); 0 for a flat series."""
    std = float(returns.std(ddof=1)) if len(returns) > 1 else 0.0
    return float(returns.mean()) / std * math.sqrt(periods) if std > 0 else 0.0


def max_drawdown(returns: FloatArray) -> float:
    equity = np.cumprod(1.0 + returns)
    peak = np.maximum.accumulate(np.r_[1.0, equity])[1:]
    return float(np.max(1.0 - equity / peak)) if len(equity) else 0.0


def trading_figures(simulation: Simulation, periods: float) -> dict[str, float]:
    returns = simulation.returns
    total = float(np.prod(1.0 + returns) - 1.0)
    years = len(returns) / periods
    return {
        "total_return": total,
        "annual_return": (1.0 + total) ** (1.0 / years) - 1.0 if years > 0 and total > -1 else math.nan,
        "sharpe": sharpe(returns, periods),
        "max_drawdown": max_drawdown(returns),
        "win_rate": simulation.wins / simulation.active if simulation.active else math.nan,
        "turnover": float(simulation.turnover.mean()),
        "exposure": float(simulation.exposure.mean()),
        "days": float(len(returns)),
    }


def block_indices(days: int, block: int, samples: int, seed: int) -> IntArray:
    """Circular block bootstrap: ``samples`` resamplings of ``days`` day indices in blocks."""
    rng = np.random.default_rng(seed)
    block = max(1, min(block, days))
    blocks = -(-days // block)
    starts = rng.integers(0, days, size=(samples, blocks))
    indices: IntArray = ((starts[:, :, None] + np.arange(block)) % days).reshape(samples, -1)[:, :days]
    return indices


def interval(values: FloatArray, level: float = 0.95) -> tuple[float, float]:
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return math.nan, math.nan
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return float(low), float(high)


@dataclass(frozen=True)
class Bootstrap:
    """Resampled days shared by every model of an evaluation set, so intervals are paired."""

    dates: IntArray
    """The distinct days, ascending."""
    indices: IntArray
    """``[samples, days]`` resampled positions into ``dates``."""
    level: float = 0.95

    @classmethod
    def over(cls, dates: IntArray, *, block: int, samples: int, seed: int) -> Bootstrap:
        unique = np.unique(dates)
        return cls(unique, block_indices(len(unique), block, samples, seed))

    def mean(self, values: FloatArray, dates: IntArray) -> FloatArray:
        """Bootstrap distribution of the mean of per-window values (accuracy: 0/1 hits) dated ``dates``."""
        day = np.searchsorted(self.dates, dates)
        sums = np.bincount(day, weights=values.astype(np.float64), minlength=len(self.dates))
        counts = np.bincount(day, minlength=len(self.dates)).astype(np.float64)
        totals = counts[self.indices].sum(axis=1)
        out: FloatArray = sums[self.indices].sum(axis=1) / np.where(totals > 0, totals, np.nan)
        return out

    def sharpe(self, returns: FloatArray, dates: IntArray, periods: float) -> FloatArray:
        """Bootstrap distribution of the Sharpe ratio of a daily return series dated ``dates``."""
        series = np.zeros(len(self.dates))
        series[np.searchsorted(self.dates, dates)] = returns
        resampled = series[self.indices]
        std = resampled.std(axis=1, ddof=1)
        out: FloatArray = np.where(std > 0, resampled.mean(axis=1) / np.where(std > 0, std, 1) * math.sqrt(periods), 0)
        return out

    def summary(self, estimate: float, distribution: FloatArray) -> dict[str, float]:
        low, high = interval(distribution, self.level)
        return {"estimate": estimate, "low": low, "high": high}


def difference(bootstrap: Bootstrap, estimate: float, mine: FloatArray, reference: FloatArray) -> Mapping[str, float]:
    """Paired interval of ``mine - reference``, and the share of resamples where it is positive."""
    delta = mine - reference
    out = dict(bootstrap.summary(estimate, delta))
    out["share_positive"] = float(np.mean(delta[np.isfinite(delta)] > 0)) if np.isfinite(delta).any() else math.nan
    return out


@dataclass(frozen=True)
class Settings:
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


ENSEMBLE = "ensemble"
REWEIGHTED = "ensemble, online re-weighting"
BEST_MEMBER = "best single member"
LOGISTIC = "logistic regression"
MOMENTUM = "momentum"
CONSTANT = "constant probability"
BUY_AND_HOLD = "buy-and-hold"
REFERENCE_STRATEGY = f"{ENSEMBLE}, threshold strategy"


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
        run.quantiles,
    )


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
        parts[0].levels,
    )


def _losses(p: FloatArray, up: BoolArray) -> FloatArray:
    clipped = np.clip(p, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    out: FloatArray = -np.where(up, np.log(clipped), np.log1p(-clipped))
    return out


def assess(scored: Scored, settings: Settings, periods: float) -> Json:
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
                draws[name, "log_loss", j] = boot.mean(_losses(p[v, j], up), dates)
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
    settings: Settings,
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


def pinball(returns: FloatArray, quantiles: FloatArray, levels: FloatArray) -> FloatArray:
    """Per window, the pinball (quantile) loss averaged over the levels: ``returns [N]``, ``quantiles [N, Q]``."""
    error = returns[:, None] - quantiles
    out: FloatArray = np.maximum(levels * error, (levels - 1) * error).mean(axis=1)
    return out


def quantile_rows(scored: Scored, boot: Bootstrap) -> dict[str, Json]:
    """Per horizon: how often the realised log return fell below each predicted quantile (ideally
    the level), the coverage and width of the outer interval, and the pinball loss against the
    training returns' unconditional quantiles (paired bootstrap of the difference)."""
    data, levels = scored.data, np.asarray(scored.levels)
    out: dict[str, Json] = {}
    for j, h in enumerate(data.horizons):
        v = data.valid[:, j]
        returns, dates = data.log_return[v, j], data.end_ts[v]
        figures: Json = {"levels": scored.levels}
        losses = {}
        for name, quantiles in (("ensemble", scored.quantiles[v, j]), ("baseline", scored.baseline_quantiles[v, j])):
            below = returns[:, None] < quantiles
            inside = (returns >= quantiles[:, 0]) & (returns <= quantiles[:, -1])
            losses[name] = pinball(returns, quantiles, levels)
            figures[name] = {
                "below": below.mean(axis=0).tolist(),
                "interval_coverage": float(inside.mean()),
                "interval_width": float(np.mean(quantiles[:, -1] - quantiles[:, 0])),
                "pinball": float(losses[name].mean()),
            }
        figures["pinball_minus_baseline"] = difference(
            boot,
            figures["ensemble"]["pinball"] - figures["baseline"]["pinball"],
            boot.mean(losses["ensemble"], dates),
            boot.mean(losses["baseline"], dates),
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
        "members": [{**msgspec.to_builtins(m), "weights": weights[i].tolist()} for i, m in enumerate(last.members)],
        "calibration": {"scale": last.calibration_scale, "bias": last.calibration_bias},
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
    settings: Settings,
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
    for external in externals:
        rows = load_windows(external, run.spec())
        sets[f"external-{external.stem}"] = {
            "title": f"External test set: {external.name}",
            "short": f"external set {external.name}",
            "description": _external_description(external, rows, run, int(trained_from), int(trained_to)),
            **assess(scored(last, rows), settings, periods),
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
        "sets": sets,
    }


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
