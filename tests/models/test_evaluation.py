"""Metrics, the trading simulation, the bootstrap and the online re-weighting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from daemon.intervals import DAY_MS
from daemon.quality import expected_calibration_error
from models.bootstrap import Bootstrap, block_indices
from models.contenders import ENSEMBLE, REWEIGHTED
from models.dataset import WindowSet, walk_forward
from models.evaluation import score_fold
from models.metrics import BUY, HOLD, SELL, action_figures, classification, confidence, threshold_actions
from models.reweighting import OnlineReweighter, ReweightingParams, reweighted_stream
from models.simulation import max_drawdown, periods_per_year, sharpe, simulate
from models.training import RunInfo, run_data
from strategies.base import Action, EnsembleOutput, OutputSpec, directional_confidence
from strategies.threshold import ThresholdStrategy


def test_actions_and_confidence_are_the_strategys() -> None:
    p = np.r_[np.random.default_rng(0).random(500), 0.6, 0.4, 0.5]
    strategy = ThresholdStrategy.from_params(OutputSpec((1,), (0.5,)), {})
    decisions = [strategy.decide([EnsembleOutput((float(x),), ((0.0,),), (0.0,))]) for x in p]
    codes = {Action.BUY: BUY, Action.SELL: SELL, Action.HOLD: HOLD}
    actions = threshold_actions(p, 0.6, 0.4)
    assert actions.tolist() == [codes[d.action] for d in decisions]
    np.testing.assert_allclose(confidence(actions, p), [d.confidence for d in decisions])
    np.testing.assert_allclose(
        confidence(actions, p), [directional_confidence(d.action, float(x)) for d, x in zip(decisions, p, strict=True)]
    )


def test_classification_metrics() -> None:
    rng = np.random.default_rng(1)
    p = rng.random(20_000)
    up = rng.random(20_000) < p
    figures = classification(p, up)
    assert figures["ece"] < 0.02 and figures["auc"] > 0.7
    assert figures["brier"] == pytest.approx(np.mean((p - up) ** 2))
    assert figures["accuracy"] == pytest.approx(np.mean((p > 0.5) == up))
    assert expected_calibration_error(np.full(1000, 0.9), np.zeros(1000, dtype=bool)) == pytest.approx(0.9)
    assert np.isnan(classification(np.full(4, 0.5), np.ones(4, dtype=bool))["auc"])


def test_the_model_card_and_the_daemon_share_one_calibration_error() -> None:
    """The evaluation's ECE is the daemon's live-quality ECE (one function), so the two figures compare directly."""
    from daemon import quality
    from models import metrics

    assert vars(metrics)["expected_calibration_error"] is quality.expected_calibration_error
    p = np.random.default_rng(3).random(2_000)
    up = np.random.default_rng(4).random(2_000) < p
    assert classification(p, up)["ece"] == quality.expected_calibration_error(p, up)


def test_action_precision_and_coverage() -> None:
    p = np.array([0.7, 0.7, 0.3, 0.5, 0.45])
    up = np.array([True, False, False, True, True])
    figures = action_figures(threshold_actions(p, 0.6, 0.4), p, up)
    assert figures["BUY"] == {"count": 2.0, "coverage": 0.4, "precision": 0.5}
    assert figures["SELL"]["precision"] == 1.0
    # HOLD is right when the likelier direction came true: p = 0.5 calls up, p = 0.45 calls down.
    assert figures["HOLD"]["precision"] == 0.5


def _series(symbols: list[str], days: list[int], returns: list[float], *, gap_after: int | None = None) -> WindowSet:
    n = len(days)
    end = np.array(days, dtype=np.int64) * DAY_MS
    following = end + DAY_MS
    if gap_after is not None:
        following[gap_after] += 10 * DAY_MS  # the next window does not start where this position ends
    return WindowSet(
        np.zeros((n, 2, 5), dtype=np.float32),
        np.array(symbols),
        end,
        following[:, None],
        np.log1p(np.array(returns))[:, None],
        (np.array(returns) > 0)[:, None],
        (1,),
    )


def test_simulation_charges_costs_on_every_change() -> None:
    data = _series(["A"] * 4, [1, 2, 3, 4], [0.01, -0.02, 0.03, 0.01])
    simulation = simulate(np.array([BUY, BUY, SELL, HOLD]), data, cost_bps=10.0)
    # Open long (1 unit), hold, flip to short (2 units), close (1 unit); costs 10 bp per unit.
    np.testing.assert_allclose(simulation.returns, [0.01 - 0.001, -0.02, -0.03 - 0.002, -0.001])
    np.testing.assert_allclose(simulation.turnover, [1, 0, 2, 1])
    assert (simulation.wins, simulation.active) == (1, 3)
    # Two symbols share capital equally; a broken run closes the position (and pays for it).
    data = _series(["A", "A", "B", "B"], [1, 2, 1, 2], [0.02, 0.02, -0.01, 0.01], gap_after=0)
    simulation = simulate(np.array([BUY, BUY, BUY, BUY]), data, cost_bps=10.0)
    np.testing.assert_allclose(
        simulation.returns, [(0.02 - 0.002 - 0.01 - 0.001) / 2, (0.02 - 0.002 + 0.01 - 0.001) / 2]
    )


def test_sharpe_drawdown_and_periods() -> None:
    returns = np.array([0.01, -0.02, 0.01, 0.03, -0.01])
    assert sharpe(returns, 252) == pytest.approx(returns.mean() / returns.std(ddof=1) * np.sqrt(252))
    assert sharpe(np.zeros(10), 252) == 0.0
    assert max_drawdown(np.array([0.1, -0.5, 0.2])) == pytest.approx(0.5)
    assert periods_per_year("1d", "weekdays") == 252
    assert periods_per_year("1h", "continuous") == 365 * 24


def test_block_bootstrap() -> None:
    indices = block_indices(100, 20, 50, seed=0)
    assert indices.shape == (50, 100)
    steps = np.diff(indices, axis=1)
    # Within a block consecutive days follow each other (wrapping round the end).
    assert np.mean((steps == 1) | (steps == -99)) > 0.8
    days = np.arange(100, dtype=np.int64) * DAY_MS
    boot = Bootstrap.over(np.repeat(days, 3), block=20, samples=400, seed=0)
    correct = np.tile([1.0, 1.0, 0.0], 100)
    draws = boot.mean(correct, np.repeat(days, 3))
    np.testing.assert_allclose(draws, 2 / 3)  # the same share every day: no spread
    assert np.array_equal(block_indices(100, 20, 50, seed=0), indices)


def test_online_reweighting_favours_the_member_that_is_right() -> None:
    rng = np.random.default_rng(2)
    up = rng.random(300) < 0.5
    good = np.where(up, 1.0, -1.0)
    logits = np.stack([good, -good, rng.normal(0, 1, 300)], axis=1)
    reweighter = OnlineReweighter(np.full((3, 1), 1 / 3), ReweightingParams(half_life=10, eta=5, mix=0.1))
    for t in range(50):
        reweighter.observe(0, logits[t : t + 1], up[t : t + 1])
    weights = reweighter.weights()[:, 0]
    assert weights[0] > 0.8 and weights[1] == pytest.approx(0.1 / 3, abs=1e-3)
    np.testing.assert_allclose(weights.sum(), 1.0)


def test_online_reweighting_never_looks_ahead() -> None:
    rng = np.random.default_rng(3)
    n, horizon = 120, 5
    end_ts = np.arange(n, dtype=np.int64) * DAY_MS
    label_ts = (end_ts + horizon * DAY_MS)[:, None]
    logits = rng.normal(0, 1, (n, 2, 1))
    up = rng.random((n, 1)) < 0.5
    valid = np.ones((n, 1), dtype=bool)

    def replay(outcomes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        prior, params = np.full((2, 1), 0.5), ReweightingParams()
        return reweighted_stream(
            logits,
            outcomes,
            valid,
            end_ts,
            label_ts,
            prior=prior,
            scale=np.ones(1),
            centre=np.zeros((2, 1)),
            anchor=np.zeros(1),
            params=params,
        )

    p, weights = replay(up)
    # Candle 0's outcome is known at candle 5's close, when candle 5 is scored: not before.
    assert np.allclose(weights[:horizon], 0.5) and not np.allclose(weights[horizon], 0.5)
    changed = up.copy()
    changed[80:] = ~changed[80:]  # outcomes of predictions from candle 80 on, realised from candle 85 on
    p2, _ = replay(changed)
    np.testing.assert_array_equal(p2[: 80 + horizon], p[: 80 + horizon])
    assert not np.array_equal(p2[80 + horizon :], p[80 + horizon :])


def test_reweighting_without_updates_is_the_exported_ensemble(trained: tuple[Path, RunInfo], candles_csv: Path) -> None:
    out, run = trained
    _, data = run_data(run, candles_csv)
    fold = walk_forward(data, run.split_sizes())[-1]
    scored = score_fold(
        out,
        run,
        len(run.folds) - 1,
        train=fold.part(data, "train"),
        rows=fold.part(data, "test"),
        params=ReweightingParams(eta=0.0),
    )
    np.testing.assert_allclose(scored.probabilities[REWEIGHTED], scored.probabilities[ENSEMBLE], atol=2e-6)
