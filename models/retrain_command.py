"""The ``candlecast retrain`` command: options, where the recent candles come from, the report and the
exit status (``models.retrain`` does the work). Heavy imports happen inside, so ``--help`` is fast."""

from __future__ import annotations

import re
import shlex
import tempfile
from contextlib import ExitStack
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console

from candlecast.errors import ConfigError

if TYPE_CHECKING:
    from candlecast.candlefile import CandleTable
    from daemon.settings import Settings
    from models.decision import Decision
    from models.registry import Registry

console = Console(stderr=True)
RELATIVE = re.compile(r"^(\d+)([dh])$")


def parse_moment(text: str, what: str, *, anchor: datetime | None = None) -> datetime:
    """An ISO-8601 time (UTC when it names no offset), or ``Nd``/``Nh`` before ``anchor``."""
    if anchor is not None and (match := RELATIVE.match(text)):
        amount, unit = int(match[1]), match[2]
        return anchor - (timedelta(days=amount) if unit == "d" else timedelta(hours=amount))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        relative = " or a duration such as 90d or 2000h" if anchor is not None else ""
        raise ConfigError(f"{what}: {text!r} is not an ISO-8601 time{relative}") from exc
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def retrain(
    *,
    model: Annotated[
        str | None, typer.Option("--model", help="Model name to retrain (default: the registry's current model).")
    ] = None,
    registry: Annotated[
        Path | None,
        typer.Option(
            help="Registry to read the champion from and write the challenger and decision to (default: model.registry "
            "of the settings; never the bundled registry). Without a version of the model there, the bundled one is "
            "copied in as the champion."
        ),
    ] = None,
    data: Annotated[
        list[Path] | None,
        typer.Option(help="Recent candle CSV (repeatable; where files overlap the first one's candle is kept)."),
    ] = None,
    from_topic: Annotated[
        bool, typer.Option(help="Read the candles back from the candle topic (kafka.* settings) instead of --data.")
    ] = False,
    since: Annotated[
        str | None,
        typer.Option(help="With --from-topic: first record time, ISO-8601 or a duration before --until (90d, 2000h)."),
    ] = None,
    until: Annotated[
        str | None, typer.Option(help="With --from-topic: records before this time (default: now).")
    ] = None,
    topic: Annotated[
        str | None, typer.Option(help="With --from-topic: the topic (default: kafka.candles_topic).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option("--config", "-c", help="TOML settings file (kafka.*, model.registry); env overrides it."),
    ] = None,
    holdout_candles: Annotated[
        int | None,
        typer.Option(
            help="Candle times held out at the end to judge both models on (default: the champion's test block)."
        ),
    ] = None,
    margin: Annotated[
        float | None,
        typer.Option(help="Least improvement in mean log loss (nats, primary horizon) to promote; default 0.001."),
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="Challenger version (default: the champion's, last number + 1).")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Most epochs per member (default: the champion's).")] = None,
    members: Annotated[
        str | None, typer.Option(help="Member kinds, comma-separated (default: the champion's).")
    ] = None,
    patience: Annotated[int | None, typer.Option(help="Early-stopping patience (default: the champion's).")] = None,
    threads: Annotated[int | None, typer.Option(help="torch threads (default: the champion's).")] = None,
    seed: Annotated[int | None, typer.Option(help="Training seed (default: the champion's).")] = None,
    folds: Annotated[int | None, typer.Option(help="Walk-forward folds (default: the champion's).")] = None,
    test_candles: Annotated[int | None, typer.Option(help="Test block per fold (default: the champion's).")] = None,
    validation_candles: Annotated[int | None, typer.Option(help="Validation block (default: the champion's).")] = None,
    calibration_candles: Annotated[
        int | None, typer.Option(help="Calibration block (default: the champion's).")
    ] = None,
    bootstrap: Annotated[int, typer.Option(help="Bootstrap resamples of the comparison.")] = 2000,
    block: Annotated[int, typer.Option(help="Bootstrap block length in candle times.")] = 20,
    work_dir: Annotated[
        Path | None, typer.Option(help="Keep the training run and candles here (default: a temporary directory).")
    ] = None,
) -> None:
    """Retrain the model in service on recent candles and promote the challenger only if it is better.

    The challenger gets the champion's configuration (window, horizons, members, training settings,
    from its manifest; the options below override some) and learns from the recent candles before
    the held-out period; both models are then scored on the held-out windows. The challenger
    becomes `current` only if its log loss at the primary horizon is lower by at least --margin and
    the paired 95% bootstrap interval of the difference lies below zero. Either way it stays in
    the registry with decision.json (`candlecast models show NAME/VERSION`). Exit status: 0 promoted,
    3 refused, 1 failed, 2 bad options or settings.
    """
    from daemon.settings import bundled_registry, load_settings
    from models.decision import DEFAULT_MARGIN
    from models.evaluation import EvaluationSettings
    from models.registry import Registry
    from models.retrain import EXIT_REFUSED, Overrides, RetrainOptions
    from models.retrain import retrain as run_retrain

    settings = load_settings(config)
    root = registry or settings.model.registry
    if root.resolve() == bundled_registry().resolve():
        raise ConfigError("retrain writes versions: pass --registry or set model.registry (not the bundled registry)")
    store, bundled = Registry(root), Registry(bundled_registry())
    name = model or _current_name(store, bundled)
    arguments = ["candlecast", "retrain", f"--model={name}", f"--registry={root}"]
    if from_topic == bool(data):
        raise ConfigError("give the recent candles either as --data files or with --from-topic")
    with console.status("reading the recent candles"):
        if from_topic:
            table, source = _topic_candles(settings, (store, bundled), name, topic=topic, since=since, until=until)
            arguments += ["--from-topic", f"--topic={source['topic']}", f"--since={source['since']}"]
            arguments += [f"--until={source['until']}"] + ([f"--config={config}"] if config else [])
        else:
            table, source = _file_candles(data or [])
            arguments += [f"--data={p}" for p in data or []]
    overrides = Overrides(
        epochs=epochs,
        members=tuple(m.strip() for m in members.split(",") if m.strip()) if members else None,
        patience=patience,
        threads=threads,
        seed=seed,
        folds=folds,
        test_candles=test_candles,
        validation_candles=validation_candles,
        calibration_candles=calibration_candles,
    )
    named = {
        "holdout-candles": holdout_candles,
        "margin": margin,
        "version": version,
        "epochs": epochs,
        "members": members,
        "patience": patience,
        "threads": threads,
        "seed": seed,
        "folds": folds,
        "test-candles": test_candles,
        "validation-candles": validation_candles,
        "calibration-candles": calibration_candles,
    }
    arguments += [f"--{k}={v}" for k, v in named.items() if v is not None]
    arguments += [f"--bootstrap={bootstrap}", f"--block={block}"]
    options = RetrainOptions(
        holdout_candles=holdout_candles,
        margin=DEFAULT_MARGIN if margin is None else margin,
        evaluation=EvaluationSettings(samples=bootstrap, block=block),
        overrides=overrides,
        version=version,
    )
    with ExitStack() as stack:
        work = work_dir or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="candlecast-retrain-")))
        with console.status(f"training a challenger to {name}, scoring both on the held-out candles"):
            decision = run_retrain(
                store,
                name,
                table,
                source=source,
                work=work,
                command=shlex.join(arguments),
                options=options,
                fallback=bundled,
            )
    _report(decision)
    if decision.outcome != "promoted":
        raise typer.Exit(EXIT_REFUSED)


def _current_name(store: Registry, bundled: Registry) -> str:
    for registry in (store, bundled):
        ref = registry.current_ref()
        if ref:
            return ref.partition("/")[0]
    raise ConfigError("no current model in the registry: pass --model NAME")


def _file_candles(paths: list[Path]) -> tuple[CandleTable, dict[str, object]]:
    from candlecast.candlefile import read_candles
    from models.recent_candles import merge
    from models.retrain import describe_files

    return merge([read_candles(p) for p in paths]), describe_files(paths)


def _topic_candles(
    settings: Settings,
    registries: tuple[Registry, Registry],
    name: str,
    *,
    topic: str | None,
    since: str | None,
    until: str | None,
) -> tuple[CandleTable, dict[str, object]]:
    from candlecast.candle_topic import topic_candles

    if since is None:
        raise ConfigError("--from-topic needs --since")
    end = parse_moment(until, "--until") if until else datetime.now(UTC)
    start = parse_moment(since, "--since", anchor=end)
    if start >= end:
        raise ConfigError(f"--since {start.isoformat()} is not before --until {end.isoformat()}")
    store, bundled = registries
    champion = store.champion(name) or bundled.champion(name)
    if champion is None:
        raise ConfigError(f"no model {name!r} in {store.root} or the bundled registry")
    chosen = topic or settings.kafka.candles_topic
    read = topic_candles(
        settings.kafka,
        chosen,
        since_ms=int(start.timestamp() * 1000),
        until_ms=int(end.timestamp() * 1000),
        interval=champion.manifest().interval,
    )
    if len(read.table) == 0:
        raise ConfigError(f"no {champion.manifest().interval} candles on {chosen} between {start} and {end}")
    return read.table, {
        "source": "topic",
        "topic": chosen,
        "since": start.isoformat(),
        "until": end.isoformat(),
        "records": read.records,
        "skipped": dict(read.skipped),
    }


def _report(decision: Decision) -> None:
    primary = str(decision.horizon)
    for role, figures in (("champion", decision.champion), ("challenger", decision.challenger)):
        own = figures.horizons[primary]
        low, high = own["log_loss_ci"]["low"], own["log_loss_ci"]["high"]
        console.print(
            f"{role:10} {figures.ref}: log loss h{primary} {own['log_loss']:.5f} [{low:.5f}, {high:.5f}], "
            f"constant {own['constant_log_loss']:.5f}, accuracy {own['accuracy']:.4f}",
            soft_wrap=True,
        )
    console.print(f"{decision.outcome.upper()}: {decision.reason}", soft_wrap=True)
    typer.echo(f"{decision.outcome} {decision.challenger.ref} (current: {decision.current_after})")
