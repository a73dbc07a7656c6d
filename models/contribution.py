"""Each member kind's scoring cost and its contribution to the ensemble, measured.

**Cost**: milliseconds to score one batch of ``BATCH`` windows through a member's scripted windowed
``forward``, every kind; for a streaming kind also one step for ``BATCH`` symbols (``advance`` then
``emit`` of a one-member streaming ensemble), which is what the daemon runs per candle. Members are
untrained (a forward's cost does not depend on the weights), scored on one thread, and the kinds
alternate in rounds so that a machine's changing load falls on all of them alike; the figure is
the median over the rounds.

**Contribution**, from a training run (``candlecast train``) with the kinds as members: each member's
ensemble weight per horizon in the last fold's combination (fitted on pooled out-of-fold
predictions, ``models.calibration``), and the change in walk-forward test log loss, pooled over
every fold's test block, when the member is left out and every fold's combination is refitted
without it exactly as training fits it (``models.training.combine_fold``), with a paired 95%
block-bootstrap interval over days. The same for the streaming members alone and the windowed
members alone: the ensemble configuration chooses from these figures (docs/model-card.md).

``python -m models.contribution --help`` runs it.
"""

from __future__ import annotations

import argparse
import json
import shlex
import statistics
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import torch

from models.bootstrap import Bootstrap, difference
from models.calibration import OutOfFold, drift_offset, fit_combination, sigmoid
from models.dataset import WindowSet, walk_forward
from models.networks import MEMBER_KINDS, Ensemble, build_member
from models.streaming import STREAMING_KINDS, StreamingEnsemble, build_streaming_member, fit_standardisation
from models.streaming_evaluation import service_log_loss
from models.training import KINDS, deterministic, fold_parts, load_fold, predict, read_run, run_data, train_command

BATCH = 512
FloatArray = npt.NDArray[np.float64]


class KindCost(msgspec.Struct, frozen=True):
    kind: str
    parameters: int
    window_ms: float
    """Median milliseconds of one windowed forward over ``BATCH`` windows."""
    step_ms: float | None
    """Median milliseconds of one step (``advance`` + ``emit``) for ``BATCH`` symbols; None: a windowed kind."""
    state_floats: int
    """Floats of per-symbol state (both copies); 0 for a windowed kind."""


def member_costs(windows: npt.NDArray[np.float32], kinds: Sequence[str], rounds: int, repeats: int) -> list[KindCost]:
    """Each kind's cost on ``windows`` (``[BATCH, T, 5]``), kinds alternated in ``rounds``."""
    horizons, quantiles, length = 3, 3, windows.shape[1]
    x = torch.from_numpy(windows)
    scripted: dict[str, torch.jit.ScriptModule] = {}
    streaming: dict[str, tuple[torch.jit.ScriptModule, int]] = {}
    parameters: dict[str, int] = {}
    for kind in kinds:
        torch.manual_seed(0)
        if kind in STREAMING_KINDS:
            member = build_streaming_member(kind, horizons, quantiles, length)
            ensemble: Ensemble = StreamingEnsemble([member], horizons)
            fit_standardisation(ensemble, x)
            step = torch.jit.script(ensemble.eval())
            streaming[kind] = step, member.state_size
        else:
            ensemble = Ensemble([build_member(kind, horizons, quantiles)], horizons)
        parameters[kind] = sum(p.numel() for p in ensemble.members.parameters())
        scripted[kind] = torch.jit.script(ensemble.eval())
    lookback = x[:, -17:]
    window_ms: dict[str, list[float]] = {k: [] for k in kinds}
    step_ms: dict[str, list[float]] = {k: [] for k in streaming}
    with torch.inference_mode():
        for kind in kinds:  # the profiling executor optimises a graph on its first calls
            for _ in range(3):
                scripted[kind](x)
                if kind in streaming:
                    module, size = streaming[kind]
                    module.emit(module.advance(torch.zeros(2 * len(windows), size), lookback)[::2], x)
        for _ in range(rounds):
            for kind in kinds:
                started = time.perf_counter()
                for _ in range(repeats):
                    scripted[kind](x)
                window_ms[kind].append((time.perf_counter() - started) * 1000 / repeats)
                if kind in streaming:
                    module, size = streaming[kind]
                    state = torch.zeros(2 * len(windows), size)
                    started = time.perf_counter()
                    for _ in range(repeats):
                        stepped = module.advance(state, lookback)
                        module.emit(stepped[::2], x)
                    step_ms[kind].append((time.perf_counter() - started) * 1000 / repeats)
    return [
        KindCost(
            kind=kind,
            parameters=parameters[kind],
            window_ms=round(statistics.median(window_ms[kind]), 2),
            step_ms=round(statistics.median(step_ms[kind]), 2) if kind in step_ms else None,
            state_floats=2 * streaming[kind][1] if kind in streaming else 0,
        )
        for kind in kinds
    ]


@dataclass(frozen=True)
class FoldLogits:
    """One fold's member logits on its training, calibration and test windows."""

    train: FloatArray
    calibration: FloatArray
    test: FloatArray
    parts: tuple[WindowSet, WindowSet, WindowSet]
    cutoff: int


class SubsetFigures(msgspec.Struct, frozen=True):
    members: list[str]
    log_loss: list[float]
    """Per horizon, walk-forward test log loss pooled over the folds' test blocks."""
    change: list[dict[str, float]]
    """Per horizon, this subset's log loss minus the whole ensemble's, with a paired 95% interval."""
    weights: list[list[float]]
    """``[M][H]`` the last fold's ensemble weights."""
    scale: list[float]


def subset_log_loss(
    folds: Sequence[FoldLogits], keep: Sequence[int], horizons: Sequence[int]
) -> tuple[FloatArray, list[FloatArray], list[npt.NDArray[np.int64]], FloatArray]:
    """Refit every fold's combination on members ``keep`` as training does; returns the last fold's
    weights and scale, and per horizon the per-window test log losses and their days."""
    earlier: list[OutOfFold] = []
    losses: list[list[FloatArray]] = [[] for _ in horizons]
    days: list[list[npt.NDArray[np.int64]]] = [[] for _ in horizons]
    weights = scale = np.zeros(0)
    for fold in folds:
        train, calibration, test = fold.parts
        rate = np.array([train.up[train.valid[:, j], j].mean() for j in range(len(horizons))])
        own, pooled = fold_parts(
            fold.train[:, keep],
            train,
            fold.calibration[:, keep],
            calibration,
            cutoff_ts=fold.cutoff,
            earlier=earlier,
            horizons=horizons,
        )
        combination = fit_combination(pooled, rate, own, horizons)
        z = np.einsum("nmh,mh->nh", fold.test[:, keep], combination.weights)
        offset = drift_offset(test.windows, horizons, combination.drift_coef, combination.drift_centre)
        p = np.clip(sigmoid(combination.scale * z + combination.bias + offset), 1e-12, 1 - 1e-12)
        for j in range(len(horizons)):
            valid = test.valid[:, j]
            up = test.up[valid, j]
            losses[j].append(-(up * np.log(p[valid, j]) + (~up) * np.log(1 - p[valid, j])))
            days[j].append(test.end_ts[valid].astype(np.int64))
        earlier.append(OutOfFold(fold.test[:, keep], test, own))
        weights, scale = combination.weights, combination.scale
    return weights, [np.concatenate(x) for x in losses], [np.concatenate(x) for x in days], scale


def contributions(run_dir: Path, *, samples: int, block: int, seed: int) -> list[SubsetFigures]:
    """The whole ensemble, each member left out, the streaming members alone and the windowed alone."""
    run = read_run(run_dir)
    _, data = run_data(run)
    horizons = run.horizons
    folds: list[FoldLogits] = []
    for fold in walk_forward(data, run.split_sizes()):
        ensemble = load_fold(run_dir, run, fold.index)
        train, calibration, test = (fold.part(data, s) for s in ("train", "calibration", "test"))
        folds.append(
            FoldLogits(
                predict(ensemble, train.windows).member_logits,
                predict(ensemble, calibration.windows).member_logits,
                predict(ensemble, test.windows).member_logits,
                (train, calibration, test),
                fold.cutoffs[2],
            )
        )
    names = run.members
    subsets: list[list[int]] = [list(range(len(names)))]
    subsets += [[k for k in range(len(names)) if k != m] for m in range(len(names))]
    streaming = [k for k, n in enumerate(names) if n in STREAMING_KINDS]
    windowed = [k for k, n in enumerate(names) if n not in STREAMING_KINDS]
    subsets += [s for s in (streaming, windowed) if s and len(s) < len(names) and s not in subsets]
    whole: list[FloatArray] = []
    figures: list[SubsetFigures] = []
    for keep in subsets:
        weights, losses, days, scale = subset_log_loss(folds, keep, horizons)
        if not whole:
            whole = losses
        change = []
        for j in range(len(horizons)):
            bootstrap = Bootstrap.over(days[j], block=block, samples=samples, seed=seed)
            delta = float(losses[j].mean() - whole[j].mean())
            change.append(
                dict(
                    difference(bootstrap, delta, bootstrap.mean(losses[j], days[j]), bootstrap.mean(whole[j], days[j]))
                )
            )
        figures.append(
            SubsetFigures(
                members=[names[k] for k in keep],
                log_loss=[float(x.mean()) for x in losses],
                change=change,
                weights=weights.tolist(),
                scale=scale.tolist(),
            )
        )
    return figures


def chosen_members(subsets: Sequence[Mapping[str, Any]], streaming_kinds: Sequence[str]) -> list[str]:
    """The ensemble configuration's choice from ``contributions``' figures (whole ensemble first):
    the streaming members alone when leaving the windowed ones out is not measurably worse (the
    interval of the change in log loss reaches 0 or below at every horizon), else the whole
    ensemble; of the chosen set, the members with weight 0 at every horizon in its own fit are left
    out (they add nothing to the logit)."""
    whole = subsets[0]
    streaming = [n for n in whole["members"] if n in streaming_kinds]
    alone = next((s for s in subsets if s["members"] == streaming), None) if streaming else None
    chosen = alone if alone is not None and all(c["low"] <= 0.0 for c in alone["change"]) else whole
    return [n for n, w in zip(chosen["members"], chosen["weights"], strict=True) if any(x > 0 for x in w)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--run", type=Path, required=True, help="training run whose members are judged")
    parser.add_argument("--rounds", type=int, default=7, help="cost: rounds of every kind in turn")
    parser.add_argument("--repeats", type=int, default=3, help="cost: forwards per kind and round")
    parser.add_argument("--kinds", default=",".join(KINDS), help="cost: member kinds to time")
    parser.add_argument("--bootstrap", type=int, default=1000)
    parser.add_argument("--block", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--streaming-run", type=Path, help="a streaming run: its test log loss at the daemon's histories too"
    )
    parser.add_argument(
        "--beside", type=Path, help="an earlier model card's JSON: its per-fold test log loss is kept beside"
    )
    parser.add_argument("--out", type=Path, required=True, help="JSON file for the figures")
    args = parser.parse_args()
    run = read_run(args.run)
    _, data = run_data(run)
    started = time.perf_counter()
    with deterministic(1, "cpu"):
        subsets = contributions(args.run, samples=args.bootstrap, block=args.block, seed=args.seed)
        service = service_log_loss(args.streaming_run) if args.streaming_run else None
        windows = data.windows[np.linspace(0, len(data) - 1, BATCH).round().astype(np.int64)]
        costs = member_costs(windows, args.kinds.split(","), args.rounds, args.repeats)
    document = {
        "run": {"name": run.name, "version": run.version, "members": run.members, "horizons": run.horizons},
        "train_config": run.config,
        "commands": {
            "train": train_command(run, args.run),
            "contribution": shlex.join(
                ["python", "-m", "models.contribution"]
                + [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items() if v is not None]
            ),
        },
        "sizes": run.sizes,
        "costs": msgspec.to_builtins(costs),
        "subsets": msgspec.to_builtins(subsets),
        "service": service,
        "chosen": chosen_members(msgspec.to_builtins(subsets), list(STREAMING_KINDS)),
        "beside": earlier_walk_forward(args.beside) if args.beside else None,
        "batch": BATCH,
        "seconds": round(time.perf_counter() - started, 1),
        "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "windowed_kinds": list(MEMBER_KINDS),
        "streaming_kinds": list(STREAMING_KINDS),
    }
    args.out.write_text(json.dumps(document, indent=2) + "\n")


def earlier_walk_forward(card: Path) -> dict[str, object]:
    """An earlier card's model, its per-fold test-block log loss and the constant's per horizon, and the
    pinball loss of its return quantiles on the walk-forward test blocks."""
    figures = json.loads(card.read_text())
    folds = {name: goals for name, goals in figures["goals"].items() if name.startswith("fold ")}
    quantiles = figures["sets"]["walk-forward"]["quantiles"]
    pinball = {h: q["ensemble"]["pinball"] for h, q in quantiles.items()}
    return {"model": f"{figures['model']['name']}/{figures['model']['version']}", "folds": folds, "pinball": pinball}


if __name__ == "__main__":
    main()
