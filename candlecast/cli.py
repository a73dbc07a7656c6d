"""The ``candlecast`` command."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from candlecast import __version__
from candlecast.errors import CandlecastError, ConfigError
from models.commands import calibrate, evaluate, export, models_app, train, tune
from models.retrain_command import retrain

app = typer.Typer(
    name="candlecast",
    help="Trading-signal daemon: OHLCV candles from Kafka, a TorchScript LSTM ensemble, signals back to Kafka.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
kafka_app = typer.Typer(help="A local single-node Kafka broker for development (127.0.0.1:9092).", no_args_is_help=True)
app.add_typer(kafka_app, name="kafka")
app.add_typer(models_app, name="models")
app.command("train")(train)
app.command("calibrate")(calibrate)
app.command("evaluate")(evaluate)
app.command("export")(export)
app.command("tune")(tune)
app.command("retrain")(retrain)
err = Console(stderr=True)

DEV_BROKER_DIR = Path(".cache") / "kafka" / "dev-broker"


def _version(value: bool) -> None:
    if value:
        typer.echo(f"candlecast {__version__}")
        raise typer.Exit


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """candlecast: signals from candles."""


@app.command()
def run(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML settings file (env CANDLECAST_* overrides it).")
    ] = None,
) -> None:
    """Run the daemon until SIGTERM/SIGINT; SIGHUP reloads the model."""
    from candlecast.logs import configure_logging
    from daemon.service import Daemon
    from daemon.settings import load_settings

    settings = load_settings(config)
    configure_logging(settings.log.level, settings.log.format)
    asyncio.run(Daemon(settings).run())


@app.command("stream-server")
def stream_server(
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="TOML settings file (env CANDLECAST_* overrides it).")
    ] = None,
) -> None:
    """Serve the live signal stream and latest signals from the signals topic, in a process of its own,
    until SIGTERM/SIGINT.

    Reads kafka.signals_topic (committed records only, every partition), fills the resumption ring
    from its tail (api.ring), and serves /api/v1/stream, /api/v1/signals/latest, /metrics, /healthz
    and /readyz on stream_server.host:stream_server.port with the api.* stream settings and token.
    Pair it with api.stream_enabled = false in the daemon (docs/operations.md).
    """
    from candlecast.logs import configure_logging
    from daemon.settings import load_settings
    from daemon.stream_server import serve

    settings = load_settings(config)
    configure_logging(settings.log.level, settings.log.format)
    asyncio.run(serve(settings))


@app.command("check-config")
def check_config(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="TOML settings file to check.")] = None,
) -> None:
    """Validate settings (file and CANDLECAST_* environment) and print the effective ones, secrets masked."""
    import json

    from daemon.settings import load_settings

    typer.echo(json.dumps(load_settings(config).model_dump(mode="json"), indent=2))


@app.command()
def replay(
    data: Annotated[Path, typer.Option(help="Candle CSV (ts,symbol,open,high,low,close,volume).")],
    topic: Annotated[str, typer.Option(help="Topic to publish to.")] = "candles",
    bootstrap_servers: Annotated[str, typer.Option(help="Kafka bootstrap servers.")] = "127.0.0.1:9092",
    interval: Annotated[str | None, typer.Option(help="Interval name for the messages; inferred if omitted.")] = None,
    rate: Annotated[float, typer.Option(help="Candles per second; 0 publishes as fast as possible.")] = 0.0,
    symbols: Annotated[str | None, typer.Option(help="Comma-separated symbols to keep.")] = None,
    last: Annotated[int | None, typer.Option(help="Only the last N candles of each symbol.")] = None,
) -> None:
    """Publish a candle CSV to a Kafka topic in time order, key = symbol."""
    from candlecast.candlefile import infer_interval, read_candles
    from candlecast.replay import publish_candles

    table = read_candles(data)
    if symbols:
        table = table.only([s.strip() for s in symbols.split(",")])
    if last:
        table = table.tail_per_symbol(last)
    messages = table.messages(interval or infer_interval(table))
    seconds = asyncio.run(
        publish_candles(messages, bootstrap_servers=bootstrap_servers, topic=topic, rate=rate, progress=True)
    )
    err.print(f"published {len(messages)} candles to {topic} in {seconds:.1f} s")


@app.command()
def backtest(
    data: Annotated[Path, typer.Option(help="Candle CSV (ts,symbol,open,high,low,close,volume).")],
    model: Annotated[
        str | None, typer.Option(help="Artifact file, or NAME/VERSION in the registry; default its current model.")
    ] = None,
    strategy: Annotated[str | None, typer.Option(help="Strategy name; default the settings' strategy.")] = None,
    params: Annotated[str | None, typer.Option(help="Strategy parameters as JSON, e.g. '{\"cooldown\": 2}'.")] = None,
    fee_bps: Annotated[float, typer.Option(help="Fees per unit of position traded, in basis points.")] = 2.0,
    slippage_bps: Annotated[float, typer.Option(help="Slippage per unit of position traded, in basis points.")] = 3.0,
    out: Annotated[Path, typer.Option(help="Directory for signals.jsonl and the report.")] = Path("reports/backtest"),
    config: Annotated[
        Path | None, typer.Option("--config", "-c", help="The daemon's TOML settings (windows, batching, strategy).")
    ] = None,
    symbols: Annotated[str | None, typer.Option(help="Comma-separated symbols to keep.")] = None,
    last: Annotated[int | None, typer.Option(help="Only the last N candles of each symbol.")] = None,
    route: Annotated[
        str | None,
        typer.Option(help="Run as this route of the settings ([[routes]]: its model and sections); signals name it."),
    ] = None,
) -> None:
    """Run a candle file through the daemon's windows, batching, model and strategy, without Kafka.

    Writes the signals (signals.jsonl, as the daemon publishes them) and a trading report after fees
    and slippage (report.md, report.json, equity.png); docs/backtest.md.
    """
    import json

    from candlecast.backtest import load_model, run_backtest, write_trading_report
    from candlecast.candlefile import read_candles
    from daemon.dispatch import DEFAULT_ROUTE
    from daemon.settings import StrategySettings, load_settings

    settings = load_settings(config)
    if route is not None:
        served = {r.name: r for r in settings.served_routes()}
        if route not in served:
            raise ConfigError(f"--route: the settings have no route {route!r} (routes: {', '.join(served)})")
        settings = settings.for_route(served[route])
    try:
        chosen = json.loads(params) if params is not None else None
    except json.JSONDecodeError as exc:
        raise ConfigError(f"--params: not JSON ({exc})") from exc
    if chosen is not None and not isinstance(chosen, dict):
        raise ConfigError("--params: must be a JSON object of parameter names and values")
    if strategy is not None or chosen is not None:
        name = strategy or settings.strategy.name
        fallback = settings.strategy.params if strategy is None else {}
        settings = settings.model_copy(
            update={"strategy": StrategySettings(name=name, params=fallback if chosen is None else chosen)}
        )
    loaded = load_model(model, settings.model)
    table = read_candles(data)
    if symbols:
        table = table.only([s.strip() for s in symbols.split(",")])
    if last:
        table = table.tail_per_symbol(last)
    run = run_backtest(settings, loaded, table, out, console=err, route=route or DEFAULT_ROUTE)
    err.print(f"{run.signals} signals from {run.candles} candles: {run.signals_path}")
    try:
        written = write_trading_report(run, loaded, table, data, out, fee_bps=fee_bps, slippage_bps=slippage_bps)
    except ImportError as exc:
        err.print(f"no trading report: it needs the train extra, pip install 'candlecast[train]' ({exc})")
        raise typer.Exit(1) from exc
    for path in written:
        err.print(f"report: {path}")


@app.command()
def demo(
    data: Annotated[
        Path | None, typer.Option(help="Daily candle CSV for the equities-1d route; default the bundled US stocks.")
    ] = None,
    crypto_data: Annotated[
        Path | None, typer.Option(help="Hourly *USD candle CSV for the crypto-1h route; default the bundled BTCUSD.")
    ] = None,
    last: Annotated[int, typer.Option(help="Replay the last N daily candles of each symbol.")] = 120,
    crypto_last: Annotated[int, typer.Option(help="Replay the last N hourly candles of each symbol.")] = 160,
    rate: Annotated[float, typer.Option(help="Candles per second (0: as fast as possible).")] = 40.0,
    symbols: Annotated[str | None, typer.Option(help="Comma-separated symbols to keep.")] = None,
    buy_above: Annotated[float, typer.Option(help="Threshold strategy: BUY when p exceeds this.")] = 0.6,
    sell_below: Annotated[float, typer.Option(help="Threshold strategy: SELL when p is below this.")] = 0.4,
) -> None:
    """Real bundled candles through a local Kafka and the two bundled models: signals and metrics.

    Starts a throwaway Kafka broker (KRaft), runs the daemon with two routes (hourly *USD candles to
    crypto-1h, daily candles to equities-1d), replays both files' candles interleaved and prints each
    signal as it arrives, with its route; stops everything at the end or on Ctrl-C.
    """
    from candlecast.candlefile import bundled_path
    from candlecast.demo import run_demo
    from candlecast.logs import configure_logging

    configure_logging("WARNING", "console")
    run_demo(
        data or bundled_path("us_stocks_1d.csv"),
        crypto=crypto_data or bundled_path("btcusd_1h.csv"),
        last=last,
        crypto_last=crypto_last,
        rate=rate,
        symbols=[s.strip() for s in symbols.split(",")] if symbols else None,
        buy_above=buy_above,
        sell_below=sell_below,
        console=Console(),
    )


@app.command()
def bench(
    symbols: Annotated[int, typer.Option(help="Symbols in the workload (windows kept warm).")] = 10_000,
    candles: Annotated[int, typer.Option(help="Scored candles per symbol in the throughput backlog.")] = 3,
    batch: Annotated[
        int | None, typer.Option(help="batching.max_batch and the model ceiling's batch; default the daemon's.")
    ] = None,
    max_wait_ms: Annotated[float, typer.Option(help="batching.max_wait_ms (0: continuous batching).")] = 0.0,
    threads: Annotated[int, typer.Option(help="model.threads (0: one less than the CPU count).")] = 0,
    device: Annotated[str, typer.Option(help="model.device: auto, cpu or cuda.")] = "auto",
    delivery: Annotated[str, typer.Option(help="exactly_once, at_least_once or both.")] = "both",
    close_bursts: Annotated[str, typer.Option(help="Comma-separated N: N symbols closing a candle at once.")] = (
        "1000,10000"
    ),
    close_repeats: Annotated[
        int,
        typer.Option(
            min=1, help="Closes per --close-bursts size, each the symbols' next candle: median and worst reported."
        ),
    ] = 5,
    steady_s: Annotated[float, typer.Option(help="Seconds of the steady-rate phase.")] = 10.0,
    steady_rate: Annotated[
        float | None, typer.Option(help="Candles/s of the steady phase; default half the sustained throughput.")
    ] = None,
    linger_ms: Annotated[int | None, typer.Option(help="kafka.linger_ms; default the daemon's.")] = None,
    compression: Annotated[str | None, typer.Option(help="kafka.compression; default the daemon's.")] = None,
    producer_batch_bytes: Annotated[
        int | None, typer.Option(help="kafka.producer_batch_bytes; default the daemon's.")
    ] = None,
    retry_backoff_ms: Annotated[int | None, typer.Option(help="kafka.retry_backoff_ms; default the daemon's.")] = None,
    quick: Annotated[
        bool,
        typer.Option(
            help="A seconds-long variant (small counts; options other than --two-routes, --scoring, --fixed-rates "
            "and --max-waits-ms ignored)."
        ),
    ] = False,
    model: Annotated[Path | None, typer.Option(help="Artifact file; default the bundled registry's current.")] = None,
    bootstrap_servers: Annotated[
        str | None, typer.Option(help="Use this Kafka instead of starting a local broker.")
    ] = None,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON here.")] = None,
    stream_clients: Annotated[
        int, typer.Option(help="Run the steady phase again with this many query-API stream clients (0: skip).")
    ] = 100,
    stream_rounds: Annotated[
        int, typer.Option(min=1, help="Pairs of steady phases without and with the stream clients, alternated.")
    ] = 3,
    stream_clients_nice: Annotated[
        int, typer.Option(min=0, max=19, help="Added to the stream clients' process's nice value.")
    ] = 0,
    two_routes: Annotated[
        bool, typer.Option(help="Also run the backlog through the two bundled models as two routes (as the demo).")
    ] = False,
    scoring: Annotated[
        str,
        typer.Option(
            help="Comma-separated model.scoring of the end-to-end runs, side by side: window (the model) and stream "
            "(a streaming artifact's step path), each on the same backlog."
        ),
    ] = "window",
    streaming_model: Annotated[
        Path | None,
        typer.Option(
            help="Streaming artifact of the stream runs and the streaming ceiling; default the model when it "
            "streams, else an untrained one (a step's cost is the same)."
        ),
    ] = None,
    fixed_rates: Annotated[
        str, typer.Option(help="Comma-separated candles/s of further steady phases in every end-to-end run.")
    ] = "",
    io_floor: Annotated[
        bool,
        typer.Option(
            help="With --fixed-rates: after each end-to-end run, the latency floor of its Kafka I/O at each fixed "
            "rate in its delivery mode (the daemon's consumer and sink with no model; off in --quick)."
        ),
    ] = True,
    max_waits_ms: Annotated[
        str,
        typer.Option(
            help="Comma-separated batching.max_wait_ms: a daemon each (last scoring, at-least-once) measures lone "
            "candles and the steady phase at the first --fixed-rates (default the steady rate); empty: skip."
        ),
    ] = "",
) -> None:
    """Throughput and latency side by side, in one run against a real Kafka broker (docs/benchmarks.md)."""
    from dataclasses import replace

    from candlecast.bench.options import DELIVERY_CHOICES, DEVICE_CHOICES, SCORING_CHOICES, BenchOptions
    from candlecast.bench.report import render
    from candlecast.bench.run import run_bench
    from candlecast.logs import configure_logging

    if delivery not in DELIVERY_CHOICES:
        raise ConfigError(f"--delivery: one of {', '.join(DELIVERY_CHOICES)}")
    if device not in DEVICE_CHOICES:
        raise ConfigError(f"--device: one of {', '.join(DEVICE_CHOICES)}")
    try:
        bursts = tuple(int(n) for n in close_bursts.split(",") if n.strip())
        rates = tuple(float(n) for n in fixed_rates.split(",") if n.strip())
        waits = tuple(float(n) for n in max_waits_ms.split(",") if n.strip())
    except ValueError as exc:
        raise ConfigError(f"--close-bursts, --fixed-rates, --max-waits-ms: comma-separated numbers ({exc})") from exc
    scorings = tuple(name.strip() for name in scoring.split(",") if name.strip())
    if not scorings or any(name not in SCORING_CHOICES for name in scorings):
        raise ConfigError(f"--scoring: comma-separated, each one of {', '.join(SCORING_CHOICES)}")
    chosen = tuple(SCORING_CHOICES[name] for name in scorings)
    producer = {
        name: value
        for name, value in (
            ("linger_ms", linger_ms),
            ("compression", compression),
            ("producer_batch_bytes", producer_batch_bytes),
            ("retry_backoff_ms", retry_backoff_ms),
        )
        if value is not None
    }
    options = (
        replace(BenchOptions.quick(), two_routes=two_routes, scorings=chosen, fixed_rates=rates, max_waits_ms=waits)
        if quick
        else BenchOptions(
            symbols=symbols,
            scored_per_symbol=candles,
            batch=BenchOptions().batch if batch is None else batch,
            max_wait_ms=max_wait_ms,
            threads=threads,
            device=DEVICE_CHOICES[device],
            deliveries=DELIVERY_CHOICES[delivery],
            close_bursts=bursts,
            close_repeats=close_repeats,
            steady_s=steady_s,
            steady_rate=steady_rate,
            producer=producer,
            stream_clients=stream_clients,
            stream_rounds=stream_rounds,
            stream_clients_nice=stream_clients_nice,
            two_routes=two_routes,
            scorings=chosen,
            fixed_rates=rates,
            io_floor=io_floor,
            max_waits_ms=waits,
        )
    )
    configure_logging("WARNING", "console")
    console = Console()
    result = asyncio.run(
        run_bench(
            options,
            console=console,
            bootstrap_servers=bootstrap_servers,
            model=model,
            streaming_model=streaming_model,
        )
    )
    console.print(render(result))
    if json_path is not None:
        json_path.write_bytes(result.to_json())
        err.print(f"figures written to {json_path}")


@app.command("bench-streaming")
def bench_streaming(
    model: Annotated[Path | None, typer.Option(help="Windowed artifact; default the bundled current.")] = None,
    streaming_model: Annotated[
        Path | None, typer.Option(help="Streaming artifact; default an untrained one (a step's cost is the same).")
    ] = None,
    batch: Annotated[int, typer.Option(min=1, help="Rows per forward pass or step, for both.")] = 512,
    seconds: Annotated[float, typer.Option(min=0.1, help="Seconds of each ceiling, alternated in 3 slices.")] = 6.0,
    threads: Annotated[int, typer.Option(help="model.threads (0: one less than the CPU count).")] = 0,
    close_symbols: Annotated[int, typer.Option(min=1, help="Symbols closing a candle at once.")] = 10_000,
    memory_symbols: Annotated[int, typer.Option(min=1, help="Symbols of the window-memory figure.")] = 100_000,
    json_path: Annotated[Path | None, typer.Option("--json", help="Also write the figures as JSON here.")] = None,
) -> None:
    """Streaming scoring (one step per candle from per-symbol state) beside the windowed ensemble, on the
    model alone, without a broker (docs/benchmarks.md)."""
    import dataclasses
    import json

    from candlecast.bench.streaming import render_streaming, run_streaming_bench

    figures = run_streaming_bench(
        model,
        streaming_model=streaming_model,
        batch=batch,
        seconds=seconds,
        threads=threads,
        close_symbols=close_symbols,
        memory_symbols=memory_symbols,
    )
    Console().print(render_streaming(figures))
    if json_path is not None:
        json_path.write_text(json.dumps(dataclasses.asdict(figures), indent=2) + "\n")
        err.print(f"figures written to {json_path}")


@app.command()
def schemas(
    out: Annotated[Path, typer.Option(help="Directory to write the JSON Schemas to.")] = Path("docs/schemas"),
) -> None:
    """Write the JSON Schemas of candle, signal and manifest messages (docs/signals.md)."""
    from daemon.schemas import write_schemas

    for path in write_schemas(out):
        typer.echo(path)


@kafka_app.command("up")
def kafka_up(
    port: Annotated[int, typer.Option(help="PLAINTEXT port.")] = 9092,
    fresh: Annotated[bool, typer.Option(help="Delete the broker's data first.")] = False,
) -> None:
    """Start the development broker in the background (data in .cache/kafka/dev-broker), with the
    settings' default topics (candles, signals, candles.dlq) created."""
    import shutil

    from candlecast.localkafka import LocalKafka
    from candlecast.topics import create_topics, default_topics

    pid_file = DEV_BROKER_DIR / "broker.pid"
    bootstrap = f"127.0.0.1:{port}"
    if pid_file.exists() and _alive(int(pid_file.read_text())):
        err.print(f"the development broker already runs (pid {pid_file.read_text().strip()})")
    else:
        if fresh and DEV_BROKER_DIR.exists():
            shutil.rmtree(DEV_BROKER_DIR)
        kafka = LocalKafka(DEV_BROKER_DIR, ports=[port]).start()
        process = kafka.members[0].process
        assert process is not None
        pid_file.write_text(f"{process.pid}\n")
        err.print(f"Kafka is up on {bootstrap} (pid {process.pid}); `make kafka-down` stops it")
    topics = default_topics()
    created = asyncio.run(create_topics(bootstrap, topics))
    existing = [name for name in topics if name not in created]
    said = ([f"created {', '.join(created)}"] if created else []) + (
        [f"{', '.join(existing)} already there"] if existing else []
    )
    err.print(f"topics: {'; '.join(said)}")


@kafka_app.command("down")
def kafka_down() -> None:
    """Stop the development broker."""
    pid_file = DEV_BROKER_DIR / "broker.pid"
    if not pid_file.exists():
        err.print("no development broker is running")
        return
    pid = int(pid_file.read_text())
    if _alive(pid):
        os.killpg(pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        while _alive(pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if _alive(pid):
            os.killpg(pid, signal.SIGKILL)
    pid_file.unlink()
    err.print("Kafka is down")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def main() -> None:
    """Entry point: errors of candlecast become one clear line and an exit status."""
    try:
        app()
    except ConfigError as exc:
        err.print(f"configuration error: {exc}", style="bold red", markup=False, highlight=False, soft_wrap=True)
        sys.exit(2)
    except CandlecastError as exc:
        err.print(f"error: {exc}", style="bold red", markup=False, highlight=False, soft_wrap=True)
        sys.exit(exc.exit_status)
