"""The latency floor the Kafka I/O alone imposes at a fixed rate, in one delivery mode: the daemon's own
consumer (``KafkaCandleSource``) and signal sink (``KafkaSignalSink``) joined by a pass-through that
forwards each poll's candle records as they are, no model and no parsing, and publishes them as the
daemon publishes a batch (at-least-once: produced, acknowledged, offsets committed; exactly-once: one
transaction with the offsets, committed). Its latency is defined as the daemon's in the steady phases
(candle record timestamp to publish done), so the daemon's figure at the same rate and mode divided by
this one is what the daemon adds on top of its Kafka I/O."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from prometheus_client import CollectorRegistry

from candlecast.bench.harness import Bench, CountWait
from candlecast.bench.load import Generator, Message
from candlecast.bench.options import Delivery
from candlecast.bench.report import Latency
from daemon.checkpoint import Checkpoint
from daemon.kafka_sink import KafkaSignalSink
from daemon.kafka_source import KafkaCandleSource
from daemon.ports import PublishBatch
from daemon.record_batches import Record
from daemon.settings import KafkaSettings

WARM_S = 60.0
"""Longest wait for the pass-through's consumer to join its group."""


@dataclass(slots=True)
class ForwardedBatch(PublishBatch):
    """A publish batch that carries candle records to forward instead of signals."""

    candles: list[Record] = field(default_factory=list)


class ForwardingSink(KafkaSignalSink):
    """The daemon's signal sink publishing a ``ForwardedBatch``'s candle records as they are."""

    def records(self, batch: PublishBatch) -> tuple[list[Record], list[Record]]:
        if isinstance(batch, ForwardedBatch):
            return batch.candles, []
        return super().records(batch)


class PassThrough:
    """Forwards every poll of ``source`` through ``sink`` as one batch, one at a time, and keeps each
    record's latency: its timestamp to the publish done (acknowledged and committed)."""

    def __init__(self, source: KafkaCandleSource, sink: ForwardingSink) -> None:
        self.source = source
        self.sink = sink
        self._latencies_ms: list[float] = []
        self._forwarded = CountWait(self.__len__, "records forwarded")

    def __len__(self) -> int:
        return len(self._latencies_ms)

    async def run(self) -> None:
        while True:
            polled = await self.source.poll()
            parts = [part for part in polled if part.live]
            if not parts:
                continue
            batch = ForwardedBatch([], [], {})
            for part in parts:
                batch.candles.extend((record.key, record.value, []) for record in part.live)
                following = part.live[-1].offset + 1
                batch.checkpoint[(part.topic, part.partition)] = Checkpoint(following, following)
            await self.sink.publish(batch)
            done_ms = time.time() * 1000.0
            self._latencies_ms.extend(done_ms - record.timestamp_ms for part in parts for record in part.live)
            self._forwarded.grew()

    async def wait_for(self, count: int, timeout_s: float) -> None:
        """Until ``count`` records in all were forwarded."""
        await self._forwarded.wait_for(count, timeout_s)

    def latency(self, start: int) -> Latency:
        return Latency.of(np.asarray(self._latencies_ms[start:], dtype=np.float64))


@contextlib.asynccontextmanager
async def pass_through(settings: KafkaSettings) -> AsyncIterator[PassThrough]:
    """A pass-through from ``candles_topic`` to ``signals_topic`` in ``settings.delivery``, joined to its
    group and forwarding."""
    registry = CollectorRegistry()
    source = KafkaCandleSource(settings, registry, on_revoke=_nothing_to_drain)
    sink = ForwardingSink(settings, source.committer, registry)
    await source.start()
    forwarding: asyncio.Task[None] | None = None
    try:
        await sink.start()
        passing = PassThrough(source, sink)
        forwarding = asyncio.create_task(passing.run(), name="io-floor")
        await source.check_reachable()
        async with asyncio.timeout(WARM_S):
            while not source.warm:
                if forwarding.done():
                    await forwarding
                await asyncio.sleep(0.05)
        yield passing
    finally:
        if forwarding is not None:
            forwarding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await forwarding
        await sink.stop()
        await source.stop()


async def _nothing_to_drain(_: list[tuple[str, int]]) -> None:
    """The pass-through holds nothing between polls: a revocation has nothing to wait for."""


async def paced_floor(
    passing: PassThrough, gen: Generator, topic: str, messages: Sequence[Message], rate: float, timeout_s: float
) -> Latency:
    """``messages`` sent to ``topic`` at ``rate`` by the generator, and their latencies through ``passing``."""
    start = len(passing)
    await gen.paced(messages, [i / rate for i in range(len(messages))], topic=topic)
    await passing.wait_for(start + len(messages), timeout_s)
    return passing.latency(start)


async def io_floors(
    bench: Bench, gen: Generator, delivery: Delivery, rates: Sequence[float], quiet_s: float
) -> list[Latency]:
    """The pass-through at each rate for ``steady_s``, on topics of its own (``gen`` sends there), each
    phase after ``quiet_s`` idle, with the daemon's Kafka settings in ``delivery``."""
    options = bench.options
    candles, forwarded = await bench.topics(f"floor-{delivery}", options.partitions)
    # Its own workload: the daemon's keeps its symbols' slots without gaps.
    workload = bench.workload("F", options.symbols)
    settings = bench.settings(candles=candles, signals=forwarded, group=forwarded, delivery=delivery, max_batch=1)
    floors = []
    async with pass_through(settings.kafka) as passing:
        for rate in rates:
            await asyncio.sleep(quiet_s)
            count = int(rate * options.steady_s)
            floors.append(await paced_floor(passing, gen, candles, workload.stream(count), rate, bench.timeout(count)))
    return floors
