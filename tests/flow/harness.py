"""The real ``Daemon`` on in-memory transports and a fake timer: candles in, committed signals out, no broker.

The model is the fake scorer (``FAKE_V1``, ``FAKE_V2``) unless a test is about serving a real
TorchScript artifact: control flow does not need real forward passes, and skipping them keeps each
test in milliseconds."""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from candlecast.candlefile import CandleTable, bundled_path, read_candles
from daemon.backtest import backtest, candle_records
from daemon.batching import BatchPolicy
from daemon.core import build_core
from daemon.memory_transport import MemoryBroker, MemoryCandleSource, MemorySignalSink, MemoryTransports
from daemon.service import Daemon
from daemon.serving import ModelLoader, ServedModel, load_serving_model
from daemon.settings import BatchingSettings, HttpSettings, ModelSettings, Settings, StrategySettings
from daemon.signal import Signal
from daemon.systemd import SystemdNotifier
from daemon.timer import FakeTimer
from tests.flow.inline_pipeline import CLOCK_START as CLOCK_START
from tests.support.scorer import FakeScorer, fake_manifest

CANDLES_PER_SYMBOL = 80
STRATEGY = StrategySettings(
    name="threshold", params={"buy_above": 0.501, "sell_below": 0.472, "hysteresis": 0.003, "cooldown": 2, "memory": 4}
)
"""Thresholds inside the test model's output range with a memory, so decisions depend on earlier outputs."""


FAKE_V1 = Path("fake-model-0.0.1")
FAKE_V2 = Path("fake-model-0.0.2")
"""Artifact names ``load_model`` answers with the fake scorer (no file behind them)."""


class FakeServedModel(FakeScorer):
    """The fake scorer as the daemon serves it: daily candles, windows of 64 like the test model's, on the CPU."""

    def __init__(self, version: str, bias: float) -> None:
        manifest = fake_manifest(
            window=64,
            interval="1d",
            horizons=(1, 5, 20),
            version=version,
            calendar="weekdays",
            gap_policy="tolerate",
            max_missing=3,
        )
        super().__init__(manifest, bias=bias)
        self.device = torch.device("cpu")
        self.file_sha256 = f"fake {version} {bias}"


FAKES = {FAKE_V1: ("0.0.1", 0.0), FAKE_V2: ("0.0.2", 0.004)}


def load_model(settings: ModelSettings, device: torch.device) -> ServedModel:
    """The fake scorer for a fake artifact name, else the artifact itself, as the daemon loads it."""
    if settings.artifact in FAKES:
        version, bias = FAKES[settings.artifact]
        return FakeServedModel(version, bias)
    return load_serving_model(settings, device)


@functools.cache
def _daily_stocks() -> CandleTable:
    return read_candles(bundled_path("us_stocks_1d.csv"))


def candle_table(per_symbol: int = CANDLES_PER_SYMBOL) -> CandleTable:
    """The last ``per_symbol`` daily candles of each bundled stock (the file is read once per session)."""
    return _daily_stocks().tail_per_symbol(per_symbol)


def flow_settings(artifact: Path = FAKE_V1, *, max_batch: int = 8) -> Settings:
    """Small batches and one-poll queues, so that a few records are in flight at any time."""
    return Settings(
        model=ModelSettings(artifact=artifact, threads=1),
        http=HttpSettings(port=0),
        batching=BatchingSettings(max_batch=max_batch, queue_chunks=1),
        strategy=STRATEGY,
    )


def feed(broker: MemoryBroker, table: CandleTable, start: int = 0, stop: int | None = None) -> None:
    """Produce the table's candles (``[start:stop]`` of them) in time order, each symbol always to the
    same partition."""
    symbols = sorted(table.symbol_slices())
    for record in candle_records(table.messages("1d")[start:stop]):
        symbol = (record.key or b"").decode()
        broker.append(symbols.index(symbol) % broker.partitions, record.key, record.value, record.timestamp_ms)


WARM_CANDLES = 70
"""Candles per symbol produced before work is put in flight: past the 64-candle windows, so every symbol scores."""


def without_produce_time(signals: Sequence[Signal]) -> list[dict[str, object]]:
    rows = []
    for signal in signals:
        fields = {name: getattr(signal, name) for name in signal.__struct_fields__}
        del fields["produced_at"]
        rows.append(fields)
    return sorted(rows, key=lambda row: (str(row["symbol"]), str(row["ts"])))


_expected: dict[tuple[Path, int], list[Signal]] = {}


async def expected_signals(settings: Settings, table: CandleTable) -> list[Signal]:
    """What an uninterrupted run makes of the table: the backtest's signals (computed once per model and table)."""
    artifact = settings.model.artifact
    assert artifact is not None
    key = (artifact, len(table))
    if key not in _expected:
        model = load_model(settings.model, torch.device("cpu"))
        core = build_core(settings, model)
        records = candle_records(table.messages("1d"))
        policy = BatchPolicy(settings.batching.max_batch)
        _expected[key] = await backtest(records, core.ingestor, core.builder, model, policy)
    return _expected[key]


@dataclass
class Running:
    daemon: Daemon
    transports: MemoryTransports
    task: asyncio.Task[None]
    clock: FakeTimer

    @property
    def source(self) -> MemoryCandleSource:
        assert self.transports.source is not None
        return self.transports.source

    @property
    def sink(self) -> MemorySignalSink:
        assert self.transports.sink is not None
        return self.transports.sink

    async def hold_with_rest_in_flight(self, table: CandleTable, start: int) -> None:
        """Close the sink, produce the table's candles from ``start`` on and wait until a batch of them
        waits at the sink: records are in flight."""
        self.sink.hold()
        feed(self.transports.broker, table, start=start)
        await self.sink.holding.wait()

    async def stopped(self) -> None:
        """Ask for a stop and wait for the drained exit."""
        self.daemon.request_stop()
        await self.task


@contextlib.asynccontextmanager
async def running_daemon(
    settings: Settings,
    broker: MemoryBroker,
    *,
    max_records: int = 16,
    hold: bool = False,
    notifier: SystemdNotifier | None = None,
    loader: ModelLoader = load_model,
) -> AsyncIterator[Running]:
    """A daemon on ``broker``, built and (with ``hold``) with its sink closed before its first poll."""
    transports = MemoryTransports(broker, max_records=max_records)
    clock = FakeTimer(CLOCK_START)
    daemon = Daemon(settings, transports=transports, clock=clock, load_model=loader, notifier=notifier)
    task = asyncio.create_task(daemon.run())
    built = asyncio.create_task(daemon.pipeline_built.wait())
    await asyncio.wait({task, built}, return_when=asyncio.FIRST_COMPLETED)
    built.cancel()
    if task.done():
        task.result()
    running = Running(daemon, transports, task, clock)
    if hold:
        running.sink.hold()
    try:
        yield running
    finally:
        if not task.done():
            running.sink.release()
            daemon.request_stop()
            with contextlib.suppress(Exception):
                await task


@contextlib.asynccontextmanager
async def warmed_up_daemon(
    settings: Settings, broker: MemoryBroker, table: CandleTable
) -> AsyncIterator[tuple[Running, int]]:
    """A daemon that has published and committed the first ``WARM_CANDLES`` candles' worth of the table
    per symbol; yields it and where the rest of the table starts."""
    warmed = WARM_CANDLES * len(table.symbol_slices())
    feed(broker, table, stop=warmed)
    async with running_daemon(settings, broker) as running:
        await all_committed(broker)
        yield running, warmed


async def all_committed(broker: MemoryBroker) -> None:
    """Wait until every partition's commit covers its whole log."""
    for partition, log in enumerate(broker.logs):
        await broker.wait_committed(partition, len(log))
