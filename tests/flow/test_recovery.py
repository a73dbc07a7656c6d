"""Exact recovery, property-tested: for every gap policy and every built-in strategy (and across a model
reload), a run that stops at a random point and restarts from its commits publishes exactly the signals
of an uninterrupted run. The real pipeline on in-memory transports, a fake model that is a pure function
of each window, one thread."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import numpy as np
import numpy.typing as npt
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from daemon.candle import CandleMessage
from daemon.memory_transport import MemoryBroker
from daemon.settings import IntervalSettings, Settings, StrategySettings, WindowSettings
from daemon.window import GapMode
from models.artifact import ModelOutputs
from tests.flow.harness import without_produce_time
from tests.flow.inline_pipeline import memory_pipeline
from tests.flow.test_pipeline import BASE, HOUR
from tests.support.scorer import FakeScorer, fake_manifest

PARTITIONS = 2
MAX_MISSING = 2

STRATEGIES: dict[str, dict[str, Any]] = {
    "threshold": {"buy_above": 0.6, "sell_below": 0.4, "hysteresis": 0.12, "cooldown": 1, "memory": 3},
    "agreement": {"buy_above": 0.58, "sell_below": 0.42, "hysteresis": 0.1, "cooldown": 1, "memory": 2},
    "gated": {
        "buy_above": 0.6,
        "sell_below": 0.4,
        "hysteresis": 0.1,
        "cooldown": 1,
        "memory": 2,
        "max_disagreement": 0.03,
    },
}
"""Each built-in strategy with hysteresis and a cooldown: decisions depend on earlier outputs."""


class SteepScorer(FakeScorer):
    """The fake model with a steep logistic, so probabilities cross the thresholds, and a disagreement that
    follows the last candle's move, so the gate opens and closes; still a pure function of the window."""

    def __init__(self, version: str = "1.0.0", gain: float = 25.0) -> None:
        manifest = fake_manifest(horizons=(1, 2), version=version)
        super().__init__(msgspec.structs.replace(manifest, quantiles=[0.1, 0.5, 0.9]))
        self.gain = gain

    def score(self, windows: npt.NDArray[np.float32], origins: object = None) -> ModelOutputs:
        outputs = super().score(windows)
        closes = windows[:, :, 3].astype(np.float64)
        drift = np.log(closes[:, -1] / closes[:, 0])
        p = (1 / (1 + np.exp(-self.gain * drift))).astype(np.float32)
        outputs.probabilities[:] = p[:, None]
        last_move = np.abs(np.log(closes[:, -1] / closes[:, -2])).astype(np.float32)
        outputs.disagreement[:] = last_move[:, None]
        return outputs


@dataclass(frozen=True)
class Feed:
    """Candle records in time order, each with its partition."""

    records: list[tuple[int, bytes, bytes, int]]


@st.composite
def feeds(draw: st.DrawFn) -> Feed:
    """Three symbols over two partitions, each starting with a full window; then steps of one hour, gaps
    within ``MAX_MISSING`` and longer ones (which reset under every policy), and closes on a random walk."""
    rows: list[tuple[int, str, float]] = []
    for index in range(3):
        symbol = f"S{index}"
        steps = [1] * 4 + draw(st.lists(st.sampled_from([1, 1, 1, 1, 2, 3, 5]), min_size=4, max_size=18))
        moves = draw(st.lists(st.integers(-4, 4), min_size=len(steps), max_size=len(steps)))
        hour, price = 0, 100.0 + 10 * index
        for step, move in zip(steps, moves, strict=True):
            hour += step
            price *= 1 + move / 100
            rows.append((hour, symbol, price))
    rows.sort()
    records = []
    for hour, symbol, price in rows:
        ts = BASE + hour * HOUR
        message = CandleMessage(symbol, "1h", ts, price, price * 1.01, price * 0.99, price, 10.0)
        records.append((int(symbol[1:]) % PARTITIONS, symbol.encode(), msgspec.json.encode(message), ts + HOUR))
    return Feed(records)


def recovery_settings(gap: GapMode, strategy: str) -> Settings:
    return Settings(
        windows=WindowSettings(intervals={"1h": IntervalSettings(gap_policy=gap, max_missing=MAX_MISSING)}),
        strategy=StrategySettings(name=strategy, params=STRATEGIES[strategy]),
    )


async def run_process(
    broker: MemoryBroker, feed: Feed, settings: Settings, stages: Sequence[tuple[int, SteepScorer]]
) -> None:
    """One daemon process from the broker's commits: for each stage, the model serving it and how many of
    the feed's records are in the log by its end; stops once everything fed is committed."""
    pipeline, source = memory_pipeline(settings, stages[0][1], broker, max_records=3, max_batch=4, queue_size=2)
    models = pipeline.lanes[0].models
    await source.start()
    run = asyncio.create_task(pipeline.run())
    for upto, model in stages:
        models.model = model
        for partition, key, value, timestamp in feed.records[sum(len(log) for log in broker.logs) : upto]:
            broker.append(partition, key, value, timestamp)
        for partition, log in enumerate(broker.logs):
            await broker.wait_committed(partition, len(log))
    pipeline.stop()
    await run


def signals_of(feed: Feed, settings: Settings, processes: Sequence[Sequence[tuple[int, SteepScorer]]]) -> list[Any]:
    """The committed signals of consecutive processes on one broker."""
    broker = MemoryBroker(partitions=PARTITIONS)

    async def all_processes() -> None:
        for stages in processes:
            await run_process(broker, feed, settings, stages)

    asyncio.run(all_processes())
    published = broker.signals
    assert len({s.signal_id for s in published}) == len(published)
    return without_produce_time(published)


GAPS = list(GapMode)


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("gap", GAPS)
@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feed=feeds(), crash=st.floats(0.05, 0.95))
def test_a_restart_at_any_point_publishes_what_an_uninterrupted_run_does(
    gap: GapMode, strategy: str, feed: Feed, crash: float
) -> None:
    """Stopped after any record and restarted from its commits, the daemon publishes exactly the
    signals of an uninterrupted run, whatever the gap policy and the strategy."""
    config = recovery_settings(gap, strategy)
    total = len(feed.records)
    at = max(1, min(total - 1, round(crash * total)))
    model = SteepScorer()
    uninterrupted = signals_of(feed, config, [[(total, model)]])
    assert uninterrupted, "the feed makes signals"
    assert signals_of(feed, config, [[(at, model)], [(total, model)]]) == uninterrupted


@pytest.mark.parametrize("strategy", sorted(STRATEGIES))
@pytest.mark.parametrize("gap", GAPS)
@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(feed=feeds(), reload=st.floats(0.1, 0.9), crash=st.integers(-4, 8))
def test_a_restart_around_a_model_reload_publishes_what_an_uninterrupted_run_does(
    gap: GapMode, strategy: str, feed: Feed, reload: float, crash: int
) -> None:
    """With a reload to another model version partway, a restart shortly before or after it (the restarted
    process serving the version then current) publishes exactly the uninterrupted run's signals: the
    strategy's memory starts again at the version change, in both runs."""
    config = recovery_settings(gap, strategy)
    total = len(feed.records)
    swap = max(1, min(total - 1, round(reload * total)))
    at = max(1, min(total - 1, swap + crash))
    old, new = SteepScorer("1.0.0"), SteepScorer("2.0.0", gain=-30.0)
    uninterrupted = signals_of(feed, config, [[(swap, old), (total, new)]])
    before = [[(at, old)], [(swap, old), (total, new)]]
    after = [[(swap, old), (at, new)], [(total, new)]]
    restarted = before if at <= swap else after
    assert signals_of(feed, config, restarted) == uninterrupted
