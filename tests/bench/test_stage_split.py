"""The bench's split of each candle's latency by stage, and of its slowest 1%, from the recorder's stamps."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pytest

from candlecast.bench.harness import Recorder
from candlecast.bench.stage_split import CandleStamps, median_split, tail_split
from daemon.engine import ScoreRequest
from daemon.ports import PublishBatch
from tests.support.signal_builder import hourly_signal


def stamps_of(rows: Sequence[tuple[float, float, float, float, float, float]]) -> CandleStamps:
    columns = np.asarray(rows, dtype=np.float64).T
    return CandleStamps(*columns)


def test_the_tail_split_is_the_slowest_candles_stages() -> None:
    """Of 198 candles of 5 ms (1 ms per stage) and two whose publish took 100 ms, the slowest 1% are those two,
    and their split puts the 100 ms in publish; the median split is the typical candle's."""
    rows = [(t, t + 1, t + 2, t + 3, t + 4, t + 5.0) for t in range(0, 198_000, 1000)]
    rows += [(t, t + 1, t + 2, t + 3, t + 4, t + 104.0) for t in (500, 1500)]
    stamps = stamps_of(rows)

    slow = tail_split(stamps)
    assert slow.count == 2
    assert (slow.consume_ms, slow.queue_ms, slow.forward_ms, slow.to_publish_ms) == (1.0, 1.0, 1.0, 1.0)
    assert slow.publish_ms == 100.0
    typical = median_split(stamps)
    assert typical.count == 200
    assert typical.publish_ms == 1.0


def test_each_candles_stages_add_up_to_its_latency() -> None:
    """Over random stamps, the tail split's stages sum to the mean latency of the candles it is taken over."""
    rng = np.random.default_rng(7)
    steps = rng.exponential(5.0, size=(500, 6))
    stamps = CandleStamps(*np.cumsum(steps, axis=1).T)
    slow = tail_split(stamps)
    latency = stamps.acked - stamps.candle
    chosen = latency[latency >= np.percentile(latency, 99)]
    total = slow.consume_ms + slow.queue_ms + slow.forward_ms + slow.to_publish_ms + slow.publish_ms
    assert slow.count == chosen.size == 5
    assert total == pytest.approx(chosen.mean())


def request(offset: int) -> ScoreRequest:
    return ScoreRequest(("AAA", "1h"), 0, np.zeros((1, 5), np.float32), "candles", 0, offset, 0, 0)


def published(recorder: Recorder, requests: list[ScoreRequest], began_s: float) -> None:
    """The pipeline's publish of ``requests``: the stage hook, then the published hook."""
    recorder.stage("publish", requests, began_s, began_s + 0.01)
    recorder(PublishBatch([(hourly_signal(str(r.offset)), r) for r in requests], [], {}))


def test_the_recorder_stamps_each_signal_with_its_own_forward_pass_and_publish() -> None:
    """A forward pass scored while an earlier batch waits to be published does not lend its stamps to that
    batch: each signal gets the forward pass that scored its request and the publish that carried it."""
    first, second, third = request(1), request(2), request(3)
    recorder = Recorder()
    recorder.stage("forward", [first, second], 1.0, 1.5)
    recorder.stage("forward", [third], 2.0, 2.5)
    published(recorder, [first, second], 3.0)
    published(recorder, [third], 4.0)

    stamps = recorder.stamps(0)
    assert stamps is not None
    shift = stamps.forward_began[0] - 1000.0
    assert (stamps.forward_began - shift).tolist() == [1000.0, 1000.0, 2000.0]
    assert (stamps.forward_ended - shift).tolist() == [1500.0, 1500.0, 2500.0]
    assert (stamps.publish_began - shift).tolist() == [3000.0, 3000.0, 4000.0]


def test_a_signal_without_a_forward_stamp_leaves_the_phase_unsplit() -> None:
    """Stamps are all or nothing: a published request no forward pass was seen for gives no split rather
    than a split with a hole in it."""
    stamped, unstamped = request(1), request(2)
    recorder = Recorder()
    recorder.stage("forward", [stamped], 1.0, 1.5)
    published(recorder, [stamped], 2.0)
    assert recorder.stamps(0) is not None
    published(recorder, [unstamped], 3.0)
    assert recorder.stamps(0) is None
    assert recorder.stamps(1) is None
