"""``candlecast demo``: bundled real candles through a local Kafka and the two bundled models.

It starts a throwaway single-node broker, creates the topics, runs the daemon in this process with
two routes, hourly ``*USD`` candles to ``crypto-1h`` and every daily candle to ``equities-1d``,
replays both files' candles interleaved at a readable pace and prints each signal as it arrives,
with its route. Everything it started is stopped when the replay is scored, on Ctrl-C, or on error.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import msgspec
import numpy as np
from aiokafka import AIOKafkaConsumer
from rich.console import Console
from rich.table import Table

from candlecast.candlefile import CandleTable, infer_interval, read_candles
from candlecast.localkafka import LocalKafka
from candlecast.replay import publish_candles
from candlecast.topics import create_topics, default_topics
from daemon.candle import CandleMessage, format_ts
from daemon.dispatch import RouteClaim
from daemon.service import Daemon
from daemon.settings import BatchingSettings, HttpSettings, KafkaSettings, Settings, StrategySettings
from daemon.signal import Signal

ACTION_STYLE = {"BUY": "bold green", "SELL": "bold red", "HOLD": "dim"}
METRICS_PORT = 9464
QUIET_AFTER_REPLAY_S = 5.0


@dataclass
class RouteRun:
    """One route of the demo: its candles and what came out of it."""

    name: str
    symbols: str
    table: CandleTable
    interval: str
    card: str
    """The model card that says what to expect of its model."""
    model: str = ""
    latencies_ms: list[float] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)
    probabilities: list[float] = field(default_factory=list)

    @property
    def claim(self) -> RouteClaim:
        return RouteClaim(self.symbols, self.interval)


@dataclass
class DemoRun:
    routes: list[RouteRun]
    rate: float
    partitions: int = 3
    buy_above: float = 0.6
    sell_below: float = 0.4
    sent_at: dict[tuple[str, int], float] = field(default_factory=dict)

    def route_of(self, signal: Signal) -> RouteRun:
        """The route that made a signal: the first that claims its symbol and interval, as in the daemon."""
        return next(r for r in self.routes if r.claim.claims(signal.symbol, signal.interval))

    def route_of_symbol(self, symbol: str) -> RouteRun:
        """The route whose candle file holds a symbol."""
        return next(r for r in self.routes if symbol in r.table.symbol_slices())

    def messages(self) -> list[tuple[str, CandleMessage]]:
        """Every route's candles, interleaved so that the routes' replays run side by side."""
        per_route = [route.table.messages(route.interval) for route in self.routes]
        paced = [(i / len(m), n, message) for n, m in enumerate(per_route) for i, message in enumerate(m)]
        return [message for _, _, message in sorted(paced, key=lambda item: (item[0], item[1]))]


def _port_or_free(preferred: int) -> int:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", preferred))
        except OSError:
            return 0
    return preferred


async def _print_signals(run: DemoRun, bootstrap: str, console: Console, done: asyncio.Event) -> None:
    consumer = AIOKafkaConsumer(
        "signals", bootstrap_servers=bootstrap, isolation_level="read_committed", auto_offset_reset="earliest"
    )
    await consumer.start()
    last_signal = time.monotonic()
    try:
        while not (done.is_set() and time.monotonic() - last_signal > QUIET_AFTER_REPLAY_S):
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                for record in records:
                    last_signal = time.monotonic()
                    _show(run, console, msgspec.json.decode(record.value, type=Signal), record.timestamp)
    finally:
        await consumer.stop()


def _show(run: DemoRun, console: Console, signal: Signal, produced_ms: int) -> None:
    route = run.route_of(signal)
    sent = run.sent_at.get((signal.symbol, _ts_ms(signal.ts)))
    latency = "" if sent is None else f"{produced_ms - sent:6.1f} ms"
    if sent is not None:
        route.latencies_ms.append(produced_ms - sent)
    route.actions[signal.action] += 1
    route.probabilities.append(signal.probability)
    when = signal.ts[:10] if signal.interval == "1d" else signal.ts[:16].replace("T", " ")
    console.print(
        f"{route.name:<11} {signal.model_version:<6} {signal.symbol:<6} {when:<16} "
        f"[{ACTION_STYLE[signal.action]}]{signal.action:<4}[/] "
        f"conf {signal.confidence:.3f}  p_up {signal.probability:.3f}  disagree {signal.disagreement:.3f} {latency}",
        highlight=False,
        soft_wrap=True,
    )


def _ts_ms(text: str) -> int:
    from daemon.candle import parse_ts

    value = parse_ts(text)
    return -1 if value is None else value


async def _demo(run: DemoRun, kafka: LocalKafka, console: Console) -> None:
    bootstrap = kafka.bootstrap_servers
    await create_topics(bootstrap, default_topics(run.partitions))
    settings = Settings(
        kafka=KafkaSettings(bootstrap_servers=bootstrap, instance_id="demo"),
        http=HttpSettings(port=_port_or_free(METRICS_PORT)),
        strategy=StrategySettings(name="threshold", params={"buy_above": run.buy_above, "sell_below": run.sell_below}),
        # Small batches are plenty at this rate, and warm each model up in a fraction of the default's time.
        batching=BatchingSettings(max_batch=64),
        routes=[
            {"name": r.name, "symbols": r.symbols, "interval": r.interval, "model": {"name": r.name}}
            for r in run.routes
        ],
    )
    daemon = Daemon(settings)
    daemon_task = asyncio.create_task(daemon.run())
    ready = asyncio.create_task(daemon.became_ready.wait())
    await asyncio.wait({ready, daemon_task}, return_when=asyncio.FIRST_COMPLETED)
    if daemon_task.done():
        ready.cancel()
        await daemon_task
        return
    for route, served in zip(run.routes, daemon.routes, strict=True):
        route.model = f"{served.model.manifest.name}/{served.model.version}"
        console.print(
            f"[bold]route {route.name}[/]: {route.symbols} {route.interval} candles -> model {route.model} "
            f"on {served.model.device}"
        )
    console.print(
        f"[bold]daemon ready[/]: metrics at http://127.0.0.1:{daemon.http.port}/metrics, health at /healthz "
        f"and /readyz, routes at /api/v1/routes"
    )
    messages = run.messages()
    for route in run.routes:
        symbols = ", ".join(route.table.symbol_slices())
        console.print(f"replaying {len(route.table)} real {route.interval} candles of {symbols} for {route.name}")
    console.print(f"{len(messages)} candles at {run.rate:g} candles/s, the two routes interleaved")
    replay_done = asyncio.Event()

    def sent(symbol: str, ts: int) -> None:
        run.sent_at[(symbol, ts)] = time.time() * 1000.0

    async def replay() -> None:
        await publish_candles(messages, bootstrap_servers=bootstrap, topic="candles", rate=run.rate, on_sent=sent)
        replay_done.set()

    async with asyncio.TaskGroup() as group:
        feeding = group.create_task(replay())
        printing = group.create_task(_print_signals(run, bootstrap, console, replay_done))

        async def stop_together() -> None:
            # Whichever ends first (all signals shown, or Ctrl-C stopping the daemon) ends the rest.
            await asyncio.wait({printing, daemon_task}, return_when=asyncio.FIRST_COMPLETED)
            daemon.request_stop()
            feeding.cancel()
            printing.cancel()
            await daemon_task

        group.create_task(stop_together())


def run_demo(
    data: Path,
    *,
    crypto: Path,
    last: int,
    crypto_last: int,
    rate: float,
    symbols: list[str] | None,
    buy_above: float,
    sell_below: float,
    console: Console,
) -> int:
    """The demo with the daily candles of ``data`` on ``equities-1d`` and the hourly ones of ``crypto``
    on ``crypto-1h``: the last ``last`` and ``crypto_last`` of each symbol."""
    equities = read_candles(data)
    if symbols:
        equities = equities.only(symbols)
    hourly = read_candles(crypto).tail_per_symbol(crypto_last)
    routes = [
        RouteRun("crypto-1h", "*USD", hourly, infer_interval(hourly), "docs/model-card-crypto-1h.md"),
        RouteRun("equities-1d", "*", equities.tail_per_symbol(last), infer_interval(equities), "docs/model-card.md"),
    ]
    run = DemoRun(routes, rate, buy_above=buy_above, sell_below=sell_below)
    with tempfile.TemporaryDirectory(prefix="candlecast-demo-") as scratch:
        console.print("starting a local Apache Kafka broker (KRaft) ...")
        kafka = LocalKafka(Path(scratch)).start()
        try:
            console.print(f"Kafka up on {kafka.bootstrap_servers}")
            with contextlib.suppress(KeyboardInterrupt):
                asyncio.run(_demo(run, kafka, console))
        finally:
            kafka.stop()
    _summary(run, console)
    return 0


def _summary(run: DemoRun, console: Console) -> None:
    table = Table(title="demo summary, per route")
    table.add_column("")
    for route in run.routes:
        table.add_column(route.name)
    sent = Counter(run.route_of_symbol(symbol).name for symbol, _ in run.sent_at)
    rows: list[tuple[str, list[str]]] = [
        ("model", [r.model for r in run.routes]),
        ("candles replayed", [f"{sent[r.name]} of {len(r.table)}" for r in run.routes]),
        ("signals", [str(sum(r.actions.values())) for r in run.routes]),
        *((f"  {a}", [str(r.actions[a]) for r in run.routes]) for a in ("BUY", "SELL", "HOLD")),
        ("candle sent -> signal produced", [_latency(r.latencies_ms) for r in run.routes]),
        ("p_up range", [_range(r.probabilities) for r in run.routes]),
        ("candles from", [_span(r.table) for r in run.routes]),
    ]
    for label, cells in rows:
        table.add_row(label, *cells)
    console.print(table)
    for route in run.routes:
        console.print(_verdict(run, route), highlight=False)


def _latency(latencies_ms: list[float]) -> str:
    if not latencies_ms:
        return "-"
    latencies = np.asarray(latencies_ms)
    return f"p50 {np.percentile(latencies, 50):.1f} ms, p99 {np.percentile(latencies, 99):.1f} ms"


def _range(probabilities: list[float]) -> str:
    return f"{min(probabilities):.3f} .. {max(probabilities):.3f}" if probabilities else "-"


def _span(table: CandleTable) -> str:
    if not table.ts.size:
        return "-"
    return f"{format_ts(int(table.ts.min()))} to {format_ts(int(table.ts.max()))}"


def _verdict(run: DemoRun, route: RouteRun) -> str:
    """What the route's signals say, in the measured figures' words (no claim beyond its model card)."""
    signals = sum(route.actions.values())
    if not signals:
        return f"{route.name}: no signal (each symbol needs a full window before its first one)."
    if route.actions["BUY"] or route.actions["SELL"]:
        return (
            f"{route.name}: {route.actions['BUY']} BUY and {route.actions['SELL']} SELL of {signals} signals, "
            f"where its calibrated probability left the band {run.sell_below}..{run.buy_above}; what its "
            f"model's signals are worth, measured out of sample: {route.card}."
        )
    middle = float(np.median(route.probabilities))
    return (
        f"{route.name}: every signal is HOLD: the calibrated probability of an up move stayed between "
        f"{min(route.probabilities):.3f} and {max(route.probabilities):.3f}, inside the threshold strategy's band "
        f"{run.sell_below}..{run.buy_above}; {route.card} measures how little direction these prices predict. "
        f"To see the band act, narrow it, e.g. `candlecast demo --buy-above {max(middle, 0.501):.3f}` "
        "(a demonstration, not a recommendation)."
    )
