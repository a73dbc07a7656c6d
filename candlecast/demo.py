"""``candlecast demo``: bundled real candles through a local Kafka and the bundled ensemble.

It starts a throwaway single-node broker, creates the topics, runs the daemon in this process
with the bundled model, replays the candles at a readable pace and prints each signal as it
arrives. Everything it started is stopped when the replay is scored, on Ctrl-C, or on error.
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
from daemon.candle import format_ts
from daemon.service import Daemon
from daemon.settings import HttpSettings, KafkaSettings, Settings, StrategySettings
from daemon.signal import Signal

ACTION_STYLE = {"BUY": "bold green", "SELL": "bold red", "HOLD": "dim"}
METRICS_PORT = 9464
QUIET_AFTER_REPLAY_S = 5.0


@dataclass
class DemoRun:
    table: CandleTable
    interval: str
    rate: float
    partitions: int = 3
    buy_above: float = 0.6
    sell_below: float = 0.4
    sent_at: dict[tuple[str, int], float] = field(default_factory=dict)
    latencies_ms: list[float] = field(default_factory=list)
    actions: Counter[str] = field(default_factory=Counter)
    probabilities: list[float] = field(default_factory=list)


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
    sent = run.sent_at.get((signal.symbol, _ts_ms(signal.ts)))
    latency = "" if sent is None else f"{produced_ms - sent:6.1f} ms"
    if sent is not None:
        run.latencies_ms.append(produced_ms - sent)
    run.actions[signal.action] += 1
    run.probabilities.append(signal.probability)
    when = signal.ts[:10] if signal.ts.endswith("T00:00:00Z") else signal.ts[:16].replace("T", " ")
    console.print(
        f"{signal.symbol:<6} {when:<16} [{ACTION_STYLE[signal.action]}]{signal.action:<4}[/] "
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
    )
    daemon = Daemon(settings)
    daemon_task = asyncio.create_task(daemon.run())
    ready = asyncio.create_task(daemon.became_ready.wait())
    await asyncio.wait({ready, daemon_task}, return_when=asyncio.FIRST_COMPLETED)
    if daemon_task.done():
        ready.cancel()
        await daemon_task
        return
    model = daemon.model
    assert model is not None
    console.print(
        f"[bold]daemon ready[/]: model {model.manifest.name}/{model.version} on {model.device}; "
        f"metrics at http://127.0.0.1:{daemon.http.port}/metrics, health at /healthz and /readyz"
    )
    messages = run.table.messages(run.interval)
    symbols = len(run.table.symbol_slices())
    console.print(f"replaying {len(messages)} real candles of {symbols} symbols at {run.rate:g} candles/s")
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
    last: int,
    rate: float,
    symbols: list[str] | None,
    buy_above: float,
    sell_below: float,
    console: Console,
) -> int:
    table = read_candles(data)
    if symbols:
        table = table.only(symbols)
    table = table.tail_per_symbol(last)
    run = DemoRun(table, infer_interval(table), rate, buy_above=buy_above, sell_below=sell_below)
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
    table = Table(title="demo summary", show_header=False)
    table.add_row("candles replayed", f"{len(run.sent_at)} of {len(run.table)}")
    table.add_row("signals", str(sum(run.actions.values())))
    for action in ("BUY", "SELL", "HOLD"):
        table.add_row(f"  {action}", str(run.actions[action]))
    if run.latencies_ms:
        latencies = np.asarray(run.latencies_ms)
        table.add_row(
            "candle sent -> signal produced",
            f"p50 {np.percentile(latencies, 50):.1f} ms, p99 {np.percentile(latencies, 99):.1f} ms",
        )
    if run.probabilities:
        table.add_row("p_up range", f"{min(run.probabilities):.3f} .. {max(run.probabilities):.3f}")
    console.print(table)
    if run.table.ts.size:
        console.print(f"candles from {format_ts(int(run.table.ts.min()))} to {format_ts(int(run.table.ts.max()))}")
    if run.probabilities and not (run.actions["BUY"] or run.actions["SELL"]):
        middle = float(np.median(run.probabilities))
        console.print(
            f"Every signal is HOLD: the calibrated probability of an up move stayed between "
            f"{run.sell_below} and {run.buy_above}, the threshold strategy's band. On daily stocks the bundled "
            "model has no measurable directional skill (docs/model-card.md), so its calibrated probabilities "
            f"stay near the base rate. To see the band act, narrow it, e.g. `candlecast demo --buy-above "
            f"{max(middle, 0.501):.3f}` (a demonstration, not a recommendation).",
            highlight=False,
        )
