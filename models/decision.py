"""The champion/challenger gate of ``candlecast retrain``: the rule that decides whether a retrained
model replaces the one in service, and the record of each decision the registry keeps beside the
challenger's version (``models.registry``).

The rule, on the primary horizon's log loss over the same held-out windows for both models:
promote only if the challenger's is lower by at least ``margin`` AND the paired block-bootstrap
interval of the difference (challenger minus champion) lies wholly below zero. A challenger that is
better by less than the margin, or whose advantage the interval does not support, is refused.
Torch-free, so ``candlecast models show`` and the tests read records without loading a model.
"""

from __future__ import annotations

from typing import Any, Literal

import msgspec

DECISION_FILE = "decision.json"
DEFAULT_MARGIN = 0.001
"""Nats of mean log loss per window at the primary horizon: a sixth to a third of what the bundled
crypto-1h gains over the constant probability at one hour (0.003 to 0.006, docs/model-card-crypto-1h.md),
so a change smaller than that is not worth a reload."""

Outcome = Literal["promoted", "refused"]


class Gap(msgspec.Struct, frozen=True):
    """The challenger's log loss minus the champion's on the same windows (negative: the challenger
    is better), with its paired bootstrap interval and the share of resamples where it is positive."""

    estimate: float
    low: float
    high: float
    share_positive: float


class ModelFigures(msgspec.Struct, frozen=True):
    """One model's figures on the held-out windows, per horizon (``"1"``, ``"6"``, ...)."""

    ref: str
    weights_sha256: str
    horizons: dict[str, dict[str, Any]]
    """``count``, ``log_loss`` with ``log_loss_ci``, ``brier``, ``accuracy``, ``ece``, ``auc``, and the
    constant probability's ``constant_log_loss`` fitted on the same baseline windows."""


class Decision(msgspec.Struct, frozen=True):
    """What ``candlecast retrain`` decided, why, and the figures it decided on."""

    outcome: Outcome
    reason: str
    decided_at: str
    horizon: int
    """The primary horizon the rule looked at (candles)."""
    margin: float
    level: float
    """Confidence level of the bootstrap intervals."""
    champion: ModelFigures
    challenger: ModelFigures
    difference: dict[str, Gap]
    """Per horizon, challenger minus champion log loss."""
    holdout: dict[str, Any]
    """The held-out windows both were scored on: ``start``, ``end``, ``windows``, ``symbols``, ``days``,
    ``labels``, the baseline windows the constant probability was fitted on, and
    ``champion_trained_to`` (the end of the windows the champion was fitted on: past ``start``, its
    figures are in-sample, and the reason says so)."""
    training: dict[str, Any]
    """What the challenger learned from: candle source, rows, first and last candle, configuration."""
    current_before: str | None
    current_after: str | None
    command: str


def decide(gap: Gap, margin: float, level: float) -> tuple[Outcome, str]:
    """The gate: promote only when the challenger is better by ``margin`` and the interval agrees."""
    better = -gap.estimate
    interval = f"{level:.0%} interval of the difference [{gap.low:+.5f}, {gap.high:+.5f}]"
    if better < margin:
        change = f"lower by {better:.5f}" if better > 0 else f"higher by {-better:.5f}"
        return "refused", f"the challenger's log loss is {change}, not lower by the margin {margin:.5f} ({interval})"
    if not gap.high < 0:
        return "refused", (
            f"the challenger's log loss is lower by {better:.5f} but the {interval} does not exclude zero"
        )
    return (
        "promoted",
        f"the challenger's log loss is lower by {better:.5f} (margin {margin:.5f}); the {interval} excludes zero",
    )


def encode(decision: Decision) -> bytes:
    return msgspec.json.format(msgspec.json.encode(decision)) + b"\n"
