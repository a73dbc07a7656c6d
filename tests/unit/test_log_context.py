"""The context the pipeline binds with structlog.contextvars while its sink publishes a batch."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import structlog
from prometheus_client import CollectorRegistry

from daemon.batching import BatchPolicy
from daemon.candle import CandleMessage
from daemon.core import build_core
from daemon.memory_transport import MemoryBroker, MemoryCandleSource, MemorySignalSink
from daemon.metrics import DaemonMetrics
from daemon.pipeline import ModelHolder, Pipeline
from daemon.ports import PublishBatch
from daemon.settings import Settings
from tests.support.scorer import FakeScorer

HOUR = 3_600_000
BASE = 1_704_067_200_000  # 2024-01-01T00:00:00Z
CANDLES = 6


class ContextRecordingSink(MemorySignalSink):
    """Publishes like the in-memory sink and records the bound context each publish runs in."""

    def __init__(self, broker: MemoryBroker) -> None:
        super().__init__(broker)
        self.contexts: list[dict[str, Any]] = []

    async def publish(self, batch: PublishBatch) -> None:
        self.contexts.append(structlog.contextvars.get_contextvars())
        await super().publish(batch)


async def test_a_published_batch_is_logged_with_its_model_version_and_offsets() -> None:
    """While the sink publishes a batch, the model version and the batch's next offsets by topic/partition
    are bound (so a failed publish's log line names them), and nothing stays bound afterwards."""
    scorer = FakeScorer()
    core = build_core(Settings(), scorer)
    broker = MemoryBroker("candles", partitions=1)
    for index in range(CANDLES):
        price = 100.0 + index
        message = CandleMessage("AAPL", "1h", BASE + index * HOUR, price, price * 1.01, price * 0.99, price, 10.0)
        broker.append(0, b"AAPL", msgspec.json.encode(message), BASE + (index + 1) * HOUR)
    source = MemoryCandleSource(broker)
    sink = ContextRecordingSink(broker)
    pipeline = Pipeline(
        source=source,
        sink=sink,
        ingestor=core.ingestor,
        builder=core.builder,
        models=ModelHolder(scorer),
        policy=BatchPolicy(64, 0.0),
        metrics=DaemonMetrics(CollectorRegistry()),
    )
    await source.start()
    running = asyncio.create_task(pipeline.run())
    await asyncio.wait_for(broker.wait_committed(0, CANDLES), 10)
    pipeline.stop()
    await running
    assert sink.contexts
    assert sink.contexts[-1] == {"model_version": "1.0.0", "offsets": {"candles/0": CANDLES}}
    assert structlog.contextvars.get_contextvars() == {}
