"""Bounded restart and memory: strategy history follows its windows, a rebuild's history is scored a batch at a
time, and the pipeline queues are bounded in bytes. The real pipeline on in-memory transports, a fake model."""

from __future__ import annotations

import asyncio

import msgspec
import numpy as np

from daemon.candle import CandleMessage
from daemon.engine import SourceRecord
from daemon.memory_transport import MemoryBroker, MemoryCandleSource, MemorySignalSink
from daemon.pipeline import Pipeline
from daemon.ports import PartitionRecords
from daemon.settings import Settings, StrategySettings, WindowSettings
from tests.flow.inline_pipeline import memory_pipeline
from tests.flow.test_pipeline import BASE, HOUR
from tests.support.scorer import FakeScorer

STATEFUL = StrategySettings(
    name="threshold", params={"buy_above": 0.55, "sell_below": 0.45, "hysteresis": 0.02, "cooldown": 1, "memory": 3}
)


async def run_until_idle(steps: int = 2000) -> None:
    """Let every ready task run until none can move (the loop only yields; no time passes)."""
    for _ in range(steps):
        await asyncio.sleep(0)


def candle(symbol: str, hour: int, offset: int, partition: int = 0) -> SourceRecord:
    price = 100.0 + (hour % 7) - (offset % 3)
    message = CandleMessage(symbol, "1h", BASE + hour * HOUR, price, price * 1.01, price * 0.99, price, 10.0)
    return SourceRecord("candles", partition, offset, symbol.encode(), msgspec.json.encode(message), BASE + 10**12)


def pipeline_for(
    settings: Settings, broker: MemoryBroker, *, max_batch: int = 8, queue_size: int = 64, queue_bytes: int = 256 << 20
) -> Pipeline[FakeScorer]:
    pipeline, _ = memory_pipeline(
        settings,
        FakeScorer(),
        broker,
        max_records=4,
        max_batch=max_batch,
        queue_size=queue_size,
        queue_bytes=queue_bytes,
    )
    return pipeline


def test_strategy_history_is_forgotten_with_evicted_windows() -> None:
    """Symbols churning through a store of 8 windows leave at most the live windows' strategy history behind,
    not one history per symbol ever seen."""
    settings = Settings(windows=WindowSettings(max_windows=8), strategy=STATEFUL)
    pipeline = pipeline_for(settings, MemoryBroker())
    offset = 0
    records = []
    for generation in range(20):
        for index in range(6):
            symbol = f"G{generation}S{index}"
            for hour in range(6):
                records.append(candle(symbol, hour, offset))
                offset += 1
    chunks = list(pipeline._ingest([PartitionRecords("candles", 0, live=records)]))
    requests = [request for chunk in chunks for request in chunk.requests]
    scorer = pipeline.lanes[0].models.model
    built = pipeline.lanes[0].builder.build(
        requests, scorer.score(np.stack([r.window for r in requests])), scorer.version
    )
    assert sum(signal is not None for signal in built) == 20 * 6 * 3, "every symbol's full windows were decided"
    assert pipeline.lanes[0].ingestor.store.stats.evictions > 100
    assert pipeline.lanes[0].builder.remembered <= 8 + 1


def test_a_rebuilds_history_is_scored_in_chunks_of_max_batch() -> None:
    """The history a rebuild re-scores for many keys comes in chunks of at most ``max_batch`` windows, never as
    one chunk of every key's history."""
    settings = Settings(strategy=STATEFUL)
    pipeline = pipeline_for(settings, MemoryBroker(), max_batch=8)
    records = [candle(f"S{index}", hour, hour * 30 + index) for hour in range(20) for index in range(30)]
    part = PartitionRecords("candles", 0, replay=records, rebuilt=True)
    chunks = list(pipeline._ingest([part]))
    history = [request for chunk in chunks for request in chunk.requests]
    assert len(history) == 30 * (pipeline.lanes[0].builder.strategy.memory - 1)
    assert all(not request.publish for request in history)
    assert max(len(chunk.requests) for chunk in chunks) <= 8


async def test_queues_are_bounded_in_bytes_as_well_as_in_chunks() -> None:
    """With the sink stuck, dead letters holding large values stop the polls once the queued chunks hold
    ``queue_bytes``, long before the chunk bound; once the sink finishes, every record is committed."""
    taken = []
    for queue_bytes in (1 << 20, 64 << 20):
        broker = MemoryBroker()
        for offset in range(200):
            broker.append(0, b"JUNK", b"x" * 100_000, BASE + offset)
        pipeline = pipeline_for(Settings(), broker, queue_size=64, queue_bytes=queue_bytes)
        source = pipeline.source
        assert isinstance(source, MemoryCandleSource)
        sink = pipeline.sink
        assert isinstance(sink, MemorySignalSink)
        sink.hold()
        await source.start()
        run = asyncio.create_task(pipeline.run())
        await sink.holding.wait()
        await run_until_idle()
        taken.append(source.positions[0])
        sink.release()
        await broker.wait_committed(0, 200)
        assert len(broker.dead_letters) == 200
        pipeline.stop()
        await run
    bounded, unbounded = taken
    assert bounded <= 4 * 4, "about 1 MB of 100 kB dead letters, a poll of 4 at a time, plus the one at the sink"
    assert unbounded > 4 * bounded
