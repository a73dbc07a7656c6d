"""Figures of merit of probabilities against realised directions: classification metrics,
calibration, per-action precision and coverage, confidence reliability, and the quantile (pinball)
loss. Pure functions of arrays, so every number in a report can be recomputed.

The calibration error, hit rate and Brier score are the daemon's live-quality ones
(``daemon.quality``), so the model card's figures compare directly with the live ones.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from sklearn.metrics import log_loss, roc_auc_score  # type: ignore[import-untyped]

from daemon.quality import CALIBRATION_BINS, brier_score, expected_calibration_error, hit_rate

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

BUY, HOLD, SELL = 1, 0, -1
ACTION_NAMES = {BUY: "BUY", SELL: "SELL", HOLD: "HOLD"}
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
        "accuracy": hit_rate(p, up),
        "log_loss": float(log_loss(up, clipped, labels=[False, True])),
        "brier": brier_score(p, up),
        "ece": expected_calibration_error(p, up),
        "auc": float(roc_auc_score(up, p)) if both else math.nan,
    }


def direction_accuracy(predicted_up: BoolArray, up: BoolArray) -> dict[str, float]:
    """For rules that call a direction without a probability (buy-and-hold, momentum)."""
    return {"count": float(len(up)), "up_rate": float(up.mean()), "accuracy": float(np.mean(predicted_up == up))}


def reliability(p: FloatArray, up: BoolArray, bins: int = CALIBRATION_BINS) -> list[dict[str, float]]:
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


def log_losses(p: FloatArray, up: BoolArray) -> FloatArray:
    """Per window, the log loss of ``p`` (clipped away from 0 and 1)."""
    clipped = np.clip(p, PROBABILITY_CLIP, 1 - PROBABILITY_CLIP)
    out: FloatArray = -np.where(up, np.log(clipped), np.log1p(-clipped))
    return out


def pinball(returns: FloatArray, quantiles: FloatArray, levels: FloatArray) -> FloatArray:
    """Per window, the pinball (quantile) loss averaged over the levels: ``returns [N]``, ``quantiles [N, Q]``."""
    error = returns[:, None] - quantiles
    out: FloatArray = np.maximum(levels * error, (levels - 1) * error).mean(axis=1)
    return out
