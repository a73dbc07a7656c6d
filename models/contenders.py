"""What an evaluation compares, by the names its JSON, plots and report use: the ensemble, its
online re-weighting, the best single member, the baselines, and the reference trading strategy."""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]
"""A JSON-ready document of evaluation figures."""

ENSEMBLE = "ensemble"
REWEIGHTED = "ensemble, online re-weighting"
BEST_MEMBER = "best single member"
LOGISTIC = "logistic regression"
MOMENTUM = "momentum"
CONSTANT = "constant probability"
BUY_AND_HOLD = "buy-and-hold"
REFERENCE_STRATEGY = f"{ENSEMBLE}, threshold strategy"
