"""Models of the retraining tests, all on the bundled hourly BTC candles: a small real champion,
and a deliberately poor trainer (shuffled labels, no shrinkage) for challengers or champions that
must lose.

Small on purpose (one LSTM member of hidden size 8, windows of 32, horizons 1 and 6, one epoch), so
that a retraining with its two evaluations takes seconds; the decisions they test hold for any size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from candlecast.candlefile import CandleTable, bundled_path, read_candles
from models.dataset import SplitSizes, WindowSpec, load_windows
from models.export import export_ensemble, export_run
from models.recent_candles import write_candles
from models.registry import Registry
from models.retrain import ChallengerPlan
from models.training import TrainConfig, predict, train_run

NAME = "btc-test"
CHAMPION_CANDLES = (-3500, -1500)
"""The champion learns from these rows of the bundled file; the retrainings get the 1,500 after."""
RECENT_CANDLES = 1500
HOLDOUT = 300
SPEC = WindowSpec.build(
    length=32, interval="1h", calendar="continuous", gap_policy="reset", max_missing=0, horizons=(1, 6)
)
SIZES = SplitSizes(folds=1, test=200, validation=200, calibration=200, purge=6)
CONFIG = TrainConfig(members=("lstm",), hidden=8, epochs=1, patience=1, batch_size=128, seed=5, threads=1)


def btc_rows(start: int, stop: int | None) -> CandleTable:
    table = read_candles(bundled_path("btcusd_1h.csv"))
    return table.select(np.arange(len(table))[start:stop])


def recent_csv(directory: Path) -> Path:
    """The 1,500 newest hourly candles of the bundled file (May to July 2019)."""
    return write_candles(btc_rows(-RECENT_CANDLES, None), directory / "btc-recent.csv")


def champion_registry(directory: Path) -> Registry:
    """A registry whose current version is ``btc-test/1.0.0``, trained on the 2,000 candles before the recent ones."""
    candles = write_candles(btc_rows(*CHAMPION_CANDLES), directory / "btc-older.csv")
    run_dir = directory / "champion-run"
    train_run(candles, run_dir, spec=SPEC, sizes=SIZES, config=CONFIG, name=NAME, version="1.0.0")
    export_run(run_dir, directory / "champion.pt", data=candles)
    registry = Registry(directory / "registry")
    registry.promote(registry.add(directory / "champion.pt").ref)
    return registry


def shuffled(table: CandleTable, seed: int = 0) -> CandleTable:
    """Each symbol's candles in a random order, its prices rescaled into one continuous path: every
    candle keeps its own shape and return, so a window's history says nothing about its label."""
    rng = np.random.default_rng(seed)
    ohlcv = table.ohlcv.copy()
    for span in table.symbol_slices().values():
        rows = table.ohlcv[span]
        order = rng.permutation(len(rows))
        relative = rows[order, :4] / rows[order, 0:1]
        opens = rows[0, 0] * np.concatenate([[1.0], np.cumprod(relative[:-1, 3])])
        ohlcv[span, :4] = relative * opens[:, None]
        ohlcv[span, 4] = rows[order, 4]
    return CandleTable(table.symbols, table.ts, ohlcv)


def shuffled_trainer(plan: ChallengerPlan, candles: Path, work: Path) -> Path:
    """Train on the candles shuffled, then combine the members without shrinkage: uniform weights and
    a calibration that spreads the logit to unit standard deviation around the base rate. A
    confident model of noise, worse in log loss than any calibrated one."""
    table = shuffled(read_candles(candles))
    noise = write_candles(table, work / "shuffled.csv")
    run_dir = work / "run"
    train_run(
        noise, run_dir, spec=plan.spec, sizes=plan.sizes, config=plan.config, name=plan.name, version=plan.version
    )
    model, ensemble = export_run(run_dir, work / "trained.pt", data=noise, version=plan.version)
    windows = load_windows(noise, plan.spec).windows
    logits = predict(ensemble, windows).member_logits.mean(axis=1)
    scale = 1.0 / (logits.std(axis=0) + 1e-6)
    with torch.no_grad():
        ensemble.weights.fill_(1.0 / len(ensemble.members))
        ensemble.calibration_scale.copy_(torch.from_numpy(scale).float())
        ensemble.calibration_bias.copy_(torch.from_numpy(-scale * logits.mean(axis=0)).float())
        ensemble.drift_coef.zero_()
    manifest = model.manifest
    poor = work / "poor.pt"
    export_ensemble(
        ensemble,
        poor,
        name=manifest.name,
        version=manifest.version,
        window=manifest.window,
        interval=manifest.interval,
        calendar=manifest.calendar,
        gap_policy=manifest.gap_policy,
        max_missing=manifest.max_missing,
        horizons=manifest.horizons,
        quantiles=manifest.quantiles,
        member_names=[m.name for m in manifest.members],
        member_kinds=[m.kind for m in manifest.members],
        training=manifest.training,
        metrics={},
        reference=manifest.reference,
        golden_windows=np.asarray(manifest.golden.input, dtype=np.float32),
        fitted_on="shuffled candles; uniform weights, unit-spread logit, no shrinkage (a test's poor model)",
    )
    return poor
