"""Training: members one by one on a fold's training windows, early stopping on its validation
windows, then ensemble weights and calibration fitted on its calibration windows pooled with the
earlier folds' out-of-fold predictions on their test blocks (``models.calibration``).

Reproducibility: every member starts from its own seed (``seed + 1000 * fold + member``), batches
come in an order drawn from a generator with that seed, ``torch.use_deterministic_algorithms`` is
on and the thread count is fixed, so the same command on the same machine gives the same weights
(``run.json`` records their digest).

Run directory::

    OUT/run.json        configuration, data digest, splits, per-member histories, weights digests
    OUT/fold-K.pt       state dict of fold K's ensemble (``torch.save``; read with ``weights_only=True``)

When the run is tracked (``candlecast train --tracking-uri``), ``run.json`` names its MLflow run
and each fold is reported to ``fold_done`` as soon as it is trained (``models.tracking``).
"""

from __future__ import annotations

import math
import os
import pickle
import shlex
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

import msgspec
import numpy as np
import numpy.typing as npt
import torch
import torch.nn.functional as F
from torch import Tensor

from candlecast.candlefile import read_candles
from candlecast.errors import ArtifactError, ConfigError, DataError
from models.artifact import DataFile, TimeRange
from models.calibration import CalibrationPart, Combination, OutOfFold, Standardisation, fit_combination
from models.dataset import (
    CandleAudit,
    Fold,
    SplitSizes,
    WindowSet,
    WindowSpec,
    iso,
    load_audited_windows,
    load_windows,
    table_digest,
    walk_forward,
)
from models.features import pool_window, window_features, window_volatility
from models.networks import MEMBER_KINDS, Ensemble, Head, Member, Pathway, WindowFeatures, build_member
from models.registry import TrackingRun
from models.streaming import (
    STREAMING_KINDS,
    StreamingEnsemble,
    StreamingLstmMember,
    build_streaming_member,
    fit_standardisation,
)
from models.torchscript import framework_versions, weights_digest

RUN_FILE = "run.json"
STD_FLOOR = 1e-6
EVAL_BATCH = 1024
KINDS = (*MEMBER_KINDS, *STREAMING_KINDS)
"""Every member kind a run may train: the windowed ones and the streaming ones (``models.streaming``)."""


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters of a run (recorded in ``run.json`` and the manifest)."""

    members: tuple[str, ...] = MEMBER_KINDS
    """Member kinds (``KINDS``); when all of them stream, the ensemble is a ``StreamingEnsemble``."""
    quantiles: tuple[float, ...] = (0.1, 0.5, 0.9)
    epochs: int = 30
    batch_size: int = 256
    learning_rate: float = 1e-3
    weight_decay: float = 1e-4
    patience: int = 4
    quantile_weight: float = 0.5
    """Weight of the pinball loss of the quantiles beside the cross-entropy of the up move."""
    gradient_clip: float = 1.0
    seed: int = 7
    device: str = "cpu"
    threads: int = 2
    hidden: int | None = None
    """Hidden size of every member; None: each kind's own default."""

    def __post_init__(self) -> None:
        unknown = sorted(set(self.members) - set(KINDS))
        if unknown or not self.members:
            raise ConfigError(f"members: unknown {unknown or 'none given'}; known: {', '.join(KINDS)}")
        if list(self.quantiles) != sorted(set(self.quantiles)) or not all(0 < q < 1 for q in self.quantiles):
            raise ConfigError(f"quantiles {list(self.quantiles)} must be ascending levels in (0, 1)")
        if min(self.epochs, self.batch_size, self.patience, self.threads) < 1 or self.learning_rate <= 0:
            raise ConfigError("epochs, batch size, patience and threads must be positive, and so the learning rate")
        if self.hidden is not None and (self.hidden < 4 or self.hidden % 4):
            raise ConfigError(f"hidden size {self.hidden}: a positive multiple of 4 (the attention heads)")


class TrainingProgress(Protocol):
    """Where training reports to (a rich progress bar on the command line, nothing in tests)."""

    def start(self, label: str, steps: int) -> None: ...

    def step(self, train_loss: float) -> None: ...

    def epoch(self, epoch: int, train_loss: float, validation_loss: float, best: float) -> None: ...

    def finish(self) -> None: ...


class SilentProgress:
    def start(self, label: str, steps: int) -> None:
        pass

    def step(self, train_loss: float) -> None:
        pass

    def epoch(self, epoch: int, train_loss: float, validation_loss: float, best: float) -> None:
        pass

    def finish(self) -> None:
        pass


@contextmanager
def deterministic(threads: int, device: str) -> Iterator[None]:
    """Deterministic kernels and a fixed thread count (reductions split work by thread) while
    training; the process's previous settings come back afterwards."""
    if device == "cuda":
        # cuBLAS needs a fixed workspace for deterministic GEMMs; set before CUDA starts.
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    previous = torch.are_deterministic_algorithms_enabled(), torch.get_num_threads(), torch.backends.cudnn.benchmark
    torch.use_deterministic_algorithms(True)
    torch.backends.cudnn.benchmark = False
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous[0])
        torch.set_num_threads(previous[1])
        torch.backends.cudnn.benchmark = previous[2]


@dataclass(frozen=True)
class Tensors:
    """A ``WindowSet`` as tensors for training: windows, up labels, log returns, the label mask and
    each window's volatility (the unit of its quantile errors)."""

    x: Tensor
    up: Tensor
    log_return: Tensor
    valid: Tensor
    sigma: Tensor

    @classmethod
    def of(cls, data: WindowSet, device: str) -> Tensors:
        valid = data.valid
        return cls(
            torch.from_numpy(data.windows).to(device),
            torch.from_numpy(data.up.astype(np.float32)).to(device),
            torch.from_numpy(np.where(valid, data.log_return, 0.0).astype(np.float32)).to(device),
            torch.from_numpy(valid).to(device),
            torch.from_numpy(window_volatility(data.windows).astype(np.float32)).to(device),
        )

    def __len__(self) -> int:
        return int(self.x.shape[0])

    def rows(self, index: Tensor) -> Tensors:
        return Tensors(self.x[index], self.up[index], self.log_return[index], self.valid[index], self.sigma[index])


def member_loss(
    logits: Tensor, quantiles: Tensor, batch: Tensors, *, levels: Tensor, return_scale: Tensor, quantile_weight: float
) -> tuple[Tensor, Tensor]:
    """Summed loss over valid labels and their count: cross-entropy of the up move plus
    ``quantile_weight`` times the pinball loss of each quantile, in units of the window's
    volatility times the return scale (so calm and wild windows weigh alike)."""
    mask = batch.valid.float()
    bce = F.binary_cross_entropy_with_logits(logits, batch.up, reduction="none")
    unit = return_scale[None, :, None] * batch.sigma[:, None, None]
    error = (batch.log_return[:, :, None] - quantiles) / unit
    pinball = torch.maximum(levels * error, (levels - 1) * error).mean(dim=2)
    total = ((bce + quantile_weight * pinball) * mask).sum()
    return total, mask.sum()


@dataclass(frozen=True)
class Normalisation:
    """Feature statistics of training windows, per pooling scale: ``{scale: (mean, std)}``."""

    stats: dict[int, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]]
    return_scale: npt.NDArray[np.float64]
    """Per horizon, the standard deviation of training log returns in units of their window's
    volatility."""

    @classmethod
    def fit(cls, train: WindowSet, scales: Sequence[int]) -> Normalisation:
        stats: dict[int, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}
        windows = train.windows.astype(np.float64)
        for scale in sorted({1, *scales}):
            pooled = windows if scale == 1 else pool_window(windows, scale)
            features = window_features(pooled).reshape(-1, 11)
            stats[scale] = (features.mean(axis=0), features.std(axis=0) + STD_FLOOR)
        returns = np.where(train.valid, train.log_return, np.nan) / window_volatility(windows)[:, None]
        return cls(stats, np.nanstd(returns, axis=0) + STD_FLOOR)

    def apply(self, ensemble: Ensemble) -> None:
        """Write the statistics into every ``WindowFeatures`` and ``Head`` of the ensemble."""

        def put(features: WindowFeatures, scale: int) -> None:
            mean, std = self.stats[scale]
            features.mean.copy_(torch.from_numpy(mean).float())
            features.std.copy_(torch.from_numpy(std).float())

        scale_of = {id(m.features): m.scale for m in ensemble.modules() if isinstance(m, Pathway)}
        with torch.no_grad():
            for module in ensemble.modules():
                if isinstance(module, WindowFeatures):
                    put(module, scale_of.get(id(module), 1))
                if isinstance(module, Head):
                    module.return_scale.copy_(torch.from_numpy(self.return_scale).float())


def pathway_scales(ensemble: Ensemble) -> list[int]:
    return sorted({m.scale for m in ensemble.modules() if isinstance(m, Pathway)})


class MemberResult(msgspec.Struct, frozen=True):
    name: str
    kind: str
    parameters: int
    seed: int
    best_epoch: int
    epochs_run: int
    validation_loss: float
    seconds: float
    history: list[list[float]]
    """Per epoch: mean training loss, validation loss."""


def train_member(
    member: Member,
    train: Tensors,
    validation: Tensors,
    *,
    config: TrainConfig,
    seed: int,
    levels: Tensor,
    progress: TrainingProgress,
    label: str,
) -> tuple[int, float, list[list[float]]]:
    """Adam (AdamW: decoupled weight decay) with a cosine learning-rate schedule and early stopping
    on validation loss; the member ends with its best epoch's weights. Returns the best epoch, its
    loss and the loss history."""
    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    optimiser = torch.optim.AdamW(member.parameters(), lr=config.learning_rate, weight_decay=config.weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(
        optimiser, T_max=config.epochs, eta_min=config.learning_rate / 20
    )
    scale = member.head.return_scale
    steps = math.ceil(len(train) / config.batch_size)
    progress.start(label, steps * config.epochs)
    best_loss, best_epoch, best_state = math.inf, 0, clone_state(member)
    history: list[list[float]] = []
    for epoch in range(1, config.epochs + 1):
        member.train()
        order = torch.randperm(len(train), generator=generator).to(train.x.device)
        total, count = 0.0, 0.0
        for start in range(0, len(train), config.batch_size):
            batch = train.rows(order[start : start + config.batch_size])
            logits, quantiles = member(batch.x)
            loss_sum, n = member_loss(
                logits, quantiles, batch, levels=levels, return_scale=scale, quantile_weight=config.quantile_weight
            )
            loss = loss_sum / n.clamp(min=1.0)
            optimiser.zero_grad(set_to_none=True)
            loss.backward()  # type: ignore[no-untyped-call]
            torch.nn.utils.clip_grad_norm_(member.parameters(), config.gradient_clip)
            optimiser.step()
            total += float(loss_sum.detach())
            count += float(n)
            progress.step(total / max(count, 1.0))
        schedule.step()
        validation_loss = evaluate_member_loss(member, validation, levels, config.quantile_weight)
        history.append([total / max(count, 1.0), validation_loss])
        if validation_loss < best_loss:
            best_loss, best_epoch, best_state = validation_loss, epoch, clone_state(member)
        progress.epoch(epoch, total / max(count, 1.0), validation_loss, best_loss)
        if epoch - best_epoch >= config.patience:
            break
    member.load_state_dict(best_state)
    member.eval()
    progress.finish()
    return best_epoch, best_loss, history


def clone_state(module: torch.nn.Module) -> dict[str, Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def evaluate_member_loss(member: Member, data: Tensors, levels: Tensor, quantile_weight: float) -> float:
    member.eval()
    total, count = 0.0, 0.0
    with torch.no_grad():
        for start in range(0, len(data), EVAL_BATCH):
            batch = data.rows(torch.arange(start, min(start + EVAL_BATCH, len(data)), device=data.x.device))
            logits, quantiles = member(batch.x)
            loss_sum, n = member_loss(
                logits,
                quantiles,
                batch,
                levels=levels,
                return_scale=member.head.return_scale,
                quantile_weight=quantile_weight,
            )
            total += float(loss_sum)
            count += float(n)
    return total / max(count, 1.0)


@dataclass(frozen=True)
class Predictions:
    """Ensemble outputs for a ``WindowSet``, as float64 arrays."""

    member_logits: npt.NDArray[np.float64]
    """``[N, M, H]``"""
    probabilities: npt.NDArray[np.float64]
    """``[N, H]`` calibrated ensemble probabilities."""
    quantiles: npt.NDArray[np.float64]
    """``[N, H, Q]``"""
    disagreement: npt.NDArray[np.float64]
    last_features: npt.NDArray[np.float32]


def predict(ensemble: Ensemble, windows: npt.NDArray[np.float32]) -> Predictions:
    """The eager ensemble's outputs (the exported graph computes the same, see the export tests)."""
    ensemble.eval()
    device = next(ensemble.parameters()).device
    logits, probabilities, quantiles, disagreement, features = [], [], [], [], []
    with torch.inference_mode():
        for start in range(0, len(windows), EVAL_BATCH):
            x = torch.from_numpy(windows[start : start + EVAL_BATCH]).to(device)
            z, q_members, f = ensemble.member_outputs(x)
            p, q, d = ensemble.combine(z, q_members, ensemble.trailing_rates(x))
            logits.append(z.double().cpu().numpy())
            probabilities.append(p.double().cpu().numpy())
            quantiles.append(q.double().cpu().numpy())
            disagreement.append(d.double().cpu().numpy())
            features.append(f[:, -1].float().cpu().numpy())
    return Predictions(
        np.concatenate(logits),
        np.concatenate(probabilities),
        np.concatenate(quantiles),
        np.concatenate(disagreement),
        np.concatenate(features),
    )


def apply_combination(ensemble: Ensemble, combination: Combination) -> None:
    with torch.no_grad():
        ensemble.weights.copy_(torch.from_numpy(combination.weights).float())
        ensemble.calibration_scale.copy_(torch.from_numpy(combination.scale).float())
        ensemble.calibration_bias.copy_(torch.from_numpy(combination.bias).float())
        ensemble.drift_coef.copy_(torch.from_numpy(combination.drift_coef).float())
        ensemble.drift_centre.copy_(torch.from_numpy(combination.drift_centre).float())


def time_range(data: WindowSet) -> TimeRange:
    if len(data) == 0:
        return TimeRange(start="", end="", windows=0)
    return TimeRange(start=iso(int(data.end_ts.min())), end=iso(int(data.end_ts.max())), windows=len(data))


class FoldInfo(msgspec.Struct, frozen=True):
    index: int
    train: TimeRange
    validation: TimeRange
    calibration: TimeRange
    test: TimeRange
    cutoffs: list[int]
    weights_file: str
    weights_sha256: str
    members: list[MemberResult]
    ensemble_weights: list[list[float]]
    calibration_scale: list[float]
    calibration_bias: list[float]
    member_platt: list[list[list[float]]]
    member_log_loss: list[list[float]]
    train_rate: list[float]
    member_train_mean: list[list[float]]
    """``[M][H]`` each member's mean logit on the training windows (the calibration centres on it)."""
    seconds: float
    drift_coef: list[float] = []
    """``[H]`` logit per unit of the window's trailing up rate (``models.calibration``)."""
    drift_centre: list[float] = []
    calibration_labels: list[int] = []
    """``[H]`` pooled out-of-fold labels the combination was fitted on."""


class RunInfo(msgspec.Struct, frozen=True):
    """``run.json``: what was trained, on what, how, and what came out."""

    name: str
    version: str
    created_at: str
    data: DataFile
    data_path: str
    symbols: list[str]
    window: int
    interval: str
    calendar: str
    gap_policy: str
    max_missing: int
    horizons: list[int]
    quantiles: list[float]
    sizes: dict[str, int]
    config: dict[str, object]
    parameters: int
    folds: list[FoldInfo]
    seconds: float
    cpu_seconds: float
    """CPU time of all threads; beside the wall-clock ``seconds`` it shows a machine shared with other work."""
    framework: dict[str, str]
    tracking: TrackingRun | None = None
    """The MLflow run that recorded this training, if it was tracked."""
    audit: CandleAudit | None = None
    """Rows of the data the daemon would reject, and the jumps cut out of the windows."""
    recalibrated: bool = False
    """Whether ``candlecast calibrate`` refitted the combination after training (``recalibrate_run``)."""

    def spec(self) -> WindowSpec:
        return WindowSpec.build(
            length=self.window,
            interval=self.interval,
            calendar=self.calendar,
            gap_policy=self.gap_policy,
            max_missing=self.max_missing,
            horizons=self.horizons,
        )

    def split_sizes(self) -> SplitSizes:
        return SplitSizes(**self.sizes)

    @property
    def hidden(self) -> int | None:
        value = self.config.get("hidden")
        return value if isinstance(value, int) else None

    @property
    def members(self) -> list[str]:
        return [m.kind for m in self.folds[-1].members]


def new_ensemble(
    kinds: Sequence[str],
    horizons: Sequence[int],
    quantiles: int,
    seeds: Sequence[int] | None,
    hidden: int | None = None,
    *,
    window: int,
) -> Ensemble:
    """Fresh members of ``kinds``, each initialised from its seed in ``seeds`` (None: the global
    generator as it stands, for weights that are loaded over them); a ``StreamingEnsemble`` when
    every member streams (the artifact then exports the step path), else an ``Ensemble`` scoring
    whole windows."""
    members: list[Member] = []
    member_seeds: Sequence[int | None] = [None] * len(kinds) if seeds is None else seeds
    for kind, seed in zip(kinds, member_seeds, strict=True):
        if seed is not None:
            torch.manual_seed(seed)
        if kind in STREAMING_KINDS:
            members.append(build_streaming_member(kind, len(horizons), quantiles, window, hidden))
        else:
            members.append(build_member(kind, len(horizons), quantiles, hidden))
    streaming = [m for m in members if isinstance(m, StreamingLstmMember)]
    if len(streaming) == len(members):
        return StreamingEnsemble(streaming, len(horizons), list(horizons))
    return Ensemble(members, len(horizons), list(horizons))


def train_members(
    train: WindowSet, validation: WindowSet, config: TrainConfig, fold: int, progress: TrainingProgress
) -> tuple[Ensemble, list[MemberResult]]:
    """A fold's members, each trained on ``train`` with early stopping on ``validation``; the
    ensemble comes back on the CPU, in eval mode, with uniform weights and no calibration."""
    levels = torch.tensor(config.quantiles)
    seeds = [config.seed + 1000 * fold + m for m in range(len(config.members))]
    ensemble = new_ensemble(
        config.members, train.horizons, len(config.quantiles), seeds, config.hidden, window=train.windows.shape[1]
    )
    Normalisation.fit(train, pathway_scales(ensemble)).apply(ensemble)
    fit_standardisation(ensemble, torch.from_numpy(train.windows))
    ensemble.to(config.device)
    train_t, validation_t = Tensors.of(train, config.device), Tensors.of(validation, config.device)
    levels = levels.to(config.device)
    results: list[MemberResult] = []
    for m, (kind, member) in enumerate(zip(config.members, ensemble.members, strict=True)):
        assert isinstance(member, Member)
        member_started = time.perf_counter()
        best_epoch, best_loss, history = train_member(
            member,
            train_t,
            validation_t,
            config=config,
            seed=seeds[m],
            levels=levels,
            progress=progress,
            label=f"fold {fold} {kind}",
        )
        results.append(
            MemberResult(
                name=kind,
                kind=kind,
                parameters=sum(p.numel() for p in member.parameters()),
                seed=seeds[m],
                best_epoch=best_epoch,
                epochs_run=len(history),
                validation_loss=best_loss,
                seconds=round(time.perf_counter() - member_started, 1),
                history=history,
            )
        )
    ensemble.cpu().eval()
    return ensemble, results


def train_fold(
    data: WindowSet,
    fold: Fold,
    config: TrainConfig,
    progress: TrainingProgress,
    earlier: Sequence[OutOfFold] = (),
) -> tuple[Ensemble, FoldInfo, OutOfFold]:
    """Train one fold's ensemble and fit its combination on its calibration slice pooled with the
    ``earlier`` folds' test-block predictions; returns it with its own test-block predictions
    (``FoldInfo.weights_file`` is left for the caller to fill)."""
    started = time.perf_counter()
    train, validation, calibration = (fold.part(data, s) for s in ("train", "validation", "calibration"))
    ensemble, results = train_members(train, validation, config, fold.index, progress)
    combination, train_rate, out_of_fold = combine_fold(ensemble, data, fold, earlier)
    test = out_of_fold.data
    info = FoldInfo(
        index=fold.index,
        train=time_range(train),
        validation=time_range(validation),
        calibration=time_range(calibration),
        test=time_range(test),
        cutoffs=list(fold.cutoffs),
        weights_file="",
        weights_sha256=weights_digest(ensemble),
        members=results,
        ensemble_weights=combination.weights.tolist(),
        calibration_scale=combination.scale.tolist(),
        calibration_bias=combination.bias.tolist(),
        member_platt=combination.member_platt.tolist(),
        member_log_loss=combination.member_log_loss.tolist(),
        train_rate=train_rate.tolist(),
        member_train_mean=combination.member_train_mean.tolist(),
        seconds=round(time.perf_counter() - started, 1),
        drift_coef=combination.drift_coef.tolist(),
        drift_centre=combination.drift_centre.tolist(),
        calibration_labels=combination.labels,
    )
    return ensemble, info, out_of_fold


def fold_parts(
    train_logits: npt.NDArray[np.float64],
    train: WindowSet,
    calibration_logits: npt.NDArray[np.float64],
    calibration: WindowSet,
    *,
    cutoff_ts: int,
    earlier: Sequence[OutOfFold],
    horizons: Sequence[int],
) -> tuple[Standardisation, list[CalibrationPart]]:
    """A fold's standardisation (fitted on its training-slice member logits) and the parts its
    combination is fitted on: the ``earlier`` folds' test-block predictions, then its own
    calibration slice, each without labels realised at or after ``cutoff_ts``."""
    own = Standardisation.fit(train_logits, train.windows, horizons)
    parts = [oof.part(cutoff_ts, own) for oof in earlier]
    parts.append(OutOfFold(calibration_logits, calibration, own).part(cutoff_ts, own))
    return own, parts


def ensemble_fold_parts(
    ensemble: Ensemble, data: WindowSet, fold: Fold, earlier: Sequence[OutOfFold]
) -> tuple[WindowSet, WindowSet, Standardisation, list[CalibrationPart]]:
    """A trained fold's training and test slices, and ``fold_parts`` on its members' logits for its
    training and calibration slices: the standardisation and the parts its combination is fitted on."""
    train, calibration, test = (fold.part(data, s) for s in ("train", "calibration", "test"))
    own, parts = fold_parts(
        predict(ensemble, train.windows).member_logits,
        train,
        predict(ensemble, calibration.windows).member_logits,
        calibration,
        cutoff_ts=fold.cutoffs[2],
        earlier=earlier,
        horizons=data.horizons,
    )
    return train, test, own, parts


def combine_fold(
    ensemble: Ensemble, data: WindowSet, fold: Fold, earlier: Sequence[OutOfFold]
) -> tuple[Combination, npt.NDArray[np.float64], OutOfFold]:
    """Fit a trained fold's combination on its calibration slice pooled with the ``earlier`` folds'
    test-block predictions and write it into the ensemble; returns it, the training up rate and
    the fold's own test-block predictions."""
    train, test, own, pooled = ensemble_fold_parts(ensemble, data, fold, earlier)
    train_rate = np.array([train.up[train.valid[:, j], j].mean() for j in range(len(data.horizons))])
    combination = fit_combination(pooled, train_rate, own, data.horizons)
    apply_combination(ensemble, combination)
    return combination, train_rate, OutOfFold(predict(ensemble, test.windows).member_logits, test, own)


def recalibrate_run(run_dir: Path, data_path: Path | None = None, version: str | None = None) -> RunInfo:
    """Fit every fold's combination again from its saved members, exactly as ``train`` fits it
    after training them (the members' weights do not change), for runs trained before the
    combination changed; rewrites the fold weights and ``run.json`` (under ``version`` if given:
    a changed combination is a new model)."""
    run = read_run(run_dir)
    path, data = run_data(run, data_path)
    audit = run.audit or load_audited_windows(path, run.spec(), run.symbols)[1]
    folds = walk_forward(data, run.split_sizes())
    earlier: list[OutOfFold] = []
    infos: list[FoldInfo] = []
    with deterministic(int(str(run.config["threads"])), "cpu"):
        for fold, info in zip(folds, run.folds, strict=True):
            ensemble = load_fold(run_dir, run, fold.index)
            combination, train_rate, out_of_fold = combine_fold(ensemble, data, fold, earlier)
            earlier.append(out_of_fold)
            torch.save(ensemble.state_dict(), run_dir / info.weights_file)
            infos.append(
                msgspec.structs.replace(
                    info,
                    weights_sha256=weights_digest(ensemble),
                    ensemble_weights=combination.weights.tolist(),
                    calibration_scale=combination.scale.tolist(),
                    calibration_bias=combination.bias.tolist(),
                    member_platt=combination.member_platt.tolist(),
                    member_log_loss=combination.member_log_loss.tolist(),
                    train_rate=train_rate.tolist(),
                    member_train_mean=combination.member_train_mean.tolist(),
                    drift_coef=combination.drift_coef.tolist(),
                    drift_centre=combination.drift_centre.tolist(),
                    calibration_labels=combination.labels,
                )
            )
    updated = msgspec.structs.replace(run, folds=infos, recalibrated=True, audit=audit, version=version or run.version)
    (run_dir / RUN_FILE).write_bytes(msgspec.json.format(msgspec.json.encode(updated)) + b"\n")
    return updated


def train_run(
    data_path: Path,
    out: Path,
    *,
    spec: WindowSpec,
    sizes: SplitSizes,
    config: TrainConfig,
    name: str,
    version: str,
    symbols: Sequence[str] | None = None,
    progress: TrainingProgress | None = None,
    tracking: TrackingRun | None = None,
    fold_done: Callable[[FoldInfo], None] | None = None,
) -> RunInfo:
    """Train every walk-forward fold and write the run directory; ``fold_done`` hears of each
    fold once its weights are saved, ``tracking`` is recorded in ``run.json``."""
    started, cpu_started = time.perf_counter(), time.process_time()
    data, audit = load_audited_windows(data_path, spec, symbols)
    folds = walk_forward(data, sizes)
    out.mkdir(parents=True, exist_ok=True)
    infos: list[FoldInfo] = []
    parameters = 0
    earlier: list[OutOfFold] = []
    with deterministic(config.threads, config.device):
        for fold in folds:
            ensemble, info, out_of_fold = train_fold(data, fold, config, progress or SilentProgress(), earlier)
            earlier.append(out_of_fold)
            weights_file = f"fold-{fold.index}.pt"
            torch.save(ensemble.state_dict(), out / weights_file)
            infos.append(msgspec.structs.replace(info, weights_file=weights_file))
            if fold_done is not None:
                fold_done(infos[-1])
            parameters = sum(p.numel() for p in ensemble.parameters())
    run = RunInfo(
        name=name,
        version=version,
        created_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        data=DataFile(name=data_path.name, sha256=table_digest(data_path), rows=len(read_candles(data_path))),
        data_path=display_path(data_path),
        symbols=sorted({str(s) for s in data.symbols}),
        window=spec.length,
        interval=spec.interval.name,
        calendar=spec.interval.calendar,
        gap_policy=spec.policy.mode.value,
        max_missing=spec.policy.max_missing,
        horizons=list(spec.horizons),
        quantiles=list(config.quantiles),
        sizes=asdict(sizes),
        config={k: list(v) if isinstance(v, tuple) else v for k, v in asdict(config).items()},
        parameters=parameters,
        folds=infos,
        seconds=round(time.perf_counter() - started, 1),
        cpu_seconds=round(time.process_time() - cpu_started, 1),
        framework=framework_versions(),
        tracking=tracking,
        audit=audit,
    )
    (out / RUN_FILE).write_bytes(msgspec.json.format(msgspec.json.encode(run)) + b"\n")
    return run


def display_path(path: Path) -> str:
    """A path relative to the working directory when it is inside it (runs move with checkouts)."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def train_command(run: RunInfo, out: Path) -> str:
    """The ``candlecast train`` command line that reproduces a run."""
    config = run.config
    options: dict[str, object] = {
        "data": run.data_path,
        "out": out,
        "name": run.name,
        "version": run.version,
        "symbols": ",".join(run.symbols),
        "interval": run.interval,
        "calendar": run.calendar,
        "gap-policy": run.gap_policy,
        "max-missing": run.max_missing,
        "window": run.window,
        "horizons": ",".join(map(str, run.horizons)),
        "quantiles": ",".join(map(str, run.quantiles)),
        "members": ",".join(run.members),
        "folds": run.sizes["folds"],
        "test-candles": run.sizes["test"],
        "validation-candles": run.sizes["validation"],
        "calibration-candles": run.sizes["calibration"],
        "purge": run.sizes["purge"],
        "epochs": config["epochs"],
        "patience": config["patience"],
        "batch-size": config["batch_size"],
        "learning-rate": config["learning_rate"],
        "seed": config["seed"],
        "device": config["device"],
        "threads": config["threads"],
    }
    if run.hidden is not None:
        options["hidden"] = run.hidden
    return shlex.join(["candlecast", "train", *(f"--{k}={v}" for k, v in options.items())])


def read_run(run_dir: Path) -> RunInfo:
    path = run_dir / RUN_FILE
    try:
        return msgspec.json.decode(path.read_bytes(), type=RunInfo)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the run ({exc.strerror}); train one with `candlecast train`") from exc
    except msgspec.DecodeError as exc:
        raise ConfigError(f"{path}: not a run description ({exc})") from exc


def load_fold(run_dir: Path, run: RunInfo, fold: int) -> Ensemble:
    """A fold's trained ensemble, its weights checked against the digest in ``run.json``."""
    info = run.folds[fold]
    kinds = run.members
    ensemble = new_ensemble(kinds, run.horizons, len(run.quantiles), None, run.hidden, window=run.window)
    path = run_dir / info.weights_file
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
        ensemble.load_state_dict(state)
    except (OSError, RuntimeError, KeyError, pickle.UnpicklingError) as exc:
        raise ArtifactError(f"{path}: cannot load the fold's weights ({exc})") from exc
    if weights_digest(ensemble) != info.weights_sha256:
        raise ArtifactError(f"{path}: weights differ from those recorded in {RUN_FILE}")
    return ensemble.eval()


def run_data(run: RunInfo, data_path: Path | None = None) -> tuple[Path, WindowSet]:
    """The run's training data, checked against its recorded digest."""
    path = data_path or Path(run.data_path)
    digest = table_digest(path)
    if digest != run.data.sha256:
        raise DataError(f"{path}: sha256 {digest} differs from the training data's {run.data.sha256}")
    return path, load_windows(path, run.spec(), run.symbols)
