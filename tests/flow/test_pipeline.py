"""The pipeline's backpressure, on in-memory transports, a fake model and a single thread.

The model runs inline (``InlineExecutor``) instead of on the inference thread, so every step is a
callback of this event loop and ``settled`` reaches the same state on every run.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

import msgspec
from prometheus_client import CollectorRegistry

from daemon.batching import BatchPolicy
from daemon.candle import CandleMessage
from daemon.core import build_core
from daemon.memory_transport import MemoryBroker, MemoryCandleSource, MemorySignalSink
from daemon.metrics import DaemonMetrics
from daemon.pipeline import ModelHolder, Pipeline
from daemon.ports import Scorer
from daemon.settings import Settings
from daemon.timer import FakeTimer, settled
from tests.flow.inline_pipeline import CLOCK_START, InlineExecutor
from tests.support.scorer import FakeScorer

ScorerT = TypeVar("ScorerT", bound=Scorer)
HOUR = 3_600_000
BASE = 1_699_999_200_000  # 2023-11-14T22:00Z, the start of an hour


def feed_hours(broker: MemoryBroker, symbols: int, hours: int) -> None:
    for hour in range(hours):
        for index in range(symbols):
            symbol = f"S{index:02d}"
            price = 100.0 + hour + index
            message = CandleMessage(symbol, "1h", BASE + hour * HOUR, price, price * 1.01, price * 0.99, price, 10.0)
            broker.append(0, symbol.encode(), msgspec.json.encode(message), BASE + (hour + 1) * HOUR)


def pipeline_on(
    broker: MemoryBroker,
    scorer: ScorerT,
    policy: BatchPolicy,
    *,
    queue_size: int = 64,
    registry: CollectorRegistry | None = None,
    clock: FakeTimer | None = None,
) -> tuple[Pipeline[ScorerT], MemoryCandleSource, MemorySignalSink]:
    """The real pipeline on ``broker`` with a fake model run inline and a fake timer; polls of at most
    ``policy.max_batch`` records."""
    clock = clock or FakeTimer(CLOCK_START)
    core = build_core(Settings(), scorer, clock)
    source = MemoryCandleSource(broker, max_records=policy.max_batch)
    sink = MemorySignalSink(broker)
    pipeline = Pipeline(
        source=source,
        sink=sink,
        ingestor=core.ingestor,
        builder=core.builder,
        models=ModelHolder(scorer),
        policy=policy,
        metrics=DaemonMetrics(registry or CollectorRegistry()),
        clock=clock,
        executor=InlineExecutor(),
        queue_size=queue_size,
    )
    return pipeline, source, sink


async def test_a_sink_that_does_not_finish_stops_the_source_being_polled() -> None:
    """With the sink stuck on a batch, the bounded queues fill and the ingest task stops polling: a few
    polls are taken however many records wait; once the sink finishes, every record flows and is committed."""
    broker = MemoryBroker()
    feed_hours(broker, symbols=4, hours=100)
    pipeline, source, sink = pipeline_on(broker, FakeScorer(), BatchPolicy(max_batch=4), queue_size=1)
    sink.hold()
    await source.start()
    run = asyncio.create_task(pipeline.run())
    await sink.holding.wait()
    await settled(2000)
    stalled_at = source.polls
    await settled(2000)
    assert source.polls == stalled_at <= 8
    assert source.backlog() >= len(broker.logs[0]) - 8 * 4

    sink.release()
    await broker.wait_committed(0, len(broker.logs[0]))
    assert source.polls >= len(broker.logs[0]) // 4
    assert len(broker.signals) == 4 * (100 - 3)
    pipeline.stop()
    await run


async def test_deeper_queues_take_more_before_the_source_stops() -> None:
    """The stall point follows the queue bound: backpressure comes from the queues, not from the source."""
    stalls = []
    for queue_size in (1, 4):
        broker = MemoryBroker()
        feed_hours(broker, symbols=4, hours=100)
        pipeline, source, sink = pipeline_on(broker, FakeScorer(), BatchPolicy(max_batch=4), queue_size=queue_size)
        sink.hold()
        await source.start()
        run = asyncio.create_task(pipeline.run())
        await sink.holding.wait()
        await settled(2000)
        stalls.append(source.polls)
        sink.release()
        pipeline.stop()
        await run
    assert stalls[0] < stalls[1] < 100
