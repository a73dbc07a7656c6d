"""The publish task builds the chunks scored while a batch is being published, before that batch is done."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from daemon.batching import BatchPolicy
from daemon.core import build_core
from daemon.memory_transport import MemoryBroker, MemoryCandleSource, MemorySignalSink
from daemon.metrics import DaemonMetrics
from daemon.pipeline import ModelHolder, Pipeline
from daemon.ports import PublishBatch, ScoredChunk
from daemon.settings import Settings
from daemon.timer import FakeTimer, settled
from tests.flow.inline_pipeline import CLOCK_START, InlineExecutor
from tests.flow.test_pipeline import feed_hours
from tests.support.scorer import FakeScorer


async def test_chunks_scored_during_a_publish_are_built_before_it_ends() -> None:
    """While the sink holds the first batch, the chunks scored meanwhile have their signals built (their
    outputs observed), so building overlaps the publish; every signal is still published once, in order."""
    broker = MemoryBroker()
    feed_hours(broker, symbols=4, hours=30)
    clock = FakeTimer(CLOCK_START)
    scorer = FakeScorer()
    core = build_core(Settings(), scorer, clock)
    built: list[int] = []

    def observe(part: ScoredChunk) -> None:
        built.extend(request.offset for request in part.chunk.requests)

    batches: list[PublishBatch] = []
    source, sink = MemoryCandleSource(broker, max_records=4), MemorySignalSink(broker)
    pipeline = Pipeline(
        source=source,
        sink=sink,
        ingestor=core.ingestor,
        builder=core.builder,
        models=ModelHolder(scorer),
        policy=BatchPolicy(max_batch=4),
        metrics=DaemonMetrics(CollectorRegistry()),
        clock=clock,
        executor=InlineExecutor(),
        queue_size=8,
        observers=[observe],
    )
    pipeline.add_published_hook(batches.append)
    sink.hold()
    await source.start()
    run = asyncio.create_task(pipeline.run())
    await sink.holding.wait()
    await settled(2000)
    built_while_held = list(built)
    sink.release()
    await broker.wait_committed(0, len(broker.logs[0]))
    pipeline.stop()
    await run

    held_up_to = max(mark.offset for mark in batches[0].checkpoint.values())
    assert built_while_held, "some chunk was built while the first batch was held"
    assert max(built_while_held) >= held_up_to, "chunks after the held batch were built while it was held"
    published = [request.offset for batch in batches for _, request in batch.signals]
    assert published == sorted(set(published)) and len(broker.signals) == len(published) == 4 * (30 - 3)
