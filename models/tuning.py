"""Hyper-parameter search on walk-forward validation blocks (Optuna, TPE sampler, median pruner).

The search sees only the windows that end before the first calibration slice of the walk-forward
folds ``candlecast train`` builds with the same split sizes (their labels cut there too): no
calibration slice and no test block of any fold is read, so a tuned configuration is still
measured on untouched test blocks. Inside that data it runs its own walk-forward folds: each
trains a trial's ensemble on everything before an early-stopping block, and scores the members'
mean logit on the next block (log loss, mean over horizons), the objective.

A trial picks a window length, a hidden size, the members and a learning rate. After each fold the
running mean is reported, and the pruner stops a trial whose running mean is worse than the
median of earlier trials at that fold. ``trial_done`` sees each finished trial's record as it ends
(``candlecast tune`` records it in MLflow there, so this module never imports MLflow).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from models.calibration import sigmoid
from models.dataset import Fold, SplitSizes, WindowSet, WindowSpec, iso, load_windows, walk_forward
from models.training import SilentProgress, TrainConfig, deterministic, predict, train_members

if TYPE_CHECKING:
    import optuna


@dataclass(frozen=True)
class SearchSpace:
    windows: tuple[int, ...] = (32, 64, 96)
    hidden: tuple[int, ...] = (16, 32, 48)
    members: tuple[str, ...] = ("lstm", "lstm,multiscale", "lstm,attention,multiscale")
    learning_rate: tuple[float, float] = (3e-4, 3e-3)


def validation_log_loss(member_logits: npt.NDArray[np.float64], data: WindowSet) -> float:
    """Log loss of ``sigmoid(mean member logit)`` on the labelled windows, mean over horizons."""
    p = np.clip(sigmoid(member_logits.mean(axis=1)), 1e-7, 1 - 1e-7)
    losses = []
    for j in range(len(data.horizons)):
        v = data.valid[:, j]
        up = data.up[v, j]
        losses.append(float(-np.mean(up * np.log(p[v, j]) + (1 - up) * np.log(1 - p[v, j]))))
    return float(np.mean(losses))


def trial_record(trial: optuna.trial.FrozenTrial) -> dict[str, Any]:
    """A finished trial as the result lists it: its state, choices, objective and the running mean
    reported after each search fold."""
    return {
        "number": trial.number,
        "state": trial.state.name,
        "params": trial.params,
        "value": trial.value,
        "fold_values": [trial.intermediate_values[k] for k in sorted(trial.intermediate_values)],
        "seconds": (trial.datetime_complete - trial.datetime_start).total_seconds()
        if trial.datetime_complete and trial.datetime_start
        else None,
    }


def search_folds(data: WindowSet, sizes: SplitSizes, count: int) -> list[tuple[Fold, WindowSet]]:
    """The search's folds: walk-forward folds of the windows before ``train``'s first calibration
    slice, each with an early-stopping block and a scored block of ``sizes.validation`` candles
    (a 1-candle calibration block between them goes unused)."""
    cutoff = walk_forward(data, sizes)[0].cutoffs[1]
    before = data.select(np.flatnonzero(data.end_ts < cutoff)).labels_before(cutoff)
    inner = SplitSizes(count, sizes.validation, sizes.validation, 1, sizes.purge)
    return [(fold, before) for fold in walk_forward(before, inner)]


def tune(
    data_path: Path,
    *,
    spec_of: Callable[[int], WindowSpec],
    sizes: SplitSizes,
    base: TrainConfig,
    space: SearchSpace,
    trials: int,
    timeout_s: float | None,
    symbols: Sequence[str] | None = None,
    tuning_folds: int = 3,
    trial_done: Callable[[dict[str, Any]], None] | None = None,
) -> dict[str, Any]:
    """Run the search; returns every trial, the best, and the budget spent. ``spec_of(window)``
    gives the ``WindowSpec`` for a window length; ``trial_done`` gets each trial's record (as in
    ``trials``) once it is complete or pruned."""
    import optuna

    started = time.perf_counter()
    cache: dict[int, WindowSet] = {}
    untouched: dict[int, str] = {}

    def objective(trial: optuna.Trial) -> float:
        window = trial.suggest_categorical("window", list(space.windows))
        hidden = trial.suggest_categorical("hidden", list(space.hidden))
        members = trial.suggest_categorical("members", list(space.members))
        learning_rate = trial.suggest_float("learning_rate", *space.learning_rate, log=True)
        if window not in cache:
            cache[window] = load_windows(data_path, spec_of(window), symbols)
        data = cache[window]
        folds = search_folds(data, sizes, tuning_folds)
        untouched[window] = iso(walk_forward(data, sizes)[0].cutoffs[1])
        config = TrainConfig(
            members=tuple(members.split(",")),
            quantiles=base.quantiles,
            epochs=base.epochs,
            batch_size=base.batch_size,
            learning_rate=learning_rate,
            patience=base.patience,
            seed=base.seed,
            device=base.device,
            threads=base.threads,
            hidden=hidden,
        )
        losses = []
        with deterministic(config.threads, config.device):
            for step, (fold, tuning) in enumerate(folds):
                train, validation = fold.part(tuning, "train"), fold.part(tuning, "validation")
                scored = fold.part(tuning, "test")
                ensemble, _ = train_members(train, validation, config, fold.index, SilentProgress())
                losses.append(validation_log_loss(predict(ensemble, scored.windows).member_logits, scored))
                trial.report(float(np.mean(losses)), step)
                if trial.should_prune():
                    raise optuna.TrialPruned()
        return float(np.mean(losses))

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    sampler = optuna.samplers.TPESampler(seed=base.seed)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=2, n_warmup_steps=0)
    study = optuna.create_study(direction="minimize", sampler=sampler, pruner=pruner)
    callbacks = [] if trial_done is None else [lambda _, trial: trial_done(trial_record(trial))]
    study.optimize(objective, n_trials=trials, timeout=timeout_s, callbacks=callbacks)
    rows = [trial_record(t) for t in study.trials]
    complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    best = study.best_trial if complete else None
    return {
        "objective": "log loss of the members' mean logit on each search fold's scored block, mean over horizons "
        "and folds",
        "folds": tuning_folds,
        "sizes": sizes.__dict__,
        "space": {
            "windows": list(space.windows),
            "hidden": list(space.hidden),
            "members": list(space.members),
            "learning_rate": list(space.learning_rate),
        },
        "budget": {
            "trials": len(study.trials),
            "complete": len(complete),
            "pruned": sum(t.state == optuna.trial.TrialState.PRUNED for t in study.trials),
            "seconds": round(time.perf_counter() - started, 1),
            "epochs": base.epochs,
            "threads": base.threads,
        },
        "best": None if best is None else {"number": best.number, "params": best.params, "value": best.value},
        "test_blocks_untouched": {
            str(window): f"no window or label at or after {first} (train's first calibration slice) was read"
            for window, first in untouched.items()
        },
        "trials": rows,
    }
