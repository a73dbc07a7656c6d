"""Backtest: candles from a file through the daemon's own pipeline, on in-memory transports.

``build_core(settings, model)`` gives the validator, window store, strategy and signal builder
the daemon builds; ``Pipeline`` runs them exactly as in the daemon, reading candles from a
``MemoryCandleSource`` and publishing into a ``MemorySignalSink`` instead of Kafka. Candles go in
in the order ``candlecast replay`` publishes them, each as the JSON message a producer sends. A
window's score does not depend on the other rows of its batch (``models.artifact.BATCH_MULTIPLE``)
and the strategy sees each symbol's outputs in candle order, so the signals equal the daemon's
field for field, except ``produced_at``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator

import msgspec
from prometheus_client import CollectorRegistry

from daemon.batching import BatchPolicy
from daemon.candle import CandleMessage, parse_ts
from daemon.engine import CandleIngestor, SignalBuilder, SourceRecord
from daemon.memory_transport import MemoryBroker, MemoryCandleSource, MemorySignalSink
from daemon.metrics import DaemonMetrics
from daemon.pipeline import ModelHolder, Pipeline
from daemon.ports import PublishBatch, Scorer
from daemon.signal import Signal

SOURCE = "backtest"
"""Topic name of the records a backtest feeds in (it appears in no signal field)."""

_encoder = msgspec.json.Encoder()


def candle_records(messages: Iterable[tuple[str, CandleMessage]]) -> Iterator[SourceRecord]:
    """The records a Kafka consumer would get for these messages, published in this order.

    The record time is the candle's open time: a file's candles are history, never ahead of it.
    """
    for offset, (symbol, message) in enumerate(messages):
        opened = parse_ts(message.ts)
        yield SourceRecord(SOURCE, 0, offset, symbol.encode(), _encoder.encode(message), opened or 0)


async def run_backtest_pipeline(
    records: Iterable[SourceRecord],
    ingestor: CandleIngestor,
    builder: SignalBuilder,
    model: Scorer,
    policy: BatchPolicy,
    *,
    on_published: Callable[[PublishBatch], None],
) -> None:
    """Run the records through the pipeline until every one is published; ``on_published`` sees each
    batch in order (rejections are counted in ``ingestor.counters``)."""
    broker = MemoryBroker(SOURCE, retain=False)
    for record in records:
        broker.append(0, record.key, record.value, record.timestamp_ms)
    end = len(broker.logs[0])
    source = MemoryCandleSource(broker, max_records=policy.max_batch)
    pipeline = Pipeline(
        source=source,
        sink=MemorySignalSink(broker),
        ingestor=ingestor,
        builder=builder,
        models=ModelHolder(model),
        policy=policy,
        metrics=DaemonMetrics(CollectorRegistry()),
        on_published=[on_published],
    )
    await source.start()
    run = asyncio.create_task(pipeline.run(), name="backtest pipeline")
    done = asyncio.create_task(broker.wait_committed(0, end), name="backtest done")
    try:
        await asyncio.wait({run, done}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        done.cancel()
        pipeline.stop()
        await run


async def backtest(
    records: Iterable[SourceRecord],
    ingestor: CandleIngestor,
    builder: SignalBuilder,
    model: Scorer,
    policy: BatchPolicy,
) -> list[Signal]:
    """Signals for the records, in candle order."""
    signals: list[Signal] = []
    await run_backtest_pipeline(
        records,
        ingestor,
        builder,
        model,
        policy,
        on_published=lambda batch: signals.extend(s for s, _ in batch.signals),
    )
    return signals


def backtest_signals(
    records: Iterable[SourceRecord],
    ingestor: CandleIngestor,
    builder: SignalBuilder,
    model: Scorer,
    policy: BatchPolicy,
) -> list[Signal]:
    """``backtest`` for callers without an event loop."""
    return asyncio.run(backtest(records, ingestor, builder, model, policy))
