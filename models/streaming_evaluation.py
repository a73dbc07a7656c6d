"""Walk-forward comparison of a streaming LSTM member with the windowed LSTM member, on the same folds.

Both are trained the same way (``models.training.train_member``: same data, seeds, loss, early
stopping) on each fold's training block and judged on its test block by log loss at every horizon,
beside the constant probability (the training block's up rate). The streaming member trains on
histories drawn from those the daemon reads (``span/2 + 1 .. span`` candles) and is judged on each
test window at the history the daemon would read for it: the slots since its reader copy's restart
(``daemon.recurrent_state``), at most the window's candles after the lookback.

``python -m models.streaming_evaluation --help`` runs it; docs/model-card.md reports a run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import msgspec
import numpy as np
import numpy.typing as npt
import torch

from candlecast.errors import ConfigError
from daemon.recurrent_state import reader_copies, restart_slots
from models.dataset import SplitSizes, WindowSet, WindowSpec, load_windows, walk_forward
from models.metrics import classification
from models.networks import Ensemble, Member, build_member
from models.streaming import LOOKBACK, StreamingEnsemble, StreamingLstmMember, fit_standardisation
from models.training import (
    EVAL_BATCH,
    Normalisation,
    SilentProgress,
    Tensors,
    TrainConfig,
    deterministic,
    load_fold,
    read_run,
    run_data,
    train_member,
)


class FoldFigures(msgspec.Struct, frozen=True):
    fold: int
    test_windows: int
    log_loss: dict[str, list[float]]
    """Per model (``windowed``, ``streaming``, ``constant``), test log loss per horizon."""
    best_epochs: dict[str, int]
    seconds: float


def service_histories(data: WindowSet, spec: WindowSpec, span: int, lookback: int) -> npt.NDArray[np.int64]:
    """Per window, the history the daemon's reader copy has at its newest candle, in slots, capped
    at the candles the window holds after the lookback."""
    newest = np.asarray([spec.interval.slot_index(int(t)) for t in data.end_ts], dtype=np.int64)
    restarts = restart_slots(newest, span)
    history = newest - restarts[np.arange(len(newest)), reader_copies(restarts)] + 1
    capped: npt.NDArray[np.int64] = np.minimum(history, spec.length - lookback)
    return capped


def member_probabilities(member: Member, windows: np.ndarray, histories: np.ndarray | None) -> np.ndarray:
    """``[N, H]`` the member's uncalibrated up probabilities (at each window's history, if streaming)."""
    member.eval()
    out = np.empty((len(windows), member.head.horizons), dtype=np.float64)
    with torch.no_grad():
        if histories is None or not isinstance(member, StreamingLstmMember):
            for start in range(0, len(windows), EVAL_BATCH):
                logits, _ = member(torch.from_numpy(windows[start : start + EVAL_BATCH]))
                out[start : start + EVAL_BATCH] = torch.sigmoid(logits).double().numpy()
            return out
        for history in np.unique(histories).tolist():
            rows = np.flatnonzero(histories == history)
            for start in range(0, len(rows), EVAL_BATCH):
                chunk = rows[start : start + EVAL_BATCH]
                logits, _ = member.reference(torch.from_numpy(windows[chunk]), int(history))
                out[chunk] = torch.sigmoid(logits).double().numpy()
    return out


def log_losses(p: np.ndarray, data: WindowSet) -> list[float]:
    valid = data.valid
    return [classification(p[valid[:, j], j], data.up[valid[:, j], j])["log_loss"] for j in range(p.shape[1])]


def compare(
    data: WindowSet,
    spec: WindowSpec,
    sizes: SplitSizes,
    config: TrainConfig,
    *,
    hidden: int,
    layers: int,
    quantiles: tuple[float, ...],
) -> list[FoldFigures]:
    """Train and judge both members on every walk-forward fold."""
    levels = torch.tensor(quantiles, dtype=torch.float32)
    horizons = len(spec.horizons)
    figures: list[FoldFigures] = []
    for fold in walk_forward(data, sizes):
        started = time.perf_counter()
        train, validation, test = (fold.part(data, split) for split in ("train", "validation", "test"))
        norm = Normalisation.fit(train, [])
        windowed = build_member("lstm", horizons, len(quantiles), hidden)
        norm.apply(Ensemble([windowed], horizons))
        stream = StreamingLstmMember(
            horizons, len(quantiles), hidden, layers, span=spec.length - LOOKBACK, lookback=LOOKBACK
        )
        holder = StreamingEnsemble([stream], horizons)
        fit_standardisation(holder, torch.from_numpy(train.windows))
        with torch.no_grad():
            stream.head.return_scale.copy_(torch.from_numpy(norm.return_scale).float())
        tensors = Tensors.of(train, "cpu"), Tensors.of(validation, "cpu")
        epochs: dict[str, int] = {}
        for name, member in (("windowed", windowed), ("streaming", stream)):
            best, _, _ = train_member(
                member,
                *tensors,
                config=config,
                seed=config.seed + fold.index,
                levels=levels,
                progress=SilentProgress(),
                label=name,
            )
            epochs[name] = best
            sys.stderr.write(
                f"fold {fold.index}: {name} trained, best epoch {best}, {time.perf_counter() - started:.0f} s\n"
            )
        histories = service_histories(test, spec, stream.span, stream.lookback)
        constant = np.broadcast_to(
            np.asarray([train.up[train.valid[:, j], j].mean() for j in range(horizons)]), (len(test), horizons)
        )
        figures.append(
            FoldFigures(
                fold=fold.index,
                test_windows=len(test),
                log_loss={
                    "windowed": log_losses(member_probabilities(windowed, test.windows, None), test),
                    "streaming": log_losses(member_probabilities(stream, test.windows, histories), test),
                    "constant": log_losses(constant, test),
                },
                best_epochs=epochs,
                seconds=time.perf_counter() - started,
            )
        )
    return figures


def ensemble_probabilities(ensemble: StreamingEnsemble, windows: np.ndarray, histories: np.ndarray) -> np.ndarray:
    """``[N, H]`` a calibrated streaming ensemble's probabilities at each window's history."""
    out = np.empty((len(windows), len(ensemble.calibration_bias)), dtype=np.float64)
    with torch.inference_mode():
        for history in np.unique(histories).tolist():
            rows = np.flatnonzero(histories == history)
            for start in range(0, len(rows), EVAL_BATCH):
                chunk = rows[start : start + EVAL_BATCH]
                out[chunk] = ensemble.reference(torch.from_numpy(windows[chunk]), int(history))[0].double().numpy()
    return out


def service_log_loss(run_dir: Path) -> dict[str, list[list[float]]]:
    """Per fold and horizon, the test log loss of a streaming run's calibrated ensemble at the longest
    history (its windowed ``forward``, what the card's figures score) and at the history the daemon's
    step path reads for each window (``service_histories``)."""
    run = read_run(run_dir)
    _, data = run_data(run)
    spec = run.spec()
    figures: dict[str, list[list[float]]] = {"longest": [], "service": [], "labels": []}
    for fold in walk_forward(data, run.split_sizes()):
        ensemble = load_fold(run_dir, run, fold.index)
        if not isinstance(ensemble, StreamingEnsemble):
            raise ConfigError(f"{run_dir}: fold {fold.index} is not a streaming ensemble")
        test = fold.part(data, "test")
        histories = service_histories(test, spec, ensemble.span, ensemble.lookback)
        longest = np.full(len(test), min(ensemble.span, spec.length - ensemble.lookback))
        figures["longest"].append(log_losses(ensemble_probabilities(ensemble, test.windows, longest), test))
        figures["service"].append(log_losses(ensemble_probabilities(ensemble, test.windows, histories), test))
        figures["labels"].append([float(test.valid[:, j].sum()) for j in range(len(spec.horizons))])
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("data/us_stocks_1d.csv"))
    parser.add_argument("--symbols", default="AAPL,AMZN,GOOG,META,NFLX,NVDA")
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--patience", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=48)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the figures")
    args = parser.parse_args()
    spec = WindowSpec.build(
        length=64, interval="1d", calendar="weekdays", gap_policy="tolerate", max_missing=3, horizons=(1, 5, 20)
    )
    sizes = SplitSizes(folds=args.folds, test=252, validation=126, calibration=126, purge=20)
    config = TrainConfig(
        members=("lstm",), epochs=args.epochs, patience=args.patience, batch_size=256, seed=args.seed, threads=1
    )
    data = load_windows(args.data, spec, args.symbols.split(","))
    with deterministic(1, "cpu"):
        figures = compare(data, spec, sizes, config, hidden=args.hidden, layers=args.layers, quantiles=(0.1, 0.5, 0.9))
    pooled = {
        model: [
            float(np.average([f.log_loss[model][j] for f in figures], weights=[f.test_windows for f in figures]))
            for j in range(len(spec.horizons))
        ]
        for model in ("windowed", "streaming", "constant")
    }
    options = {**vars(args), "data": str(args.data), "out": str(args.out)}
    document = {"folds": msgspec.to_builtins(figures), "pooled_log_loss": pooled, "options": options}
    args.out.write_text(json.dumps(document, indent=2) + "\n")


if __name__ == "__main__":
    main()
