"""The members and the ensemble: TorchScript equals eager, and scores are batch-invariant."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.artifact import BATCH_MULTIPLE, pad_rows
from models.dataset import WindowSet
from models.networks import MEMBER_KINDS, Ensemble, build_member
from models.training import Normalisation, pathway_scales
from tests.support.model import synthetic_windows

HORIZONS, QUANTILES = 3, 3


@pytest.fixture(scope="module")
def ensemble() -> Ensemble:
    """All six member kinds, untrained, with normalisation fitted on synthetic windows and
    non-uniform weights and calibration (invariance is about kernels, not about training)."""
    torch.manual_seed(0)
    model = Ensemble([build_member(k, HORIZONS, QUANTILES) for k in MEMBER_KINDS], HORIZONS)
    windows = synthetic_windows(64, seed=1)
    data = WindowSet(
        windows,
        np.full(64, "X"),
        np.arange(64, dtype=np.int64),
        np.ones((64, HORIZONS), dtype=np.int64),
        np.full((64, HORIZONS), 0.01),
        np.ones((64, HORIZONS), dtype=bool),
        (1, 5, 20),
    )
    Normalisation.fit(data, pathway_scales(model)).apply(model)
    with torch.no_grad():
        model.weights.copy_(torch.softmax(torch.randn(len(MEMBER_KINDS), HORIZONS), dim=0))
        model.calibration_scale.copy_(torch.tensor([1.3, 0.7, 0.2]))
        model.calibration_bias.copy_(torch.tensor([0.05, -0.1, 0.3]))
    return model.eval()


def test_parameter_budget(ensemble: Ensemble) -> None:
    count = sum(p.numel() for p in ensemble.parameters())
    assert 100_000 <= count <= 300_000


def test_every_member_kind_runs_alone() -> None:
    x = torch.from_numpy(synthetic_windows(5))
    for kind in MEMBER_KINDS:
        logits, quantiles = build_member(kind, HORIZONS, QUANTILES).eval()(x)
        assert logits.shape == (5, HORIZONS)
        assert quantiles.shape == (5, HORIZONS, QUANTILES)
        assert torch.all(quantiles[:, :, 1:] >= quantiles[:, :, :-1]), "quantiles must be monotone"


@pytest.fixture(scope="module")
def scripted(ensemble: Ensemble) -> torch.jit.ScriptModule:
    module: torch.jit.ScriptModule = torch.jit.script(ensemble)
    return module


def test_torchscript_equals_eager(ensemble: Ensemble, scripted: torch.jit.ScriptModule) -> None:
    x = torch.from_numpy(pad_rows(synthetic_windows(37, seed=2)))
    with torch.inference_mode():
        eager, script = ensemble(x), scripted(x)
    assert len(eager) == len(script) == 5
    for a, b in zip(eager, script, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)


def test_scores_are_bitwise_batch_invariant(scripted: torch.jit.ScriptModule) -> None:
    """A window scores the same, to the bit, in any padded batch; the reference is batches of 8.

    The scripted module runs as the daemon runs it (default TorchScript executor, which
    re-optimises for new shapes: most of this test's time)."""
    pool = synthetic_windows(600, seed=3)

    def run(windows: np.ndarray) -> list[np.ndarray]:
        with torch.inference_mode():
            outputs = scripted(torch.from_numpy(pad_rows(windows)))
        return [t[: len(windows)].numpy() for t in outputs]

    # References for the first 40 windows and two later blocks of 8 (reference batches are the slow part).
    checked = [*range(40), *range(256, 264), *range(592, 600)]
    reference = {i: [t[i % 8] for t in run(pool[i - i % 8 : i - i % 8 + 8])] for i in checked}
    for size in [*range(1, 41), 64, 257, 600]:
        outputs = run(pool[:size])
        for i in (i for i in checked if i < size):
            for got, want in zip(outputs, reference[i], strict=True):
                np.testing.assert_array_equal(got[i], want, err_msg=f"window {i} differs in a batch of {size}")
    # The same windows in another order and another company score the same too.
    order = np.random.default_rng(4).permutation(40)
    outputs = run(pool[order])
    for row, i in enumerate(order):
        for got, want in zip(outputs, reference[int(i)], strict=True):
            np.testing.assert_array_equal(got[row], want)
    assert BATCH_MULTIPLE == 8
