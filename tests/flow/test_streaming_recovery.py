"""Exact recovery of the step path, property-tested: whatever the gaps, the gap policy, the batch sizes and
the point at which the process stops, a run restarted from its commits (its states lost) publishes
exactly the signals of an uninterrupted run scored through the same streaming artifact's step path.
The real pipeline on in-memory transports and one thread, the tiny streaming test artifact."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.candle import CandleMessage
from daemon.intervals import Interval
from daemon.memory_transport import MemoryBroker
from daemon.settings import IntervalSettings, Settings, WindowSettings
from daemon.stepped_model import SteppedModel
from daemon.window import GapMode
from models.torchscript import LoadedModel, load_artifact
from tests.flow.harness import STRATEGY, without_produce_time
from tests.flow.inline_pipeline import memory_pipeline
from tests.support.model import STREAM_WINDOW

PARTITIONS = 2
DAILY = Interval.parse("1d", "weekdays")


@dataclass(frozen=True)
class Feed:
    records: list[tuple[int, bytes, bytes, int]]


@st.composite
def feeds(draw: st.DrawFn) -> Feed:
    """Three symbols on weekdays, each with a full window first, then steps of one day, short gaps and
    long ones (which reset every policy), and closes on a random walk."""
    rows: list[tuple[int, str, float]] = []
    for index in range(3):
        steps = [1] * STREAM_WINDOW + draw(st.lists(st.sampled_from([1, 1, 1, 1, 1, 2, 3, 6]), min_size=8, max_size=30))
        moves = draw(st.lists(st.integers(-3, 3), min_size=len(steps), max_size=len(steps)))
        day, price = 19_000, 100.0 + 10 * index
        for step, move in zip(steps, moves, strict=True):
            day += step
            price *= 1 + move / 100
            rows.append((day, f"S{index}", price))
    rows.sort()
    records = []
    for day, symbol, price in rows:
        ts = DAILY.slot_time(day)
        message = CandleMessage(symbol, "1d", ts, price * 1.002, price * 1.012, price * 0.99, price, 1e6 + day)
        records.append((int(symbol[1:]) % PARTITIONS, symbol.encode(), msgspec.json.encode(message), ts))
    return Feed(records)


def recovery_settings(gap: GapMode) -> Settings:
    return Settings(
        windows=WindowSettings(intervals={"1d": IntervalSettings(calendar="weekdays", gap_policy=gap, max_missing=3)}),
        strategy=STRATEGY,
    )


async def run_process(broker: MemoryBroker, feed: Feed, config: Settings, loaded: LoadedModel, upto: int) -> None:
    """One process with a fresh step path (no states) from the broker's commits, until the feed's first
    ``upto`` records are committed."""
    pipeline, source = memory_pipeline(config, SteppedModel(loaded), broker, max_records=5, max_batch=8, queue_size=2)
    await source.start()
    run = asyncio.create_task(pipeline.run())
    for partition, key, value, timestamp in feed.records[sum(len(log) for log in broker.logs) : upto]:
        broker.append(partition, key, value, timestamp)
    for partition, log in enumerate(broker.logs):
        await broker.wait_committed(partition, len(log))
    pipeline.stop()
    await run


def signals_of(feed: Feed, config: Settings, loaded: LoadedModel, stops: Sequence[int]) -> list[Any]:
    broker = MemoryBroker(partitions=PARTITIONS)

    async def processes() -> None:
        for upto in stops:
            await run_process(broker, feed, config, loaded, upto)

    asyncio.run(processes())
    published = broker.signals
    assert len({s.signal_id for s in published}) == len(published)
    return without_produce_time(published)


@pytest.fixture(scope="module")
def loaded(streaming_artifact: Path) -> LoadedModel:
    return load_artifact(streaming_artifact)


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feed=feeds(), gap=st.sampled_from(list(GapMode)), crash=st.floats(0.05, 0.95))
def test_a_restart_at_any_point_of_a_stream_publishes_what_an_uninterrupted_stream_does(
    loaded: LoadedModel, feed: Feed, gap: GapMode, crash: float
) -> None:
    """Stopped after any record and restarted with no states, the step path publishes exactly the signals
    of an uninterrupted step-path run, whatever the gap policy."""
    config = recovery_settings(gap)
    total = len(feed.records)
    at = max(1, min(total - 1, round(crash * total)))
    uninterrupted = signals_of(feed, config, loaded, [total])
    assert uninterrupted, "the feed makes signals"
    assert signals_of(feed, config, loaded, [at, total]) == uninterrupted
