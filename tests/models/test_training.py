"""Training: deterministic, normalised on training rows only, honest ensemble fitting."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from candlecast.errors import ArtifactError, ConfigError
from models.calibration import CalibrationPart, Standardisation, fit_combination, trailing_rates
from models.dataset import SplitSizes, load_windows, walk_forward
from models.networks import Ensemble, Member, Pathway, WindowFeatures, build_member
from models.training import (
    Normalisation,
    RunInfo,
    TrainConfig,
    load_fold,
    read_run,
    run_data,
)
from tests.models.conftest import TINY_SIZES, tiny_run, tiny_spec


def test_the_same_command_gives_the_same_weights(
    trained: tuple[Path, RunInfo], candles_csv: Path, tmp_path: Path
) -> None:
    again = tiny_run(candles_csv, tmp_path / "again")
    first = trained[1]
    assert [f.weights_sha256 for f in again.folds] == [f.weights_sha256 for f in first.folds]
    histories = [[(m.best_epoch, m.history) for m in f.members] for f in first.folds]
    assert [[(m.best_epoch, m.history) for m in f.members] for f in again.folds] == histories
    # Training leaves the process as it found it.
    assert not torch.are_deterministic_algorithms_enabled()


def test_run_directory_reads_back(trained: tuple[Path, RunInfo]) -> None:
    out, run = trained
    assert read_run(out) == run
    assert len(run.folds) == TINY_SIZES.folds
    for index, fold in enumerate(run.folds):
        ensemble = load_fold(out, run, index)
        assert ensemble.weights.shape == (len(run.members), len(run.horizons))
        torch.testing.assert_close(ensemble.weights.sum(dim=0), torch.ones(len(run.horizons)))
        assert bool(torch.all(ensemble.weights >= 0))
        assert fold.train.end < fold.validation.start < fold.calibration.start < fold.test.start
        assert all(1 <= m.best_epoch <= m.epochs_run for m in fold.members)


def test_normalisation_comes_from_training_rows_only(trained: tuple[Path, RunInfo], candles_csv: Path) -> None:
    out, run = trained
    _, data = run_data(run, candles_csv)
    fold = walk_forward(data, run.split_sizes())[-1]
    train = fold.part(data, "train")
    ensemble = load_fold(out, run, len(run.folds) - 1)
    expected = Normalisation.fit(train, [1, 4, 16])
    leaky = Normalisation.fit(data.select(np.r_[fold.train, fold.validation]), [1, 4, 16])
    pathways = {id(m.features): m.scale for m in ensemble.modules() if isinstance(m, Pathway)}
    for module in ensemble.modules():
        if isinstance(module, WindowFeatures):
            mean, std = expected.stats[pathways.get(id(module), 1)]
            np.testing.assert_allclose(module.mean.numpy(), mean, rtol=1e-5)
            np.testing.assert_allclose(module.std.numpy(), std, rtol=1e-5)
            assert not np.allclose(module.mean.numpy(), leaky.stats[pathways.get(id(module), 1)][0], rtol=1e-5)
    member = ensemble.members[0]
    assert isinstance(member, Member)
    np.testing.assert_allclose(member.head.return_scale.numpy(), expected.return_scale, rtol=1e-5)


def _part(logits: np.ndarray, up: np.ndarray, drift: np.ndarray | None = None) -> CalibrationPart:
    n = len(up)
    return CalibrationPart(
        logits,
        np.zeros((n, 1)) if drift is None else drift[:, None],
        up[:, None],
        np.ones((n, 1), dtype=bool),
        np.arange(n, dtype=np.int64),
    )


def _standardisation(logits: np.ndarray) -> Standardisation:
    return Standardisation(logits.mean(axis=0), logits.std(axis=0), np.array([0.5]), np.array([1.0]))


def test_combination_uses_an_informative_member_and_ignores_noise() -> None:
    """Pooled out-of-fold predictions give the informative member the weight and the right scale."""
    rng = np.random.default_rng(0)
    signal = rng.normal(0, 1, 4000)
    anchor = np.log(0.55 / 0.45)
    # In the fitted family: p = sigmoid(a * (z - mean z) + c) with a = 2 for the member z = signal / 2.
    up = rng.random(4000) < 1 / (1 + np.exp(-(signal - signal.mean() + anchor)))
    logits = np.stack([rng.normal(0, 1, 4000), 0.5 * signal, rng.normal(0, 1, 4000)], axis=1)[:, :, None]
    own = _standardisation(logits)
    # Two folds' predictions, pooled: each standardised with its own model's statistics.
    parts = [
        _part((logits[:2000] - own.mean) / own.spread, up[:2000]),
        _part((logits[2000:] - own.mean) / own.spread, up[2000:]),
    ]
    fitted = fit_combination(parts, np.array([0.55]), own)
    assert fitted.weights[:, 0].argmax() == 1 and fitted.weights[1, 0] > 0.8
    np.testing.assert_allclose(fitted.weights.sum(axis=0), 1.0)
    assert 1.5 < fitted.scale[0] < 2.0  # the true 2, shrunk a little by the prior
    assert fitted.member_log_loss[:, 0].argmin() == 1
    assert fitted.labels == [4000]


def test_combination_of_useless_members_predicts_the_training_rate() -> None:
    """Members without skill get a scale of exactly 0: the horizon predicts the training up rate."""
    rng = np.random.default_rng(1)
    up = rng.random(3000) < 0.5
    logits = rng.normal(0, 1, (3000, 3, 1))
    # Labels unrelated to the members, and out-of-fold labels less often up (0.5) than training
    # (0.6): that drift must not become the model's base rate.
    fitted = fit_combination([_part(logits, up)], np.array([0.6]), _standardisation(logits))
    assert fitted.scale[0] == 0.0 and fitted.drift_coef[0] == 0.0
    assert fitted.bias[0] == pytest.approx(np.log(0.6 / 0.4))


def test_combination_follows_the_trailing_up_rate_when_it_predicts() -> None:
    """A trailing up rate that predicts the outcome gets a positive coefficient (in logit per unit rate)."""
    rng = np.random.default_rng(2)
    rate = rng.uniform(0.3, 0.7, 5000)
    up = rng.random(5000) < rate
    logits = rng.normal(0, 1, (5000, 2, 1))
    standardisation = Standardisation(np.zeros((2, 1)), np.ones((2, 1)), np.array([0.5]), np.array([0.1]))
    fitted = fit_combination([_part(logits, up, (rate - 0.5) / 0.1)], np.array([0.5]), standardisation)
    assert fitted.scale[0] < 0.05  # noise members, whatever they can buy on 5000 labels
    # logit(rate) is about 4 (rate - 0.5) on [0.3, 0.7]; the prior shrinks it a little.
    assert 2.5 < fitted.drift_coef[0] < 4.5
    assert fitted.drift_centre[0] == 0.5


def test_trailing_rates_count_up_moves_inside_the_window() -> None:
    """The numpy trailing rate and the graph's agree: share of close[t+h] > close[t] within the window."""
    close = np.array([1.0, 2.0, 1.0, 3.0, 4.0, 4.0], dtype=np.float32)
    windows = np.repeat(close[None, :, None], 5, axis=2)
    rates = trailing_rates(windows, [1, 2, 6])
    assert rates[0, 0] == pytest.approx(3 / 5)  # 1->2, 1->3, 3->4 up; 2->1 down; 4->4 a tie
    assert rates[0, 1] == pytest.approx(3 / 4)  # 1->1 tie; 2->3, 1->4, 3->4 up
    assert np.isnan(rates[0, 2])
    ensemble = Ensemble([build_member("lstm", 3, 3)], 3, [1, 2, 6])
    graph = ensemble.trailing_rates(torch.from_numpy(windows)).numpy()
    np.testing.assert_allclose(graph[0, :2], rates[0, :2], rtol=1e-6)
    assert graph[0, 2] == ensemble.drift_centre[2].item()


def test_tampered_or_pickled_weights_are_refused(trained: tuple[Path, RunInfo], tmp_path: Path) -> None:
    out, run = trained
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "run.json").write_bytes((out / "run.json").read_bytes())
    state = torch.load(out / run.folds[0].weights_file, weights_only=True)
    state["calibration_bias"] = state["calibration_bias"] + 0.5
    torch.save(state, copy / run.folds[0].weights_file)
    with pytest.raises(ArtifactError, match="weights differ"):
        load_fold(copy, run, 0)

    class Payload:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("code ran while loading",))

    (copy / run.folds[0].weights_file).write_bytes(pickle.dumps(Payload(), protocol=2))
    with pytest.raises(ArtifactError, match="cannot load"):
        load_fold(copy, run, 0)


def test_bad_configurations_are_refused(candles_csv: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="members"):
        TrainConfig(members=("lstm", "gru"))
    with pytest.raises(ConfigError, match="quantiles"):
        TrainConfig(quantiles=(0.9, 0.1))
    with pytest.raises(ConfigError, match="run"):
        read_run(tmp_path)
    data = load_windows(candles_csv, tiny_spec())
    assert walk_forward(data, SplitSizes(folds=1, test=10, validation=10, calibration=10, purge=5))


def test_overlapping_labels_need_more_evidence() -> None:
    """A weak trailing-rate effect kept on 3000 one-candle labels is dropped when they are 20-candle labels."""
    rng = np.random.default_rng(4)
    rate = rng.uniform(0.4, 0.6, 3000)
    up = rng.random(3000) < rate
    logits = rng.normal(0, 1, (3000, 1, 1))
    standardisation = Standardisation(np.zeros((1, 1)), np.ones((1, 1)), np.array([0.5]), np.array([0.058]))
    parts = [_part(logits, up, (rate - 0.5) / 0.058)]
    assert fit_combination(parts, np.array([0.5]), standardisation, [1]).drift_coef[0] > 1.0
    assert fit_combination(parts, np.array([0.5]), standardisation, [20]).drift_coef[0] == 0.0
