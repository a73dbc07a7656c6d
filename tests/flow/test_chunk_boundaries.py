"""Where the pipeline closes a chunk after a rebuild: as ingesting the live records one by one does, whatever
history filled the chunk, with several routes and a ``no_route`` dead letter between their runs."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import msgspec
from prometheus_client import CollectorRegistry

from daemon.batching import BatchPolicy
from daemon.candle import CandleMessage
from daemon.core import build_core
from daemon.dispatch import RouteClaim
from daemon.engine import ScoreRequest
from daemon.memory_transport import MemoryBroker, MemoryCandleSource, MemorySignalSink
from daemon.metrics import DaemonMetrics
from daemon.pipeline import Lane, ModelHolder, Pipeline
from daemon.ports import PublishBatch, ScoredChunk
from daemon.settings import Settings
from daemon.timer import FakeTimer
from tests.flow.harness import STRATEGY, without_produce_time
from tests.flow.inline_pipeline import CLOCK_START, InlineExecutor
from tests.flow.test_pipeline import BASE, HOUR
from tests.support.scorer import FakeScorer

ROUTES = (("a-1h", "A*"), ("b-1h", "B*"))
MAX_BATCH = 1
"""Every route's batch, so the chunk limit: any history fills a chunk."""
WARM_HOURS = 10
Row = tuple[str, int]
"""A candle record: symbol and hour."""

FIRST_RUN: list[Row] = [(symbol, hour) for hour in range(WARM_HOURS) for symbol in ("A1", "B1")]
AFTER_RESTART: list[Row] = [
    ("A9", WARM_HOURS),  # a run of route a-1h that makes no request: A9's window is not full
    ("C1", WARM_HOURS),  # no route claims C1: a dead letter between the runs
    ("B1", WARM_HOURS),
    ("A1", WARM_HOURS),
    ("B1", WARM_HOURS + 1),
    ("A1", WARM_HOURS + 1),
]


def append(broker: MemoryBroker, rows: Sequence[Row]) -> None:
    for symbol, hour in rows:
        price = 100.0 + hour * (1 + ord(symbol[0]) % 3) + int(symbol[1])
        message = CandleMessage(symbol, "1h", BASE + hour * HOUR, price, price * 1.01, price * 0.99, price, 10.0)
        broker.append(0, symbol.encode(), msgspec.json.encode(message), BASE + (hour + 1) * HOUR)


class Process:
    """One daemon process on ``broker``: both routes' pipeline from the broker's commits, recording each
    published batch's checkpoint and each scored request."""

    def __init__(self, broker: MemoryBroker) -> None:
        clock = FakeTimer(CLOCK_START)
        settings = Settings(strategy=STRATEGY)
        self.checkpoints: list[int] = []
        self.scored: list[ScoreRequest] = []
        lanes = []
        for name, symbols in ROUTES:
            scorer = FakeScorer()
            core = build_core(settings, scorer, clock, route=name)
            claim = RouteClaim(symbols, "1h")
            models, policy = ModelHolder(scorer), BatchPolicy(MAX_BATCH)
            lanes.append(Lane(name, claim, core.ingestor, core.builder, models, policy, [self._observe]))
        self.source = MemoryCandleSource(broker, max_records=500)
        self.pipeline = Pipeline(
            source=self.source,
            sink=MemorySignalSink(broker),
            lanes=lanes,
            describe_routes=lambda: "a-1h, b-1h",
            metrics=DaemonMetrics(CollectorRegistry()),
            clock=clock,
            executor=InlineExecutor(),
            queue_size=1,  # each publish then carries one chunk: its checkpoint is the chunk's
        )
        self.pipeline.add_published_hook(self._published)
        self.broker = broker

    def _published(self, batch: PublishBatch) -> None:
        self.checkpoints.extend(mark.offset for mark in batch.checkpoint.values())

    def _observe(self, part: ScoredChunk) -> None:
        self.scored.extend(part.chunk.requests)

    async def run_to_the_end(self) -> None:
        await self.source.start()
        run = asyncio.create_task(self.pipeline.run())
        await self.broker.wait_committed(0, len(self.broker.logs[0]))
        self.pipeline.stop()
        await run


def record_by_record(live: range, requesting: set[int], open_requests: int) -> list[int]:
    """The checkpoints of live records ingested one at a time into a chunk already holding ``open_requests``:
    the chunk closes after a record that made a request once it holds ``MAX_BATCH``, and after the last."""
    checkpoints, held = [], open_requests
    for offset in live[:-1]:
        if offset in requesting:
            held += 1
            if held >= MAX_BATCH:
                checkpoints.append(offset + 1)
                held = 0
    return [*checkpoints, live[-1] + 1]


async def test_a_chunk_filled_by_history_closes_as_record_by_record_ingestion_does() -> None:
    """Restarted from its commits, a daemon whose rebuild's history fills a chunk, then a run that makes no
    request and a ``no_route`` dead letter, commits the checkpoints that ingesting record by record gives, and
    with its first run publishes each signal and dead letter once, the signals an uninterrupted run does."""
    broker = MemoryBroker()
    append(broker, FIRST_RUN)
    await Process(broker).run_to_the_end()
    restarted_at = len(broker.logs[0])
    append(broker, AFTER_RESTART)
    restarted = Process(broker)
    await restarted.run_to_the_end()

    live = range(restarted_at, len(broker.logs[0]))
    history = [r for r in restarted.scored if not r.publish]
    requesting = {r.offset for r in restarted.scored if r.publish}
    assert history, "the rebuild re-scored history, which filled the chunk the live records start in"
    assert live[0] not in requesting and live[0] + 1 < live[-1], "the first live run makes no request"
    assert restarted.checkpoints == record_by_record(live, requesting, open_requests=MAX_BATCH)

    everything = MemoryBroker()
    append(everything, FIRST_RUN + AFTER_RESTART)
    await Process(everything).run_to_the_end()
    assert everything.signals
    assert without_produce_time(broker.signals) == without_produce_time(everything.signals)
    assert len({s.signal_id for s in broker.signals}) == len(broker.signals)
    assert [(d.reason, d.offset) for d in broker.dead_letters] == [("no_route", restarted_at + 1)]
