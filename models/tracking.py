"""Recording runs in MLflow: a training's options, data and per-epoch losses; an evaluation's
figures with their intervals and its plots; an exported artifact with its manifest; a search's
settings, budget and trials.

Optional (``pip install 'candlecast[tracking]'``): the model commands import this module only
when tracking is on, and the daemon never does (a ruff rule and a test hold it to that).
``TrackedRun.start`` is the entry point for any command that trains or scores (``retrain`` too,
once it exists); the rest of this module turns candlecast's records into
MLflow parameters, metrics and artifacts.

Layout of a run in MLflow:

- training, in experiment NAME: parameters ``data.*``, ``symbols``, ``window``... ``config.*``,
  ``sizes.*``, ``foldK.SPLIT.start|end|windows``; metrics ``foldK/MEMBER/train_loss`` and
  ``validation_loss`` per epoch (step = epoch), ``foldK/MEMBER/best_epoch`` (early stopping);
  artifact ``run.json``; after ``candlecast export``, ``model/model.pt`` and ``model/manifest.json``.
- search (``candlecast tune``), in experiment ``tune``: parameters ``data.*``, ``symbols``, ``space.*``,
  ``options.*``, ``sizes.*``, then ``best.*``; metrics ``budget/trials|complete|pruned|seconds`` and
  ``best_objective``; artifact the result JSON. Each trial a child run ``trial N``: parameters
  ``window``, ``hidden``, ``members``, ``learning_rate``; metrics ``validation_log_loss`` (the running
  mean after each search fold, step = fold) and ``objective``; tag ``candlecast.trial_state``.
- evaluation, a child run of its training: ``SET/MODEL/hH/FIGURE`` with ``FIGURE_ci/low|high``,
  ``SET/trading/STRATEGY/FIGURE``, ``SET/quantiles/hH/...``; artifacts ``report/`` (JSON,
  Markdown, plots).
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from types import TracebackType
from typing import Any

from mlflow.entities import Metric, Param, RunTag
from mlflow.tracking import MlflowClient

from models.artifact import Manifest
from models.dataset import table_digest
from models.registry import Entry, TrackingRun
from models.training import RUN_FILE, FoldInfo, RunInfo

SQLITE = "sqlite:///"
ARTIFACT_ROOT = "mlruns"
"""Beside a SQLite store, the folder of its artifacts (MLflow's own default name)."""
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
SKIPPED_FIGURES = frozenset({"equity"})
"""Series, not figures: they stay in the report's JSON and plots."""
COMMAND_TAG = "candlecast.command"
KIND_TAG = "candlecast.kind"
TRAINING_RUN_TAG = "candlecast.training_run"
TRIAL_STATE_TAG = "candlecast.trial_state"
TUNE_EXPERIMENT = "tune"
BUDGET_FIGURES = ("trials", "complete", "pruned", "seconds")


def store_uri(uri: str) -> str:
    """A relative SQLite path made absolute: later commands, run from elsewhere, find the same store."""
    if uri.startswith(SQLITE) and not uri.startswith(SQLITE + "/"):
        return SQLITE + str(Path(uri.removeprefix(SQLITE)).resolve())
    return uri


def _artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts of a local SQLite store go beside it (MLflow would put them under the working
    directory of whichever command created the experiment)."""
    if not uri.startswith(SQLITE):
        return None
    return (Path(uri.removeprefix(SQLITE)).parent / ARTIFACT_ROOT / _slug(experiment)).as_uri()


def _slug(text: str) -> str:
    """A name MLflow accepts in a metric key, readable: ``ensemble, long/short by p > 0.5`` ->
    ``ensemble-long-short-by-p-0.5``."""
    return re.sub(r"[^A-Za-z0-9_.]+", "-", text).strip("-") or "-"


class TrackedRun:
    """An MLflow run being written; leaving it as a context marks it finished, failed when an
    exception ended it, or killed on Ctrl-C."""

    def __init__(self, client: MlflowClient, ref: TrackingRun) -> None:
        self.client = client
        self.ref = ref

    @classmethod
    def start(
        cls,
        uri: str,
        *,
        experiment: str,
        name: str,
        parent: TrackingRun | None = None,
        tags: Mapping[str, str] | None = None,
    ) -> TrackedRun:
        """A new run in ``experiment`` (created if needed); a child of ``parent`` when that run
        is in the same store, else tagged with its id."""
        uri = store_uri(uri)
        client = MlflowClient(tracking_uri=uri)
        found = client.get_experiment_by_name(experiment)
        experiment_id = (
            found.experiment_id
            if found is not None
            else client.create_experiment(experiment, artifact_location=_artifact_location(uri, experiment))
        )
        run_tags = dict(tags or {})
        if parent is not None:
            run_tags[TRAINING_RUN_TAG] = parent.run_id
            if store_uri(parent.uri) == uri:
                run_tags["mlflow.parentRunId"] = parent.run_id
        run = client.create_run(experiment_id, tags=run_tags, run_name=name)
        return cls(client, TrackingRun(uri=uri, run_id=run.info.run_id))

    @classmethod
    def existing(cls, ref: TrackingRun) -> TrackedRun:
        """A run recorded earlier (MLflow accepts more records in a finished run)."""
        return cls(MlflowClient(tracking_uri=store_uri(ref.uri)), ref)

    def __enter__(self) -> TrackedRun:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, traceback: TracebackType | None
    ) -> None:
        status = "FINISHED" if kind is None else "KILLED" if issubclass(kind, KeyboardInterrupt) else "FAILED"
        self.client.set_terminated(self.ref.run_id, status=status)

    def log_params(self, params: Mapping[str, object]) -> None:
        items = [Param(key, str(value)) for key, value in params.items()]
        for start in range(0, len(items), PARAMS_PER_BATCH):
            self.client.log_batch(self.ref.run_id, params=items[start : start + PARAMS_PER_BATCH])

    def log_metrics(self, metrics: Iterable[tuple[str, float, int]]) -> None:
        """``(key, value, step)`` triples; NaN and infinities are left out (undefined figures,
        such as an AUC with one class)."""
        now = int(time.time() * 1000)
        items = [Metric(key, float(value), now, step) for key, value, step in metrics if math.isfinite(value)]
        for start in range(0, len(items), METRICS_PER_BATCH):
            self.client.log_batch(self.ref.run_id, metrics=items[start : start + METRICS_PER_BATCH])

    def set_tags(self, tags: Mapping[str, str]) -> None:
        self.client.log_batch(self.ref.run_id, tags=[RunTag(key, value) for key, value in tags.items()])

    def log_file(self, path: Path, folder: str | None = None) -> None:
        self.client.log_artifact(self.ref.run_id, str(path), folder)

    def log_fold(self, fold: FoldInfo) -> None:
        """A trained fold's losses and ranges, as soon as it is done (``train_run``'s ``fold_done``)."""
        self.log_metrics(fold_metrics(fold))
        self.log_params(fold_params(fold))

    def log_training(self, run: RunInfo, run_dir: Path, command: str) -> None:
        """What the whole training was: its options, data, totals and ``run.json``."""
        self.log_params(training_params(run))
        self.log_metrics(
            [("parameters", run.parameters, 0), ("seconds", run.seconds, 0), ("cpu_seconds", run.cpu_seconds, 0)]
        )
        self.set_tags({COMMAND_TAG: command})
        self.log_file(run_dir / RUN_FILE)


def start_training(uri: str, *, name: str, version: str) -> TrackedRun:
    return TrackedRun.start(uri, experiment=name, name=f"train {name} {version}", tags={KIND_TAG: "train"})


def training_params(run: RunInfo) -> dict[str, object]:
    """Every option of the training, its data file with its digest, symbols and date range."""
    first, last = run.folds[0], run.folds[-1]
    return {
        "name": run.name,
        "version": run.version,
        "data.name": run.data.name,
        "data.path": run.data_path,
        "data.sha256": run.data.sha256,
        "data.rows": run.data.rows,
        "data.start": first.train.start,
        "data.end": last.test.end,
        "symbols": ",".join(run.symbols),
        "window": run.window,
        "interval": run.interval,
        "calendar": run.calendar,
        "gap_policy": run.gap_policy,
        "max_missing": run.max_missing,
        "horizons": ",".join(map(str, run.horizons)),
        **{f"sizes.{key}": value for key, value in run.sizes.items()},
        **{f"config.{key}": _text(value) for key, value in run.config.items()},
        **{f"framework.{key}": value for key, value in run.framework.items()},
    }


def _text(value: object) -> str:
    return ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)


def fold_params(fold: FoldInfo) -> dict[str, object]:
    ranges = {"train": fold.train, "validation": fold.validation, "calibration": fold.calibration, "test": fold.test}
    params: dict[str, object] = {f"fold{fold.index}.weights_sha256": fold.weights_sha256}
    for split, span in ranges.items():
        prefix = f"fold{fold.index}.{split}"
        params |= {f"{prefix}.start": span.start, f"{prefix}.end": span.end, f"{prefix}.windows": span.windows}
    return params


def fold_metrics(fold: FoldInfo) -> Iterator[tuple[str, float, int]]:
    """Per member: training and validation loss at each epoch, and the epoch early stopping kept."""
    prefix = f"fold{fold.index}"
    for member in fold.members:
        for epoch, (train_loss, validation_loss) in enumerate(member.history, start=1):
            yield f"{prefix}/{member.name}/train_loss", train_loss, epoch
            yield f"{prefix}/{member.name}/validation_loss", validation_loss, epoch
        yield f"{prefix}/{member.name}/best_epoch", member.best_epoch, 0
        yield f"{prefix}/{member.name}/epochs_run", member.epochs_run, 0
        yield f"{prefix}/{member.name}/best_validation_loss", member.validation_loss, 0
    yield f"{prefix}/seconds", fold.seconds, 0


def start_tuning(uri: str, *, data_name: str, params: Mapping[str, object]) -> TrackedRun:
    """The search's run in experiment ``tune``, with its settings and data recorded before any trial,
    so a search that fails or is interrupted still shows what it was."""
    tracked = TrackedRun.start(uri, experiment=TUNE_EXPERIMENT, name=f"tune {data_name}", tags={KIND_TAG: "tune"})
    tracked.log_params(params)
    return tracked


def record_trial(search: TrackedRun, trial: Mapping[str, Any]) -> None:
    """A finished trial (``tune``'s ``trial_done`` record) as a child run of the search."""
    tags = {KIND_TAG: "tune-trial", TRIAL_STATE_TAG: str(trial["state"])}
    name = f"trial {trial['number']}"
    with TrackedRun.start(search.ref.uri, experiment=TUNE_EXPERIMENT, name=name, parent=search.ref, tags=tags) as run:
        run.log_params({"number": trial["number"], **trial["params"]})
        metrics = [("validation_log_loss", value, step) for step, value in enumerate(trial["fold_values"])]
        # Optuna gives a pruned trial the running mean it was stopped at as its value; only a complete
        # trial's is the objective.
        if trial["state"] == "COMPLETE":
            metrics.append(("objective", trial["value"], 0))
        if trial["seconds"] is not None:
            metrics.append(("seconds", trial["seconds"], 0))
        run.log_metrics(metrics)


def record_search(search: TrackedRun, result: Mapping[str, Any], written: Path) -> None:
    """The search's outcome: its budget, the best trial, where each window length stopped reading,
    and the result file."""
    budget = result["budget"]
    metrics = [(f"budget/{key}", float(budget[key]), 0) for key in BUDGET_FIGURES]
    best = result["best"]
    params: dict[str, object] = {
        f"untouched.window{window}": text for window, text in result["test_blocks_untouched"].items()
    }
    if best is not None:
        metrics.append(("best_objective", best["value"], 0))
        params |= {"best.number": best["number"], **{f"best.{key}": value for key, value in best["params"].items()}}
    search.log_metrics(metrics)
    search.log_params(params)
    search.log_file(written)


def record_evaluation(
    uri: str,
    *,
    name: str,
    version: str,
    trained: TrackingRun | None,
    figures: Mapping[str, Any],
    written: Iterable[Path],
    data: Iterable[Path],
    command: str,
) -> TrackingRun:
    """An evaluation as its own run in experiment ``name``, a child of the training run when both
    are in one store: settings, the digest of every data file read, every figure with its interval
    beside every baseline, the report and its plots."""
    tags = {KIND_TAG: "evaluate", COMMAND_TAG: command}
    run_name = f"evaluate {name} {version}"
    with TrackedRun.start(uri, experiment=name, name=run_name, parent=trained, tags=tags) as tracked:
        params: dict[str, object] = {"model": f"{name}/{version}"}
        params |= {f"settings.{key}": value for key, value in _flat(figures["settings"], "").items()}
        params |= {f"data.{_slug(path.name)}.sha256": table_digest(path) for path in data}
        tracked.log_params(params)
        tracked.log_metrics((key, value, 0) for key, value in evaluation_metrics(figures).items())
        for path in written:
            tracked.log_file(path, "report/img" if path.suffix == ".png" else "report")
    return tracked.ref


def evaluation_metrics(figures: Mapping[str, Any]) -> dict[str, float]:
    """The report's figures by set: per model and horizon (log loss, Brier, ECE, AUC, accuracy, with
    their bootstrap intervals and differences from the ensemble), trading after costs per strategy,
    quantile coverage and pinball loss per horizon."""
    metrics: dict[str, float] = {}
    for set_key, figures_of_set in figures["sets"].items():
        prefix = _slug(set_key)
        for model, entry in figures_of_set["models"].items():
            for horizon, values in entry["horizons"].items():
                metrics |= _flat(values, f"{prefix}/{_slug(model)}/h{horizon}/")
        for strategy, values in figures_of_set["trading"].items():
            metrics |= _flat(values, f"{prefix}/trading/{_slug(strategy)}/")
        for horizon, values in figures_of_set["quantiles"].items():
            metrics |= _flat(values, f"{prefix}/quantiles/h{horizon}/")
    return metrics


def _flat(value: Mapping[str, Any], prefix: str) -> dict[str, Any]:
    """The numbers of nested dictionaries under ``/``-joined keys; lists, text and nulls left out."""
    out: dict[str, Any] = {}
    for key, item in value.items():
        if key in SKIPPED_FIGURES:
            continue
        if isinstance(item, Mapping):
            out |= _flat(item, f"{prefix}{_slug(key)}/")
        elif isinstance(item, int | float) and not isinstance(item, bool):
            out[f"{prefix}{_slug(key)}"] = item
    return out


def record_export(uri: str, run: RunInfo, entry: Entry, manifest: Manifest) -> TrackingRun:
    """The exported artifact and its manifest, in the training's run when it was recorded in this
    store, else in a new run; returns the run that holds them."""
    trained = run.tracking
    if trained is not None and store_uri(trained.uri) == store_uri(uri):
        tracked = TrackedRun.existing(trained)
        _log_export(tracked, entry, manifest)
        return tracked.ref
    name = f"export {entry.ref}"
    with TrackedRun.start(uri, experiment=run.name, name=name, parent=trained, tags={KIND_TAG: "export"}) as tracked:
        _log_export(tracked, entry, manifest)
    return tracked.ref


def _log_export(tracked: TrackedRun, entry: Entry, manifest: Manifest) -> None:
    tracked.log_file(entry.artifact, "model")
    tracked.log_file(entry.directory / "manifest.json", "model")
    tracked.set_tags(
        {
            "candlecast.registry_version": entry.ref,
            "candlecast.artifact_sha256": entry.recorded_sha256,
            "candlecast.weights_sha256": manifest.weights_sha256,
        }
    )
    figures = (
        (f"manifest/{split}/{key}", value, 0)
        for split, values in manifest.metrics.items()
        for key, value in values.items()
    )
    tracked.log_metrics(figures)
