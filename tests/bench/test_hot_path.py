"""The hot-path optimisations change speed, never results: window copies, chunking, warm-up sizes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import msgspec
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from candlecast.bench.options import BenchOptions
from candlecast.errors import ConfigError
from daemon.batching import BatchPolicy
from daemon.candle import Candle, CandleMessage, CandleValidator
from daemon.checkpoint import Checkpoint
from daemon.engine import CandleIngestor, ScoreRequest, SignalBuilder, SourceRecord
from daemon.intervals import Interval
from daemon.memory_transport import MemoryBroker, MemoryCandleSource, MemorySignalSink
from daemon.metrics import DaemonMetrics
from daemon.pipeline import ModelHolder, Pipeline
from daemon.ports import PartitionRecords
from daemon.serving import WARM_EVERY_SIZE_UP_TO, warm_up_sizes
from daemon.window import GapMode, GapPolicy, WindowStore
from models.artifact import BATCH_MULTIPLE, ModelOutputs, pad_rows
from models.torchscript import HostStaging, load_artifact
from strategies.base import OutputSpec
from strategies.threshold import ThresholdParams, ThresholdStrategy
from tests.support.model import synthetic_windows
from tests.support.scorer import FakeScorer

HOUR = 3_600_000
BASE = 1_704_067_200_000  # 2024-01-01T00:00:00Z
INTERVALS = {"1h": Interval.parse("1h")}


@settings(max_examples=60, deadline=None)
@given(
    st.integers(min_value=2, max_value=6),
    st.integers(min_value=0, max_value=5),
    st.lists(st.sampled_from([1, 1, 1, 2, 4]), min_size=1, max_size=40),
)
def test_newest_window_is_the_gathered_window(length: int, history: int, steps: list[int]) -> None:
    """One- or two-slice copies equal fancy-index gathering, across ring wrap-arounds and resets."""
    store = WindowStore(length, intervals=INTERVALS, gap_policies={"1h": GapPolicy(GapMode.RESET)}, history=history)
    index = 0
    for offset, step in enumerate(steps):
        index += step
        price = 100.0 + offset
        verdict, slot = store.push(Candle("A", "1h", BASE + index * HOUR, price, price, price, price, 1.0), 0, offset)
        if store.count(slot) >= length:
            window = store.newest_window(slot)
            np.testing.assert_array_equal(window, store.gather([slot])[0])
            window[:] = -1.0
            assert store.gather([slot])[0].min() > 0, "the window is a copy"
        del verdict


def test_warm_up_covers_every_common_batch_size() -> None:
    """Every padded size a forward pass can have up to the bound is warmed, and the largest."""
    assert warm_up_sizes(1) == [8]
    sizes = warm_up_sizes(512)
    assert sizes[: WARM_EVERY_SIZE_UP_TO // BATCH_MULTIPLE] == list(
        range(BATCH_MULTIPLE, WARM_EVERY_SIZE_UP_TO + 1, BATCH_MULTIPLE)
    )
    assert sizes[-1] == 512 and all(size % BATCH_MULTIPLE == 0 for size in sizes)
    assert warm_up_sizes(2001)[-1] == 2008


def test_bench_refuses_bad_settings_before_starting() -> None:
    """A producer, batching or model setting the daemon would refuse stops the bench at once, naming it."""
    with pytest.raises(ConfigError, match=r"kafka\.compression"):
        BenchOptions(producer={"compression": "zstd"}).check()
    with pytest.raises(ConfigError, match=r"batching\.max_batch"):
        BenchOptions(batch=0).check()
    BenchOptions(producer={"linger_ms": 2, "retry_backoff_ms": 20}).check()


def _record(offset: int, symbol: str, index: int) -> SourceRecord:
    price = 100.0 + index
    message = CandleMessage(symbol, "1h", BASE + index * HOUR, price, price * 1.01, price * 0.99, price, 10.0)
    return SourceRecord("candles", 0, offset, symbol.encode(), msgspec.json.encode(message), BASE + (index + 1) * HOUR)


def _ingestor() -> CandleIngestor:
    strategy = ThresholdStrategy(OutputSpec((1,), (0.5,)), ThresholdParams(hysteresis=0.05, memory=3))
    store = WindowStore(4, intervals=INTERVALS, history=strategy.memory - 1)
    return CandleIngestor(CandleValidator(INTERVALS), store, strategy.memory)


@pytest.fixture
def pipeline() -> Iterator[Pipeline[FakeScorer]]:
    strategy = ThresholdStrategy(OutputSpec((1,), (0.5,)), ThresholdParams())
    broker = MemoryBroker()
    built = Pipeline(
        source=MemoryCandleSource(broker),
        sink=MemorySignalSink(broker),
        ingestor=_ingestor(),
        builder=SignalBuilder(
            strategy, OutputSpec((1,), (0.5,)), "threshold()", lambda: "now", model="bench", route="default"
        ),
        models=ModelHolder(FakeScorer()),
        policy=BatchPolicy(max_batch=5),
        metrics=DaemonMetrics(CollectorRegistry()),
    )
    yield built
    built._executor.shutdown()


def test_a_large_poll_becomes_chunks_with_exact_checkpoints(pipeline: Pipeline[FakeScorer]) -> None:
    """Chunks of at most max_batch requests, in order, each committing exactly the records before its
    last one, with the rebuild offset an ingestor that stopped there would commit."""
    feed: list[tuple[str, int] | None] = [(symbol, i) for i in range(8) for symbol in "ABCDEFG"]
    feed.insert(30, None)
    records = [
        SourceRecord("candles", 0, offset, b"A", b"{", 0) if item is None else _record(offset, *item)
        for offset, item in enumerate(feed)
    ]
    chunks = list(pipeline._ingest([PartitionRecords("candles", 0, live=records)]))

    reference = _ingestor()
    expected: list[ScoreRequest] = []
    checkpoints: dict[int, Checkpoint] = {}
    for position, record in enumerate(records):
        result = reference.ingest(record)
        if isinstance(result, ScoreRequest):
            expected.append(result)
        rebuild = reference.store.rebuild_offset(0)
        checkpoints[position] = Checkpoint(record.offset + 1, record.offset + 1 if rebuild is None else rebuild)

    assert len(chunks) > 2 and all(len(chunk.requests) <= 5 for chunk in chunks)
    got = [request for chunk in chunks for request in chunk.requests]
    assert [(r.key, r.ts, r.offset) for r in got] == [(r.key, r.ts, r.offset) for r in expected]
    assert all(np.array_equal(a.window, b.window) for a, b in zip(got, expected, strict=True))
    assert sum(len(chunk.dead_letters) for chunk in chunks) == 1
    position_of = {record.offset: position for position, record in enumerate(records)}
    for chunk in chunks[:-1]:
        last = chunk.requests[-1].offset
        assert chunk.checkpoint == {("candles", 0): checkpoints[position_of[last]]}
    assert chunks[-1].checkpoint == {("candles", 0): checkpoints[len(records) - 1]}


def test_host_staging_returns_exactly_what_plain_scoring_does(test_artifact: Path) -> None:
    """The CUDA transfer path (one copy in, outputs packed into one copy out, reused buffers), run
    on the CPU without pinning: every output is bitwise what ``LoadedModel.score`` returns."""
    model = load_artifact(test_artifact)
    staging = HostStaging(torch.device("cpu"), pin=False)
    windows = synthetic_windows(40, seed=5)
    for count in (13, 40, 3, 24):
        plain = model.score(windows[:count])
        staged = staging.run(model.module, pad_rows(windows[:count]), count)
        for name in ModelOutputs.__dataclass_fields__:
            np.testing.assert_array_equal(getattr(staged, name), getattr(plain, name), err_msg=name)
