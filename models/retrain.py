"""``candlecast retrain``: a challenger trained with the champion's configuration on recent candles,
judged against the champion on the same held-out period, promoted only when better.

Steps: find the champion (``Registry.champion``: the registry's version of the model in service, or
the bundled one, adopted into the registry); hold out the last ``holdout_candles`` candle times of
the recent candles; train the challenger on the candles before them with the champion's window,
horizons, members and training settings (``models.training``, exported by ``models.export``); add
it to the registry as the next version; score both on the held-out windows (``models.challenge``);
apply the gate (``models.decision.decide``); move ``current`` to the challenger only if it passed;
record the decision beside the challenger's version either way.

It runs as its own process (systemd/candlecast-retrain.service), never inside the daemon: the
daemon sees a promotion as a new ``current`` pointer and hot-reloads it between two batches.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from candlecast.candlefile import CandleTable, infer_interval
from candlecast.errors import ArtifactError, ConfigError
from models.artifact import Manifest
from models.artifact_evaluation import check_fit, model_spec
from models.challenge import HeldOut, compare
from models.dataset import SplitSizes, WindowSpec, audited_windows, iso
from models.decision import DEFAULT_MARGIN, Decision, decide
from models.evaluation import EvaluationSettings
from models.export import export_run
from models.recent_candles import before, holdout_start, write_candles
from models.registry import Entry, Registry
from models.training import TrainConfig, train_run

EXIT_PROMOTED = 0
EXIT_REFUSED = 3
"""Exit statuses of ``candlecast retrain``; any failure exits 1 (2 for bad options or settings)."""


@dataclass(frozen=True)
class Overrides:
    """Training settings that replace the champion's (None: the champion's own), for small or quick runs."""

    epochs: int | None = None
    members: tuple[str, ...] | None = None
    patience: int | None = None
    threads: int | None = None
    seed: int | None = None
    folds: int | None = None
    test_candles: int | None = None
    validation_candles: int | None = None
    calibration_candles: int | None = None


@dataclass(frozen=True)
class ChallengerPlan:
    """What the challenger is: the champion's name and configuration under a new version."""

    champion: Entry
    manifest: Manifest
    version: str
    spec: WindowSpec
    sizes: SplitSizes
    config: TrainConfig

    @property
    def name(self) -> str:
        return self.manifest.name


def next_version(version: str, taken: set[str]) -> str:
    """The champion's version with its last number raised until it is free (1.1.0 -> 1.1.1)."""
    head, _, last = version.rpartition(".")
    if not last.isdigit():
        head, last = version, "0"
    number = int(last) + 1
    while f"{head}.{number}" in taken:
        number += 1
    return f"{head}.{number}"


def plan_challenger(champion: Entry, manifest: Manifest, version: str, overrides: Overrides) -> ChallengerPlan:
    """The challenger's window, splits and training settings: the champion's manifest (its
    ``training.config``, which ``candlecast export`` fills from the run), then ``overrides``."""
    sizes = _sizes(manifest)
    recorded = dict(manifest.training.config)
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    values: dict[str, Any] = {k: tuple(v) if isinstance(v, list) else v for k, v in recorded.items() if k in known}
    values["quantiles"] = tuple(manifest.quantiles)
    values["device"] = "cpu"
    for option in ("epochs", "members", "patience", "threads", "seed"):
        if (chosen := getattr(overrides, option)) is not None:
            values[option] = chosen
    split = SplitSizes(
        folds=overrides.folds or int(sizes["folds"]),
        test=overrides.test_candles or int(sizes["test"]),
        validation=overrides.validation_candles or int(sizes["validation"]),
        calibration=overrides.calibration_candles or int(sizes["calibration"]),
        purge=int(sizes["purge"]),
    )
    return ChallengerPlan(champion, manifest, version, model_spec(manifest), split, TrainConfig(**values))


class Trainer(Protocol):
    """Trains the challenger on a candle CSV and writes its artifact under ``work``; returns its path."""

    def __call__(self, plan: ChallengerPlan, candles: Path, work: Path) -> Path: ...


def train_challenger(plan: ChallengerPlan, candles: Path, work: Path) -> Path:
    """``candlecast train`` and ``candlecast export`` with the plan's settings."""
    run_dir = work / "run"
    train_run(
        candles, run_dir, spec=plan.spec, sizes=plan.sizes, config=plan.config, name=plan.name, version=plan.version
    )
    path = work / "model.pt"
    export_run(run_dir, path, data=candles, version=plan.version)
    return path


@dataclass(frozen=True)
class RetrainOptions:
    holdout_candles: int | None = None
    """Candle times held out at the end for the comparison; None: the champion's test block length."""
    margin: float = DEFAULT_MARGIN
    evaluation: EvaluationSettings = dataclasses.field(default_factory=EvaluationSettings)
    overrides: Overrides = dataclasses.field(default_factory=Overrides)
    version: str | None = None
    """The challenger's version; None: ``next_version`` of the champion's."""


def adopt_champion(registry: Registry, name: str, fallback: Registry | None) -> Entry:
    """The registry's champion of ``name``; if it has none, the ``fallback`` (bundled) registry's,
    copied into it so that the decision names a version both can be found in."""
    found = registry.champion(name)
    if found is not None:
        return found
    bundled = fallback.champion(name) if fallback is not None else None
    if bundled is None:
        names = sorted(
            {e.name for e in registry.entries()} | {e.name for e in (fallback.entries() if fallback else [])}
        )
        raise ConfigError(f"no model {name!r} in {registry.root} or the bundled registry; known: {', '.join(names)}")
    adopted = registry.add(bundled.artifact)
    if (tracking := bundled.tracking()) is not None:
        registry.record_tracking(adopted, tracking)
    return adopted


def retrain(
    registry: Registry,
    name: str,
    candles: CandleTable,
    *,
    source: dict[str, Any],
    work: Path,
    command: str,
    options: RetrainOptions = RetrainOptions(),
    fallback: Registry | None = None,
    trainer: Trainer = train_challenger,
) -> Decision:
    """Train, compare, decide, record (and promote when the gate passes); returns the decision."""
    champion = adopt_champion(registry, name, fallback)
    champion_model = registry.load(champion)
    manifest = champion_model.manifest
    check_fit(manifest, infer_interval(candles), "the recent candles", registry)
    held_out = options.holdout_candles or int(_sizes(manifest)["test"])
    cut = holdout_start(candles, held_out)
    windows, audit = audited_windows(candles, model_spec(manifest))
    held = HeldOut.at(windows, cut, held_out)
    taken = {e.version for e in registry.entries() if e.name == name}
    version = options.version or next_version(manifest.version, taken)
    if version in taken:
        raise ConfigError(f"version {name}/{version} is already in {registry.root}")
    plan = plan_challenger(champion, manifest, version, options.overrides)
    learned = before(candles, cut)
    work.mkdir(parents=True, exist_ok=True)
    artifact = trainer(plan, write_candles(learned, work / "training.csv"), work)
    challenger = registry.add(artifact)
    comparison = compare(
        (champion.ref, champion_model), (challenger.ref, registry.load(challenger)), held, options.evaluation
    )
    primary = str(manifest.horizons[0])
    outcome, reason = decide(comparison.difference[primary], options.margin, options.evaluation.level)
    trained_to = (manifest.training.calibration or manifest.training.validation).end
    period = {**comparison.holdout, "champion_trained_to": trained_to}
    if trained_to >= period["start"]:
        reason += (
            f"; the champion was fitted on windows up to {trained_to}, inside the held-out period, so its "
            "figures there are in-sample"
        )
    current_before = registry.current_ref()
    if outcome == "promoted":
        holder = current_before.partition("/")[0] if current_before else None
        if holder in (None, name):
            registry.promote(challenger.ref)
        else:
            reason += (
                f"; `current` stays at {current_before} (another model), {challenger.ref} is {name}'s champion now"
            )
    decision = Decision(
        outcome=outcome,
        reason=reason,
        decided_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
        horizon=manifest.horizons[0],
        margin=options.margin,
        level=options.evaluation.level,
        champion=comparison.champion,
        challenger=comparison.challenger,
        difference=comparison.difference,
        holdout=period,
        training={
            **source,
            "rows": len(learned),
            "symbols": sorted({str(s) for s in np.unique(learned.symbols)}),
            "start": iso(int(learned.ts.min())),
            "end": iso(int(learned.ts.max())),
            "recent_candles_rejected": dict(sorted(audit.rejected.items())),
            "sizes": dataclasses.asdict(plan.sizes),
            "config": {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(plan.config).items()},
        },
        current_before=current_before,
        current_after=registry.current_ref(),
        command=command,
    )
    registry.record_decision(challenger, decision)
    return decision


def _sizes(manifest: Manifest) -> dict[str, Any]:
    sizes = manifest.training.config.get("sizes")
    if not isinstance(sizes, dict):
        raise ArtifactError(
            f"{manifest.name}/{manifest.version}: its manifest records no split sizes (not exported from a run)"
        )
    return sizes


def describe_files(paths: Sequence[Path]) -> dict[str, Any]:
    """The ``training.source`` of a decision for candle files."""
    from models.dataset import table_digest

    return {"source": "files", "files": [{"name": p.name, "sha256": table_digest(p)} for p in paths]}
