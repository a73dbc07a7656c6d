"""Command-line entry points of the model pipeline: ``train``, ``evaluate``, ``export`` and the
``models`` registry commands (``list``, ``show``, ``verify``, ``promote``, ``prune``).

Heavy imports (torch, scikit-learn, matplotlib) happen inside the commands, so ``--help`` is fast.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TaskID, TextColumn, TimeElapsedColumn
from rich.table import Column, Table

from candlecast.errors import ArtifactError, ConfigError

if TYPE_CHECKING:
    from models.dataset import SplitSizes
    from models.evaluation import EvaluationSettings
    from models.registry import Entry, Registry, TrackingRun
    from models.tuning import SearchSpace

console = Console(stderr=True)
out = Console()

models_app = typer.Typer(
    help="The model registry: versions side by side and a `current` pointer the daemon serves.",
    no_args_is_help=True,
    rich_markup_mode=None,
)

RegistryOption = Annotated[
    Path | None,
    typer.Option("--registry", help="Registry directory (default: the bundled registry inside the package)."),
]
DEFAULT_MEMBERS = "lstm,bilstm,stacked,attention,transformer,multiscale"
DEFAULT_TRACKING_URI = "sqlite:///mlflow.db"
"""MLflow's own default store, in the working directory: ``mlflow ui`` run there shows the runs."""
TRACKING_ENV = "CANDLECAST_TRACKING__URI"
TrackOption = Annotated[
    bool | None,
    typer.Option(
        "--track/--no-track",
        help=f"Record this run in MLflow (needs the tracking extra). Default: on when --tracking-uri is set; "
        f"--track alone records to {DEFAULT_TRACKING_URI} (artifacts in ./mlruns).",
    ),
]
TrackingUriOption = Annotated[
    str | None,
    typer.Option(
        envvar=TRACKING_ENV,
        help="MLflow tracking URI (sqlite:///PATH.db, http://HOST:5000, ...); setting it turns tracking on.",
    ),
]
FollowTrackOption = Annotated[
    bool | None,
    typer.Option(
        "--track/--no-track",
        help="Record in MLflow (needs the tracking extra). Default: on when --tracking-uri is set, or when the "
        f"training was tracked (then into its store); --track with neither records to {DEFAULT_TRACKING_URI}.",
    ),
]


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        return tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise ConfigError(f"{what}: {text!r} is not a comma-separated list of integers") from exc


def _floats(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError as exc:
        raise ConfigError(f"{what}: {text!r} is not a comma-separated list of numbers") from exc


def _names(text: str) -> tuple[str, ...]:
    return tuple(x.strip() for x in text.split(",") if x.strip())


def _tracking_uri(track: bool | None, uri: str | None, trained: TrackingRun | None = None) -> str | None:
    """Where to record in MLflow, or None: an explicit URI first, then the training's store.
    ``models.tracking`` (and MLflow, an optional extra) is imported only when this is not None."""
    if track is False:
        return None
    chosen = uri or (trained.uri if trained is not None else None) or (DEFAULT_TRACKING_URI if track else None)
    if chosen is not None and importlib.util.find_spec("mlflow") is None:
        raise ConfigError(
            "tracking in MLflow needs the tracking extra: pip install 'candlecast[tracking]' (--no-track turns it off)"
        )
    return chosen


def train(
    *,
    out_dir: Annotated[Path, typer.Option("--out", help="Run directory to write (run.json and fold-K.pt weights).")],
    data: Annotated[
        Path | None,
        typer.Option(help="Candle CSV to train on (default: the bundled data/us_stocks_1d.csv)."),
    ] = None,
    name: Annotated[str, typer.Option(help="Model name, used by the registry.")] = "equities-1d",
    version: Annotated[str, typer.Option(help="Model version, e.g. 1.0.0.")] = "1.0.0",
    symbols: Annotated[str | None, typer.Option(help="Comma-separated symbols to keep (default: all).")] = None,
    interval: Annotated[str | None, typer.Option(help="Candle interval, e.g. 1d (default: inferred).")] = None,
    calendar: Annotated[str, typer.Option(help="continuous or weekdays: which slots expect a candle.")] = "weekdays",
    gap_policy: Annotated[str, typer.Option(help="reset, tolerate or forward_fill, as the daemon's.")] = "tolerate",
    max_missing: Annotated[int, typer.Option(help="Longest gap (candles) tolerated or filled.")] = 3,
    window: Annotated[int, typer.Option(help="Window length T in candles.")] = 64,
    horizons: Annotated[str, typer.Option(help="Horizons in candles; the first is the primary one.")] = "1,5,20",
    quantiles: Annotated[str, typer.Option(help="Quantile levels of the predicted log return.")] = "0.1,0.5,0.9",
    members: Annotated[
        str,
        typer.Option(
            help="Member kinds of the ensemble: lstm, bilstm, stacked, attention, transformer, multiscale (whole "
            "windows) and streaming-lstm, streaming-stacked (one step per candle); when every member streams, the "
            'artifact scores a candle from per-symbol state (docs/design.md, "Streaming members").'
        ),
    ] = DEFAULT_MEMBERS,
    folds: Annotated[int, typer.Option(help="Walk-forward folds; the last one is the model to export.")] = 5,
    test_candles: Annotated[int, typer.Option(help="Candles in each fold's test block.")] = 252,
    validation_candles: Annotated[int, typer.Option(help="Candles for early stopping.")] = 126,
    calibration_candles: Annotated[int, typer.Option(help="Candles for ensemble weights and calibration.")] = 126,
    purge: Annotated[
        int | None, typer.Option(help="Candles between splits (default and minimum: the longest horizon).")
    ] = None,
    epochs: Annotated[int, typer.Option(help="Most epochs per member.")] = 30,
    patience: Annotated[int, typer.Option(help="Epochs without a better validation loss before stopping.")] = 4,
    batch_size: Annotated[int, typer.Option(help="Windows per training batch.")] = 256,
    learning_rate: Annotated[
        float, typer.Option(help="Adam(W) learning rate at the start of the cosine schedule.")
    ] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed of every random choice.")] = 7,
    device: Annotated[str, typer.Option(help="auto (CUDA when present), cpu or cuda.")] = "auto",
    threads: Annotated[int, typer.Option(help="torch threads; part of what makes a run reproducible.")] = 2,
    hidden: Annotated[
        int | None, typer.Option(help="Hidden size of every member (default: each kind's own; see `tune`).")
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
    track: TrackOption = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Train the ensemble on walk-forward folds of a candle CSV, deterministically; with
    --tracking-uri (or --track), record options, data digest, losses per epoch and run.json in MLflow."""
    from candlecast.candlefile import bundled_path, infer_interval, read_candles
    from models.dataset import SplitSizes, WindowSpec
    from models.device import resolve_device
    from models.training import TrainConfig, display_path, train_command, train_run

    data_path = data or bundled_path("us_stocks_1d.csv")
    horizon_list = _ints(horizons, "horizons")
    spec = WindowSpec.build(
        length=window,
        interval=interval or infer_interval(read_candles(data_path)),
        calendar=calendar,
        gap_policy=gap_policy,
        max_missing=max_missing,
        horizons=horizon_list,
    )
    sizes = SplitSizes(
        folds=folds,
        test=test_candles,
        validation=validation_candles,
        calibration=calibration_candles,
        purge=purge if purge is not None else max(horizon_list),
    )
    config = TrainConfig(
        members=_names(members),
        quantiles=_floats(quantiles, "quantiles"),
        epochs=epochs,
        batch_size=batch_size,
        learning_rate=learning_rate,
        patience=patience,
        seed=seed,
        device=resolve_device(device, "--device").type,
        threads=threads,
        hidden=hidden,
    )
    keep = list(_names(symbols)) if symbols else None
    uri = _tracking_uri(track, tracking_uri)
    tracked = None
    if uri is not None:
        from models.tracking import start_training

        tracked = start_training(uri, name=name, version=version)
    with ExitStack() as stack:
        if tracked is not None:
            stack.enter_context(tracked)
        run = train_run(
            data_path,
            out_dir,
            spec=spec,
            sizes=sizes,
            config=config,
            name=name,
            version=version,
            symbols=keep,
            progress=None if quiet else stack.enter_context(RichProgress(console)),
            tracking=tracked.ref if tracked is not None else None,
            fold_done=tracked.log_fold if tracked is not None else None,
        )
        if tracked is not None:
            tracked.log_training(run, out_dir, train_command(run, Path(display_path(out_dir))))
    table = Table("fold", "train", "validation", "calibration", "test", "weights sha256", title=f"{name} {version}")
    for fold in run.folds:
        table.add_row(
            str(fold.index),
            f"{fold.train.start[:10]}..{fold.train.end[:10]} ({fold.train.windows})",
            f"{fold.validation.start[:10]}..{fold.validation.end[:10]}",
            f"{fold.calibration.start[:10]}..{fold.calibration.end[:10]}",
            f"{fold.test.start[:10]}..{fold.test.end[:10]} ({fold.test.windows})",
            fold.weights_sha256[:16],
        )
    console.print(table)
    console.print(f"{run.parameters} parameters, trained in {run.seconds:.0f} s; wrote {out_dir}")
    if run.tracking is not None:
        console.print(f"MLflow run {run.tracking.run_id} in {run.tracking.uri}", soft_wrap=True)


def tune(
    *,
    out: Annotated[Path, typer.Option(help="JSON file to write the trials, the best and the budget to.")],
    data: Annotated[Path | None, typer.Option(help="Candle CSV (default: the bundled us_stocks_1d.csv).")] = None,
    symbols: Annotated[str | None, typer.Option(help="Comma-separated symbols to keep (default: all).")] = None,
    interval: Annotated[str | None, typer.Option(help="Candle interval, e.g. 1d (default: inferred).")] = None,
    calendar: Annotated[str, typer.Option(help="continuous or weekdays.")] = "weekdays",
    gap_policy: Annotated[str, typer.Option(help="reset, tolerate or forward_fill.")] = "tolerate",
    max_missing: Annotated[int, typer.Option(help="Longest gap (candles) tolerated or filled.")] = 3,
    horizons: Annotated[str, typer.Option(help="Horizons in candles.")] = "1,5,20",
    windows: Annotated[str, typer.Option(help="Window lengths to search.")] = "32,64,96",
    hidden: Annotated[str, typer.Option(help="Hidden sizes to search (multiples of 4).")] = "16,32,48",
    members: Annotated[
        str, typer.Option(help="Member sets to search, separated by ';' (members within a set by ',').")
    ] = "lstm;lstm,multiscale;lstm,attention,multiscale",
    learning_rates: Annotated[str, typer.Option(help="Learning-rate range, low,high (log-uniform).")] = "3e-4,3e-3",
    trials: Annotated[int, typer.Option(help="Most trials.")] = 20,
    timeout: Annotated[float | None, typer.Option(help="Stop starting trials after this many seconds.")] = None,
    folds: Annotated[int, typer.Option(help="Walk-forward folds of `train`; the search stops before their data.")] = 5,
    search_folds: Annotated[int, typer.Option(help="The search's own walk-forward folds, inside that data.")] = 3,
    test_candles: Annotated[int, typer.Option(help="Candles in each fold's test block (never read).")] = 252,
    validation_candles: Annotated[
        int, typer.Option(help="Candles of each validation block; the search's blocks have this length too.")
    ] = 126,
    calibration_candles: Annotated[int, typer.Option(help="Candles of each calibration slice (never read).")] = 126,
    purge: Annotated[int | None, typer.Option(help="Candles between splits (default: the longest horizon).")] = None,
    epochs: Annotated[int, typer.Option(help="Most epochs per member.")] = 30,
    patience: Annotated[int, typer.Option(help="Early-stopping patience.")] = 4,
    batch_size: Annotated[int, typer.Option(help="Windows per training batch.")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of the sampler and of every member.")] = 7,
    threads: Annotated[int, typer.Option(help="torch threads.")] = 2,
    track: TrackOption = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Search window length, hidden size, members and learning rate with Optuna (TPE, median pruner)
    on walk-forward folds of the data before `train`'s first calibration slice: no calibration
    slice or test block is read (models/tuning.py). With --tracking-uri (or --track), record the
    search in MLflow (experiment "tune": options, data digest, budget, best, the result JSON) with
    each trial as a child run (its choices, running validation log loss per fold, state)."""
    import msgspec

    from candlecast.candlefile import bundled_path, infer_interval, read_candles
    from models.dataset import SplitSizes, WindowSpec
    from models.training import TrainConfig
    from models.tuning import SearchSpace
    from models.tuning import tune as search

    data_path = data or bundled_path("us_stocks_1d.csv")
    horizon_list = _ints(horizons, "horizons")
    named_interval = interval or infer_interval(read_candles(data_path))

    def spec_of(length: int) -> WindowSpec:
        return WindowSpec.build(
            length=length,
            interval=named_interval,
            calendar=calendar,
            gap_policy=gap_policy,
            max_missing=max_missing,
            horizons=horizon_list,
        )

    low, high = _floats(learning_rates, "learning rates")
    space = SearchSpace(
        windows=_ints(windows, "windows"),
        hidden=_ints(hidden, "hidden"),
        members=tuple(x.strip() for x in members.split(";") if x.strip()),
        learning_rate=(low, high),
    )
    sizes = SplitSizes(folds, test_candles, validation_candles, calibration_candles, purge or max(horizon_list))
    base = TrainConfig(epochs=epochs, patience=patience, batch_size=batch_size, seed=seed, threads=threads)
    keep = list(_names(symbols)) if symbols else None
    uri = _tracking_uri(track, tracking_uri)
    tracked = None
    if uri is not None:
        from models.tracking import record_search, record_trial, start_tuning

        options = {
            "trials": trials,
            "timeout": timeout,
            "search_folds": search_folds,
            "interval": named_interval,
            "calendar": calendar,
            "gap_policy": gap_policy,
            "max_missing": max_missing,
            "horizons": ",".join(map(str, horizon_list)),
            "epochs": epochs,
            "patience": patience,
            "batch_size": batch_size,
            "seed": seed,
            "threads": threads,
        }
        tracked = start_tuning(
            uri, data_name=data_path.name, params=_tuning_params(data_path, keep, space, sizes, options)
        )
    with ExitStack() as stack:
        if tracked is not None:
            stack.enter_context(tracked)
        stack.enter_context(console.status("searching"))
        result = search(
            data_path,
            spec_of=spec_of,
            sizes=sizes,
            base=base,
            space=space,
            trials=trials,
            timeout_s=timeout,
            symbols=keep,
            tuning_folds=search_folds,
            trial_done=None if tracked is None else lambda trial: record_trial(tracked, trial),
        )
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(msgspec.json.format(msgspec.json.encode(result)) + b"\n")
        if tracked is not None:
            record_search(tracked, result, out)
    budget = result["budget"]
    console.print(
        f"{budget['trials']} trials ({budget['complete']} complete, {budget['pruned']} pruned) in "
        f"{budget['seconds']:.0f} s; best {result['best']}; wrote {out}",
        soft_wrap=True,
    )
    if tracked is not None:
        console.print(f"MLflow run {tracked.ref.run_id} in {tracked.ref.uri}", soft_wrap=True)


def _tuning_params(
    data_path: Path, symbols: list[str] | None, space: SearchSpace, sizes: SplitSizes, options: Mapping[str, object]
) -> dict[str, object]:
    """What a search is, for MLflow: its data file with digest, symbols and date range, the space
    searched, the split sizes and every other option."""
    import numpy as np

    from candlecast.candlefile import read_candles
    from models.dataset import iso, table_digest
    from models.training import display_path

    candles = read_candles(data_path)
    kept = np.isin(candles.symbols, symbols) if symbols else np.ones(len(candles), dtype=bool)
    # A symbol absent from the file is the search's error to report, not this record's.
    ts = candles.ts[kept] if kept.any() else candles.ts
    return {
        "data.name": data_path.name,
        "data.path": display_path(data_path),
        "data.sha256": table_digest(data_path),
        "data.rows": len(candles),
        "data.start": iso(int(ts.min())),
        "data.end": iso(int(ts.max())),
        "symbols": ",".join(sorted({str(s) for s in candles.symbols[kept]})),
        "space.windows": ",".join(map(str, space.windows)),
        "space.hidden": ",".join(map(str, space.hidden)),
        "space.members": ";".join(space.members),
        "space.learning_rate": ",".join(map(str, space.learning_rate)),
        **{f"sizes.{key}": value for key, value in sizes.__dict__.items()},
        **{f"options.{key}": value for key, value in options.items()},
    }


class RichProgress:
    """A rich progress bar per member, with live training and validation losses."""

    def __init__(self, target: Console, *, enabled: bool = True) -> None:
        self.progress = Progress(
            TextColumn("{task.description:<24}"),
            BarColumn(),
            TextColumn("epochs {task.fields[epoch]:>3}"),
            TextColumn("train {task.fields[train]}"),
            TextColumn("val {task.fields[val]}"),
            TextColumn("best {task.fields[best]}"),
            TimeElapsedColumn(),
            console=target,
            disable=not enabled,
        )
        self.task: TaskID | None = None

    def __enter__(self) -> RichProgress:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def start(self, label: str, steps: int) -> None:
        self.task = self.progress.add_task(label, total=steps, epoch="0", train="-", val="-", best="-")

    def step(self, train_loss: float) -> None:
        if self.task is not None:
            self.progress.update(self.task, advance=1, train=f"{train_loss:.4f}")

    def epoch(self, epoch: int, train_loss: float, validation_loss: float, best: float) -> None:
        if self.task is not None:
            self.progress.update(
                self.task, epoch=str(epoch), train=f"{train_loss:.4f}", val=f"{validation_loss:.4f}", best=f"{best:.4f}"
            )

    def finish(self) -> None:
        if self.task is not None:
            total = self.progress.tasks[-1].total
            self.progress.update(self.task, completed=total)
            self.task = None


def evaluate(
    *,
    run: Annotated[Path | None, typer.Option(help="Run directory written by `candlecast train`.")] = None,
    model: Annotated[
        str | None,
        typer.Option(
            help="Instead of --run: an artifact file, or NAME/VERSION (or `current`) in --registry, evaluated on "
            "the one --data file without its training run."
        ),
    ] = None,
    registry: RegistryOption = None,
    data: Annotated[
        list[Path] | None,
        typer.Option(
            "--data",
            help="With --run: external candle CSV to test on as well (repeatable), never used in training. "
            "With --model: the candle CSV to evaluate on.",
        ),
    ] = None,
    baseline_data: Annotated[
        Path | None,
        typer.Option(help="With --model: fit the baselines on this candle CSV instead of the start of --data."),
    ] = None,
    baseline_fraction: Annotated[
        float,
        typer.Option(
            help="With --model: share of --data's window-end times, the earliest, the baselines are fitted on "
            "(never scored)."
        ),
    ] = 0.3,
    report_dir: Annotated[
        Path | None, typer.Option(help="Where to write the report (default: reports/NAME-VERSION).")
    ] = None,
    stem: Annotated[str, typer.Option(help="File name stem: STEM.md, STEM.json, img/STEM-*.png.")] = "report",
    walk_forward: Annotated[bool, typer.Option(help="Also score every fold's model on its own test block.")] = True,
    training_data: Annotated[
        Path | None, typer.Option(help="The run's training CSV, if it moved (checked against its sha256).")
    ] = None,
    buy_above: Annotated[float, typer.Option(help="Threshold strategy: BUY when p exceeds this.")] = 0.6,
    sell_below: Annotated[float, typer.Option(help="Threshold strategy: SELL when p is below this.")] = 0.4,
    fee_bps: Annotated[float, typer.Option(help="Fees in basis points per unit of position changed.")] = 2.0,
    slippage_bps: Annotated[float, typer.Option(help="Slippage in basis points per unit of position changed.")] = 3.0,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples for the confidence intervals.")] = 2000,
    block: Annotated[int, typer.Option(help="Bootstrap block length in days.")] = 20,
    seed: Annotated[int, typer.Option(help="Seed of the bootstrap.")] = 0,
    card: Annotated[bool, typer.Option(help="Write a model card (adds how to reproduce it, limitations).")] = False,
    members_figures: Annotated[
        Path | None,
        typer.Option(
            help="With --run: the JSON of `python -m models.contribution` (member cost and contribution, an earlier "
            "version's walk-forward figures), rendered as the report's streaming section."
        ),
    ] = None,
    streaming_figures: Annotated[
        Path | None,
        typer.Option(
            help="With --run: the JSON of `python -m models.streaming_evaluation` (a streaming member beside the "
            "windowed one), rendered in the streaming section."
        ),
    ] = None,
    track: FollowTrackOption = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Measure a trained run (--run) or any exported artifact (--model, on one --data file) beside
    baselines: Markdown, JSON and PNG plots (fields in docs/evaluation.md); when a run is tracked,
    the figures with their intervals and the plots go to an MLflow run under the training's
    (--card and --walk-forward apply to --run only; an artifact from the registry is recorded under
    the training run its version came from)."""
    import shlex

    from pydantic import ValidationError

    from models.evaluation import EvaluationSettings, evaluate_run
    from models.report import write_report
    from models.reweighting import ReweightingParams
    from models.training import display_path, read_run, train_command
    from strategies.threshold import ThresholdParams

    try:
        ThresholdParams(buy_above=buy_above, sell_below=sell_below)
    except ValidationError as exc:
        raise ConfigError(f"thresholds: {exc.errors()[0]['msg']}") from exc
    if min(bootstrap, block) < 1 or min(fee_bps, slippage_bps) < 0:
        raise ConfigError("bootstrap and block must be positive, fees and slippage non-negative")
    settings = EvaluationSettings(
        buy_above=buy_above,
        sell_below=sell_below,
        fee_bps=fee_bps,
        slippage_bps=slippage_bps,
        samples=bootstrap,
        block=block,
        seed=seed,
    )
    if (run is None) == (model is None):
        raise ConfigError("give either --run (a training run) or --model (an artifact), not both")
    # Read before the evaluation, which takes minutes, so a wrong path fails at once.
    streaming_files = {
        "members": _json_file("--members-figures", members_figures),
        "comparison": _json_file("--streaming-figures", streaming_figures),
    }
    if model is not None:
        _evaluate_model(
            model,
            registry=registry,
            data=data or [],
            baseline_data=baseline_data,
            baseline_fraction=baseline_fraction,
            settings=settings,
            report_dir=report_dir,
            stem=stem,
            track=track,
            tracking_uri=tracking_uri,
        )
        return
    assert run is not None
    info = read_run(run)
    uri = _tracking_uri(track, tracking_uri, info.tracking)
    directory = report_dir or Path("reports") / f"{info.name}-{info.version}"
    externals = list(data or [])
    with console.status("scoring the models and the baselines, bootstrapping"):
        figures = evaluate_run(
            run,
            externals=externals,
            walk_forward_folds=walk_forward,
            settings=settings,
            params=ReweightingParams(),
            data_path=training_data,
        )
    arguments = ["candlecast", "evaluate", f"--run={display_path(run)}"]
    arguments += [f"--data={display_path(p)}" for p in externals]
    arguments += [f"--report-dir={display_path(directory)}", f"--stem={stem}"]
    arguments += [] if walk_forward else ["--no-walk-forward"]
    arguments += [f"--buy-above={buy_above}", f"--sell-below={sell_below}", f"--fee-bps={fee_bps}"]
    arguments += [f"--slippage-bps={slippage_bps}", f"--bootstrap={bootstrap}", f"--block={block}", f"--seed={seed}"]
    arguments += ["--card"] if card else []
    arguments += [f"--members-figures={display_path(members_figures)}"] if members_figures else []
    arguments += [f"--streaming-figures={display_path(streaming_figures)}"] if streaming_figures else []
    if members_figures or streaming_figures:
        from models.streaming import STREAMING_KINDS

        figures["streaming"] = {"streaming_kinds": list(STREAMING_KINDS), **streaming_files}
    figures["commands"] = {
        "train": train_command(info, Path(display_path(run))),
        "export": shlex.join(
            [
                "candlecast",
                "export",
                f"--run={display_path(run)}",
                f"--registry={display_path(_bundled())}",
                # The bundled current model was promoted; other bundled models are exported beside it.
                *(["--promote"] if _bundled_current() == f"{info.name}/{info.version}" else []),
            ]
        ),
        "evaluate": shlex.join(arguments),
    }
    if info.recalibrated:
        figures["commands"]["calibrate"] = shlex.join(
            ["candlecast", "calibrate", f"--run={display_path(run)}", f"--version={info.version}"]
        )
    written = write_report(figures, directory, stem, card=card)
    for path in written:
        typer.echo(path)
    if uri is not None:
        from models.tracking import record_evaluation

        data_files = [training_data or Path(info.data_path), *externals]
        command = figures["commands"]["evaluate"]
        recorded = record_evaluation(
            uri,
            name=info.name,
            version=info.version,
            trained=info.tracking,
            figures=figures,
            written=written,
            data=data_files,
            command=command,
        )
        console.print(f"MLflow run {recorded.run_id} in {recorded.uri}", soft_wrap=True)


def _evaluate_model(
    ref: str,
    *,
    registry: Path | None,
    data: list[Path],
    baseline_data: Path | None,
    baseline_fraction: float,
    settings: EvaluationSettings,
    report_dir: Path | None,
    stem: str,
    track: bool | None,
    tracking_uri: str | None,
) -> None:
    """``evaluate --model``: an artifact on one candle file (``models.artifact_evaluation``); a
    registry version's evaluation is recorded under the MLflow run it came from, if any."""
    import shlex

    from models.artifact_evaluation import evaluate_artifact
    from models.registry import Registry
    from models.report import write_report
    from models.reweighting import ReweightingParams
    from models.torchscript import load_artifact
    from models.training import display_path

    if len(data) != 1:
        raise ConfigError("--model evaluates on exactly one --data file")
    store = Registry(registry or _bundled())
    path = Path(ref)
    entry = None if path.is_file() else _resolve(store, ref)
    loaded = load_artifact(path) if entry is None else store.load(entry)
    manifest = loaded.manifest
    trained = entry.tracking() if entry is not None else None
    uri = _tracking_uri(track, tracking_uri, trained)
    directory = report_dir or Path("reports") / f"{manifest.name}-{manifest.version}-{data[0].stem}"
    with console.status("scoring the artifact and the baselines, bootstrapping"):
        figures = evaluate_artifact(
            loaded,
            data[0],
            registry=store,
            settings=settings,
            params=ReweightingParams(),
            baseline_data=baseline_data,
            baseline_fraction=baseline_fraction,
        )
    arguments = ["candlecast", "evaluate", f"--model={ref}", f"--data={display_path(data[0])}"]
    arguments += [f"--registry={display_path(registry)}"] if registry else []
    arguments += [f"--baseline-data={display_path(baseline_data)}"] if baseline_data else []
    arguments += [] if baseline_data else [f"--baseline-fraction={baseline_fraction}"]
    arguments += [f"--report-dir={display_path(directory)}", f"--stem={stem}"]
    arguments += [f"--buy-above={settings.buy_above}", f"--sell-below={settings.sell_below}"]
    arguments += [f"--fee-bps={settings.fee_bps}", f"--slippage-bps={settings.slippage_bps}"]
    arguments += [f"--bootstrap={settings.samples}", f"--block={settings.block}", f"--seed={settings.seed}"]
    figures["commands"] = {"evaluate": shlex.join(arguments)}
    written = write_report(figures, directory, stem)
    for file in written:
        typer.echo(file)
    if uri is not None:
        from models.tracking import record_evaluation

        recorded = record_evaluation(
            uri,
            name=manifest.name,
            version=manifest.version,
            trained=trained,
            figures=figures,
            written=written,
            data=[data[0], *([baseline_data] if baseline_data else [])],
            command=figures["commands"]["evaluate"],
        )
        console.print(f"MLflow run {recorded.run_id} in {recorded.uri}", soft_wrap=True)


def calibrate(
    *,
    run: Annotated[Path, typer.Option(help="Run directory written by `candlecast train`.")],
    training_data: Annotated[
        Path | None, typer.Option(help="The run's training CSV, if it moved (checked against its sha256).")
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="Record the refitted run under this version (exported under it by default).")
    ] = None,
) -> None:
    """Refit every fold's ensemble weights and calibration from its saved members, as `train` now
    fits them (pooled out-of-fold predictions, trailing up-rate term); the members do not change."""
    from models.training import recalibrate_run

    with console.status("scoring the folds' members, fitting the combinations"):
        info = recalibrate_run(run, training_data, version)
    for fold in info.folds:
        console.print(
            f"fold {fold.index}: scale {', '.join(f'{v:.3f}' for v in fold.calibration_scale)}, trailing "
            f"{', '.join(f'{v:.2f}' for v in fold.drift_coef)}, weights sha256 {fold.weights_sha256[:16]}",
            soft_wrap=True,
        )


def export(
    *,
    run: Annotated[Path, typer.Option(help="Run directory written by `candlecast train`; its last fold is exported.")],
    registry: RegistryOption = None,
    promote: Annotated[bool, typer.Option(help="Make the exported version the registry's current one.")] = False,
    version: Annotated[str | None, typer.Option(help="Version to publish under (default: the run's).")] = None,
    training_data: Annotated[
        Path | None, typer.Option(help="The run's training CSV, if it moved (checked against its sha256).")
    ] = None,
    track: FollowTrackOption = None,
    tracking_uri: TrackingUriOption = None,
) -> None:
    """Export a run as a verified TorchScript artifact with its manifest, into a registry; the
    registry version records the MLflow run it came from, which gets the artifact when tracked."""
    from models.export import export_run
    from models.registry import Registry
    from models.training import read_run

    info = read_run(run)
    uri = _tracking_uri(track, tracking_uri, info.tracking)
    path = run / "model.pt"
    with console.status("scripting, computing golden outputs and reference histograms, verifying"):
        model, _ = export_run(run, path, data=training_data, version=version)
    store = Registry(registry or _bundled())
    entry = store.add(path)
    manifest = model.manifest
    source = info.tracking
    if uri is not None:
        from models.tracking import record_export

        source = record_export(uri, info, entry, manifest)
    if source is not None:
        store.record_tracking(entry, source)
    if promote:
        store.promote(entry.ref)
    console.print(
        f"exported {entry.ref} ({path.stat().st_size / 1e6:.2f} MB, weights sha256 {manifest.weights_sha256[:16]}…) "
        f"to {store.root}" + (", now current" if promote else ""),
        soft_wrap=True,
    )
    if source is not None:
        console.print(f"MLflow run {source.run_id} in {source.uri}", soft_wrap=True)


def _bundled() -> Path:
    from daemon.settings import bundled_registry

    return bundled_registry()


def _json_file(option: str, path: Path | None) -> object:
    """The JSON document at ``path`` (None without one); ``ConfigError`` naming ``option`` when it cannot be read."""
    import json

    if path is None:
        return None
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{option}: {path}: not a readable JSON file ({exc})") from exc


def _bundled_current() -> str | None:
    from models.registry import Registry

    return Registry(_bundled()).current_ref()


@models_app.command("list")
def list_models(registry: RegistryOption = None) -> None:
    """Versions in the registry, oldest first; * marks the current one."""
    from models.registry import Registry

    store = Registry(registry or _bundled())
    current = store.current_ref()
    rows = Table(
        "",
        Column("version", no_wrap=True),
        Column("created", no_wrap=True),
        "window",
        "horizons",
        "test acc. h1",
        "test log loss h1",
    )
    for entry in store.entries():
        manifest = entry.manifest()
        test = manifest.metrics.get("test", {})
        primary = manifest.horizons[0]
        rows.add_row(
            "*" if entry.ref == current else "",
            entry.ref,
            manifest.created_at,
            f"{manifest.window} x {manifest.interval}",
            ",".join(map(str, manifest.horizons)),
            f"{test[f'accuracy_h{primary}']:.4f}" if f"accuracy_h{primary}" in test else "-",
            f"{test[f'log_loss_h{primary}']:.4f}" if f"log_loss_h{primary}" in test else "-",
        )
    out.print(rows)


@models_app.command("show")
def show(
    ref: Annotated[str, typer.Argument(help="NAME/VERSION, or `current`.")],
    registry: RegistryOption = None,
    golden: Annotated[bool, typer.Option(help="Include the golden input windows.")] = False,
) -> None:
    """Print a version's manifest (JSON); under "tracking" the MLflow run it came from, and under
    "decision" the `candlecast retrain` decision it was the challenger of, if any."""
    import msgspec

    from models.registry import Registry

    store = Registry(registry or _bundled())
    entry = _resolve(store, ref)
    manifest = msgspec.to_builtins(entry.manifest())
    if not golden:
        manifest["golden"]["input"] = f"{len(manifest['golden']['input'])} windows (--golden shows them)"
    tracking = entry.tracking()
    if tracking is not None:
        manifest["tracking"] = msgspec.to_builtins(tracking)
    decision = entry.decision()
    if decision is not None:
        manifest["decision"] = msgspec.to_builtins(decision)
    typer.echo(msgspec.json.format(msgspec.json.encode(manifest)).decode())


@models_app.command("verify")
def verify(
    ref: Annotated[str | None, typer.Argument(help="NAME/VERSION or `current` (default: every version).")] = None,
    registry: RegistryOption = None,
) -> None:
    """Recompute digests and check golden outputs; exits 1 if any version fails."""
    from models.registry import Registry

    store = Registry(registry or _bundled())
    entries = [_resolve(store, ref)] if ref else store.entries()
    failed = 0
    for entry in entries:
        try:
            model = store.load(entry)
        except ArtifactError as exc:
            failed += 1
            typer.echo(f"FAILED {entry.ref}: {exc}")
        else:
            windows = len(model.manifest.golden.input)
            typer.echo(f"ok     {entry.ref} (file and weights digests, outputs on {windows} golden windows)")
    if failed:
        raise typer.Exit(1)


@models_app.command("promote")
def promote(
    ref: Annotated[str, typer.Argument(help="NAME/VERSION to make current (verified first).")],
    registry: RegistryOption = None,
) -> None:
    """Verify a version and point `current` at it; a running daemon reloads it."""
    from models.registry import Registry

    entry = Registry(registry or _bundled()).promote(ref)
    typer.echo(f"current -> {entry.ref}")


@models_app.command("prune")
def prune(
    keep: Annotated[int, typer.Option(help="Versions to keep per model name (the current one is always kept).")],
    registry: RegistryOption = None,
) -> None:
    """Delete all but the newest versions of each model."""
    from models.registry import Registry

    if keep < 1:
        raise ConfigError("--keep must be at least 1")
    removed = Registry(registry or _bundled()).prune(keep)
    for entry in removed:
        typer.echo(f"removed {entry.ref}")
    if not removed:
        typer.echo("nothing to remove")


def _resolve(store: Registry, ref: str) -> Entry:
    if ref == "current":
        entry = store.current()
        if entry is None:
            raise ArtifactError(f"the registry at {store.root} has no current version")
        return entry
    return store.entry(ref)
