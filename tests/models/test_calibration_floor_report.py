"""The calibration floor report's `--explain`: the evidence rule it reports is the fit's, at the draws asked for."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from models.calibration import CalibrationPart, Standardisation, fit_combination
from models.calibration_floor_report import main, term_evidence
from models.training import RunInfo


def test_the_explained_joint_fit_keeps_what_the_combination_keeps() -> None:
    """A trailing-rate term that gains less than its own bar beside a clear member effect is not kept
    by `--explain` (the whole-fit test would keep it): its kept coefficients are ``fit_combination``'s."""
    rng = np.random.default_rng(5)
    n = 4000
    member = rng.normal(0, 1, n)
    drift = rng.normal(0, 1, n)
    up = rng.random(n) < 1 / (1 + np.exp(-(0.3 * member + 0.03 * drift)))
    fits, _ = term_evidence(member[:, None], drift, up, independent=n, anchor=0.0)
    joint = fits["members and trailing rate"]

    part = CalibrationPart(
        member[:, None, None], drift[:, None], up[:, None], np.ones((n, 1), dtype=bool), np.arange(n)
    )
    own = Standardisation(np.zeros((1, 1)), np.ones((1, 1)), np.array([0.5]), np.array([1.0]))
    fitted = fit_combination([part], np.array([0.5]), own)
    coefficients = joint["coefficients"]
    assert isinstance(coefficients, list) and coefficients[1] != 0.0
    assert joint["kept"] == [fitted.scale[0], fitted.drift_coef[0]]
    assert fitted.drift_coef[0] == 0.0 and fitted.scale[0] > 0.0


def test_the_explained_floors_use_the_draws_and_seed_asked_for(
    trained: tuple[Path, RunInfo], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--draws` and `--seed` reach the perfect forecaster's floors of `--explain` as they reach the table's."""
    out, _ = trained

    def explained(seed: int) -> list[dict[str, dict[str, dict[str, float]]]]:
        path = tmp_path / f"floor-{seed}.json"
        argv = ["floor", f"--run={out}", "--explain=0", "--draws=1", f"--seed={seed}", f"--json={path}"]
        monkeypatch.setattr(sys, "argv", argv)
        main()
        document = json.loads(path.read_text())
        assert all(row["perfect"]["median"] == row["perfect"]["p95"] for row in document["rows"])
        explain: list[dict[str, dict[str, dict[str, float]]]] = document["explain"]
        return explain

    first, second = explained(5), explained(6)
    floors = [fold["test"][name] for fold in first for name in ("perfect_model", "perfect_constant")]
    # One draw: every quantile of the floor is that draw's ECE.
    assert floors and all(floor["median"] == floor["p95"] for floor in floors)
    assert [fold["test"]["perfect_model"] for fold in first] != [fold["test"]["perfect_model"] for fold in second]
