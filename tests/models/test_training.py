"""Training: deterministic, normalised on training rows only, honest ensemble fitting."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from candlecast.errors import ArtifactError, ConfigError
from models.dataset import SplitSizes, WindowSet, load_windows, walk_forward
from models.networks import Member, Pathway, WindowFeatures
from models.training import (
    Normalisation,
    RunInfo,
    TrainConfig,
    fit_combination,
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


def _labelled(up: np.ndarray) -> WindowSet:
    n = len(up)
    return WindowSet(
        np.zeros((n, 2, 5), dtype=np.float32),
        np.full(n, "X"),
        np.arange(n, dtype=np.int64),
        np.ones((n, 1), dtype=np.int64),
        np.where(up, 0.01, -0.01)[:, None],
        up[:, None],
        (1,),
    )


def test_combination_uses_an_informative_member_and_ignores_noise() -> None:
    rng = np.random.default_rng(0)
    signal = rng.normal(0, 1, 4000)
    anchor = np.log(0.55 / 0.45)
    # In the fitted family: p = sigmoid(a * (z - mean z) + c) with a = 2 for the member z = signal / 2.
    up = rng.random(4000) < 1 / (1 + np.exp(-(signal - signal.mean() + anchor)))
    logits = np.stack([rng.normal(0, 1, 4000), 0.5 * signal, rng.normal(0, 1, 4000)], axis=1)[:, :, None]
    fitted = fit_combination(logits, _labelled(up), np.array([0.55]), logits)
    assert fitted.weights[:, 0].argmax() == 1 and fitted.weights[1, 0] > 0.8
    np.testing.assert_allclose(fitted.weights.sum(axis=0), 1.0)
    assert 1.5 < fitted.scale[0] < 2.0  # the true 2, shrunk a little by the prior
    assert fitted.member_log_loss[:, 0].argmin() == 1


def test_combination_of_useless_members_predicts_the_training_rate() -> None:
    rng = np.random.default_rng(1)
    up = rng.random(3000) < 0.5
    logits = rng.normal(0, 1, (3000, 3, 1))
    # Members as in training (mean logit 0), labels unrelated to them, and a slice less often up (0.5)
    # than training (0.6): the slice's drift must not become the model's base rate.
    fitted = fit_combination(logits, _labelled(up), np.array([0.6]), rng.normal(0, 1, (3000, 3, 1)))
    assert fitted.scale[0] < 0.15  # what three noise logits can buy on 3000 labels
    # Whatever the calibration slice's own up rate (0.5), the prediction stays near the training rate.
    p = 1 / (1 + np.exp(-(fitted.scale[0] * logits[:, :, 0] @ fitted.weights[:, 0] + fitted.bias[0])))
    assert p.mean() == pytest.approx(0.6, abs=0.01)


def test_tampered_or_pickled_weights_are_refused(trained: tuple[Path, RunInfo], tmp_path: Path) -> None:
    out, run = trained
    copy = tmp_path / "run"
    copy.mkdir()
    (copy / "run.json").write_bytes((out / "run.json").read_bytes())
    state = torch.load(out / run.folds[0].weights_file, weights_only=True)
    state["weights"] = state["weights"].flip(0)
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
