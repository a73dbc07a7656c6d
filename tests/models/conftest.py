"""One tiny training run on synthetic candles, shared by the model tests.

Unit tests run on synthetic candles; figures about model quality come only from the real data,
in docs/model-card.md.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from models.dataset import SplitSizes, WindowSpec
from models.training import RunInfo, TrainConfig, train_run
from tests.models.synthetic import weekday_candles, write_csv

WINDOW = 32
HORIZONS = (1, 5)


def tiny_spec() -> WindowSpec:
    return WindowSpec.build(
        length=WINDOW, interval="1d", calendar="weekdays", gap_policy="tolerate", max_missing=3, horizons=HORIZONS
    )


TINY_SIZES = SplitSizes(folds=2, test=40, validation=30, calibration=30, purge=5)
TINY_CONFIG = TrainConfig(members=("lstm", "multiscale"), epochs=2, patience=2, batch_size=64, seed=3, threads=1)


def tiny_run(data: Path, out: Path) -> RunInfo:
    return train_run(data, out, spec=tiny_spec(), sizes=TINY_SIZES, config=TINY_CONFIG, name="tiny", version="0.1.0")


@pytest.fixture(scope="session")
def candles_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_csv(tmp_path_factory.mktemp("candles") / "candles.csv", weekday_candles())


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory, candles_csv: Path) -> tuple[Path, RunInfo]:
    out = tmp_path_factory.mktemp("run") / "tiny"
    return out, tiny_run(candles_csv, out)
